//! The chunk backup stream of `pfs chunk -m backup` (the reference's
//! "OSS file", made to be stored in object storage).
//!
//! A stream is, for each chunk in turn: a 4096-byte [`OssHeader`], then
//! the chunk's used block indexes as little-endian `u32` in descending order
//! (so that block 0, holding the chunk header, is restored last), then each
//! of those blocks, 4 MiB each, in the same order. Only the header carries a
//! checksum (PFS CRC-32C over the 4096 bytes with the checksum field
//! zeroed).

use crate::checksum::pfs_crc32c_zeroed;
use crate::layout::{BLKTAGS_PER_CHUNK, BLOCK_SIZE, CHUNK_SIZE, FRAG_SIZE, SECTOR_SIZE};

/// Size of the header on the stream.
pub const OSS_HEADER_SIZE: usize = 4096;
/// `oss_magic`: "OSSFILE" read as a little-endian number.
pub const OSS_MAGIC: u64 = 0x4F_5353_4649_4C45;
/// `oss_version` written by the reference.
pub const OSS_VERSION: u64 = 1;
/// Offset of `oss_checksum` in the header.
pub const OSS_CHECKSUM_OFFSET: usize = 24;
/// Bytes of `oss_pbdname` (NUL-terminated).
pub const OSS_PBDNAME_LEN: usize = 64;

/// The header in front of each chunk of a backup stream
/// (`pfs_ossfile_header_t`), decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OssHeader {
    /// `oss_magic`, [`OSS_MAGIC`].
    pub oss_magic: u64,
    /// `oss_version`, [`OSS_VERSION`].
    pub oss_version: u64,
    /// `oss_ctime`: seconds since the epoch when the backup was made.
    pub oss_ctime: u64,
    /// `oss_checksum`: PFS CRC-32C of the header with this field zeroed.
    pub oss_checksum: u32,
    /// `oss_pbdname`: the source PBD's name (at most 63 bytes).
    pub oss_pbdname: String,
    /// `oss_chunksize`: 10 GiB.
    pub oss_chunksize: u64,
    /// `oss_blksize`: 4 MiB.
    pub oss_blksize: u32,
    /// `oss_fragsize`: 16 KiB.
    pub oss_fragsize: u32,
    /// `oss_sectsize`: 4 KiB.
    pub oss_sectsize: u32,
    /// `oss_nsumck`: chunks the source device has room for.
    pub oss_nsumck: u32,
    /// `oss_nchunk`: formatted chunks of the source (`ck_nchunk`).
    pub oss_nchunk: u32,
    /// `oss_ckid`: the chunk this part of the stream holds.
    pub oss_ckid: u32,
    /// `oss_nusedblk`: used blocks that follow (at most 2560).
    pub oss_nusedblk: u32,
}

/// Why a header is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OssError {
    /// The checksum does not match the bytes.
    #[error("header checksum {found:#010x} does not match its bytes ({computed:#010x})")]
    Checksum {
        /// Stored value.
        found: u32,
        /// Computed value.
        computed: u32,
    },
    /// A field holds a value the format does not allow.
    #[error("header field {field} is {found}, expected {expected}")]
    Field {
        /// Field name.
        field: &'static str,
        /// Value found.
        found: u64,
        /// What was expected.
        expected: u64,
    },
}

fn u64_at(b: &[u8; OSS_HEADER_SIZE], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

fn u32_at(b: &[u8; OSS_HEADER_SIZE], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

impl OssHeader {
    /// A header for chunk `ckid` of a source named `pbdname` (cut to 63
    /// bytes), stamped `ctime`; the checksum is filled in by
    /// [`OssHeader::encode`].
    pub fn new(
        pbdname: &str,
        ctime: u64,
        nsumck: u32,
        nchunk: u32,
        ckid: u32,
        nusedblk: u32,
    ) -> OssHeader {
        let mut name = pbdname.as_bytes().to_vec();
        name.truncate(OSS_PBDNAME_LEN - 1);
        OssHeader {
            oss_magic: OSS_MAGIC,
            oss_version: OSS_VERSION,
            oss_ctime: ctime,
            oss_checksum: 0,
            oss_pbdname: String::from_utf8_lossy(&name).into_owned(),
            oss_chunksize: CHUNK_SIZE,
            oss_blksize: BLOCK_SIZE as u32,
            oss_fragsize: FRAG_SIZE as u32,
            oss_sectsize: SECTOR_SIZE as u32,
            oss_nsumck: nsumck,
            oss_nchunk: nchunk,
            oss_ckid: ckid,
            oss_nusedblk: nusedblk,
        }
    }

    /// The header's 4096 bytes, with a freshly computed checksum.
    pub fn encode(&self) -> [u8; OSS_HEADER_SIZE] {
        let mut b = [0u8; OSS_HEADER_SIZE];
        b[0..8].copy_from_slice(&self.oss_magic.to_le_bytes());
        b[8..16].copy_from_slice(&self.oss_version.to_le_bytes());
        b[16..24].copy_from_slice(&self.oss_ctime.to_le_bytes());
        let name = self.oss_pbdname.as_bytes();
        let n = name.len().min(OSS_PBDNAME_LEN - 1);
        b[28..28 + n].copy_from_slice(&name[..n]);
        b[96..104].copy_from_slice(&self.oss_chunksize.to_le_bytes());
        b[104..108].copy_from_slice(&self.oss_blksize.to_le_bytes());
        b[108..112].copy_from_slice(&self.oss_fragsize.to_le_bytes());
        b[112..116].copy_from_slice(&self.oss_sectsize.to_le_bytes());
        b[116..120].copy_from_slice(&self.oss_nsumck.to_le_bytes());
        b[120..124].copy_from_slice(&self.oss_nchunk.to_le_bytes());
        b[124..128].copy_from_slice(&self.oss_ckid.to_le_bytes());
        b[128..132].copy_from_slice(&self.oss_nusedblk.to_le_bytes());
        let sum = pfs_crc32c_zeroed(&b, OSS_CHECKSUM_OFFSET).unwrap_or(0);
        b[24..28].copy_from_slice(&sum.to_le_bytes());
        b
    }

    /// Decodes and checks a header: checksum, magic, version, and the
    /// sizes this format fixes. The chunk id is left to the caller.
    pub fn decode(b: &[u8; OSS_HEADER_SIZE]) -> Result<OssHeader, OssError> {
        let found = u32_at(b, OSS_CHECKSUM_OFFSET);
        let computed = pfs_crc32c_zeroed(b, OSS_CHECKSUM_OFFSET).unwrap_or(!found);
        if found != computed {
            return Err(OssError::Checksum { found, computed });
        }
        let name_bytes = &b[28..28 + OSS_PBDNAME_LEN];
        let end = name_bytes
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(OSS_PBDNAME_LEN);
        let h = OssHeader {
            oss_magic: u64_at(b, 0),
            oss_version: u64_at(b, 8),
            oss_ctime: u64_at(b, 16),
            oss_checksum: found,
            oss_pbdname: String::from_utf8_lossy(&name_bytes[..end]).into_owned(),
            oss_chunksize: u64_at(b, 96),
            oss_blksize: u32_at(b, 104),
            oss_fragsize: u32_at(b, 108),
            oss_sectsize: u32_at(b, 112),
            oss_nsumck: u32_at(b, 116),
            oss_nchunk: u32_at(b, 120),
            oss_ckid: u32_at(b, 124),
            oss_nusedblk: u32_at(b, 128),
        };
        let checks: [(&'static str, u64, u64); 7] = [
            ("oss_magic", h.oss_magic, OSS_MAGIC),
            ("oss_version", h.oss_version, OSS_VERSION),
            ("oss_chunksize", h.oss_chunksize, CHUNK_SIZE),
            ("oss_blksize", u64::from(h.oss_blksize), BLOCK_SIZE),
            ("oss_fragsize", u64::from(h.oss_fragsize), FRAG_SIZE),
            ("oss_sectsize", u64::from(h.oss_sectsize), SECTOR_SIZE),
            (
                "oss_nusedblk",
                u64::from(h.oss_nusedblk.min(BLKTAGS_PER_CHUNK + 1)),
                u64::from(h.oss_nusedblk.min(BLKTAGS_PER_CHUNK)),
            ),
        ];
        for (field, found, expected) in checks {
            if found != expected {
                return Err(OssError::Field {
                    field,
                    found,
                    expected,
                });
            }
        }
        Ok(h)
    }
}

/// Checks a used-block table read from a stream: strictly descending block
/// indexes below 2560. Returns the first offending position and value.
pub fn check_used_table(table: &[u32]) -> Result<(), (usize, u32)> {
    for (i, &b) in table.iter().enumerate() {
        if b >= BLKTAGS_PER_CHUNK {
            return Err((i, b));
        }
        if i > 0 && table[i - 1] <= b {
            return Err((i, b));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_layout() {
        let h = OssHeader::new("nvme1n1", 1_763_771_082, 3, 3, 1, 89);
        let b = h.encode();
        assert_eq!(&b[0..8], b"ELIFSSO\0");
        assert_eq!(&b[28..35], b"nvme1n1");
        assert_eq!(u32_at(&b, 128), 89);
        let d = OssHeader::decode(&b).expect("decodes");
        assert_eq!(d.oss_ckid, 1);
        assert_eq!(d.oss_pbdname, "nvme1n1");
        assert_eq!(d.encode(), b);
    }

    #[test]
    fn damage_is_refused() {
        let b = OssHeader::new("x", 0, 1, 1, 0, 1).encode();
        for at in [0usize, 20, 24, 100, 131, 4095] {
            let mut bad = b;
            bad[at] ^= 0x40;
            assert!(OssHeader::decode(&bad).is_err(), "flip at {at}");
        }
        let mut big = OssHeader::new("x", 0, 1, 1, 0, 2561);
        big.oss_nusedblk = 2561;
        assert!(matches!(
            OssHeader::decode(&big.encode()),
            Err(OssError::Field {
                field: "oss_nusedblk",
                ..
            })
        ));
    }

    #[test]
    fn used_tables() {
        assert!(check_used_table(&[5, 3, 0]).is_ok());
        assert_eq!(check_used_table(&[5, 5]), Err((1, 5)));
        assert_eq!(check_used_table(&[2560]), Err((0, 2560)));
    }
}
