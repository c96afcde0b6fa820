//! Group commit. A transaction's entries are written at the journal head
//! under the host's transaction lock (or, on a mount that is not shared,
//! the mount's state), and its head recorded as the host's *appended*
//! head; the lock is then let go, and the transaction is acknowledged only
//! once a leader record covering its head is durable. One committer at a
//! time (the host's committer lock) flushes, writes the leader record with
//! the newest appended head and flushes again, for every transaction its
//! host's processes and threads appended meanwhile: many transactions, one
//! pair of flushes.
//!
//! What this keeps true:
//! - A later transaction is built on the state after every earlier one
//!   (each catches up to the appended head under the transaction lock),
//!   and a leader record commits a prefix of the journal, so whatever is
//!   acknowledged is durable with everything it depends on.
//! - Nothing appended is ever overwritten: appends start at the host's
//!   appended head, which only moves forward while the host writes.
//! - A failed flush or leader write stops every process of the host
//!   ([`crate::share::Share::set_broken`]): what was appended may be lost,
//!   and no later commit may cover it.

use super::state::{head, read_leader};
use super::Mount;
use crate::device::Device;
use crate::error::{CoreError, Result};
use crate::fence::Reproving;
use crate::lease::Lease;
use crate::meta::DeviceLog;
use parking_lot::Mutex;
use pfs_format::LeaderRecord;
use std::sync::atomic::{AtomicU64, Ordering};

/// How often a wait for appends still being written looks for ones whose
/// process died.
const LOOK_EVERY: std::time::Duration = std::time::Duration::from_millis(5);

/// A journal head: (txid, journal offset, lsn). Txid 0: none.
pub(crate) type Head = (u64, u64, u64);

/// What a mount that is not shared keeps of group commit (a shared one
/// keeps it in its share, for all the processes of its host).
#[derive(Default)]
pub(crate) struct LocalGroup {
    appended: Mutex<Head>,
    /// The head txid of the last durable leader record this mount wrote.
    settled: AtomicU64,
    /// The head txid of the leader record being written now (0: none).
    next: AtomicU64,
    /// The committer's lock.
    commit: Mutex<()>,
}

/// The committer's turn, held until dropped.
pub(super) enum Turn<'a> {
    Shared(#[allow(dead_code)] crate::share::CommitLock<'a>),
    Local(#[allow(dead_code)] parking_lot::MutexGuard<'a, ()>),
    /// Never made: [`Mount::turn`] waits for nothing.
    None,
}

impl Mount {
    /// The host's appended head (see the module documentation).
    fn appended(&self) -> Head {
        match &self.share {
            Some(s) => s.appended(self.hostid),
            None => *self.group.appended.lock(),
        }
    }

    /// Records the head of a transaction just appended (under the host's
    /// transaction lock, or the state).
    pub(super) fn set_appended(&self, leader: &LeaderRecord) {
        let h = head(leader);
        match &self.share {
            Some(s) => s.set_appended(self.hostid, h),
            None => *self.group.appended.lock() = h,
        }
    }

    /// Forgets what the host appended: a host that takes the lease anew
    /// starts from what is on the device.
    pub(super) fn discard_appended(&self) {
        match &self.share {
            Some(s) => {
                s.window_clear();
                s.flight_clear(self.hostid);
                s.set_appended(self.hostid, (0, 0, 0));
            }
            None => *self.group.appended.lock() = (0, 0, 0),
        }
    }

    /// The head txid of the host's last durable leader record, and of a
    /// leader write in flight (0 when none).
    fn settled(&self) -> (u64, u64) {
        match &self.share {
            Some(s) => s.head(self.hostid),
            None => (
                self.group.settled.load(Ordering::Acquire),
                self.group.next.load(Ordering::Acquire),
            ),
        }
    }

    /// The head txid of the host's last durable leader record.
    pub(super) fn durable_txid(&self) -> u64 {
        self.settled().0
    }

    /// Records `txid` as the head of the host's last durable leader
    /// record.
    pub(super) fn settle(&self, txid: u64) {
        match &self.share {
            Some(s) => s.settle(self.hostid, txid),
            None => {
                self.group.settled.store(txid, Ordering::Release);
                self.group.next.store(0, Ordering::Release);
            }
        }
    }

    /// Records that the leader write under way moves the head to `txid`,
    /// so that proving the mount is still the writer accepts that head on
    /// the device too (holding the committer's turn).
    fn set_next(&self, txid: u64) {
        match &self.share {
            // A process killed between its leader write and settling
            // leaves this behind: the head it wrote is the host's.
            Some(s) => s.set_next(self.hostid, txid),
            None => self.group.next.store(txid, Ordering::Release),
        }
    }

    /// The committer's turn: no leader write of the host is under way
    /// while it is held.
    pub(super) fn turn(&self) -> Result<Turn<'_>> {
        Ok(self.turn_unless(|| false)?.unwrap_or(Turn::None))
    }

    /// [`Mount::turn`], or `None` with no lock held when `done` says so
    /// once the turn came among this process's threads.
    fn turn_unless(&self, done: impl Fn() -> bool) -> Result<Option<Turn<'_>>> {
        Ok(match &self.share {
            Some(s) => s.lock_commit(self.hostid, done)?.map(Turn::Shared),
            None => {
                let g = self.group.commit.lock();
                (!done()).then_some(Turn::Local(g))
            }
        })
    }

    /// The appended head when it is ahead of what is durable.
    fn pending(&self) -> Option<Head> {
        let a = self.appended();
        (a.0 > self.settled().0).then_some(a)
    }

    /// The newest head a leader record may commit now: the appended head,
    /// or, while appends of the host are still being written to the
    /// device (see [`Mount::write_in_flight`]), the head the oldest of
    /// them starts at (everything before it is written).
    fn committable(&self) -> Head {
        let a = self.appended();
        let Some(s) = &self.share else {
            return a;
        };
        // The appended head is read first: an append it covers recorded
        // its slot before moving it.
        s.flights(self.hostid)
            .into_iter()
            .filter(|f| !f.filling && f.start.0 < a.0)
            .map(|f| f.start)
            .min_by_key(|h| h.0)
            .unwrap_or(a)
    }

    /// Waits until no append of the host that ends at or before txid
    /// `upto` is still being written. An append whose process died before
    /// its writes completed is written again from the share's journal
    /// window by this call, or, when the window no longer holds it, the
    /// host is stopped (what it appended cannot be committed).
    pub(super) fn await_flights(&self, upto: u64) -> Result<()> {
        let Some(s) = &self.share else {
            return Ok(());
        };
        let broken = s.broken(self.hostid);
        let since = std::time::Instant::now();
        let mut look_at = LOOK_EVERY;
        let mut round = 0u32;
        loop {
            round = round.saturating_add(1);
            let flights = s.flights(self.hostid);
            if !flights.iter().any(|f| !f.filling && f.end <= upto) {
                return Ok(());
            }
            if s.broken(self.hostid) != broken {
                let why = "a journal write of another process of this host failed";
                self.fence.stop(why);
                return Err(CoreError::Fenced { reason: why.into() });
            }
            if since.elapsed() >= look_at {
                look_at = since.elapsed() + LOOK_EVERY;
                // Pid 0: given up by its process.
                let gone =
                    |f: &&crate::share::Flight| f.pid == 0 || !crate::lease::pid_alive(f.pid);
                for f in flights.iter().filter(gone) {
                    self.write_for_dead(s, f)?;
                }
                continue;
            }
            if round < 64 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
        }
    }

    /// Writes the append of `f`, whose process died while writing it,
    /// from the share's journal window, and frees its slot; stops the
    /// host when the window no longer holds it.
    fn write_for_dead(&self, s: &crate::share::Share, f: &crate::share::Flight) -> Result<()> {
        if f.filling {
            // Never recorded as appended: nothing of it is committed.
            s.flight_take_over(f);
            return Ok(());
        }
        let mut bufs = Vec::with_capacity(f.pieces.len());
        for &(off, bda, len) in &f.pieces {
            let mut buf = crate::device::AlignedBuf::new(len as usize);
            if !s.window_get(self.hostid, off, buf.as_mut_slice()) {
                s.set_broken(self.hostid);
                let why = format!(
                    "process {} died while writing journal entries of this host, and they are no longer in the share's window",
                    f.pid
                );
                self.fence.stop(&why);
                return Err(CoreError::Fenced { reason: why });
            }
            bufs.push((bda, buf));
        }
        for (bda, buf) in &bufs {
            match self.dev.write_at(buf.as_slice(), *bda) {
                Ok(()) => {}
                // Tried again by the next caller that holds the lease.
                Err(e @ CoreError::LeaseLapsed) => return Err(e),
                Err(e) => return Err(self.stop_host(e, "a journal write failed")),
            }
        }
        s.flight_take_over(f);
        Ok(())
    }

    /// The journal as the host's processes see it: the leader record
    /// `disk` read from the device, with the host's appended head when
    /// that is ahead of it on the same journal (a read-write mount of a
    /// host whose last durable head, or leader write in flight, `disk`
    /// has).
    pub(super) fn host_view(&self, disk: LeaderRecord) -> LeaderRecord {
        if self.mode != super::Mode::ReadWrite {
            return disk;
        }
        let (settled, next) = self.settled();
        let t = disk.head_txid.get();
        let a = self.appended();
        // A record read before a committer settled may be older than
        // the settled head; one past it (and not in flight) is another
        // writer's.
        if a.0 > t && t <= settled.max(next) {
            let mut v = disk;
            v.head_txid.set(a.0);
            v.head_offset.set(a.1);
            v.head_lsn.set(a.2);
            v.seal();
            return v;
        }
        disk
    }

    /// Whether `leader` (the state a transaction is about to extend) ends
    /// at the host's appended head: appending anywhere else would
    /// overwrite another process's transaction.
    pub(super) fn at_appended_head(&self, leader: &LeaderRecord) -> bool {
        match self.pending() {
            Some(a) => a == head(leader),
            None => true,
        }
    }

    /// Whether `leader` (this mount's state) is at the host's head: the
    /// appended head when one is pending, the last durable one otherwise.
    /// A state loaded from the device before a commit became durable (a
    /// forked child's) is behind it although no process appended since.
    pub(super) fn at_host_head(&self, leader: &LeaderRecord) -> bool {
        match self.pending() {
            Some(a) => a == head(leader),
            None => leader.head_txid.get() >= self.settled().0,
        }
    }

    /// Returns once transaction `txid`, appended by this mount, is
    /// committed: a leader record covering it is durable, written by this
    /// call or by another committer of the host.
    pub(super) fn wait_durable(&self, txid: u64, lease: &Lease, bda: u64) -> Result<()> {
        let done = || self.settled().0 >= txid;
        while !done() {
            let Some(turn) = self.turn_unless(done)? else {
                break;
            };
            self.commit_pending(lease, bda)?;
            drop(turn);
            if !done() {
                // An earlier append of the host is still being written.
                self.await_flights(txid)?;
            }
        }
        Ok(())
    }

    /// Makes durable every transaction the host appended (a mount whose
    /// transactions return before they are durable, see
    /// [`Mount::defer_durability`]): returns once a leader record covering
    /// the appended head is durable, written here or by another committer.
    /// Nothing when nothing is pending or the mount holds no lease. A
    /// commit that fails stops the mount, whose reads then show the last
    /// durable commit.
    pub(crate) fn commit_appended(&self) -> Result<()> {
        if self.mode != super::Mode::ReadWrite {
            return Ok(());
        }
        let Some(lease) = self.fence.lease() else {
            return Ok(());
        };
        let Some(target) = self.pending() else {
            return Ok(());
        };
        let bda = self.state.read().leader_bda;
        let r = self.wait_durable(target.0, &lease, bda);
        if r.is_err() {
            self.forget_undurable();
        }
        r
    }

    /// Commits everything the host appended (before a checkpoint, or once
    /// this process holds the lease the host's other processes appended
    /// under).
    pub(super) fn commit_all(&self, lease: &Lease, bda: u64) -> Result<()> {
        let Some(a) = self.pending() else {
            return Ok(());
        };
        self.await_flights(a.0)?;
        let _turn = self.turn()?;
        self.commit_pending(lease, bda)
    }

    /// Reads the leader record and fails, stopping the mount (and, on a
    /// shared mount, deposing the host), unless its head is the one this
    /// host made durable last (or is writing now): otherwise another
    /// writer committed since.
    pub(super) fn head_is_ours(&self, bda: u64) -> Result<LeaderRecord> {
        let ondisk = read_leader(self.raw.as_ref(), bda)?;
        let (settled, next) = self.settled();
        let t = ondisk.head_txid.get();
        if t != settled && (next == 0 || t != next) {
            let why = format!(
                "another writer committed to the journal (head txid {t} on disk, {settled} written last here)"
            );
            if let Some(s) = &self.share {
                s.depose(self.hostid);
            }
            self.fence.stop(&why);
            return Err(CoreError::Fenced { reason: why });
        }
        Ok(ondisk)
    }

    /// Holding the committer's turn: the appended head made durable, with
    /// one flush, the leader record and another flush. The guard before
    /// the leader write reads the leader record (while the first flush is
    /// under way): its head must be the one the host made durable last, or
    /// another writer committed.
    fn commit_pending(&self, lease: &Lease, bda: u64) -> Result<()> {
        self.fence.check_stopped()?;
        if self.pending().is_none() {
            return Ok(());
        }
        let a = self.committable();
        if a.0 <= self.settled().0 {
            // The oldest append not yet durable is still being written.
            return Ok(());
        }
        // Proved before the flush, which the fence would refuse once the
        // lease ran out.
        lease.prove().map_err(|e| self.fence.stop_on(e))?;
        // A flush held up past the lease (behind other IO, say) leaves the
        // leader write to be refused: it is made once the mount proved it
        // is still the writer.
        let again = || self.reprove(lease, bda);
        let dev = Reproving::new(self.dev.as_ref(), &again);
        let log = DeviceLog {
            dev: &dev,
            blocks: &[],
            leader_bda: bda,
        };
        let mut target = LeaderRecord::new(0, 0);
        target.head_txid.set(a.0);
        target.head_offset.set(a.1);
        target.head_lsn.set(a.2);
        let guard = || -> Result<LeaderRecord> {
            crate::lease::stop_point("before-leader");
            lease.prove().map_err(|e| self.fence.stop_on(e))?;
            let ondisk = self.head_is_ours(bda)?;
            self.set_next(a.0);
            Ok(ondisk)
        };
        // The flush of the appended entries and the guard's read of the
        // leader record go to the device side by side: the read shows
        // whether another writer committed, which the flush of our own
        // writes does not change, and the leader write waits for both.
        let flushed = || -> Result<LeaderRecord> {
            let mut ondisk = None;
            dev.sync_beside(&mut || ondisk = Some(guard()))?;
            ondisk.unwrap_or_else(guard)
        };
        match pfs_journal::publish_flushed(&log, &target, &flushed) {
            Ok(_) => {
                self.settle(a.0);
                Ok(())
            }
            Err(e @ CoreError::Fenced { .. }) => Err(e),
            Err(e) => Err(self.stop_host(e, "a journal flush or leader write failed")),
        }
    }
}
