//! The inode payload (`pfs_inode_phy_t`).

use crate::endian::{U16Le, U32Le, U64Le};
use crate::record::pin_offsets;
use bytemuck::{Pod, Zeroable};
use core::mem::size_of;

/// `in_type` of a free inode (`PFS_INODET_NONE`).
pub const INODE_TYPE_NONE: u8 = 0;
/// `in_type` of a regular file (`PFS_INODET_FILE`).
pub const INODE_TYPE_FILE: u8 = 1;
/// `in_type` of a directory (`PFS_INODET_DIR`).
pub const INODE_TYPE_DIR: u8 = 2;

/// `in_deno` of a free or orphaned inode (`INVALID_DENO`).
pub const NO_DIRENTRY: u64 = u64::MAX;

/// An inode: the payload of an `MT_INODE` meta object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct InodePhy {
    /// [`INODE_TYPE_NONE`], [`INODE_TYPE_FILE`] or [`INODE_TYPE_DIR`].
    pub in_type: u8,
    /// Type-dependent flags; 0.
    pub in_flags: u8,
    /// Padding; 0.
    pub in_padding: U16Le,
    /// Private id plus one, 0 when unset (the `pvtid` xattr).
    pub in_pvtid: U32Le,
    /// Head direntry of this inode's name; [`NO_DIRENTRY`] when free/orphaned.
    pub in_deno: U64Le,
    /// Link count: 1 for a live file or directory.
    pub in_nlink: U64Le,
    /// Blocks owned by the file.
    pub in_nblock: U64Le,
    /// Size in bytes; for a directory 128 per entry.
    pub in_size: U64Le,
    /// Not an access time: a change counter bumped to force a journal record.
    pub in_atime: U64Le,
    /// Change time, seconds since the epoch.
    pub in_ctime: U64Le,
    /// Modification time, seconds since the epoch.
    pub in_mtime: U64Le,
    /// Birth time in microseconds; identifies this incarnation of the inode.
    pub in_btime: U64Le,
    /// Rest of the 88-byte payload; 0.
    pub _pad: [u8; 16],
}

const _: () = assert!(size_of::<InodePhy>() == crate::layout::OBJ_DATA_SIZE);
pin_offsets!(InodePhy;
    in_flags: 1, in_padding: 2, in_pvtid: 4, in_deno: 8, in_nlink: 16, in_nblock: 24,
    in_size: 32, in_atime: 40, in_ctime: 48, in_mtime: 56, in_btime: 64
);

impl InodePhy {
    /// A free inode as mkfs writes it: zero but for `in_deno = -1`.
    pub fn free() -> InodePhy {
        let mut i = InodePhy::zeroed();
        i.in_deno.set(NO_DIRENTRY);
        i
    }

    /// Whether this inode is a directory.
    pub fn is_dir(&self) -> bool {
        self.in_type == INODE_TYPE_DIR
    }

    /// Whether this inode is a regular file.
    pub fn is_file(&self) -> bool {
        self.in_type == INODE_TYPE_FILE
    }
}
