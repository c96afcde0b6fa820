//! A device that fails flushes and reads on request: a failed flush stops
//! every later write of the mount (the device gets no further write at
//! all) until it is mounted again, and a failed read is an error, never a
//! panic or a half-loaded state.

#![allow(clippy::unwrap_used)]

use pfs_core::mkfs::{mkfs, MkfsOptions};
use pfs_core::mount::{Mode, Mount, MountOptions};
use pfs_core::sim::FailingDevice;
use pfs_core::{CoreError, Device};
use pfs_format::layout::{CHUNK_SIZE, MIN_LOG_SIZE};
use std::sync::Arc;

fn comps(p: &str) -> Vec<String> {
    p.split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

fn device() -> Arc<FailingDevice> {
    let dev = Arc::new(FailingDevice::new("failing", CHUNK_SIZE));
    mkfs(
        dev.as_ref(),
        &MkfsOptions {
            log_size: MIN_LOG_SIZE,
            ..MkfsOptions::default()
        },
    )
    .unwrap();
    dev
}

fn opts(hostid: u64) -> MountOptions {
    MountOptions {
        hostid,
        lease_ms: 60_000,
        ..MountOptions::default()
    }
}

fn names(m: &Mount) -> Vec<String> {
    m.read_dir(0)
        .unwrap()
        .into_iter()
        .map(|e| String::from_utf8_lossy(&e.name).into_owned())
        .collect()
}

#[test]
fn failed_flush_stops_all_later_writes_until_remount() {
    let dev = device();
    let w = Mount::open_with(dev.clone() as Arc<dyn Device>, Mode::ReadWrite, &opts(1)).unwrap();
    w.mkdir(&comps("/ok"), false, "/ok").unwrap();
    let ino = w.create(&comps("/ok/f"), true, "/ok/f").unwrap();
    w.pwrite(ino, 0, b"before").unwrap();

    dev.fail_sync_after(1);
    match w.mkdir(&comps("/bad"), false, "/bad") {
        Err(CoreError::Io { op, .. }) => assert_eq!(op, "flush"),
        other => panic!("a failed flush must fail the commit: {other:?}"),
    }
    // The disk is fine again, but the mount no longer trusts what it wrote:
    // every kind of change is refused and nothing reaches the device.
    dev.heal();
    let writes = dev.writes();
    let fenced = |r: pfs_core::Result<()>, what: &str| match r {
        Err(CoreError::Fenced { .. }) => {}
        other => panic!("{what} after a failed flush: {other:?}"),
    };
    fenced(
        w.mkdir(&comps("/bad2"), false, "/bad2").map(|_| ()),
        "mkdir",
    );
    fenced(w.pwrite(ino, 0, b"after!").map(|_| ()), "pwrite");
    fenced(w.truncate_ino(ino, 0), "truncate");
    fenced(w.unlink(&comps("/ok/f"), "/ok/f"), "unlink");
    fenced(w.checkpoint(), "checkpoint");
    assert_eq!(dev.writes(), writes, "a fenced mount wrote to the device");
    // Reads still work on the stopped mount, and show the last commit.
    assert_eq!(names(&w), vec![".pfs-paxos", ".pfs-journal", "ok"]);
    drop(w);

    // A new mount replays what was committed and writes again.
    let w = Mount::open_with(dev.clone() as Arc<dyn Device>, Mode::ReadWrite, &opts(1)).unwrap();
    assert_eq!(names(&w), vec![".pfs-paxos", ".pfs-journal", "ok"]);
    let mut buf = [0u8; 6];
    assert_eq!(w.read(ino, 0, &mut buf).unwrap(), 6);
    assert_eq!(&buf, b"before");
    w.mkdir(&comps("/again"), false, "/again").unwrap();
    drop(w);
    let r = Mount::open_with(dev as Arc<dyn Device>, Mode::ReadOnly, &opts(2)).unwrap();
    assert_eq!(names(&r), vec![".pfs-paxos", ".pfs-journal", "ok", "again"]);
    assert!(r.fsck().unwrap().is_clean());
}

#[test]
fn failed_reads_are_errors_at_every_step() {
    let dev = device();
    {
        let w =
            Mount::open_with(dev.clone() as Arc<dyn Device>, Mode::ReadWrite, &opts(1)).unwrap();
        let ino = w.create(&comps("/f"), true, "/f").unwrap();
        w.pwrite(ino, 0, &[7u8; 5000]).unwrap();
    }
    // Fail the k-th read of a mount and a file read, for every k the
    // whole sequence makes: each is an IO error, then healing recovers.
    let mut k = 1;
    loop {
        dev.fail_read_after(k);
        let r = Mount::open_with(dev.clone() as Arc<dyn Device>, Mode::ReadOnly, &opts(2))
            .and_then(|m| {
                let ino = m.resolve(&comps("/f"), false, "/f")?;
                let mut buf = vec![0u8; 5000];
                m.read(ino, 0, &mut buf)?;
                Ok(buf)
            });
        dev.heal();
        match r {
            Ok(buf) => {
                assert_eq!(buf, vec![7u8; 5000]);
                break;
            }
            Err(CoreError::Io { op, .. }) => assert_eq!(op, "read", "k = {k}"),
            Err(e) => panic!("read {k} failing gave {e}"),
        }
        k += 1;
        assert!(k < 10_000, "the sequence never ends");
    }
    assert!(k > 3, "mount and read take several reads ({k})");
}
