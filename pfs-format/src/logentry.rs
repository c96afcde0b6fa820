//! The journal log entry (`pfs_logentry_phy_t`, 256 bytes, 16 per sector).
//!
//! Each entry carries the new image of one meta object, the address of the
//! metaset sector it belongs in and its index there, the transaction id and
//! log sequence number, and `le_more`, set on every entry of a transaction
//! but the last.

use crate::endian::{I32Le, I64Le, U32Le, U64Le};
use crate::error::{corrupt, CorruptKind, Expected, Location, Result};
use crate::layout::LOG_ENTRY_SIZE;
use crate::metaobj::MetaObjPhy;
use crate::objno::ObjectId;
use crate::record::{checksum_field, pin_offsets, record_bytes};
use bytemuck::{Pod, Zeroable};
use core::mem::size_of;

/// One log entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct LogEntryPhy {
    /// The meta object's new image.
    pub le_obj_val: MetaObjPhy,
    /// Log sequence number, one more than the previous entry's.
    pub le_lsn: I64Le,
    /// Device address of the metaset sector holding the object.
    pub le_sector_bda: U64Le,
    /// Transaction this entry belongs to.
    pub le_txid: I64Le,
    /// Index of the object inside its sector, below 32.
    pub le_obj_idx: U32Le,
    /// Checksum of the 256 bytes with this field zeroed.
    pub le_checksum: U32Le,
    /// 1 when more entries of the same transaction follow, else 0.
    pub le_more: I32Le,
    /// Padding to the 256-byte alignment of the C struct; 0.
    pub _pad: [u8; 92],
}

const _: () = assert!(size_of::<LogEntryPhy>() == LOG_ENTRY_SIZE);
pin_offsets!(LogEntryPhy;
    le_lsn: 128, le_sector_bda: 136, le_txid: 144, le_obj_idx: 152, le_checksum: 156,
    le_more: 160
);
record_bytes!(LogEntryPhy, LOG_ENTRY_SIZE, "log entry");
checksum_field!(LogEntryPhy, le_checksum);

impl LogEntryPhy {
    /// An entry logging `obj` (already sealed) in transaction `txid` at
    /// `lsn`; the home address is derived from the object's number.
    pub fn new(obj: MetaObjPhy, id: ObjectId, txid: i64, lsn: i64, more: bool) -> LogEntryPhy {
        let mut le = LogEntryPhy::zeroed();
        le.le_obj_val = obj;
        le.le_lsn.set(lsn);
        le.le_sector_bda.set(id.sector_bda());
        le.le_txid.set(txid);
        le.le_obj_idx.set(id.index_in_sector());
        le.le_more.set(i32::from(more));
        le.seal();
        le
    }

    /// Reads and validates an entry of a device with `nchunk` chunks; returns
    /// the entry and the identity of the object it logs.
    pub fn decode(bytes: &[u8], nchunk: u32) -> Result<(LogEntryPhy, ObjectId)> {
        let le = LogEntryPhy::from_bytes(bytes)?;
        let id = le.validate(nchunk)?;
        Ok((le, id))
    }

    /// Whether the stored checksum matches.
    pub fn checksum_ok(&self) -> bool {
        self.le_checksum.get() == self.compute_checksum()
    }

    /// Checks checksum, ids, the flag, the logged object and that the home
    /// address is that object's. An all-zero or never-written slot fails the
    /// checksum or the object check.
    pub fn validate(&self, nchunk: u32) -> Result<ObjectId> {
        let at = || Location::structure("log entry");
        if !self.checksum_ok() {
            return Err(self.checksum_mismatch(CorruptKind::LogEntryChecksum, at()));
        }
        for v in [self.le_lsn.get(), self.le_txid.get()] {
            if v <= 0 {
                return Err(corrupt(
                    CorruptKind::LogEntryField,
                    at(),
                    Expected::Desc("a positive lsn and txid"),
                    v as u64,
                ));
            }
        }
        let more = self.le_more.get();
        if more != 0 && more != 1 {
            return Err(corrupt(
                CorruptKind::LogEntryField,
                at(),
                Expected::Within(0, 1),
                more as u64,
            ));
        }
        let id = self.le_obj_val.validate_any(nchunk)?;
        if self.le_sector_bda.get() != id.sector_bda() {
            return Err(corrupt(
                CorruptKind::LogEntryHome,
                at(),
                Expected::Hex(id.sector_bda()),
                self.le_sector_bda.get(),
            ));
        }
        if self.le_obj_idx.get() != id.index_in_sector() {
            return Err(corrupt(
                CorruptKind::LogEntryHome,
                at(),
                Expected::Value(u64::from(id.index_in_sector())),
                u64::from(self.le_obj_idx.get()),
            ));
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objno::MetaType;

    #[test]
    fn entries_validate_and_bad_ones_do_not() {
        let id = ObjectId::new(MetaType::DirEntry, 0, 3).unwrap();
        let mut obj = MetaObjPhy::new_free(id);
        obj.mo_used = 1;
        obj.seal();
        let le = LogEntryPhy::new(obj, id, 1, 1, true);
        assert_eq!(le.le_sector_bda.get(), 331_776);
        assert_eq!(LogEntryPhy::decode(&le.to_bytes(), 1).unwrap().1, id);

        let zero = [0u8; LOG_ENTRY_SIZE];
        assert!(LogEntryPhy::decode(&zero, 1).is_err());

        // Each change, resealed but for the checksum case, and the error.
        type Case = (fn(&mut LogEntryPhy), bool, CorruptKind);
        let cases: [Case; 3] = [
            (|e| e.le_obj_idx.set(4), true, CorruptKind::LogEntryHome),
            (
                |e| e._pad[200 - 164] = 9,
                false,
                CorruptKind::LogEntryChecksum,
            ),
            (|e| e.le_more.set(7), true, CorruptKind::LogEntryField),
        ];
        for (change, reseal, kind) in cases {
            let mut bad = le;
            change(&mut bad);
            if reseal {
                bad.seal();
            }
            let err = LogEntryPhy::decode(&bad.to_bytes(), 1).unwrap_err();
            assert_eq!(err.corrupt_kind(), Some(kind), "{err}");
        }
    }
}
