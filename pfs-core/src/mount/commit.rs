//! The commit engine: transactions appended to the journal and
//! checkpointed, under the writer lease and the one stop-writing policy
//! (the mount's [`Fence`](crate::fence::Fence)), and the permission every
//! other write (file data, flushes) needs.

use super::state::{head, load_state, next_gen, read_leader, State};
use super::{Mode, Mount};
use crate::alloc::Allocator;
use crate::device::{AlignedBuf, Device};
use crate::error::{CoreError, Result};
use crate::fence::Reproving;
use crate::lease::{Lease, Slots};
use crate::meta::{DeviceLog, MetaImage};
use crate::tx::Tx;
use pfs_format::layout::LOG_ENTRY_SIZE;
use pfs_format::layout::SECTOR_SIZE;
use pfs_format::LeaderRecord;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::sync::Arc;

impl Mount {
    /// Writes every metaset sector changed since the last checkpoint to its
    /// home, flushes, then advances the leader's tail to its head and
    /// flushes again. Nothing is written when the journal holds nothing to
    /// apply. Read-only mounts refuse.
    pub fn checkpoint(&self) -> Result<()> {
        if self.mode != Mode::ReadWrite {
            return Err(CoreError::ReadOnly);
        }
        let _host = self.host_tx()?;
        let mut guard = self.state.write();
        guard.gen = next_gen();
        self.fence.check_stopped()?;
        if !guard.journal.has_unapplied() {
            return Ok(());
        }
        let bda = guard.leader_bda;
        let (lease, stale) = self.take_writer_lease(guard.leader(), bda)?;
        if stale {
            *guard = self.reloaded()?;
            return Ok(());
        }
        let State {
            meta,
            journal,
            journal_blocks,
            ..
        } = &mut *guard;
        let again = || self.reprove(&lease, bda);
        let dev = Reproving::new(self.dev.as_ref(), &again);
        let log = DeviceLog {
            dev: &dev,
            blocks: journal_blocks,
            leader_bda: bda,
        };
        // What the host appended is committed first: a checkpoint moves
        // the tail to a durable head.
        self.commit_all(&lease, bda)?;
        let ours = |l: &LeaderRecord| self.still_ours(&lease, l, bda);
        match journal.checkpoint(&log, &ours, &mut |d| write_home(&log, meta, d)) {
            Ok(()) => {
                self.checkpointed();
                Ok(())
            }
            Err(e) => Err(self.fence.stop_io(e, "a checkpoint write or flush failed")),
        }
    }

    /// Runs `f` as one transaction and commits it: log entries appended at
    /// the journal head, then (group commit, see [`super::group`]) a
    /// flush, the leader record rewritten and another flush, shared with
    /// the transactions the host's other threads and processes appended
    /// meanwhile. The change is applied in memory once its entries are
    /// written; this returns once it is durable (on a mount that defers
    /// durability, [`Mount::defer_durability`], once it is applied). If `f`
    /// fails nothing is written and nothing changes.
    pub(crate) fn write_tx<R>(&self, f: impl FnOnce(&mut Tx<'_>) -> Result<R>) -> Result<R> {
        if self.mode != Mode::ReadWrite {
            return Err(CoreError::ReadOnly);
        }
        let host = self.host_tx()?;
        self.refresh()?;
        let mut guard = self.state.write();
        guard.gen = next_gen();
        let State {
            meta,
            journal,
            leader_bda,
            journal_blocks,
            alloc,
            gen: _,
        } = &mut *guard;
        self.fence.check_stopped()?;
        let alloc = alloc.as_mut().ok_or(CoreError::ReadOnly)?;
        let mut tx = Tx::new(meta, alloc);
        let r = f(&mut tx)?;
        let objs = tx.entries();
        if objs.is_empty() {
            return Ok(r);
        }
        let objs = self.padded(objs, journal.leader().head_offset.get());
        let bda = *leader_bda;
        let (lease, stale) = self.take_writer_lease(journal.leader(), bda)?;
        if stale {
            // Someone committed between our look and our taking the
            // lease. Nothing of ours is written: catch up and let the
            // caller try again.
            drop(tx);
            *guard = self.reloaded()?;
            return Err(CoreError::Busy {
                what: format!(
                    "another writer committed to {} while this mount was taking the writer lease; nothing was written, try again",
                    self.dev.name()
                ),
            });
        }
        if !self.at_appended_head(journal.leader()) {
            // Never met: the host's transaction lock catches up with what
            // its processes appended. Writing here would overwrite it.
            return Err(CoreError::Busy {
                what: format!(
                    "this mount of {} is behind the journal head its host appended; nothing was written, try again",
                    self.dev.name()
                ),
            });
        }
        // A write of this commit that the lease ran out before is made
        // once the mount proved it is still the writer.
        let again = || self.reprove(&lease, bda);
        let dev = Reproving::new(self.dev.as_ref(), &again);
        let log = DeviceLog {
            dev: &dev,
            blocks: journal_blocks,
            leader_bda: bda,
        };
        let ours = |l: &LeaderRecord| self.still_ours(&lease, l, bda);
        crate::lease::stop_point("commit-start");
        // The lease still runs, and then no other host can have committed:
        // the head on the device is read once, before the leader write
        // that commits, and until then the fence keeps every write of
        // this transaction under the lease. A lease that ran out (a stall,
        // a paused process) and is proved again says only that no host
        // holds it now: one may have taken it over, committed and let it
        // go meanwhile, and its entries lie where ours would be appended.
        // So then the head on the device is checked before anything is
        // written.
        let lapsed = lease.check().is_err();
        lease.prove().map_err(|e| self.fence.stop_on(e))?;
        if lapsed {
            self.head_is_ours(bda)?;
        }
        // Refused before anything is written.
        if !journal.fits(&objs).map_err(CoreError::from)? {
            // A full journal is checkpointed first, with everything the
            // host appended committed.
            self.commit_all(&lease, bda)?;
            if let Err(e) = journal.checkpoint(&log, &ours, &mut |d| write_home(&log, meta, d)) {
                return Err(self.fence.stop_io(e, "a checkpoint write or flush failed"));
            }
            self.checkpointed();
        }
        let start = head(journal.leader());
        let pending = RefCell::new(Vec::new());
        let overlap = self.pads()
            && start.1 % PAD_SECTOR == 0
            && objs.len() * LOG_ENTRY_SIZE <= MAX_FLIGHT_BYTES;
        let appending = super::tail::TailLog {
            log,
            tail: &self.journal_tail,
            head_txid: journal.leader().head_txid.get(),
            window: self.share.as_deref().map(|s| (s, self.hostid)),
            defer: overlap.then_some(&pending),
        };
        let appended = journal.append(&appending, &objs);
        self.keep_tail(appended.as_ref().ok().copied());
        let txid = match appended {
            Ok(t) => t,
            Err(e) => return Err(self.fence.stop_io(e, "a journal write failed")),
        };
        let pending = pending.into_inner();
        let mut flight = None;
        if let (Some(s), false) = (&self.share, pending.is_empty()) {
            let pieces: Vec<_> = pending
                .iter()
                .map(|p| (p.offset, p.bda, p.buf.len() as u64))
                .collect();
            flight = s.flight_begin(self.hostid, start, txid, &pieces);
        }
        let mut pending = Some(pending);
        if flight.is_none() {
            // No slot free: written now, under the lock, as without
            // overlap.
            let now = pending.take().unwrap_or_default();
            if let Err(e) = self.write_in_flight(now, None, &lease, bda) {
                // The journal in memory moved past what was written.
                drop(tx);
                drop(guard);
                self.forget_undurable();
                return Err(e);
            }
        }
        if tx.cuts() {
            self.cut_at(txid);
        }
        tx.finish();
        for (id, mo) in &objs {
            meta.set(*id, *mo);
        }
        self.set_appended(journal.leader());
        self.committed();
        if pfs_journal::checkpoint_due(journal.ntx(), journal.dirty().len() as u64) {
            // The checkpoint commits everything appended, this append
            // among it: its writes are made first.
            if let Some(p) = pending.take() {
                self.write_in_flight(p, flight, &lease, bda)?;
            }
            self.commit_all(&lease, bda)?;
            match journal.checkpoint(&log, &ours, &mut |d| write_home(&log, meta, d)) {
                Ok(()) => self.checkpointed(),
                Err(e) => return Err(self.fence.stop_io(e, "a checkpoint write or flush failed")),
            }
        }
        // The next transaction may start (and append) while this one is
        // made durable.
        drop(guard);
        drop(host);
        if let Some(p) = pending {
            crate::lease::stop_point("append-in-flight");
            if let Err(e) = self.write_in_flight(p, flight, &lease, bda) {
                self.forget_undurable();
                return Err(e);
            }
        }
        if self.deferred() {
            // Durable at the next sync, unmount or background commit.
            return Ok(r);
        }
        if let Err(e) = self.wait_durable(txid, &lease, bda) {
            self.forget_undurable();
            return Err(e);
        }
        Ok(r)
    }
}

/// The sector size whose devices get their shared-host transactions padded
/// to whole sectors, so that appends share no sector and their device
/// writes may overlap. With larger sectors the padding would fill the
/// journal several times as fast; those appends are written under the
/// transaction lock, as a mount that is not shared writes them.
const PAD_SECTOR: u64 = 512;

/// Appends larger than this are written under the transaction lock: the
/// share's journal window, from which a dead process's append is written
/// again, holds many appends under way only if they are small.
const MAX_FLIGHT_BYTES: usize = 8 << 10;

impl Mount {
    /// Whether this mount pads its transactions to whole sectors, and may
    /// write its appends after the transaction lock is let go: a shared
    /// mount of a 512-byte-sector device that has side-by-side appends on
    /// (see [`crate::mount::SIDE_BY_SIDE_ENV`]).
    fn pads(&self) -> bool {
        self.side_by_side.load(std::sync::atomic::Ordering::Relaxed)
            && self.share.is_some()
            && u64::from(self.dev.sector_size()) == PAD_SECTOR
    }

    /// Turns side-by-side appends on for this mount (tests of them).
    #[cfg(test)]
    pub(crate) fn allow_side_by_side(&self) {
        self.side_by_side
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// `objs`, the entries of a transaction that starts at journal offset
    /// `at`, padded on a shared mount of a 512-byte-sector device so that
    /// it ends on a sector boundary: its last entry repeated, which
    /// replay applies twice to the same result. Each repeat is a link of
    /// the transaction's chain like any other (the same txid, the next
    /// lsn, `le_more` on all but the last), which the reference's replay
    /// accepts as it is. Appends that share no sector can be written side
    /// by side (see [`Mount::write_in_flight`]).
    fn padded(
        &self,
        mut objs: Vec<(pfs_format::ObjectId, pfs_format::MetaObjPhy)>,
        at: u64,
    ) -> Vec<(pfs_format::ObjectId, pfs_format::MetaObjPhy)> {
        if !self.pads() {
            return objs;
        }
        let end = at + (objs.len() * LOG_ENTRY_SIZE) as u64;
        let short = (PAD_SECTOR - end % PAD_SECTOR) % PAD_SECTOR;
        if let Some(&last) = objs.last() {
            for _ in 0..short / LOG_ENTRY_SIZE as u64 {
                objs.push(last);
            }
        }
        objs
    }

    /// Makes the device writes of an append that the host's processes
    /// already see (its head is the host's appended head), after the
    /// transaction lock was let go, so that the next transaction of the
    /// host is built and appended while these writes are under way. The
    /// slot `flight` records the append in the share until the writes
    /// complete: a committer commits nothing past an append still being
    /// written, and writes it from the share's journal window if its
    /// process dies first. A write the lease ran out before is made once
    /// the mount proved it is still the writer ([`Reproving`]). A write
    /// that fails stops this mount, and its slot is left to whoever waits
    /// for it, as a dead process's would be.
    fn write_in_flight(
        &self,
        pending: Vec<super::tail::Pending>,
        flight: Option<usize>,
        lease: &Lease,
        bda: u64,
    ) -> Result<()> {
        // Stalled past the lease since it was checked: another host may
        // have taken over and committed meanwhile.
        let again = || self.reprove(lease, bda);
        let dev = Reproving::new(self.dev.as_ref(), &again);
        let result = pending
            .iter()
            .try_for_each(|p| dev.write_at(p.buf.as_slice(), p.bda));
        let slot = self.share.as_deref().zip(flight);
        match result {
            Ok(()) => {
                if let Some((s, slot)) = slot {
                    s.flight_end(slot);
                }
                Ok(())
            }
            Err(e) => {
                if let Some((s, slot)) = slot {
                    s.flight_abandon(slot);
                }
                Err(self.fence.stop_io(e, "a journal write failed"))
            }
        }
    }

    /// Shows, after the lease ran out in the middle of a commit, that this
    /// mount is still the writer: the lease taken again with no other host
    /// claiming it ([`Lease::prove`]), and the journal head on the device
    /// the one its host wrote last ([`Mount::head_is_ours`]). Stops the
    /// mount otherwise.
    pub(super) fn reprove(&self, lease: &Lease, bda: u64) -> Result<()> {
        lease.prove().map_err(|e| self.fence.stop_on(e))?;
        self.head_is_ours(bda).map(drop)
    }

    /// Takes the writer lease now rather than at the first write, for a
    /// writer that should hold it for as long as it is mounted (a FUSE
    /// mount): a second writer is then refused from the start. Writes only
    /// this host's lease slot; the mount catches up with anything committed
    /// before it took the lease.
    pub fn take_lease(&self) -> Result<()> {
        if self.mode != Mode::ReadWrite {
            return Err(CoreError::ReadOnly);
        }
        let _host = self.host_tx()?;
        self.refresh()?;
        let mut guard = self.state.write();
        let (_, stale) = self.take_writer_lease(guard.leader(), guard.leader_bda)?;
        if stale {
            *guard = self.reloaded()?;
        }
        Ok(())
    }

    /// The lease a write on the state whose leader record is `leader`
    /// needs, taken now if this mount has none. `true` when it was taken
    /// just now and someone committed after that state was read: the state
    /// is stale (load it again with [`Mount::reloaded`]). The caller holds
    /// the host's transaction lock and the state.
    fn take_writer_lease(
        &self,
        leader: &LeaderRecord,
        leader_bda: u64,
    ) -> Result<(Arc<Lease>, bool)> {
        let mut held = self.fence.lease_slot();
        if let Some(l) = held.as_ref() {
            return Ok((Arc::clone(l), false));
        }
        crate::lease::stop_point("acquire");
        // Whether the host held no lease on this machine (a mount that is
        // not shared never shares one).
        let fresh = self
            .share
            .as_ref()
            .map_or(true, |s| s.lease(self.hostid).0 == 0);
        let l = Lease::acquire(
            Arc::clone(&self.raw),
            Slots::of(leader, leader_bda),
            self.hostid as u32,
            self.lease_ms,
            self.force,
            &mut self.watch.lock(),
            self.share.clone(),
        )
        .map_err(|e| self.fence.stop_on(e))?;
        *held = Some(Arc::clone(&l));
        drop(held);
        if fresh {
            // Nothing appended under an earlier lease of the host may be
            // committed now.
            self.discard_appended();
        } else {
            // Joined the lease the host's other processes hold: what they
            // appended is committed, so the head on the device is theirs.
            self.commit_all(&l, leader_bda)?;
        }
        let ondisk = read_leader(self.raw.as_ref(), leader_bda)?;
        if head(&ondisk) != head(leader) {
            return Ok((l, true));
        }
        self.adopt_head(leader);
        Ok((l, false))
    }

    /// After a commit failed and stopped the mount: the state this mount
    /// reads from holds transactions that were applied but never became
    /// durable (group commit applies them first), so it is loaded again
    /// from the device's last durable leader record, and reads show the
    /// last commit. Best effort: a device that no longer reads leaves the
    /// state as it was (the mount writes nothing either way).
    pub(super) fn forget_undurable(&self) {
        if self.fence.stopped().is_none() {
            return;
        }
        if let Ok(mut fresh) = load_state(self.raw.as_ref()) {
            fresh.alloc = Some(Allocator::build(&fresh.meta));
            *self.state.write() = fresh;
        }
    }

    /// Everything loaded again from the device, for a read-write mount
    /// that has just become the writer (its host's commits start there).
    fn reloaded(&self) -> Result<State> {
        let mut fresh = load_state(self.raw.as_ref())?;
        fresh.alloc = Some(Allocator::build(&fresh.meta));
        self.adopt_head(fresh.leader());
        Ok(fresh)
    }

    /// Records `leader`'s head as the one this mount's host wrote last (a
    /// shared mount; see [`Share::head`]).
    fn adopt_head(&self, leader: &LeaderRecord) {
        self.settle(leader.head_txid.get());
    }

    /// The check before every write to the journal, the leader record or
    /// the metasets, and before any write after a stall: the lease still
    /// runs on this machine's clock, or was taken again with no other host
    /// claiming it ([`Lease::prove`]), and the journal head on disk is the
    /// one `leader` (the state this mount is about to extend) has, so no
    /// other writer committed meanwhile. Another writer's commit stops
    /// this mount for good, and a shared mount's whole host with it.
    fn still_ours(&self, lease: &Lease, leader: &LeaderRecord, bda: u64) -> Result<()> {
        lease.prove().map_err(|e| self.fence.stop_on(e))?;
        let ondisk = read_leader(self.raw.as_ref(), bda)?;
        if head(&ondisk) != head(leader) {
            let why = format!(
                "another writer committed to the journal (head txid {} on disk, {} here)",
                ondisk.head_txid.get(),
                leader.head_txid.get()
            );
            if let Some(s) = &self.share {
                s.depose(self.hostid);
            }
            self.fence.stop(&why);
            return Err(CoreError::Fenced { reason: why });
        }
        Ok(())
    }

    /// Lets a write that goes to the device outside a transaction (file
    /// data, a flush) start: at once while the lease runs; after the lease
    /// ran out (a stall) only once this mount has proved it is still the
    /// writer ([`Mount::prove_writer`]). Fails for good once another writer
    /// took over.
    pub(crate) fn permit_write(&self) -> Result<()> {
        if self.mode != Mode::ReadWrite {
            return Err(CoreError::ReadOnly);
        }
        match self.fence.admit() {
            Err(CoreError::LeaseLapsed) => self.prove_writer(),
            other => other,
        }
    }

    /// Proves that this mount is still the writer before it writes again
    /// (or takes the lease, for a mount that has none yet): under the
    /// host's transaction lock and the state, the lease taken again with
    /// no other host claiming it, and the journal head on disk the one
    /// this host wrote last.
    fn prove_writer(&self) -> Result<()> {
        let _host = self.host_tx()?;
        let mut guard = self.state.write();
        self.fence.check_stopped()?;
        let (lease, stale) = self.take_writer_lease(guard.leader(), guard.leader_bda)?;
        if stale {
            // Taken just now: what others committed before is the
            // device's content, and this mount's state is loaded again.
            guard.gen = next_gen();
            *guard = self.reloaded()?;
            return Ok(());
        }
        let bda = guard.leader_bda;
        lease.prove().map_err(|e| self.fence.stop_on(e))?;
        // What the host appended is committed first: the head on the
        // device is then the one this state has.
        self.commit_all(&lease, bda)?;
        self.still_ours(&lease, guard.leader(), bda)
    }

    /// Runs `op`, which writes to the device outside a transaction, with
    /// [`Mount::permit_write`] before it and again after it (a write that
    /// stalled past a takeover is not acknowledged). A lease that runs out
    /// during `op` is proved and `op` run again: it must be safe to repeat.
    pub(crate) fn with_write_permit<R>(&self, mut op: impl FnMut() -> Result<R>) -> Result<R> {
        const ATTEMPTS: usize = 3;
        for _ in 0..ATTEMPTS {
            self.permit_write()?;
            match op() {
                Err(CoreError::LeaseLapsed) => continue,
                Err(e) => return Err(e),
                Ok(r) => {
                    self.permit_write()?;
                    return Ok(r);
                }
            }
        }
        Err(CoreError::LeaseLapsed)
    }

    /// Fails once this mount may no longer write: the check every write
    /// makes (a lease that ran out is proved again first) and, on a mount
    /// shared by the processes of a host, the check every transaction
    /// makes under the host's transaction lock: a journal head on the
    /// device that the host did not write means another host took the
    /// writer lease over and committed, and the mount stops writing
    /// (`Fenced`, EIO). For a front end that acknowledges a handle's
    /// writes without writing anything itself, as a close or flush with
    /// nothing left to commit does (the SDK's `close`, FUSE's `flush`), so
    /// that nothing is acknowledged after a takeover. It reads at most one
    /// sector; a mount that holds no lease writes nothing and takes none
    /// here.
    pub fn check_writer(&self) -> Result<()> {
        if self.mode != Mode::ReadWrite {
            return Ok(());
        }
        self.check_host()?;
        if self.fence.lease().is_none() {
            return self.fence.check_stopped();
        }
        self.permit_write()
    }

    /// Makes every write this mount completed durable (`fsync`), checking
    /// that the mount may still write before and after the flush.
    /// Concurrent calls share device flushes (see `crate::flush`), among
    /// the threads of the process and, on a shared mount, the processes of
    /// the host. Read-only mounts flush nothing. A flush that fails stops
    /// the writes of the mount and of its host's other processes, as a
    /// commit's does: no later `sync` succeeds over what it lost.
    pub fn sync(&self) -> Result<()> {
        if self.mode != Mode::ReadWrite {
            return Ok(());
        }
        // Transactions that returned before they were durable
        // ([`Mount::defer_durability`]) are committed first.
        self.commit_appended()?;
        let flush = || self.dev.sync().map_err(|e| self.flush_failed(e));
        self.with_write_permit(|| match &self.share {
            // Nothing to flush, nothing to order among the host's processes.
            _ if !self.dev.caches_writes() => Ok(()),
            Some(s) => s.flush(self.hostid, flush),
            None => self.flushes.flush(flush),
        })
    }

    /// The failure `e` of a device flush of [`Mount::sync`]: what it was to
    /// make durable may be lost (a device may drop its cache when a flush
    /// fails, and a later flush that succeeds does not bring it back). So
    /// the mount stops writing, and a shared host's other processes too
    /// (their writes may have been in that cache), marked before the next
    /// flush of the host may start; a lease that lapsed or a fence is no
    /// such failure.
    pub(super) fn flush_failed(&self, e: CoreError) -> CoreError {
        match e {
            CoreError::LeaseLapsed | CoreError::Fenced { .. } => e,
            e => self.stop_host(
                e,
                "a device flush (fsync) failed: what it was to make durable may be lost",
            ),
        }
    }

    /// The failure `e` of a device write or flush that may have lost what
    /// this host wrote: this mount stops writing ([`Fence::stop_io`], with
    /// `why`), and on a shared host every other process of the host too
    /// (`Share::set_broken`). A write the fence refused (the lease ran
    /// out, or another host took over) lost nothing: it stops this mount
    /// alone, and the host's other processes find out for themselves
    /// whether they may still write.
    ///
    /// [`Fence::stop_io`]: crate::fence::Fence::stop_io
    pub(super) fn stop_host(&self, e: CoreError, why: &str) -> CoreError {
        let refused = matches!(e, CoreError::LeaseLapsed | CoreError::Fenced { .. });
        if let (Some(s), false) = (&self.share, refused) {
            s.set_broken(self.hostid);
        }
        self.fence.stop_io(e, why)
    }
}

/// Writes the metaset sectors at the device addresses `dirty` home, from
/// `meta` (the first step of a checkpoint).
fn write_home(log: &DeviceLog<'_>, meta: &MetaImage, dirty: &BTreeSet<u64>) -> Result<()> {
    let mut sect = AlignedBuf::new(SECTOR_SIZE as usize);
    for &bda in dirty {
        let objs = meta.sector_objects(bda)?;
        sect.as_mut_slice()
            .copy_from_slice(&pfs_format::metaset::encode_sector(&objs));
        log.dev.write_at(sect.as_slice(), bda)?;
    }
    Ok(())
}
