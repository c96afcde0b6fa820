//! The chunk header (`pfs_chunk_phy_t`) and its metaset descriptors
//! (`pfs_metaset_phy_t`), the first sector of every chunk.

use crate::endian::{U32Le, U64Le};
use crate::error::{corrupt, CorruptKind, Expected, FormatError, Location, Result};
use crate::layout::{chunk_base, BLOCK_SIZE, CHUNK_SIZE, MAX_CHUNKS, OBJ_SIZE, SECTOR_SIZE};
use crate::objno::MetaType;
use crate::record::{checksum_field, pin_offsets, record_bytes};
use bytemuck::{Pod, Zeroable};
use core::mem::size_of;

/// `PFS_CHUNK_MAGIC`: "PFSCH" as a little-endian number.
pub const CHUNK_MAGIC: u64 = 0x50_4653_4348;
/// Format version this build writes into chunk 0's magic.
pub const FORMAT_VERSION: u64 = 2;
/// First version that is not valid (`PFS_MAX_VERSION`).
pub const MAX_FORMAT_VERSION: u64 = 64;

/// The magic a chunk carries: chunk 0 adds the format version.
pub const fn chunk_magic(chunk: u64) -> u64 {
    if chunk == 0 {
        CHUNK_MAGIC + FORMAT_VERSION
    } else {
        CHUNK_MAGIC
    }
}

/// One metaset descriptor (`pfs_metaset_phy_t`, 16 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct MetasetPhy {
    /// Device byte address of the metaset's first sector.
    pub ms_sectbda: U64Le,
    /// Sectors in the metaset: 80 for block tags, 64 otherwise.
    pub ms_nsect: U32Le,
    /// Bytes per object: always 128.
    pub ms_objsize: U32Le,
}

const _: () = assert!(size_of::<MetasetPhy>() == 16);

impl MetasetPhy {
    /// The descriptor mkfs writes for `mtype` in `chunk`.
    pub fn standard(chunk: u64, mtype: MetaType) -> MetasetPhy {
        MetasetPhy {
            ms_sectbda: U64Le::new(chunk_base(chunk) + mtype.set_offset()),
            ms_nsect: U32Le::new(mtype.nsect()),
            ms_objsize: U32Le::new(OBJ_SIZE as u32),
        }
    }
}

/// The chunk header (`pfs_chunk_phy_t`), 120 bytes including the compiler
/// padding of the C struct (4 bytes before `ck_physet`, 4 at the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct ChunkPhy {
    /// [`CHUNK_MAGIC`], plus the format version in chunk 0.
    pub ck_magic: U64Le,
    /// Always 10 GiB.
    pub ck_chunksize: U64Le,
    /// Always 4 MiB.
    pub ck_blksize: U64Le,
    /// Always 4096.
    pub ck_sectsize: U64Le,
    /// This chunk's index on the device.
    pub ck_number: U64Le,
    /// Chunks on the device when this header was written (chunk 0's is
    /// authoritative; growfs updates only chunk 0).
    pub ck_nchunk: U32Le,
    /// Hidden C padding; zero as written by mkfs.
    pub _pad0: [u8; 4],
    /// Metaset descriptors indexed by `mo_type`; entry 0 (`MT_NONE`) is zero.
    pub ck_physet: [MetasetPhy; 4],
    /// Checksum of the 120 bytes with this field zeroed; 0 on legacy images.
    pub ck_checksum: U32Le,
    /// Hidden C tail padding; zero as written by mkfs.
    pub _pad1: [u8; 4],
}

/// Size of [`ChunkPhy`] on disk.
pub const CHUNK_PHY_SIZE: usize = 120;
const _: () = assert!(size_of::<ChunkPhy>() == CHUNK_PHY_SIZE);
pin_offsets!(ChunkPhy;
    ck_magic: 0, ck_chunksize: 8, ck_blksize: 16, ck_sectsize: 24, ck_number: 32, ck_nchunk: 40,
    ck_physet: 48, ck_checksum: 112
);
pin_offsets!(MetasetPhy; ms_nsect: 8, ms_objsize: 12);
record_bytes!(ChunkPhy, CHUNK_PHY_SIZE, "chunk header");
checksum_field!(ChunkPhy, ck_checksum);

impl ChunkPhy {
    /// The header mkfs writes for `chunk` of a device with `nchunk` chunks,
    /// checksum included.
    pub fn new(chunk: u64, nchunk: u32) -> ChunkPhy {
        let mut ck = ChunkPhy::zeroed();
        ck.ck_magic.set(chunk_magic(chunk));
        ck.ck_chunksize.set(CHUNK_SIZE);
        ck.ck_blksize.set(BLOCK_SIZE);
        ck.ck_sectsize.set(SECTOR_SIZE);
        ck.ck_number.set(chunk);
        ck.ck_nchunk.set(nchunk);
        for t in MetaType::ALL {
            ck.ck_physet[usize::from(t.raw())] = MetasetPhy::standard(chunk, t);
        }
        ck.seal();
        ck
    }

    /// Reads and validates the header of chunk `chunk` (see [`Self::validate`]).
    ///
    /// # Example
    ///
    /// A header round trip, and a header read at the wrong chunk:
    ///
    /// ```
    /// use pfs_format::{ChunkPhy, CorruptKind};
    ///
    /// let ck = ChunkPhy::new(1, 2); // chunk 1 of 2
    /// let bytes = ck.to_bytes();
    /// assert_eq!(ChunkPhy::decode(&bytes, 1)?, ck);
    /// let err = ChunkPhy::decode(&bytes, 0).unwrap_err();
    /// assert!(matches!(err.corrupt_kind(), Some(CorruptKind::ChunkMagic | CorruptKind::ChunkNumber)));
    /// # Ok::<(), pfs_format::FormatError>(())
    /// ```
    pub fn decode(bytes: &[u8], chunk: u64) -> Result<ChunkPhy> {
        let ck = ChunkPhy::from_bytes(bytes)?;
        ck.validate(chunk)?;
        Ok(ck)
    }

    /// The metaset descriptor of `mtype`.
    pub fn metaset(&self, mtype: MetaType) -> &MetasetPhy {
        &self.ck_physet[usize::from(mtype.raw())]
    }

    /// The format version in chunk 0's magic, if the magic is valid for
    /// chunk `chunk` (`chunk_magic_valid`).
    pub fn magic_version(&self, chunk: u64) -> Option<u64> {
        let magic = self.ck_magic.get();
        if magic == CHUNK_MAGIC {
            return Some(0);
        }
        let v = magic.checked_sub(CHUNK_MAGIC)?;
        (chunk == 0 && v < MAX_FORMAT_VERSION).then_some(v)
    }

    /// Checks the header of the chunk at position `chunk`: magic, sizes,
    /// number, chunk count, metaset layout and checksum (a zero checksum is
    /// accepted, as the reference does for images older than checksums).
    pub fn validate(&self, chunk: u64) -> Result<()> {
        let at = || Location::chunk(chunk).at_offset(chunk.saturating_mul(CHUNK_SIZE));
        let check = |kind, expected: u64, found: u64, hex: bool| {
            if expected == found {
                Ok(())
            } else {
                let e = if hex {
                    Expected::Hex(expected)
                } else {
                    Expected::Value(expected)
                };
                Err(corrupt(kind, at(), e, found))
            }
        };
        let magic = self.ck_magic.get();
        if self.magic_version(chunk).is_none() {
            if chunk == 0 && magic > CHUNK_MAGIC && magic - CHUNK_MAGIC < (1 << 16) {
                return Err(FormatError::Incompatible {
                    at: Box::new(at()),
                    found: magic - CHUNK_MAGIC,
                    max: MAX_FORMAT_VERSION,
                });
            }
            return Err(corrupt(
                CorruptKind::ChunkMagic,
                at(),
                Expected::Hex(chunk_magic(chunk)),
                magic,
            ));
        }
        check(
            CorruptKind::ChunkSize,
            CHUNK_SIZE,
            self.ck_chunksize.get(),
            false,
        )?;
        check(
            CorruptKind::BlockSize,
            BLOCK_SIZE,
            self.ck_blksize.get(),
            false,
        )?;
        check(
            CorruptKind::SectorSize,
            SECTOR_SIZE,
            self.ck_sectsize.get(),
            false,
        )?;
        check(CorruptKind::ChunkNumber, chunk, self.ck_number.get(), false)?;
        let nchunk = u64::from(self.ck_nchunk.get());
        if nchunk <= chunk || nchunk > MAX_CHUNKS {
            return Err(corrupt(
                CorruptKind::ChunkCount,
                at(),
                Expected::Within(chunk + 1, MAX_CHUNKS),
                nchunk,
            ));
        }
        if self.ck_physet[0] != MetasetPhy::zeroed() {
            return Err(corrupt(
                CorruptKind::MetasetLayout,
                at(),
                Expected::Desc("an all-zero MT_NONE metaset"),
                self.ck_physet[0].ms_sectbda.get(),
            ));
        }
        for t in MetaType::ALL {
            let want = MetasetPhy::standard(chunk, t);
            let got = self.metaset(t);
            let fields = [
                (want.ms_sectbda.get(), got.ms_sectbda.get(), true),
                (want.ms_nsect.get().into(), got.ms_nsect.get().into(), false),
                (
                    want.ms_objsize.get().into(),
                    got.ms_objsize.get().into(),
                    false,
                ),
            ];
            for (expected, found, hex) in fields {
                check(CorruptKind::MetasetLayout, expected, found, hex)?;
            }
        }
        let stored = self.ck_checksum.get();
        if stored != 0 && stored != self.compute_checksum() {
            return Err(self.checksum_mismatch(CorruptKind::ChunkChecksum, at()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mkfs_header_matches_reference() {
        // dumpfs of the golden fresh images printed these checksums.
        assert_eq!(ChunkPhy::new(0, 1).ck_checksum.get(), 2_527_540_582);
        assert_eq!(ChunkPhy::new(0, 3).ck_checksum.get(), 2_262_034_622);
        assert_eq!(ChunkPhy::new(1, 3).ck_checksum.get(), 219_744_067);
        assert_eq!(ChunkPhy::new(2, 3).ck_checksum.get(), 3_123_774_169);
        let ck = ChunkPhy::new(0, 1);
        assert_eq!(ck.ck_magic.get(), 0x50_4653_434a);
        assert_eq!(ck.magic_version(0), Some(2));
        ChunkPhy::decode(&ck.to_bytes(), 0).unwrap();
    }

    #[test]
    fn each_bad_field_is_reported() {
        let good = ChunkPhy::new(1, 3);
        type Case = (fn(&mut ChunkPhy), CorruptKind);
        let cases: Vec<Case> = vec![
            (|c| c.ck_magic.set(0), CorruptKind::ChunkMagic),
            (|c| c.ck_magic.set(CHUNK_MAGIC + 2), CorruptKind::ChunkMagic),
            (|c| c.ck_chunksize.set(1 << 30), CorruptKind::ChunkSize),
            (|c| c.ck_blksize.set(512), CorruptKind::BlockSize),
            (|c| c.ck_sectsize.set(512), CorruptKind::SectorSize),
            (|c| c.ck_number.set(2), CorruptKind::ChunkNumber),
            (|c| c.ck_nchunk.set(1), CorruptKind::ChunkCount),
            (
                |c| c.ck_physet[2].ms_nsect.set(65),
                CorruptKind::MetasetLayout,
            ),
            (
                |c| c.ck_physet[0].ms_sectbda.set(1),
                CorruptKind::MetasetLayout,
            ),
            (|c| c._pad1[0] = 1, CorruptKind::ChunkChecksum),
        ];
        for (mutate, kind) in cases {
            let mut ck = good;
            mutate(&mut ck);
            if kind != CorruptKind::ChunkChecksum {
                ck.seal();
            }
            let err = ChunkPhy::decode(&ck.to_bytes(), 1).unwrap_err();
            assert_eq!(err.corrupt_kind(), Some(kind), "{err}");
        }
    }

    #[test]
    fn legacy_zero_checksum_is_accepted() {
        let mut ck = ChunkPhy::new(0, 2);
        ck.ck_checksum.set(0);
        ChunkPhy::decode(&ck.to_bytes(), 0).unwrap();
    }

    #[test]
    fn future_version_is_incompatible() {
        let mut ck = ChunkPhy::new(0, 1);
        ck.ck_magic.set(CHUNK_MAGIC + 64);
        ck.seal();
        assert!(matches!(
            ChunkPhy::decode(&ck.to_bytes(), 0),
            Err(FormatError::Incompatible { found: 64, .. })
        ));
    }
}
