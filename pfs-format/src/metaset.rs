//! Metaset sectors: 32 meta objects of one type, in object-id order.

use crate::error::{FormatError, Result};
use crate::layout::{OBJS_PER_SECTOR, OBJ_SIZE, SECTOR_SIZE};
use crate::metaobj::MetaObjPhy;
use crate::objno::{MetaType, ObjectId};

/// The objects of one metaset sector.
pub type MetaSector = [MetaObjPhy; OBJS_PER_SECTOR as usize];

/// Decodes sector `sect` (0-based inside the metaset) of the `mtype` metaset
/// of `chunk`, checking every object's identity and checksum.
pub fn decode_sector(bytes: &[u8], mtype: MetaType, chunk: u32, sect: u32) -> Result<MetaSector> {
    if bytes.len() < SECTOR_SIZE as usize {
        return Err(FormatError::Short {
            what: "metaset sector",
            need: SECTOR_SIZE as usize,
            got: bytes.len(),
        });
    }
    let mut out = [MetaObjPhy::new_free(ObjectId::new(mtype, chunk, 0)?); OBJS_PER_SECTOR as usize];
    for (i, (slot, raw)) in out.iter_mut().zip(bytes.chunks_exact(OBJ_SIZE)).enumerate() {
        let oid = sect
            .checked_mul(OBJS_PER_SECTOR)
            .and_then(|o| o.checked_add(i as u32))
            .unwrap_or(u32::MAX);
        let id = ObjectId::new(mtype, chunk, oid)?;
        *slot = MetaObjPhy::decode(raw, id)?;
    }
    Ok(out)
}

/// Encodes a sector of objects.
pub fn encode_sector(objs: &MetaSector) -> [u8; SECTOR_SIZE as usize] {
    let mut out = [0u8; SECTOR_SIZE as usize];
    for (dst, mo) in out.chunks_exact_mut(OBJ_SIZE).zip(objs) {
        dst.copy_from_slice(&mo.to_bytes());
    }
    out
}

/// The sector mkfs writes for sector `sect` of the `mtype` metaset of
/// `chunk`: free objects, except the reserved ones (block tag 0 of every
/// chunk; the root, `.pfs-paxos` and `.pfs-journal` direntries and inodes in
/// chunk 0) which [`crate::mkfs_object`] fills in. `root_btime` is the root
/// inode's birth time in microseconds, the only clock value mkfs writes here.
pub fn mkfs_sector(mtype: MetaType, chunk: u32, sect: u32, root_btime: u64) -> Result<MetaSector> {
    let first = ObjectId::new(mtype, chunk, sect.saturating_mul(OBJS_PER_SECTOR))?;
    let mut out = [MetaObjPhy::new_free(first); OBJS_PER_SECTOR as usize];
    for (i, slot) in out.iter_mut().enumerate() {
        let id = ObjectId::new(mtype, chunk, first.oid + i as u32)?;
        *slot = crate::mkfs_object(id, root_btime);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mkfs_sectors_decode() {
        for t in MetaType::ALL {
            for chunk in [0u32, 1] {
                for sect in [0, t.nsect() - 1] {
                    let s = mkfs_sector(t, chunk, sect, 123).unwrap();
                    let back = decode_sector(&encode_sector(&s), t, chunk, sect).unwrap();
                    assert_eq!(back, s);
                    assert!(decode_sector(&encode_sector(&s), t, chunk, sect + 1).is_err());
                }
            }
        }
        assert!(mkfs_sector(MetaType::Inode, 0, 64, 0).is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..4200), t in 1u8..=3, sect in proptest::num::u32::ANY) {
            let mtype = MetaType::from_raw(t).unwrap();
            let _ = decode_sector(&bytes, mtype, 0, sect);
        }
    }
}
