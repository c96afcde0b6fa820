//! Fencing at the cluster (issue 21): a writer of an RBD image stalled
//! after its lease check, whose host another host takes the writer lease
//! over from with `--force`, is blocklisted before the taker writes, so
//! nothing it writes when it resumes lands on the image (checked with
//! `rbd diff` against a snapshot taken after the takeover).
//!
//! On a real one-machine cluster (`pfs_tests::ceph`); where Ceph is not
//! installed or the cluster does not start, each test prints a note and
//! passes.

#![allow(clippy::unwrap_used)]

mod common;

use pfs_tests::ceph::{self, Cluster};
use pfs_tests::cli::{text, Pfs};
use pfs_tests::failover::{signal, Signal};
use std::process::Child;

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
    let regs = c.registered_writers("stalled-tool");
    assert_eq!(regs.len(), 1, "the stalled writer registered: {regs:?}");
    assert!(regs[0].0.starts_with("pfs.writer.1."), "{regs:?}");
    let addr = regs[0].1.split_whitespace().next().unwrap().to_owned();
    // Host 2 takes over with force once host 1's heartbeat is silent.
    let o = pfs.run_with_input(
        &["-H", "2", "--force", "write", &format!("/{pbd}/d/taken")],
        b"taker",
    );
    assert!(o.status.success(), "the takeover failed: {}", text(&o));
    // Host 1's client is cut off and out of the registry; the taker
    // unregistered at its unmount.
    assert!(c.registered_writers("stalled-tool").is_empty());
    let listed = c.blocklist();
    assert!(listed.contains(&addr), "{addr} not blocklisted: {listed}");
    c.snapshot("stalled-tool", "taken");
    // The stalled write is issued now, and refused by the OSDs.
    let o = resume(writer);
    assert!(
        !o.status.success(),
        "the deposed writer succeeded: {}",
        text(&o)
    );
    assert_eq!(
        c.changed_since("stalled-tool", "taken"),
        "[]",
        "the deposed writer's write landed after the takeover"
    );
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
