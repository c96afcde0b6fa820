//! Running the `pfs` tool from tests and benches: finding (or building)
//! the binary, a runner that passes the device directory and a clean
//! environment, and run/ok/fail helpers whose panics show the command,
//! its exit and what it printed.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Variables the tool reads that a test's own environment must not leak
/// into the commands it runs (`NO_COLOR` and `PFS_PROGRESS_MS` change what
/// it prints); a runner sets them itself where it means to.
const CLEARED: &[&str] = &[
    "PFS_DEVICE_DIR",
    "PFS_LEASE_MS",
    "PFS_TEST_STOP_AT",
    "NO_COLOR",
    "PFS_PROGRESS_MS",
];

/// `<target>/<profile>` of the running test or bench executable
/// (`<target>/<profile>/deps/<name>-<hash>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    exe.ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| panic!("{} is not in a cargo target directory", exe.display()))
}

/// Builds the `pfs` binary with cargo into `<target>/<profile>` and
/// returns it.
fn build(profile: &Path, release: bool) -> PathBuf {
    let target = profile.parent().unwrap_or(profile);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut c = Command::new(cargo);
    c.args(["build", "--locked", "-p", "pfs-tool", "--bin", "pfs"])
        .arg("--manifest-path")
        .arg(crate::project_root().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target);
    if release {
        c.arg("--release");
    }
    let out = c.output().expect("run cargo to build pfs");
    assert!(
        out.status.success(),
        "building pfs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = target
        .join(if release { "release" } else { "debug" })
        .join("pfs");
    assert!(bin.is_file(), "{} was not built", bin.display());
    bin
}

/// The `pfs` binary: `$PFS_BIN` if set, else the one beside the running
/// test or bench in its cargo profile directory (cargo builds it for the
/// tests and benches of `pfs-tool`), else built there with cargo.
pub fn bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("PFS_BIN") {
            return PathBuf::from(p);
        }
        let profile = profile_dir();
        let beside = profile.join("pfs");
        if beside.is_file() {
            return beside;
        }
        let release = profile.file_name() == Some(OsStr::new("release"));
        build(&profile, release)
    })
}

/// A release build of `pfs`, made with cargo once per test binary in the
/// same target directory, for tests whose timing wants an optimized tool
/// beside a debug build of themselves (the SDK's failover tests).
pub fn release_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build(&profile_dir(), true))
}

/// `args` as one line, for messages.
fn show(args: &[OsString]) -> String {
    args.iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The exit status and both outputs of `o`, trimmed, on one line.
pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}: {}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).trim(),
        String::from_utf8_lossy(&o.stderr).trim()
    )
}

/// Panics, showing both outputs, unless `o` is a success; `what` names
/// the program.
pub fn assert_success(what: &str, o: &Output) {
    assert!(
        o.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Runs any program to its end; panics with what it printed unless it
/// succeeds.
pub fn run_ok(cmd: &mut Command) -> Output {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", cmd.get_program()));
    assert_success(&format!("{cmd:?}"), &o);
    o
}

/// Runs the `pfs` tool on one device directory.
///
/// Each command runs as `pfs --device-dir DIR ARGS...` with `TZ=UTC`, the
/// tool's own variables cleared (`PFS_DEVICE_DIR`, `PFS_LEASE_MS`, ...)
/// unless set here, stdin empty and both outputs collected.
#[derive(Debug, Clone)]
pub struct Pfs {
    bin: Option<PathBuf>,
    release: bool,
    dir: Option<PathBuf>,
    env: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
    limit: Option<Duration>,
    keep: Option<usize>,
    wrapper: Vec<OsString>,
}

impl Pfs {
    /// A runner on device directory `dir`.
    pub fn new(dir: impl AsRef<Path>) -> Pfs {
        Pfs {
            dir: Some(dir.as_ref().to_owned()),
            ..Pfs::without_device_dir()
        }
    }

    /// A runner that names no device directory (devices are then found
    /// under `/dev`).
    pub fn without_device_dir() -> Pfs {
        Pfs {
            bin: None,
            release: false,
            dir: None,
            env: vec![("TZ".into(), "UTC".into())],
            cwd: None,
            limit: None,
            keep: None,
            wrapper: Vec::new(),
        }
    }

    /// The same runner with another `pfs` binary.
    pub fn with_bin(mut self, bin: impl AsRef<Path>) -> Pfs {
        self.bin = Some(bin.as_ref().to_owned());
        self
    }

    /// The device directory.
    pub fn dir(&self) -> &Path {
        self.dir
            .as_deref()
            .expect("this runner names no device directory")
    }

    /// The same runner with a release build of `pfs` ([`release_bin`],
    /// built when first run).
    pub fn release(mut self) -> Pfs {
        self.release = true;
        self
    }

    /// The binary it runs: the one given, else [`release_bin`] or [`bin`].
    pub fn bin(&self) -> &Path {
        match &self.bin {
            Some(b) => b,
            None if self.release => release_bin(),
            None => bin(),
        }
    }

    /// Sets an environment variable of every command.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Pfs {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Every command with a writer lease of `ms` (`PFS_LEASE_MS`).
    pub fn lease_ms(self, ms: u32) -> Pfs {
        self.env("PFS_LEASE_MS", ms.to_string())
    }

    /// Every command started in `dir`.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Pfs {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// Every command killed, and the test failed, if it runs longer than
    /// `limit` (a command that hangs fails the test instead of hanging it).
    pub fn time_limit(mut self, limit: Duration) -> Pfs {
        self.limit = Some(limit);
        self
    }

    /// Keeps only the first `bytes` of each output (the rest is read and
    /// dropped); goes with [`Pfs::time_limit`].
    pub fn keep_output(mut self, bytes: usize) -> Pfs {
        self.keep = Some(bytes);
        self
    }

    /// Every command run through `wrapper` (`["prlimit", "--as=N", "--"]`).
    pub fn under(mut self, wrapper: &[&str]) -> Pfs {
        self.wrapper = wrapper.iter().map(OsString::from).collect();
        self
    }

    /// The command for `pfs ARGS...`, stdin empty and outputs piped, to
    /// change further or spawn.
    pub fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut c = match self.wrapper.split_first() {
            Some((w, rest)) => {
                let mut c = Command::new(w);
                c.args(rest).arg(self.bin());
                c
            }
            None => Command::new(self.bin()),
        };
        for k in CLEARED {
            c.env_remove(k);
        }
        for (k, v) in &self.env {
            c.env(k, v);
        }
        if let Some(d) = &self.cwd {
            c.current_dir(d);
        }
        if let Some(d) = &self.dir {
            c.arg("--device-dir").arg(d);
        }
        c.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Runs `pfs ARGS...` to its end.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        let args: Vec<OsString> = args.iter().map(|a| a.as_ref().to_owned()).collect();
        self.finish(&args, self.command(&args), None)
    }

    /// Runs `pfs ARGS...` with `input` on its stdin.
    pub fn run_with_input<S: AsRef<OsStr>>(&self, args: &[S], input: &[u8]) -> Output {
        let args: Vec<OsString> = args.iter().map(|a| a.as_ref().to_owned()).collect();
        let mut c = self.command(&args);
        c.stdin(Stdio::piped());
        self.finish(&args, c, Some(input.to_vec()))
    }

    /// Runs `pfs ARGS...` with the file `input` as its stdin.
    pub fn run_with_file<S: AsRef<OsStr>>(&self, args: &[S], input: &Path) -> Output {
        let args: Vec<OsString> = args.iter().map(|a| a.as_ref().to_owned()).collect();
        let mut c = self.command(&args);
        let f =
            std::fs::File::open(input).unwrap_or_else(|e| panic!("open {}: {e}", input.display()));
        c.stdin(f);
        self.finish(&args, c, None)
    }

    /// Runs a command the reference's run recorded (see
    /// [`crate::commands`]), its stdin, if it had one, the file of that
    /// name in `inputs`.
    pub fn run_recorded(&self, r: &crate::Recorded, inputs: &Path) -> Output {
        match &r.stdin {
            Some(f) => self.run_with_file(&r.args, &inputs.join(f)),
            None => self.run(&r.args),
        }
    }

    /// Runs `pfs ARGS...`; panics unless it succeeds; returns stdout as text.
    pub fn ok<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        String::from_utf8_lossy(&self.ok_bytes(args)).into_owned()
    }

    /// [`Pfs::ok`], returning stdout's bytes.
    pub fn ok_bytes<S: AsRef<OsStr>>(&self, args: &[S]) -> Vec<u8> {
        let args: Vec<OsString> = args.iter().map(|a| a.as_ref().to_owned()).collect();
        let o = self.run(&args);
        assert!(
            o.status.success(),
            "pfs {} failed: {}\nstdout: {}\nstderr: {}",
            show(&args),
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        o.stdout
    }

    /// Runs `pfs ARGS...`; panics if it succeeds; returns what it did.
    pub fn fail<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        let args: Vec<OsString> = args.iter().map(|a| a.as_ref().to_owned()).collect();
        let o = self.run(&args);
        assert!(
            !o.status.success(),
            "pfs {} succeeded but must fail; stdout: {}",
            show(&args),
            String::from_utf8_lossy(&o.stdout)
        );
        o
    }

    /// Starts `pfs ARGS...` with `PFS_TEST_STOP_AT=point` and returns it
    /// once it has stopped itself there (failing the test if it does not).
    pub fn stopped_at<S: AsRef<OsStr>>(&self, point: &str, args: &[S]) -> Child {
        let c = self
            .command(args)
            .env("PFS_TEST_STOP_AT", point)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin().display()));
        assert!(
            crate::failover::wait_stopped(c.id()),
            "pfs did not stop at {point}"
        );
        c
    }

    /// The names `pfs ls PATH` lists, in its order.
    pub fn names(&self, path: &str) -> Vec<String> {
        self.ok(&["ls", path])
            .lines()
            .filter(|l| !l.starts_with("total "))
            .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
            .collect()
    }

    /// `pfs fsck PBD`: clean, and what it said.
    pub fn fsck(&self, pbd: &str) -> (bool, String) {
        let o = self.run(&["fsck", pbd]);
        let clean = o.status.success() && o.stdout.ends_with(b"clean\n");
        (clean, text(&o))
    }

    /// Panics unless `pfs fsck PBD` finds the filesystem clean.
    pub fn fsck_clean(&self, pbd: &str) {
        let (clean, said) = self.fsck(pbd);
        assert!(clean, "fsck {pbd}: {said}");
    }

    /// Makes `NAME` in the device directory a sparse device of `chunks`
    /// 10 GiB chunks and runs `pfs mkfs MKFS_ARGS... NAME` on it.
    pub fn mkfs_new(&self, name: &str, chunks: u64, mkfs_args: &[&str]) {
        crate::device::sparse(
            &self.dir().join(name),
            chunks * pfs_format::layout::CHUNK_SIZE,
        );
        let mut args = vec!["mkfs"];
        args.extend_from_slice(mkfs_args);
        args.push(name);
        self.ok(&args);
    }

    /// Waits for `c`, under the time limit if there is one.
    fn finish(&self, args: &[OsString], mut c: Command, input: Option<Vec<u8>>) -> Output {
        let mut child = c
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", c.get_program()));
        let feeder = input.map(|data| {
            let mut stdin = child.stdin.take().expect("piped stdin");
            // A command may stop reading early: a broken pipe is its answer.
            std::thread::spawn(move || {
                let _ = stdin.write_all(&data);
            })
        });
        let o = match self.limit {
            None => child.wait_with_output().expect("wait for pfs"),
            Some(limit) => wait_within(child, limit, self.keep).unwrap_or_else(|| {
                panic!("pfs {} still running after {limit:?}: killed", show(args))
            }),
        };
        if let Some(f) = feeder {
            let _ = f.join();
        }
        o
    }
}

/// Waits for `child` at most `limit`, reading its outputs meanwhile (each
/// cut to `keep` bytes, if given); kills it and returns `None` when late.
fn wait_within(mut child: Child, limit: Duration, keep: Option<usize>) -> Option<Output> {
    let reader = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            let Some(mut r) = r else { return kept };
            let mut buf = [0u8; 64 << 10];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let room = keep.map_or(n, |k| k.saturating_sub(kept.len()).min(n));
                kept.extend_from_slice(&buf[..room]);
            }
            kept
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for a child") {
            break Some(s);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    status.map(|status| Output {
        status,
        stdout,
        stderr,
    })
}

/// A scratch directory named after `name` holding, for each of `pbds`, a
/// sparse device of one chunk with a fresh PFS made by `pfs mkfs`; and the
/// tool on it.
pub fn formatted(name: &str, pbds: &[&str]) -> (crate::device::Scratch, Pfs) {
    let dir = crate::device::Scratch::new(name);
    let pfs = Pfs::new(&dir);
    for pbd in pbds {
        pfs.mkfs_new(pbd, 1, &[]);
    }
    (dir, pfs)
}

/// A scratch directory whose `dev/` holds one sparse device of one chunk
/// with a fresh PFS made by `pfs mkfs`, the tool on it, and room beside
/// `dev/` for mount points and local files.
pub struct Disk {
    /// The scratch directory.
    pub dir: crate::device::Scratch,
    /// The tool on `dev/`.
    pub pfs: Pfs,
    /// The device's PBD name.
    pub pbd: String,
}

impl AsRef<Disk> for Disk {
    fn as_ref(&self) -> &Disk {
        self
    }
}

impl Disk {
    /// `pbd` formatted with `pfs mkfs` in a new scratch directory named
    /// after `name`.
    pub fn new(name: &str, pbd: &str) -> Disk {
        Disk::with(name, pbd, |p| p, &[])
    }

    /// [`Disk::new`] with the runner changed by `configure` (an
    /// environment, a lease) and `mkfs_args` given to `pfs mkfs`.
    pub fn with(
        name: &str,
        pbd: &str,
        configure: impl FnOnce(Pfs) -> Pfs,
        mkfs_args: &[&str],
    ) -> Disk {
        let dir = crate::device::Scratch::new(name);
        let pfs = configure(Pfs::new(dir.subdir("dev")));
        pfs.mkfs_new(pbd, 1, mkfs_args);
        Disk {
            dir,
            pfs,
            pbd: pbd.to_owned(),
        }
    }

    /// `pbd` formatted in-process with the smallest journal (see
    /// [`crate::device::format()`]) in a new scratch directory named after
    /// `name`, as the multi-process tests share it.
    pub fn formatted(name: &str, pbd: &str) -> Disk {
        let dir = crate::device::Scratch::new(name);
        let pfs = Pfs::new(dir.subdir("dev"));
        crate::device::format(&pfs.dir().join(pbd), 1);
        Disk {
            dir,
            pfs,
            pbd: pbd.to_owned(),
        }
    }

    /// `/<pbd>/<rel>`.
    pub fn path(&self, rel: &str) -> String {
        format!("/{}/{rel}", self.pbd)
    }

    /// The device file.
    pub fn device(&self) -> PathBuf {
        self.pfs.dir().join(&self.pbd)
    }

    /// A directory `name` beside `dev/` (made if missing).
    pub fn mountpoint(&self, name: &str) -> PathBuf {
        self.dir.subdir(name)
    }

    /// Panics unless `pfs fsck` finds the device clean.
    pub fn fsck_clean(&self) {
        self.pfs.fsck_clean(&self.pbd);
    }

    /// Mounts the device on `name` in the background (see
    /// [`crate::fuse::mount`]).
    pub fn mount(&self, hostid: &str, extra: &[&str], name: &str) -> crate::fuse::Mounted {
        crate::fuse::mount(&self.pfs, hostid, extra, &self.pbd, &self.mountpoint(name))
    }

    /// Mounts the device on `name` as a foreground child (see
    /// [`crate::fuse::mount_fg`]).
    pub fn mount_fg(&self, hostid: &str, name: &str, limit: Duration) -> crate::fuse::Mounted {
        crate::fuse::mount_fg(&self.pfs, hostid, &self.pbd, &self.mountpoint(name), limit)
    }
}
