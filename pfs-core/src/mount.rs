//! Mounted filesystems: metadata in memory, kept in step with the journal.
//!
//! A read-only mount follows the writer: before each read-type operation it
//! re-reads the leader record and replays entries committed since its last
//! look. If the writer has checkpointed and reused journal space past what
//! this mount replayed, it reloads all metadata from the device instead of
//! failing (the reference exits the process there).

use crate::alloc::Allocator;
use crate::device::{AlignedBuf, Device};
use crate::error::{CoreError, Result};
use crate::hostlock::HostLock;
use crate::lease::Lease;
use crate::meta::{Journal, MetaImage};
use crate::ns::{Entry, FileBlock};
use crate::tx::Tx;
use parking_lot::RwLock;
use pfs_format::layout::LOG_ENTRY_SIZE;
use pfs_format::layout::{BLOCK_SIZE, SECTOR_SIZE};
use pfs_format::LeaderRecord;
use pfs_format::LogEntryPhy;
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;

/// How a filesystem is mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Follow the writer; never write to the device.
    ReadOnly,
    /// The single writer.
    ReadWrite,
}

/// Metadata as of some committed transaction.
pub(crate) struct State {
    pub(crate) meta: MetaImage,
    /// The leader record this state corresponds to (its head was replayed).
    pub(crate) leader: LeaderRecord,
    /// Device address of the leader record.
    pub(crate) leader_bda: u64,
    /// Journal blocks in file order.
    pub(crate) journal_blocks: Vec<u64>,
    /// Metaset sectors changed by committed transactions since the last
    /// checkpoint (device addresses).
    pub(crate) dirty: BTreeSet<u64>,
    /// Free-object index (read-write mounts).
    pub(crate) alloc: Option<Allocator>,
    /// Transactions committed since the last checkpoint.
    pub(crate) ntx: u64,
    /// Set after a failed write or flush, or when another writer was seen:
    /// no further writes until remounted.
    pub(crate) fenced: Option<String>,
}

/// How to mount, beyond the mode.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// Host id; 0 means the tool's default, the leader's `num_hosts`.
    pub hostid: u64,
    /// Take over an expired writer lease held by another mount (waiting
    /// for it to expire).
    pub force: bool,
    /// Host-lock file of the reference (`/var/run/pfs/<pbd>-paxos-hostid`);
    /// `None` skips the host-local lock.
    pub lock_path: Option<std::path::PathBuf>,
    /// Writer lease duration in milliseconds.
    pub lease_ms: u32,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            hostid: 0,
            force: false,
            lock_path: None,
            lease_ms: crate::lease::lease_ms_from_env(),
        }
    }
}

/// A mounted PFS.
pub struct Mount {
    dev: Arc<dyn Device>,
    mode: Mode,
    hostid: u64,
    pub(crate) state: RwLock<State>,
    /// The writer lease, taken at the first commit (so a read-write mount
    /// that changes nothing leaves the device untouched).
    lease: parking_lot::Mutex<Option<Arc<Lease>>>,
    lease_ms: u32,
    _lock: Option<HostLock>,
    /// Open handles per inode.
    open_files: parking_lot::Mutex<std::collections::HashMap<u64, usize>>,
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(l) = self.lease.lock().take() {
            l.release();
        }
    }
}

fn read_leader(dev: &dyn Device, bda: u64) -> Result<LeaderRecord> {
    let mut sect = AlignedBuf::new(SECTOR_SIZE as usize);
    dev.read_at(sect.as_mut_slice(), bda)?;
    LeaderRecord::decode(sect.as_slice()).map_err(|e| e.on_device(dev.name()).at_offset(bda).into())
}

/// Loads everything from the device: metasets, leader, committed journal.
pub(crate) fn load_state(dev: &dyn Device) -> Result<State> {
    let mut meta = MetaImage::load(dev)?;
    let journal = Journal::locate(dev, &meta)?;
    let entries = journal.committed(meta.nchunk)?;
    meta.apply(&entries);
    Ok(State {
        meta,
        leader: journal.leader,
        leader_bda: journal.leader_bda,
        dirty: entries
            .iter()
            .map(|c| c.entry.le_sector_bda.get())
            .collect(),
        journal_blocks: journal.blocks,
        alloc: None,
        ntx: 0,
        fenced: None,
    })
}

impl Mount {
    /// Mounts `dev`: loads every chunk's metasets, finds the leader record
    /// and replays the committed journal.
    pub fn open(dev: Arc<dyn Device>, mode: Mode) -> Result<Mount> {
        Mount::open_with(dev, mode, &MountOptions::default())
    }

    /// Mounts with options. A read-write mount takes the host-local lock
    /// (when a lock path is given) and the writer lease, then loads the
    /// metadata as of the latest commit.
    pub fn open_with(dev: Arc<dyn Device>, mode: Mode, opts: &MountOptions) -> Result<Mount> {
        let mut state = load_state(dev.as_ref())?;
        let hostid = pfs_paxos::HostId::resolve(opts.hostid, &state.leader)?.get();
        let mut lock = None;
        if mode == Mode::ReadWrite {
            if let Some(p) = &opts.lock_path {
                lock = Some(HostLock::acquire(p, hostid)?);
            }
            Lease::wait_free(dev.as_ref(), state.leader_bda, opts.force, opts.lease_ms)?;
            // Someone may have committed while we waited.
            let now = read_leader(dev.as_ref(), state.leader_bda)?;
            if now != state.leader {
                state = load_state(dev.as_ref())?;
            }
            state.alloc = Some(Allocator::build(&state.meta));
        }
        Ok(Mount {
            dev,
            mode,
            hostid,
            state: RwLock::new(state),
            lease: parking_lot::Mutex::new(None),
            lease_ms: opts.lease_ms,
            _lock: lock,
            open_files: parking_lot::Mutex::new(std::collections::HashMap::new()),
        })
        .and_then(|m| {
            if m.mode == Mode::ReadWrite {
                m.reclaim_orphans()?;
            }
            Ok(m)
        })
    }

    /// Adds `delta` to inode `ino`'s open count; returns the new count.
    pub(crate) fn open_count(&self, ino: u64, delta: i64) -> usize {
        let mut map = self.open_files.lock();
        let c = map.entry(ino).or_insert(0);
        *c = (*c as i64 + delta).max(0) as usize;
        let now = *c;
        if now == 0 {
            map.remove(&ino);
        }
        now
    }

    /// Whether inode `ino` has open handles.
    pub(crate) fn is_open(&self, ino: u64) -> bool {
        self.open_files.lock().contains_key(&ino)
    }

    /// The host id this mount uses.
    pub fn hostid(&self) -> u64 {
        self.hostid
    }

    /// The writer lease, once this mount has committed something.
    pub fn lease(&self) -> Option<Arc<Lease>> {
        self.lease.lock().clone()
    }

    /// The device.
    pub fn device(&self) -> &Arc<dyn Device> {
        &self.dev
    }

    /// How it is mounted.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The leader record as of the last replay.
    pub fn leader(&self) -> LeaderRecord {
        self.state.read().leader
    }

    /// Catches up with the writer (read-only mounts; a no-op for the writer,
    /// whose memory is always current).
    pub fn refresh(&self) -> Result<()> {
        if self.mode == Mode::ReadWrite {
            return Ok(());
        }
        let (bda, old) = {
            let st = self.state.read();
            (st.leader_bda, st.leader)
        };
        let new = read_leader(self.dev.as_ref(), bda)?;
        if new.head_txid.get() == old.head_txid.get() && new.head_lsn.get() == old.head_lsn.get() {
            return Ok(());
        }
        if new.tail_txid.get() > old.head_txid.get() || new.log_size != old.log_size {
            // Trimmed past what we replayed: the entries we miss are gone
            // from the journal but in the metasets now.
            return self.reload();
        }
        let mut st = self.state.write();
        // Entries (our head, new head]: a range starting where we stopped.
        let mut since = new;
        since.tail_txid = old.head_txid;
        since.tail_offset = old.head_offset;
        let log = Journal {
            dev: self.dev.as_ref(),
            leader: since,
            leader_bda: bda,
            blocks: st.journal_blocks.clone(),
        };
        let entries = match log.committed(st.meta.nchunk) {
            Ok(e) => e,
            Err(_) => {
                drop(st);
                return self.reload();
            }
        };
        // The writer may have reused the space while we read it.
        let check = read_leader(self.dev.as_ref(), bda)?;
        if check.tail_txid.get() > old.head_txid.get() {
            drop(st);
            return self.reload();
        }
        st.meta.apply(&entries);
        st.dirty
            .extend(entries.iter().map(|c| c.entry.le_sector_bda.get()));
        st.leader = new;
        Ok(())
    }

    /// Follows the writer in the background as well: every `interval` a
    /// thread catches this (read-only) mount up with the journal, so it
    /// stays current between operations. The thread ends when the mount is
    /// dropped.
    pub fn spawn_follower(
        self: &Arc<Self>,
        interval: std::time::Duration,
    ) -> std::thread::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        std::thread::spawn(move || loop {
            std::thread::sleep(interval);
            let Some(m) = weak.upgrade() else { return };
            // Errors are met again, and reported, by the next operation.
            let _ = m.refresh();
        })
    }

    /// Drops all in-memory metadata and loads it again from the device.
    pub fn reload(&self) -> Result<()> {
        let mut fresh = load_state(self.dev.as_ref())?;
        if self.mode == Mode::ReadWrite {
            fresh.alloc = Some(Allocator::build(&fresh.meta));
        }
        *self.state.write() = fresh;
        Ok(())
    }

    /// Runs `f` on the current metadata, after catching up with the writer.
    pub fn with_meta<R>(&self, f: impl FnOnce(&MetaImage) -> R) -> Result<R> {
        self.refresh()?;
        Ok(f(&self.state.read().meta))
    }
}

/// What `stat` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Inode number.
    pub ino: u64,
    /// Whether it is a directory.
    pub is_dir: bool,
    /// Size in bytes (directories: 128 per entry).
    pub size: u64,
    /// Blocks owned.
    pub nblock: u64,
    /// Link count.
    pub nlink: u64,
    /// `in_atime` (a change counter, not an access time).
    pub atime: u64,
    /// Modification time, seconds.
    pub mtime: u64,
    /// Change time, seconds.
    pub ctime: u64,
    /// Birth time, microseconds.
    pub btime: u64,
}

/// Disk usage counts whole blocks above this many blocks (`du_nblk_limit`).
const DU_NBLK_LIMIT: u64 = 1;
/// Small files' usage is rounded up to this unit.
const DU_ROUND: u64 = 128 << 10;

impl Mount {
    /// Resolves path components (with `.` and `..`) to an inode; with
    /// `must_be_dir` the target must be a directory.
    pub fn resolve(&self, components: &[String], must_be_dir: bool, shown: &str) -> Result<u64> {
        self.refresh()?;
        let st = self.state.read();
        let meta = &st.meta;
        let mut stack: Vec<u64> = vec![pfs_format::layout::ROOT_INO];
        for c in components {
            let cur = *stack.last().unwrap_or(&pfs_format::layout::ROOT_INO);
            if !meta.inode(cur)?.1.is_dir() {
                return Err(CoreError::NotDir {
                    path: shown.to_owned(),
                });
            }
            match c.as_str() {
                "." => {}
                ".." => {
                    if stack.len() > 1 {
                        stack.pop();
                    }
                }
                name => {
                    let e =
                        meta.find(cur, name.as_bytes())?
                            .ok_or_else(|| CoreError::NotFound {
                                path: shown.to_owned(),
                            })?;
                    stack.push(e.ino);
                }
            }
        }
        let ino = *stack.last().unwrap_or(&pfs_format::layout::ROOT_INO);
        if must_be_dir && !meta.inode(ino)?.1.is_dir() {
            return Err(CoreError::NotDir {
                path: shown.to_owned(),
            });
        }
        Ok(ino)
    }

    /// Attributes of inode `ino`.
    pub fn stat(&self, ino: u64) -> Result<Stat> {
        self.refresh()?;
        let st = self.state.read();
        let (_, i) = st.meta.inode(ino)?;
        st.meta.check_attrs(ino, i)?;
        Ok(Stat {
            ino,
            is_dir: i.is_dir(),
            size: i.in_size.get(),
            nblock: i.in_nblock.get(),
            nlink: i.in_nlink.get(),
            atime: i.in_atime.get(),
            mtime: i.in_mtime.get(),
            ctime: i.in_ctime.get(),
            btime: i.in_btime.get(),
        })
    }

    /// Entries of directory `ino` in the order they were added.
    pub fn read_dir(&self, ino: u64) -> Result<Vec<Entry>> {
        self.refresh()?;
        self.state.read().meta.read_dir(ino)
    }

    /// Blocks of file `ino` by index inside the file.
    pub fn blocks(&self, ino: u64) -> Result<BTreeMap<u64, FileBlock>> {
        self.refresh()?;
        self.state.read().meta.blocks(ino)
    }

    /// Reads file `ino` at `off` into `buf`; returns the bytes read (short
    /// at end of file). Unallocated ranges and bytes past a block's written
    /// part read as zeros.
    pub fn read(&self, ino: u64, off: u64, buf: &mut [u8]) -> Result<usize> {
        self.refresh()?;
        let (size, blocks) = {
            let st = self.state.read();
            let (_, i) = st.meta.inode(ino)?;
            st.meta.check_attrs(ino, i)?;
            if i.is_dir() {
                return Err(CoreError::IsDir {
                    path: format!("inode {ino}"),
                });
            }
            (i.in_size.get(), st.meta.blocks(ino)?)
        };
        if off >= size {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(size - off) as usize;
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

    /// Writes every metaset sector changed since the last checkpoint to its
    /// home, flushes, then advances the leader's tail to its head and
    /// flushes again. Nothing is written when the journal holds nothing to
    /// apply. Read-only mounts refuse.
    pub fn checkpoint(&self) -> Result<()> {
        if self.mode != Mode::ReadWrite {
            return Err(CoreError::ReadOnly);
        }
        let mut guard = self.state.write();
        let st = &mut *guard;
        if let Some(why) = &st.fenced {
            return Err(CoreError::Fenced {
                reason: why.clone(),
            });
        }
        let r = checkpoint_sectors(
            self.dev.as_ref(),
            &st.meta,
            &mut st.leader,
            st.leader_bda,
            &mut st.dirty,
        );
        if r.is_ok() {
            st.ntx = 0;
        } else {
            st.fenced = Some("a checkpoint write or flush failed".into());
        }
        r
    }

    /// Runs `f` as one transaction and commits it: log entries appended at
    /// the journal head and flushed, then the leader record rewritten and
    /// flushed. Only then is the change applied in memory and committed.
    /// If `f` fails nothing is written and nothing changes.
    pub(crate) fn write_tx<R>(&self, f: impl FnOnce(&mut Tx<'_>) -> Result<R>) -> Result<R> {
        if self.mode != Mode::ReadWrite {
            return Err(CoreError::ReadOnly);
        }
        let dev = self.dev.as_ref();
        let mut guard = self.state.write();
        let State {
            meta,
            leader,
            leader_bda,
            journal_blocks,
            dirty,
            alloc,
            ntx,
            fenced,
        } = &mut *guard;
        if let Some(why) = fenced {
            return Err(CoreError::Fenced {
                reason: why.clone(),
            });
        }
        let alloc = alloc.as_mut().ok_or(CoreError::ReadOnly)?;
        let mut tx = Tx::new(meta, alloc);
        let r = f(&mut tx)?;
        let objs = tx.entries();
        if objs.is_empty() {
            return Ok(r);
        }
        let need = objs.len() as u64 * LOG_ENTRY_SIZE as u64;
        let size = leader.log_size.get();
        if need >= size {
            return Err(CoreError::TxTooLarge {
                need,
                log_size: size,
            });
        }
        let used = (leader.head_offset.get() + size - leader.tail_offset.get()) % size;
        if need >= size - used {
            if let Err(e) = checkpoint_sectors(dev, meta, leader, *leader_bda, dirty) {
                *fenced = Some("a checkpoint write or flush failed".into());
                return Err(e);
            }
            *ntx = 0;
        }
        // We must still hold the lease, and no other writer may have moved
        // the head under us.
        {
            let mut held = self.lease.lock();
            match held.as_ref() {
                Some(l) => {
                    if let Err(e) = l.check() {
                        *fenced = Some(e.to_string());
                        return Err(e);
                    }
                }
                None => {
                    let l = Lease::acquire(
                        Arc::clone(&self.dev),
                        *leader_bda,
                        self.hostid as u32,
                        self.lease_ms,
                    )?;
                    *held = Some(l);
                }
            }
        }
        let ondisk = read_leader(dev, *leader_bda)?;
        let head = |l: &LeaderRecord| (l.head_txid.get(), l.head_offset.get(), l.head_lsn.get());
        if head(&ondisk) != head(leader) {
            let why = format!(
                "another writer committed to the journal (head txid {} on disk, {} here)",
                ondisk.head_txid.get(),
                leader.head_txid.get()
            );
            *fenced = Some(why.clone());
            return Err(CoreError::Fenced { reason: why });
        }
        let new_leader = match append(dev, journal_blocks, *leader_bda, leader, &objs) {
            Ok(l) => l,
            Err(e) => {
                *fenced = Some("a journal write or flush failed".into());
                return Err(e);
            }
        };
        tx.finish();
        for (id, mo) in &objs {
            meta.set(*id, *mo);
            dirty.insert(id.sector_bda());
        }
        *leader = new_leader;
        *ntx += 1;
        if *ntx >= CHECKPOINT_NTX || dirty.len() as u64 >= CHECKPOINT_NSECT {
            if let Err(e) = checkpoint_sectors(dev, meta, leader, *leader_bda, dirty) {
                *fenced = Some("a checkpoint write or flush failed".into());
                return Err(e);
            }
            *ntx = 0;
        }
        Ok(r)
    }
}

/// Checkpoint after this many transactions (`trimgroup_ntx_threshold`).
const CHECKPOINT_NTX: u64 = 20_000;
/// Checkpoint after this many dirty sectors (`trimgroup_nsect_threshold`).
const CHECKPOINT_NSECT: u64 = 32_768;

/// Writes the dirty sectors home, flushes, advances the tail, flushes.
fn checkpoint_sectors(
    dev: &dyn Device,
    meta: &MetaImage,
    leader: &mut LeaderRecord,
    leader_bda: u64,
    dirty: &mut BTreeSet<u64>,
) -> Result<()> {
    if leader.tail_txid == leader.head_txid && dirty.is_empty() {
        return Ok(());
    }
    let mut sect = AlignedBuf::new(SECTOR_SIZE as usize);
    for &bda in dirty.iter() {
        let objs = meta.sector_objects(bda)?;
        sect.as_mut_slice()
            .copy_from_slice(&pfs_format::metaset::encode_sector(&objs));
        dev.write_at(sect.as_slice(), bda)?;
    }
    dev.sync()?;
    let mut lr = *leader;
    lr.tail_txid = lr.head_txid;
    lr.tail_offset = lr.head_offset;
    lr.seal();
    write_leader(dev, leader_bda, &lr)?;
    dev.sync()?;
    *leader = lr;
    dirty.clear();
    Ok(())
}

/// Appends one transaction's entries at the journal head (wrapping at the
/// end), flushes, writes the advanced leader record, flushes. Returns the
/// new leader record.
fn append(
    dev: &dyn Device,
    journal_blocks: &[u64],
    leader_bda: u64,
    leader: &LeaderRecord,
    objs: &[(pfs_format::ObjectId, pfs_format::MetaObjPhy)],
) -> Result<LeaderRecord> {
    let txid = leader.head_txid.get() + 1;
    let lsn0 = leader.head_lsn.get();
    let size = leader.log_size.get();
    let mut bytes = Vec::with_capacity(objs.len() * LOG_ENTRY_SIZE);
    for (k, (id, mo)) in objs.iter().enumerate() {
        let le = LogEntryPhy::new(
            *mo,
            *id,
            txid as i64,
            (lsn0 + k as u64 + 1) as i64,
            k + 1 < objs.len(),
        );
        bytes.extend_from_slice(&le.to_bytes());
    }
    let head = leader.head_offset.get();
    let first = ((size - head) as usize).min(bytes.len());
    write_log(dev, journal_blocks, head, &bytes[..first])?;
    if first < bytes.len() {
        write_log(dev, journal_blocks, 0, &bytes[first..])?;
    }
    dev.sync()?;
    let mut lr = *leader;
    lr.head_txid.set(txid);
    lr.head_lsn.set(lsn0 + objs.len() as u64);
    lr.head_offset.set((head + bytes.len() as u64) % size);
    lr.seal();
    write_leader(dev, leader_bda, &lr)?;
    dev.sync()?;
    Ok(lr)
}

/// Writes journal bytes at journal offset `offset` (not across the end).
fn write_log(dev: &dyn Device, blocks: &[u64], offset: u64, bytes: &[u8]) -> Result<()> {
    let mut done = 0usize;
    while done < bytes.len() {
        let pos = offset + done as u64;
        let blk = blocks
            .get((pos / BLOCK_SIZE) as usize)
            .copied()
            .ok_or_else(|| {
                CoreError::InvalidArgument(format!("journal offset {pos:#x} is past the journal"))
            })?;
        let in_blk = pos % BLOCK_SIZE;
        let n = (bytes.len() - done).min((BLOCK_SIZE - in_blk) as usize);
        dev.write_at(&bytes[done..done + n], blk * BLOCK_SIZE + in_blk)?;
        done += n;
    }
    Ok(())
}

/// Writes the leader record's sector (the record, then zeros).
pub(crate) fn write_leader(dev: &dyn Device, bda: u64, lr: &LeaderRecord) -> Result<()> {
    let mut sect = AlignedBuf::new(SECTOR_SIZE as usize);
    let bytes = lr.to_bytes();
    sect.as_mut_slice()[..bytes.len()].copy_from_slice(&bytes);
    dev.write_at(sect.as_slice(), bda)
}
