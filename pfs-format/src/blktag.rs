//! The block tag payload (`pfs_blktag_phy_t`): who owns a 4 MiB block and
//! which part of it has been written.

use crate::endian::{I32Le, I64Le, U32Le};
use crate::record::pin_offsets;
use bytemuck::{Pod, Zeroable};
use core::mem::size_of;

/// `bt_holeoff` value meaning "no hole" as the reference reports it
/// (`INT_MAX`).
pub const NO_HOLE: i32 = i32::MAX;

/// Discard states (`bt_dstatus`).
pub mod dstatus {
    /// Never discarded, or discard not tracked.
    pub const NONE: u32 = 0;
    /// Discarded, ready for reuse.
    pub const READY: u32 = 1;
    /// Discard in progress.
    pub const IN_PROGRESS: u32 = 2;
}

/// A block tag: the payload of an `MT_BLKTAG` meta object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct BlkTagPhy {
    /// Inode owning the block; meaningful only while the tag is used.
    pub bt_ino: I64Le,
    /// Index of the block inside its file (file offset / 4 MiB).
    pub bt_blkid: I64Le,
    /// Discard status, one of [`dstatus`].
    pub bt_dstatus: U32Le,
    /// Number of discards started since allocation.
    pub bt_ndiscard: U32Le,
    /// Length of the unwritten tail of the block, 0 when there is none.
    pub bt_holelen: I32Le,
    /// Offset inside the block where the unwritten tail starts.
    pub bt_holeoff: I32Le,
    /// Rest of the 88-byte payload; 0.
    pub _pad: [u8; 56],
}

const _: () = assert!(size_of::<BlkTagPhy>() == crate::layout::OBJ_DATA_SIZE);
pin_offsets!(BlkTagPhy;
    bt_blkid: 8, bt_dstatus: 16, bt_ndiscard: 20, bt_holelen: 24, bt_holeoff: 28
);

impl BlkTagPhy {
    /// Where valid data of the block ends: `bt_holeoff` when the tag records
    /// a hole (`bt_holelen > 0`), else [`NO_HOLE`] (the whole block is data),
    /// as the reference computes it when loading.
    pub fn data_end(&self) -> i32 {
        if self.bt_holelen.get() > 0 {
            self.bt_holeoff.get()
        } else {
            NO_HOLE
        }
    }
}
