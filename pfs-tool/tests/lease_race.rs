//! Writers of two hosts at once, as real `pfs` processes on one sparse
//! device: simultaneous pairs never lose an acknowledged operation, a writer
//! stalled inside its commit past its lease is refused when it resumes, and
//! mkfs, chunk restore and fscp refuse a device with a live writer, also
//! one on another host.

#![allow(clippy::unwrap_used)]

use pfs_tests::cli::Pfs;
use pfs_tests::device::Scratch;
use pfs_tests::failover::{signal, Signal};
use std::fs;
use std::process::{Child, Output};

/// A scratch directory with a fresh device `nvme1n1`, and the tool on it.
fn device(name: &str) -> (Scratch, Pfs) {
    let dir = Scratch::new(&format!("lease-{name}"));
    let pfs = Pfs::new(&dir);
    pfs.mkfs_new("nvme1n1", 1, &["-f"]);
    (dir, pfs)
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

const PAIRS: usize = 300;

/// Runs `pfs -H 1 CMD... A` and `pfs -H 2 CMD... B` at once; the targets
/// of those that succeeded (the others must have been refused cleanly).
fn race(pfs: &Pfs, cmd: &[&str], a: String, b: String) -> Vec<String> {
    let start = |host: &str, target: &str| {
        let mut args = vec!["-H", host];
        args.extend_from_slice(cmd);
        args.push(target);
        pfs.command(&args).spawn().unwrap()
    };
    let (ca, cb) = (start("1", &a), start("2", &b));
    let mut acked = Vec::new();
    for (o, name) in [(finish(ca), a), (finish(cb), b)] {
        if o.status.success() {
            acked.push(name);
        } else {
            refused_cleanly(&o, &name);
        }
    }
    acked
}

/// [`race`]s of `PAIRS` pairs, the `i`-th on the targets `targets(i)`;
/// the targets of every command that succeeded.
fn races(pfs: &Pfs, cmd: &[&str], targets: impl Fn(usize) -> (String, String)) -> Vec<String> {
    let mut acked = Vec::new();
    for i in 0..PAIRS {
        let (a, b) = targets(i);
        acked.extend(race(pfs, cmd, a, b));
    }
    acked
}

#[test]
fn simultaneous_touch_pairs_lose_nothing_acknowledged() {
    let (_dir, pfs) = device("touch");
    let acked: Vec<String> = races(&pfs, &["touch"], |i| {
        (format!("/nvme1n1/a{i}"), format!("/nvme1n1/b{i}"))
    })
    .iter()
    .map(|name| name.trim_start_matches("/nvme1n1/").to_owned())
    .collect();
    let have = pfs.names("/nvme1n1/");
    let lost: Vec<_> = acked.iter().filter(|n| !have.contains(n)).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    assert!(acked.len() > PAIRS, "too few successes: {}", acked.len());
    eprintln!("touch pairs: {} of {} acknowledged", acked.len(), 2 * PAIRS);
    pfs.fsck_clean("nvme1n1");
}

#[test]
fn simultaneous_mkdir_p_pairs_lose_nothing_acknowledged() {
    let (_dir, pfs) = device("mkdir");
    let acked = races(&pfs, &["mkdir", "-p"], |i| {
        (format!("/nvme1n1/p{i}/x/y"), format!("/nvme1n1/q{i}/x/y"))
    });
    let top = pfs.names("/nvme1n1/");
    for path in &acked {
        let first = path.split('/').nth(2).unwrap();
        assert!(top.contains(&first.to_owned()), "{path}: lost");
        // The whole tree, and nothing of the other writer grafted into it.
        assert_eq!(pfs.names(&format!("/nvme1n1/{first}/")), vec!["x"]);
        assert_eq!(pfs.names(&format!("/nvme1n1/{first}/x/")), vec!["y"]);
    }
    assert!(acked.len() > PAIRS, "too few successes: {}", acked.len());
    pfs.fsck_clean("nvme1n1");
}

#[test]
fn simultaneous_write_pairs_lose_nothing_acknowledged() {
    let (dir, pfs) = device("write");
    let n = PAIRS;
    for i in 0..n {
        pfs.ok(&["touch", &format!("/nvme1n1/w1-{i}")]);
        pfs.ok(&["touch", &format!("/nvme1n1/w2-{i}")]);
    }
    let input = |host: u32, i: usize| -> std::path::PathBuf {
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
            let c = pfs
                .command(&["-H", &host.to_string(), "write", &path])
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
        let got = pfs.command(&["read", path]).output().unwrap();
        assert!(got.status.success());
        assert_eq!(got.stdout, fs::read(src).unwrap(), "{path}: wrong bytes");
    }
    assert!(acked.len() > n, "too few successes: {}", acked.len());
    pfs.fsck_clean("nvme1n1");
}

/// Host 1's `touch /nvme1n1/held`, stopped before its leader write while
/// it holds a lease of a minute.
fn held(pfs: &Pfs) -> Child {
    pfs.clone()
        .lease_ms(60_000)
        .stopped_at("before-leader", &["-H", "1", "touch", "/nvme1n1/held"])
}

/// A writer stopped at `point` inside its commit for longer than its lease;
/// another host takes over with --force and commits; the stalled writer
/// then resumes and must be refused, losing nothing of the new writer.
fn stalled_writer_is_refused(point: &str) {
    let (_dir, pfs) = device(point);
    pfs.ok(&["touch", "/nvme1n1/before"]);
    let stale = pfs
        .clone()
        .lease_ms(1000)
        .stopped_at(point, &["-H", "1", "mkdir", "/nvme1n1/stale"]);
    // Without --force the stalled holder is respected.
    let o = pfs
        .command(&["-H", "2", "touch", "/nvme1n1/refused"])
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
        let o = pfs
            .command(&["-H", "2", "--force", "mkdir", &format!("/nvme1n1/{name}")])
            .env("PFS_LEASE_MS", "1000")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    signal(stale.id(), Signal::SIGCONT);
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
    let have = pfs.names("/nvme1n1/");
    for want in ["before", "new1", "new2"] {
        assert!(have.contains(&want.to_owned()), "{want} lost: {have:?}");
    }
    assert!(!have.contains(&"stale".to_owned()));
    assert!(!have.contains(&"refused".to_owned()));
    pfs.fsck_clean("nvme1n1");
    // And the device keeps working.
    pfs.ok(&["-H", "1", "touch", "/nvme1n1/after"]);
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
    let (_dir, pfs) = device("mkfs");
    pfs.ok(&["touch", "/nvme1n1/keep"]);
    let writer = held(&pfs);
    for args in [
        &["mkfs", "-f", "nvme1n1"][..],
        &["growfs", "-o", "1", "-n", "1", "-f", "nvme1n1"][..],
    ] {
        let o = pfs.run(args);
        assert_eq!(
            o.status.code(),
            Some(16),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    assert!(pfs.names("/nvme1n1/").contains(&"keep".to_owned()));
    // Once the writer is gone, its lease is no obstacle on this machine.
    signal(writer.id(), Signal::SIGKILL);
    let _ = finish(writer);
    pfs.ok(&["mkfs", "-f", "nvme1n1"]);
    assert!(!pfs.names("/nvme1n1/").contains(&"keep".to_owned()));
}

/// Another host, simulated on this machine: a second device directory whose
/// `nvme1n1` is a symlink to the first one's, so both name one image while
/// their host-local lock files (`<dir>/.nvme1n1-paxos-hostid`) differ, as
/// on two machines sharing a disk. Only the writer lease in `.pfs-paxos`
/// can tell the second host that the first one is writing.
#[test]
fn restore_and_fscp_refuse_a_device_whose_writer_is_on_another_host() {
    let (host_a, a) = device("host-a");
    let host_b = Scratch::new("lease-host-b");
    let b = Pfs::new(&host_b);
    a.ok(&["touch", "/nvme1n1/keep"]);
    std::os::unix::fs::symlink(host_a.join("nvme1n1"), host_b.join("nvme1n1")).unwrap();
    // Host B's own device: the source of the copy and of a backup stream
    // (a small journal keeps both small).
    b.mkfs_new("nvme2n1", 1, &["-l", "33554432"]);
    let stream = host_b.join("chunk0.stream");
    let o = b
        .command(&["chunk", "-m", "backup", "-c", "0", "nvme2n1"])
        .stdout(fs::File::create(&stream).unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Host A's writer holds the lease, stopped inside a commit.
    let writer = held(&a);
    let image = host_a.join("nvme1n1");
    let before = pfs_tests::file_digest(&image);
    let restore = |host: &Pfs| {
        host.command(&["chunk", "-m", "restore", "-f", "-c", "0", "nvme1n1"])
            .stdin(fs::File::open(&stream).unwrap())
            .output()
            .unwrap()
    };
    let fscp = |host: &Pfs| host.run(&["fscp", "-f", "nvme2n1", "nvme1n1"]);
    for (what, o) in [("restore", restore(&b)), ("fscp", fscp(&b))] {
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
    assert!(a.names("/nvme1n1/").contains(&"keep".to_owned()));

    // Once the writer is gone its lease is no obstacle: both go through.
    signal(writer.id(), Signal::SIGKILL);
    let _ = finish(writer);
    let o = restore(&b);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = fscp(&b);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!a.names("/nvme1n1/").contains(&"keep".to_owned()));
    a.fsck_clean("nvme1n1");
}
