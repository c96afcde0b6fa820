//! What an operator meets around the commands themselves: help, shell
//! completions and manual pages, `--json` failures, colours, progress on
//! stderr, and exit codes and messages that are the same for the same kind
//! of error (issue 20, items 5 to 8 and 11).

#![allow(clippy::unwrap_used)]

use pfs_tests::cli::{assert_success, Pfs};
use pfs_tests::device::Scratch;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// A device directory of its own, removed at the end, and the tool on it.
fn setup(name: &str) -> (Scratch, Pfs) {
    let dir = Scratch::new(&format!("ux-cli-{name}"));
    let pfs = Pfs::new(&dir);
    (dir, pfs)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ------------------------------------------------- help, completions, man

#[test]
fn help_completions_and_man_pages() {
    let (dir, s) = setup("help");
    // `pfs help <command>` is `pfs <command> --help`.
    let help = s.ok(&["help", "mkfs"]);
    assert_eq!(help, s.ok(&["mkfs", "--help"]));
    assert!(help.contains("--num-users"), "{help}");
    assert!(s.ok(&["help"]).contains("mkfs"));
    let o = s.run(&["help", "frobnicate"]);
    assert!(!o.status.success());

    // A completion script for each shell; bash's registers itself.
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = s.ok(&["completions", shell]);
        assert!(script.contains("mkfs"), "{shell}: {script}");
    }
    let script = s.ok(&["completions", "bash"]);
    let mut bash = Command::new("bash")
        .args(["-c", "source /dev/stdin && complete -p pfs"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    bash.stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let o = bash.wait_with_output().unwrap();
    assert!(o.status.success());
    assert!(text(&o.stdout).contains("pfs"), "{}", text(&o.stdout));
    assert!(!s.run(&["completions", "tcsh"]).status.success());

    // pfs(1) on stdout; with --dir, one page per command too.
    let page = s.ok(&["man"]);
    assert!(page.contains(".TH pfs 1"), "{page}");
    assert!(page.contains("mkfs") && page.contains("fscp"));
    let dir = dir.join("man1");
    let listed = s.ok(&["man", "--dir", dir.to_str().unwrap()]);
    for name in ["pfs.1", "pfs-mkfs.1", "pfs-cp.1", "pfs-archive-push.1"] {
        let p = dir.join(name);
        assert!(p.is_file(), "{name} missing; listed: {listed}");
        assert!(listed.lines().any(|l| Path::new(l) == p), "{listed}");
    }
    let mkfs = fs::read_to_string(dir.join("pfs-mkfs.1")).unwrap();
    assert!(mkfs.contains(".TH pfs-mkfs 1") && mkfs.contains("num\\-users"));
}

// ------------------------------------------------------------ --json

#[test]
fn json_failures_print_one_json_object() {
    let (dir, s) = setup("json");
    dir.formatted("nvme1n1", 1);
    dir.device("nvme9n1", 1);
    let cases: &[(&[&str], &str, Option<i64>)] = &[
        (&["--json", "ls", "/nvme1n1/nope"], "ls", Some(2)),
        (&["ls", "--json", "/nvme1n1/nope"], "ls", Some(2)),
        (&["--json", "stat", "/nvme1n1/nope"], "stat", Some(2)),
        (&["--json", "tree", "/nvme1n1/nope"], "tree", Some(2)),
        (&["du", "--json", "/nvme1n1/nope"], "du", Some(2)),
        (&["--json", "stat", "nvme1n1"], "stat", Some(22)),
        (&["--json", "info", "nvme9n1"], "info", Some(5)),
        (&["--json", "fsck", "nvme9n1"], "fsck", Some(5)),
        (
            &["--json", "usedinfo", "-t", "b", "nvme9n1"],
            "usedinfo",
            Some(5),
        ),
        (&["--json", "ls", "/nosuchdev/"], "ls", None),
        // Usage errors too: a command without a JSON form, a missing path.
        (&["--json", "dumpfs", "nvme1n1"], "dumpfs", Some(22)),
        (&["dumpfs", "--json", "nvme1n1"], "dumpfs", Some(22)),
        (&["--json", "ls"], "ls", Some(22)),
        (&["-C", "foo", "ls", "--json", "/nvme1n1/"], "ls", Some(22)),
    ];
    for (args, command, errno) in cases {
        let o = s.run(args);
        let code = o.status.code().unwrap();
        assert_ne!(code, 0, "pfs {args:?}");
        assert!(
            !o.stderr.is_empty(),
            "pfs {args:?}: the message goes to stderr too"
        );
        let out = text(&o.stdout);
        assert_eq!(out.lines().count(), 1, "pfs {args:?}: one line: {out}");
        let v: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("pfs {args:?}: not JSON ({e}): {out}"));
        assert_eq!(v["command"], *command, "{out}");
        assert!(!v["error"].as_str().unwrap().is_empty(), "{out}");
        assert!(v["errno"].as_i64().unwrap() > 0, "{out}");
        if let Some(errno) = errno {
            assert_eq!(v["errno"], *errno, "pfs {args:?}: {out}");
        }
        assert_eq!(v["exit"], code, "{out}");
    }
    // A success is still the document.
    let v: serde_json::Value = serde_json::from_str(&s.ok(&["ls", "--json", "/nvme1n1/"])).unwrap();
    assert_eq!(v["entries"].as_array().unwrap().len(), 2);

    // --json is in the help of the commands that take it, and only there.
    for c in ["ls", "stat", "tree", "du", "info", "fsck", "usedinfo"] {
        assert!(s.ok(&[c, "--help"]).contains("--json"), "{c}");
    }
    for c in ["mkfs", "touch", "read", "cp", "dumpfs", "flushlog"] {
        assert!(!s.ok(&[c, "--help"]).contains("--json"), "{c}");
    }
    assert!(!s.ok(&["--help"]).contains("--json"));
}

// ------------------------------------------------------------ colours

/// `pfs write` with `input` on stdin and `NO_COLOR` set to `no_color`
/// (unset when `None`).
fn write_with(dir: &Path, s: &Pfs, path: &str, no_color: Option<&str>) -> Output {
    let input = dir.join("input");
    fs::write(&input, b"hello\n").unwrap();
    let s = match no_color {
        Some(v) => s.clone().env("NO_COLOR", v),
        None => s.clone(),
    };
    s.run_with_file(&["write", path], &input)
}

#[test]
fn write_honours_no_color() {
    let (dir, s) = setup("color");
    dir.formatted("nvme1n1", 1);
    // The reference's bytes by default, into a pipe too (scripts compare
    // them), and with NO_COLOR empty (the convention: set and not empty).
    let coloured = b"\x1b[40;32m[   OK   ]\x1b[0m Write 0 offset, 6 bytes to file /nvme1n1/f\n";
    for v in [None, Some("")] {
        let o = write_with(&dir, &s, "/nvme1n1/f", v);
        assert!(o.status.success());
        assert_eq!(o.stdout, coloured, "NO_COLOR={v:?}: {}", text(&o.stdout));
    }
    let o = write_with(&dir, &s, "/nvme1n1/f", Some("1"));
    assert!(o.status.success());
    assert_eq!(
        text(&o.stdout),
        "[   OK   ] Write 0 offset, 6 bytes to file /nvme1n1/f\n"
    );
    // The failure line too: fill the device, then write.
    let info: serde_json::Value =
        serde_json::from_str(&s.ok(&["info", "--json", "nvme1n1"])).unwrap();
    let free = info["blktag"]["free"].as_u64().unwrap();
    s.ok(&["touch", "/nvme1n1/filler"]);
    s.ok(&[
        "fallocate",
        "-l",
        &(free * (4 << 20)).to_string(),
        "/nvme1n1/filler",
    ]);
    let fail = ", errinfo=No space left on device\n";
    let o = write_with(&dir, &s, "/nvme1n1/g", None);
    assert!(!o.status.success());
    assert_eq!(
        text(&o.stdout),
        format!("\x1b[40;31m[  FAIL  ]\x1b[0m Write 0 offset, -1 bytes to file /nvme1n1/g{fail}")
    );
    let o = write_with(&dir, &s, "/nvme1n1/g", Some("yes"));
    assert!(!o.status.success());
    assert_eq!(
        text(&o.stdout),
        format!("[  FAIL  ] Write 0 offset, -1 bytes to file /nvme1n1/g{fail}")
    );
}

// ------------------------------------------------- exit codes, messages

#[test]
fn one_exit_code_per_kind_of_error_and_messages_that_say_what_to_do() {
    let (dir, s) = setup("exits");
    let dev = dir.formatted("nvme1n1", 1);
    dir.device("nvme9n1", 1);
    s.ok(&["mkdir", "/nvme1n1/d"]);
    s.ok(&["touch", "/nvme1n1/d/f"]);
    let fails = |args: &[&str], code: i32| -> String {
        let o = s.run(args);
        assert_eq!(
            o.status.code(),
            Some(code),
            "pfs {args:?}: {}",
            text(&o.stderr)
        );
        text(&o.stderr)
    };

    // An argument that is not /<pbd>/<path>: 22, whatever is wrong with it.
    for args in [
        &["ls", "/nvme1n1"][..],
        &["ls", "nvme1n1"],
        &["stat", "nvme1n1/d"],
        &["stat", "relative.txt"],
        &["ls", "/d"],
    ] {
        fails(args, 22);
    }
    // A PBD argument given as a path: 22, and what to type instead.
    for (args, bare) in [
        (&["fsck", "/nvme1n1/"][..], "pfs fsck nvme1n1"),
        (&["info", "/nvme1n1"], "pfs info nvme1n1"),
        (&["dumpfs", "nvme1n1/"], "pfs dumpfs nvme1n1"),
    ] {
        let err = fails(args, 22);
        assert!(err.contains(bare), "pfs {args:?}: {err}");
    }

    // A directory where a file is needed: 235, cp's code in the reference.
    let local = dir.join("out");
    for args in [
        &["cp", "/nvme1n1/d", local.to_str().unwrap()][..],
        &["rm", "/nvme1n1/d"],
        &["read", "/nvme1n1/d"],
        &["truncate", "-l", "1", "/nvme1n1/d"],
    ] {
        fails(args, 235);
    }
    s.ok(&["rm", "-r", "/nvme1n1/d"]);

    // A blank device: not formatted, and how to format it.
    for args in [
        &["ls", "/nvme9n1/"][..],
        &["info", "nvme9n1"],
        &["fsck", "nvme9n1"],
        &["growfs", "nvme9n1"],
    ] {
        let err = fails(args, 5);
        assert!(
            err.contains("not formatted") && err.contains("run 'pfs mkfs nvme9n1'"),
            "pfs {args:?}: {err}"
        );
    }

    // A missing mount point is named as missing.
    let mp = dir.join("no-such-mount-point");
    let o = s.run(&["mount", "-f", "nvme1n1", mp.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains("does not exist") && !err.contains("not a directory"),
        "{err}"
    );

    // -H takes what the help says: 1 to 127 (0, the default, too).
    let help = s.ok(&["--help"]);
    assert!(help.contains("1 to 127"), "{help}");
    fails(&["-H", "128", "ls", "/nvme1n1/"], 1);
    s.ok(&["-H", "1", "ls", "/nvme1n1/"]);

    // growfs works out -o and -n from the device and its filesystem.
    pfs_tests::device::sparse(&dev, 20 << 30);
    let out = s.ok(&["growfs", "nvme1n1"]);
    assert!(
        out.contains("Init chunk 1") && out.ends_with("pfs growfs succeeds!\n"),
        "{out}"
    );
    let info: serde_json::Value =
        serde_json::from_str(&s.ok(&["info", "--json", "nvme1n1"])).unwrap();
    assert_eq!(info["nchunk"], 2);
    let before = pfs_tests::file_digest(&dev);
    let err = fails(&["growfs", "nvme1n1"], 234);
    assert!(err.contains("nothing to grow"), "{err}");
    assert_eq!(
        pfs_tests::file_digest(&dev),
        before,
        "a refused growfs wrote"
    );
    s.ok(&["fsck", "nvme1n1"]);
}

// ------------------------------------------------------------ progress

/// Bytes of a local test file.
fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Runs `args` with progress lines every millisecond; returns the output.
fn with_progress(s: &Pfs, args: &[&str], stdin: Option<&Path>) -> Output {
    let s = s.clone().env("PFS_PROGRESS_MS", "1");
    let o = match stdin {
        Some(p) => s.run_with_file(args, p),
        None => s.run(args),
    };
    assert_success(&format!("pfs {args:?}"), &o);
    o
}

/// Checks that stderr holds plain progress lines of `what` (no `\r`, no
/// escape codes) and ends with its `done` line, which contains `last`.
fn assert_lines(o: &Output, what: &str, last: &str) {
    let err = text(&o.stderr);
    assert!(
        !err.contains('\r') && !err.contains('\x1b'),
        "{what}: not plain lines: {err:?}"
    );
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with(&format!("pfs: {what}")))
        .collect();
    assert!(lines.len() >= 2, "{what}: no progress lines: {err}");
    let done = lines.last().unwrap();
    assert!(
        done.contains(": done: ") && done.contains(last),
        "{what}: last line {done:?} in {err}"
    );
}

#[test]
fn progress_is_plain_lines_on_stderr_when_it_is_not_a_terminal() {
    let (dir, s) = setup("lines");
    dir.formatted("nvme1n1", 2);
    dir.device("nvme2n1", 2);
    dir.device("nvme3n1", 2);
    let tree = dir.join("tree");
    fs::create_dir_all(tree.join("sub")).unwrap();
    for i in 0..3u8 {
        fs::write(tree.join(format!("f{i}")), pattern(i, 5 << 20)).unwrap();
    }
    fs::write(tree.join("sub/small"), b"small").unwrap();

    // cp -r: bytes and files; stdout keeps one line per file.
    let o = with_progress(&s, &["cp", "-r", tree.to_str().unwrap(), "/nvme1n1/"], None);
    assert_lines(&o, "cp", "4 files");
    let out = text(&o.stdout);
    assert_eq!(out.lines().count(), 4, "{out}");
    assert!(
        out.lines().all(|l| l.starts_with("copy file from ")),
        "{out}"
    );

    // fscp: stdout is lines (the counter's last state once, one line per
    // checked block), the counting goes to stderr.
    let o = with_progress(&s, &["fscp", "-c", "nvme1n1", "nvme2n1"], None);
    assert_lines(&o, "fscp: copying", "2 chunks done");
    assert_lines(&o, "fscp: checking", "blocks (100%)");
    let out = text(&o.stdout);
    assert!(!out.contains('\r'), "{out:?}");
    let counters: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("blocks have been copied"))
        .collect();
    assert_eq!(counters.len(), 1, "{out}");
    assert!(counters[0].ends_with(", 2 chunks are done"), "{out}");
    let checks = out
        .lines()
        .filter(|l| l.starts_with("crc check pass! crc="))
        .count();
    assert!(checks >= 10, "{out}");
    assert_eq!(out.matches("crc check pass!").count(), checks, "{out}");
    assert!(out.ends_with("stop 2 I/O workers\n[3] update nvme2n1 paxos leader successfully\npfs fscp successfully\n"), "{out}");

    // chunk backup and restore: bytes and chunks.
    let stream = dir.join("chunks.oss");
    let mut c = s.command(&["chunk", "-m", "backup", "-c", "0", "-e", "2", "nvme1n1"]);
    let o = c
        .env("PFS_PROGRESS_MS", "1")
        .stdout(fs::File::create(&stream).unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_lines(&o, "chunk backup nvme1n1 [0, 2)", "(100%), 2 chunks done");
    let o = with_progress(
        &s,
        &["chunk", "-m", "restore", "-c", "0", "-e", "2", "nvme3n1"],
        Some(&stream),
    );
    assert_lines(&o, "chunk restore nvme3n1 [0, 2)", "2 chunks done");
    s.ok(&["fsck", "nvme3n1"]);

    // rm -r: entries removed.
    let o = with_progress(&s, &["rm", "-r", "/nvme1n1/tree"], None);
    assert_lines(&o, "rm -r /nvme1n1/tree", "6 removed");

    // fsck: the time it takes. On this small device its work can end
    // before the ticker's first line when the machine is busy (the tests
    // run side by side), and work that short shows nothing: a few tries.
    let fsck = || with_progress(&s, &["fsck", "nvme3n1"], None);
    let o = (0..4)
        .map(|_| fsck())
        .find(|o| !text(&o.stderr).is_empty())
        .unwrap_or_else(fsck);
    assert_lines(&o, "fsck nvme3n1", " s");

    // Work shorter than the interval (5 s by default) shows nothing, and
    // PFS_PROGRESS_MS=0 turns progress off.
    let o = s.run(&[
        "cp",
        tree.join("sub/small").to_str().unwrap(),
        "/nvme1n1/small",
    ]);
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "{}",
        text(&o.stderr)
    );
    let o = s
        .command(&["fsck", "nvme3n1"])
        .env("PFS_PROGRESS_MS", "0")
        .output()
        .unwrap();
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "{}",
        text(&o.stderr)
    );
}

/// A pseudo-terminal: its master side, and its slave side for a child.
fn pty() -> (fs::File, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (-1, -1);
    let size = libc::winsize {
        ws_row: 30,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two descriptors into the given integers and
    // reads the window size; no name buffer or termios is passed.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and belong to nobody else.
    unsafe {
        (
            fs::File::from_raw_fd(master),
            std::os::fd::OwnedFd::from_raw_fd(slave),
        )
    }
}

/// Runs `c` with one of its outputs on a terminal; returns its output and
/// what the terminal showed.
fn on_terminal(mut c: Command, stderr_on_tty: bool) -> (Output, String) {
    use std::io::Read;
    let (mut master, slave) = pty();
    c.env("TERM", "xterm");
    if stderr_on_tty {
        c.stderr(slave).stdout(Stdio::piped());
    } else {
        c.stdout(slave).stderr(Stdio::piped());
    }
    let child = c.spawn().unwrap();
    // The slave's only copies are the child's now: its end closes the
    // terminal and the read below ends (EIO).
    drop(c);
    let reader = std::thread::spawn(move || {
        let mut shown = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            shown.extend_from_slice(&buf[..n]);
        }
        shown
    });
    let o = child.wait_with_output().unwrap();
    (o, text(&reader.join().unwrap()))
}

#[test]
fn a_bar_on_a_terminal_and_no_binary_stream_to_it() {
    let (dir, s) = setup("tty");
    dir.formatted("nvme1n1", 2);
    dir.device("nvme2n1", 2);

    // chunk -m backup refuses a terminal as its output: nothing written.
    let (o, shown) = on_terminal(
        s.command(&["chunk", "-m", "backup", "-c", "0", "nvme1n1"]),
        false,
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("terminal"), "{}", text(&o.stderr));
    assert!(shown.is_empty(), "{shown:?}");

    // fscp with stderr on a terminal: a bar there, stdout plain lines.
    let mut c = s.command(&["fscp", "nvme1n1", "nvme2n1"]);
    c.env("PFS_PROGRESS_MS", "1");
    let (o, shown) = on_terminal(c, true);
    assert!(o.status.success(), "{shown}");
    assert!(
        shown.contains("fscp: copying [") && shown.contains(" blocks"),
        "{shown:?}"
    );
    let out = text(&o.stdout);
    assert!(
        !out.contains('\r') && out.ends_with("pfs fscp successfully\n"),
        "{out:?}"
    );
}
