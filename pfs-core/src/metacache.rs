//! A copy of a large device's metasets kept on this machine, so that a
//! tool command or a new process need not read all of them again.
//!
//! Every load of a device's metadata reads each chunk's 836 KiB of
//! metasets: 863 MB for 10 TiB, most of it the free objects mkfs wrote.
//! After such a load (of a device of at least [`MIN_CHUNKS`] chunks) the
//! objects that are not free are written to a file beside the device (the
//! device's other machine-wide files live there too): `.<file>.pfs-rs-meta`
//! beside a regular file, `/var/run/pfs/<node>.pfs-rs-meta` for a block
//! device, `/var/run/pfs/<key>.pfs-rs-meta` for a network device. The next
//! load takes the metasets from that file instead, and reads and applies
//! the journal from the device as always.
//!
//! The metasets on the device change in three ways: a checkpoint writes
//! journal entries into them and then moves the journal's tail; mkfs,
//! growfs, a chunk restore or a filesystem copy rewrites the device; and
//! nothing else. So the copy holds, besides the objects, the journal tail
//! (txid, offset, size) of the leader record read before the load, chunk
//! 0's header sector (its chunk count: growfs) and the first sector of
//! chunk 0's inodes (the root directory's, with the time in microseconds
//! mkfs made it: another mkfs). The copy is used only while all of them
//! are the same on the device. A copy taken while a checkpoint was under
//! way, before the tail moved, holds some objects newer than the tail;
//! the journal's entries from the tail bring them to the head as they do
//! for the metasets on the device. This crate's mkfs and growfs, and the
//! commands that overwrite a whole filesystem, remove the copy as well.
//!
//! The file is checksummed as a whole (a torn or damaged copy is not
//! used), and trusted only when root, this user or the device's owner
//! made it and nobody may write it who may not write the device.
//! `PFS_META_CACHE=0` in the environment turns the copies off.

use crate::device::{AlignedBuf, Device};
use crate::meta::MetaImage;
use crate::objset::ObjSet;
use pfs_format::layout::{INODE_SET_OFFSET, OBJ_SIZE, SECTOR_SIZE};
use pfs_format::{ChunkPhy, LeaderRecord, MetaObjPhy, MetaType, ObjectId};
use std::fs::Metadata;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

/// Environment variable: `0` turns the machine's copies of metasets off
/// (neither read nor written).
pub const META_CACHE_ENV: &str = "PFS_META_CACHE";

/// Devices of fewer chunks are read whole (a few hundred ms at most).
pub(crate) const MIN_CHUNKS: u32 = 64;

/// The first bytes of a copy (its format's version is the last byte).
const MAGIC: &[u8; 8] = b"PFSRSMC1";

/// Bytes of a ChunkPhy in the copy.
const CHUNK_BYTES: usize = pfs_format::chunk::CHUNK_PHY_SIZE;

#[cfg(test)]
thread_local! {
    /// The smallest device a copy is made of, for this thread's tests.
    pub(crate) static TEST_MIN_CHUNKS: std::cell::Cell<Option<u32>> =
        const { std::cell::Cell::new(None) };
}

fn min_chunks() -> u32 {
    #[cfg(test)]
    if let Some(n) = TEST_MIN_CHUNKS.with(|c| c.get()) {
        return n;
    }
    MIN_CHUNKS
}

fn enabled() -> bool {
    std::env::var_os(META_CACHE_ENV).map_or(true, |v| v != "0")
}

/// Where the copy of `dev`'s metasets lives; `None` for a device in
/// memory.
pub(crate) fn path_of(dev: &dyn Device) -> Option<PathBuf> {
    crate::live::machine_path(dev, "pfs-rs-meta")
}

/// What must be as it was on the device for a copy to stand for its
/// metasets (see the module documentation).
#[derive(PartialEq, Eq)]
struct Stamp {
    tail: [u64; 3],
    chunk0: Vec<u8>,
    inodes0: Vec<u8>,
}

impl Stamp {
    fn read(dev: &dyn Device, leader: &LeaderRecord) -> Option<Stamp> {
        let mut buf = AlignedBuf::new(SECTOR_SIZE as usize);
        dev.read_at(buf.as_mut_slice(), 0).ok()?;
        let chunk0 = buf.as_slice().to_vec();
        dev.read_at(buf.as_mut_slice(), INODE_SET_OFFSET).ok()?;
        Some(Stamp {
            tail: [
                leader.tail_txid.get(),
                leader.tail_offset.get(),
                leader.log_size.get(),
            ],
            chunk0,
            inodes0: buf.as_slice().to_vec(),
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        for v in self.tail {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.chunk0);
        out.extend_from_slice(&self.inodes0);
    }

    fn decode(r: &mut Reader<'_>) -> Option<Stamp> {
        Some(Stamp {
            tail: [r.u64()?, r.u64()?, r.u64()?],
            chunk0: r.bytes(SECTOR_SIZE as usize)?.to_vec(),
            inodes0: r.bytes(SECTOR_SIZE as usize)?.to_vec(),
        })
    }
}

/// A copy of `meta` (as just read from `dev`'s metasets, nothing applied
/// to it, under `leader`, read before it), ready for [`store`]; `None`
/// when no copy is kept of this device.
pub(crate) fn prepare(
    dev: &dyn Device,
    meta: &MetaImage,
    leader: &LeaderRecord,
) -> Option<Vec<u8>> {
    if meta.nchunk < min_chunks() || !enabled() {
        return None;
    }
    path_of(dev)?;
    let stamp = Stamp::read(dev, leader)?;
    let mut out = Vec::with_capacity(1 << 20);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&meta.nchunk.to_le_bytes());
    stamp.encode(&mut out);
    for chunk in 0..meta.nchunk {
        out.extend_from_slice(&meta.chunks[chunk as usize].to_bytes());
        for t in MetaType::ALL {
            let set = meta.set_of(chunk, t);
            let kept: Vec<_> = set.kept().collect();
            out.extend_from_slice(&(kept.len() as u32).to_le_bytes());
            for (oid, mo) in kept {
                out.extend_from_slice(&oid.to_le_bytes());
                out.extend_from_slice(&mo.to_bytes());
            }
        }
    }
    let crc = pfs_format::pfs_crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Some(out)
}

/// Writes a copy [`prepare`] made (best effort: a copy that cannot be
/// written is not kept, and the load that made it goes on). The file is
/// written beside its place and renamed there, so a reader finds the old
/// copy or the new one.
pub(crate) fn store(dev: &dyn Device, bytes: &[u8]) {
    let Some(path) = path_of(dev) else { return };
    let model = dev.local_path().and_then(|p| std::fs::metadata(p).ok());
    let tmp = path.with_extension(format!("pfs-rs-meta.{}", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        crate::hostlock::make_parent(&path, model.as_ref())?;
        // Left by a process of this pid killed while it wrote one.
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        // The device's owner and group where this user may give them (root;
        // another user its group, if a member), and the device's access
        // for each, read-write for a maker that is not its owner.
        if let Some(m) = &model {
            if std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid())).is_err() {
                let _ = std::os::unix::fs::fchown(&f, None, Some(m.gid()));
            }
        }
        let now = f.metadata()?;
        let mode = model.as_ref().map_or(0o600, |m| {
            copy_mode(Owner::of(m), m.mode(), Owner::of(&now))
        });
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        drop(f);
        std::fs::rename(&tmp, &path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// Removes this machine's copy of `dev`'s metasets, if there is one: for a
/// command that rewrote metasets of the device without the journal (a
/// restore, a copy of a filesystem onto it), once it is done. mkfs and
/// growfs do it themselves, as does [`crate::ensure_no_live_writer`]
/// before such a command starts.
pub fn forget(dev: &dyn Device) {
    if let Some(path) = path_of(dev) {
        let _ = std::fs::remove_file(path);
    }
}

/// The metasets of `dev` from this machine's copy, when there is one that
/// stands for them under `leader` (read from the device before this
/// call); `None` otherwise.
pub(crate) fn load(dev: &dyn Device, leader: &LeaderRecord) -> Option<MetaImage> {
    if !enabled() {
        return None;
    }
    let path = path_of(dev)?;
    let mut file = std::fs::File::open(&path).ok()?;
    let model = dev.local_path().and_then(|p| std::fs::metadata(p).ok());
    if !trusted(&file.metadata().ok()?, model.as_ref()) {
        return None;
    }
    // Read through the descriptor whose owner and mode were checked.
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
    if pfs_format::pfs_crc32c(body).to_le_bytes() != crc {
        return None;
    }
    let mut r = Reader { rest: body };
    if r.bytes(MAGIC.len())? != MAGIC {
        return None;
    }
    let nchunk = r.u32()?;
    let stamp = Stamp::decode(&mut r)?;
    if nchunk < min_chunks() || Stamp::read(dev, leader)? != stamp {
        return None;
    }
    let mut chunks = Vec::with_capacity(nchunk as usize);
    let mut sets = Vec::with_capacity(nchunk as usize);
    for chunk in 0..nchunk {
        chunks.push(ChunkPhy::decode(r.bytes(CHUNK_BYTES)?, u64::from(chunk)).ok()?);
        let mut per_type: [ObjSet; 3] = Default::default();
        for (set, t) in per_type.iter_mut().zip(MetaType::ALL) {
            for _ in 0..r.u32()? {
                let oid = r.u32()?;
                let id = ObjectId::new(t, chunk, oid).ok()?;
                set.load(oid, MetaObjPhy::decode(r.bytes(OBJ_SIZE)?, id).ok()?);
            }
        }
        sets.push(per_type);
    }
    if !r.rest.is_empty() || chunks[0].ck_nchunk.get() != nchunk {
        return None;
    }
    Some(MetaImage::from_parts(nchunk, chunks, sets, dev.name()))
}

/// A file's owner and group.
#[derive(Clone, Copy)]
struct Owner {
    uid: u32,
    gid: u32,
}

impl Owner {
    fn of(m: &Metadata) -> Owner {
        Owner {
            uid: m.uid(),
            gid: m.gid(),
        }
    }
}

/// The mode of a copy now owned by `file`, of a device owned by `dev` with
/// mode `dev_mode`: the device's access for its owner and group where the
/// copy has them, read-write for a maker that is not the device's owner,
/// nothing for a group that is not the device's.
fn copy_mode(dev: Owner, dev_mode: u32, file: Owner) -> u32 {
    let owner = if file.uid == dev.uid {
        dev_mode & 0o600
    } else {
        0o600
    };
    let group = if file.gid == dev.gid {
        dev_mode & 0o060
    } else {
        0
    };
    owner | group | (dev_mode & 0o006)
}

/// Whether a copy with metadata `cache` may be believed by this process,
/// for a device whose file has metadata `dev` (`None`: not a file of this
/// machine).
fn trusted(cache: &Metadata, dev: Option<&Metadata>) -> bool {
    believed(
        Owner::of(cache),
        cache.mode(),
        dev.map(|d| (Owner::of(d), d.mode())),
        crate::sys::euid(),
    )
}

/// Whether user `euid` believes a copy owned by `file` with mode `mode`,
/// of a device owned by `dev` with its mode (`None`: not a file): root,
/// `euid` or the device's owner made it, and nobody may write it who may
/// not write the device.
fn believed(file: Owner, mode: u32, dev: Option<(Owner, u32)>, euid: u32) -> bool {
    let maker = file.uid == 0 || file.uid == euid;
    let writers = mode & 0o022;
    match dev {
        Some((d, dev_mode)) => {
            (maker || file.uid == d.uid)
                && writers & !(dev_mode & 0o022) == 0
                && (writers & 0o020 == 0 || file.gid == d.gid)
        }
        None => maker && writers == 0,
    }
}

/// Reads a copy's fields in order.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.rest.split_at_checked(n)?;
        self.rest = rest;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.bytes(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.bytes(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::FileDevice;
    use crate::meta::Replayed;
    use crate::mkfs::{mkfs, MkfsOptions};
    use crate::mount::{Mode, Mount, MountOptions};
    use crate::namespace::FileType;
    use pfs_format::layout::{CHUNK_SIZE, MIN_LOG_SIZE};
    use std::path::Path;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// A device file that counts the bytes read from it.
    struct Counted {
        inner: FileDevice,
        read: AtomicU64,
    }

    impl Device for Counted {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> crate::error::Result<()> {
            self.read.fetch_add(buf.len() as u64, Ordering::Relaxed);
            self.inner.read_at(buf, offset)
        }
        fn write_at(&self, buf: &[u8], offset: u64) -> crate::error::Result<()> {
            self.inner.write_at(buf, offset)
        }
        fn sync(&self) -> crate::error::Result<()> {
            self.inner.sync()
        }
        fn len(&self) -> u64 {
            self.inner.len()
        }
        fn sector_size(&self) -> u32 {
            self.inner.sector_size()
        }
        fn name(&self) -> &str {
            self.inner.name()
        }
        fn local_path(&self) -> Option<&Path> {
            self.inner.local_path()
        }
    }

    fn host1() -> MountOptions {
        MountOptions {
            hostid: 1,
            ..MountOptions::default()
        }
    }

    /// A scratch directory with a 3-chunk device file, made with files in
    /// it and checkpointed, so its metasets hold used objects.
    fn device(tag: &str) -> (PathBuf, Arc<Counted>) {
        let dir = std::env::temp_dir().join(format!("pfs-metacache-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let img = dir.join("img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(3 * CHUNK_SIZE)
            .unwrap();
        let dev = Arc::new(Counted {
            inner: FileDevice::open("img", &img, true).unwrap(),
            read: AtomicU64::new(0),
        });
        let opts = MkfsOptions {
            log_size: MIN_LOG_SIZE,
            ..MkfsOptions::default()
        };
        mkfs(dev.as_ref(), &opts).unwrap();
        write(&dev, "a", 20);
        (dir, dev)
    }

    /// Creates `n` files named for `tag` and checkpoints.
    fn write(dev: &Arc<Counted>, tag: &str, n: usize) {
        let m = Mount::open_with(dev.clone(), Mode::ReadWrite, &host1()).unwrap();
        for i in 0..n {
            m.create_path(format!("/{tag}{i}"), FileType::File).unwrap();
        }
        m.checkpoint().unwrap();
        m.unmount().unwrap();
    }

    /// An object: chunk, type, oid and bytes.
    type Object = (u32, u8, u32, [u8; OBJ_SIZE]);

    /// Every object of `meta` that is not free as mkfs writes it.
    fn objects(meta: &MetaImage) -> Vec<Object> {
        let mut out = Vec::new();
        for c in 0..meta.nchunk {
            for t in MetaType::ALL {
                for (oid, mo) in meta.set_of(c, t).kept() {
                    out.push((c, t.raw(), oid, mo.to_bytes()));
                }
            }
        }
        out
    }

    /// The replayed metadata as loaded now, with the bytes read for it.
    fn load_counted(dev: &Counted) -> (Vec<Object>, u64) {
        TEST_MIN_CHUNKS.with(|c| c.set(Some(1)));
        let before = dev.read.load(Ordering::Relaxed);
        let r = Replayed::load(dev).unwrap();
        (objects(&r.meta), dev.read.load(Ordering::Relaxed) - before)
    }

    /// The replayed metadata read from the device alone.
    fn truth(dev: &Counted) -> Vec<Object> {
        TEST_MIN_CHUNKS.with(|c| c.set(Some(u32::MAX)));
        let r = Replayed::load(dev).unwrap();
        objects(&r.meta)
    }

    const METASETS: u64 = 3 * pfs_format::layout::META_END_OFFSET;

    #[test]
    fn a_copy_is_open_to_the_device_users_and_believed_only_from_them() {
        let root_disk = Owner { uid: 0, gid: 6 };
        let pg = Owner {
            uid: 1000,
            gid: 1000,
        };
        let pg_disk = Owner { uid: 1000, gid: 6 };
        // Root makes it for the device's owner and group.
        assert_eq!(copy_mode(root_disk, 0o660, root_disk), 0o660);
        assert_eq!(copy_mode(root_disk, 0o644, root_disk), 0o644);
        // A member of the device's group keeps its group; another user
        // gets it alone.
        assert_eq!(copy_mode(root_disk, 0o660, pg_disk), 0o660);
        assert_eq!(copy_mode(root_disk, 0o660, pg), 0o600);
        // Each of these is believed by its maker and by root.
        let dev = Some((root_disk, 0o660));
        for (file, mode) in [(root_disk, 0o660), (pg_disk, 0o660), (pg, 0o600)] {
            assert!(believed(file, mode, dev, file.uid));
            assert!(believed(file, mode, dev, 0) == (file.uid == 0));
        }
        // A user's copy is not root's, unless the device is that user's.
        assert!(believed(pg, 0o600, Some((pg, 0o600)), 0));
        // Writable by others than the device's writers: believed by nobody.
        assert!(!believed(root_disk, 0o666, dev, 0));
        assert!(!believed(pg, 0o660, dev, 1000));
        assert!(!believed(root_disk, 0o662, Some((root_disk, 0o664)), 0));
        // No device file (an RBD image): its maker's alone.
        assert!(believed(pg, 0o600, None, 1000));
        assert!(!believed(pg, 0o600, None, 1001));
        assert!(!believed(pg, 0o620, None, 1000));
    }

    #[test]
    fn a_load_keeps_a_copy_that_the_next_load_reads_instead_of_the_metasets() {
        let (dir, dev) = device("reuse");
        let (first, read) = load_counted(&dev);
        assert!(read >= METASETS, "the first load read {read} bytes");
        assert!(path_of(dev.as_ref()).unwrap().is_file());
        // Entries in the journal past the tail are applied as always.
        let m = Mount::open_with(dev.clone(), Mode::ReadWrite, &host1()).unwrap();
        m.create_path("/after", FileType::File).unwrap();
        m.unmount().unwrap();
        let (second, read) = load_counted(&dev);
        assert!(read < METASETS / 10, "the second load read {read} bytes");
        assert_ne!(first, second);
        assert_eq!(second, truth(&dev));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_copy_is_not_used_once_a_checkpoint_moved_the_tail() {
        let (dir, dev) = device("tail");
        load_counted(&dev);
        write(&dev, "b", 40);
        let (now, read) = load_counted(&dev);
        assert!(
            read >= METASETS,
            "a stale copy was used ({read} bytes read)"
        );
        assert_eq!(now, truth(&dev));
        // And the load made a new copy.
        assert!(load_counted(&dev).1 < METASETS / 10);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_copy_of_another_filesystem_on_the_device_is_not_used() {
        let (dir, dev) = device("mkfs");
        load_counted(&dev);
        let path = path_of(dev.as_ref()).unwrap();
        let old = std::fs::read(&path).unwrap();
        // Our mkfs removes the copy; another tool's (the reference's)
        // would not: put it back.
        let opts = MkfsOptions {
            log_size: MIN_LOG_SIZE,
            force: true,
            ..MkfsOptions::default()
        };
        std::thread::sleep(std::time::Duration::from_millis(2));
        mkfs(dev.as_ref(), &opts).unwrap();
        assert!(!path.exists(), "mkfs left the copy");
        // The same work again: the journal's tail is where it was, and
        // only the times differ.
        write(&dev, "a", 20);
        let r = Replayed::load(dev.as_ref()).unwrap();
        let tail = r.journal.leader.tail_txid.get();
        assert!(tail > 0);
        assert_eq!(old[12..20], tail.to_le_bytes());
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, &old).unwrap();
        let (now, read) = load_counted(&dev);
        assert!(read >= METASETS, "the old filesystem's copy was used");
        assert_eq!(now, truth(&dev));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_damaged_or_untrusted_copy_is_not_used() {
        let (dir, dev) = device("damaged");
        let (first, _) = load_counted(&dev);
        let path = path_of(dev.as_ref()).unwrap();
        let good = std::fs::read(&path).unwrap();
        let mut bad = good.clone();
        let at = bad.len() / 2;
        bad[at] ^= 0x10;
        std::fs::write(&path, &bad).unwrap();
        let (now, read) = load_counted(&dev);
        assert!(read >= METASETS, "a damaged copy was used");
        assert_eq!(now, first);
        // A copy others may write, of a device they may not write.
        std::fs::write(&path, &good).unwrap();
        assert!(load_counted(&dev).1 < METASETS / 10);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        std::fs::set_permissions(dir.join("img"), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(
            load_counted(&dev).1 >= METASETS,
            "a copy anyone may write was used"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
