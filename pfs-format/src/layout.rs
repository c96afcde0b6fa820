//! Sizes, counts and offsets of the PFS layout (`pfs_impl.h`, `cmd_mkfs.cc`).
//!
//! A device is a run of 10 GiB chunks. Each chunk's first 4 MiB block holds
//! its header sector and its three metasets of 128-byte meta objects; the
//! rest are data blocks.

/// Bytes in a chunk (`PBD_CHUNK_SIZE`): fixed at 10 GiB.
pub const CHUNK_SIZE: u64 = 10 << 30;
/// Bytes in a block (`PFS_BLOCK_SIZE`, `PBD_UNIT_SIZE`): 4 MiB.
pub const BLOCK_SIZE: u64 = 4 << 20;
/// Bytes in a sector (`PBD_SECTOR_SIZE`): the unit of atomic metadata IO.
pub const SECTOR_SIZE: u64 = 4096;
/// Bytes in a fragment (`PFS_FRAG_SIZE`), the journal's read unit.
pub const FRAG_SIZE: u64 = 16 << 10;

/// Bytes in one meta object (`sizeof(pfs_metaobj_phy_t)`).
pub const OBJ_SIZE: usize = 128;
/// Bytes of a meta object's payload (`PFS_OBJDATA_SIZE`).
pub const OBJ_DATA_SIZE: usize = 88;
/// Meta objects in one sector.
pub const OBJS_PER_SECTOR: u32 = (SECTOR_SIZE as u32) / (OBJ_SIZE as u32);
/// Log entries in one sector.
pub const LOG_ENTRIES_PER_SECTOR: u32 = (SECTOR_SIZE as u32) / (LOG_ENTRY_SIZE as u32);
/// Bytes in one journal log entry (`pfs_logentry_phy_t`, 256-byte aligned).
pub const LOG_ENTRY_SIZE: usize = 256;

/// Block tags per chunk (`PFS_NBT_PERCHUNK`): one per block.
pub const BLKTAGS_PER_CHUNK: u32 = (CHUNK_SIZE / BLOCK_SIZE) as u32;
/// Directory entries per chunk (`PFS_NDE_PERCHUNK`).
pub const DIRENTRIES_PER_CHUNK: u32 = 2048;
/// Inodes per chunk (`PFS_NIN_PERCHUNK`).
pub const INODES_PER_CHUNK: u32 = 2048;

/// Offset of the block-tag metaset inside its chunk.
pub const BLKTAG_SET_OFFSET: u64 = SECTOR_SIZE;
/// Offset of the direntry metaset inside its chunk.
pub const DIRENTRY_SET_OFFSET: u64 = BLKTAG_SET_OFFSET + BLKTAGS_PER_CHUNK as u64 * OBJ_SIZE as u64;
/// Offset of the inode metaset inside its chunk.
pub const INODE_SET_OFFSET: u64 =
    DIRENTRY_SET_OFFSET + DIRENTRIES_PER_CHUNK as u64 * OBJ_SIZE as u64;
/// End of the metadata inside a chunk's first block.
pub const META_END_OFFSET: u64 = INODE_SET_OFFSET + INODES_PER_CHUNK as u64 * OBJ_SIZE as u64;

/// Largest number of chunks a device may have: block numbers, object numbers
/// and chunk numbers all stay far inside their fields below this.
pub const MAX_CHUNKS: u64 = 1 << 20;

/// Longest file name in bytes, without the terminating NUL (`PFS_MAX_NAMELEN - 1`).
pub const MAX_NAME_LEN: usize = 255;
/// Bytes of name held by one direntry (`PFS_MAX_NAMELEN_OLD`).
pub const DE_NAME_SIZE: usize = 64;
/// Longest path in bytes, without the terminating NUL (`PFS_MAX_PATHLEN - 1`).
pub const MAX_PATH_LEN: usize = 4095;
/// Longest PBD name in bytes, without the terminating NUL (`PFS_MAX_PBDLEN - 1`).
pub const MAX_PBD_NAME_LEN: usize = 63;

/// Object number of the root directory's inode and direntry.
pub const ROOT_INO: u64 = 0;
/// Object number of `.pfs-paxos`'s inode and direntry (`PAXOS_FILE_MONO`).
pub const PAXOS_FILE_INO: u64 = 1;
/// Object number of `.pfs-journal`'s inode and direntry (`JOURNAL_FILE_MONO`).
pub const JOURNAL_FILE_INO: u64 = 2;
/// Name of the leader-record file.
pub const PAXOS_FILE_NAME: &str = ".pfs-paxos";
/// Name of the journal file.
pub const JOURNAL_FILE_NAME: &str = ".pfs-journal";
/// Birth time stamped on `.pfs-paxos` and `.pfs-journal` (`INNER_FILE_BTIME`).
pub const INNER_FILE_BTIME: u64 = 0;

/// Default number of hosts (`mkfs -u`): 30.
pub const DEFAULT_NUM_HOSTS: u64 = 30;
/// Most hosts a leader record can describe (`DEFAULT_MAX_HOSTS`).
pub const MAX_HOSTS: u64 = 254;
/// Smallest journal (`mkfs -l`): 32 MiB.
pub const MIN_LOG_SIZE: u64 = 32 << 20;
/// Largest and default journal: 1 GiB.
pub const MAX_LOG_SIZE: u64 = 1 << 30;
/// Size of `.pfs-paxos`: one block.
pub const PAXOS_FILE_SIZE: u64 = BLOCK_SIZE;

/// Byte address of a chunk's first byte.
pub const fn chunk_base(chunk: u64) -> u64 {
    chunk * CHUNK_SIZE
}

const _: () = assert!(DIRENTRY_SET_OFFSET == 0x51000);
const _: () = assert!(INODE_SET_OFFSET == 0x91000);
const _: () = assert!(META_END_OFFSET <= BLOCK_SIZE);
const _: () = assert!(BLKTAGS_PER_CHUNK == 2560);
const _: () = assert!(OBJS_PER_SECTOR == 32);
const _: () = assert!(LOG_ENTRIES_PER_SECTOR == 16);
