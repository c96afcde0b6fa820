//! Deferred durability, a choice of a mount (a FUSE writer's): its
//! transactions return once they are written to the journal and applied,
//! so lookups and reads of the mount see them at once, and become durable
//! together at the next [`Mount::sync`] (`fsync`, `fsyncdir`), at unmount,
//! when another transaction of the mount waits for durability, or within
//! the period of a background [`Committer`]. Until then other hosts do not
//! see them, and a crash may lose them, as a local file system loses what
//! was not fsynced; a leader record always commits a prefix of the
//! journal, so what a crash leaves is the state after some earlier
//! transaction, never part of one. File data is written before the
//! transaction that records it is appended, so it is durable whenever that
//! transaction is. One thing waits: file data written after a transaction
//! not yet durable cut a file short or freed blocks
//! ([`Mount::settle_cuts`]), whose bytes the durable state still has as
//! part of a file.

use super::Mount;
use crate::error::Result;
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

impl Mount {
    /// Lets this mount's transactions return before they are durable (see
    /// the module documentation); [`Mount::spawn_committer`] bounds how
    /// long they stay so. Not for a mount shared by the processes of a
    /// host (the C SDK's), whose calls promise durability when they
    /// return.
    pub fn defer_durability(&self) {
        self.deferred.store(true, Ordering::Release);
    }

    /// Whether transactions return before they are durable.
    pub(super) fn deferred(&self) -> bool {
        self.deferred.load(Ordering::Acquire)
    }

    /// Notes that transaction `txid`, appended just now, cuts a file
    /// short or frees blocks.
    pub(super) fn cut_at(&self, txid: u64) {
        self.cut_txid.fetch_max(txid, Ordering::AcqRel);
    }

    /// Before file data is written: on a mount that defers durability,
    /// transactions that cut a file short or freed blocks are made durable
    /// first. Until then the durable state (what a follower of another
    /// host reads, and what a crash leaves) still has those bytes as part
    /// of the file they were cut from, and a write to the same place (the
    /// file written again past its new end, a new file in a freed block)
    /// would change that file under it.
    pub(crate) fn settle_cuts(&self) -> Result<()> {
        if !self.deferred() || self.cut_txid.load(Ordering::Acquire) <= self.durable_txid() {
            return Ok(());
        }
        self.commit_appended()
    }

    /// Starts a thread that makes this mount's transactions durable every
    /// `every` (nothing when none are pending). It ends when the
    /// [`Committer`] is stopped or dropped, or the mount is dropped; it
    /// holds the mount only while it commits. A commit that fails stops
    /// the mount, and its next operation reports it. The thread takes none
    /// of the process's signals (it starts with all of them blocked).
    pub fn spawn_committer(self: &Arc<Self>, every: Duration) -> Committer {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let weak: Weak<Mount> = Arc::downgrade(self);
        let flag = Arc::clone(&stop);
        let thread = crate::threads::spawn_quiet("pfs-committer", move || loop {
            {
                let (stopped, cv) = &*flag;
                let mut s = stopped.lock();
                if !*s {
                    cv.wait_for(&mut s, every);
                }
                if *s {
                    return;
                }
            }
            let Some(m) = weak.upgrade() else { return };
            let _: Result<()> = m.commit_appended();
        })
        // As `std::thread::spawn` does when no thread can be had.
        .expect("failed to spawn thread");
        Committer {
            stop,
            thread: Some(thread),
        }
    }
}

/// The background thread of [`Mount::spawn_committer`].
pub struct Committer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Committer {
    /// Stops the thread and waits for it (and so for a commit under way):
    /// afterwards it holds no reference to the mount.
    pub fn stop(&mut self) {
        let (stopped, cv) = &*self.stop;
        *stopped.lock() = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Mode, MountOptions};
    use super::*;
    use crate::device::{Device, MemDevice};
    use crate::mkfs::{mkfs, MkfsOptions};
    use crate::namespace::FileType;
    use pfs_format::layout::{CHUNK_SIZE, MIN_LOG_SIZE};

    fn host(hostid: u64) -> MountOptions {
        MountOptions {
            hostid,
            lease_ms: 60_000,
            ..MountOptions::default()
        }
    }

    /// A formatted memory device and a writer on it that defers
    /// durability.
    fn deferring() -> (Arc<dyn Device>, Arc<Mount>) {
        let dev: Arc<dyn Device> = Arc::new(MemDevice::new("mem", CHUNK_SIZE));
        let opts = MkfsOptions {
            log_size: MIN_LOG_SIZE,
            ..MkfsOptions::default()
        };
        mkfs(dev.as_ref(), &opts).unwrap();
        let w = Arc::new(Mount::open_with(Arc::clone(&dev), Mode::ReadWrite, &host(1)).unwrap());
        w.defer_durability();
        (dev, w)
    }

    /// Whether a mount of another host, loaded from the device now, finds
    /// `path`.
    fn durable(dev: &Arc<dyn Device>, path: &str) -> bool {
        let r = Mount::open_with(Arc::clone(dev), Mode::ReadOnly, &host(2)).unwrap();
        r.resolve(path).is_ok()
    }

    #[test]
    fn deferred_transactions_are_seen_at_once_here_and_elsewhere_once_synced() {
        let (dev, w) = deferring();
        w.create_path("/a", FileType::File).unwrap();
        assert!(w.resolve("/a").is_ok(), "this mount sees it at once");
        assert!(!durable(&dev, "/a"), "not durable before a sync");
        w.sync().unwrap();
        assert!(durable(&dev, "/a"));
        // Unmounting commits what is pending too.
        w.create_path("/b", FileType::File).unwrap();
        let Ok(w) = Arc::try_unwrap(w) else {
            panic!("the mount is still held")
        };
        w.unmount().unwrap();
        assert!(durable(&dev, "/b"));
    }

    #[test]
    fn a_block_freed_by_a_deferred_transaction_is_written_only_once_it_is_durable() {
        let (dev, w) = deferring();
        let a = w.create_path("/a", FileType::File).unwrap();
        w.write_at(a, b"old file", 0).unwrap();
        w.sync().unwrap();
        // Freed, and not durable: another host still reads /a and its
        // block.
        w.unlink_path("/a").unwrap();
        assert!(durable(&dev, "/a"));
        // A new file's data may land in that block: the free is
        // committed first.
        let b = w.create_path("/b", FileType::File).unwrap();
        w.write_at(b, b"new file", 0).unwrap();
        assert!(
            !durable(&dev, "/a"),
            "the free was committed before the write"
        );
        let mut got = [0u8; 8];
        w.read_at(b, &mut got, 0).unwrap();
        assert_eq!(&got, b"new file");
    }

    #[test]
    fn the_committer_makes_deferred_transactions_durable_within_its_period() {
        let (dev, w) = deferring();
        let mut c = w.spawn_committer(Duration::from_millis(10));
        w.create_path("/c", FileType::File).unwrap();
        let t = std::time::Instant::now();
        while !durable(&dev, "/c") {
            assert!(t.elapsed() < Duration::from_secs(5), "never committed");
            std::thread::sleep(Duration::from_millis(5));
        }
        c.stop();
        // Stopped, it holds the mount no more.
        assert!(Arc::try_unwrap(w).is_ok());
    }
}
