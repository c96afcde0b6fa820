//! Coordination with the other processes of this machine that mount the
//! device as the same host (a shared mount): the host's transaction lock,
//! the data locks, and how a host finds out it was deposed.

use super::state::read_leader;
use super::{Mode, Mount};
use crate::error::{CoreError, Result};
use crate::share::Share;
use pfs_format::LeaderRecord;
use std::sync::atomic::Ordering;

impl Mount {
    /// A shared mount's turn to write among the processes of its host on
    /// this machine (the host's transaction lock), caught up with what they
    /// committed; `None` for a mount that is not shared. A read-write
    /// mount finds out here whether another host committed while this
    /// host held the lease.
    pub(crate) fn host_tx(&self) -> Result<Option<crate::share::TxLock<'_>>> {
        let Some(s) = &self.share else {
            return Ok(None);
        };
        let lock = s.lock_tx(self.hostid)?;
        if lock.outermost() {
            self.host_catch_up(s)?;
        }
        Ok(Some(lock))
    }

    /// What [`Mount::host_tx`] checks, for a caller that only needs to
    /// know that the host is still the writer and this mount current
    /// (closing a handle opened for writing): with no IO and no lock when
    /// the share's commit counter says nothing changed since this process
    /// last looked while the host's lease runs, under the transaction lock
    /// otherwise.
    pub(crate) fn check_host(&self) -> Result<()> {
        if self.unchanged_since_seen() {
            return Ok(());
        }
        drop(self.host_tx()?);
        Ok(())
    }

    /// Whether a shared read-write mount whose host holds the lease on
    /// this machine has seen every commit made since: no other process of
    /// the machine committed (the share's counter is the one this process
    /// last caught up to), no other host can have, the lease running, and
    /// its state is at the host's head (see `group`).
    pub(super) fn unchanged_since_seen(&self) -> bool {
        self.machine_version()
            .is_some_and(|v| v == self.seen.load(Ordering::Acquire))
            && self.at_host_head(self.state.read_recursive().leader())
    }

    /// Under the host's transaction lock: catches up with the device, with
    /// one read of the leader record that serves both the check of the
    /// host's head ([`Mount::watch_host_head`]) and the catching up, and
    /// none when nothing changed since this process last looked.
    fn host_catch_up(&self, s: &Share) -> Result<()> {
        if self.unchanged_since_seen() {
            return Ok(());
        }
        self.counted_catch_up(|| {
            let bda = self.state.read().leader_bda;
            let leader = read_leader(self.raw.as_ref(), bda)?;
            if self.mode == Mode::ReadWrite {
                self.watch_host_head(s, &leader)?;
            }
            self.catch_up_to(leader)
        })
    }

    /// For a read-write mount whose host holds a running lease on this
    /// machine: the journal as the host's processes left it, known without
    /// reading the device, when all they did since this mount last read
    /// the leader record is append: this mount's leader record with the
    /// host's appended head. No other host can have committed while the
    /// lease runs, and a checkpoint (which moves the tail) is counted in
    /// the share. `None` when the device must be read.
    pub(super) fn appended_view(&self, s: &Share) -> Option<LeaderRecord> {
        let leader = *self.state.read().leader();
        self.appended_view_of(s, &leader)
    }

    /// [`Mount::appended_view`] for a state whose leader record is
    /// `leader`.
    pub(super) fn appended_view_of(
        &self,
        s: &Share,
        leader: &LeaderRecord,
    ) -> Option<LeaderRecord> {
        if self.mode != Mode::ReadWrite || self.machine_version().is_none() {
            return None;
        }
        if s.checkpoints(self.hostid) != self.seen_checkpoints.load(Ordering::Acquire) {
            return None;
        }
        let (txid, offset, lsn) = s.appended(self.hostid);
        let mut view = *leader;
        if txid <= view.head_txid.get() {
            return None;
        }
        view.head_txid.set(txid);
        view.head_offset.set(offset);
        view.head_lsn.set(lsn);
        view.seal();
        Some(view)
    }

    /// Under the host's transaction lock, while the machine records a
    /// lease of this mount's host: the journal head on the device (in
    /// `leader`, just read) must be the one a process of the host wrote
    /// last. Any other head means another host took the lease over and
    /// committed: the host is deposed and this mount stops writing. A
    /// lease no live process of the host holds any more was abandoned, not
    /// taken: it is forgotten.
    fn watch_host_head(&self, s: &Share, leader: &LeaderRecord) -> Result<()> {
        let (token, _) = s.lease(self.hostid);
        if token == 0 {
            return Ok(());
        }
        // Whether head `t` is the host's own: the one it settled, or the
        // next one it is writing (then settled now).
        let ours = |t: u64| {
            let (settled, next) = s.head(self.hostid);
            if t == settled {
                return true;
            }
            if next != 0 && t == next {
                s.settle(self.hostid, t);
                return true;
            }
            false
        };
        if ours(leader.head_txid.get()) {
            return Ok(());
        }
        // A committer of the host (group commit) may have written and
        // settled a newer head since `leader` was read: look again while
        // none is under way.
        let t = {
            let _turn = self.turn()?;
            let again = read_leader(self.raw.as_ref(), self.state.read().leader_bda)?;
            let t = again.head_txid.get();
            if ours(t) {
                return Ok(());
            }
            t
        };
        let (settled, _) = s.head(self.hostid);
        if crate::live::marked(self.raw.as_ref(), token) == Some(false) {
            s.clear_lease(self.hostid);
            return Ok(());
        }
        s.depose(self.hostid);
        let why = format!(
            "another host committed to {} (journal head txid {t}, this host's last {settled}) after taking the writer lease over; this host stopped writing",
            self.dev.name()
        );
        self.fence.stop(&why);
        Err(CoreError::Fenced { reason: why })
    }

    /// For a [`crate::MountOptions::shared`] mount: whether another process of
    /// this machine is mounted read-write with the same host id (say, a
    /// parent remounted read-write after it forked this process, which may
    /// then mount read-write too and share its lease).
    pub fn host_has_writer(&self) -> bool {
        self.share
            .as_ref()
            .is_some_and(|s| s.others_mounted(self.hostid))
    }

    /// Whether this mount is shared with other processes of this machine.
    pub(crate) fn is_shared(&self) -> bool {
        self.share.is_some()
    }

    /// Tells the other processes of this machine that the device changed
    /// (a shared mount, after a commit).
    pub(super) fn committed(&self) {
        if let Some(s) = &self.share {
            self.seen.store(s.bump(), Ordering::Release);
        }
    }

    /// [`Mount::committed`] after a checkpoint, which the host's other
    /// processes learn of by the share's count of checkpoints (their next
    /// transaction reads the leader record with the moved tail).
    pub(super) fn checkpointed(&self) {
        if let Some(s) = &self.share {
            s.count_checkpoint(self.hostid);
        }
        self.committed();
    }
}
