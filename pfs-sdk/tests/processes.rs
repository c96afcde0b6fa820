//! Several processes on one PBD through the C API: children forked by a
//! process that mounted, separately started writers with mixed host ids
//! and flags, a writer killed by SIGKILL mid-operation, a read-only
//! follower on another host id, and a remount that promotes a read-only
//! mount and the children forked before it. Each worker logs what the
//! library acknowledged; the verifier (`tests/c/workload.c`) checks every
//! acknowledged change byte for byte, and fsck checks the filesystem.

#![allow(clippy::unwrap_used)]

mod common;
use common::{assert_ok, program, Link, TestDev};
use pfs_tests::device::Scratch;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

/// `PFS_RDWR | PFS_PAXOS_BYFORCE`, as the database mounts.
const DB_FLAGS: &str = "0x200013";
/// `PFS_TOOL | PFS_RDWR`, as its tools mount.
const TOOL_RW: &str = "0x1013";
/// `PFS_RD`.
const RD: &str = "0x11";

/// Where the workers of one test log what the library acknowledged.
fn logdir(name: &str) -> Scratch {
    Scratch::new(&format!("sdk-logs-{name}"))
}

/// A fresh device and a log directory for test `name`, where the C
/// programs can be built.
fn setup(name: &str) -> Option<(TestDev, Scratch)> {
    common::can_build().then(|| (TestDev::new(), logdir(name)))
}

fn spawn(dev: &TestDev, args: &[&str]) -> Child {
    dev.command(&program("workload", Link::Shared))
        .arg(&dev.pbd)
        .args(args)
        .env("PFS_LEASE_MS", "1000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_ok(what: &str, c: Child) {
    let out = c.wait_with_output().unwrap();
    assert_ok(what, &out);
}

fn verify(dev: &TestDev, logs: &Path, lenient: &[&str]) -> String {
    let mut args = vec!["verify", "2", RD, logs.to_str().unwrap()];
    args.extend_from_slice(lenient);
    let out = dev.run(&program("workload", Link::Shared), &args);
    assert_ok("verify", &out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What a program that must have succeeded printed.
fn said_ok(what: &str, out: &std::process::Output) -> String {
    assert_ok(what, out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// [`verify`], which must count `workers` workers if given, then fsck.
fn verified(dev: &TestDev, logs: &Path, lenient: &[&str], workers: Option<usize>) {
    let said = verify(dev, logs, lenient);
    if let Some(n) = workers {
        assert!(said.contains(&format!("of {n} workers")), "{said}");
    }
    dev.fsck();
}

#[test]
fn forked_children_write_concurrently() {
    let Some((dev, logs)) = setup("fork") else {
        return;
    };
    let out = dev
        .command(&program("workload", Link::Static))
        .arg(&dev.pbd)
        .args(["fork", "1", DB_FLAGS, "8", "4000", logs.to_str().unwrap()])
        .output()
        .unwrap();
    let said = said_ok("fork workload", &out);
    assert!(said.contains("of 8 workers"), "{said}");
    verified(&dev, &logs, &[], None);
}

#[test]
fn separate_processes_write_concurrently() {
    let Some((dev, logs)) = setup("separate") else {
        return;
    };
    let l = logs.to_str().unwrap();
    let mut children = vec![
        spawn(&dev, &["work", "1", DB_FLAGS, "p1", "4000", l]),
        spawn(&dev, &["work", "1", DB_FLAGS, "p2", "4000", l]),
        spawn(&dev, &["work", "1", DB_FLAGS, "p3", "4000", l]),
    ];
    // A tool joins the host that writes, so it starts once the database
    // processes hold the lease (as tools run next to a running database).
    std::thread::sleep(Duration::from_millis(700));
    children.push(spawn(&dev, &["work", "0", TOOL_RW, "t1", "3000", l]));
    for (i, c) in children.into_iter().enumerate() {
        wait_ok(&format!("worker {i}"), c);
    }
    verified(&dev, &logs, &[], Some(4));
}

#[test]
fn a_writer_killed_mid_operation_loses_nothing_acknowledged() {
    let Some((dev, logs)) = setup("kill") else {
        return;
    };
    let l = logs.to_str().unwrap();
    let mut victim = spawn(&dev, &["work", "1", DB_FLAGS, "v", "0", l]);
    let other = spawn(&dev, &["work", "1", DB_FLAGS, "o", "3000", l]);
    std::thread::sleep(Duration::from_millis(1500));
    victim.kill().unwrap();
    let st = victim.wait().unwrap();
    assert!(!st.success(), "the victim ran to its end before the kill");
    wait_ok("surviving worker", other);
    // The next process recovers on its own and writes.
    let after = spawn(&dev, &["work", "1", DB_FLAGS, "n", "1000", l]);
    wait_ok("worker after the kill", after);
    verified(&dev, &logs, &["v"], Some(3));
}

#[test]
fn a_read_only_mount_on_another_host_follows_a_writer() {
    let Some((dev, logs)) = setup("follow") else {
        return;
    };
    let l = logs.to_str().unwrap();
    let writer = spawn(&dev, &["work", "1", DB_FLAGS, "a", "3000", l]);
    std::thread::sleep(Duration::from_millis(200));
    let follower = spawn(&dev, &["follow", "2", RD, l, "a"]);
    wait_ok("writer", writer);
    let out = follower.wait_with_output().unwrap();
    let said = said_ok("follower", &out);
    assert!(said.starts_with("followed"), "{said}");
    verified(&dev, &logs, &[], None);
}

#[test]
fn remount_promotes_the_process_and_children_forked_before() {
    if !common::can_build() {
        return;
    }
    for link in [Link::Shared, Link::Static] {
        let dev = TestDev::new();
        let logs = logdir(&format!("remount-{link:?}"));
        let setup = spawn(
            &dev,
            &["work", "1", DB_FLAGS, "s", "200", logs.to_str().unwrap()],
        );
        wait_ok("setup", setup);
        dev.passes("remount", link);
    }
}

#[test]
fn processes_appending_to_one_file_lose_no_bytes() {
    // Each append takes the end of the file and writes there as one step
    // among the processes of the host: none writes over another's record.
    let dev = TestDev::new();
    let append = program("append", Link::Shared);
    let writers: Vec<Child> = ["a", "b", "c"]
        .into_iter()
        .map(|tag| {
            dev.command(&append)
                .arg(&dev.pbd)
                .args(["write", "1", DB_FLAGS, tag, "600"])
                .env("PFS_LEASE_MS", "1000")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, c) in writers.into_iter().enumerate() {
        wait_ok(&format!("appender {i}"), c);
    }
    let out = dev.run(&append, &["check", "2", RD, "abc", "600"]);
    assert_ok("check", &out);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("1800 records"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    dev.fsck();
}
