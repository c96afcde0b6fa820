//! Following the writer: catching a mount up with what was committed
//! since it last looked, by the journal when it still holds the entries,
//! by loading everything again when the writer lapped it.

use super::state::{advance, load_state_shared, next_gen, read_leader, State};
use super::{Mode, Mount};
use crate::alloc::Allocator;
use crate::error::Result;
use crate::meta::MetaImage;
use pfs_format::LeaderRecord;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Whether leader records `a` and `b` have the same journal head (they
/// may differ in the tail a checkpoint moved).
fn same_head(a: &LeaderRecord, b: &LeaderRecord) -> bool {
    a.head_txid.get() == b.head_txid.get() && a.head_lsn.get() == b.head_lsn.get()
}

/// How many times [`Mount::reload`] loads the device's state to catch it
/// up with what the host appended, when checkpoints keep moving the
/// journal under it.
const RELOAD_TRIES: u32 = 4;

impl Mount {
    /// Catches up with the writer: read-only mounts replay what it
    /// committed; a read-write mount that has not taken the writer lease yet
    /// reloads if anyone committed since it looked (once it holds the lease
    /// its memory is current and this does nothing).
    pub fn refresh(&self) -> Result<()> {
        if self.frozen.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        self.catch_up()
    }

    /// Makes every later call of this (read-only) mount see the committed
    /// state it has now, so a command that makes several calls (list a
    /// directory, then stat each entry) works on one state: an entry the
    /// writer deletes meanwhile is simply still there, never half gone.
    /// File data stays exact: [`Mount::read_at`] checks that the writer did
    /// not free the blocks it read, catching up only when it did.
    pub fn freeze(&self) {
        self.frozen
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether another writer may change the device under this mount.
    pub(super) fn others_may_write(&self) -> bool {
        self.mode == Mode::ReadOnly || self.share.is_some() || self.fence.lease().is_none()
    }

    /// For a shared read-write mount whose host holds the writer lease on
    /// this machine: the share's commit counter, which then counts every
    /// commit to the device.
    pub(super) fn machine_version(&self) -> Option<u64> {
        let s = self.share.as_ref()?;
        if self.mode != Mode::ReadWrite {
            return None;
        }
        let v = s.version();
        let (token, renewed) = s.lease(self.hostid);
        let valid = pfs_paxos::lease::Validity {
            renewed_at_ms: renewed,
            duration_ms: u64::from(self.lease_ms),
        };
        (token != 0 && valid.may_write(crate::lease::mono_ms())).then_some(v)
    }

    pub(super) fn catch_up(&self) -> Result<()> {
        match self.unchanged_since_seen() {
            true => Ok(()),
            false => self.catch_up_device(),
        }
    }

    /// Catches up with what the host's processes appended (see
    /// `Mount::appended_view`), or else by reading the leader record from
    /// the device.
    pub(super) fn catch_up_device(&self) -> Result<()> {
        self.counted_catch_up(|| self.catch_up_from_device())
    }

    /// Catches up with what the host's processes appended, or else with
    /// `from_device`, and notes the share's commit counter and count of
    /// checkpoints as they were before (so a commit or checkpoint made
    /// meanwhile is caught up with next time).
    pub(super) fn counted_catch_up(&self, from_device: impl FnOnce() -> Result<()>) -> Result<()> {
        let version = self.share.as_ref().map(|s| s.version());
        if !self.catch_up_appended()? {
            let checkpoints = self.share.as_ref().map(|s| s.checkpoints(self.hostid));
            from_device()?;
            if let Some(c) = checkpoints {
                self.seen_checkpoints.store(c, Ordering::Release);
            }
        }
        if let Some(v) = version {
            self.seen.store(v, Ordering::Release);
        }
        Ok(())
    }

    fn catch_up_from_device(&self) -> Result<()> {
        if self.mode == Mode::ReadWrite && self.share.is_none() {
            if self.fence.lease().is_some() {
                return Ok(());
            }
            // A writer that has not written yet follows whoever did.
            let st = self.state.read();
            if self.fence.lease().is_some() {
                // Another thread of this mount took the lease (under the
                // state's write lock) since the look above and may have
                // appended a transaction that is not durable yet: the
                // device's leader record is behind this state, and
                // reloading from it would lose that transaction.
                return Ok(());
            }
            let now = read_leader(self.dev.as_ref(), st.leader_bda)?;
            if now == *st.leader() {
                return Ok(());
            }
            drop(st);
            return self.reload();
        }
        let bda = self.state.read().leader_bda;
        let new = self.read_leader_fresh(bda)?;
        self.catch_up_to(new)
    }

    /// The leader record at `bda` as a read of the device that started
    /// after this call began shows it: this thread's read, or one another
    /// thread of the mount started after this call began (see
    /// [`crate::freshread`]). It shows every commit that returned before
    /// the call, and a head no newer than that of any read started later.
    pub(super) fn read_leader_fresh(&self, bda: u64) -> Result<LeaderRecord> {
        let (at, leader) = self
            .leader_reads
            .read(|| Ok((bda, read_leader(self.dev.as_ref(), bda)?)))?;
        match at == bda {
            true => Ok(leader),
            false => read_leader(self.dev.as_ref(), bda),
        }
    }

    /// Catches a mount that does not hold the writer lease up with
    /// `leader`, read from the device after `version` (the share's commit
    /// counter, for a shared mount) was read.
    pub(super) fn catch_up_with(&self, leader: LeaderRecord, version: Option<u64>) -> Result<()> {
        if self.mode == Mode::ReadWrite && self.share.is_none() {
            // A writer that has not written yet: see `catch_up_from_device`.
            return self.catch_up_device();
        }
        self.catch_up_to(leader)?;
        if let Some(v) = version {
            self.seen.store(v, Ordering::Release);
        }
        Ok(())
    }

    /// Brings this mount's state to the leader record `new`, just read
    /// from the device (a mount shared by the processes of a host, or a
    /// reader).
    pub(super) fn catch_up_to(&self, new: LeaderRecord) -> Result<()> {
        self.follow_to(new, false)
    }

    /// Catches a read-write mount of a shared host that holds the lease up
    /// with what the host's processes appended, when that needs no read of
    /// the leader record (see `Mount::appended_view`): `false` when it
    /// does. Only the host's processes write while its lease runs, and
    /// they reuse journal space only after a checkpoint, which the share
    /// counts: entries read while no checkpoint was counted are the ones
    /// appended, and the leader record need not be read again after them.
    pub(super) fn catch_up_appended(&self) -> Result<bool> {
        let Some(view) = self.share.as_ref().and_then(|s| self.appended_view(s)) else {
            return Ok(false);
        };
        self.follow_to(view, true)?;
        Ok(true)
    }

    fn follow_to(&self, new: LeaderRecord, own: bool) -> Result<()> {
        // What the host's processes appended counts as committed here
        // (see `group`): their next transactions build on it.
        let new = self.host_view(new);
        let seen = *self.state.read().leader();
        if self.nothing_to_follow(&seen, &new) {
            return Ok(());
        }
        let mut st = self.state.write();
        let now = *st.leader();
        if now != seen && now.head_txid.get() >= new.head_txid.get() {
            // Another thread of this mount caught up (or appended) past
            // `new` while this one waited for the state.
            return Ok(());
        }
        if !self.follow_in(&mut st, new, own)? {
            // The writer reused the journal space of entries we miss
            // (they are in the metasets now), before or while we read.
            drop(st);
            return self.reload();
        }
        Ok(())
    }

    /// Whether a state whose leader record is `old` has nothing to apply
    /// to reach `new`: the same head, or (a read-write mount of a shared
    /// host) a head this mount appended past.
    fn nothing_to_follow(&self, old: &LeaderRecord, new: &LeaderRecord) -> bool {
        (self.mode == Mode::ReadWrite
            && self.share.is_some()
            && new.head_txid.get() < old.head_txid.get())
            || (same_head(old, new) && !(self.mode == Mode::ReadWrite && new != old))
    }

    /// Brings `st` (this mount's state, or one being loaded for it) to
    /// `new`; `own` when `new` is the host's appended view, whose entries
    /// may still be in the share's journal window. `false` when the
    /// journal no longer holds the entries: `st` is unchanged, and must be
    /// loaded again.
    fn follow_in(&self, st: &mut State, new: LeaderRecord, own: bool) -> Result<bool> {
        let old = *st.leader();
        // Also a read-write mount of a shared host that appended past what
        // was read (a leader record read before a committer of the host
        // settled).
        if self.nothing_to_follow(&old, &new) {
            return Ok(true);
        }
        if same_head(&old, &new) {
            // Checkpointed by another process of this host (a read-write
            // mount): the next leader record we write must carry the tail
            // it moved.
            st.gen = next_gen();
            st.journal.checkpointed_elsewhere(new);
            return Ok(true);
        }
        let bda = st.leader_bda;
        let checkpoints = self.seen_checkpoints.load(Ordering::Acquire);
        let no_checkpoint = || {
            self.share
                .as_ref()
                .is_some_and(|s| s.checkpoints(self.hostid) == checkpoints)
        };
        let reread = || match own && no_checkpoint() {
            true => Ok(new),
            false => Ok(self.host_view(read_leader(self.dev.as_ref(), bda)?)),
        };
        // A writer of a shared host appends next at the head it catches up
        // to: the read of the entries keeps the head's sector for it.
        let tail =
            (self.mode == Mode::ReadWrite && self.share.is_some()).then_some(&self.journal_tail);
        // What the host's processes appended under its running lease may
        // still be in the share's journal window.
        let window = self
            .share
            .as_deref()
            .filter(|_| own)
            .map(|s| (s, self.hostid));
        // The host's appends up to `new` may still be being written to
        // the device (see `group`): a read of them there waits until they
        // are.
        let written = || self.await_flights(new.head_txid.get());
        let before_device = tail.map(|_| &written as &dyn Fn() -> Result<()>);
        advance(
            self.dev.as_ref(),
            st,
            new,
            reread,
            tail,
            window,
            before_device,
        )
    }

    /// Follows the writer in the background as well: every `interval` a
    /// thread catches this (read-only) mount up with the journal, so it
    /// stays current between operations. The thread ends when the mount is
    /// dropped, and takes none of the process's signals (it starts with
    /// all of them blocked).
    pub fn spawn_follower(
        self: &Arc<Self>,
        interval: std::time::Duration,
    ) -> std::thread::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        crate::threads::spawn_quiet("pfs-follower", move || loop {
            std::thread::sleep(interval);
            let Some(m) = weak.upgrade() else { return };
            // Errors are met again, and reported, by the next operation.
            let _ = m.refresh();
        })
        // As `std::thread::spawn` does when no thread can be had.
        .expect("failed to spawn thread")
    }

    /// Drops all in-memory metadata and loads it again from the device.
    ///
    /// The device holds what was committed. A read-write mount of a shared
    /// host also catches the loaded state up with what the host's
    /// processes appended (its own transactions among them, which may not
    /// be durable yet, and whose objects its callers go on to use) before
    /// any thread sees it.
    pub fn reload(&self) -> Result<()> {
        self.reloads.fetch_add(1, Ordering::Relaxed);
        let Some(s) = self
            .share
            .as_deref()
            .filter(|_| self.mode == Mode::ReadWrite)
        else {
            let writer = self.mode == Mode::ReadWrite;
            let had_lease = self.fence.lease().is_some();
            let mut fresh =
                load_state_shared(self.dev.as_ref(), self.share.as_deref(), self.hostid)?;
            if writer {
                fresh.alloc = Some(Allocator::build(&fresh.meta));
            }
            let mut st = self.state.write();
            if writer && !had_lease && self.fence.lease().is_some() {
                // Another thread took the lease meanwhile (catching up
                // with the device as it did) and may have appended a
                // transaction not durable yet, which the loaded state
                // lacks: its state stays.
                return Ok(());
            }
            *st = fresh;
            return Ok(());
        };
        let mut tries = 0;
        loop {
            tries += 1;
            // Counted before the load: a checkpoint made meanwhile (which
            // commits everything appended before it) means a load again.
            let checkpoints = s.checkpoints(self.hostid);
            // Loaded without the state held: a load may wait for the
            // host's transaction lock, which is taken before the state.
            let mut fresh = load_state_shared(self.dev.as_ref(), Some(s), self.hostid)?;
            fresh.alloc = Some(Allocator::build(&fresh.meta));
            // The state is held from here on, so no thread of this mount
            // appends before the loaded state has caught up.
            let mut st = self.state.write();
            self.seen_checkpoints.store(checkpoints, Ordering::Release);
            // A checkpoint since the count: the load may have read the
            // device before it, and the host's appended head is then no
            // longer known to follow the loaded state's (no view).
            let moved = s.checkpoints(self.hostid) != checkpoints;
            let caught = !moved
                && match self.appended_view_of(s, fresh.leader()) {
                    Some(view) => self.follow_in(&mut fresh, view, true)?,
                    None => true,
                };
            if caught || tries == RELOAD_TRIES {
                // Not caught up after every try (checkpoints went on
                // meanwhile): the device's committed state, which the
                // next catch-up brings forward.
                *st = fresh;
                return Ok(());
            }
        }
    }

    /// Runs `f` on the current metadata, after catching up with the writer.
    pub fn with_meta<R>(&self, f: impl FnOnce(&MetaImage) -> R) -> Result<R> {
        self.refresh()?;
        Ok(f(&self.state.read().meta))
    }
}
