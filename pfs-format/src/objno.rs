//! Meta object types and numbering.
//!
//! `mo_number = chunk << shift | oid`, where the shift is the number of bits
//! needed for a chunk's objects rounded up to whole sectors: 12 for block tags
//! (2560 objects), 11 for direntries and inodes (2048 objects). A block tag's
//! *block number* is `chunk * 2560 + oid`, so from chunk 1 on it differs from
//! the block tag's object number.

use crate::error::{corrupt, CorruptKind, Expected, Location, Result};
use crate::layout::{
    BLKTAGS_PER_CHUNK, BLKTAG_SET_OFFSET, CHUNK_SIZE, DIRENTRIES_PER_CHUNK, DIRENTRY_SET_OFFSET,
    INODES_PER_CHUNK, INODE_SET_OFFSET, OBJS_PER_SECTOR, OBJ_SIZE, SECTOR_SIZE,
};
use core::fmt;

/// The three kinds of meta object (`MT_BLKTAG`, `MT_DIRENTRY`, `MT_INODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum MetaType {
    /// Block tag: owner and hole of one 4 MiB block.
    BlkTag = 1,
    /// Directory entry: one name (or one 64-byte piece of a long name).
    DirEntry = 2,
    /// Inode: type, size, times of a file or directory.
    Inode = 3,
}

impl MetaType {
    /// All types in on-disk order.
    pub const ALL: [MetaType; 3] = [MetaType::BlkTag, MetaType::DirEntry, MetaType::Inode];

    /// The type for an `mo_type` byte; `None` for `MT_NONE` and unknown values.
    pub fn from_raw(raw: u8) -> Option<MetaType> {
        match raw {
            1 => Some(MetaType::BlkTag),
            2 => Some(MetaType::DirEntry),
            3 => Some(MetaType::Inode),
            _ => None,
        }
    }

    /// The `mo_type` byte.
    pub const fn raw(self) -> u8 {
        self as u8
    }

    /// Objects of this type in one chunk.
    pub const fn per_chunk(self) -> u32 {
        match self {
            MetaType::BlkTag => BLKTAGS_PER_CHUNK,
            MetaType::DirEntry => DIRENTRIES_PER_CHUNK,
            MetaType::Inode => INODES_PER_CHUNK,
        }
    }

    /// Sectors of this type's metaset (`ms_nsect`).
    pub const fn nsect(self) -> u32 {
        self.per_chunk() / OBJS_PER_SECTOR
    }

    /// Offset of this type's metaset from the start of its chunk.
    pub const fn set_offset(self) -> u64 {
        match self {
            MetaType::BlkTag => BLKTAG_SET_OFFSET,
            MetaType::DirEntry => DIRENTRY_SET_OFFSET,
            MetaType::Inode => INODE_SET_OFFSET,
        }
    }

    /// Bits of `mo_number` that hold the object id inside its chunk
    /// (`an_shift`): log2 of objects per sector plus log2 of the sector count
    /// rounded up to a power of two.
    pub const fn shift(self) -> u32 {
        let per_sector_bits = OBJS_PER_SECTOR.trailing_zeros();
        let nsect = self.nsect().next_power_of_two();
        per_sector_bits + nsect.trailing_zeros()
    }

    /// The name the reference's tools print (`dumpfs -m`, `dumple`).
    pub const fn name(self) -> &'static str {
        match self {
            MetaType::BlkTag => "blktag",
            MetaType::DirEntry => "direntry",
            MetaType::Inode => "inode",
        }
    }
}

impl fmt::Display for MetaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

const _: () = assert!(MetaType::BlkTag.shift() == 12);
const _: () = assert!(MetaType::DirEntry.shift() == 11);
const _: () = assert!(MetaType::Inode.shift() == 11);

/// A validated meta object address: type, chunk and id inside the chunk.
///
/// # Example
///
/// Object numbers and where the objects are on the device:
///
/// ```
/// use pfs_format::{layout, MetaType, ObjectId};
///
/// let id = ObjectId::new(MetaType::Inode, 1, 5)?;
/// assert_eq!(id.number(), (1 << 11) | 5);
/// assert_eq!(ObjectId::from_number(MetaType::Inode, id.number(), 2)?, id);
/// assert!(id.bda() >= layout::CHUNK_SIZE); // in chunk 1
/// // A number past the device's chunks is refused.
/// assert!(ObjectId::from_number(MetaType::Inode, id.number(), 1).is_err());
/// assert!(ObjectId::new(MetaType::Inode, 0, MetaType::Inode.per_chunk()).is_err());
///
/// let tag = ObjectId::new(MetaType::BlkTag, 1, 7)?;
/// assert_eq!(tag.block_number(), Some(2560 + 7));
/// # Ok::<(), pfs_format::FormatError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId {
    /// Object type.
    pub mtype: MetaType,
    /// Chunk holding the object.
    pub chunk: u32,
    /// Index inside the chunk's metaset, below `mtype.per_chunk()`.
    pub oid: u32,
}

impl ObjectId {
    /// Builds an id, checking `oid` against the per-chunk count.
    pub fn new(mtype: MetaType, chunk: u32, oid: u32) -> Result<ObjectId> {
        if oid >= mtype.per_chunk() {
            return Err(corrupt(
                CorruptKind::ObjectNumber,
                Location::object(mtype, (u64::from(chunk) << mtype.shift()) | u64::from(oid)),
                Expected::Below(u64::from(mtype.per_chunk())),
                u64::from(oid),
            ));
        }
        Ok(ObjectId { mtype, chunk, oid })
    }

    /// Splits an `mo_number` and checks it names an object of a device with
    /// `nchunk` chunks.
    pub fn from_number(mtype: MetaType, number: u64, nchunk: u32) -> Result<ObjectId> {
        let chunk = number >> mtype.shift();
        let oid = number & ((1u64 << mtype.shift()) - 1);
        let at = Location::object(mtype, number);
        if chunk >= u64::from(nchunk) {
            return Err(corrupt(
                CorruptKind::DanglingObject,
                at,
                Expected::Below(u64::from(nchunk) << mtype.shift()),
                number,
            ));
        }
        if oid >= u64::from(mtype.per_chunk()) {
            return Err(corrupt(
                CorruptKind::DanglingObject,
                at,
                Expected::Desc("an object id inside its chunk's metaset"),
                number,
            ));
        }
        // Both fit in u32: chunk < nchunk (a u32), oid < per_chunk.
        Ok(ObjectId {
            mtype,
            chunk: chunk as u32,
            oid: oid as u32,
        })
    }

    /// The `mo_number` of this object.
    pub const fn number(self) -> u64 {
        ((self.chunk as u64) << self.mtype.shift()) | self.oid as u64
    }

    /// Byte address of the sector holding this object.
    pub const fn sector_bda(self) -> u64 {
        self.chunk as u64 * CHUNK_SIZE
            + self.mtype.set_offset()
            + (self.oid / OBJS_PER_SECTOR) as u64 * SECTOR_SIZE
    }

    /// Index of this object inside its sector (`le_obj_idx`).
    pub const fn index_in_sector(self) -> u32 {
        self.oid % OBJS_PER_SECTOR
    }

    /// Byte address of the object itself.
    pub const fn bda(self) -> u64 {
        self.sector_bda() + self.index_in_sector() as u64 * OBJ_SIZE as u64
    }

    /// For a block tag, the device block number it describes
    /// (`chunk * 2560 + oid`); `None` for other types.
    pub const fn block_number(self) -> Option<u64> {
        match self.mtype {
            MetaType::BlkTag => {
                Some(self.chunk as u64 * BLKTAGS_PER_CHUNK as u64 + self.oid as u64)
            }
            _ => None,
        }
    }
}

/// The block tag describing device block `blkno`.
pub fn blktag_of_block(blkno: u64) -> Option<ObjectId> {
    let chunk = u32::try_from(blkno / u64::from(BLKTAGS_PER_CHUNK)).ok()?;
    let oid = (blkno % u64::from(BLKTAGS_PER_CHUNK)) as u32;
    Some(ObjectId {
        mtype: MetaType::BlkTag,
        chunk,
        oid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbering_matches_reference() {
        let bt = ObjectId::new(MetaType::BlkTag, 1, 5).unwrap();
        assert_eq!(bt.number(), (1 << 12) | 5);
        assert_eq!(bt.block_number(), Some(2565));
        assert_eq!(bt.sector_bda(), CHUNK_SIZE + 0x1000);
        let de = ObjectId::new(MetaType::DirEntry, 2, 2047).unwrap();
        assert_eq!(de.number(), (2 << 11) | 2047);
        assert_eq!(de.sector_bda(), 2 * CHUNK_SIZE + 0x51000 + 63 * 4096);
        assert_eq!(de.index_in_sector(), 31);
        // Inode 3 of chunk 0 lives in sector 0x91000 at index 3 (dumple of
        // the golden `populated` image: le_sector_bda 593920, le_obj_idx 3).
        let ino = ObjectId::new(MetaType::Inode, 0, 3).unwrap();
        assert_eq!(ino.sector_bda(), 593_920);
        assert_eq!(ino.index_in_sector(), 3);
        assert_eq!(ObjectId::from_number(MetaType::Inode, 3, 1).unwrap(), ino);
    }

    #[test]
    fn out_of_range_numbers_are_errors() {
        assert!(ObjectId::new(MetaType::Inode, 0, 2048).is_err());
        assert!(ObjectId::from_number(MetaType::Inode, 1 << 11, 1).is_err());
        assert!(ObjectId::from_number(MetaType::BlkTag, 2560, 1).is_err());
        assert!(ObjectId::from_number(MetaType::BlkTag, 2559, 1).is_ok());
        assert!(ObjectId::from_number(MetaType::BlkTag, u64::MAX, u32::MAX).is_err());
    }

    #[test]
    fn block_to_blktag() {
        let bt = blktag_of_block(2561).unwrap();
        assert_eq!((bt.chunk, bt.oid), (1, 1));
        assert_eq!(bt.block_number(), Some(2561));
    }

    proptest::proptest! {
        #[test]
        fn number_round_trip(t in 1u8..=3, chunk in 0u32..1000, oid in 0u32..2560) {
            let mtype = MetaType::from_raw(t).unwrap();
            if let Ok(id) = ObjectId::new(mtype, chunk, oid) {
                proptest::prop_assert_eq!(ObjectId::from_number(mtype, id.number(), 1000).unwrap(), id);
            } else {
                proptest::prop_assert!(oid >= mtype.per_chunk());
            }
        }
    }
}
