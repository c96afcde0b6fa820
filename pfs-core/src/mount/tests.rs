//! Scenarios of whole mounts: forked children, orphans, followers across
//! checkpoints.

use super::*;
use crate::device::MemDevice;
use crate::mkfs::{mkfs, MkfsOptions};
use crate::namespace::FileType;
use pfs_format::layout::{CHUNK_SIZE, INODE_SET_OFFSET, MIN_LOG_SIZE, SECTOR_SIZE};

fn host(hostid: u64) -> MountOptions {
    MountOptions {
        hostid,
        lease_ms: 60_000,
        ..MountOptions::default()
    }
}

/// Options of a shared mount of host 1 with a lease of `lease_ms`, whose
/// share file lies in a new scratch directory named for `tag` (returned,
/// for the caller to remove).
fn shared_host(tag: &str, lease_ms: u32) -> (std::path::PathBuf, MountOptions) {
    let dir = std::env::temp_dir().join(format!("pfs-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let opts = MountOptions {
        hostid: 1,
        lease_ms,
        shared: true,
        share_path: Some(dir.join("share")),
        ..MountOptions::default()
    };
    (dir, opts)
}

fn read_all(m: &Mount, path: &str) -> Vec<u8> {
    let ino = m.resolve(path).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let n = m.read_at(ino, &mut buf, 0).unwrap();
    buf.truncate(n);
    buf
}

/// A formatted memory device, and the same as a `dyn Device`.
fn formatted() -> (Arc<MemDevice>, Arc<dyn Device>) {
    let dev = Arc::new(MemDevice::new("mem", CHUNK_SIZE));
    let opts = MkfsOptions {
        log_size: MIN_LOG_SIZE,
        ..MkfsOptions::default()
    };
    mkfs(dev.as_ref(), &opts).unwrap();
    let shared: Arc<dyn Device> = dev.clone();
    (dev, shared)
}

/// Where [`spoil`] writes.
const SPOILED: u64 = INODE_SET_OFFSET + 15 * SECTOR_SIZE;

/// A device whose last inode sector of chunk 0 (never used by a small
/// filesystem) is garbage: loading the metadata fails on it, so a
/// mount that succeeds did not load it.
fn spoil(dev: &MemDevice) -> Vec<u8> {
    let at = SPOILED;
    let mut saved = vec![0u8; SECTOR_SIZE as usize];
    dev.read_at(&mut saved, at).unwrap();
    dev.write_at(&vec![0xEE; SECTOR_SIZE as usize], at).unwrap();
    saved
}

#[test]
fn a_forked_child_starts_from_its_parents_metadata() {
    let (dev, shared) = formatted();
    let w = Mount::open_with(shared.clone(), Mode::ReadWrite, &host(1)).unwrap();
    let a = w.create_path("/a", FileType::File).unwrap();
    w.write_at(a, b"before the fork", 0).unwrap();
    let parent = Arc::new(Mount::open_with(shared.clone(), Mode::ReadOnly, &host(2)).unwrap());
    assert_eq!(read_all(&parent, "/a"), b"before the fork");
    // After the fork the writer goes on.
    let b = w.create_path("/b", FileType::File).unwrap();
    w.write_at(b, b"after the fork", 0).unwrap();
    let saved = spoil(&dev);
    assert!(Mount::open_with(shared.clone(), Mode::ReadOnly, &host(2)).is_err());

    // The child reads only the journal: the spoiled sector is never
    // read, and it sees both files.
    let child = Mount::open_after_fork(shared.clone(), Mode::ReadOnly, &host(2), parent).unwrap();
    assert_eq!(read_all(&child, "/a"), b"before the fork");
    assert_eq!(read_all(&child, "/b"), b"after the fork");

    // A child may also be the writer (a promoted replica's backend):
    // it takes over from the writer once that one is gone.
    drop(w);
    let child = Arc::new(child);
    let writer = Mount::open_after_fork(shared.clone(), Mode::ReadWrite, &host(1), child).unwrap();
    writer.mkdir_path("/made-by-the-child").unwrap();
    dev.write_at(&saved, SPOILED).unwrap();
    assert!(writer.fsck().unwrap().is_clean());
    let fresh = Mount::open_with(shared.clone(), Mode::ReadOnly, &host(2)).unwrap();
    assert_eq!(read_all(&fresh, "/b"), b"after the fork");
    assert!(fresh.resolve("/made-by-the-child").is_ok());
}

#[test]
fn an_orphan_freed_meanwhile_is_left_alone() {
    // A mounting process lists the orphans, then another process of
    // the host frees one before this one takes the host's lock.
    let (_, shared) = formatted();
    let w = Mount::open_with(shared, Mode::ReadWrite, &host(1)).unwrap();
    let ino = w.create_path("/f", FileType::File).unwrap();
    w.unlink_path("/f").unwrap();
    w.release_if_orphan(ino).unwrap();
    assert!(w.fsck().unwrap().is_clean());
}

#[test]
fn a_child_loads_everything_when_a_parent_thread_held_the_state() {
    let (dev, shared) = formatted();
    let w = Mount::open_with(shared.clone(), Mode::ReadWrite, &host(1)).unwrap();
    w.mkdir_path("/d").unwrap();
    // A thread of the parent held the state at the fork: it may be half
    // changed, so the child loads (and meets the spoiled sector).
    let parent = Arc::new(Mount::open_with(shared.clone(), Mode::ReadOnly, &host(2)).unwrap());
    let held = parent.state.read();
    let saved = spoil(&dev);
    let p2 = Arc::clone(&parent);
    assert!(Mount::open_after_fork(shared.clone(), Mode::ReadOnly, &host(2), p2).is_err());
    dev.write_at(&saved, SPOILED).unwrap();
    drop(held);
    let p3 = Arc::clone(&parent);
    let child = Mount::open_after_fork(shared.clone(), Mode::ReadOnly, &host(2), p3).unwrap();
    assert!(child.resolve("/d").is_ok());
}

#[test]
fn followers_advance_past_checkpoints_and_reload_only_when_lapped() {
    let (dev, shared) = formatted();
    let w = Mount::open_with(shared.clone(), Mode::ReadWrite, &host(1)).unwrap();
    let r = Mount::open_with(shared.clone(), Mode::ReadOnly, &host(2)).unwrap();
    w.mkdir_path("/a").unwrap();
    assert!(r.resolve("/a").is_ok());
    let parent = Arc::new(Mount::open_with(shared.clone(), Mode::ReadOnly, &host(2)).unwrap());

    // The writer checkpoints past both, then goes on: the entries they
    // miss are still in the journal, so neither loads the metadata.
    w.mkdir_path("/b").unwrap();
    w.checkpoint().unwrap();
    w.mkdir_path("/c").unwrap();
    assert!(w.leader().tail_txid.get() > r.leader().head_txid.get());
    let saved = spoil(&dev);
    assert!(r.resolve("/c").is_ok() && r.resolve("/b").is_ok());
    let child = Mount::open_after_fork(shared.clone(), Mode::ReadOnly, &host(2), parent).unwrap();
    assert!(child.resolve("/c").is_ok() && child.resolve("/b").is_ok());

    // Once the writer has written a whole journal's worth since, the
    // entries are gone: the follower loads again (and meets the spoiled
    // sector, then, restored, gets everything).
    let seen = r.leader().head_lsn.get();
    let ring = w.leader().log_size.get() / pfs_format::layout::LOG_ENTRY_SIZE as u64;
    let big = w.create_path("/big", FileType::File).unwrap();
    let mut cycle = 0u64;
    while w.leader().head_lsn.get() - seen <= ring {
        w.fallocate(big, 0, 900 << 22, crate::FallocMode::default())
            .unwrap();
        w.truncate(big, cycle % 3).unwrap();
        cycle += 1;
    }
    assert!(r.refresh().is_err(), "a lapped follower must load again");
    dev.write_at(&saved, SPOILED).unwrap();
    r.refresh().unwrap();
    let ino = r.resolve("/big").unwrap();
    assert_eq!(r.getattr(ino).unwrap().size, (cycle - 1) % 3);
}

#[test]
fn a_host_deposed_under_a_renewing_lease_still_unmounts() {
    // The renewal thread is the one to find the host deposed; it stops
    // itself, and the unmount that stops it again must not wait forever.
    let (_, dev) = formatted();
    let (dir, opts) = shared_host("deposed", 200);
    let m = Mount::open_with(dev, Mode::ReadWrite, &opts).unwrap();
    m.create_path("/f", FileType::File).unwrap();
    m.share().unwrap().depose(1);
    // Several renewal periods: the thread has met the deposition.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(matches!(
        m.create_path("/g", FileType::File),
        Err(CoreError::Fenced { .. })
    ));
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(m);
        let _ = done_tx.send(());
    });
    assert!(
        done_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .is_ok(),
        "the unmount of a deposed host hangs"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mount_options_of_a_pbd_name_its_lock_and_share_files() {
    let dir = std::path::Path::new("/tmp/devs");
    let rw = MountOptions::for_pbd("1-1", Some(dir), Mode::ReadWrite);
    assert_eq!(
        rw.lock_path.as_deref(),
        Some(dir.join(".1-1-paxos-hostid").as_path())
    );
    assert_eq!(
        rw.share_path.as_deref(),
        Some(dir.join(".1-1.pfs-rs-share").as_path())
    );
    assert!(rw.lease_ms >= 100 && rw.hostid == 0 && !rw.force && !rw.shared);
    let ro = MountOptions::for_pbd("1-1", Some(dir), Mode::ReadOnly);
    assert!(ro.lock_path.is_none(), "a reader takes no host lock");
}

/// A formatted memory device that counts its reads and flushes; each
/// flush takes `flush_delay` (a disk's take a few milliseconds).
struct Watched {
    inner: MemDevice,
    flush_delay: std::time::Duration,
    reads: std::sync::atomic::AtomicU64,
    flushes: std::sync::atomic::AtomicU64,
    /// What [`Device::caches_writes`] says.
    caches: bool,
    /// What [`Device::sector_size`] says.
    sector: u32,
}

impl Watched {
    /// A device named `name` holding what [`formatted`] writes.
    fn formatted(name: &str, flush_delay: std::time::Duration) -> Watched {
        let (mem, _) = formatted();
        let inner = MemDevice::new(name, CHUNK_SIZE);
        for (off, page) in mem.pages_snapshot() {
            inner.write_at(&page, off).unwrap();
        }
        Watched {
            inner,
            flush_delay,
            reads: Default::default(),
            flushes: Default::default(),
            caches: true,
            sector: 512,
        }
    }

    fn reads(&self) -> u64 {
        self.reads.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn flushes(&self) -> u64 {
        self.flushes.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Device for Watched {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> crate::error::Result<()> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> crate::error::Result<()> {
        self.inner.write_at(buf, offset)
    }
    fn sync(&self) -> crate::error::Result<()> {
        if !self.flush_delay.is_zero() {
            std::thread::sleep(self.flush_delay);
        }
        self.flushes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.sync()
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn sector_size(&self) -> u32 {
        self.sector
    }
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn caches_writes(&self) -> bool {
        self.caches
    }
}

#[test]
fn a_device_without_a_write_cache_gets_no_flush_at_fsync() {
    for caches in [true, false] {
        let dev = Arc::new(Watched {
            caches,
            ..Watched::formatted("wt", std::time::Duration::ZERO)
        });
        let m = Mount::open_with(dev.clone(), Mode::ReadWrite, &host(1)).unwrap();
        let f = m.create_path("/f", FileType::File).unwrap();
        m.write_at(f, b"data", 0).unwrap();
        let before = dev.flushes();
        m.sync().unwrap();
        assert_eq!(
            dev.flushes() - before,
            u64::from(caches),
            "caches: {caches}"
        );
    }
}

#[test]
fn transactions_that_arrive_during_a_commit_share_the_next_one() {
    let dev = Arc::new(Watched::formatted(
        "slow",
        std::time::Duration::from_millis(3),
    ));
    let m = Arc::new(Mount::open_with(dev.clone(), Mode::ReadWrite, &host(1)).unwrap());
    m.create_path("/first", FileType::File).unwrap();
    let before = dev.flushes();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let m = Arc::clone(&m);
            std::thread::spawn(move || {
                for k in 0..10 {
                    m.create_path(format!("/t{t}-{k}"), FileType::File).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let flushes = dev.flushes() - before;
    // Two flushes per commit of one transaction would be 160.
    assert!(flushes < 100, "{flushes} flushes for 80 transactions");
    // Every one is on the device: a reader finds them all.
    let r = Mount::open_with(dev.clone(), Mode::ReadOnly, &host(2)).unwrap();
    for t in 0..8 {
        for k in 0..10 {
            r.resolve(format!("/t{t}-{k}")).unwrap();
        }
    }
}

#[test]
fn a_reader_checks_the_head_once_per_read_and_still_sees_what_returned_before() {
    let dev = Arc::new(Watched::formatted("counted", std::time::Duration::ZERO));
    let w = Mount::open_with(dev.clone(), Mode::ReadWrite, &host(1)).unwrap();
    let a = w.create_path("/a", FileType::File).unwrap();
    w.write_at(a, &[b'o'; 3000], 0).unwrap();
    let r = Mount::open_with(dev.clone(), Mode::ReadOnly, &host(2)).unwrap();
    let born = r.stat_path("/a").unwrap().btime;
    let mut buf = vec![0u8; 8192];
    assert_eq!(r.read_born_at(a, born, &mut buf, 0).unwrap(), 3000);

    // Nothing changed: the data, then the leader record, two reads.
    let before = dev.reads();
    assert_eq!(r.read_born_at(a, born, &mut buf, 0).unwrap(), 3000);
    assert_eq!(dev.reads() - before, 2);

    // What the writer committed before a read is in that read, though the
    // reader looked at nothing in between: new bytes in a block freed and
    // taken again, ...
    w.truncate(a, 0).unwrap();
    w.write_at(a, &[b'n'; 5000], 0).unwrap();
    assert_eq!(r.read_born_at(a, born, &mut buf, 0).unwrap(), 5000);
    assert!(buf[..5000].iter().all(|&b| b == b'n'));
    // ... a file grown past the end the reader knew (a hole reads as
    // zeros), ...
    w.truncate(a, 7000).unwrap();
    assert_eq!(r.read_born_at(a, born, &mut buf, 0).unwrap(), 7000);
    assert!(buf[5000..7000].iter().all(|&b| b == 0));
    // ... a file shrunk, ...
    w.truncate(a, 100).unwrap();
    assert_eq!(r.read_born_at(a, born, &mut buf, 0).unwrap(), 100);
    // ... and a file removed, whose number may name a new file now: the
    // old file is gone, the number reads whatever file it names now.
    w.unlink_path("/a").unwrap();
    let b = w.create_path("/b", FileType::File).unwrap();
    w.write_at(b, b"the new file", 0).unwrap();
    assert!(matches!(
        r.read_born_at(a, born, &mut buf, 0),
        Err(CoreError::NotFound { .. })
    ));
    w.write_at(b, b"THE", 0).unwrap();
    assert_eq!(r.read_at(b, &mut buf, 0).unwrap(), 12);
    assert_eq!(&buf[..12], b"THE new file");
}

#[test]
fn mounts_of_a_host_taking_turns_read_only_the_journal_and_learn_of_checkpoints() {
    let dev = Arc::new(Watched::formatted("turns", std::time::Duration::ZERO));
    // Each transaction catches up with the other mount's one, whose
    // entries it copies from the share's journal window, and reads the
    // leader record once, as the guard of its commit. The leader record
    // read to catch up, and again after the entries, is gone, and so is
    // the read of the entries: 1 read, not 4.
    let (dir, a, b, per_tx) = taking_turns(&dev, "turns", false);
    assert!(per_tx <= 1.0, "{per_tx} reads per transaction");
    // A checkpoint moves the tail, and a transaction follows it: the other
    // mount's next transaction, with entries to catch up with as always,
    // takes the moved tail from the device.
    a.checkpoint().unwrap();
    a.create_path("/a51", FileType::File).unwrap();
    let tail = |m: &Mount| m.state.read().leader().tail_offset.get();
    assert_ne!(tail(&a), tail(&b));
    b.create_path("/b51", FileType::File).unwrap();
    assert_eq!(tail(&a), tail(&b));
    drop((a, b));
    all_there(&dev, 51);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Two read-write mounts of one shared host on `dev` (in one process, as
/// two processes would share the share) creating `/a0`..`/a50` and
/// `/b0`..`/b50` in turns: the scratch directory, the mounts, and the
/// device reads per transaction of the last 100. With `no_window`, the
/// share's journal window is emptied before each transaction, so each
/// reads the other's entries from the device.
fn taking_turns(
    dev: &Arc<Watched>,
    tag: &str,
    no_window: bool,
) -> (std::path::PathBuf, Mount, Mount, f64) {
    let (dir, opts) = shared_host(tag, 60_000);
    let a = Mount::open_with(dev.clone(), Mode::ReadWrite, &opts).unwrap();
    let b = Mount::open_with(dev.clone(), Mode::ReadWrite, &opts).unwrap();
    a.create_path("/a0", FileType::File).unwrap();
    b.create_path("/b0", FileType::File).unwrap();
    let before = dev.reads();
    let empty = || {
        if no_window {
            a.share.as_ref().unwrap().window_clear();
        }
    };
    for i in 1..=50 {
        empty();
        a.create_path(format!("/a{i}"), FileType::File).unwrap();
        empty();
        b.create_path(format!("/b{i}"), FileType::File).unwrap();
    }
    let per_tx = (dev.reads() - before) as f64 / 100.0;
    (dir, a, b, per_tx)
}

/// Panics unless a reader of `dev` finds `/a0`..`/a{last}` and
/// `/b0`..`/b{last}`.
fn all_there(dev: &Arc<Watched>, last: u32) {
    let r = Mount::open_with(dev.clone(), Mode::ReadOnly, &host(2)).unwrap();
    for i in 0..=last {
        r.resolve(format!("/a{i}")).unwrap();
        r.resolve(format!("/b{i}")).unwrap();
    }
}

#[test]
fn a_process_of_a_shared_host_appends_after_the_others_with_the_sector_it_caught_up_with() {
    // 4 KiB sectors: most transactions start inside the sector the one
    // before ended in, and the append writes that sector whole.
    let dev = Arc::new(Watched {
        sector: 4096,
        ..Watched::formatted("sectors", std::time::Duration::ZERO)
    });
    // With the journal window empty, each transaction reads the other
    // mount's entries (from the start of the sector they end in) and the
    // leader record; the sector its own append starts in is the one those
    // entries ended in, not read again.
    let (dir, a, b, per_tx) = taking_turns(&dev, "sectors", true);
    assert!(per_tx <= 2.0, "{per_tx} reads per transaction");
    drop((a, b));
    // What they wrote is the journal a reader replays.
    all_there(&dev, 50);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_shared_host_pads_each_transaction_to_whole_sectors_and_replay_takes_it() {
    // A new time is one log entry (256 bytes), half a sector.
    let dev = Arc::new(Watched::formatted("padded", std::time::Duration::ZERO));
    let (dir, opts) = shared_host("padded", 60_000);
    let a = Mount::open_with(dev.clone(), Mode::ReadWrite, &opts).unwrap();
    let b = Mount::open_with(dev.clone(), Mode::ReadWrite, &opts).unwrap();
    a.allow_side_by_side();
    b.allow_side_by_side();
    let head = |m: &Mount| m.state.read().leader().head_offset.get();
    for i in 0..=20u64 {
        let f = a.create_path(format!("/a{i}"), FileType::File).unwrap();
        let before = head(&a);
        a.set_mtime(f, 1_000 + i).unwrap();
        assert_eq!(head(&a) - before, 512, "/a{i}: the entry and its repeat");
        let g = b.create_path(format!("/b{i}"), FileType::File).unwrap();
        b.set_mtime(g, 2_000 + i).unwrap();
        assert_eq!(head(&b) % 512, 0, "after /b{i}: head {}", head(&b));
    }
    drop((a, b));
    // A reader replays the padded journal: every entry applied, the
    // repeats to the same result.
    all_there(&dev, 20);
    let r = Mount::open_with(dev.clone(), Mode::ReadOnly, &host(2)).unwrap();
    let ino = r.resolve("/b20").unwrap();
    assert_eq!(r.getattr(ino).unwrap().mtime, 2_020);
    drop(r);
    std::fs::remove_dir_all(&dir).unwrap();
    // A mount that is not shared writes the entry alone.
    let dev = Arc::new(Watched::formatted("unpadded", std::time::Duration::ZERO));
    let m = Mount::open_with(dev.clone(), Mode::ReadWrite, &host(1)).unwrap();
    let f = m.create_path("/f", FileType::File).unwrap();
    let before = head(&m);
    m.set_mtime(f, 7).unwrap();
    assert_eq!(head(&m) - before, 256);
}

/// [`Watched`] with a fault armed for the next request of a kind: the next
/// write fails once `fail_write` is set; the next flush takes `stall_ms`
/// once that is set (a flush held up behind other IO).
struct Rigged {
    inner: Arc<Watched>,
    fail_write: std::sync::atomic::AtomicBool,
    stall_ms: std::sync::atomic::AtomicU64,
    /// A write at this offset returns only this many ms after it landed
    /// (once).
    stall_after_write: parking_lot::Mutex<Option<(u64, u64)>>,
}

impl Rigged {
    fn over(inner: &Arc<Watched>) -> Arc<Rigged> {
        Arc::new(Rigged {
            inner: Arc::clone(inner),
            fail_write: false.into(),
            stall_ms: 0.into(),
            stall_after_write: parking_lot::Mutex::new(None),
        })
    }
}

impl Device for Rigged {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> crate::error::Result<()> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> crate::error::Result<()> {
        if self
            .fail_write
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(CoreError::io(
                self.name(),
                "write",
                offset,
                std::io::Error::from_raw_os_error(libc::EIO),
            ));
        }
        self.inner.write_at(buf, offset)?;
        let mut armed = self.stall_after_write.lock();
        if let Some((at, ms)) = *armed {
            if at == offset {
                *armed = None;
                drop(armed);
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
        }
        Ok(())
    }
    fn sync(&self) -> crate::error::Result<()> {
        let ms = self.stall_ms.swap(0, std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(ms));
        self.inner.sync()
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn sector_size(&self) -> u32 {
        self.inner.sector_size()
    }
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn caches_writes(&self) -> bool {
        self.inner.caches_writes()
    }
}

#[test]
fn an_append_whose_write_failed_is_written_by_the_next_commit_of_the_host() {
    let dev = Arc::new(Watched::formatted("failed", std::time::Duration::ZERO));
    let failing = Rigged::over(&dev);
    let (dir, opts) = shared_host("failed", 60_000);
    let a = Mount::open_with(failing.clone(), Mode::ReadWrite, &opts).unwrap();
    let b = Mount::open_with(dev.clone(), Mode::ReadWrite, &opts).unwrap();
    a.allow_side_by_side();
    b.allow_side_by_side();
    a.create_path("/a0", FileType::File).unwrap();
    // The append's journal write is the transaction's first write: it
    // fails after the append became the host's (b builds on it).
    failing
        .fail_write
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(a.create_path("/a1", FileType::File).is_err());
    assert!(
        a.create_path("/a2", FileType::File).is_err(),
        "the mount whose write failed writes no more"
    );
    // b's commit waits for the failed append, finds it given up and
    // writes it from the share's window before committing past it.
    b.create_path("/b0", FileType::File).unwrap();
    drop((a, b));
    let r = Mount::open_with(dev.clone(), Mode::ReadOnly, &host(2)).unwrap();
    for name in ["/a0", "/a1", "/b0"] {
        r.resolve(name)
            .unwrap_or_else(|e| panic!("{name} is missing: {e}"));
    }
    assert!(r.resolve("/a2").is_err());
    assert!(r.fsck().unwrap().is_clean());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_reload_never_shows_the_threads_of_a_shared_mount_a_state_without_their_files() {
    // One thread loads the state again and again while others create
    // files and look at each at once: a state loaded from the device
    // is caught up with what the host appended before any thread sees
    // it, so none of them finds its file missing.
    let (_, dev) = formatted();
    let (dir, opts) = shared_host("reloads", 60_000);
    let m = Arc::new(Mount::open_with(dev, Mode::ReadWrite, &opts).unwrap());
    m.mkdir_path("/d").unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let makers: Vec<_> = (0..2)
        .map(|t| {
            let (m, stop) = (Arc::clone(&m), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let name = format!("/d/t{t}-{i}");
                    let ino = m.create_path(&name, FileType::File).unwrap();
                    if let Err(e) = m.getattr(ino) {
                        panic!("{name} (inode {ino}), just created: {e}");
                    }
                    m.unlink_path(&name).unwrap();
                    i += 1;
                }
                i
            })
        })
        .collect();
    for _ in 0..100 {
        m.reload().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let made: u64 = makers.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(made > 0);
    assert!(m.fsck().unwrap().is_clean());
    drop(m);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn threads_following_another_process_never_load_the_state_again() {
    // Mount `b` (another process of the host) appends while four threads
    // of mount `a` catch up with it at once. The journal holds every
    // entry they miss, so none of them needs to load the state again,
    // also when another thread moved the state past what it read.
    let (_, dev) = formatted();
    let (dir, opts) = shared_host("followers", 60_000);
    let a = Arc::new(Mount::open_with(Arc::clone(&dev), Mode::ReadWrite, &opts).unwrap());
    let b = Mount::open_with(dev, Mode::ReadWrite, &opts).unwrap();
    b.mkdir_path("/d").unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let followers: Vec<_> = (0..4)
        .map(|_| {
            let (a, stop) = (Arc::clone(&a), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    a.refresh().unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    for i in 0..1000 {
        let f = b.create_path(format!("/d/f{i}"), FileType::File).unwrap();
        b.set_mtime(f, i).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let looks: u64 = followers.into_iter().map(|t| t.join().unwrap()).sum();
    a.refresh().unwrap();
    assert!(a.resolve("/d/f999").is_ok());
    assert!(looks > 0);
    assert_eq!(a.reloads.load(std::sync::atomic::Ordering::Relaxed), 0);
    drop((a, b));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_commit_whose_flush_outlasts_the_lease_proves_it_and_finishes() {
    // A 300 ms lease, no longer renewed: the commit of /a1 starts while
    // it runs, and its first flush takes 600 ms, so the lease has run out
    // when the leader record is to be written. No other host claims the
    // lease and the journal head is the host's, so the mount proves it is
    // still the writer and the commit goes on: neither this mount nor the
    // host's other process (`b`) stops writing.
    let dev = Arc::new(Watched::formatted("slowflush", std::time::Duration::ZERO));
    let slow = Rigged::over(&dev);
    let (dir, opts) = shared_host("slowflush", 300);
    let a = Mount::open_with(slow.clone(), Mode::ReadWrite, &opts).unwrap();
    let b = Mount::open_with(dev.clone(), Mode::ReadWrite, &opts).unwrap();
    a.create_path("/a0", FileType::File).unwrap();
    a.lease().unwrap().stop_renewing();
    slow.stall_ms
        .store(600, std::sync::atomic::Ordering::SeqCst);
    a.create_path("/a1", FileType::File).unwrap();
    assert_eq!(slow.stall_ms.load(std::sync::atomic::Ordering::SeqCst), 0);
    a.create_path("/a2", FileType::File).unwrap();
    b.create_path("/b0", FileType::File).unwrap();
    drop((a, b));
    let r = Mount::open_with(dev.clone(), Mode::ReadOnly, &host(2)).unwrap();
    for name in ["/a0", "/a1", "/a2", "/b0"] {
        r.resolve(name)
            .unwrap_or_else(|e| panic!("{name} is missing: {e}"));
    }
    assert!(r.fsck().unwrap().is_clean());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_plain_mount_whose_lease_runs_out_after_its_leader_write_goes_on() {
    // A mount that is not shared (a FUSE mount, the tool): the leader
    // record of /a1 lands, and the 300 ms lease (no longer renewed) has
    // run out before the flush after it. Proving the lease again finds
    // the head this commit wrote on the device, which is the mount's own,
    // so the commit finishes and the mount goes on writing.
    let dev = Arc::new(Watched::formatted("plainlapse", std::time::Duration::ZERO));
    let slow = Rigged::over(&dev);
    let opts = MountOptions {
        hostid: 1,
        lease_ms: 300,
        ..MountOptions::default()
    };
    let a = Mount::open_with(slow.clone(), Mode::ReadWrite, &opts).unwrap();
    assert!(a.share.is_none());
    a.create_path("/a0", FileType::File).unwrap();
    a.lease().unwrap().stop_renewing();
    let bda = a.state.read().leader_bda;
    *slow.stall_after_write.lock() = Some((bda, 600));
    a.create_path("/a1", FileType::File).unwrap();
    assert!(slow.stall_after_write.lock().is_none(), "no leader write");
    a.create_path("/a2", FileType::File).unwrap();
    drop(a);
    let r = Mount::open_with(dev.clone(), Mode::ReadOnly, &host(2)).unwrap();
    for name in ["/a0", "/a1", "/a2"] {
        r.resolve(name)
            .unwrap_or_else(|e| panic!("{name} is missing: {e}"));
    }
    assert!(r.fsck().unwrap().is_clean());
}

/// Host 1 on `dev` with a 300 ms lease, /a0 made, then silent: its lease
/// is no longer renewed.
fn silent_writer(dev: &Arc<Watched>) -> (Mount, Arc<crate::Lease>) {
    let a = Mount::open_with(dev.clone(), Mode::ReadWrite, &short_lease(1, false)).unwrap();
    a.create_path("/a0", FileType::File).unwrap();
    let lease = a.lease().unwrap();
    lease.stop_renewing();
    (a, lease)
}

/// Host `hostid` with a 300 ms lease, taking it over by force if `force`.
fn short_lease(hostid: u64, force: bool) -> MountOptions {
    MountOptions {
        hostid,
        lease_ms: 300,
        force,
        ..MountOptions::default()
    }
}

#[test]
fn a_commit_held_up_past_a_takeover_writes_no_leader_record() {
    // As above, but host 2 takes the lease over by force while the flush
    // of /a1 holds host 1's commit up, and commits /b: proving the lease
    // again fails, and /a1's leader record is never written over it.
    let dev = Arc::new(Watched::formatted("takeover", std::time::Duration::ZERO));
    let slow = Rigged::over(&dev);
    let a =
        Arc::new(Mount::open_with(slow.clone(), Mode::ReadWrite, &short_lease(1, false)).unwrap());
    a.create_path("/a0", FileType::File).unwrap();
    a.lease().unwrap().stop_renewing();
    slow.stall_ms
        .store(2_000, std::sync::atomic::Ordering::SeqCst);
    let held = {
        let a = Arc::clone(&a);
        std::thread::spawn(move || a.create_path("/a1", FileType::File))
    };
    while slow.stall_ms.load(std::sync::atomic::Ordering::SeqCst) != 0 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let b = Mount::open_with(dev.clone(), Mode::ReadWrite, &short_lease(2, true)).unwrap();
    b.create_path("/b", FileType::File).unwrap();
    assert!(matches!(
        held.join().unwrap(),
        Err(CoreError::Fenced { .. })
    ));
    assert!(matches!(
        a.create_path("/a2", FileType::File),
        Err(CoreError::Fenced { .. })
    ));
    drop(b);
    let r = Mount::open_with(dev.clone(), Mode::ReadOnly, &host(3)).unwrap();
    r.resolve("/b").unwrap();
    r.resolve("/a0").unwrap();
    assert!(
        r.resolve("/a1").is_err(),
        "a deposed writer's commit landed"
    );
    assert!(r.fsck().unwrap().is_clean());
}

#[test]
fn a_forced_mount_that_never_took_the_lease_deposes_nobody() {
    // Host 2 mounts with force while host 1's lease is silent: the mount
    // waits the claim out and notes it as dead, but writes nothing and
    // leaves. Host 1 then resumes: nobody took its lease over, so it
    // proves it again and goes on. (Had host 2 written, it could not: see
    // the next test.)
    let dev = Arc::new(Watched::formatted("nevertook", std::time::Duration::ZERO));
    let (a, lease) = silent_writer(&dev);
    let b = Mount::open_with(dev.clone(), Mode::ReadWrite, &short_lease(2, true)).unwrap();
    drop(b);
    lease.prove().unwrap();
    a.create_path("/a1", FileType::File).unwrap();
    drop(a);
    let r = Mount::open_with(dev.clone(), Mode::ReadOnly, &host(3)).unwrap();
    r.resolve("/a0").unwrap();
    r.resolve("/a1").unwrap();
    assert!(r.fsck().unwrap().is_clean());
}

#[test]
fn a_lease_taken_over_is_never_proved_again_after_the_new_holder_leaves() {
    // Host 2 takes host 1's silent lease over by force, commits and
    // unmounts (its slot says idle). Host 1's lease then finds no rival,
    // but host 2's takeover note names it: proving it again fails, so no
    // write of host 1's (a late one included, whatever journal head it
    // put back) is built on.
    let dev = Arc::new(Watched::formatted("noted", std::time::Duration::ZERO));
    let (a, lease) = silent_writer(&dev);
    let b = Mount::open_with(dev.clone(), Mode::ReadWrite, &short_lease(2, true)).unwrap();
    b.create_path("/b", FileType::File).unwrap();
    drop(b);
    assert!(matches!(lease.prove(), Err(CoreError::Fenced { .. })));
    assert!(a.create_path("/a1", FileType::File).is_err());
    let r = Mount::open_with(dev.clone(), Mode::ReadOnly, &host(3)).unwrap();
    r.resolve("/b").unwrap();
    assert!(r.resolve("/a1").is_err());
}
