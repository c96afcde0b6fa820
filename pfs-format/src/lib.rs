//! On-disk format of the PolarDB File System (PFS), byte for byte.
//!
//! Every physical structure of the reference implementation
//! (ApsaraDB/PolarDB-FileSystem, `src/pfs_core/*.h`) is mirrored field by
//! field with the C field names, as alignment-1 little-endian `Pod` types
//! whose size and offsets are pinned at compile time:
//!
//! | structure | C type | module |
//! |---|---|---|
//! | chunk header, metaset descriptors | `pfs_chunk_phy_t`, `pfs_metaset_phy_t` | [`chunk`] |
//! | meta object | `pfs_metaobj_phy_t` | [`metaobj`] |
//! | block tag / direntry / inode payloads | `pfs_blktag_phy_t`, `pfs_direntry_phy_t`, `pfs_inode_phy_t` | [`blktag`], [`direntry`], [`inode`] |
//! | leader record | `pfs_leader_record_t` | [`leader`] |
//! | journal log entry | `pfs_logentry_phy_t` | [`logentry`] |
//!
//! Decoding never panics: short buffers, wrong magics, bad checksums,
//! impossible sizes and dangling object numbers are [`FormatError`]s.
//! Encoding a decoded structure gives back the same bytes (padding included).
//! This crate does no IO.
//!
//! # Example
//!
//! Read the header of chunk 0 from the first sector of a device (here, a
//! sector made in memory) and find an inode's object through it:
//!
//! ```
//! use pfs_format::layout::SECTOR_SIZE;
//! use pfs_format::{ChunkPhy, MetaObjPhy, MetaType, ObjectId};
//!
//! let mut sector = vec![0u8; SECTOR_SIZE as usize];
//! let header = ChunkPhy::new(0, 1).to_bytes();
//! sector[..header.len()].copy_from_slice(&header);
//!
//! let ck = ChunkPhy::decode(&sector, 0)?;
//! assert_eq!(ck.ck_nchunk.get(), 1);
//! assert_eq!(ck.metaset(MetaType::Inode).ms_nsect.get(), MetaType::Inode.nsect());
//!
//! // The root directory's inode is object 0 of chunk 0's inode metaset.
//! let root = ObjectId::new(MetaType::Inode, 0, 0)?;
//! let free = MetaObjPhy::new_free(root);
//! assert_eq!(MetaObjPhy::decode(&free.to_bytes(), root)?.mtype(), Some(MetaType::Inode));
//! assert!(ChunkPhy::decode(&sector[..64], 0).is_err()); // short: an error, no panic
//! # Ok::<(), pfs_format::FormatError>(())
//! ```

#![forbid(unsafe_code)]

pub mod blktag;
pub mod checksum;
pub mod chunk;
pub mod direntry;
pub mod endian;
pub mod error;
pub mod inode;
pub mod layout;
pub mod leader;
pub mod logentry;
pub mod metaobj;
pub mod metaset;
pub mod objno;
pub mod ossfile;
mod record;
pub mod reserved;

pub use blktag::BlkTagPhy;
pub use checksum::{pfs_crc32c, pfs_crc32c_zeroed};
pub use chunk::{ChunkPhy, MetasetPhy};
pub use direntry::DirEntryPhy;
pub use error::{CorruptKind, Expected, FormatError, Location, Result};
pub use inode::InodePhy;
pub use leader::LeaderRecord;
pub use logentry::LogEntryPhy;
pub use metaobj::MetaObjPhy;
pub use objno::{MetaType, ObjectId};
pub use reserved::mkfs_object;
