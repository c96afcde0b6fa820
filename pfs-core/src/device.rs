//! Devices: the byte store a PFS lives on.
//!
//! [`Device`] takes `&self` so one device can serve many threads. Two
//! implementations: [`FileDevice`] for block devices (O_DIRECT, size from
//! BLKGETSIZE64, flush by fsync) and regular (sparse) files, and
//! [`MemDevice`], a sparse in-memory device for tests.

use crate::error::{CoreError, Result};
use crate::sys;
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Bytes written per call when a range has to be zeroed by plain writes.
const ZERO_WRITE_SIZE: usize = 4 << 20;

/// A block store addressed in bytes.
///
/// Everything PFS reads or writes goes through this trait, so a filesystem
/// can live on a block device or a file ([`FileDevice`]), in memory
/// ([`MemDevice`]) or on anything else that implements it.
///
/// # Example
///
/// Code written once for any device:
///
/// ```
/// use pfs_core::{Device, MemDevice, Result};
///
/// /// Stamps `tag` into the first sector and makes it durable.
/// fn stamp(dev: &dyn Device, tag: &[u8]) -> Result<()> {
///     let mut sector = vec![0u8; dev.sector_size() as usize];
///     sector[..tag.len()].copy_from_slice(tag);
///     dev.write_at(&sector, 0)?;
///     dev.sync()
/// }
///
/// let dev = MemDevice::new("mem0", 1 << 20);
/// stamp(&dev, b"hello")?;
/// let mut back = [0u8; 5];
/// dev.read_at(&mut back, 0)?;
/// assert_eq!(&back, b"hello");
///
/// // Requests past the end are errors, never short reads.
/// assert!(dev.read_at(&mut back, dev.len() - 2).is_err());
/// dev.zero_range(0, 4096)?;
/// dev.read_at(&mut back, 0)?;
/// assert_eq!(back, [0; 5]);
/// # Ok::<(), pfs_core::CoreError>(())
/// ```
pub trait Device: Send + Sync {
    /// Fills `buf` from `offset`; reading past the end is an error.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()>;
    /// Writes `buf` at `offset`; writing past the end is an error.
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()>;
    /// Makes every completed write durable (fdatasync / device flush).
    fn sync(&self) -> Result<()>;
    /// Flushes as [`Device::sync`] does while the calling thread runs
    /// `beside`, work that needs nothing from the flush and changes nothing
    /// it covers (a read); returns the flush's outcome once both are done.
    /// `beside` runs once, unless the flush could not even start (an
    /// error). The default flushes on a helper thread, or after `beside`
    /// when no thread can be had.
    fn sync_beside(&self, beside: &mut dyn FnMut()) -> Result<()> {
        sync_beside_on_thread(self, beside)
    }
    /// Whether a completed write may still be lost without a [`Device::sync`]:
    /// false for a block device without a volatile write cache (its direct
    /// writes are durable when they complete), whose flushes then cost
    /// nothing and need no ordering among processes.
    fn caches_writes(&self) -> bool {
        true
    }
    /// Size in bytes.
    fn len(&self) -> u64;
    /// Whether the device has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Smallest unit of IO the device accepts with direct IO.
    fn sector_size(&self) -> u32;
    /// A name for messages (the PBD name or the path).
    fn name(&self) -> &str;
    /// How many large writes (4 MiB pieces of a bulk copy) are worth
    /// keeping in flight at once: 2 by default (a local disk is kept busy
    /// by two); a network device whose every write crosses the network to
    /// servers that work in parallel (an RBD image) gains from more.
    fn write_depth(&self) -> usize {
        2
    }
    /// Makes `len` bytes at `offset` read as zeros, the fastest way the
    /// device allows; the default writes zeros.
    fn zero_range(&self, offset: u64, len: u64) -> Result<()> {
        write_zeros(self, offset, len)
    }
    /// Tells the device that `len` bytes at `offset` hold nothing worth
    /// keeping (BLKDISCARD on a block device, a punched hole in a file).
    /// Afterwards the range may read as zeros or as its old bytes. Returns
    /// `false` when the device cannot discard; the default discards
    /// nothing.
    fn discard(&self, offset: u64, len: u64) -> Result<bool> {
        let _ = (offset, len);
        Ok(false)
    }
    /// Where the device is in this machine's file system, when it is
    /// there (a block device node or a regular file); `None` for devices
    /// that live elsewhere (memory). Used to find the machine-wide files
    /// beside it.
    fn local_path(&self) -> Option<&Path> {
        None
    }
    /// For a device that is not in this machine's file system but that
    /// this and other machines reach over the network (an RBD image): one
    /// name for it, whatever PBD name opened it, under which its
    /// machine-wide files live in `/var/run/pfs`. `None` for other devices.
    fn machine_key(&self) -> Option<&str> {
        None
    }
    /// Records this process's connection to the device as a writer of host
    /// `hostid` on machine `node` (see [`crate::lease::node_id`]), so that
    /// a host that takes the writer lease over can cut it off at the
    /// storage ([`Device::fence_writers`]). Called when a read-write mount
    /// is made, before it writes. Devices that cannot fence (files, block
    /// devices) record nothing.
    fn register_writer(&self, hostid: u32, node: u32) -> Result<()> {
        let _ = (hostid, node);
        Ok(())
    }
    /// Cuts off at the storage every connection registered as a writer of
    /// one of `hosts` ((host id, machine) pairs), except this process's
    /// own: their writes fail from now on, however long ago they passed
    /// their lease check. Called by a host taking the writer lease over,
    /// before it writes. Returns how many connections were cut off; 0 for
    /// devices that cannot fence.
    fn fence_writers(&self, hosts: &[(u32, u32)]) -> Result<usize> {
        let _ = hosts;
        Ok(0)
    }
    /// Cuts off at the storage every connection registered as a writer,
    /// of any host, except this process's own. Called before a command
    /// overwrites the whole filesystem (`mkfs -f`, `growfs`, a restore)
    /// once no writer lease is live, so that a writer stalled past its
    /// lease cannot land a write in what replaces it. Returns how many
    /// connections were cut off; 0 for devices that cannot fence.
    fn fence_every_writer(&self) -> Result<usize> {
        Ok(0)
    }
}

/// [`Device::sync_beside`] on a helper thread (signals blocked), `beside`
/// on the caller's; the flush after `beside` when no thread can be had.
pub(crate) fn sync_beside_on_thread<D: Device + ?Sized>(
    dev: &D,
    beside: &mut dyn FnMut(),
) -> Result<()> {
    std::thread::scope(|s| {
        match crate::threads::spawn_scoped_quiet(s, "pfs-flush", || dev.sync()) {
            Some(flush) => {
                beside();
                flush
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
            }
            None => {
                beside();
                dev.sync()
            }
        }
    })
}

/// Zeroes a range with plain writes.
pub fn write_zeros<D: Device + ?Sized>(dev: &D, offset: u64, len: u64) -> Result<()> {
    let zeros = AlignedBuf::new(ZERO_WRITE_SIZE.min(len as usize).max(1));
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(zeros.len() as u64) as usize;
        dev.write_at(&zeros.as_slice()[..n], offset + done)?;
        done += n as u64;
    }
    Ok(())
}

/// Fails unless `n` bytes at `offset` lie within a device of `len` bytes.
pub(crate) fn check_range(
    dev: &str,
    len: u64,
    offset: u64,
    n: usize,
    op: &'static str,
) -> Result<()> {
    match offset.checked_add(n as u64) {
        Some(end) if end <= len => Ok(()),
        _ => Err(CoreError::io(
            dev,
            op,
            offset,
            std::io::Error::other(format!(
                "{n} bytes at {offset:#x} run past the device end {len:#x}"
            )),
        )),
    }
}

/// A zeroed buffer whose start is aligned to 4 KiB, for O_DIRECT IO.
/// Built from an over-allocated `Vec`, so no unsafe code is needed.
pub struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

/// Alignment of [`AlignedBuf`].
pub const DIRECT_IO_ALIGN: usize = 4096;

impl AlignedBuf {
    /// A zeroed aligned buffer of `len` bytes.
    pub fn new(len: usize) -> AlignedBuf {
        let storage = vec![0u8; len + DIRECT_IO_ALIGN];
        let start = storage
            .as_ptr()
            .align_offset(DIRECT_IO_ALIGN)
            .min(DIRECT_IO_ALIGN);
        AlignedBuf {
            storage,
            start,
            len,
        }
    }

    /// An aligned copy of `data`: the bytes written once, with no zeroing
    /// first (what [`AlignedBuf::new`] and a copy would cost).
    ///
    /// ```
    /// let b = pfs_core::AlignedBuf::copy_of(b"abc");
    /// assert_eq!(b.as_slice(), b"abc");
    /// assert_eq!(b.as_slice().as_ptr() as usize % pfs_core::DIRECT_IO_ALIGN, 0);
    /// ```
    pub fn copy_of(data: &[u8]) -> AlignedBuf {
        let mut storage: Vec<u8> = Vec::with_capacity(data.len() + DIRECT_IO_ALIGN);
        let start = storage
            .as_ptr()
            .align_offset(DIRECT_IO_ALIGN)
            .min(DIRECT_IO_ALIGN);
        // Within the capacity: the storage does not move.
        storage.resize(start, 0);
        storage.extend_from_slice(data);
        AlignedBuf {
            storage,
            start,
            len: data.len(),
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }

    /// The bytes, for changing.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

/// A block device or a regular file.
///
/// # Example
///
/// A sparse file as a device (a block device such as `/dev/nvme1n1` opens
/// the same way, with O_DIRECT):
///
/// ```
/// use pfs_core::{Device, FileDevice};
///
/// let dir = std::env::temp_dir().join(format!("pfs-doc-filedevice-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let img = dir.join("disk");
/// std::fs::File::create(&img)?.set_len(10 << 30)?;
///
/// let dev = FileDevice::open("disk", &img, true)?;
/// assert_eq!(dev.len(), 10 << 30);
/// assert_eq!(dev.name(), "disk");
/// assert!(!dev.is_block_device());
/// dev.write_at(b"PFS", 4 << 30)?;
/// dev.sync()?;
/// let mut back = [0u8; 3];
/// dev.read_at(&mut back, 4 << 30)?;
/// assert_eq!(&back, b"PFS");
///
/// // Opened read-only, it refuses writes.
/// let ro = FileDevice::open("disk", &img, false)?;
/// assert!(ro.write_at(b"x", 0).is_err());
///
/// drop((dev, ro));
/// std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct FileDevice {
    file: File,
    name: String,
    path: PathBuf,
    len: u64,
    sector_size: u32,
    is_block: bool,
    direct: bool,
    /// Whether a flush has anything to do: not on a block device without
    /// a volatile write cache ([`crate::writecache`]).
    flushes: bool,
}

impl FileDevice {
    /// Opens `path` for reading, and writing when `writable`. Block devices
    /// are opened with O_DIRECT and sized with BLKGETSIZE64; regular files
    /// use the page cache and their length.
    pub fn open(name: &str, path: &Path, writable: bool) -> Result<FileDevice> {
        let open_err = |source| CoreError::Open {
            device: name.to_owned(),
            path: path.display().to_string(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(open_err)?;
        let is_block = meta.file_type().is_block_device();
        // Checked before opening: opening a FIFO would wait for a writer.
        if !is_block && !meta.file_type().is_file() {
            return Err(open_err(std::io::Error::other(
                "not a block device or regular file",
            )));
        }
        let mut opts = OpenOptions::new();
        opts.read(true).write(writable);
        if is_block {
            opts.custom_flags(sys::O_DIRECT);
        }
        let file = opts.open(path).map_err(open_err)?;
        let (len, sector_size) = if is_block {
            let len = sys::block_device_size(&file)
                .map_err(|e| CoreError::io(name, "BLKGETSIZE64", 0, e))?;
            let ss = sys::block_device_sector_size(&file).unwrap_or(512);
            (len, ss.max(512))
        } else {
            (meta.len(), 512)
        };
        let flushes = !is_block || crate::writecache::volatile(meta.rdev());
        Ok(FileDevice {
            file,
            name: name.to_owned(),
            path: path.to_owned(),
            len,
            sector_size,
            is_block,
            direct: is_block,
            flushes,
        })
    }

    /// The path opened.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this is a block device.
    pub fn is_block_device(&self) -> bool {
        self.is_block
    }

    fn aligned(&self, buf_ptr: *const u8, len: usize, offset: u64) -> bool {
        let a = self.sector_size as u64;
        !self.direct
            || ((buf_ptr as usize) % DIRECT_IO_ALIGN == 0 && len as u64 % a == 0 && offset % a == 0)
    }

    /// The sector-aligned span covering `[offset, offset + len)`.
    fn span(&self, offset: u64, len: usize) -> (u64, usize) {
        let a = u64::from(self.sector_size);
        let start = offset / a * a;
        let end = (offset + len as u64).div_ceil(a) * a;
        (start, (end - start) as usize)
    }
}

impl Device for FileDevice {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(&self.name, self.len, offset, buf.len(), "read")?;
        if self.aligned(buf.as_ptr(), buf.len(), offset) {
            return self
                .file
                .read_exact_at(buf, offset)
                .map_err(|e| CoreError::io(&self.name, "read", offset, e));
        }
        let (start, n) = self.span(offset, buf.len());
        let mut bounce = AlignedBuf::new(n);
        self.file
            .read_exact_at(bounce.as_mut_slice(), start)
            .map_err(|e| CoreError::io(&self.name, "read", offset, e))?;
        let skip = (offset - start) as usize;
        buf.copy_from_slice(&bounce.as_slice()[skip..skip + buf.len()]);
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        check_range(&self.name, self.len, offset, buf.len(), "write")?;
        if self.aligned(buf.as_ptr(), buf.len(), offset) {
            return self
                .file
                .write_all_at(buf, offset)
                .map_err(|e| CoreError::io(&self.name, "write", offset, e));
        }
        // Through an aligned buffer; only partly covered edge sectors are
        // read first (read-modify-write).
        let (start, n) = self.span(offset, buf.len());
        let mut bounce = AlignedBuf::new(n);
        let ss = self.sector_size as usize;
        let skip = (offset - start) as usize;
        let tail_partial = (skip + buf.len()) % ss != 0;
        if skip != 0 {
            self.file
                .read_exact_at(&mut bounce.as_mut_slice()[..ss], start)
                .map_err(|e| CoreError::io(&self.name, "read", start, e))?;
        }
        if tail_partial && (n > ss || skip == 0) {
            let last = n - ss;
            self.file
                .read_exact_at(&mut bounce.as_mut_slice()[last..], start + last as u64)
                .map_err(|e| CoreError::io(&self.name, "read", start + last as u64, e))?;
        }
        bounce.as_mut_slice()[skip..skip + buf.len()].copy_from_slice(buf);
        self.file
            .write_all_at(bounce.as_slice(), start)
            .map_err(|e| CoreError::io(&self.name, "write", offset, e))
    }

    fn sync(&self) -> Result<()> {
        // fsync on a block device flushes the device's volatile cache; on a
        // file fdatasync makes data and the metadata needed to read it durable.
        // A block device that caches no writes has nothing to flush: its
        // (direct) writes were durable when they completed.
        if !self.flushes {
            return Ok(());
        }
        let r = if self.is_block {
            self.file.sync_all()
        } else {
            self.file.sync_data()
        };
        r.map_err(|e| CoreError::io(&self.name, "flush", 0, e))
    }

    fn sync_beside(&self, beside: &mut dyn FnMut()) -> Result<()> {
        if !self.flushes {
            beside();
            return Ok(());
        }
        // The kernel flushes on its own worker; only where it cannot take
        // the request does a thread of ours.
        match sys::aio::start_flush(self.file.as_raw_fd(), !self.is_block) {
            Some(flush) => {
                beside();
                flush
                    .wait()
                    .map_err(|e| CoreError::io(&self.name, "flush", 0, e))
            }
            None => sync_beside_on_thread(self, beside),
        }
    }

    fn caches_writes(&self) -> bool {
        self.flushes
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn sector_size(&self) -> u32 {
        self.sector_size
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn local_path(&self) -> Option<&Path> {
        Some(&self.path)
    }

    fn discard(&self, offset: u64, len: u64) -> Result<bool> {
        check_range(&self.name, self.len, offset, len as usize, "discard")?;
        let r = if self.is_block {
            sys::block_device_discard(&self.file, offset, len)
        } else {
            sys::file_punch_hole(&self.file, offset, len)
        };
        match r {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(false),
            Err(e) => Err(CoreError::io(&self.name, "discard", offset, e)),
        }
    }

    fn zero_range(&self, offset: u64, len: u64) -> Result<()> {
        check_range(&self.name, self.len, offset, len as usize, "zero range")?;
        let fast = if self.is_block {
            sys::block_device_zeroout(&self.file, offset, len)
        } else {
            sys::file_zero_range(&self.file, offset, len)
        };
        match fast {
            Ok(()) => Ok(()),
            Err(_) => write_zeros(self, offset, len),
        }
    }
}

/// Granularity of [`MemDevice`]'s sparse pages.
const MEM_PAGE: u64 = 64 << 10;

/// A sparse in-memory device for tests: pages never written read as zeros.
pub struct MemDevice {
    name: String,
    len: u64,
    pages: RwLock<BTreeMap<u64, Box<[u8]>>>,
}

impl MemDevice {
    /// An all-zero device of `len` bytes.
    pub fn new(name: &str, len: u64) -> MemDevice {
        MemDevice {
            name: name.to_owned(),
            len,
            pages: RwLock::new(BTreeMap::new()),
        }
    }

    /// Every resident page with its device offset.
    pub fn pages_snapshot(&self) -> Vec<(u64, Box<[u8]>)> {
        self.pages
            .read()
            .iter()
            .map(|(k, v)| (k * MEM_PAGE, v.clone()))
            .collect()
    }

    /// Bytes held in memory (pages written at least once).
    pub fn resident_bytes(&self) -> u64 {
        self.pages.read().len() as u64 * MEM_PAGE
    }
}

impl Device for MemDevice {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(&self.name, self.len, offset, buf.len(), "read")?;
        let pages = self.pages.read();
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let (page, in_page) = (pos / MEM_PAGE, (pos % MEM_PAGE) as usize);
            let n = (buf.len() - done).min(MEM_PAGE as usize - in_page);
            match pages.get(&page) {
                Some(p) => buf[done..done + n].copy_from_slice(&p[in_page..in_page + n]),
                None => buf[done..done + n].fill(0),
            }
            done += n;
        }
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        check_range(&self.name, self.len, offset, buf.len(), "write")?;
        let mut pages = self.pages.write();
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let (page, in_page) = (pos / MEM_PAGE, (pos % MEM_PAGE) as usize);
            let n = (buf.len() - done).min(MEM_PAGE as usize - in_page);
            let p = pages
                .entry(page)
                .or_insert_with(|| vec![0u8; MEM_PAGE as usize].into_boxed_slice());
            p[in_page..in_page + n].copy_from_slice(&buf[done..done + n]);
            done += n;
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn sector_size(&self) -> u32 {
        512
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn zero_range(&self, offset: u64, len: u64) -> Result<()> {
        check_range(&self.name, self.len, offset, len as usize, "zero range")?;
        let end = offset + len;
        // Whole pages are dropped; partial ones are written.
        let first_whole = offset.div_ceil(MEM_PAGE);
        let last_whole = end / MEM_PAGE;
        if first_whole >= last_whole {
            return write_zeros(self, offset, len);
        }
        write_zeros(self, offset, first_whole * MEM_PAGE - offset)?;
        write_zeros(self, last_whole * MEM_PAGE, end - last_whole * MEM_PAGE)?;
        let mut pages = self.pages.write();
        let doomed: Vec<u64> = pages
            .range(first_whole..last_whole)
            .map(|(k, _)| *k)
            .collect();
        for k in doomed {
            pages.remove(&k);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(dev: &dyn Device) {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        dev.write_at(&data, 4095).unwrap();
        let mut back = vec![0u8; data.len()];
        dev.read_at(&mut back, 4095).unwrap();
        assert_eq!(back, data);
        dev.zero_range(4096, 8192).unwrap();
        dev.read_at(&mut back, 4095).unwrap();
        assert_eq!(back[0], data[0]);
        assert!(back[1..8193].iter().all(|&b| b == 0));
        assert_eq!(&back[8193..], &data[8193..]);
        dev.sync().unwrap();
        let mut tail = [0u8; 2];
        assert!(dev.read_at(&mut tail, dev.len() - 1).is_err());
        assert!(dev.write_at(&tail, u64::MAX).is_err());
    }

    #[test]
    fn mem_device_reads_back_writes() {
        let dev = MemDevice::new("mem", 1 << 20);
        exercise(&dev);
        dev.zero_range(0, 1 << 20).unwrap();
        assert_eq!(dev.resident_bytes(), 0);
        // The default flushes on a thread while `beside` runs, once.
        let mut ran = 0;
        dev.sync_beside(&mut || ran += 1).unwrap();
        assert_eq!(ran, 1);
    }

    #[test]
    fn file_device_reads_back_writes() {
        let dir = std::env::temp_dir().join(format!("pfs-core-dev-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("img");
        std::fs::File::create(&path)
            .unwrap()
            .set_len(1 << 20)
            .unwrap();
        let dev = FileDevice::open("img", &path, true).unwrap();
        assert_eq!(dev.len(), 1 << 20);
        exercise(&dev);
        // The kernel flushes while `beside` runs here, once.
        let mut ran = 0;
        dev.sync_beside(&mut || ran += 1).unwrap();
        assert_eq!(ran, 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn aligned_buf_is_aligned() {
        for n in [1, 4096, 10_000] {
            let b = AlignedBuf::new(n);
            assert_eq!(b.as_slice().as_ptr() as usize % DIRECT_IO_ALIGN, 0);
            assert_eq!(b.len(), n);
        }
    }
}
