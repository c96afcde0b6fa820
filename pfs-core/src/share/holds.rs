//! The data locks a process holds for its writes ([`Share::lock_data`]),
//! kept a moment after its last write of a file lets go.
//!
//! A write holds its file's data lock shared among the processes of the
//! host: a byte-range read lock of the shared file, taken with the first
//! write of the process under way and let go with the last. A process that
//! writes one file after another (a database's backend) took and let go of
//! that lock around every write: two `fcntl` calls, which walk every lock
//! the machine's processes hold on the file, about as much as the rest of
//! a small write to a file in memory.
//!
//! So a hold that its last write let go stays taken for [`KEEP`] more; the
//! process's next write of the file within that time takes nothing. A
//! releaser thread, started with the first kept hold, lets go of the ones
//! that stayed unused. A truncate, which must wait until no other process
//! holds the lock, announces itself first ([`Share::want_data`]): the
//! host's processes then let go of their holds as their writes end, as
//! they did before, and their releasers let go of unused ones within
//! [`KEEP`]. A killed process's holds go with it, as every byte-range lock
//! does.

use super::Share;
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How long a hold no write uses stays taken.
pub(super) const KEEP: Duration = Duration::from_millis(5);

/// How long the releaser sleeps when no hold is kept: it then looks whether
/// its share is gone.
const PARK: Duration = Duration::from_millis(200);

/// One data lock of the process: how many of its writes use it, and when
/// the last let go of it (kept since).
#[derive(Debug)]
pub(super) struct Hold {
    /// The host id whose lock it is.
    pub(super) hostid: u64,
    /// Writes of the process under way that hold it.
    pub(super) writes: usize,
    pub(super) since: Instant,
}

/// The process's data-lock holds, by their byte in the shared file.
#[derive(Debug, Default)]
pub(super) struct Holds {
    pub(super) map: Mutex<HashMap<i64, Hold>>,
    /// Whether the releaser thread runs (or could not be started: then
    /// holds are let go with the last write, as without it).
    releaser: AtomicBool,
    /// Whether holds may be kept: false once the releaser could not start.
    keeps: AtomicBool,
    /// Wakes the releaser when it sleeps with no hold kept.
    wake: Arc<Wake>,
}

/// Where the releaser sleeps.
#[derive(Debug, Default)]
struct Wake {
    /// Whether it keeps no hold and sleeps until woken (or [`PARK`]).
    parked: Mutex<bool>,
    /// `parked`, for a look without the lock.
    may_be_parked: AtomicBool,
    cv: Condvar,
    /// How many times the releaser looked at the holds.
    rounds: std::sync::atomic::AtomicU64,
}

impl Holds {
    /// Whether a hold its last write let go may stay taken: the releaser
    /// runs, or is started now for the share `me` gives.
    pub(super) fn may_keep(&self, me: impl FnOnce() -> Weak<Share>) -> bool {
        if self.releaser.load(Ordering::Acquire) {
            return self.keeps.load(Ordering::Acquire);
        }
        if self.releaser.swap(true, Ordering::AcqRel) {
            return self.keeps.load(Ordering::Acquire);
        }
        let (me, wake) = (me(), Arc::clone(&self.wake));
        // A share being dropped keeps nothing.
        let started = me.strong_count() > 0
            && crate::threads::spawn_quiet("pfs-data-locks", move || release(me, wake)).is_ok();
        self.keeps.store(started, Ordering::Release);
        started
    }

    /// Tells the releaser that a hold is kept (called after the hold was
    /// recorded, without the map's lock).
    pub(super) fn kept(&self) {
        // Orders the hold's record before the look at the mark (see
        // `release`).
        std::sync::atomic::fence(Ordering::SeqCst);
        if !self.wake.may_be_parked.load(Ordering::SeqCst) {
            return;
        }
        let mut parked = self.wake.parked.lock();
        if *parked {
            *parked = false;
            self.wake.may_be_parked.store(false, Ordering::SeqCst);
            self.wake.cv.notify_one();
        }
    }

    /// How many times the releaser looked at the holds so far.
    #[cfg(test)]
    pub(super) fn rounds(&self) -> u64 {
        self.wake.rounds.load(Ordering::Relaxed)
    }
}

/// The releaser: lets go of the holds of `me` that no write used for
/// [`KEEP`], or at once when a truncate of their host waits; ends once the
/// share is gone (it holds the share only while it looks, so the share's
/// file, whose closing lets go of every lock of the process, closes when
/// its last user drops it).
///
/// Before it parks (no hold kept), it marks itself parked and looks at the
/// holds once more; a write records its hold before it looks at that
/// mark. So either the releaser sees the hold, or the write sees the mark
/// and wakes it. While holds are kept, writes find no mark and take no
/// lock of the releaser's.
fn release(me: Weak<Share>, wake: Arc<Wake>) {
    loop {
        let Some(share) = me.upgrade() else { return };
        wake.rounds.fetch_add(1, Ordering::Relaxed);
        let mut next = share.release_unused();
        let mut parked = wake.parked.lock();
        if next.is_none() {
            *parked = true;
            wake.may_be_parked.store(true, Ordering::SeqCst);
            std::sync::atomic::fence(Ordering::SeqCst);
            next = share.release_unused();
            if next.is_some() {
                *parked = false;
                wake.may_be_parked.store(false, Ordering::SeqCst);
            }
        }
        drop(share);
        wake.cv.wait_for(&mut parked, next.unwrap_or(PARK));
    }
}
