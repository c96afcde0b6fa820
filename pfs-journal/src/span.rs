//! A committed stretch of the journal, by transaction and by offset.

use crate::range::LogRange;
use pfs_format::layout::LOG_ENTRY_SIZE;
use pfs_format::LeaderRecord;

/// Transactions `(tail_txid, head_txid]`, whose entries lie from
/// `tail_offset` up to `head_offset` (modulo `log_size`) and end at
/// `head_lsn`.
///
/// A leader record describes one span (everything not yet checkpointed); a
/// reader that replayed up to some head wants the span from that head to
/// the writer's new one ([`Span::since`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The last transaction before the span.
    pub tail_txid: u64,
    /// Offset of the span's first entry.
    pub tail_offset: u64,
    /// The span's last transaction.
    pub head_txid: u64,
    /// Offset one past the span's last entry.
    pub head_offset: u64,
    /// lsn of the span's last entry (of the last entry before it when
    /// empty).
    pub head_lsn: u64,
    /// Journal size in bytes.
    pub log_size: u64,
}

impl Span {
    /// The committed, not yet checkpointed span a leader record describes.
    pub fn of_leader(lr: &LeaderRecord) -> Span {
        Span {
            tail_txid: lr.tail_txid.get(),
            tail_offset: lr.tail_offset.get(),
            head_txid: lr.head_txid.get(),
            head_offset: lr.head_offset.get(),
            head_lsn: lr.head_lsn.get(),
            log_size: lr.log_size.get(),
        }
    }

    /// What `new` committed after the head of `old`: `None` when the
    /// journal no longer holds all of it (`new` checkpointed past `old`'s
    /// head, or the journal was remade), so the reader must reload.
    ///
    /// # Example
    ///
    /// A follower that replayed up to `seen` reads only what the writer
    /// committed since:
    ///
    /// ```
    /// use pfs_format::{LeaderRecord, MetaObjPhy, MetaType, ObjectId};
    /// use pfs_journal::{append, checkpoint, span_entries, JournalError, LogStore, MemLog, Span};
    ///
    /// fn allow(_: &LeaderRecord) -> Result<(), JournalError> {
    ///     Ok(())
    /// }
    /// let tx = |oid| -> Result<_, pfs_format::FormatError> {
    ///     let id = ObjectId::new(MetaType::Inode, 0, oid)?;
    ///     Ok([(id, MetaObjPhy::new_free(id))])
    /// };
    ///
    /// let log = MemLog::new(64 << 10);
    /// let seen = append(&log, &log.read_leader()?, &tx(3)?, &allow)?;
    /// let now = append(&log, &seen, &tx(4)?, &allow)?;
    ///
    /// let span = Span::since(&seen, &now).expect("the journal still holds it");
    /// let new = span_entries(&log, &span, 1)?;
    /// assert_eq!(new.len(), 1);
    /// assert_eq!(new[0].id.oid, 4);
    ///
    /// // Once the writer checkpoints past `seen`, the follower must reload.
    /// let later = checkpoint(&log, &now, &mut || Ok(()), &allow)?;
    /// let later = append(&log, &later, &tx(5)?, &allow)?;
    /// assert!(Span::since(&seen, &later).is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn since(old: &LeaderRecord, new: &LeaderRecord) -> Option<Span> {
        let fits = new.log_size == old.log_size
            && new.tail_txid.get() <= old.head_txid.get()
            && old.head_txid.get() <= new.head_txid.get();
        fits.then(|| Span {
            tail_txid: old.head_txid.get(),
            tail_offset: old.head_offset.get(),
            ..Span::of_leader(new)
        })
    }

    /// What `new` committed after the head of `old`, even when `new`
    /// checkpointed past that head: checkpointed entries stay in the
    /// journal until the writer reuses their space, and
    /// [`span_entries`](crate::span_entries) tells whether it has (their
    /// txids and lsns no longer run on). `None` when the journal was remade
    /// or could not hold all of the span at once.
    pub fn after(old: &LeaderRecord, new: &LeaderRecord) -> Option<Span> {
        let entries = new.head_lsn.get().checked_sub(old.head_lsn.get())?;
        let fits = new.log_size == old.log_size
            && old.head_txid.get() <= new.head_txid.get()
            && entries.checked_mul(LOG_ENTRY_SIZE as u64)? < new.log_size.get();
        fits.then(|| Span {
            tail_txid: old.head_txid.get(),
            tail_offset: old.head_offset.get(),
            ..Span::of_leader(new)
        })
    }

    /// The byte range of its entries.
    pub fn range(&self) -> LogRange {
        LogRange {
            tail: self.tail_offset,
            head: self.head_offset,
            log_size: self.log_size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader(tail: (u64, u64), head: (u64, u64, u64)) -> LeaderRecord {
        let mut lr = LeaderRecord::new(30, 1 << 25);
        lr.tail_txid.set(tail.0);
        lr.tail_offset.set(tail.1);
        lr.head_txid.set(head.0);
        lr.head_offset.set(head.1);
        lr.head_lsn.set(head.2);
        lr.seal();
        lr
    }

    /// Panics unless `s` is the span from txid 5 at offset 2048 to txid 9
    /// at offset 4096, lsn 60.
    fn assert_five_to_nine(s: Option<Span>) {
        let s = s.expect("a span");
        assert_eq!((s.tail_txid, s.tail_offset), (5, 2048));
        assert_eq!((s.head_txid, s.head_offset, s.head_lsn), (9, 4096, 60));
    }

    #[test]
    fn catching_up_from_an_old_head() {
        let old = leader((2, 512), (5, 2048, 40));
        let new = leader((2, 512), (9, 4096, 60));
        assert_five_to_nine(Span::since(&old, &new));
        // Checkpointed past what the reader has: reload.
        let trimmed = leader((7, 3000), (9, 4096, 60));
        assert!(Span::since(&old, &trimmed).is_none());
        // The tail reaching exactly the reader's head is still fine.
        let at = leader((5, 2048), (9, 4096, 60));
        assert!(Span::since(&old, &at).is_some());
        // A journal that went backwards (remade) is not a continuation.
        assert!(Span::since(&new, &old).is_none());
    }

    #[test]
    fn catching_up_past_a_checkpoint() {
        let old = leader((2, 512), (5, 2048, 40));
        // Checkpointed past the reader: the entries may still be there.
        let trimmed = leader((7, 3000), (9, 4096, 60));
        assert_five_to_nine(Span::after(&old, &trimmed));
        // More entries than the journal holds at once: some were reused.
        let log = trimmed.log_size.get() / LOG_ENTRY_SIZE as u64;
        let lapped = leader((7, 3000), (9, 4096, 40 + log));
        assert!(Span::after(&old, &lapped).is_none());
        let almost = leader((7, 3000), (9, 4096, 40 + log - 1));
        assert!(Span::after(&old, &almost).is_some());
        // Backwards, or another journal size: not a continuation.
        assert!(Span::after(&trimmed, &old).is_none());
        let mut other = trimmed;
        other.log_size.set(trimmed.log_size.get() * 2);
        assert!(Span::after(&old, &other).is_none());
    }
}
