//! The journal's IO: a small storage trait the device layer implements, and
//! the write sequences built on it (append, checkpoint) with their flushes
//! in the one order that keeps every state on disk a committed one.

use crate::append::{checkpointed, Append};
use crate::error::JournalError;
use pfs_format::{LeaderRecord, MetaObjPhy, ObjectId};

/// Where the journal lives: `.pfs-journal`'s bytes by journal offset, the
/// leader record, and a flush that makes every write before it durable.
pub trait LogStore {
    /// The storage's error; journal errors convert into it.
    type Error: From<JournalError>;
    /// Fills `buf` from journal offset `offset` (never across the end).
    fn read_log(&self, offset: u64, buf: &mut [u8]) -> Result<(), Self::Error>;
    /// Writes `bytes` at journal offset `offset` (never across the end).
    fn write_log(&self, offset: u64, bytes: &[u8]) -> Result<(), Self::Error>;
    /// Reads the leader record as it is on the storage now.
    fn read_leader(&self) -> Result<LeaderRecord, Self::Error>;
    /// Writes the leader record.
    fn write_leader(&self, lr: &LeaderRecord) -> Result<(), Self::Error>;
    /// Makes every write before it durable.
    fn flush(&self) -> Result<(), Self::Error>;
}

/// A check run just before each write that changes what is committed (the
/// writer still holds its lease, nobody moved the head). It gets the leader
/// record the write is about to replace.
pub type Guard<'a, E> = &'a dyn Fn(&LeaderRecord) -> Result<(), E>;

/// Commits one transaction after `lr`: its entries are written at the head
/// and flushed, `guard` runs, then the advanced leader record is written and
/// flushed. Returns that leader record. On any error the transaction is not
/// committed (the old leader record still describes the journal).
pub fn append<S: LogStore + ?Sized>(
    store: &S,
    lr: &LeaderRecord,
    objs: &[(ObjectId, MetaObjPhy)],
    guard: Guard<'_, S::Error>,
) -> Result<LeaderRecord, S::Error> {
    let next = write_entries(store, lr, objs)?;
    publish(store, &next, &|| guard(lr).map(|()| *lr))
}

/// The first half of [`append`], for a writer that commits several
/// transactions with one [`publish`] (group commit): writes one
/// transaction's entries at `lr`'s head, no flush, and returns the leader
/// record that would commit them. Nothing is committed until a
/// [`publish`] covers them; the leader record still describes the journal.
pub fn write_entries<S: LogStore + ?Sized>(
    store: &S,
    lr: &LeaderRecord,
    objs: &[(ObjectId, MetaObjPhy)],
) -> Result<LeaderRecord, S::Error> {
    let plan = Append::plan(lr, objs)?;
    for (offset, bytes) in plan.pieces() {
        store.write_log(offset, bytes)?;
    }
    Ok(plan.next)
}

/// The second half of [`append`]: commits every transaction whose entries
/// were written since the leader record on the storage up to the head of
/// `head`: flush; `ondisk`, which checks that the writer may still commit
/// (as a [`Guard`]) and gives the leader record on the storage; that
/// record with `head`'s head written; flush. Returns the record written.
pub fn publish<S: LogStore + ?Sized>(
    store: &S,
    head: &LeaderRecord,
    ondisk: &dyn Fn() -> Result<LeaderRecord, S::Error>,
) -> Result<LeaderRecord, S::Error> {
    publish_flushed(store, head, &|| {
        store.flush()?;
        ondisk()
    })
}

/// [`publish`] whose first flush and look at the leader record on the
/// storage are both `flushed`'s to do, in either order or side by side (a
/// storage that can read while it flushes): it returns once the flush
/// completed, with the record as `ondisk` would. Then that record with
/// `head`'s head is written and flushed. Returns the record written.
pub fn publish_flushed<S: LogStore + ?Sized>(
    store: &S,
    head: &LeaderRecord,
    flushed: &dyn Fn() -> Result<LeaderRecord, S::Error>,
) -> Result<LeaderRecord, S::Error> {
    let next = with_head(&flushed()?, head);
    store.write_leader(&next)?;
    store.flush()?;
    Ok(next)
}

/// `lr` with the head (txid, offset, lsn) of `head`, sealed.
pub fn with_head(lr: &LeaderRecord, head: &LeaderRecord) -> LeaderRecord {
    let mut next = *lr;
    next.head_txid = head.head_txid;
    next.head_offset = head.head_offset;
    next.head_lsn = head.head_lsn;
    next.seal();
    next
}

/// Advances the tail to the head once the caller has written every changed
/// metaset sector home (`write_home`): flush, `guard`, leader record, flush.
/// Returns the new leader record; does nothing when nothing is committed
/// since the last checkpoint and `write_home` has nothing to do.
pub fn checkpoint<S: LogStore + ?Sized>(
    store: &S,
    lr: &LeaderRecord,
    write_home: &mut dyn FnMut() -> Result<(), S::Error>,
    guard: Guard<'_, S::Error>,
) -> Result<LeaderRecord, S::Error> {
    guard(lr)?;
    write_home()?;
    store.flush()?;
    guard(lr)?;
    let next = checkpointed(lr);
    store.write_leader(&next)?;
    store.flush()?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{allow, objs};
    use crate::{committed_entries, used, MemLog};

    type R<T> = Result<T, JournalError>;

    #[test]
    fn commits_wrap_around_many_times_and_replay_exactly() {
        // 64 entries of room.
        let log = MemLog::new(64 * 256);
        let mut lr = log.read_leader().unwrap();
        let (mut since_ckpt, mut wrapped, mut ckpts) = (0usize, 0, 0);
        for t in 0..400u32 {
            let n = 1 + (t as usize * 7) % 9;
            let next = match append(&log, &lr, &objs(n, t), &allow) {
                Err(JournalError::Full { .. }) => {
                    lr = checkpoint(&log, &lr, &mut || Ok(()), &allow).unwrap();
                    since_ckpt = 0;
                    ckpts += 1;
                    append(&log, &lr, &objs(n, t), &allow).unwrap()
                }
                other => other.unwrap(),
            };
            if next.head_offset.get() < lr.head_offset.get() {
                wrapped += 1;
            }
            lr = next;
            since_ckpt += n;
            assert_eq!(log.read_leader().unwrap(), lr);
            let got = committed_entries(&log, &lr, 1).unwrap();
            assert_eq!(got.len(), since_ckpt);
            assert_eq!(used(&lr), (since_ckpt * 256) as u64);
            let last = got.last().unwrap();
            assert_eq!(last.entry.le_txid.get() as u32, t + 1);
            assert_eq!(last.id, objs(n, t)[n - 1].0);
        }
        assert!(
            wrapped > 20 && ckpts > 20,
            "{wrapped} wraps, {ckpts} checkpoints"
        );
    }

    #[test]
    fn a_transaction_that_cannot_fit_is_refused_before_any_write() {
        let log = MemLog::new(16 * 256);
        let lr = log.read_leader().unwrap();
        log.fail_writes_after(0);
        assert!(matches!(
            append(&log, &lr, &objs(16, 1), &allow),
            Err(JournalError::TxTooLarge { .. })
        ));
        let lr = {
            let log = MemLog::new(16 * 256);
            let lr = log.read_leader().unwrap();
            let lr = append(&log, &lr, &objs(10, 1), &allow).unwrap();
            assert!(matches!(
                append(&log, &lr, &objs(6, 2), &allow),
                Err(JournalError::Full {
                    need: 1536,
                    free: 1536
                })
            ));
            lr
        };
        assert_eq!(lr.head_txid.get(), 1);
    }

    #[test]
    fn a_crash_before_the_leader_write_keeps_the_previous_commit() {
        let log = MemLog::new(64 * 256);
        let lr0 = log.read_leader().unwrap();
        let lr1 = append(&log, &lr0, &objs(3, 1), &allow).unwrap();
        // The entries of the next transaction are written and flushed, the
        // leader write fails: the torn tail past the head is ignored.
        log.fail_writes_after(1);
        assert!(append(&log, &lr1, &objs(4, 2), &allow).is_err());
        let after = log.crashed();
        let lr = after.read_leader().unwrap();
        assert_eq!(lr, lr1);
        let got = committed_entries(&after, &lr, 1).unwrap();
        assert_eq!(got.len(), 3);
        // The journal goes on from there, overwriting the torn tail.
        let lr2 = append(&after, &lr, &objs(2, 3), &allow).unwrap();
        assert_eq!(committed_entries(&after, &lr2, 1).unwrap().len(), 5);
    }

    #[test]
    fn a_refusing_guard_stops_before_the_leader_is_written() {
        let log = MemLog::new(64 * 256);
        let lr0 = log.read_leader().unwrap();
        let refuse = |_: &LeaderRecord| -> R<()> {
            Err(JournalError::Sequence {
                offset: 0,
                what: "lease lost".into(),
            })
        };
        assert!(append(&log, &lr0, &objs(3, 1), &refuse).is_err());
        assert_eq!(log.read_leader().unwrap(), lr0);
        assert!(checkpoint(&log, &lr0, &mut || Ok(()), &refuse).is_err());
        let lr1 = append(&log, &lr0, &objs(3, 1), &allow).unwrap();
        let mut homed = false;
        assert!(checkpoint(
            &log,
            &lr1,
            &mut || {
                homed = true;
                Ok(())
            },
            &refuse
        )
        .is_err());
        assert!(!homed, "metasets written without the guard's consent");
        assert_eq!(log.read_leader().unwrap(), lr1);
    }

    #[test]
    fn one_publish_commits_every_transaction_written_before_it() {
        let log = MemLog::new(64 * 256);
        let lr0 = log.read_leader().unwrap();
        let lr1 = write_entries(&log, &lr0, &objs(3, 1)).unwrap();
        let lr2 = write_entries(&log, &lr1, &objs(2, 2)).unwrap();
        // Written, not committed: the journal still ends at lr0.
        assert_eq!(log.read_leader().unwrap(), lr0);
        assert!(committed_entries(&log, &lr0, 1).unwrap().is_empty());
        let done = publish(&log, &lr2, &|| log.read_leader()).unwrap();
        assert_eq!(done, lr2);
        assert_eq!(log.read_leader().unwrap(), lr2);
        let got = committed_entries(&log, &lr2, 1).unwrap();
        assert_eq!(got.len(), 5);
        assert_eq!(got[4].entry.le_txid.get(), 2);
        // A crash before the publish keeps none of them.
        let lr3 = write_entries(&log, &lr2, &objs(4, 3)).unwrap();
        assert_eq!(lr3.head_txid.get(), 3);
        assert_eq!(log.crashed().read_leader().unwrap(), lr2);
    }

    #[test]
    fn a_damaged_committed_entry_is_an_error_not_a_shorter_journal() {
        let log = MemLog::new(64 * 256);
        let lr0 = log.read_leader().unwrap();
        let lr1 = append(&log, &lr0, &objs(3, 1), &allow).unwrap();
        let lr2 = append(&log, &lr1, &objs(2, 2), &allow).unwrap();
        log.damage(3 * 256 + 10);
        assert!(matches!(
            committed_entries(&log, &lr2, 1),
            Err(JournalError::Corrupt { offset: 768, .. })
        ));
    }
}
