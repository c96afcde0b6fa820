//! Every chunk header and meta object of a device, read and validated, with
//! the journal's committed entries applied on request.
//!
//! The objects are held compactly ([`ObjSet`]): a free object exactly as
//! mkfs writes it is recognised when it is read and not held, so a large
//! device that is mostly free costs little memory; every object still
//! reads back as it is on the device.

use crate::device::{AlignedBuf, Device};
use crate::error::{CoreError, Result};
use crate::objset::{ObjSet, Pristine};
use pfs_format::layout::{
    BLOCK_SIZE, CHUNK_SIZE, JOURNAL_FILE_INO, META_END_OFFSET, OBJS_PER_SECTOR, OBJ_SIZE,
    PAXOS_FILE_INO, SECTOR_SIZE,
};
use pfs_format::{
    ChunkPhy, CorruptKind, Expected, FormatError, LeaderRecord, Location, MetaObjPhy, MetaType,
    ObjectId,
};
use pfs_journal::{Committed, LogStore};

/// The metadata of a whole device.
pub struct MetaImage {
    /// Chunks on the device (chunk 0's `ck_nchunk`).
    pub nchunk: u32,
    /// Chunk headers, by chunk.
    pub chunks: Vec<ChunkPhy>,
    /// Objects by chunk, then type (block tags, direntries, inodes).
    sets: Vec<[ObjSet; 3]>,
    /// Per-directory name index, kept in step by [`MetaImage::set`].
    pub(crate) names: parking_lot::Mutex<crate::names::NameIndex>,
    /// Name of the device the metadata was read from.
    device: String,
}

fn type_index(t: MetaType) -> usize {
    usize::from(t.raw()) - 1
}

/// Reads and validates chunk 0's header; a device without one is
/// [`CoreError::NotFormatted`].
pub fn read_chunk0(dev: &dyn Device) -> Result<ChunkPhy> {
    let mut sect = AlignedBuf::new(SECTOR_SIZE as usize);
    if dev.len() < SECTOR_SIZE {
        return Err(CoreError::NotFormatted {
            device: dev.name().to_owned(),
            reason: FormatError::Short {
                what: "chunk header",
                need: SECTOR_SIZE as usize,
                got: dev.len() as usize,
            },
        });
    }
    dev.read_at(sect.as_mut_slice(), 0)?;
    ChunkPhy::decode(sect.as_slice(), 0).map_err(|e| CoreError::NotFormatted {
        device: dev.name().to_owned(),
        reason: e.on_device(dev.name()),
    })
}

impl MetaImage {
    /// Loads every chunk's header and metasets as they are on the device
    /// (without the journal). Every header and object is validated.
    pub fn load(dev: &dyn Device) -> Result<MetaImage> {
        MetaImage::load_with(dev, None)
    }

    /// Loads like [`MetaImage::load`], but a meta object that fails
    /// validation (checksum, number, type) does not stop the load: it is
    /// described in the returned list and read as its raw bytes when they
    /// still name the right object, as a free object otherwise. For
    /// checkers that report every problem; chunk headers must be valid.
    pub fn load_lenient(dev: &dyn Device) -> Result<(MetaImage, Vec<String>)> {
        let mut problems = Vec::new();
        let meta = MetaImage::load_with(dev, Some(&mut problems))?;
        Ok((meta, problems))
    }

    fn load_with(dev: &dyn Device, mut lenient: Option<&mut Vec<String>>) -> Result<MetaImage> {
        let name = dev.name();
        let ck0 = read_chunk0(dev)?;
        let nchunk = ck0.ck_nchunk.get();
        if u64::from(nchunk) * CHUNK_SIZE > dev.len() {
            return Err(FormatError::Corrupt {
                kind: CorruptKind::ChunkCount,
                at: Box::new(Location::chunk(0)),
                expected: Expected::Within(1, dev.len() / CHUNK_SIZE),
                found: u64::from(nchunk),
            }
            .on_device(name)
            .into());
        }
        // Large devices are read by a few threads, each a run of chunks;
        // the runs are joined in order, so the first error (and every
        // problem, in order) is the one a single reader would meet.
        let threads = if nchunk >= PARALLEL_FROM {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(MAX_THREADS)
        } else {
            1
        };
        let per = nchunk.div_ceil(threads as u32).max(1);
        let runs: Vec<std::ops::Range<u32>> = (0..nchunk)
            .step_by(per as usize)
            .map(|b| b..b.saturating_add(per).min(nchunk))
            .collect();
        let want_problems = lenient.is_some();
        let loaded: Vec<Result<Loaded>> = if runs.len() > 1 {
            std::thread::scope(|s| {
                let handles: Vec<_> = runs
                    .into_iter()
                    .map(|r| {
                        let run = r.clone();
                        let h = crate::threads::spawn_scoped_quiet(s, "pfs-meta-load", move || {
                            load_chunks(dev, run, want_problems)
                        });
                        (r, h)
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|(r, h)| match h {
                        Some(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                        // No thread to be had: read this run here.
                        None => load_chunks(dev, r, want_problems),
                    })
                    .collect()
            })
        } else {
            runs.into_iter()
                .map(|r| load_chunks(dev, r, want_problems))
                .collect()
        };
        let mut chunks = Vec::with_capacity(nchunk as usize);
        let mut sets = Vec::with_capacity(nchunk as usize);
        for run in loaded {
            let run = run?;
            chunks.extend(run.chunks);
            sets.extend(run.sets);
            if let Some(p) = lenient.as_deref_mut() {
                p.extend(run.problems);
            }
        }
        Ok(MetaImage {
            nchunk,
            chunks,
            sets,
            names: Default::default(),
            device: name.to_owned(),
        })
    }

    /// An image of `nchunk` chunks made of its parts (a copy's, see
    /// [`crate::metacache`]).
    pub(crate) fn from_parts(
        nchunk: u32,
        chunks: Vec<ChunkPhy>,
        sets: Vec<[ObjSet; 3]>,
        device: &str,
    ) -> MetaImage {
        MetaImage {
            nchunk,
            chunks,
            sets,
            names: Default::default(),
            device: device.to_owned(),
        }
    }

    /// The objects of type `t` in `chunk`.
    pub(crate) fn set_of(&self, chunk: u32, t: MetaType) -> &ObjSet {
        &self.sets[chunk as usize][type_index(t)]
    }

    /// An image of no chunks, standing in for one that was moved out.
    pub(crate) fn hollow(device: &str) -> MetaImage {
        MetaImage {
            nchunk: 0,
            chunks: Vec::new(),
            sets: Vec::new(),
            names: Default::default(),
            device: device.to_owned(),
        }
    }

    /// Name of the device the metadata was read from.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// A [`CoreError::Corrupt`] about object `number` of type `t`.
    pub fn corrupt(&self, t: MetaType, number: u64, problem: impl Into<String>) -> CoreError {
        CoreError::Corrupt {
            device: self.device.clone(),
            object: t,
            number,
            problem: problem.into(),
        }
    }

    /// The object `id`.
    pub fn get(&self, id: ObjectId) -> MetaObjPhy {
        self.sets[id.chunk as usize][type_index(id.mtype)].get(id)
    }

    /// The object of type `t` numbered `number`, checked against the device.
    pub fn lookup(&self, t: MetaType, number: u64) -> Result<(ObjectId, MetaObjPhy)> {
        let id = ObjectId::from_number(t, number, self.nchunk)?;
        Ok((id, self.get(id)))
    }

    /// Replaces object `id` (and notes the change for the name index).
    pub fn set(&mut self, id: ObjectId, mo: MetaObjPhy) {
        let old = self.sets[id.chunk as usize][type_index(id.mtype)].set(id, mo);
        self.names.get_mut().note(id, &old, &mo);
    }

    /// Objects of type `t` in `chunk`, by oid (made for the call: a whole
    /// metaset is not held in this form).
    pub fn objects(&self, chunk: u32, t: MetaType) -> Vec<MetaObjPhy> {
        let set = &self.sets[chunk as usize][type_index(t)];
        let free = Pristine::get();
        let mut out: Vec<MetaObjPhy> = (0..t.per_chunk())
            .map(|oid| {
                free.object(ObjectId {
                    mtype: t,
                    chunk,
                    oid,
                })
            })
            .collect();
        for (oid, mo) in set.kept() {
            out[oid as usize] = *mo;
        }
        out
    }

    /// The objects of type `t` in `chunk` that are not the free object
    /// mkfs writes, by oid (ascending); every other oid holds that (free)
    /// object.
    pub fn changed_objects(
        &self,
        chunk: u32,
        t: MetaType,
    ) -> impl Iterator<Item = (u32, &MetaObjPhy)> {
        self.sets[chunk as usize][type_index(t)].kept()
    }

    /// (free, used) counts of type `t` over the device.
    pub fn counts(&self, t: MetaType) -> (u64, u64) {
        let used: u64 = self
            .sets
            .iter()
            .map(|s| u64::from(s[type_index(t)].used()))
            .sum();
        let all = u64::from(self.nchunk) * u64::from(t.per_chunk());
        (all - used, used)
    }

    /// Device block numbers of inode `ino`'s blocks in file order (block
    /// index `bt_blkid` = position), following the inode's block-tag chain.
    pub fn file_blocks(&self, ino: u64) -> Result<Vec<u64>> {
        let (_, inode) = self.lookup(MetaType::Inode, ino)?;
        let mut blocks: Vec<(i64, u64)> = Vec::new();
        for r in self.blktag_chain(ino, inode.mo_next.get()) {
            let (id, bt) = r?;
            let tag = bt.blktag();
            if !bt.is_used() || tag.bt_ino.get() != ino as i64 {
                return Err(FormatError::Corrupt {
                    kind: CorruptKind::DanglingObject,
                    at: Box::new(Location::object(MetaType::BlkTag, id.number())),
                    expected: Expected::Value(ino),
                    found: tag.bt_ino.get() as u64,
                }
                .into());
            }
            blocks.push((tag.bt_blkid.get(), id.block_number().unwrap_or(0)));
        }
        blocks.sort_unstable();
        Ok(blocks.into_iter().map(|(_, b)| b).collect())
    }

    /// The 32 objects of the metaset sector at device address `bda`.
    pub fn sector_objects(&self, bda: u64) -> Result<pfs_format::metaset::MetaSector> {
        let chunk = bda / CHUNK_SIZE;
        let in_chunk = bda % CHUNK_SIZE;
        let t = MetaType::ALL
            .into_iter()
            .find(|t| {
                let start = t.set_offset();
                (start..start + u64::from(t.nsect()) * SECTOR_SIZE).contains(&in_chunk)
            })
            .filter(|_| chunk < u64::from(self.nchunk) && in_chunk % SECTOR_SIZE == 0)
            .ok_or_else(|| {
                CoreError::InvalidArgument(format!("{bda:#x} is not a metaset sector address"))
            })?;
        let first = ((in_chunk - t.set_offset()) / SECTOR_SIZE) as u32 * OBJS_PER_SECTOR;
        let id = |i: u32| ObjectId {
            mtype: t,
            chunk: chunk as u32,
            oid: first + i,
        };
        let mut out = [self.get(id(0)); OBJS_PER_SECTOR as usize];
        for (i, slot) in (0u32..).zip(out.iter_mut()).skip(1) {
            *slot = self.get(id(i));
        }
        Ok(out)
    }

    /// Applies committed journal entries in order.
    pub fn apply(&mut self, entries: &[Committed]) {
        for c in entries {
            self.set(c.id, c.entry.le_obj_val);
        }
    }
}

/// Chunks from at least this many on are read by several threads.
const PARALLEL_FROM: u32 = 64;
/// Most threads reading one device's metadata.
const MAX_THREADS: usize = 4;

/// The headers and metasets of a run of chunks.
struct Loaded {
    chunks: Vec<ChunkPhy>,
    sets: Vec<[ObjSet; 3]>,
    /// What a lenient load found wrong, in order.
    problems: Vec<String>,
}

/// Reads and validates the chunks `range` of `dev`; with `lenient`, a bad
/// object is recorded in the problems instead of ending the load.
fn load_chunks(dev: &dyn Device, range: std::ops::Range<u32>, lenient: bool) -> Result<Loaded> {
    let name = dev.name();
    let mut out = Loaded {
        chunks: Vec::with_capacity(range.len()),
        sets: Vec::with_capacity(range.len()),
        problems: Vec::new(),
    };
    let mut buf = AlignedBuf::new(META_END_OFFSET as usize);
    let pristine = Pristine::get();
    for chunk in range {
        let base = u64::from(chunk) * CHUNK_SIZE;
        dev.read_at(buf.as_mut_slice(), base)?;
        let bytes = buf.as_slice();
        let ck = ChunkPhy::decode(bytes, u64::from(chunk)).map_err(|e| e.on_device(name))?;
        let mut per_type: [ObjSet; 3] = Default::default();
        for t in MetaType::ALL {
            let set = &mut per_type[type_index(t)];
            let free = pristine.metaset(t, chunk);
            let start = t.set_offset() as usize;
            let end = start + t.per_chunk() as usize * OBJ_SIZE;
            for (oid, raw) in (0u32..).zip(bytes[start..end].chunks_exact(OBJ_SIZE)) {
                if free.matches(raw, oid) {
                    continue;
                }
                let id = ObjectId::new(t, chunk, oid)?;
                let mo = match MetaObjPhy::decode(raw, id) {
                    Ok(mo) => mo,
                    Err(e) if !lenient => return Err(e.on_device(name).into()),
                    Err(_) => lenient_object(raw, id, name, &mut out.problems),
                };
                set.load(oid, mo);
            }
        }
        out.chunks.push(ck);
        out.sets.push(per_type);
    }
    Ok(out)
}

/// Object `id` from its bytes, any failure recorded in `problems`.
fn lenient_object(
    bytes: &[u8],
    id: ObjectId,
    device: &str,
    problems: &mut Vec<String>,
) -> MetaObjPhy {
    match MetaObjPhy::decode(bytes, id) {
        Ok(mo) => mo,
        Err(e) => {
            problems.push(e.on_device(device).to_string());
            MetaObjPhy::from_bytes(bytes)
                .ok()
                .filter(|mo| {
                    mo.mo_number.get() == id.number()
                        && mo.mo_type == id.mtype.raw()
                        && mo.mo_used <= 1
                })
                .unwrap_or_else(|| MetaObjPhy::new_free(id))
        }
    }
}

/// `.pfs-journal` and the leader record of a device.
pub struct Journal<'a> {
    /// The device holding it.
    pub dev: &'a dyn Device,
    /// The leader record.
    pub leader: LeaderRecord,
    /// Device address of the leader record (first sector of `.pfs-paxos`).
    pub leader_bda: u64,
    /// Device blocks of the journal file, in file order.
    pub blocks: Vec<u64>,
}

impl<'a> Journal<'a> {
    /// Finds the leader record (first sector of `.pfs-paxos`) and the
    /// journal's blocks through the metasets.
    pub fn locate(dev: &'a dyn Device, meta: &MetaImage) -> Result<Journal<'a>> {
        let paxos = meta.file_blocks(PAXOS_FILE_INO)?;
        let first = *paxos.first().ok_or_else(|| FormatError::Corrupt {
            kind: CorruptKind::DanglingObject,
            at: Box::new(Location::object(MetaType::Inode, PAXOS_FILE_INO)),
            expected: Expected::Desc("a .pfs-paxos file with a block"),
            found: 0,
        })?;
        let mut sect = AlignedBuf::new(SECTOR_SIZE as usize);
        dev.read_at(sect.as_mut_slice(), first * BLOCK_SIZE)?;
        let leader = LeaderRecord::decode(sect.as_slice())
            .map_err(|e| e.on_device(dev.name()).at_offset(first * BLOCK_SIZE))?;
        let blocks = meta.file_blocks(JOURNAL_FILE_INO)?;
        if (blocks.len() as u64) * BLOCK_SIZE < leader.log_size.get() {
            return Err(FormatError::Corrupt {
                kind: CorruptKind::LeaderLogSize,
                at: Box::new(Location::structure("leader record")),
                expected: Expected::Within(
                    pfs_format::layout::MIN_LOG_SIZE,
                    blocks.len() as u64 * BLOCK_SIZE,
                ),
                found: leader.log_size.get(),
            }
            .on_device(dev.name())
            .into());
        }
        Ok(Journal {
            dev,
            leader,
            leader_bda: first * BLOCK_SIZE,
            blocks,
        })
    }

    /// The journal's storage on the device.
    pub fn store(&self) -> DeviceLog<'_> {
        DeviceLog {
            dev: self.dev,
            blocks: &self.blocks,
            leader_bda: self.leader_bda,
        }
    }

    /// Reads raw journal bytes at `offset` (may span blocks, not the end).
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.store().read_log(offset, buf)
    }

    /// The committed entries `(tail, head]`, checked.
    pub fn committed(&self, nchunk: u32) -> Result<Vec<Committed>> {
        pfs_journal::committed_entries(&self.store(), &self.leader, nchunk)
    }
}

/// `.pfs-journal` and the leader record on a device: the journal's
/// [`LogStore`].
#[derive(Clone, Copy)]
pub struct DeviceLog<'a> {
    /// The device.
    pub dev: &'a dyn Device,
    /// Device blocks of the journal file, in file order.
    pub blocks: &'a [u64],
    /// Device address of the leader record.
    pub leader_bda: u64,
}

impl DeviceLog<'_> {
    /// Calls `f` with each device address and length that journal bytes
    /// `[offset, offset + len)` occupy.
    pub(crate) fn each_piece(
        &self,
        offset: u64,
        len: usize,
        mut f: impl FnMut(u64, std::ops::Range<usize>) -> Result<()>,
    ) -> Result<()> {
        let mut done = 0usize;
        while done < len {
            let pos = offset + done as u64;
            let blk = self
                .blocks
                .get((pos / BLOCK_SIZE) as usize)
                .ok_or_else(|| {
                    CoreError::InvalidArgument(format!(
                        "journal offset {pos:#x} is past the journal"
                    ))
                })?;
            let in_blk = pos % BLOCK_SIZE;
            let n = (len - done).min((BLOCK_SIZE - in_blk) as usize);
            f(blk * BLOCK_SIZE + in_blk, done..done + n)?;
            done += n;
        }
        Ok(())
    }
}

impl LogStore for DeviceLog<'_> {
    type Error = CoreError;

    fn read_log(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.each_piece(offset, buf.len(), |bda, r| {
            self.dev.read_at(&mut buf[r], bda)
        })
    }

    fn write_log(&self, offset: u64, bytes: &[u8]) -> Result<()> {
        self.each_piece(offset, bytes.len(), |bda, r| {
            self.dev.write_at(&bytes[r], bda)
        })
    }

    fn read_leader(&self) -> Result<LeaderRecord> {
        let mut sect = AlignedBuf::new(SECTOR_SIZE as usize);
        self.dev.read_at(sect.as_mut_slice(), self.leader_bda)?;
        LeaderRecord::decode(sect.as_slice()).map_err(|e| {
            e.on_device(self.dev.name())
                .at_offset(self.leader_bda)
                .into()
        })
    }

    fn write_leader(&self, lr: &LeaderRecord) -> Result<()> {
        let mut sect = AlignedBuf::new(SECTOR_SIZE as usize);
        let bytes = lr.to_bytes();
        sect.as_mut_slice()[..bytes.len()].copy_from_slice(&bytes);
        self.dev.write_at(sect.as_slice(), self.leader_bda)
    }

    fn flush(&self) -> Result<()> {
        self.dev.sync()
    }
}

/// Loads the metadata as a mounted reader sees it: metasets plus the
/// committed journal.
pub fn load_replayed(dev: &dyn Device) -> Result<(MetaImage, LeaderRecord)> {
    let r = Replayed::load(dev)?;
    Ok((r.meta, r.journal.leader))
}

/// Metadata with the committed journal applied, and what a mount needs to
/// go on from there.
pub(crate) struct Replayed<'a> {
    /// Metasets plus the journal's committed entries.
    pub(crate) meta: MetaImage,
    /// The journal the entries came from.
    pub(crate) journal: Journal<'a>,
    /// Metaset sectors the applied entries changed (device addresses).
    pub(crate) dirty: std::collections::BTreeSet<u64>,
}

impl<'a> Replayed<'a> {
    /// Loads every metaset of `dev` and applies the committed journal, as
    /// of one committed state even while a writer works: a checkpoint that
    /// runs while the metasets are read rewrites some of them and moves the
    /// journal's tail, so the journal no longer holds what the older
    /// sectors miss; the load is then made again.
    pub(crate) fn load(dev: &'a dyn Device) -> Result<Replayed<'a>> {
        // `.pfs-paxos` starts at block 1 on every device mkfs made; the
        // metasets confirm it (or correct it) below.
        let mut leader_bda = BLOCK_SIZE;
        for _ in 0..LOAD_ATTEMPTS {
            let log = |bda| DeviceLog {
                dev,
                blocks: &[],
                leader_bda: bda,
            };
            let before = log(leader_bda).read_leader().ok();
            // This machine's copy of the metasets, when it stands for
            // them; otherwise they are read, and a copy is made.
            let cached = before.as_ref().and_then(|l| crate::metacache::load(dev, l));
            let (mut meta, copy) = match cached {
                Some(meta) => (meta, None),
                None => {
                    let meta = MetaImage::load(dev)?;
                    let copy = before
                        .as_ref()
                        .and_then(|l| crate::metacache::prepare(dev, &meta, l));
                    (meta, copy)
                }
            };
            let journal = Journal::locate(dev, &meta)?;
            leader_bda = journal.leader_bda;
            let tail = journal.leader.tail_txid.get();
            if before.map(|l| l.tail_txid.get()) != Some(tail) {
                continue;
            }
            let entries = journal.committed(meta.nchunk);
            // The entries read are the committed ones only if no checkpoint
            // let the writer reuse their space meanwhile.
            // A record torn by a concurrent rewrite is read again with
            // the next attempt.
            let after = match log(leader_bda).read_leader() {
                Ok(l) => l,
                Err(CoreError::Format(_)) => continue,
                Err(e) => return Err(e),
            };
            if after.tail_txid.get() != tail {
                continue;
            }
            let entries = entries?;
            if let Some(copy) = copy {
                crate::metacache::store(dev, &copy);
            }
            meta.apply(&entries);
            let dirty = entries
                .iter()
                .map(|c| c.entry.le_sector_bda.get())
                .collect();
            return Ok(Replayed {
                meta,
                journal,
                dirty,
            });
        }
        Err(CoreError::Busy {
            what: format!(
                "device {}: the writer checkpointed during each of {LOAD_ATTEMPTS} attempts to load the metadata",
                dev.name()
            ),
        })
    }
}

/// How often a load is tried while checkpoints keep changing the metasets.
const LOAD_ATTEMPTS: usize = 8;

const _: () = assert!(OBJS_PER_SECTOR == 32);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MemDevice;
    use crate::mkfs::{mkfs, MkfsOptions};
    use crate::mount::{Mode, Mount, MountOptions};
    use crate::namespace::FileType;
    use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
    use pfs_format::layout::{MIN_LOG_SIZE, ROOT_INO};
    use pfs_format::metaset::encode_sector;
    use std::sync::Arc;

    /// A 3-chunk device with files made, written and removed, checkpointed
    /// so the metasets on the device hold used objects and freed ones.
    fn used_device() -> Arc<MemDevice> {
        let dev = Arc::new(MemDevice::new("mem", 3 * CHUNK_SIZE));
        let opts = MkfsOptions {
            log_size: MIN_LOG_SIZE,
            ..MkfsOptions::default()
        };
        mkfs(dev.as_ref(), &opts).unwrap();
        let m = Mount::open_with(
            dev.clone(),
            Mode::ReadWrite,
            &MountOptions {
                hostid: 1,
                ..MountOptions::default()
            },
        )
        .unwrap();
        let d = m.create(ROOT_INO, b"d", FileType::Dir).unwrap();
        for i in 0..20 {
            let name = format!("a rather long name, past one direntry's 64 bytes, number {i}");
            let f = m.create(d, name.as_bytes(), FileType::File).unwrap();
            m.write_at(f, &[i as u8; 5000], (i as u64) << 22).unwrap();
        }
        for i in (0..20).step_by(3) {
            let name = format!("a rather long name, past one direntry's 64 bytes, number {i}");
            m.unlink(d, name.as_bytes()).unwrap();
        }
        m.checkpoint().unwrap();
        m.unmount().unwrap();
        dev
    }

    #[test]
    fn every_object_reads_back_as_on_the_device() {
        let dev = used_device();
        let meta = MetaImage::load(dev.as_ref()).unwrap();
        let mut kept = 0;
        for c in 0..meta.nchunk {
            for t in MetaType::ALL {
                let objs = meta.objects(c, t);
                kept += meta.changed_objects(c, t).count();
                for (sect, objs) in (0u32..).zip(objs.chunks_exact(OBJS_PER_SECTOR as usize)) {
                    let mut raw = AlignedBuf::new(SECTOR_SIZE as usize);
                    let at =
                        u64::from(c) * CHUNK_SIZE + t.set_offset() + u64::from(sect) * SECTOR_SIZE;
                    dev.read_at(raw.as_mut_slice(), at).unwrap();
                    let mut sector = [objs[0]; OBJS_PER_SECTOR as usize];
                    sector.copy_from_slice(objs);
                    assert_eq!(
                        encode_sector(&sector)[..],
                        raw.as_slice()[..],
                        "{t} {c}/{sect}"
                    );
                    assert_eq!(meta.sector_objects(at).unwrap(), sector);
                }
            }
        }
        // Used and freed objects are held; the rest of 3 chunks is not.
        assert!((60..2000).contains(&kept), "{kept} objects held");
        let used = |t| {
            (0..meta.nchunk)
                .map(|c| meta.objects(c, t).iter().filter(|m| m.is_used()).count() as u64)
                .sum::<u64>()
        };
        for t in MetaType::ALL {
            let all = u64::from(meta.nchunk) * u64::from(t.per_chunk());
            assert_eq!(meta.counts(t), (all - used(t), used(t)), "{t}");
        }
    }

    /// A free object as mkfs wrote it, with one byte changed and its
    /// checksum left: the load fails on it as before; a lenient load
    /// reports it.
    #[test]
    fn a_damaged_free_object_is_still_found() {
        let dev = used_device();
        let id = ObjectId::new(MetaType::DirEntry, 2, 700).unwrap();
        let at = id.bda();
        let mut raw = AlignedBuf::new(SECTOR_SIZE as usize);
        let sector_at = at - at % SECTOR_SIZE;
        dev.read_at(raw.as_mut_slice(), sector_at).unwrap();
        let off = (at - sector_at) as usize;
        assert_eq!(
            raw.as_slice()[off..off + OBJ_SIZE],
            MetaObjPhy::new_free(id).to_bytes()[..]
        );
        raw.as_mut_slice()[off + 100] ^= 1;
        dev.write_at(raw.as_slice(), sector_at).unwrap();
        match MetaImage::load(dev.as_ref()) {
            Err(CoreError::Format(e)) => assert!(e.to_string().contains("checksum"), "{e}"),
            Err(e) => panic!("another error: {e}"),
            Ok(_) => panic!("the damaged object was not noticed"),
        }
        let (meta, problems) = MetaImage::load_lenient(dev.as_ref()).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        // Read as its raw bytes, which still name the right object.
        assert_eq!(
            meta.get(id).to_bytes()[..],
            raw.as_slice()[off..off + OBJ_SIZE]
        );
    }

    /// Flips a byte of object `id` on `dev` (its checksum then fails).
    fn damage(dev: &MemDevice, id: ObjectId) {
        let mut b = [0u8; 1];
        dev.read_at(&mut b, id.bda() + 100).unwrap();
        b[0] ^= 1;
        dev.write_at(&b, id.bda() + 100).unwrap();
    }

    /// A device read by several threads reports what one reader would:
    /// the first damaged object, or every one in order.
    #[test]
    fn threads_report_as_one_reader() {
        let nchunk = PARALLEL_FROM + 6;
        let dev = MemDevice::new("mem", u64::from(nchunk) * CHUNK_SIZE);
        let opts = MkfsOptions {
            log_size: MIN_LOG_SIZE,
            ..MkfsOptions::default()
        };
        mkfs(&dev, &opts).unwrap();
        let mask = || {
            let mut m = SigSet::empty();
            pthread_sigmask(SigmaskHow::SIG_BLOCK, None, Some(&mut m)).unwrap();
            m
        };
        let before = mask();
        let meta = MetaImage::load(&dev).unwrap();
        assert_eq!(mask(), before, "the caller's signal mask is as it was");
        assert_eq!((meta.nchunk, meta.chunks.len()), (nchunk, nchunk as usize));
        for (c, ck) in meta.chunks.iter().enumerate() {
            assert_eq!(ck.ck_number.get(), c as u64);
        }
        let ids = [nchunk - 1, 3, nchunk / 2 + 1].map(|c| ObjectId {
            mtype: MetaType::Inode,
            chunk: c,
            oid: 9,
        });
        for id in ids {
            damage(&dev, id);
        }
        let first = ids[1].number();
        match MetaImage::load(&dev) {
            Err(e) => assert!(e.to_string().contains(&format!("inode {first}")), "{e}"),
            Ok(_) => panic!("damage not found"),
        }
        let (_, problems) = MetaImage::load_lenient(&dev).unwrap();
        let mut want: Vec<u64> = ids.iter().map(|id| id.number()).collect();
        want.sort_unstable();
        assert_eq!(problems.len(), 3, "{problems:?}");
        for (p, n) in problems.iter().zip(want) {
            assert!(
                p.contains(&format!("inode {n}")),
                "{p} should name inode {n}"
            );
        }
    }
}
