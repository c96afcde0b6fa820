//! Fencing at the cluster (issue 21): a writer of an RBD image stalled
//! after its lease check, whose host another host takes the writer lease
//! over from with `--force`, is blocklisted before the taker writes, so
//! nothing it writes when it resumes lands on the image (checked with
//! `rbd diff` against a snapshot taken after the takeover).
//!
//! The same for the processes of one host through libpfsd
//! (`tests/c/fence.c`): an SDK program and its forked child, each with a
//! connection of its own, are both cut off by one takeover. And for
//! `mkfs -f` run once a stalled writer of another machine let its lease
//! run out: the writer is cut off before the image is formatted again.
//!
//! On a real one-machine cluster (`pfs_tests::ceph`); where Ceph is not
//! installed or the cluster does not start, each test prints a note and
//! passes.

#![allow(clippy::unwrap_used)]

mod common;

use common::records::{acked, all_there, collect, wait_line};
use common::{program, Link};
use pfs_tests::ceph::{self, Cluster};
use pfs_tests::cli::{text, Pfs};
use pfs_tests::failover::{signal, wait_stopped, Signal};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The lease of these tests: short, so the taker waits little.
const LEASE_MS: u32 = 1000;

/// A new image `name`, formatted; its PBD name and a runner for it with
/// the short lease.
fn formatted(c: &Cluster, name: &str) -> (String, Pfs) {
    let pbd = c.create_image(name, "20G");
    let pfs = c.pfs(name).lease_ms(LEASE_MS);
    pfs.ok(&["mkfs", &pbd]);
    (pbd, pfs)
}

/// Resumes `child` and waits for its end; its output.
fn resume(child: Child) -> std::process::Output {
    signal(child.id(), Signal::SIGCONT);
    child.wait_with_output().unwrap()
}

/// The cluster addresses of image `image`'s registered writers, after
/// checking that there are `n`, all of host 1.
fn host1_writers(c: &Cluster, image: &str, n: usize) -> Vec<String> {
    let regs = c.registered_writers(image);
    assert_eq!(regs.len(), n, "the stalled writers registered: {regs:?}");
    assert!(
        regs.iter().all(|(k, _)| k.starts_with("pfs.writer.1.")),
        "{regs:?}"
    );
    regs.iter()
        .map(|(_, v)| v.split_whitespace().next().unwrap().to_owned())
        .collect()
}

/// Panics unless image `image` has no registered writer left and every
/// one of `addrs` is on the cluster's blocklist.
fn cut_off(c: &Cluster, image: &str, addrs: &[String]) {
    assert!(c.registered_writers(image).is_empty());
    let listed = c.blocklist();
    for addr in addrs {
        assert!(
            listed.contains(addr.as_str()),
            "{addr} not blocklisted: {listed}"
        );
    }
}

/// Resumes the stalled writer `writer` and panics unless it fails and
/// nothing of image `image` changed since snapshot `snap`.
fn refused(c: &Cluster, image: &str, snap: &str, writer: Child) -> std::process::Output {
    let o = resume(writer);
    assert!(
        !o.status.success(),
        "the stalled writer succeeded: {}",
        text(&o)
    );
    assert_eq!(
        c.changed_since(image, snap),
        "[]",
        "the stalled writer's write landed after {snap}"
    );
    o
}

#[test]
fn a_writer_stalled_after_its_lease_check_is_fenced_by_the_taker() {
    let Some(c) = ceph::cluster() else {
        return;
    };
    let (pbd, pfs) = formatted(c, "stalled-tool");
    pfs.ok(&["mkdir", &format!("/{pbd}/d")]);
    // Host 1 stops after its first write passed the lease check, before
    // the write reaches the image (the window the lease cannot close).
    let writer = pfs.stopped_at("admitted", &["-H", "1", "touch", &format!("/{pbd}/d/late")]);
    let addrs = host1_writers(c, "stalled-tool", 1);
    // Host 2 takes over with force once host 1's heartbeat is silent.
    let o = pfs.run_with_input(
        &["-H", "2", "--force", "write", &format!("/{pbd}/d/taken")],
        b"taker",
    );
    assert!(o.status.success(), "the takeover failed: {}", text(&o));
    // Host 1's client is cut off and out of the registry; the taker
    // unregistered at its unmount.
    cut_off(c, "stalled-tool", &addrs);
    c.snapshot("stalled-tool", "taken");
    // The stalled write is issued now, and refused by the OSDs.
    let o = refused(c, "stalled-tool", "taken", writer);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("blocklisted"),
        "{}",
        text(&o)
    );
    assert_eq!(pfs.names(&format!("/{pbd}/d")), ["taken"]);
    assert_eq!(
        pfs.ok_bytes(&["read", &format!("/{pbd}/d/taken")]),
        b"taker"
    );
    pfs.fsck_clean(&pbd);
}

/// Two processes of host 1 (an SDK program and its forked child, each with
/// a cluster connection of its own) write numbered records; the parent
/// stops after a lease check, the child is stopped where it is; host 2
/// takes over with force; both are resumed. Every record acknowledged
/// before is on the image, none is acknowledged after, nothing they write
/// lands, and both are cut off by the one takeover.
#[test]
fn sdk_processes_of_a_deposed_host_are_all_fenced() {
    if !common::can_build() {
        return;
    }
    let Some(c) = ceph::cluster() else {
        return;
    };
    let (pbd, pfs) = formatted(c, "stalled-sdk");
    let mut cmd = Command::new(program("fence", Link::Shared));
    cmd.env("PFS_DEVICE_DIR", pfs.dir())
        .env("PFS_LEASE_MS", LEASE_MS.to_string())
        .env("PFS_TEST_STOP_AT", "admitted:40")
        .env_remove("LD_LIBRARY_PATH")
        .args([pbd.as_str(), "1", "pair", "2000"])
        .stdout(Stdio::piped());
    for (k, v) in c.client_env() {
        cmd.env(k, v);
    }
    let mut prog = cmd.spawn().unwrap();
    let lines = collect(prog.stdout.take().unwrap());
    let pid = |tag: &str| -> u32 {
        let l = wait_line(&lines, &format!("pid {tag} "));
        l.split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    let (parent, child) = (pid("p"), pid("c"));
    assert!(
        wait_stopped(parent),
        "the parent did not stop: {:?}",
        lines.lock().unwrap()
    );
    signal(child, Signal::SIGSTOP);
    assert!(wait_stopped(child), "the child ended early");
    let addrs = host1_writers(c, "stalled-sdk", 2);
    let o = pfs.run_with_input(
        &["-H", "2", "--force", "write", &format!("/{pbd}/taken")],
        b"taker",
    );
    assert!(o.status.success(), "the takeover failed: {}", text(&o));
    cut_off(c, "stalled-sdk", &addrs);
    c.snapshot("stalled-sdk", "taken");
    let resumed = Instant::now();
    signal(parent, Signal::SIGCONT);
    signal(child, Signal::SIGCONT);
    let st = prog.wait().unwrap();
    // The reader thread has the last lines once the pipe is closed.
    std::thread::sleep(Duration::from_millis(200));
    let lines = lines.lock().unwrap().clone();
    let show = || {
        lines
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(st.success(), "the program failed: {st}\n{}", show());
    assert_eq!(
        c.changed_since("stalled-sdk", "taken"),
        "[]",
        "a deposed process's write landed after the takeover"
    );
    let late: Vec<&str> = lines
        .iter()
        .filter(|(t, l)| *t >= resumed && l.starts_with("ack "))
        .map(|(_, l)| l.as_str())
        .collect();
    assert!(late.is_empty(), "acknowledged after the takeover: {late:?}");
    for tag in ['p', 'c'] {
        assert!(
            lines
                .iter()
                .any(|(_, l)| l.starts_with(&format!("fail {tag} "))),
            "process {tag} did not fail after the takeover:\n{}",
            show()
        );
        let acked = acked(&lines, tag);
        let file = pfs.ok_bytes(&["read", &format!("/{pbd}/rec-{tag}")]);
        all_there(&file, tag, &acked);
        eprintln!(
            "process {tag}: {} records acknowledged, lost 0, landed after the takeover 0",
            acked.len()
        );
    }
    assert_eq!(pfs.ok_bytes(&["read", &format!("/{pbd}/taken")]), b"taker");
    pfs.fsck_clean(&pbd);
}

/// `mkfs -f` of an image whose writer, on another machine, stalled after
/// its lease check and let its lease run out: the format waits out the
/// lease, cuts the writer off, and what the writer issues when it resumes
/// never lands in the new filesystem.
#[test]
fn mkfs_force_fences_a_writer_stalled_past_its_lease() {
    let Some(c) = ceph::cluster() else {
        return;
    };
    if !pfs_tests::is_root() || !pfs_tests::on_path("unshare") {
        pfs_tests::skipped("another machine needs root and unshare (a machine id of its own)");
        return;
    }
    let (pbd, pfs) = formatted(c, "stalled-mkfs");
    pfs.ok(&["mkdir", &format!("/{pbd}/d")]);
    // "Another machine": a machine id of its own (in a mount namespace)
    // and a device directory of its own for its host-lock files.
    let other = std::env::temp_dir().join(format!("pfs-other-machine-{}", std::process::id()));
    std::fs::create_dir_all(&other).unwrap();
    let mid = other.join("machine-id");
    std::fs::write(
        &mid,
        format!("{:032x}\n", 0x5ca1_ab1e_u64 + u64::from(std::process::id())),
    )
    .unwrap();
    let script = r#"mount --bind "$1" /etc/machine-id && shift && exec "$@""#;
    let remote = c.pfs("stalled-mkfs-other").lease_ms(LEASE_MS).under(&[
        "unshare",
        "-m",
        "sh",
        "-c",
        script,
        "sh",
        mid.to_str().unwrap(),
    ]);
    let writer = remote.stopped_at("admitted", &["-H", "1", "touch", &format!("/{pbd}/d/late")]);
    let addrs = host1_writers(c, "stalled-mkfs", 1);
    // This machine formats the image again; host 1's lease runs out first.
    let o = pfs.run(&["mkfs", "-f", &pbd]);
    assert!(o.status.success(), "mkfs -f failed: {}", text(&o));
    cut_off(c, "stalled-mkfs", &addrs);
    c.snapshot("stalled-mkfs", "formatted");
    refused(c, "stalled-mkfs", "formatted", writer);
    let names = pfs.names(&format!("/{pbd}/"));
    assert!(
        !names.iter().any(|n| n == "d"),
        "the old filesystem is back: {names:?}"
    );
    pfs.fsck_clean(&pbd);
    let _ = std::fs::remove_dir_all(&other);
}
