//! `mkfs`: format a device exactly as the reference's `pfs mkfs` does.
//!
//! The reference writes chunk headers and metasets, then mounts the new
//! filesystem as host 1 and creates `.pfs-paxos` (4 MiB) and `.pfs-journal`
//! through its file layer. The end state is fully determined, so we write it
//! directly: every metaset object, the two files' blocks with their block
//! tags, inodes and chains, 4 MiB of paxos sector data with the leader record
//! in front, and the zeroed journal.
//!
//! The only bytes that differ from the reference's are clock values and the
//! checksums covering them: the root inode's `in_btime` (µs) and the
//! `in_ctime`/`in_mtime` (s) of `.pfs-paxos` and `.pfs-journal`
//! (see [`MkfsClock`]).
//!
//! Write order keeps a crash harmless: with `-f`, chunk 0's header is
//! invalidated and flushed first; headers are written last, chunk 0 last of
//! all, each phase followed by a flush. Until chunk 0's header lands the
//! device is not a PFS.

use crate::device::{AlignedBuf, Device};
use crate::error::{CoreError, Result};
use pfs_format::blktag::BlkTagPhy;
use pfs_format::layout::{
    BLKTAGS_PER_CHUNK, BLKTAG_SET_OFFSET, BLOCK_SIZE, CHUNK_SIZE, DIRENTRIES_PER_CHUNK,
    INODES_PER_CHUNK, JOURNAL_FILE_INO, LOG_ENTRY_SIZE, MAX_CHUNKS, MAX_HOSTS, MAX_LOG_SIZE,
    META_END_OFFSET, MIN_LOG_SIZE, OBJS_PER_SECTOR, OBJ_SIZE, PAXOS_FILE_INO, PAXOS_FILE_SIZE,
    SECTOR_SIZE,
};
use pfs_format::metaset::{encode_sector, mkfs_sector};
use pfs_format::{ChunkPhy, LeaderRecord, MetaObjPhy, MetaType, ObjectId};
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// Default `mkfs -u`.
pub const DEFAULT_NUM_HOSTS: u64 = pfs_format::layout::DEFAULT_NUM_HOSTS;
/// Default `mkfs -l`.
pub const DEFAULT_LOG_SIZE: u64 = MAX_LOG_SIZE;

/// What `mkfs` was asked to do.
///
/// # Example
///
/// Fewer hosts and the journal size the reference picks for the device
/// (`mkfs -u 4 -l 0`):
///
/// ```
/// use pfs_core::{auto_log_size, mkfs, MemDevice, MkfsOptions};
///
/// let dev = MemDevice::new("nvme1n1", 10 << 30);
/// let opts = MkfsOptions {
///     num_hosts: 4,
///     log_size: 0,
///     ..MkfsOptions::default()
/// };
/// let summary = mkfs(&dev, &opts)?;
/// assert_eq!(summary.log_size, auto_log_size(1));
/// assert_eq!(summary.log_size, 32 << 20);
///
/// // Host ids run from 1 to 254.
/// let bad = MkfsOptions { num_hosts: 0, force: true, ..opts };
/// assert_eq!(mkfs(&dev, &bad).unwrap_err().errno(), libc::EINVAL);
/// # Ok::<(), pfs_core::CoreError>(())
/// ```
#[derive(Debug, Clone)]
pub struct MkfsOptions {
    /// Hosts that may mount (`-u`), 1..=254.
    pub num_hosts: u64,
    /// Journal size in bytes (`-l`); 0 picks a size from the chunk count as
    /// the reference does.
    pub log_size: u64,
    /// Format even when the device already holds PFS (`-f`).
    pub force: bool,
}

impl Default for MkfsOptions {
    fn default() -> Self {
        MkfsOptions {
            num_hosts: DEFAULT_NUM_HOSTS,
            log_size: DEFAULT_LOG_SIZE,
            force: false,
        }
    }
}

/// The clock values mkfs stamps (the only run-dependent bytes it writes).
#[derive(Debug, Clone, Copy)]
pub struct MkfsClock {
    /// Root inode `in_btime`, microseconds since the epoch.
    pub root_btime_us: u64,
    /// `in_ctime`/`in_mtime` of `.pfs-paxos` and `.pfs-journal`, seconds.
    pub file_time: u64,
}

impl MkfsClock {
    /// The current time.
    pub fn now() -> MkfsClock {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        MkfsClock {
            root_btime_us: d.as_micros() as u64,
            file_time: d.as_secs(),
        }
    }
}

/// What `mkfs` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MkfsSummary {
    /// Bytes of the device used: whole chunks.
    pub disk_size: u64,
    /// Bytes past the last whole chunk, left unused.
    pub wasted: u64,
    /// Chunks formatted.
    pub nchunk: u32,
    /// Journal size chosen.
    pub log_size: u64,
}

/// The journal size `mkfs -l 0` picks for `nchunk` chunks: room for every
/// object of the device twice, clamped to 32 MiB..=1 GiB.
pub fn auto_log_size(nchunk: u32) -> u64 {
    let per_chunk = u64::from(BLKTAGS_PER_CHUNK + DIRENTRIES_PER_CHUNK + INODES_PER_CHUNK);
    let want = u64::from(nchunk) * per_chunk * LOG_ENTRY_SIZE as u64 * 2;
    want.clamp(MIN_LOG_SIZE, MAX_LOG_SIZE).div_ceil(SECTOR_SIZE) * SECTOR_SIZE
}

/// Whole chunks on a device of `size` bytes, or the error mkfs reports.
pub fn chunks_of(device: &str, size: u64) -> Result<u32> {
    if size < CHUNK_SIZE {
        return Err(CoreError::DeviceTooSmall {
            device: device.to_owned(),
            size,
            need: CHUNK_SIZE,
        });
    }
    let n = (size / CHUNK_SIZE).min(MAX_CHUNKS);
    Ok(n as u32)
}

/// Whether chunk `chunk` of `dev` carries a valid PFS chunk header.
pub fn chunk_is_formatted(dev: &dyn Device, chunk: u64) -> Result<bool> {
    let mut buf = AlignedBuf::new(SECTOR_SIZE as usize);
    dev.read_at(buf.as_mut_slice(), chunk * CHUNK_SIZE)?;
    Ok(ChunkPhy::decode(buf.as_slice(), chunk).is_ok())
}

/// Formats `dev`, stamping the current time.
///
/// # Example
///
/// Format a 10 GiB sparse file (one 10 GiB chunk; only the metadata is
/// written, a few MiB) and check what was made:
///
/// ```
/// use pfs_core::{chunk_is_formatted, mkfs, CoreError, FileDevice, MkfsOptions};
///
/// let dir = std::env::temp_dir().join(format!("pfs-doc-mkfs-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let img = dir.join("disk");
/// std::fs::File::create(&img)?.set_len(10 << 30)?;
///
/// let dev = FileDevice::open("disk", &img, true)?;
/// let summary = mkfs(&dev, &MkfsOptions::default())?;
/// assert_eq!(summary.nchunk, 1);
/// assert_eq!(summary.disk_size, 10 << 30);
/// assert!(chunk_is_formatted(&dev, 0)?);
///
/// // A formatted device is only formatted again with `force` (`mkfs -f`).
/// let again = mkfs(&dev, &MkfsOptions::default());
/// assert!(matches!(again, Err(CoreError::AlreadyFormatted { .. })));
/// mkfs(&dev, &MkfsOptions { force: true, ..MkfsOptions::default() })?;
///
/// drop(dev);
/// std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn mkfs(dev: &dyn Device, opts: &MkfsOptions) -> Result<MkfsSummary> {
    mkfs_with_clock(dev, opts, MkfsClock::now())
}

/// Formats `dev` with the given clock values. Refuses, before writing
/// anything, a device smaller than a chunk, bad options, or a device that
/// already holds PFS without `force`.
pub fn mkfs_with_clock(
    dev: &dyn Device,
    opts: &MkfsOptions,
    clock: MkfsClock,
) -> Result<MkfsSummary> {
    let name = dev.name();
    if opts.num_hosts == 0 || opts.num_hosts > MAX_HOSTS {
        return Err(CoreError::InvalidArgument(format!(
            "number of hosts {} is out of range 1..={MAX_HOSTS}",
            opts.num_hosts
        )));
    }
    let nchunk = chunks_of(name, dev.len())?;
    let log_size = if opts.log_size == 0 {
        auto_log_size(nchunk)
    } else {
        opts.log_size
    };
    if !(MIN_LOG_SIZE..=MAX_LOG_SIZE).contains(&log_size) || log_size % SECTOR_SIZE != 0 {
        return Err(CoreError::InvalidArgument(format!(
            "journal size {log_size} must be a multiple of 4096 in {MIN_LOG_SIZE}..={MAX_LOG_SIZE}"
        )));
    }
    let formatted = chunk_is_formatted(dev, 0)?;
    if formatted && !opts.force {
        return Err(CoreError::AlreadyFormatted {
            device: name.to_owned(),
            chunk: 0,
        });
    }

    let plan = Layout::plan(nchunk, log_size, clock)?;

    if formatted {
        crate::overwrite::refuse_live_writer(dev)?;
    }
    if formatted {
        // Invalidate first: a crash from here on leaves "not PFS", never a
        // valid header over half-rewritten metadata.
        dev.write_at(AlignedBuf::new(SECTOR_SIZE as usize).as_slice(), 0)?;
        dev.sync()?;
    }
    for chunk in 0..nchunk {
        write_metasets(dev, chunk, &plan.objects, clock.root_btime_us)?;
    }
    // .pfs-paxos: the leader record followed by zeros, one whole block.
    let mut paxos = AlignedBuf::new(PAXOS_FILE_SIZE as usize);
    let leader = LeaderRecord::new(opts.num_hosts, log_size);
    paxos.as_mut_slice()[..leader.to_bytes().len()].copy_from_slice(&leader.to_bytes());
    dev.write_at(paxos.as_slice(), plan.paxos_block * BLOCK_SIZE)?;
    // .pfs-journal: zeros, merged into runs of adjacent blocks.
    for (start, len) in runs(&plan.journal_blocks) {
        dev.zero_range(start * BLOCK_SIZE, len * BLOCK_SIZE)?;
    }
    dev.sync()?;
    for chunk in (0..nchunk).rev() {
        write_chunk_header(dev, u64::from(chunk), nchunk)?;
    }
    dev.sync()?;
    // A copy of the old filesystem's metasets, or one made while this ran.
    crate::metacache::forget(dev);
    Ok(MkfsSummary {
        disk_size: u64::from(nchunk) * CHUNK_SIZE,
        wasted: dev.len() - u64::from(nchunk) * CHUNK_SIZE,
        nchunk,
        log_size,
    })
}

/// Writes the header sector of `chunk` for a device of `nchunk` chunks.
pub(crate) fn write_chunk_header(dev: &dyn Device, chunk: u64, nchunk: u32) -> Result<()> {
    let mut sect = AlignedBuf::new(SECTOR_SIZE as usize);
    let ck = ChunkPhy::new(chunk, nchunk);
    sect.as_mut_slice()[..ck.to_bytes().len()].copy_from_slice(&ck.to_bytes());
    dev.write_at(sect.as_slice(), chunk * CHUNK_SIZE)
}

/// Writes all three metasets of `chunk` in one request: the mkfs objects,
/// overridden by `changed`.
pub(crate) fn write_metasets(
    dev: &dyn Device,
    chunk: u32,
    changed: &BTreeMap<ObjectId, MetaObjPhy>,
    root_btime_us: u64,
) -> Result<()> {
    let mut buf = AlignedBuf::new((META_END_OFFSET - BLKTAG_SET_OFFSET) as usize);
    for t in MetaType::ALL {
        for sect in 0..t.nsect() {
            let mut objs = mkfs_sector(t, chunk, sect, root_btime_us)?;
            for (i, mo) in objs.iter_mut().enumerate() {
                let id = ObjectId::new(t, chunk, sect * OBJS_PER_SECTOR + i as u32)?;
                if let Some(new) = changed.get(&id) {
                    *mo = *new;
                }
            }
            let at = (t.set_offset() - BLKTAG_SET_OFFSET) as usize
                + sect as usize * SECTOR_SIZE as usize;
            buf.as_mut_slice()[at..at + SECTOR_SIZE as usize]
                .copy_from_slice(&encode_sector(&objs));
        }
    }
    dev.write_at(
        buf.as_slice(),
        u64::from(chunk) * CHUNK_SIZE + BLKTAG_SET_OFFSET,
    )
}

/// Adjacent block numbers merged into `(first, count)` runs.
fn runs(blocks: &[u64]) -> Vec<(u64, u64)> {
    let mut sorted = blocks.to_vec();
    sorted.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for b in sorted {
        match out.last_mut() {
            Some((start, len)) if *start + *len == b => *len += 1,
            _ => out.push((b, 1)),
        }
    }
    out
}

/// The objects mkfs changes from their fresh state, and where the two
/// files' blocks went.
struct Layout {
    objects: BTreeMap<ObjectId, MetaObjPhy>,
    paxos_block: u64,
    journal_blocks: Vec<u64>,
}

/// The block allocator's choice at mkfs time: the chunk with the most free
/// block tags (ties to the lower chunk), then its lowest free tag.
struct BlockAllocator {
    /// Next free tag id per chunk (tags below are used).
    next: Vec<u32>,
}

impl BlockAllocator {
    fn new(nchunk: u32) -> Self {
        BlockAllocator {
            next: vec![1; nchunk as usize],
        }
    }

    fn alloc(&mut self) -> Option<ObjectId> {
        let (chunk, next) = self
            .next
            .iter_mut()
            .enumerate()
            .filter(|(_, n)| **n < BLKTAGS_PER_CHUNK)
            .min_by_key(|(_, n)| **n)?;
        let id = ObjectId::new(MetaType::BlkTag, chunk as u32, *next).ok()?;
        *next += 1;
        Some(id)
    }
}

impl Layout {
    fn plan(nchunk: u32, log_size: u64, clock: MkfsClock) -> Result<Layout> {
        let mut alloc = BlockAllocator::new(nchunk);
        let mut objects = BTreeMap::new();
        let paxos = add_file(
            &mut objects,
            &mut alloc,
            PAXOS_FILE_INO,
            PAXOS_FILE_SIZE,
            nchunk,
            clock,
        )?;
        let journal = add_file(
            &mut objects,
            &mut alloc,
            JOURNAL_FILE_INO,
            log_size,
            nchunk,
            clock,
        )?;
        Ok(Layout {
            objects,
            paxos_block: paxos[0],
            journal_blocks: journal,
        })
    }
}

/// Gives inode `ino` blocks for `size` bytes of written data, chaining its
/// block tags in file order. Returns the block numbers.
fn add_file(
    objects: &mut BTreeMap<ObjectId, MetaObjPhy>,
    alloc: &mut BlockAllocator,
    ino: u64,
    size: u64,
    nchunk: u32,
    clock: MkfsClock,
) -> Result<Vec<u64>> {
    let nblock = size.div_ceil(BLOCK_SIZE);
    let mut tags: Vec<ObjectId> = Vec::with_capacity(nblock as usize);
    for _ in 0..nblock {
        let id = alloc.alloc().ok_or_else(|| {
            CoreError::InvalidArgument(format!(
                "a journal of {size} bytes does not fit on {nchunk} chunk(s)"
            ))
        })?;
        tags.push(id);
    }
    for (blkid, id) in tags.iter().enumerate() {
        let mut mo = pfs_format::mkfs_object(*id, 0);
        mo.mo_used = 1;
        if blkid > 0 {
            mo.mo_prev.set(tags[blkid - 1].number());
        }
        if let Some(next) = tags.get(blkid + 1) {
            mo.mo_next.set(next.number());
        }
        let written = (size - blkid as u64 * BLOCK_SIZE).min(BLOCK_SIZE);
        let bt: &mut BlkTagPhy = mo.blktag_mut();
        bt.bt_ino.set(ino as i64);
        bt.bt_blkid.set(blkid as i64);
        bt.bt_holeoff.set(written as i32);
        bt.bt_holelen.set((BLOCK_SIZE - written) as i32);
        mo.seal();
        objects.insert(*id, mo);
    }
    let inode_id = ObjectId::new(MetaType::Inode, 0, ino as u32)?;
    let mut mo = pfs_format::mkfs_object(inode_id, 0);
    if let (Some(first), Some(last)) = (tags.first(), tags.last()) {
        mo.mo_next.set(first.number());
        mo.mo_prev.set(last.number());
    }
    let inode = mo.inode_mut();
    inode.in_nblock.set(nblock);
    inode.in_size.set(size);
    inode.in_ctime.set(clock.file_time);
    inode.in_mtime.set(clock.file_time);
    mo.seal();
    objects.insert(inode_id, mo);
    Ok(tags.iter().filter_map(|t| t.block_number()).collect())
}

const _: () = assert!(OBJ_SIZE as u32 * OBJS_PER_SECTOR == SECTOR_SIZE as u32);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MemDevice;

    #[test]
    fn auto_log_size_matches_reference_rule() {
        assert_eq!(auto_log_size(1), MIN_LOG_SIZE);
        assert_eq!(auto_log_size(1000), MAX_LOG_SIZE);
        assert_eq!(auto_log_size(20) % SECTOR_SIZE, 0);
    }

    #[test]
    fn refusals_leave_the_device_untouched() {
        let small = MemDevice::new("small", CHUNK_SIZE / 2);
        assert!(matches!(
            mkfs(&small, &MkfsOptions::default()),
            Err(CoreError::DeviceTooSmall { .. })
        ));
        assert_eq!(small.resident_bytes(), 0);

        let dev = MemDevice::new("m", CHUNK_SIZE);
        let bad = MkfsOptions {
            num_hosts: 255,
            ..MkfsOptions::default()
        };
        assert!(mkfs(&dev, &bad).is_err());
        let bad = MkfsOptions {
            log_size: 12345,
            ..MkfsOptions::default()
        };
        assert!(mkfs(&dev, &bad).is_err());
        assert_eq!(dev.resident_bytes(), 0);

        mkfs(&dev, &MkfsOptions::default()).unwrap();
        assert!(matches!(
            mkfs(&dev, &MkfsOptions::default()),
            Err(CoreError::AlreadyFormatted { chunk: 0, .. })
        ));
        let forced = MkfsOptions {
            force: true,
            ..MkfsOptions::default()
        };
        mkfs(&dev, &forced).unwrap();
        assert!(chunk_is_formatted(&dev, 0).unwrap());
    }

    #[test]
    fn allocator_goes_round_robin_over_equal_chunks() {
        let mut a = BlockAllocator::new(3);
        let got: Vec<(u32, u32)> = (0..5)
            .map(|_| a.alloc().map(|i| (i.chunk, i.oid)).unwrap())
            .collect();
        assert_eq!(got, vec![(0, 1), (1, 1), (2, 1), (0, 2), (1, 2)]);
    }

    #[test]
    fn runs_merge_adjacent_blocks() {
        assert_eq!(runs(&[5, 2, 3, 4, 9]), vec![(2, 4), (9, 1)]);
    }
}
