//! The journal as one owner keeps it: where its head and tail are (the
//! leader record), which metaset sectors the transactions since the last
//! checkpoint changed, and how many there were. Its writer commits through
//! it (a full journal is checkpointed first, and a checkpoint follows when
//! the reference's thresholds say so); a follower brings it forward to
//! another writer's commits.
//!
//! It owns no storage: every call is given the [`LogStore`] to work on, and
//! the caller's metadata stays the caller's (a checkpoint asks the caller to
//! write the changed sectors home).

use crate::append::{checkpoint_due, Append};
use crate::error::JournalError;
use crate::replay::{span_entries, Committed};
use crate::span::Span;
#[cfg(doc)]
use crate::store::publish;
use crate::store::{append, checkpoint, write_entries, Guard, LogStore};
use pfs_format::{LeaderRecord, MetaObjPhy, ObjectId};
use std::collections::BTreeSet;

/// Writes the metaset sectors at the given device addresses to their homes
/// from the caller's metadata (the first step of a checkpoint).
pub type WriteHome<'a, E> = &'a mut dyn FnMut(&BTreeSet<u64>) -> Result<(), E>;

/// The state of a journal (see the module documentation).
///
/// # Example
///
/// A writer's commits, then a checkpoint that writes the changed metaset
/// sectors home (here it only notes them) and frees the journal:
///
/// ```
/// use pfs_format::{LeaderRecord, MetaObjPhy, MetaType, ObjectId};
/// use pfs_journal::{used, Journal, JournalError, LogStore, MemLog};
/// use std::collections::BTreeSet;
///
/// fn allow(_: &LeaderRecord) -> Result<(), JournalError> {
///     Ok(())
/// }
///
/// let log = MemLog::new(64 << 10);
/// let mut journal = Journal::new(log.read_leader()?, BTreeSet::new());
/// let mut written_home = BTreeSet::new();
/// let mut write_home = |sectors: &BTreeSet<u64>| -> Result<(), JournalError> {
///     written_home.extend(sectors.iter().copied());
///     Ok(())
/// };
/// for oid in 3..6 {
///     let id = ObjectId::new(MetaType::Inode, 0, oid)?;
///     journal.commit(&log, &[(id, MetaObjPhy::new_free(id))], &allow, &mut write_home)?;
/// }
/// assert_eq!(journal.ntx(), 3);
/// assert_eq!(journal.leader().head_txid.get(), 3);
/// assert!(journal.has_unapplied());
/// assert_eq!(journal.dirty().len(), 1); // inodes 3..6 share a sector
///
/// journal.checkpoint(&log, &allow, &mut write_home)?;
/// assert!(!journal.has_unapplied());
/// assert_eq!(used(journal.leader()), 0);
/// assert_eq!(log.read_leader()?, *journal.leader());
/// drop(write_home);
/// assert_eq!(written_home.len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journal {
    leader: LeaderRecord,
    /// Metaset sectors (device addresses) changed since the last checkpoint.
    dirty: BTreeSet<u64>,
    /// Transactions committed since the last checkpoint.
    ntx: u64,
}

impl Journal {
    /// The journal `leader` describes, whose committed entries since the
    /// last checkpoint changed the sectors in `dirty`.
    pub fn new(leader: LeaderRecord, dirty: BTreeSet<u64>) -> Journal {
        Journal {
            leader,
            dirty,
            ntx: 0,
        }
    }

    /// The leader record of the last commit or checkpoint.
    pub fn leader(&self) -> &LeaderRecord {
        &self.leader
    }

    /// The metaset sectors changed since the last checkpoint.
    pub fn dirty(&self) -> &BTreeSet<u64> {
        &self.dirty
    }

    /// Transactions committed (or appended) since the last checkpoint.
    pub fn ntx(&self) -> u64 {
        self.ntx
    }

    /// Whether a checkpoint has anything to do.
    pub fn has_unapplied(&self) -> bool {
        self.leader.tail_txid != self.leader.head_txid || !self.dirty.is_empty()
    }

    /// Takes in a leader record that another writer of the same host wrote
    /// by checkpointing (the head is where it was, the tail moved).
    pub fn checkpointed_elsewhere(&mut self, leader: LeaderRecord) {
        self.leader = leader;
    }

    /// Forgets the changed sectors: someone else wrote them home.
    pub fn forget_dirty(&mut self) {
        self.dirty.clear();
    }

    /// Commits one transaction of `objs`: its entries are appended at the
    /// head and flushed, `guard` runs, and the leader record is written and
    /// flushed. A journal too full for it is checkpointed first, through
    /// `write_home` (the sectors as they were before this transaction). When
    /// this returns `Ok` the transaction is committed: the caller applies
    /// `objs` to its metadata, then calls [`Journal::checkpoint_if_due`].
    /// On an error nothing of it is committed.
    pub fn commit<S: LogStore + ?Sized>(
        &mut self,
        store: &S,
        objs: &[(ObjectId, MetaObjPhy)],
        guard: Guard<'_, S::Error>,
        write_home: WriteHome<'_, S::Error>,
    ) -> Result<(), S::Error> {
        if let Err(JournalError::Full { .. }) = Append::plan(&self.leader, objs) {
            self.checkpoint(store, guard, write_home)?;
        }
        self.leader = append(store, &self.leader, objs, guard)?;
        self.dirty
            .extend(objs.iter().map(|(id, _)| id.sector_bda()));
        self.ntx += 1;
        Ok(())
    }

    /// Whether a transaction of `objs` fits in the journal now: `Ok(false)`
    /// when it must be checkpointed first, [`JournalError::TxTooLarge`]
    /// when no journal of this size could hold it.
    pub fn fits(&self, objs: &[(ObjectId, MetaObjPhy)]) -> Result<bool, JournalError> {
        match Append::plan(&self.leader, objs) {
            Ok(_) => Ok(true),
            Err(JournalError::Full { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Writes one transaction of `objs` at the head without committing it
    /// (see [`write_entries`]): the journal's head moves past it here, and
    /// its leader record is the one that will commit it; a [`publish`]
    /// of a leader record with this head (or a later one) commits it. The
    /// caller makes sure it [`fits`](Journal::fits) first. Returns its
    /// txid.
    pub fn append<S: LogStore + ?Sized>(
        &mut self,
        store: &S,
        objs: &[(ObjectId, MetaObjPhy)],
    ) -> Result<u64, S::Error> {
        self.leader = write_entries(store, &self.leader, objs)?;
        self.dirty
            .extend(objs.iter().map(|(id, _)| id.sector_bda()));
        self.ntx += 1;
        Ok(self.leader.head_txid.get())
    }

    /// Checkpoints if the transactions or sectors changed since the last
    /// checkpoint reach the reference's thresholds; `true` when it did.
    pub fn checkpoint_if_due<S: LogStore + ?Sized>(
        &mut self,
        store: &S,
        guard: Guard<'_, S::Error>,
        write_home: WriteHome<'_, S::Error>,
    ) -> Result<bool, S::Error> {
        if !checkpoint_due(self.ntx, self.dirty.len() as u64) {
            return Ok(false);
        }
        self.checkpoint(store, guard, write_home)?;
        Ok(true)
    }

    /// Writes the changed sectors home (`write_home`), flushes, then moves
    /// the tail up to the head (see [`checkpoint`] for the order of writes,
    /// flushes and `guard`). Does nothing when nothing is unapplied.
    pub fn checkpoint<S: LogStore + ?Sized>(
        &mut self,
        store: &S,
        guard: Guard<'_, S::Error>,
        write_home: WriteHome<'_, S::Error>,
    ) -> Result<(), S::Error> {
        if !self.has_unapplied() {
            return Ok(());
        }
        let dirty = &self.dirty;
        self.leader = checkpoint(store, &self.leader, &mut || write_home(dirty), guard)?;
        self.dirty.clear();
        self.ntx = 0;
        Ok(())
    }

    /// Brings the journal forward to another writer's leader record `new`:
    /// returns the entries committed since this journal's leader (also
    /// those a checkpoint already wrote home: they stay in the journal until
    /// the writer reuses their space), for the caller to apply. `None` when
    /// the journal no longer holds them all, or the writer reused their
    /// space while they were read (`reread` gives the leader record as it is
    /// on the storage after the read): the caller must load everything
    /// again. Nothing changes on `None` or an error.
    pub fn follow<S: LogStore + ?Sized>(
        &mut self,
        store: &S,
        new: LeaderRecord,
        nchunk: u32,
        reread: impl FnOnce() -> Result<LeaderRecord, S::Error>,
    ) -> Result<Option<Vec<Committed>>, S::Error> {
        let old = self.leader;
        let Some(span) = Span::since(&old, &new).or_else(|| Span::after(&old, &new)) else {
            return Ok(None);
        };
        let Ok(entries) = span_entries(store, &span, nchunk) else {
            return Ok(None);
        };
        // Each entry read proved itself (txid, lsn, checksum); what is left
        // to rule out is a writer that lapped the journal while we read.
        if Span::after(&old, &reread()?).is_none() {
            return Ok(None);
        }
        self.dirty
            .extend(entries.iter().map(|c| c.entry.le_sector_bda.get()));
        self.leader = new;
        Ok(Some(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{allow, objs};
    use crate::MemLog;

    #[test]
    fn a_full_journal_checkpoints_itself_and_a_follower_keeps_up() {
        // 64 entries of room: commits of 1..=9 entries fill it every few.
        let log = MemLog::new(64 * 256);
        let mut w = Journal::new(log.read_leader().unwrap(), BTreeSet::new());
        let mut f = w.clone();
        let (mut homes, mut followed) = (0, 0);
        for t in 0..200u32 {
            let n = 1 + (t as usize * 7) % 9;
            let before = *w.leader();
            w.commit(&log, &objs(n, t), &allow, &mut |d: &BTreeSet<u64>| {
                assert!(!d.is_empty());
                homes += 1;
                Ok(())
            })
            .unwrap();
            assert_eq!(w.leader().head_txid.get(), before.head_txid.get() + 1);
            assert_eq!(log.read_leader().unwrap(), *w.leader());
            // The follower reads what it missed, or is told to reload when
            // a checkpoint's reuse of the space overtook it.
            if t % 3 == 0 {
                match f
                    .follow(&log, *w.leader(), 1, || log.read_leader())
                    .unwrap()
                {
                    Some(entries) => {
                        assert!(!entries.is_empty());
                        followed += 1;
                    }
                    None => f = Journal::new(*w.leader(), BTreeSet::new()),
                }
                assert_eq!(f.leader(), w.leader());
            }
        }
        assert!(homes > 10, "the journal checkpointed itself {homes} times");
        assert!(followed > 10, "followed {followed} times");
        assert!(!w.checkpoint_if_due(&log, &allow, &mut |_| Ok(())).unwrap());
        w.checkpoint(&log, &allow, &mut |_| Ok(())).unwrap();
        assert!(!w.has_unapplied());
    }
}
