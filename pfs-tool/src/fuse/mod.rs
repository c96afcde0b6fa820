//! `pfs mount` and `pfs umount`: a PFS as a FUSE filesystem, served by
//! the core library in the mounting process (no daemon behind it).
//!
//! In the background (the default) the command starts itself again as the
//! serving process, waits until the mount is up or has failed, forwards
//! that process's errors and exits with its code; the serving process then
//! runs detached in its own session. SIGTERM and SIGINT unmount cleanly:
//! every open file's extents are committed, the device is flushed and the
//! writer lease released.
//!
//! How a server ended is in its log, so that `pfs umount`, which is not
//! its parent, can report it: the server logs `mounted <pbd> on <mp>`
//! when the mount is up and, as its very last line, `exit <code>:
//! unmounted <mp>[: <error>]` with the code it exits with (0, or 5 when
//! writes had been stopped on the mount, a fenced writer). `pfs umount`
//! finds the servers of the mount point and their logs (`--log FILE` or
//! the default) before it unmounts, waits for them to exit, reads the last
//! line each wrote (lines carry `pfs mount[<pid>]`) and exits with the
//! first non-zero code found. A server without a log file (in the
//! foreground without `--log`, or when the default log cannot be opened)
//! reports only through its own exit code.

mod fs;

use crate::cli::{MountArgs, UmountArgs};
use crate::cmd::Context;
use crate::exit::{CmdResult, Failure, FAILURE, USAGE};
use fuser::{Config, MountOption, SessionACL};
use nix::sys::signal::{SigSet, Signal};
use pfs_core::Mode;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Set in the environment of the serving process a background mount
/// starts; it reports "ready" on stdout once the mount is up.
const CHILD_ENV: &str = "PFS_MOUNT_SERVE";

/// What the serving process prints when the mount is up.
const READY: &str = "ready";

/// How often a read-only mount catches up with the writer between
/// requests.
const FOLLOW_EVERY: Duration = Duration::from_millis(200);

/// Directory of the background server's default log.
const LOG_DIR: &str = "/var/log/pfs";

/// How a server's last log line starts: `exit <code>: ...`.
const EXIT_LINE: &str = "exit ";

/// How much of the end of a log `pfs umount` reads for a server's last
/// line (it was written just before the server exited).
const LOG_TAIL: u64 = 256 << 10;

/// Request threads.
const THREADS: usize = 4;

/// Options of `-o` for the mount (see [`fuse_config`]).
const KNOWN_OPTIONS: &str = "ro, rw, allow_other, allow_root, default_permissions, noatime, \
                             noexec, uid=N, gid=N, umask=OOO, quiet";

/// The FUSE options of `-o` and the mode, and who the files belong to.
///
/// PFS stores no owner or mode, so a mount shows every file and directory
/// as the kernel's vfat and exfat mounts do: owned by `uid=` and `gid=`
/// (the mounting user by default), files `0666` and directories `0777`
/// less `umask=` (the mounting process's umask by default), and the
/// kernel checks every access against that (`default_permissions`,
/// always on).
fn fuse_config(a: &MountArgs) -> Result<(Config, fs::Access), Failure> {
    let mut cfg = Config::default();
    cfg.mount_options = vec![
        MountOption::FSName(format!("pfs:{}", a.pbd)),
        MountOption::Subtype("pfs".into()),
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::DefaultPermissions,
    ];
    // Whoever mounted (the owner of /proc/self).
    let (uid, gid) = std::fs::metadata("/proc/self")
        .map(|md| (md.uid(), md.gid()))
        .unwrap_or((0, 0));
    let mut access = fs::Access {
        uid,
        gid,
        umask: process_umask(),
        quiet: false,
    };
    cfg.acl = SessionACL::Owner;
    cfg.n_threads = Some(THREADS);
    if a.read_only {
        cfg.mount_options.push(MountOption::RO);
    }
    for o in a.options.iter().flat_map(|o| o.split(',')) {
        if let Some((key, value)) = o.split_once('=') {
            let bad = |what: &str| {
                Failure::new(
                    USAGE,
                    format!("mount: option {o:?}: {value:?} is not {what}"),
                )
            };
            match key {
                "uid" => access.uid = value.parse().map_err(|_| bad("a numeric user id"))?,
                "gid" => access.gid = value.parse().map_err(|_| bad("a numeric group id"))?,
                "umask" => {
                    access.umask = u32::from_str_radix(value, 8)
                        .ok()
                        .filter(|m| *m <= 0o777)
                        .ok_or_else(|| bad("an octal mask (such as 027)"))?
                }
                _ => {
                    return Err(Failure::new(
                        USAGE,
                        format!("mount: unknown option {o:?} (known: {KNOWN_OPTIONS})"),
                    ))
                }
            }
            continue;
        }
        match o {
            "" | "rw" => {}
            "ro" if a.read_only => {}
            "ro" => {
                return Err(Failure::new(
                    USAGE,
                    "mount: use -r for a read-only mount (-o ro alone would still take the writer lease)",
                ))
            }
            "allow_other" => cfg.acl = SessionACL::All,
            "allow_root" => cfg.acl = SessionACL::RootAndOwner,
            // Always on.
            "default_permissions" => {}
            "quiet" => access.quiet = true,
            "noatime" => cfg.mount_options.push(MountOption::NoAtime),
            "noexec" => cfg.mount_options.push(MountOption::NoExec),
            other => {
                return Err(Failure::new(
                    USAGE,
                    format!("mount: unknown option {other:?} (known: {KNOWN_OPTIONS})"),
                ))
            }
        }
    }
    Ok((cfg, access))
}

/// This process's umask (`Umask:` of /proc/self/status; 022 if it cannot
/// be read).
fn process_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|st| {
            st.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|m| u32::from_str_radix(m.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

/// `pfs mount`.
pub fn mount(ctx: &Context, a: &MountArgs, out: &mut dyn Write) -> CmdResult {
    let (cfg, access) = fuse_config(a)?;
    if !a.mountpoint.is_dir() {
        return Err(Failure::new(
            FAILURE,
            format!("mount: {}: not a directory", a.mountpoint.display()),
        ));
    }
    let child = std::env::var_os(CHILD_ENV).is_some();
    if !a.foreground && !child {
        return detach();
    }
    serve(ctx, a, &cfg, access, child, out)
}

/// Starts this command again as the serving process and waits until it
/// says the mount is up, or exits.
fn detach() -> CmdResult {
    let exe = std::env::current_exe()
        .map_err(|e| Failure::new(FAILURE, format!("mount: cannot find this program: {e}")))?;
    let mut child = Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(CHILD_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Failure::new(FAILURE, format!("mount: cannot start the server: {e}")))?;
    let (Some(stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(Failure::new(FAILURE, "mount: no pipe to the server"));
    };
    // Its errors before it detaches are ours.
    let fwd = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            raw_stderr(&buf[..n]);
        }
    });
    let mut line = String::new();
    let _ = BufReader::new(stdout).read_line(&mut line);
    if line.trim_end() == READY {
        return Ok(());
    }
    let status = child
        .wait()
        .map_err(|e| Failure::new(FAILURE, format!("mount: waiting for the server: {e}")))?;
    let _ = fwd.join();
    let code = status.code().unwrap_or(i32::from(FAILURE)).clamp(1, 255) as u8;
    Err(Failure::new(code, String::new()))
}

/// Mounts and serves until unmounted.
fn serve(
    ctx: &Context,
    a: &MountArgs,
    cfg: &Config,
    access: fs::Access,
    child: bool,
    out: &mut dyn Write,
) -> CmdResult {
    if child {
        // Out of the caller's session: its terminal's signals are not ours.
        let _ = nix::unistd::setsid();
    }
    // Every thread started from here on leaves SIGINT and SIGTERM to the
    // one that waits for them.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals
        .thread_block()
        .map_err(|e| Failure::new(FAILURE, format!("mount: cannot block signals: {e}")))?;
    let log_file = open_log(a, child)?;
    let mode = if a.read_only {
        Mode::ReadOnly
    } else {
        Mode::ReadWrite
    };
    let m = ctx.mount("mount", &a.pbd, mode)?;
    if mode == Mode::ReadOnly {
        let _ = m.spawn_follower(FOLLOW_EVERY);
    } else {
        // The single writer for as long as it is mounted.
        m.take_lease()
            .map_err(|e| Failure::from_core("mount", &e))?;
    }
    let mut fs = fs::PfsFs::new(m, access);
    fs.readahead_on(&a.mountpoint);
    let unmount_error = std::sync::Arc::clone(&fs.unmount_error);
    let mut session = fuser::Session::new(fs, &a.mountpoint, cfg).map_err(|e| {
        Failure::new(
            FAILURE,
            format!("mount: cannot mount on {}: {e}", a.mountpoint.display()),
        )
    })?;
    let mut unmounter = session.unmount_callable();
    let mountpoint = a.mountpoint.display().to_string();
    let started = format!(
        "mounted {} on {mountpoint} ({})",
        a.pbd,
        if a.read_only {
            "read-only"
        } else {
            "read-write"
        }
    );
    // Written before "ready", so `pfs umount` never finds an older
    // server's last line (same pid, same log) as this one's.
    match &log_file {
        Some(f) => write_all_fd(f, log_line(&started).as_bytes()),
        None if !child => log(&started),
        None => {}
    }
    let signalled_mp = mountpoint.clone();
    std::thread::spawn(move || {
        let mountpoint = signalled_mp;
        if let Ok(sig) = signals.wait() {
            log(&format!("{sig}: unmounting {mountpoint}"));
            if let Err(e) = unmounter.unmount() {
                // Busy (open files, a working directory): detach it now;
                // the server ends when the last user lets go.
                log(&format!("{mountpoint}: {e}; detaching it (lazy unmount)"));
                let lazy = Command::new("fusermount3")
                    .args(["-u", "-z"])
                    .arg(&mountpoint)
                    .stdin(Stdio::null())
                    .output();
                if !lazy.is_ok_and(|o| o.status.success()) {
                    log(&format!("cannot unmount {mountpoint}"));
                }
            }
        }
    });
    if child {
        let _ = writeln!(out, "{READY}");
        let _ = out.flush();
        quiet(log_file.as_ref());
    } else if let Some(f) = &log_file {
        redirect(f, &[2]);
    }
    let r = session.run();
    let (code, why) = match unmount_error.lock().take() {
        // Writes had been stopped (a fenced writer), or the last flush
        // failed: what was acknowledged before is all there is.
        Some(e) => (5, Some(e)),
        None => match r {
            Ok(()) => (0, None),
            Err(e) => (FAILURE, Some(format!("serving: {e}"))),
        },
    };
    // The last line, on stderr as every log line: how this server ended,
    // for the log and `pfs umount`. The failure carries no message, which
    // would only repeat it.
    match why {
        None => log(&format!("{EXIT_LINE}0: unmounted {mountpoint}")),
        Some(why) => log(&format!("{EXIT_LINE}{code}: unmounted {mountpoint}: {why}")),
    }
    match code {
        0 => Ok(()),
        _ => Err(Failure::new(code, String::new())),
    }
}

/// The default log of the background server of PBD `pbd`.
fn default_log(pbd: &str) -> std::path::PathBuf {
    let name = pbd.replace('/', "_");
    std::path::Path::new(LOG_DIR).join(format!("mount-{name}.log"))
}

/// The log file the server writes to: `--log`, or in the background the
/// default under [`LOG_DIR`] (a warning, and no log, if it cannot be made);
/// `None` in the foreground without `--log` (stderr).
fn open_log(a: &MountArgs, child: bool) -> Result<Option<std::fs::File>, Failure> {
    let open = |path: &std::path::Path| {
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o640)
            .open(path)
    };
    match &a.log {
        Some(path) => open(path).map(Some).map_err(|e| {
            Failure::new(
                FAILURE,
                format!("mount: cannot open the log {}: {e}", path.display()),
            )
        }),
        None if child => {
            let path = default_log(&a.pbd);
            match std::fs::create_dir_all(LOG_DIR).and_then(|()| open(&path)) {
                Ok(f) => Ok(Some(f)),
                Err(e) => {
                    log(&format!(
                        "warning: cannot open the log {}: {e}; the server will log nothing \
                         (use --log FILE)",
                        path.display()
                    ));
                    Ok(None)
                }
            }
        }
        None => Ok(None),
    }
}

/// Points file descriptors `fds` at `file`.
fn redirect(file: &impl std::os::fd::AsRawFd, fds: &[i32]) {
    for &fd in fds {
        let _ = nix::unistd::dup2(file.as_raw_fd(), fd);
    }
}

/// Points stdin and stdout of the detached server at /dev/null, and
/// stderr at its log (or /dev/null without one).
fn quiet(log_file: Option<&std::fs::File>) {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        redirect(&null, &[0, 1, 2]);
    }
    if let Some(f) = log_file {
        redirect(f, &[2]);
    }
}

/// Writes a line to stderr (the foreground log, or the server's log file),
/// with the time.
pub(crate) fn log(msg: &str) {
    raw_stderr(log_line(msg).as_bytes());
}

/// A log line: the time, `pfs mount[<pid>]: ` and `msg`.
fn log_line(msg: &str) -> String {
    let now = pfs_core::inspect::ctime(pfs_core::inspect::now_secs());
    format!("{now} {}{msg}\n", log_tag(std::process::id()))
}

/// What every log line of server `pid` carries before its message.
fn log_tag(pid: u32) -> String {
    format!("pfs mount[{pid}]: ")
}

/// Writes to fd 2 directly: the main thread holds the lock of
/// `std::io::stderr()` while a command runs.
fn raw_stderr(buf: &[u8]) {
    write_all_fd(&std::io::stderr(), buf);
}

/// Writes all of `buf` to `fd` in as few `write` calls as it takes (one,
/// for a line: lines of several servers sharing a log do not mix).
fn write_all_fd(fd: &impl std::os::fd::AsFd, mut buf: &[u8]) {
    while !buf.is_empty() {
        match nix::unistd::write(fd, buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf = &buf[n..],
        }
    }
}

/// `pfs umount`: `fusermount3 -u`, or `umount` where fusermount3 is
/// missing; then waits (up to a minute) for the serving `pfs mount`
/// process to commit, flush, release the lease and exit, so the device can
/// be mounted again at once; and exits as the server did, as far as its
/// log tells (5 when writes had been stopped on the mount).
pub fn umount(a: &UmountArgs) -> CmdResult {
    let mp = &a.mountpoint;
    let servers = servers_of(mp);
    unmount_path(mp)?;
    let t = std::time::Instant::now();
    while servers
        .iter()
        .any(|s| std::path::Path::new(&format!("/proc/{}", s.pid)).exists())
    {
        if t.elapsed() > Duration::from_secs(60) {
            let pids: Vec<u32> = servers.iter().map(|s| s.pid).collect();
            return Err(Failure::new(
                FAILURE,
                format!(
                    "umount: {} is unmounted but its server (pid {pids:?}) has not exited",
                    mp.display()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for s in &servers {
        let Some(log) = &s.log else { continue };
        if let Some((code, what)) = exit_in_log(log, s.pid) {
            if code != 0 {
                return Err(Failure::new(
                    code,
                    format!(
                        "umount: {}: its server (pid {}) exited with {code}: {what} (its log: {})",
                        mp.display(),
                        s.pid,
                        log.display()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A `pfs mount` process serving a mount point, and where it logs.
struct Server {
    pid: u32,
    /// Its log file, if it has one (see the module comment).
    log: Option<std::path::PathBuf>,
}

/// The log file of the server that runs with `args` in `cwd`: `--log`,
/// or the default of a background server.
fn log_of(args: &[&[u8]], cwd: Option<&std::path::Path>) -> Option<std::path::PathBuf> {
    use clap::Parser;
    let args = args.iter().map(|a| std::ffi::OsStr::from_bytes(a));
    let crate::cli::Cli {
        command: crate::cli::Command::Mount(m),
        ..
    } = crate::cli::Cli::try_parse_from(args).ok()?
    else {
        return None;
    };
    match m.log {
        Some(p) if p.is_relative() => Some(cwd?.join(p)),
        Some(p) => Some(p),
        None if !m.foreground => Some(default_log(&m.pbd)),
        None => None,
    }
}

/// The code and the rest of server `pid`'s last log line, when that line
/// is the one it writes as it exits (`exit <code>: <what>`). `None` when
/// the log cannot be read or the server wrote something else last (it was
/// killed).
fn exit_in_log(log: &std::path::Path, pid: u32) -> Option<(u8, String)> {
    use std::io::Seek;
    let mut f = std::fs::File::open(log).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(std::io::SeekFrom::Start(len.saturating_sub(LOG_TAIL)))
        .ok()?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail).ok()?;
    let tag = log_tag(pid);
    let text = String::from_utf8_lossy(&tail);
    let last = text.lines().rev().find_map(|l| {
        let at = l.find(&tag)?;
        Some(&l[at + tag.len()..])
    })?;
    let rest = last.strip_prefix(EXIT_LINE)?;
    let (code, what) = rest.split_once(": ")?;
    Some((code.parse().ok()?, what.to_owned()))
}

/// Processes of this program serving `mp`: `... mount ... <mp>` with the
/// same directory once resolved against their working directory.
fn servers_of(mp: &std::path::Path) -> Vec<Server> {
    let (Ok(want), Ok(me)) = (mp.canonicalize(), std::env::current_exe()) else {
        return Vec::new();
    };
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for e in procs.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if std::fs::read_link(e.path().join("exe")).ok().as_ref() != Some(&me) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .collect();
        if !args.iter().any(|a| *a == b"mount") {
            continue;
        }
        let Some(last) = args.last() else { continue };
        let last = std::path::Path::new(std::ffi::OsStr::from_bytes(last));
        let full = e.path().join("cwd").join(last);
        if full.canonicalize().ok().as_ref() == Some(&want) || last == want {
            let cwd = std::fs::read_link(e.path().join("cwd")).ok();
            found.push(Server {
                pid,
                log: log_of(&args, cwd.as_deref()),
            });
        }
    }
    found
}

fn unmount_path(mp: &std::path::Path) -> CmdResult {
    let tries: [(&str, &[&str]); 2] = [("fusermount3", &["-u"]), ("umount", &[])];
    for (prog, args) in tries {
        match Command::new(prog)
            .args(args)
            .arg(mp)
            .stdin(Stdio::null())
            .output()
        {
            Ok(o) if o.status.success() => return Ok(()),
            Ok(o) => {
                return Err(Failure::new(
                    FAILURE,
                    format!(
                        "umount: {}: {}",
                        mp.display(),
                        String::from_utf8_lossy(&o.stderr).trim()
                    ),
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(Failure::new(
                    FAILURE,
                    format!("umount: cannot run {prog}: {e}"),
                ))
            }
        }
    }
    Err(Failure::new(
        FAILURE,
        "umount: neither fusermount3 nor umount is installed",
    ))
}
