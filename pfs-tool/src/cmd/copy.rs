//! Durable copies between local files and PFS files, on one device or two.
//!
//! A copy writes a temporary name in the destination directory, flushes it,
//! then renames it over the final name (on PFS the rename is one committed
//! transaction; locally the directory is flushed too). A copy cut short at
//! any point leaves the old destination, or none, never a partial file
//! under the final name; a copy stopped by SIGINT, SIGTERM or SIGHUP removes
//! its temporary file before the process ends (see [`super::interrupt`]).
//! Holes stay holes: only the 4 MiB pieces of the source that hold data
//! are read and written (local sources say where their data is through
//! `SEEK_DATA`/`SEEK_HOLE`, PFS sources through their block map), and the
//! destination gets its full size without blocks for the rest. Reading and
//! writing overlap, on one device or two:
//! reader threads fill a few reused 4 MiB buffers each while writer threads
//! drain them (see [`pump`]), so several reads and several writes are in
//! flight at once.

use crate::progress::Progress;
use pfs_core::AlignedBuf;
use pfs_core::CoreError;
use pfs_core::Mount;
use pfs_core::PfsPath;
use pfs_core::{node_id, pid_alive};
use pfs_core::{FallocMode, File as PfsFile, OpenOptions};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

/// Copy unit: 4 MiB, one PFS block.
pub const CHUNK: usize = 4 << 20;

/// A copy failure, with the message and the errno behind it.
#[derive(Debug)]
pub struct CopyError {
    /// errno (for the reference's `cp failed:` line and the exit code).
    pub errno: i32,
    /// What went wrong.
    pub message: String,
}

impl CopyError {
    pub(crate) fn new(errno: i32, message: impl Into<String>) -> CopyError {
        CopyError {
            errno,
            message: message.into(),
        }
    }
}

impl From<CoreError> for CopyError {
    fn from(e: CoreError) -> CopyError {
        CopyError::new(e.errno(), e.to_string())
    }
}

fn io_err(what: &str, p: &Path, e: std::io::Error) -> CopyError {
    CopyError::new(
        e.raw_os_error().unwrap_or(5),
        format!("{what} {}: {e}", p.display()),
    )
}

/// One side of a copy. Names are bytes on both sides (they need not be
/// UTF-8).
#[derive(Clone)]
pub enum Place<'m> {
    /// A local path.
    Local(PathBuf),
    /// A path inside a mounted PFS; `shown` is `/<pbd>/...` as given.
    Pfs {
        /// The mount.
        mount: &'m Arc<Mount>,
        /// Components inside the filesystem.
        comps: Vec<Vec<u8>>,
        /// The path as the user wrote it, byte for byte.
        shown: Vec<u8>,
    },
}

/// What `stat` says about a place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Nothing there.
    Missing,
    /// A regular file of this size.
    File(u64),
    /// A directory.
    Dir,
}

impl<'m> Place<'m> {
    /// A PFS place from a parsed path.
    pub fn pfs(mount: &'m Arc<Mount>, p: &PfsPath) -> Place<'m> {
        Place::Pfs {
            mount,
            comps: p
                .inner()
                .split(|&b| b == b'/')
                .filter(|c| !c.is_empty())
                .map(<[u8]>::to_vec)
                .collect(),
            shown: p.as_bytes().to_vec(),
        }
    }

    /// The path for a message (bytes that are not UTF-8 shown as U+FFFD).
    pub fn shown(&self) -> String {
        String::from_utf8_lossy(self.shown_bytes()).into_owned()
    }

    /// The path as the user gave it (and the names below it as stored),
    /// byte for byte.
    pub fn shown_bytes(&self) -> &[u8] {
        match self {
            Place::Local(p) => p.as_os_str().as_bytes(),
            Place::Pfs { shown, .. } => shown,
        }
    }

    /// What is there.
    pub fn kind(&self) -> Result<Kind, CopyError> {
        match self {
            Place::Local(p) => match fs::metadata(p) {
                Ok(m) if m.is_dir() => Ok(Kind::Dir),
                Ok(m) => Ok(Kind::File(m.len())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Kind::Missing),
                Err(e) => Err(io_err("cannot stat", p, e)),
            },
            Place::Pfs { mount, .. } => match mount.resolve(fs_path(self).unwrap_or_default()) {
                Ok(ino) => {
                    let st = mount.getattr(ino)?;
                    Ok(if st.is_dir() {
                        Kind::Dir
                    } else {
                        Kind::File(st.size)
                    })
                }
                Err(CoreError::NotFound { .. }) => Ok(Kind::Missing),
                Err(e) => Err(e.into()),
            },
        }
    }

    /// The place `name` inside this one.
    pub fn join(&self, name: &[u8]) -> Place<'m> {
        match self {
            Place::Local(p) => Place::Local(p.join(OsStr::from_bytes(name))),
            Place::Pfs {
                mount,
                comps,
                shown,
            } => {
                let mut c = comps.clone();
                c.push(name.to_vec());
                let mut shown = shown.clone();
                if !shown.ends_with(b"/") {
                    shown.push(b'/');
                }
                shown.extend_from_slice(name);
                Place::Pfs {
                    mount,
                    comps: c,
                    shown,
                }
            }
        }
    }

    /// The last component.
    pub fn basename(&self) -> Vec<u8> {
        match self {
            Place::Local(p) => p
                .file_name()
                .map(|n| n.as_bytes().to_vec())
                .unwrap_or_default(),
            Place::Pfs { comps, .. } => comps.last().cloned().unwrap_or_default(),
        }
    }

    /// Names in a directory, in its order (PFS) or sorted (local); PFS's own
    /// `.pfs-paxos` and `.pfs-journal` are left out.
    pub fn list(&self) -> Result<Vec<Vec<u8>>, CopyError> {
        match self {
            Place::Local(p) => {
                let mut v: Vec<Vec<u8>> = fs::read_dir(p)
                    .map_err(|e| io_err("cannot list", p, e))?
                    .filter_map(|e| e.ok())
                    .map(|e| OsString::into_vec(e.file_name()))
                    .collect();
                v.sort();
                Ok(v)
            }
            Place::Pfs { mount, .. } => {
                let ino = mount.resolve(dir_path(self))?;
                let entries: Vec<_> = mount.readdir(ino)?.collect();
                // A damaged entry named `..` (or holding '/') would lead
                // the copy out of its tree, on either side.
                let guard = pfs_core::TreeGuard::new(mount.device().name());
                for e in &entries {
                    guard.check_name(ino, &e.name)?;
                }
                Ok(entries
                    .into_iter()
                    .filter(|e| !(ino == 0 && (e.ino == 1 || e.ino == 2)))
                    .map(|e| e.name)
                    .collect())
            }
        }
    }

    /// Inode of this PFS directory (`None` for a local path).
    pub fn pfs_ino(&self) -> Result<Option<u64>, CopyError> {
        match self {
            Place::Local(_) => Ok(None),
            Place::Pfs { mount, .. } => Ok(Some(mount.resolve(dir_path(self))?)),
        }
    }

    /// Creates this directory.
    pub fn mkdir(&self) -> Result<(), CopyError> {
        match self {
            Place::Local(p) => {
                fs::create_dir(p).map_err(|e| io_err("cannot create directory", p, e))
            }
            Place::Pfs { mount, .. } => mount
                .mkdir_path(fs_path(self).unwrap_or_default())
                .map(|_| ())
                .map_err(Into::into),
        }
    }
}

/// An open source.
enum Reader<'a> {
    Local(fs::File),
    Pfs(PfsFile, std::marker::PhantomData<&'a ()>),
}

impl Reader<'_> {
    fn read_at(&self, buf: &mut [u8], off: u64) -> Result<usize, CopyError> {
        match self {
            Reader::Local(f) => {
                let mut n = 0;
                while n < buf.len() {
                    match f.read_at(&mut buf[n..], off + n as u64) {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            return Err(CopyError::new(
                                e.raw_os_error().unwrap_or(5),
                                format!("read failed: {e}"),
                            ))
                        }
                    }
                }
                Ok(n)
            }
            Reader::Pfs(f, _) => Ok(f.read_at(buf, off)?),
        }
    }

    /// The byte ranges of the first `size` bytes that may hold data, in
    /// order; everything else reads as zeros. A local file system that
    /// cannot say gives one range, the whole file.
    fn data_ranges(&self, size: u64) -> Result<Vec<(u64, u64)>, CopyError> {
        let mut v: Vec<(u64, u64)> = Vec::new();
        let mut add = |start: u64, end: u64| {
            let end = end.min(size);
            if start >= end {
                return;
            }
            match v.last_mut() {
                Some(last) if last.1 >= start => last.1 = last.1.max(end),
                _ => v.push((start, end)),
            }
        };
        match self {
            Reader::Local(f) => {
                use nix::unistd::{lseek, Whence};
                let fd = std::os::fd::AsRawFd::as_raw_fd(f);
                let mut pos = 0u64;
                while pos < size {
                    let data = match lseek(fd, pos as i64, Whence::SeekData) {
                        Ok(d) => d as u64,
                        // No data after `pos`.
                        Err(nix::errno::Errno::ENXIO) => break,
                        // No hole support: all of it is data.
                        Err(_) => return Ok(vec![(0, size)]),
                    };
                    let hole = match lseek(fd, data as i64, Whence::SeekHole) {
                        Ok(h) => h as u64,
                        Err(_) => size,
                    };
                    add(data, hole.max(data + 1));
                    pos = hole.max(data + 1);
                }
            }
            Reader::Pfs(f, _) => {
                let blocks = f.mount().blocks(f.ino())?;
                let bs = pfs_format::layout::BLOCK_SIZE;
                for (idx, b) in blocks.iter() {
                    let start = idx.saturating_mul(bs);
                    add(start, start.saturating_add(b.data_end));
                }
            }
        }
        Ok(v)
    }
}

/// Offsets of the 4 MiB pieces of a `size`-byte file that meet `ranges`.
fn pieces_of(ranges: &[(u64, u64)], size: u64) -> Vec<u64> {
    let c = CHUNK as u64;
    let mut v: Vec<u64> = Vec::new();
    for &(start, end) in ranges {
        let end = end.min(size);
        if start >= end {
            continue;
        }
        for i in start / c..=(end - 1) / c {
            if v.last() != Some(&(i * c)) {
                v.push(i * c);
            }
        }
    }
    v
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Prefix of temporary copy names: `.pfscp-<machine>-<pid>-<n>`.
const TMP_PREFIX: &str = ".pfscp-";

fn tmp_name() -> String {
    format!(
        "{TMP_PREFIX}{:08x}-{}-{}",
        node_id(),
        std::process::id(),
        TMP_SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Copies file `src` to `dst` durably (see the module doc), counting the
/// bytes written in `progress`.
pub fn copy_file(src: &Place<'_>, dst: &Place<'_>, progress: &Progress) -> Result<u64, CopyError> {
    let size = match src.kind()? {
        Kind::File(n) => n,
        Kind::Dir => {
            return Err(CopyError::new(
                21,
                format!("{} is a directory", src.shown()),
            ))
        }
        Kind::Missing => {
            return Err(CopyError::new(
                2,
                format!("{}: no such file or directory", src.shown()),
            ))
        }
    };
    let reader = open_reader(src)?;
    let tmp_leaf = tmp_name();
    let dir = parent_of(dst);
    // The temporary file is ours; a missing or wrong directory is the
    // user's, so name that.
    match dir.kind()? {
        Kind::Dir => {}
        Kind::Missing => {
            return Err(CopyError::new(
                2,
                format!(
                    "cannot copy to {}: directory {} does not exist",
                    dst.shown(),
                    dir.shown()
                ),
            ))
        }
        Kind::File(_) => {
            return Err(CopyError::new(
                20,
                format!(
                    "cannot copy to {}: {} is not a directory",
                    dst.shown(),
                    dir.shown()
                ),
            ))
        }
    }
    remove_stale_temps(&dir);
    let pieces = pieces_of(&reader.data_ranges(size)?, size);
    // From here until it is renamed or removed, a signal leaves the
    // temporary file to this copy to remove.
    let _temp = super::interrupt::temp()?;
    let tmp = dir.join(tmp_leaf.as_bytes());
    let job = Job {
        reader: &reader,
        size,
        pieces: &pieces,
        progress,
    };
    let result = match (&tmp, dst) {
        (Place::Local(tp), Place::Local(fp)) => copy_to_local(&job, tp, fp),
        (Place::Pfs { mount, .. }, Place::Pfs { .. }) => copy_to_pfs(&job, mount, &tmp, dst),
        _ => Err(CopyError::new(22, "internal: mixed destination")),
    };
    if result.is_err() {
        // Leave nothing half-written behind under any name.
        match &tmp {
            Place::Local(tp) => {
                let _ = fs::remove_file(tp);
            }
            p @ Place::Pfs { mount, .. } => {
                let _ = mount.unlink_path(fs_path(p).unwrap_or_default());
            }
        }
    }
    result.map(|_| size)
}

impl CopyError {
    fn with_path(self, p: &str) -> CopyError {
        CopyError::new(self.errno, format!("{p}: {}", self.message))
    }
}

/// Removes temporary files that copies killed on this machine left in
/// `dir` (their process is gone). Best effort: a failure leaves them.
fn remove_stale_temps(dir: &Place<'_>) {
    let Ok(names) = dir.list() else { return };
    let me = format!("{:08x}", node_id());
    for name in names {
        let Some(rest) = name
            .strip_prefix(TMP_PREFIX.as_bytes())
            .and_then(|r| std::str::from_utf8(r).ok())
        else {
            continue;
        };
        let mut parts = rest.split('-');
        let (Some(node), Some(pid)) = (
            parts.next(),
            parts.next().and_then(|p| p.parse::<u32>().ok()),
        ) else {
            continue;
        };
        if node != me || pid_alive(pid) {
            continue;
        }
        match dir.join(&name) {
            Place::Local(p) => {
                let _ = fs::remove_file(p);
            }
            p @ Place::Pfs { mount, .. } => {
                let _ = mount.unlink_path(fs_path(&p).unwrap_or_default());
            }
        }
    }
}

/// The directory holding a place.
fn parent_of<'m>(p: &Place<'m>) -> Place<'m> {
    match p {
        // A bare relative name (`cp /nvme1n1/f out`) lives in `.`.
        Place::Local(lp) => Place::Local(
            lp.parent()
                .filter(|d| !d.as_os_str().is_empty())
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from(".")),
        ),
        Place::Pfs {
            mount,
            comps,
            shown,
        } => Place::Pfs {
            mount,
            comps: comps[..comps.len().saturating_sub(1)].to_vec(),
            shown: {
                let end = shown.iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1);
                match shown[..end].iter().rposition(|&b| b == b'/') {
                    Some(i) if i > 0 => shown[..i].to_vec(),
                    _ => shown.clone(),
                }
            },
        },
    }
}

/// Opens a place for reading.
fn open_reader<'m>(p: &Place<'m>) -> Result<Reader<'m>, CopyError> {
    Ok(match p {
        Place::Local(lp) => {
            Reader::Local(fs::File::open(lp).map_err(|e| io_err("cannot open", lp, e))?)
        }
        Place::Pfs { mount, .. } => Reader::Pfs(
            mount
                .open_file(fs_path(p).unwrap_or_default(), OpenOptions::default())
                .map_err(|e| CopyError::from(e).with_path(&p.shown()))?,
            std::marker::PhantomData,
        ),
    })
}

/// The in-filesystem path of a PFS place.
fn fs_path(p: &Place<'_>) -> Option<Vec<u8>> {
    match p {
        Place::Pfs { comps, .. } => Some([b"/".as_slice(), &comps.join(&b'/')].concat()),
        Place::Local(_) => None,
    }
}

/// The in-filesystem path of a PFS place with a trailing `/` (it must be a
/// directory).
fn dir_path(p: &Place<'_>) -> Vec<u8> {
    let mut path = fs_path(p).unwrap_or_default();
    path.push(b'/');
    path
}

/// Reader threads of a copy. Each reads every `READERS`-th 4 MiB piece,
/// so several reads are in flight: one read's latency (and the small
/// leader-record reads a read-only PFS mount makes around each read) no
/// longer paces the whole copy.
const READERS: usize = 4;

/// Writer threads of a copy to a local file; pieces go to them in turn, so
/// several writes are in flight too. A copy into PFS has as many as its
/// device wants ([`writers_for`]).
const WRITERS: usize = 2;

/// The most writer threads a copy has.
const MAX_WRITERS: usize = 32;

/// Writer threads of a copy onto `dev`: the writes in flight the device
/// gains from ([`pfs_core::Device::write_depth`]: 2 on a local disk, more
/// on an RBD image), or `PFS_COPY_WRITERS` (1 to 32) when it is set.
fn writers_for(dev: &dyn pfs_core::Device) -> usize {
    std::env::var("PFS_COPY_WRITERS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| (1..=MAX_WRITERS).contains(n))
        .unwrap_or_else(|| dev.write_depth().clamp(1, MAX_WRITERS))
}

/// Filled buffers each reader may have waiting for the writers (it has at
/// most one more, being filled): with a deep queue a copy keeps going
/// while other work delays some of its threads. A reader makes a new
/// buffer only when none has come back, so at most 80 MiB are in use, and
/// far less when the writes keep up.
const READ_AHEAD: usize = 4;

/// A filled buffer on its way from a reader to a writer.
struct Piece {
    buf: AlignedBuf,
    off: u64,
    len: usize,
    /// The reader the buffer goes back to.
    reader: usize,
}

/// Streams `size` bytes of `reader` to `write(w, buf, off)` through
/// [`READERS`] reader threads and `depth` writer threads (`w` is the
/// writer's number, for destinations with a handle per writer). The
/// pieces are handed out in file order, and `before(off)` runs before the
/// piece at `off` is handed to a writer (with no other `before` running),
/// so the destination can prepare ranges ahead of the writes. Every byte
/// is written once `pump` returns `Ok`; on an error the copy stops soon
/// and the first error is returned.
///
/// Each reader fills its own few 4 MiB buffers (aligned for direct IO, so
/// neither side needs a bounce copy) and gets them back from the writers,
/// so memory stays bounded whatever the speeds of the two sides. Each
/// byte written, and every byte of the holes left out, is counted in the
/// job's `progress`.
fn pump(
    job: &Job<'_, '_>,
    depth: usize,
    mut before: impl FnMut(u64) -> Result<(), CopyError>,
    write: impl Fn(usize, &[u8], u64) -> Result<(), CopyError> + Sync,
) -> Result<(), CopyError> {
    type Filled = Result<Piece, CopyError>;
    let (reader, size, list, progress) = (job.reader, job.size, job.pieces, job.progress);
    let len_at = |off: u64| CHUNK.min((size - off) as usize);
    let total: u64 = list.iter().map(|&off| len_at(off) as u64).sum();
    // The holes are copied by being left out.
    progress.inc(size - total);
    let pieces = list.len() as u64;
    let nreaders = (READERS as u64).min(pieces).max(1) as usize;
    let nwriters = (depth as u64).min(pieces).max(1) as usize;
    let written = AtomicU64::new(0);
    let failed = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let mut filled = Vec::with_capacity(nreaders);
        let mut free = Vec::with_capacity(nreaders);
        for k in 0..nreaders {
            let (full_tx, full_rx) = mpsc::sync_channel::<Filled>(READ_AHEAD);
            let (free_tx, free_rx) = mpsc::channel::<AlignedBuf>();
            filled.push(full_rx);
            free.push(free_tx);
            s.spawn(move || {
                let mut made = 0;
                for &off in list.iter().skip(k).step_by(nreaders) {
                    // A buffer the writers are done with; a new one only
                    // when none is back yet and the quota allows (so a
                    // copy whose writes keep up uses few), else wait for
                    // one (none coming: the copy is over).
                    let mut buf = match free_rx.try_recv() {
                        Ok(b) => b,
                        Err(_) if made <= READ_AHEAD => {
                            made += 1;
                            AlignedBuf::new(CHUNK)
                        }
                        Err(_) => match free_rx.recv() {
                            Ok(b) => b,
                            Err(_) => return,
                        },
                    };
                    let len = len_at(off);
                    let r = match reader.read_at(&mut buf.as_mut_slice()[..len], off) {
                        Ok(n) if n == len => Ok(Piece {
                            buf,
                            off,
                            len,
                            reader: k,
                        }),
                        Ok(_) => Err(CopyError::new(
                            5,
                            "the source shrank while it was being copied",
                        )),
                        Err(e) => Err(e),
                    };
                    let stop = r.is_err();
                    if full_tx.send(r).is_err() || stop {
                        return;
                    }
                }
            });
        }
        let mut work = Vec::with_capacity(nwriters);
        let mut writers = Vec::with_capacity(nwriters);
        for w in 0..nwriters {
            let (tx, rx) = mpsc::sync_channel::<Piece>(READ_AHEAD);
            work.push(tx);
            let (free, write, written, failed) = (free.clone(), &write, &written, &failed);
            writers.push(s.spawn(move || {
                let mut result = Ok(());
                // After a failure the writer keeps taking pieces (without
                // writing them) so every buffer goes back to its reader
                // and nobody waits for one forever.
                for p in rx {
                    if result.is_ok() {
                        result = write(w, &p.buf.as_slice()[..p.len], p.off);
                        match &result {
                            Ok(()) => {
                                written.fetch_add(p.len as u64, Ordering::Relaxed);
                                progress.inc(p.len as u64);
                            }
                            Err(_) => failed.store(true, Ordering::Relaxed),
                        }
                    }
                    // A reader that has finished wants no buffer back.
                    let _ = free[p.reader].send(p.buf);
                }
                result
            }));
        }
        drop(free);
        let mut result = Ok(());
        for i in 0..pieces {
            if failed.load(Ordering::Relaxed) {
                break;
            }
            // A signal stops the copy between pieces.
            if let Err(e) = super::interrupt::check() {
                result = Err(e);
                break;
            }
            let piece = match filled[(i % nreaders as u64) as usize].recv() {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => {
                    result = Err(e);
                    break;
                }
                Err(_) => {
                    result = Err(CopyError::new(5, "a copy reader stopped early"));
                    break;
                }
            };
            if let Err(e) = before(piece.off) {
                result = Err(e);
                break;
            }
            if work[(i % nwriters as u64) as usize].send(piece).is_err() {
                break;
            }
        }
        // Closing the queues lets the writers finish what they hold; the
        // readers stop once nothing takes their pieces.
        drop(work);
        drop(filled);
        for h in writers {
            let r = h
                .join()
                .unwrap_or_else(|_| Err(CopyError::new(5, "a copy writer panicked")));
            if result.is_ok() {
                result = r;
            }
        }
        result?;
        if written.load(Ordering::Relaxed) == total {
            Ok(())
        } else {
            Err(CopyError::new(5, "the copy stopped early"))
        }
    })
}

/// What one file's copy moves: the pieces of `reader` (offsets of 4 MiB
/// pieces that hold data) of a `size`-byte file; the bytes copied, holes
/// included, are counted in `progress`.
struct Job<'a, 'r> {
    reader: &'a Reader<'r>,
    size: u64,
    pieces: &'a [u64],
    progress: &'a Progress,
}

fn copy_to_local(job: &Job<'_, '_>, tmp: &Path, dst: &Path) -> Result<(), CopyError> {
    let out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .map_err(|e| io_err("cannot create", tmp, e))?;
    // The full size first: the pieces not written stay holes.
    out.set_len(job.size)
        .map_err(|e| io_err("cannot size", tmp, e))?;
    // Whole 4 KiB-aligned chunks go through a second, O_DIRECT descriptor
    // when the local file system allows it, so the disk writes overlap the
    // reads instead of piling up for the final flush.
    let direct = fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_DIRECT.bits())
        .open(tmp)
        .ok();
    pump(
        job,
        WRITERS,
        |_| Ok(()),
        |_, buf, off| {
            let aligned =
                buf.len() % 4096 == 0 && off % 4096 == 0 && (buf.as_ptr() as usize) % 4096 == 0;
            match (&direct, aligned) {
                (Some(d), true) => d.write_all_at(buf, off),
                _ => out.write_all_at(buf, off),
            }
            .map_err(|e| io_err("cannot write", tmp, e))
        },
    )?;
    out.sync_all().map_err(|e| io_err("cannot flush", tmp, e))?;
    drop(direct);
    drop(out);
    fs::rename(tmp, dst).map_err(|e| io_err("cannot rename into", dst, e))?;
    let dir = dst
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("cannot flush directory", dir, e))
}

fn copy_to_pfs(
    job: &Job<'_, '_>,
    mount: &Arc<Mount>,
    tmp: &Place<'_>,
    dst: &Place<'_>,
) -> Result<(), CopyError> {
    let size = job.size;
    let tmp_path = fs_path(tmp).unwrap_or_default();
    let first = mount.open_file(
        &tmp_path,
        OpenOptions {
            create: true,
            exclusive: true,
            write: true,
            ..OpenOptions::default()
        },
    )?;
    // A handle per writer: each keeps its own deferred extents, so the
    // writers' data IO does not wait for one another.
    let writers = writers_for(mount.device().as_ref());
    let mut outs = vec![first];
    for _ in 1..writers {
        outs.push(mount.open_ino(
            outs[0].ino(),
            OpenOptions {
                write: true,
                ..OpenOptions::default()
            },
        )?);
    }
    // Per GiB: one transaction gives the file the blocks of that GiB's
    // pieces before any data goes there (none for holes), the data goes
    // straight to them, and the written extents and size are committed a
    // GiB at a time (transactions stay far below the smallest journal).
    // Each writer writes whole blocks the allocation made, so no write
    // depends on another's.
    const SLICE: u64 = 1 << 30;
    let mut slice = None;
    pump(
        job,
        writers,
        |off| {
            if slice == Some(off / SLICE) {
                return Ok(());
            }
            slice = Some(off / SLICE);
            PfsFile::commit_all(&outs)?;
            // The slice's pieces, as runs of adjacent pieces.
            let first = off / SLICE * SLICE;
            let mut runs: Vec<(u64, u64)> = Vec::new();
            for &p in job.pieces.iter().filter(|&&p| p / SLICE == first / SLICE) {
                let end = (p + CHUNK as u64).min(size);
                match runs.last_mut() {
                    Some(r) if r.1 == p => r.1 = end,
                    _ => runs.push((p, end)),
                }
            }
            for (start, end) in runs {
                outs[0].allocate(
                    start,
                    end - start,
                    FallocMode {
                        keep_size: true,
                        no_hide_stale: false,
                    },
                )?;
            }
            Ok(())
        },
        |w, buf, off| {
            outs[w]
                .write_at_deferred(buf, off)
                .map(|_| ())
                .map_err(Into::into)
        },
    )?;
    // Everything is written: commit every writer's extents (one
    // transaction), give the file its full size (a hole at the end has no
    // piece that would), then flush the device once before the file may
    // take its name.
    PfsFile::commit_all(&outs)?;
    if outs[0].getattr()?.size != size {
        outs[0].set_len(size)?;
    }
    outs[0].sync_all()?;
    drop(outs);
    let (Some(from), Some(to)) = (fs_path(tmp), fs_path(dst)) else {
        return Err(CopyError::new(22, "internal: not a PFS place"));
    };
    // One committed transaction swaps the new file in.
    mount
        .rename_path(&from, &to)
        .map_err(|e| CopyError::from(e).with_path(&dst.shown()))?;
    Ok(())
}

/// Whether `a` and `b` hold the same bytes, compared a chunk at a time.
pub fn same_content(a: &Place<'_>, b: &Place<'_>) -> Result<bool, CopyError> {
    let (Kind::File(na), Kind::File(nb)) = (a.kind()?, b.kind()?) else {
        return Ok(false);
    };
    if na != nb {
        return Ok(false);
    }
    let (ra, rb) = (open_reader(a)?, open_reader(b)?);
    let (mut x, mut y) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let mut off = 0u64;
    while off < na {
        let n = CHUNK.min((na - off) as usize);
        let ka = ra.read_at(&mut x[..n], off)?;
        let kb = rb.read_at(&mut y[..n], off)?;
        if ka != n || kb != n || x[..n] != y[..n] {
            return Ok(false);
        }
        off += n as u64;
    }
    Ok(true)
}
