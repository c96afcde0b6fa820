//! The 128-byte meta object (`pfs_metaobj_phy_t`): a common header and an
//! 88-byte payload that is a block tag, a direntry or an inode.

use crate::blktag::BlkTagPhy;
use crate::direntry::DirEntryPhy;
use crate::endian::{U32Le, U64Le};
use crate::error::{corrupt, CorruptKind, Expected, Location, Result};
use crate::inode::InodePhy;
use crate::layout::{OBJ_DATA_SIZE, OBJ_SIZE};
use crate::objno::{MetaType, ObjectId};
use crate::record::{checksum_field, pin_offsets, record_bytes};
use bytemuck::{Pod, Zeroable};
use core::mem::size_of;

/// One meta object as stored in a metaset sector or a log entry.
///
/// `mo_next`/`mo_prev` chain objects: an inode's `mo_head`/`mo_tail` (the
/// same two fields) name the first and last direntry of a directory or block
/// tag of a file, and those objects link to each other. Number 0 ends a chain.
///
/// # Example
///
/// Encode an inode object, decode it back where it belongs, and see a
/// flipped bit refused:
///
/// ```
/// use pfs_format::inode::INODE_TYPE_FILE;
/// use pfs_format::{CorruptKind, MetaObjPhy, MetaType, ObjectId};
///
/// let id = ObjectId::new(MetaType::Inode, 0, 5)?;
/// let mut mo = MetaObjPhy::new_free(id);
/// mo.mo_used = 1;
/// let inode = mo.inode_mut();
/// inode.in_type = INODE_TYPE_FILE;
/// inode.in_nlink.set(1);
/// inode.in_size.set(8192);
/// mo.seal(); // the checksum covers every byte
///
/// let bytes = mo.to_bytes();
/// assert_eq!(bytes.len(), 128);
/// let back = MetaObjPhy::decode(&bytes, id)?;
/// assert_eq!(back, mo);
/// assert!(back.is_used() && back.inode().is_file());
/// assert_eq!(back.inode().in_size.get(), 8192);
///
/// // Damage is an error naming what failed, never a panic.
/// let mut torn = bytes;
/// torn[60] ^= 1;
/// let err = MetaObjPhy::decode(&torn, id).unwrap_err();
/// assert_eq!(err.corrupt_kind(), Some(CorruptKind::ObjectChecksum));
/// // So are the wrong place and a short buffer.
/// let other = ObjectId::new(MetaType::Inode, 0, 6)?;
/// assert_eq!(MetaObjPhy::decode(&bytes, other).unwrap_err().corrupt_kind(), Some(CorruptKind::ObjectNumber));
/// assert!(MetaObjPhy::decode(&bytes[..100], id).is_err());
/// # Ok::<(), pfs_format::FormatError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct MetaObjPhy {
    /// This object's number, `chunk << shift | oid`.
    pub mo_number: U64Le,
    /// Unused by the reference; 0.
    pub mo_version: U64Le,
    /// Next object in a chain, or the head for an inode (`mo_head`); 0 = none.
    pub mo_next: U64Le,
    /// Previous object in a chain, or the tail for an inode (`mo_tail`).
    pub mo_prev: U64Le,
    /// `MT_BLKTAG` (1), `MT_DIRENTRY` (2) or `MT_INODE` (3).
    pub mo_type: u8,
    /// 1 when allocated, 0 when free.
    pub mo_used: u8,
    /// Padding; 0.
    pub mo_padding: [u8; 2],
    /// Checksum of the 128 bytes with this field zeroed; 0 on legacy images.
    pub mo_checksum: U32Le,
    /// The type's payload ([`BlkTagPhy`], [`DirEntryPhy`], [`InodePhy`]).
    pub mo_data: [u8; OBJ_DATA_SIZE],
}

const _: () = assert!(size_of::<MetaObjPhy>() == OBJ_SIZE);
pin_offsets!(MetaObjPhy;
    mo_number: 0, mo_version: 8, mo_next: 16, mo_prev: 24, mo_type: 32, mo_used: 33,
    mo_checksum: 36, mo_data: 40
);
record_bytes!(MetaObjPhy, OBJ_SIZE, "meta object");
checksum_field!(MetaObjPhy, mo_checksum);

impl MetaObjPhy {
    /// A free object of the given identity, as mkfs writes it (block tags
    /// zeroed, direntries and inodes with their "no object" markers), sealed.
    pub fn new_free(id: ObjectId) -> MetaObjPhy {
        let mut mo = MetaObjPhy::zeroed();
        mo.mo_number.set(id.number());
        mo.mo_type = id.mtype.raw();
        match id.mtype {
            MetaType::BlkTag => {}
            MetaType::DirEntry => *mo.direntry_mut() = DirEntryPhy::free(),
            MetaType::Inode => *mo.inode_mut() = InodePhy::free(),
        }
        mo.seal();
        mo
    }

    /// Reads the object expected at `id` and validates it there.
    pub fn decode(bytes: &[u8], id: ObjectId) -> Result<MetaObjPhy> {
        let mo = MetaObjPhy::from_bytes(bytes)?;
        mo.validate_at(id)?;
        Ok(mo)
    }

    /// The type named by `mo_type`, if valid.
    pub fn mtype(&self) -> Option<MetaType> {
        MetaType::from_raw(self.mo_type)
    }

    /// Whether the object is allocated.
    pub fn is_used(&self) -> bool {
        self.mo_used != 0
    }

    /// Whether the stored checksum matches (zero counts as a legacy match).
    pub fn checksum_ok(&self) -> bool {
        let stored = self.mo_checksum.get();
        stored == 0 || stored == self.compute_checksum()
    }

    /// Checks that this is the object `id`: type, number, used flag and
    /// checksum.
    pub fn validate_at(&self, id: ObjectId) -> Result<()> {
        let at = || Location::object(id.mtype, id.number()).at_offset(id.bda());
        if self.mo_type != id.mtype.raw() {
            return Err(corrupt(
                CorruptKind::ObjectType,
                at(),
                Expected::Value(u64::from(id.mtype.raw())),
                u64::from(self.mo_type),
            ));
        }
        if self.mo_number.get() != id.number() {
            return Err(corrupt(
                CorruptKind::ObjectNumber,
                at(),
                Expected::Value(id.number()),
                self.mo_number.get(),
            ));
        }
        self.validate_common(at)
    }

    /// Checks an object found away from its home (a log entry's image):
    /// its type must be valid and its number must name an object of a device
    /// with `nchunk` chunks. Returns the object's identity.
    pub fn validate_any(&self, nchunk: u32) -> Result<ObjectId> {
        let number = self.mo_number.get();
        let Some(mtype) = self.mtype() else {
            return Err(corrupt(
                CorruptKind::ObjectType,
                Location::structure("logged meta object").at_offset(number),
                Expected::Within(1, 3),
                u64::from(self.mo_type),
            ));
        };
        let id = ObjectId::from_number(mtype, number, nchunk)?;
        self.validate_common(|| Location::object(mtype, number))?;
        Ok(id)
    }

    fn validate_common(&self, at: impl Fn() -> Location) -> Result<()> {
        if self.mo_used > 1 {
            return Err(corrupt(
                CorruptKind::ObjectUsed,
                at(),
                Expected::Within(0, 1),
                u64::from(self.mo_used),
            ));
        }
        if !self.checksum_ok() {
            return Err(self.checksum_mismatch(CorruptKind::ObjectChecksum, at()));
        }
        Ok(())
    }

    /// Checks that every object this one refers to exists on a device of
    /// `nchunk` chunks. Free objects are not checked: their links are
    /// meaningless.
    pub fn validate_links(&self, nchunk: u32) -> Result<()> {
        let Some(mtype) = self.mtype() else {
            return Ok(());
        };
        if !self.is_used() {
            return Ok(());
        }
        let link =
            |t: MetaType, n: u64| -> Result<()> { ObjectId::from_number(t, n, nchunk).map(|_| ()) };
        match mtype {
            MetaType::BlkTag => {
                link(MetaType::BlkTag, self.mo_next.get())?;
                link(MetaType::BlkTag, self.mo_prev.get())?;
                let ino = self.blktag().bt_ino.get();
                // Block tag 0 of each chunk holds metadata and has no owner.
                if self.mo_number.get() & ((1 << MetaType::BlkTag.shift()) - 1) != 0 {
                    link(MetaType::Inode, ino as u64)?;
                }
            }
            MetaType::DirEntry => {
                link(MetaType::DirEntry, self.mo_next.get())?;
                link(MetaType::DirEntry, self.mo_prev.get())?;
                let de = self.direntry();
                if de.is_ext() {
                    link(MetaType::DirEntry, de.de_ino.get() as u64)?;
                } else {
                    link(MetaType::Inode, de.de_ino.get() as u64)?;
                    if self.mo_number.get() != 0 {
                        link(MetaType::Inode, de.de_dirino.get() as u64)?;
                    }
                }
                link(MetaType::DirEntry, de.de_extdeno.get())?;
            }
            MetaType::Inode => {
                let child = if self.inode().is_dir() {
                    MetaType::DirEntry
                } else {
                    MetaType::BlkTag
                };
                link(child, self.mo_next.get())?;
                link(child, self.mo_prev.get())?;
                let deno = self.inode().in_deno.get();
                // An orphan (unlinked but open) inode has no direntry.
                if deno != u64::MAX {
                    link(MetaType::DirEntry, deno)?;
                }
            }
        }
        Ok(())
    }

    /// The payload as a block tag.
    pub fn blktag(&self) -> &BlkTagPhy {
        bytemuck::must_cast_ref(&self.mo_data)
    }

    /// The payload as a block tag, for changing.
    pub fn blktag_mut(&mut self) -> &mut BlkTagPhy {
        bytemuck::must_cast_mut(&mut self.mo_data)
    }

    /// The payload as a direntry.
    pub fn direntry(&self) -> &DirEntryPhy {
        bytemuck::must_cast_ref(&self.mo_data)
    }

    /// The payload as a direntry, for changing.
    pub fn direntry_mut(&mut self) -> &mut DirEntryPhy {
        bytemuck::must_cast_mut(&mut self.mo_data)
    }

    /// The payload as an inode.
    pub fn inode(&self) -> &InodePhy {
        bytemuck::must_cast_ref(&self.mo_data)
    }

    /// The payload as an inode, for changing.
    pub fn inode_mut(&mut self) -> &mut InodePhy {
        bytemuck::must_cast_mut(&mut self.mo_data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_objects_validate() {
        for t in MetaType::ALL {
            for (chunk, oid) in [(0, 0), (0, 5), (2, t.per_chunk() - 1)] {
                let id = ObjectId::new(t, chunk, oid).unwrap();
                let mo = MetaObjPhy::new_free(id);
                MetaObjPhy::decode(&mo.to_bytes(), id).unwrap();
                mo.validate_links(3).unwrap();
                assert_eq!(mo.validate_any(3).unwrap(), id);
            }
        }
    }

    #[test]
    fn misplaced_or_damaged_objects_are_reported() {
        let id = ObjectId::new(MetaType::Inode, 0, 7).unwrap();
        let mo = MetaObjPhy::new_free(id);
        let other = ObjectId::new(MetaType::Inode, 0, 8).unwrap();
        let e = MetaObjPhy::decode(&mo.to_bytes(), other).unwrap_err();
        assert_eq!(e.corrupt_kind(), Some(CorruptKind::ObjectNumber));
        let wrong_type = ObjectId::new(MetaType::DirEntry, 0, 7).unwrap();
        let e = MetaObjPhy::decode(&mo.to_bytes(), wrong_type).unwrap_err();
        assert_eq!(e.corrupt_kind(), Some(CorruptKind::ObjectType));
        let mut bytes = mo.to_bytes();
        bytes[100] ^= 1;
        let e = MetaObjPhy::decode(&bytes, id).unwrap_err();
        assert_eq!(e.corrupt_kind(), Some(CorruptKind::ObjectChecksum));
        let mut bad = mo;
        bad.mo_used = 2;
        bad.seal();
        let e = MetaObjPhy::decode(&bad.to_bytes(), id).unwrap_err();
        assert_eq!(e.corrupt_kind(), Some(CorruptKind::ObjectUsed));
    }

    #[test]
    fn dangling_links_are_reported() {
        let id = ObjectId::new(MetaType::Inode, 0, 9).unwrap();
        let mut mo = MetaObjPhy::new_free(id);
        mo.mo_used = 1;
        mo.inode_mut().in_type = crate::inode::INODE_TYPE_FILE;
        mo.inode_mut().in_deno.set(9);
        mo.mo_next.set(5 << 12);
        mo.seal();
        let e = mo.validate_links(2).unwrap_err();
        assert_eq!(e.corrupt_kind(), Some(CorruptKind::DanglingObject));
        mo.validate_links(6).unwrap();
    }
}
