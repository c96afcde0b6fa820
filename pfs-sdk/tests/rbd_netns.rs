//! Fencing across machines (issue 21): three hosts A, B and C, each in a
//! network namespace with its own `/var/run/pfs` and machine id
//! (`pfs_tests::netns`), share an RBD image of a cluster that listens on
//! the bridge between them. A writes numbered records through libpfsd
//! (`tests/c/fence.c`) while B and C follow; A stops after a lease check,
//! is cut off from the cluster and from B, and resumed, so its write goes
//! out into the cut and stays in flight; B takes over with force and writes; A is
//! healed. A is cut off twice: once by a packet filter in the bridge that
//! drops what passes between A and the cluster or B (C still reaches A),
//! once by taking its link down. Every record A acknowledged is on the image, nothing A wrote
//! after the takeover lands (`rbd diff` against a snapshot), and C follows
//! B's writes. The same with a 2 s netem delay on A's link instead of the
//! cut, where the kernel has `sch_netem`; where not (here), with A's
//! traffic squeezed through a 2 KB/s token bucket, so each of its
//! requests and lease renewals takes seconds.
//!
//! Needs root, iproute2 and Ceph; otherwise each test prints a note and
//! passes.

#![allow(clippy::unwrap_used)]

mod common;

use common::records::{acked, all_there, collect, wait_line, Lines};
use common::{program, Link};
use pfs_tests::ceph::{self, Cluster};
use pfs_tests::cli::text;
use pfs_tests::failover::{signal, wait_stopped, Signal};
use pfs_tests::netns::Net;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

/// The lease every host uses.
const LEASE_MS: u32 = 2000;
/// Records B writes after taking over.
const B_RECORDS: usize = 20;

/// Children killed when the test ends, however it ends.
struct Reap(Vec<Child>);

impl Drop for Reap {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A command on host `k` of `net` with the cluster's client environment
/// and the lease.
fn on(net: &Net, k: usize, c: &Cluster, program: &std::path::Path) -> Command {
    let mut cmd = net.command(k, program);
    cmd.env("PFS_LEASE_MS", LEASE_MS.to_string())
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("PFS_DEVICE_DIR")
        .stdin(Stdio::null());
    for (k, v) in c.client_env() {
        cmd.env(k, v);
    }
    cmd
}

/// Starts `cmd` with its stdout collected.
fn start(cmd: &mut Command, reap: &mut Reap) -> Lines {
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let lines = collect(child.stdout.take().unwrap());
    reap.0.push(child);
    lines
}

/// How host A is separated from the others, and undone.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// A packet filter in the bridge drops every frame between A and the
    /// cluster and between A and B; C still reaches A.
    Partition,
    /// A's link down: nothing reaches A or leaves it.
    Cut,
    /// Every packet to and from A delayed by this many milliseconds.
    Delay(u32),
    /// At most this many bytes per second to and from A: each request
    /// of A's takes seconds (where the kernel has no netem).
    Throttle(u32),
}

/// A writes, B and C follow; `fault` separates A; B takes over and
/// writes; A comes back. Panics unless every record A acknowledged is on
/// image `image`, none after the takeover, nothing of A's lands after it,
/// and C follows B.
fn scenario(net: &Net, c: &Cluster, fault: Fault, image: &str) {
    let pbd = c.create_image(image, "20G");
    let pfs = c.pfs(image).lease_ms(LEASE_MS);
    pfs.ok(&["mkfs", &pbd]);
    let fence = program("fence", Link::Shared);
    let pfs_bin = pfs.bin().to_owned();
    let mut reap = Reap(Vec::new());
    // B and C follow; A writes.
    let b_follow = start(
        on(net, 1, c, &fence).args([&pbd, "2", "follow", "rec-a"]),
        &mut reap,
    );
    let c_follow = start(
        on(net, 2, c, &fence).args([&pbd, "3", "follow", "rec-a", "rec-b"]),
        &mut reap,
    );
    // A stops itself after the lease check of its 120th write (some 20
    // records in), before the write is issued.
    let a = start(
        on(net, 0, c, &fence)
            .env("PFS_TEST_STOP_AT", "admitted:120")
            .args([&pbd, "1", "write", "a", "100000"]),
        &mut reap,
    );
    let a_pid: u32 = wait_line(&a, "pid a ")
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        wait_stopped(a_pid),
        "A ended before its 120th write: {:?}",
        a.lock()
            .unwrap()
            .iter()
            .map(|(_, l)| l.clone())
            .collect::<Vec<_>>()
    );
    wait_line(&b_follow, "seen rec-a ");
    wait_line(&c_follow, "seen rec-a ");
    // A loses the cluster and B, then goes on: the write it was about to
    // issue goes out into the cut (or the delay) and stays in flight.
    let faulted = Instant::now();
    match fault {
        Fault::Partition => net.partition(0, &[1]).unwrap(),
        Fault::Cut => net.cut(0).unwrap(),
        Fault::Delay(ms) => net.delay(0, ms).unwrap(),
        Fault::Throttle(rate) => net.throttle(0, rate).unwrap(),
    }
    signal(a_pid, Signal::SIGCONT);
    std::thread::sleep(std::time::Duration::from_millis(300));
    // B takes over with force, then writes records of its own.
    let o = on(net, 1, c, &pfs_bin)
        .args(["-H", "2", "--force", "touch", &format!("/{pbd}/taken")])
        .output()
        .unwrap();
    assert!(o.status.success(), "B's takeover failed: {}", text(&o));
    let took_over = Instant::now();
    let o = on(net, 1, c, &fence)
        .args([&pbd, "2", "write", "b", &B_RECORDS.to_string()])
        .output()
        .unwrap();
    let b_out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success() && b_out.contains(&format!("ack b {}", B_RECORDS - 1)),
        "B's writes failed: {}",
        text(&o)
    );
    // C follows B.
    let full = format!("seen rec-b {}", B_RECORDS * 4096);
    wait_line(&c_follow, &full);
    c.snapshot(image, "b-wrote");
    // A comes back: whatever it had in flight, and anything after, is
    // refused by the OSDs.
    match fault {
        Fault::Partition => net.rejoin(0).unwrap(),
        Fault::Cut => net.heal(0).unwrap(),
        Fault::Delay(_) | Fault::Throttle(_) => net.undelay(0).unwrap(),
    }
    wait_line(&a, "fail a ");
    let a_lines = a.lock().unwrap().clone();
    let a_acked = acked(&a_lines, 'a');
    let late = a_acked.iter().filter(|(t, _)| *t >= took_over).count();
    let changed = c.changed_since(image, "b-wrote");
    let file = pfs.ok_bytes(&["read", &format!("/{pbd}/rec-a")]);
    all_there(&file, 'a', &a_acked);
    let last = a_lines.last().map(|(_, l)| l.clone()).unwrap_or_default();
    eprintln!(
        "{fault:?}: A acknowledged {} records ({} after the fault), lost 0, landed after the \
         takeover {}; A ended with {last:?}; C followed B to {B_RECORDS} records",
        a_acked.len(),
        a_acked.iter().filter(|(t, _)| *t >= faulted).count(),
        if changed == "[]" { "0" } else { &changed }
    );
    assert_eq!(late, 0, "A acknowledged records after B took over");
    assert_eq!(changed, "[]", "A's writes landed after B took over");
    drop(reap);
    pfs.fsck_clean(&pbd);
}

#[test]
fn hosts_in_network_namespaces_fence_a_deposed_writer() {
    if !common::can_build() {
        return;
    }
    let net = match Net::new(&["a", "b", "c"]) {
        Ok(n) => n,
        Err(why) => {
            pfs_tests::skipped(&format!("no network namespaces here: {why}"));
            return;
        }
    };
    let Some(c) = ceph::cluster_on(&net.gateway) else {
        return;
    };
    // The packet filter, tried first and undone at once.
    match net.partition(0, &[1]).and_then(|()| net.rejoin(0)) {
        Ok(()) => scenario(&net, c, Fault::Partition, "netns-partition"),
        Err(why) => {
            pfs_tests::skipped(&format!("the packet-filter partition: {why}"));
        }
    }
    scenario(&net, c, Fault::Cut, "netns-cut");
    // A 2 s delay each way stretches A's writes and renewals past its
    // lease and the margin; tried on A's link first, undone at once.
    match net.delay(0, 2000).and_then(|()| net.undelay(0)) {
        Ok(()) => scenario(&net, c, Fault::Delay(2000), "netns-delay"),
        Err(why) => {
            // Without netem, a token bucket of 2 KB/s on A's link: each
            // 4 KiB record, and each renewal of A's lease, takes seconds.
            eprintln!(
                "netem is not available ({why}): A's traffic is throttled to 2 KB/s instead of delayed"
            );
            match net.throttle(0, 2000).and_then(|()| net.undelay(0)) {
                Ok(()) => scenario(&net, c, Fault::Throttle(2000), "netns-throttle"),
                Err(why) => {
                    pfs_tests::skipped(&format!("the delay and throttle parts: {why}"));
                }
            }
        }
    }
}
