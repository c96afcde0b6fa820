//! The data path: file block maps (kept while the metadata does not
//! change), reads that stay exact while the writer of another host frees
//! and reuses blocks, and writes: the bytes straight to the blocks, their
//! new written extents and size committed after.

use super::state::{gone, State};
use super::Mount;
use crate::error::{CoreError, Result};
use crate::fsops::{change_inode, check_range, FallocMode};
use crate::ns::FileBlock;
use pfs_format::inode::NO_DIRENTRY;
use pfs_format::layout::BLOCK_SIZE;
use pfs_format::{LeaderRecord, ObjectId};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Block maps of files worked out from the metadata, kept while it does
/// not change, so reads and writes of data do not walk a file's block
/// chain each time.
pub(super) type BlockCache = std::collections::HashMap<u64, (u64, Arc<BTreeMap<u64, FileBlock>>)>;

/// How many files' block maps are kept.
const BLOCK_CACHE_FILES: usize = 4096;

/// Disk usage counts whole blocks above this many blocks (`du_nblk_limit`).
const DU_NBLK_LIMIT: u64 = 1;
/// Small files' usage is rounded up to this unit.
const DU_ROUND: u64 = 128 << 10;

/// A read of a file as one state has it.
struct ReadPlan {
    /// The file's birth time.
    btime: u64,
    /// Its size.
    size: u64,
    /// Its blocks.
    blocks: Arc<BTreeMap<u64, FileBlock>>,
    /// The state's leader record, and where it lives.
    seen: LeaderRecord,
    bda: u64,
}

/// Bytes a read of `len` at `off` returns from a file of `size` bytes.
fn read_len(size: u64, off: u64, len: usize) -> usize {
    size.saturating_sub(off).min(len as u64) as usize
}

impl Mount {
    /// Blocks of file `ino` by index inside the file.
    pub fn blocks(&self, ino: u64) -> Result<BTreeMap<u64, FileBlock>> {
        Ok((*self.block_map(ino)?).clone())
    }

    /// [`Mount::blocks`], shared from the cache while the metadata does
    /// not change.
    pub(crate) fn block_map(&self, ino: u64) -> Result<Arc<BTreeMap<u64, FileBlock>>> {
        self.refresh()?;
        let st = self.state.read();
        self.cached_blocks(&st, ino)
    }

    /// The block map of `ino` in state `st` (which the caller holds).
    pub(crate) fn cached_blocks(
        &self,
        st: &State,
        ino: u64,
    ) -> Result<Arc<BTreeMap<u64, FileBlock>>> {
        let mut cache = self.block_cache.lock();
        if let Some((gen, map)) = cache.get(&ino) {
            if *gen == st.gen {
                return Ok(Arc::clone(map));
            }
        }
        let map = Arc::new(st.meta.blocks(ino)?);
        if cache.len() >= BLOCK_CACHE_FILES {
            cache.retain(|_, (gen, _)| *gen == st.gen);
            if cache.len() >= BLOCK_CACHE_FILES {
                cache.clear();
            }
        }
        cache.insert(ino, (st.gen, Arc::clone(&map)));
        Ok(map)
    }

    /// Reads file `ino` at `off` into `buf`; returns the bytes read (short
    /// at end of file). Unallocated ranges and bytes past a block's written
    /// part read as zeros.
    ///
    /// The file is the one `ino` names in the newest state this mount has
    /// seen; a caller that looked the file up earlier should use
    /// [`Mount::read_born_at`], which notices that the number was reused.
    pub fn read_at(&self, ino: u64, buf: &mut [u8], off: u64) -> Result<usize> {
        self.read_inode_at(ino, None, buf, off)
    }

    /// [`Mount::read_at`] of the file born at `btime` ([`Attr::btime`]):
    /// [`CoreError::NotFound`] if the writer removed it, even when its inode
    /// number already names a newer file.
    ///
    /// [`Attr::btime`]: crate::Attr::btime
    pub fn read_born_at(&self, ino: u64, btime: u64, buf: &mut [u8], off: u64) -> Result<usize> {
        self.read_inode_at(ino, Some(btime), buf, off)
    }

    fn read_inode_at(
        &self,
        ino: u64,
        given: Option<u64>,
        buf: &mut [u8],
        off: u64,
    ) -> Result<usize> {
        // A mount that another host may write to, and that does not hold the
        // lease on this machine, checks the journal head on the device after
        // every read: it reads by the state it has, then reads the leader
        // record. That one check serves both guarantees. It started after
        // the call began, so a head the same as the state's means the state
        // holds every commit that returned before the call; and it started
        // after the data read completed, so a head the same means the writer
        // committed nothing while the data was read, and moved no block: it
        // writes into a block it took from a file only after the transaction
        // that freed it is durable. Heads only grow (txids), so the same head
        // is the same state. A head that moved is caught up with and the
        // file's blocks compared, as below. Other mounts catch up first, at
        // no cost (see `refresh`).
        let checked = self.others_may_write() && self.machine_version().is_none();
        if !checked {
            self.refresh()?;
        }
        // Whether the state read by holds every commit that returned before
        // this call (a frozen mount keeps the state it has).
        let mut fresh = !checked || self.frozen.load(std::sync::atomic::Ordering::Relaxed);
        // The file being read, by its birth time: an inode number freed and
        // given to a new file meanwhile is another file. Taken from a state
        // known to be fresh.
        let mut born = given;
        const ATTEMPTS: usize = 8;
        for _ in 0..ATTEMPTS {
            let version = self.machine_version();
            let looked = {
                let st = self.state.read();
                self.read_plan(&st, ino, born)
            };
            let plan = match looked {
                Ok(p) => p,
                Err(_) if !fresh => {
                    // Perhaps only this state is old: look again in a
                    // current one.
                    self.catch_up()?;
                    fresh = true;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if fresh {
                born.get_or_insert(plan.btime);
            }
            let n = self.read_blocks(&plan.blocks, plan.size, off, buf)?;
            if !checked {
                if !self.others_may_write() {
                    return Ok(n);
                }
                // Nothing committed on this machine, which holds the lease.
                if version.is_some() && version == self.machine_version() {
                    return Ok(n);
                }
            }
            // The bytes are the file's if the writer committed nothing since
            // the state they were read by, or if what it committed left the
            // blocks of this range where they were.
            let counted = self.share.as_ref().map(|s| s.version());
            let now = self.read_leader_fresh(plan.bda)?;
            let head = |l: &LeaderRecord| (l.head_txid.get(), l.head_lsn.get());
            if head(&now) == head(&plan.seen) {
                return Ok(n);
            }
            self.catch_up_with(now, counted)?;
            let was_fresh = std::mem::replace(&mut fresh, true);
            let st = self.state.read();
            let current = st.meta.inode(ino).ok().map(|(_, i)| i);
            let Some(i) = current.filter(|i| i.in_btime.get() == plan.btime) else {
                match born {
                    // The file the number named in an old state: read the
                    // one it names now.
                    None => continue,
                    Some(_) => return Err(gone(ino)),
                }
            };
            let after = self.cached_blocks(&st, ino)?;
            let range = off / BLOCK_SIZE..=(off + n as u64).div_ceil(BLOCK_SIZE);
            // Read by an old state, the bytes must also be all a current
            // one would give: a file grown before the call reads further.
            let whole = was_fresh || read_len(i.in_size.get(), off, buf.len()) == n;
            if whole
                && i.in_size.get() >= off + n as u64
                && plan.blocks.range(range.clone()).eq(after.range(range))
            {
                return Ok(n);
            }
            // Unlinked, and its writer is cutting it down to free it (a
            // reader elsewhere does not keep it alive): its bytes are gone,
            // not shorter.
            if i.in_deno.get() == NO_DIRENTRY && i.in_size.get() < off + n as u64 {
                return Err(gone(ino));
            }
        }
        Err(CoreError::Busy {
            what: format!("inode {ino} kept changing while it was read"),
        })
    }

    /// What a read of file `ino` (born at `born`, if known) needs from
    /// state `st`.
    fn read_plan(&self, st: &State, ino: u64, born: Option<u64>) -> Result<ReadPlan> {
        let (_, i) = st.meta.inode(ino).map_err(|_| gone(ino))?;
        if born.is_some_and(|b| b != i.in_btime.get()) {
            return Err(gone(ino));
        }
        st.meta.check_attrs(ino, i)?;
        if i.is_dir() {
            return Err(CoreError::IsDir {
                path: format!("inode {ino}"),
            });
        }
        Ok(ReadPlan {
            btime: i.in_btime.get(),
            size: i.in_size.get(),
            blocks: self.cached_blocks(st, ino)?,
            seen: *st.leader(),
            bda: st.leader_bda,
        })
    }

    /// Reads `buf` at `off` from a file of `size` bytes with `blocks`.
    fn read_blocks(
        &self,
        blocks: &BTreeMap<u64, FileBlock>,
        size: u64,
        off: u64,
        buf: &mut [u8],
    ) -> Result<usize> {
        let n = read_len(size, off, buf.len());
        let mut done = 0usize;
        while done < n {
            let pos = off + done as u64;
            let (blkid, in_blk) = (pos / BLOCK_SIZE, pos % BLOCK_SIZE);
            let take = (n - done).min((BLOCK_SIZE - in_blk) as usize);
            let out = &mut buf[done..done + take];
            match blocks.get(&blkid) {
                Some(b) if in_blk < b.data_end => {
                    let data = ((b.data_end - in_blk) as usize).min(take);
                    self.dev
                        .read_at(&mut out[..data], b.blkno * BLOCK_SIZE + in_blk)?;
                    out[data..].fill(0);
                }
                _ => out.fill(0),
            }
            done += take;
        }
        Ok(n)
    }

    /// Bytes of the device file `ino` uses, as the reference's `du` counts
    /// them: whole blocks for multi-block files, written bytes rounded up to
    /// 128 KiB for files of at most one block.
    pub fn disk_usage(&self, ino: u64) -> Result<u64> {
        self.refresh()?;
        let st = self.state.read();
        let (_, i) = st.meta.inode(ino)?;
        let nblock = i.in_nblock.get();
        if nblock > DU_NBLK_LIMIT {
            return Ok(nblock * BLOCK_SIZE);
        }
        let soft = i.in_size.get().div_ceil(BLOCK_SIZE);
        let mut sum = 0u64;
        let first = st.meta.inode(ino)?.0.mo_next.get();
        for r in st.meta.blktag_chain(ino, first) {
            let (_, bt_mo) = r?;
            let bt = bt_mo.blktag();
            if (bt.bt_blkid.get() as u64) < soft {
                sum += BLOCK_SIZE
                    - u64::try_from(bt.bt_holelen.get())
                        .unwrap_or(0)
                        .min(BLOCK_SIZE);
            }
        }
        Ok(sum.div_ceil(DU_ROUND) * DU_ROUND)
    }
}

impl Mount {
    /// Writes `buf` at `off` of file `ino`: allocates missing blocks (one
    /// transaction), writes the data (zeroing any gap after a block's
    /// written part), then commits the new written extents and size.
    pub fn write_at(&self, ino: u64, buf: &[u8], off: u64) -> Result<usize> {
        self.write_inode_at(ino, None, buf, off)
    }

    /// [`Mount::write_at`] of the file born at `born` (a handle's file):
    /// [`CoreError::NotFound`] once that file was freed, even when its
    /// inode number names a newer file.
    pub(crate) fn write_inode_at(
        &self,
        ino: u64,
        born: Option<u64>,
        buf: &[u8],
        off: u64,
    ) -> Result<usize> {
        check_range("write", off, buf.len() as u64)?;
        crate::system::refuse_system(ino, "writing to it", || format!("inode {ino}"))?;
        if buf.is_empty() {
            return Ok(0);
        }
        // No truncate frees the blocks this writes to until it is done, and
        // a write that extends the file or a block's written part (zeroing
        // the gap before it, committing the new extent) is alone in that.
        let _locks = self.write_guard(ino, off, buf.len() as u64)?;
        // Writing the same bytes again is harmless: the write is repeated
        // when the lease ran out under it and was proved again.
        self.with_write_permit(|| {
            let mut pending = Extents::default();
            self.write_data(ino, born, off, buf, &mut pending)?;
            self.commit_extents(ino, &pending)
        })?;
        Ok(buf.len())
    }

    /// Whether writing `len` bytes at `off` of file `ino` grows the file,
    /// allocates a block or extends a block's written part, and if it
    /// does, whether it starts past a block's written part (and so zeroes
    /// the gap before it).
    pub(crate) fn extends(&self, ino: u64, off: u64, len: u64) -> Result<Extend> {
        let end = check_range("write", off, len)?;
        let grows = end > self.getattr(ino)?.size;
        let blocks = self.block_map(ino)?;
        let (mut extends, mut zeroes) = (grows, false);
        let mut pos = off;
        while pos < end {
            let (blkid, in_blk) = (pos / BLOCK_SIZE, pos % BLOCK_SIZE);
            let n = (end - pos).min(BLOCK_SIZE - in_blk);
            let data_end = blocks.get(&blkid).map_or(0, |b| b.data_end);
            extends |= in_blk + n > data_end;
            zeroes |= in_blk > data_end;
            pos += n;
        }
        Ok(match (extends, zeroes) {
            (false, _) => Extend::No,
            (true, false) => Extend::Contiguous,
            (true, true) => Extend::PastGap,
        })
    }

    /// The data half of a write: allocates missing blocks (one
    /// transaction, only if any are missing), writes the bytes (zeroing a
    /// gap after a block's written part) and records in `pending` how far
    /// each block's written part and the file now reach. Nothing about the
    /// new extents is committed until [`Self::commit_extents`]. The data
    /// goes to the device outside any transaction, so callers run it under
    /// [`Mount::with_write_permit`]; the device refuses it anyway once the
    /// mount may not write.
    pub(crate) fn write_data(
        &self,
        ino: u64,
        born: Option<u64>,
        off: u64,
        data: &[u8],
        pending: &mut Extents,
    ) -> Result<()> {
        let end = check_range("write", off, data.len() as u64)?;
        crate::system::refuse_system(ino, "writing to it", || format!("inode {ino}"))?;
        let blocks = self.blocks_for_write(ino, born)?;
        if (off / BLOCK_SIZE..end.div_ceil(BLOCK_SIZE)).any(|b| !blocks.contains_key(&b)) {
            let mode = FallocMode {
                keep_size: true,
                no_hide_stale: false,
            };
            self.fallocate(ino, off, data.len() as u64, mode)?;
        }
        let blocks = self.blocks_for_write(ino, born)?;
        // Its blocks are the file's now. Bytes that a cut or a free not
        // durable yet took from a file wait for it.
        self.settle_cuts()?;
        let mut pos = off;
        while pos < end {
            let (blkid, in_blk) = (pos / BLOCK_SIZE, pos % BLOCK_SIZE);
            let n = (end - pos).min(BLOCK_SIZE - in_blk);
            let b = blocks
                .get(&blkid)
                .ok_or_else(|| CoreError::InvalidArgument("write: block vanished".into()))?;
            let base = b.blkno * BLOCK_SIZE;
            let data_end = b
                .data_end
                .max(pending.blocks.get(&b.btno).copied().unwrap_or(0));
            if in_blk > data_end {
                crate::device::write_zeros(
                    self.device().as_ref(),
                    base + data_end,
                    in_blk - data_end,
                )?;
            }
            let src = &data[(pos - off) as usize..(pos - off + n) as usize];
            self.device().write_at(src, base + in_blk)?;
            if in_blk + n > data_end {
                pending.blocks.insert(b.btno, in_blk + n);
            }
            pos += n;
        }
        pending.end = pending.end.max(end);
        Ok(())
    }

    /// The block map of file `ino` for a write, looked up in one state with
    /// the file itself: not a directory, and still the file born at
    /// `born` (a handle's file whose inode was freed is gone, even when its
    /// number names a newer file).
    fn blocks_for_write(
        &self,
        ino: u64,
        born: Option<u64>,
    ) -> Result<std::sync::Arc<BTreeMap<u64, FileBlock>>> {
        self.refresh()?;
        let st = self.state.read();
        let i = match (st.meta.inode(ino), born) {
            (Ok((_, i)), Some(b)) if i.in_btime.get() != b => return Err(gone(ino)),
            (Ok((_, i)), _) => i,
            (Err(_), Some(_)) => return Err(gone(ino)),
            (Err(e), None) => return Err(e),
        };
        if i.is_dir() {
            return Err(CoreError::IsDir {
                path: format!("inode {ino}"),
            });
        }
        self.cached_blocks(&st, ino)
    }

    /// Commits the written extents and size recorded by
    /// [`Self::write_data`] in one transaction (nothing when nothing grew).
    pub(crate) fn commit_extents(&self, ino: u64, pending: &Extents) -> Result<()> {
        let size = self.getattr(ino)?.size;
        let blocks = self.block_map(ino)?;
        let grown: Vec<(ObjectId, u64)> = pending
            .blocks
            .iter()
            .filter(|(bt, end)| {
                blocks
                    .values()
                    .any(|b| b.btno == **bt && **end > b.data_end)
            })
            .map(|(bt, end)| (*bt, *end))
            .collect();
        if grown.is_empty() && pending.end <= size {
            return Ok(());
        }
        // Other handles of the file, or other processes of a shared host,
        // may commit between the reads above and this transaction: extents
        // and size are compared again inside it, so a commit only ever
        // grows them.
        self.write_tx(|tx| {
            let blocks = tx.meta().blocks(ino)?;
            let size = tx.meta().inode(ino)?.1.in_size.get();
            for (bt, new_end) in &grown {
                let now = blocks.values().find(|b| b.btno == *bt);
                if now.is_some_and(|b| *new_end > b.data_end) {
                    let b = tx.take(*bt).blktag_mut();
                    b.bt_holeoff.set(*new_end as i32);
                    b.bt_holelen.set((BLOCK_SIZE - new_end) as i32);
                }
            }
            change_inode(tx, ino, size.max(pending.end), true)
        })
    }
}

/// How a write changes a file's extents ([`Mount::extends`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Extend {
    /// It writes inside the file and the blocks' written parts only.
    No,
    /// It grows the file, allocates a block or extends a block's written
    /// part, each block's part of it starting inside or right at the end
    /// of what the block has written: it zeroes nothing.
    Contiguous,
    /// It extends, and starts past the end of a block's written part: the
    /// gap in between is zeroed first.
    PastGap,
}

/// Written extents not yet committed: how far each block's written part
/// and the file reach after writes whose metadata is still pending.
#[derive(Debug, Default, Clone)]
pub(crate) struct Extents {
    /// Block tag → new end of its written part, in write order of blocks.
    pub(crate) blocks: std::collections::BTreeMap<ObjectId, u64>,
    /// End of the furthest write.
    pub(crate) end: u64,
}
