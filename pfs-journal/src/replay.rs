//! Reading the committed entries, checked entry by entry and as a sequence.

use crate::error::JournalError;
use crate::span::Span;
use crate::store::LogStore;
use pfs_format::layout::LOG_ENTRY_SIZE;
use pfs_format::{LeaderRecord, LogEntryPhy, ObjectId};

/// One committed entry and where it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// Journal offset of the entry.
    pub offset: u64,
    /// The entry.
    pub entry: LogEntryPhy,
    /// The object it carries.
    pub id: ObjectId,
}

/// Reads and checks every entry the leader record says is committed and
/// not yet checkpointed (see [`span_entries`]).
pub fn committed_entries<S: LogStore + ?Sized>(
    store: &S,
    lr: &LeaderRecord,
    nchunk: u32,
) -> Result<Vec<Committed>, S::Error> {
    span_entries(store, &Span::of_leader(lr), nchunk)
}

/// Reads and checks every entry of `span` on a device of `nchunk` chunks:
/// each decodes and is checksummed, lsns run without gap up to `head_lsn`,
/// txids rise by one per transaction up to `head_txid`, and the last entry
/// closes its transaction. Any failure inside the span is an error naming
/// the offset; IO errors propagate.
pub fn span_entries<S: LogStore + ?Sized>(
    store: &S,
    span: &Span,
    nchunk: u32,
) -> Result<Vec<Committed>, S::Error> {
    let range = span.range();
    let mut raw = Vec::with_capacity(range.len() as usize);
    for (off, len) in range.pieces() {
        let start = raw.len();
        raw.resize(start + len as usize, 0);
        store.read_log(off, &mut raw[start..])?;
    }
    let (tail_txid, head_txid) = (span.tail_txid, span.head_txid);
    let mut out: Vec<Committed> = Vec::with_capacity(raw.len() / LOG_ENTRY_SIZE);
    for (bytes, offset) in raw.chunks_exact(LOG_ENTRY_SIZE).zip(range.slots()) {
        let (entry, id) =
            LogEntryPhy::decode(bytes, nchunk).map_err(|source| JournalError::Corrupt {
                offset,
                tail_txid: tail_txid + 1,
                head_txid,
                source: Box::new(source),
            })?;
        let seq = |what: String| S::Error::from(JournalError::Sequence { offset, what });
        let (txid, lsn) = (entry.le_txid.get() as u64, entry.le_lsn.get() as u64);
        match out.last() {
            None => {
                if txid != tail_txid + 1 {
                    return Err(seq(format!(
                        "first txid {txid}, leader tail_txid is {tail_txid}"
                    )));
                }
            }
            Some(prev) => {
                let (ptx, plsn) = (
                    prev.entry.le_txid.get() as u64,
                    prev.entry.le_lsn.get() as u64,
                );
                if lsn != plsn + 1 {
                    return Err(seq(format!("lsn {lsn} after {plsn}")));
                }
                let want = if prev.entry.le_more.get() == 1 {
                    ptx
                } else {
                    ptx + 1
                };
                if txid != want {
                    return Err(seq(format!("txid {txid} where {want} was due")));
                }
            }
        }
        out.push(Committed { offset, entry, id });
    }
    if let Some(last) = out.last() {
        let at = last.offset;
        let seq = |what: String| S::Error::from(JournalError::Sequence { offset: at, what });
        if last.entry.le_more.get() != 0 {
            return Err(seq(
                "last committed entry leaves its transaction open".into()
            ));
        }
        if last.entry.le_txid.get() as u64 != head_txid {
            return Err(seq(format!(
                "last txid {} but leader head_txid {head_txid}",
                last.entry.le_txid.get()
            )));
        }
        if last.entry.le_lsn.get() as u64 != span.head_lsn {
            return Err(seq(format!(
                "last lsn {} but leader head_lsn {}",
                last.entry.le_lsn.get(),
                span.head_lsn
            )));
        }
    } else if tail_txid != head_txid {
        return Err(JournalError::Sequence {
            offset: range.tail,
            what: format!("no entries but txids {tail_txid}..{head_txid} are committed"),
        }
        .into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pfs_format::{MetaObjPhy, MetaType};

    use crate::mem::MemLog as Mem;

    fn journal(txs: &[usize]) -> (Mem, LeaderRecord) {
        let size = 32 << 20;
        let mut mem = vec![0u8; size];
        let (mut lsn, mut off) = (0i64, 0usize);
        for (t, n) in txs.iter().enumerate() {
            for k in 0..*n {
                lsn += 1;
                let id = ObjectId::new(MetaType::Inode, 0, (lsn % 2000) as u32).unwrap();
                let le =
                    LogEntryPhy::new(MetaObjPhy::new_free(id), id, t as i64 + 1, lsn, k + 1 < *n);
                mem[off..off + 256].copy_from_slice(&le.to_bytes());
                off += 256;
            }
        }
        let mut lr = LeaderRecord::new(30, size as u64);
        lr.head_txid.set(txs.len() as u64);
        lr.head_offset.set(off as u64);
        lr.head_lsn.set(lsn as u64);
        lr.seal();
        (Mem::from_bytes(mem, lr), lr)
    }

    #[test]
    fn reads_committed_transactions() {
        let (mem, lr) = journal(&[3, 1, 2]);
        let got = committed_entries(&mem, &lr, 1).unwrap();
        assert_eq!(got.len(), 6);
        assert_eq!(got[5].entry.le_txid.get(), 3);
    }

    #[test]
    fn damage_inside_the_range_is_reported_with_its_offset() {
        let (mem, lr) = journal(&[3, 1, 2]);
        mem.damage(256 * 4 + 50);
        match committed_entries(&mem, &lr, 1) {
            Err(JournalError::Corrupt { offset, .. }) => assert_eq!(offset, 1024),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn leader_ahead_of_entries_is_a_sequence_error() {
        let (mem, mut lr) = journal(&[2, 2]);
        lr.head_lsn.set(9);
        lr.seal();
        assert!(matches!(
            committed_entries(&mem, &lr, 1),
            Err(JournalError::Sequence { .. })
        ));
        let (mem, mut lr) = journal(&[2, 2]);
        lr.head_offset.set(3 * 256);
        lr.seal();
        assert!(matches!(
            committed_entries(&mem, &lr, 1),
            Err(JournalError::Sequence { .. })
        ));
    }
}
