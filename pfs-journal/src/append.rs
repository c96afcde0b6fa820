//! Turning one transaction's changed objects into log entries at the
//! journal head, and the leader record that commits them: pure, no IO.

use crate::error::{JournalError, Result};
use pfs_format::layout::LOG_ENTRY_SIZE;
use pfs_format::{LeaderRecord, LogEntryPhy, MetaObjPhy, ObjectId};

/// Checkpoint after this many transactions (`trimgroup_ntx_threshold`).
pub const CHECKPOINT_NTX: u64 = 20_000;
/// Checkpoint after this many changed metaset sectors
/// (`trimgroup_nsect_threshold`).
pub const CHECKPOINT_NSECT: u64 = 32_768;

/// Whether a writer with `ntx` transactions and `nsect` changed sectors
/// since its last checkpoint should checkpoint now (the reference's
/// thresholds).
pub fn checkpoint_due(ntx: u64, nsect: u64) -> bool {
    ntx >= CHECKPOINT_NTX || nsect >= CHECKPOINT_NSECT
}

/// Bytes of the journal in use (committed, not yet checkpointed).
pub fn used(lr: &LeaderRecord) -> u64 {
    let size = lr.log_size.get();
    (lr.head_offset.get() + size - lr.tail_offset.get()) % size
}

/// The leader record after a checkpoint: everything committed is applied,
/// so the tail moves up to the head.
pub fn checkpointed(lr: &LeaderRecord) -> LeaderRecord {
    let mut next = *lr;
    next.tail_txid = next.head_txid;
    next.tail_offset = next.head_offset;
    next.seal();
    next
}

/// One transaction ready to be written: its entries' bytes, where they go
/// (two pieces when they wrap), and the leader record that commits them.
#[derive(Debug, Clone)]
pub struct Append {
    bytes: Vec<u8>,
    head: u64,
    log_size: u64,
    /// The leader record to write once the entries are durable.
    pub next: LeaderRecord,
}

impl Append {
    /// Encodes `objs` as transaction `head_txid + 1` of `lr`'s journal.
    /// Fails with [`JournalError::TxTooLarge`] when no journal could hold
    /// it, and [`JournalError::Full`] when this one cannot until it is
    /// checkpointed (the journal always keeps one entry free, so a full
    /// journal is never mistaken for an empty one).
    pub fn plan(lr: &LeaderRecord, objs: &[(ObjectId, MetaObjPhy)]) -> Result<Append> {
        let size = lr.log_size.get();
        let need = (objs.len() * LOG_ENTRY_SIZE) as u64;
        if need >= size {
            return Err(JournalError::TxTooLarge {
                need,
                log_size: size,
            });
        }
        let free = size - used(lr);
        if need >= free {
            return Err(JournalError::Full { need, free });
        }
        let txid = lr.head_txid.get() + 1;
        let lsn0 = lr.head_lsn.get();
        let mut bytes = Vec::with_capacity(need as usize);
        for (k, (id, mo)) in objs.iter().enumerate() {
            let le = LogEntryPhy::new(
                *mo,
                *id,
                txid as i64,
                (lsn0 + k as u64 + 1) as i64,
                k + 1 < objs.len(),
            );
            bytes.extend_from_slice(&le.to_bytes());
        }
        let head = lr.head_offset.get();
        let mut next = *lr;
        next.head_txid.set(txid);
        next.head_lsn.set(lsn0 + objs.len() as u64);
        next.head_offset.set((head + need) % size);
        next.seal();
        Ok(Append {
            bytes,
            head,
            log_size: size,
            next,
        })
    }

    /// `(journal offset, bytes)` to write, never across the journal's end.
    pub fn pieces(&self) -> Vec<(u64, &[u8])> {
        let first = ((self.log_size - self.head) as usize).min(self.bytes.len());
        let mut v = vec![(self.head, &self.bytes[..first])];
        if first < self.bytes.len() {
            v.push((0, &self.bytes[first..]));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` free inodes, 3 onwards.
    fn objs(n: usize) -> Vec<(ObjectId, MetaObjPhy)> {
        crate::testutil::objs(n, 0)
    }

    #[test]
    fn entries_and_leader_of_one_transaction() {
        let lr = LeaderRecord::new(30, 4096);
        let a = Append::plan(&lr, &objs(3)).unwrap();
        assert_eq!(a.pieces(), vec![(0, &a.bytes[..])]);
        assert_eq!(a.next.head_txid.get(), 1);
        assert_eq!(a.next.head_lsn.get(), 3);
        assert_eq!(a.next.head_offset.get(), 768);
        assert_eq!(a.next.tail_offset.get(), 0);
        for (k, e) in a.bytes.chunks(LOG_ENTRY_SIZE).enumerate() {
            let (le, _) = LogEntryPhy::decode(e, 1).unwrap();
            assert_eq!(le.le_txid.get(), 1);
            assert_eq!(le.le_lsn.get(), k as i64 + 1);
            assert_eq!(le.le_more.get(), i32::from(k < 2));
        }
    }

    #[test]
    fn wrapping_full_and_too_large() {
        let mut lr = LeaderRecord::new(30, 4096);
        lr.head_offset.set(3584);
        lr.tail_offset.set(3072);
        lr.head_txid.set(4);
        lr.tail_txid.set(2);
        lr.seal();
        let a = Append::plan(&lr, &objs(4)).unwrap();
        let p = a.pieces();
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].0, p[0].1.len()), (3584, 512));
        assert_eq!((p[1].0, p[1].1.len()), (0, 512));
        assert_eq!(a.next.head_offset.get(), 512);
        // 512 bytes in use of 4096: 14 entries fit, 14 leaves none free.
        assert!(Append::plan(&lr, &objs(13)).is_ok());
        assert!(matches!(
            Append::plan(&lr, &objs(14)),
            Err(JournalError::Full {
                need: 3584,
                free: 3584
            })
        ));
        assert!(matches!(
            Append::plan(&lr, &objs(16)),
            Err(JournalError::TxTooLarge { .. })
        ));
        let c = checkpointed(&lr);
        assert_eq!((c.tail_txid.get(), c.tail_offset.get()), (4, 3584));
        assert_eq!(used(&c), 0);
        assert!(Append::plan(&c, &objs(14)).is_ok());
        assert!(checkpoint_due(CHECKPOINT_NTX, 0) && checkpoint_due(0, CHECKPOINT_NSECT));
        assert!(!checkpoint_due(1, 1));
    }
}
