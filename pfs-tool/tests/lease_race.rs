//! Writers of two hosts at once, as real `pfs` processes on one sparse
//! device: simultaneous pairs never lose an acknowledged operation, a writer
//! stalled inside its commit past its lease is refused when it resumes, and
//! mkfs, chunk restore and fscp refuse a device with a live writer, also
//! one on another host.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const PFS: &str = env!("CARGO_BIN_EXE_pfs");

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pfs-lease-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn cmd(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(PFS);
    c.env("TZ", "UTC")
        .env_remove("PFS_TEST_STOP_AT")
        .arg("--device-dir")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn run(dir: &Path, args: &[&str]) -> Output {
    cmd(dir, args).output().unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let o = run(dir, args);
    assert!(
        o.status.success(),
        "pfs {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn device(dir: &Path) {
    fs::File::create(dir.join("nvme1n1"))
        .unwrap()
        .set_len(10 << 30)
        .unwrap();
    ok(dir, &["mkfs", "-f", "nvme1n1"]);
}

/// Names in a directory, as `pfs ls` prints them.
fn names(dir: &Path, path: &str) -> Vec<String> {
    ok(dir, &["ls", path])
        .lines()
        .filter(|l| !l.starts_with("total "))
        .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
        .collect()
}

fn finish(c: Child) -> Output {
    c.wait_with_output().unwrap()
}

/// The exit code of a losing contender must be a refusal, never a crash.
fn refused_cleanly(o: &Output, what: &str) {
    let code = o.status.code().unwrap_or(-1);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(code == 16 || code == 5, "{what}: exit {code} ({err})");
    assert!(!err.contains("panicked"), "{what}: {err}");
}

fn fsck_clean(dir: &Path) {
    let o = run(dir, &["fsck", "nvme1n1"]);
    assert!(
        o.status.success(),
        "fsck: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

const PAIRS: usize = 300;

#[test]
fn simultaneous_touch_pairs_lose_nothing_acknowledged() {
    let dir = scratch("touch");
    device(&dir);
    let mut acked = Vec::new();
    for i in 0..PAIRS {
        let (a, b) = (format!("/nvme1n1/a{i}"), format!("/nvme1n1/b{i}"));
        let ca = cmd(&dir, &["-H", "1", "touch", &a]).spawn().unwrap();
        let cb = cmd(&dir, &["-H", "2", "touch", &b]).spawn().unwrap();
        for (o, name) in [(finish(ca), a), (finish(cb), b)] {
            if o.status.success() {
                acked.push(name.trim_start_matches("/nvme1n1/").to_owned());
            } else {
                refused_cleanly(&o, &name);
            }
        }
    }
    let have = names(&dir, "/nvme1n1/");
    let lost: Vec<_> = acked.iter().filter(|n| !have.contains(n)).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    assert!(acked.len() > PAIRS, "too few successes: {}", acked.len());
    eprintln!("touch pairs: {} of {} acknowledged", acked.len(), 2 * PAIRS);
    fsck_clean(&dir);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn simultaneous_mkdir_p_pairs_lose_nothing_acknowledged() {
    let dir = scratch("mkdir");
    device(&dir);
    let mut acked = Vec::new();
    for i in 0..PAIRS {
        let (a, b) = (format!("/nvme1n1/p{i}/x/y"), format!("/nvme1n1/q{i}/x/y"));
        let ca = cmd(&dir, &["-H", "1", "mkdir", "-p", &a]).spawn().unwrap();
        let cb = cmd(&dir, &["-H", "2", "mkdir", "-p", &b]).spawn().unwrap();
        for (o, name) in [(finish(ca), a), (finish(cb), b)] {
            if o.status.success() {
                acked.push(name);
            } else {
                refused_cleanly(&o, &name);
            }
        }
    }
    let top = names(&dir, "/nvme1n1/");
    for path in &acked {
        let first = path.split('/').nth(2).unwrap();
        assert!(top.contains(&first.to_owned()), "{path}: lost");
        // The whole tree, and nothing of the other writer grafted into it.
        assert_eq!(names(&dir, &format!("/nvme1n1/{first}/")), vec!["x"]);
        assert_eq!(names(&dir, &format!("/nvme1n1/{first}/x/")), vec!["y"]);
    }
    assert!(acked.len() > PAIRS, "too few successes: {}", acked.len());
    fsck_clean(&dir);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn simultaneous_write_pairs_lose_nothing_acknowledged() {
    let dir = scratch("write");
    device(&dir);
    let n = PAIRS;
    for i in 0..n {
        ok(&dir, &["touch", &format!("/nvme1n1/w1-{i}")]);
        ok(&dir, &["touch", &format!("/nvme1n1/w2-{i}")]);
    }
    let input = |host: u32, i: usize| -> PathBuf {
        let p = dir.join(format!("in-{host}-{i}"));
        fs::write(&p, format!("host {host} write {i}\n").repeat(100 + i)).unwrap();
        p
    };
    let mut acked = Vec::new();
    for i in 0..n {
        let mut children = Vec::new();
        for host in [1u32, 2] {
            let path = format!("/nvme1n1/w{host}-{i}");
            let src = input(host, i);
            let c = cmd(&dir, &["-H", &host.to_string(), "write", &path])
                .stdin(fs::File::open(&src).unwrap())
                .spawn()
                .unwrap();
            children.push((c, path, src));
        }
        for (c, path, src) in children {
            let o = finish(c);
            if o.status.success() {
                acked.push((path, src));
            } else {
                refused_cleanly(&o, &path);
            }
        }
    }
    for (path, src) in &acked {
        let got = cmd(&dir, &["read", path]).output().unwrap();
        assert!(got.status.success());
        assert_eq!(got.stdout, fs::read(src).unwrap(), "{path}: wrong bytes");
    }
    assert!(acked.len() > n, "too few successes: {}", acked.len());
    fsck_clean(&dir);
    fs::remove_dir_all(&dir).unwrap();
}

/// Waits until process `pid` is stopped (state `T` in /proc).
fn wait_stopped(pid: u32) {
    let t0 = Instant::now();
    loop {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let state = stat.rsplit(')').next().unwrap().split_whitespace().next();
        if state == Some("T") {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "writer never stopped"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).unwrap();
}

/// A writer stopped at `point` inside its commit for longer than its lease;
/// another host takes over with --force and commits; the stalled writer
/// then resumes and must be refused, losing nothing of the new writer.
fn stalled_writer_is_refused(point: &str) {
    let dir = scratch(point);
    device(&dir);
    ok(&dir, &["touch", "/nvme1n1/before"]);
    let stale = cmd(&dir, &["-H", "1", "mkdir", "/nvme1n1/stale"])
        .env("PFS_TEST_STOP_AT", point)
        .env("PFS_LEASE_MS", "1000")
        .spawn()
        .unwrap();
    wait_stopped(stale.id());
    // Without --force the stalled holder is respected.
    let o = cmd(&dir, &["-H", "2", "touch", "/nvme1n1/refused"])
        .env("PFS_LEASE_MS", "1000")
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(16),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for name in ["new1", "new2"] {
        let o = cmd(
            &dir,
            &["-H", "2", "--force", "mkdir", &format!("/nvme1n1/{name}")],
        )
        .env("PFS_LEASE_MS", "1000")
        .output()
        .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    signal(stale.id(), nix::sys::signal::Signal::SIGCONT);
    let o = finish(stale);
    let err = String::from_utf8_lossy(&o.stderr);
    // Refused either as a stopped writer (5) or, when the stall came before
    // its first write, as "nothing was written, try again" (16).
    let code = o.status.code();
    assert!(
        code == Some(5) || code == Some(16),
        "late commit not refused: {err}"
    );
    assert!(
        err.contains("lease")
            || err.contains("nothing was written")
            || err.contains("another writer committed"),
        "{err}"
    );
    let have = names(&dir, "/nvme1n1/");
    for want in ["before", "new1", "new2"] {
        assert!(have.contains(&want.to_owned()), "{want} lost: {have:?}");
    }
    assert!(!have.contains(&"stale".to_owned()));
    assert!(!have.contains(&"refused".to_owned()));
    fsck_clean(&dir);
    // And the device keeps working.
    ok(&dir, &["-H", "1", "touch", "/nvme1n1/after"]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn writer_stalled_before_its_leader_write_is_refused() {
    stalled_writer_is_refused("before-leader");
}

#[test]
fn writer_stalled_at_commit_start_is_refused() {
    stalled_writer_is_refused("commit-start");
}

#[test]
fn mkfs_refuses_a_device_with_a_live_writer() {
    let dir = scratch("mkfs");
    device(&dir);
    ok(&dir, &["touch", "/nvme1n1/keep"]);
    let writer = cmd(&dir, &["-H", "1", "touch", "/nvme1n1/held"])
        .env("PFS_TEST_STOP_AT", "before-leader")
        .env("PFS_LEASE_MS", "60000")
        .spawn()
        .unwrap();
    wait_stopped(writer.id());
    for args in [
        &["mkfs", "-f", "nvme1n1"][..],
        &["growfs", "-o", "1", "-n", "1", "-f", "nvme1n1"][..],
    ] {
        let o = run(&dir, args);
        assert_eq!(
            o.status.code(),
            Some(16),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    assert!(names(&dir, "/nvme1n1/").contains(&"keep".to_owned()));
    // Once the writer is gone, its lease is no obstacle on this machine.
    signal(writer.id(), nix::sys::signal::Signal::SIGKILL);
    let _ = finish(writer);
    ok(&dir, &["mkfs", "-f", "nvme1n1"]);
    assert!(!names(&dir, "/nvme1n1/").contains(&"keep".to_owned()));
    fs::remove_dir_all(&dir).unwrap();
}

/// Another host, simulated on this machine: a second device directory whose
/// `nvme1n1` is a symlink to the first one's, so both name one image while
/// their host-local lock files (`<dir>/.nvme1n1-paxos-hostid`) differ, as
/// on two machines sharing a disk. Only the writer lease in `.pfs-paxos`
/// can tell the second host that the first one is writing.
#[test]
fn restore_and_fscp_refuse_a_device_whose_writer_is_on_another_host() {
    let host_a = scratch("host-a");
    let host_b = scratch("host-b");
    device(&host_a);
    ok(&host_a, &["touch", "/nvme1n1/keep"]);
    std::os::unix::fs::symlink(host_a.join("nvme1n1"), host_b.join("nvme1n1")).unwrap();
    // Host B's own device: the source of the copy and of a backup stream
    // (a small journal keeps both small).
    fs::File::create(host_b.join("nvme2n1"))
        .unwrap()
        .set_len(10 << 30)
        .unwrap();
    ok(&host_b, &["mkfs", "-l", "33554432", "nvme2n1"]);
    let stream = host_b.join("chunk0.stream");
    let o = cmd(&host_b, &["chunk", "-m", "backup", "-c", "0", "nvme2n1"])
        .stdout(fs::File::create(&stream).unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Host A's writer holds the lease, stopped inside a commit.
    let writer = cmd(&host_a, &["-H", "1", "touch", "/nvme1n1/held"])
        .env("PFS_TEST_STOP_AT", "before-leader")
        .env("PFS_LEASE_MS", "60000")
        .spawn()
        .unwrap();
    wait_stopped(writer.id());
    let image = host_a.join("nvme1n1");
    let before = pfs_tests::file_digest(&image);
    let restore = |dir: &Path| {
        cmd(dir, &["chunk", "-m", "restore", "-f", "-c", "0", "nvme1n1"])
            .stdin(fs::File::open(&stream).unwrap())
            .output()
            .unwrap()
    };
    let fscp = |dir: &Path| run(dir, &["fscp", "-f", "nvme2n1", "nvme1n1"]);
    for (what, o) in [("restore", restore(&host_b)), ("fscp", fscp(&host_b))] {
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(16), "{what} from host B: {err}");
        assert!(err.contains("live writer"), "{what}: {err}");
        assert!(!err.contains("panicked"), "{what}: {err}");
    }
    assert_eq!(
        before,
        pfs_tests::file_digest(&image),
        "a refused command wrote"
    );
    assert!(names(&host_a, "/nvme1n1/").contains(&"keep".to_owned()));

    // Once the writer is gone its lease is no obstacle: both go through.
    signal(writer.id(), nix::sys::signal::Signal::SIGKILL);
    let _ = finish(writer);
    let o = restore(&host_b);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = fscp(&host_b);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!names(&host_a, "/nvme1n1/").contains(&"keep".to_owned()));
    fsck_clean(&host_a);
    fs::remove_dir_all(&host_a).unwrap();
    fs::remove_dir_all(&host_b).unwrap();
}
