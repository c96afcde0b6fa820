//! A device that fails flushes and reads on request: a failed flush stops
//! every later write of the mount (the device gets no further write at
//! all) until it is mounted again, and a failed read is an error, never a
//! panic or a half-loaded state.

#![allow(clippy::unwrap_used)]

use pfs_core::testing::FailingDevice;
use pfs_core::{CoreError, Device};
use pfs_core::{Mode, Mount, MountOptions};
use pfs_format::layout::{CHUNK_SIZE, MIN_LOG_SIZE};
use pfs_tests::device;
use std::sync::Arc;

fn device() -> Arc<FailingDevice> {
    let dev = Arc::new(FailingDevice::new("failing", CHUNK_SIZE));
    device::mkfs(dev.as_ref(), MIN_LOG_SIZE);
    dev
}

fn opts(hostid: u64) -> MountOptions {
    device::host(hostid, 60_000)
}

fn names(m: &Mount) -> Vec<String> {
    device::names(m, "/")
}

#[test]
fn failed_flush_stops_all_later_writes_until_remount() {
    let dev = device();
    let w = Mount::open_with(dev.clone() as Arc<dyn Device>, Mode::ReadWrite, &opts(1)).unwrap();
    w.mkdir_path("/ok").unwrap();
    let ino = w.create_path("/ok/f", pfs_core::FileType::File).unwrap();
    w.write_at(ino, b"before", 0).unwrap();

    dev.fail_sync_after(1);
    match w.mkdir_path("/bad") {
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
    fenced(w.mkdir_path("/bad2").map(|_| ()), "mkdir");
    fenced(w.write_at(ino, b"after!", 0).map(|_| ()), "pwrite");
    fenced(w.truncate(ino, 0), "truncate");
    fenced(w.unlink_path("/ok/f"), "unlink");
    fenced(w.checkpoint(), "checkpoint");
    assert_eq!(dev.writes(), writes, "a fenced mount wrote to the device");
    // Reads still work on the stopped mount, and show the last commit.
    assert_eq!(names(&w), vec![".pfs-paxos", ".pfs-journal", "ok"]);
    drop(w);

    // A new mount replays what was committed and writes again.
    let w = Mount::open_with(dev.clone() as Arc<dyn Device>, Mode::ReadWrite, &opts(1)).unwrap();
    assert_eq!(names(&w), vec![".pfs-paxos", ".pfs-journal", "ok"]);
    let mut buf = [0u8; 6];
    assert_eq!(w.read_at(ino, &mut buf, 0).unwrap(), 6);
    assert_eq!(&buf, b"before");
    w.mkdir_path("/again").unwrap();
    drop(w);
    let r = Mount::open_with(dev as Arc<dyn Device>, Mode::ReadOnly, &opts(2)).unwrap();
    assert_eq!(names(&r), vec![".pfs-paxos", ".pfs-journal", "ok", "again"]);
    device::fsck_clean(&r);
}

/// An `fsync` whose device flush fails: what the flush was to make
/// durable may be lost (a device can drop its cache on a failed flush, and
/// a later flush that succeeds does not bring it back), so no later
/// `fsync` of the mount acknowledges anything and nothing more is written.
#[test]
fn a_failed_fsync_flush_is_never_followed_by_one_that_succeeds() {
    let dev = device();
    let w = Mount::open_with(dev.clone() as Arc<dyn Device>, Mode::ReadWrite, &opts(1)).unwrap();
    let ino = w.create_path("/f", pfs_core::FileType::File).unwrap();
    w.write_at(ino, &[1u8; 8192], 0).unwrap();
    w.sync().unwrap();
    // An overwrite commits nothing: only the fsync's flush covers it.
    w.write_at(ino, &[2u8; 8192], 0).unwrap();
    dev.fail_sync_after(1);
    match w.sync() {
        Err(CoreError::Io { op, .. }) => assert_eq!(op, "flush"),
        other => panic!("the failed flush must fail the fsync: {other:?}"),
    }
    dev.heal();
    match w.sync() {
        Err(CoreError::Fenced { .. }) => {}
        other => panic!("an fsync after a failed flush: {other:?}"),
    }
    let writes = dev.writes();
    match w.write_at(ino, &[3u8; 8192], 0) {
        Err(CoreError::Fenced { .. }) => {}
        other => panic!("a write after a failed flush: {other:?}"),
    }
    assert_eq!(
        dev.writes(),
        writes,
        "the stopped mount wrote to the device"
    );
    drop(w);
    // A new mount writes and flushes again.
    let w = Mount::open_with(dev as Arc<dyn Device>, Mode::ReadWrite, &opts(1)).unwrap();
    w.write_at(ino, &[4u8; 8192], 0).unwrap();
    w.sync().unwrap();
}

/// A shared mount (the C SDK's) whose share file cannot get its pages
/// (`/var/run/pfs` on a full tmpfs): an error when it mounts, not a
/// SIGBUS when the mapped file is first written.
#[test]
fn a_share_file_on_a_full_filesystem_is_an_error_not_a_crash() {
    if !pfs_tests::require_root() {
        return;
    }
    let scratch = pfs_tests::device::Scratch::new("full-share-dir");
    let tiny = scratch.subdir("tiny");
    std::fs::create_dir_all(&tiny).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&tiny)
        .status()
        .is_ok_and(|s| s.success());
    if !pfs_tests::skip_unless(mounted, "cannot mount a tmpfs") {
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(tiny.clone());
    // Fill it: whatever is left is less than the share file needs.
    let filler = std::fs::File::create(tiny.join("fill")).unwrap();
    let mut n = 0u64;
    while std::os::unix::fs::FileExt::write_at(&filler, &[1u8; 4096], n).is_ok() {
        n += 4096;
    }
    let dev = device();
    let opts = MountOptions {
        shared: true,
        share_path: Some(tiny.join("share")),
        ..opts(1)
    };
    match Mount::open_with(dev as Arc<dyn Device>, Mode::ReadWrite, &opts) {
        Err(CoreError::Io { source, .. }) => {
            assert_eq!(source.raw_os_error(), Some(libc::ENOSPC), "{source}")
        }
        Err(e) => panic!("not the error of a full filesystem: {e}"),
        Ok(_) => panic!("mounted with a share file that has no room"),
    }
}

#[test]
fn failed_reads_are_errors_at_every_step() {
    let dev = device();
    {
        let w =
            Mount::open_with(dev.clone() as Arc<dyn Device>, Mode::ReadWrite, &opts(1)).unwrap();
        let ino = w.create_path("/f", pfs_core::FileType::File).unwrap();
        w.write_at(ino, &[7u8; 5000], 0).unwrap();
    }
    // Fail the k-th read of a mount and a file read, for every k the
    // whole sequence makes: each is an IO error, then healing recovers.
    let mut k = 1;
    loop {
        dev.fail_read_after(k);
        let r = Mount::open_with(dev.clone() as Arc<dyn Device>, Mode::ReadOnly, &opts(2))
            .and_then(|m| {
                let ino = m.resolve("/f")?;
                let mut buf = vec![0u8; 5000];
                m.read_at(ino, &mut buf, 0)?;
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
