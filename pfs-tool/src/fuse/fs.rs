//! The FUSE adapter: each kernel request becomes one call of the core's
//! inode-based API, each [`CoreError`] its errno through
//! [`CoreError::errno`]. No filesystem logic lives here beyond what the
//! kernel protocol itself needs (node numbers, handle tables, directory
//! offsets) and what a read-only mount needs to keep the kernel from
//! mixing up the files of a writer on another host (below).
//!
//! A FUSE node is one file or directory: its PFS inode number plus one in
//! the low 32 bits, its birth time (folded to 32 bits) in the high ones
//! (see [`node_of`]); the root is 1. The number stays the same for the
//! file's life, and a PFS inode number given to a new file makes a new
//! node.
//!
//! The writer's files are opened write-behind
//! ([`OpenOptions::write_behind`], the core's policy): writes go straight
//! to the device (large aligned ones in the background, several at once,
//! the request answered once its bytes are copied), blocks are allocated
//! ahead of a growing file, and the
//! extents and the new size are committed in one transaction on `flush`
//! (every `close`), `fsync`, `release`, before anything looks at the file
//! (`getattr`, `lookup`, `read`, `setattr`, `fallocate`), and after every
//! 256 MiB. The writer's transactions (creates, renames, those commits)
//! return once they are in the journal and applied
//! ([`Mount::defer_durability`]): they are durable, and seen by other
//! hosts, after `fsync` or `fsyncdir`, at unmount, or within
//! [`DURABLE_WITHIN`] (a background commit), as a local file system makes
//! what nobody fsynced durable a little later. All handles of one inode share one core [`File`], so their
//! uncommitted extents are one set; the last `release` finishes it
//! ([`File::finish`]). The writer's mount reads ahead [`READAHEAD_KB`]
//! (set at the first open), so a sequential reader's requests come 1 MiB
//! at a time, several at once, to the request threads.
//!
//! On a read-only mount the writer of another host may free a file at any
//! moment and give its inode number and blocks to a new one. So an inode
//! number alone never says which file the kernel means; its node does
//! ([`PfsFs::nodes`] keeps the full birth time of each node the kernel was
//! told of, and the name it was found by). A request for a node whose file
//! is gone fails with `ESTALE`, on which the kernel looks the name up
//! again; opening it opens what its name leads to now instead, as `pfs
//! read` does (see [`PfsFs::open_follower`]). Each handle holds its own
//! core [`File`] (which checks the birth time on every read), the kernel's
//! page cache is bypassed (`FOPEN_DIRECT_IO`: sizes and data come from one
//! state, here), and a file smaller than 4 MiB is read whole when it is
//! opened, so its reads return one version of it (see
//! [`PfsFs::read_follower`]).

use super::log;
use fuser::{
    Errno, FileAttr, FileHandle, FileType as FuseType, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};
use parking_lot::Mutex;
use pfs_core::is_system;
use pfs_core::limits::{BLOCK_SIZE, ROOT_INO};
use pfs_core::{
    AlignedBuf, Attr, CoreError, FallocMode, File, FileType, Mode, Mount, OpenOptions, Replace,
    Result as CoreResult,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Largest write the kernel may send (it caps this at its own limit,
/// 1 MiB with the default `max_pages`).
pub const MAX_WRITE: u32 = 8 << 20;

/// The readahead of the writer's mount, in KiB: a sequential reader gets
/// several requests of the largest size (1 MiB with the default
/// `max_pages`) at once, served in parallel by the request threads.
const READAHEAD_KB: u32 = 8 << 10;

/// How long the kernel may cache names and attributes on the writer's
/// mount (nobody else changes the filesystem).
const WRITER_TTL: Duration = Duration::from_secs(1);

/// The same on a read-only mount, which must show the writer's changes
/// within a second.
const READER_TTL: Duration = Duration::from_millis(200);

/// How long the writer's changes may stay not durable (so not seen by other
/// hosts, and lost in a crash) when nothing fsyncs them: the period of its
/// background commits.
const DURABLE_WITHIN: Duration = Duration::from_millis(50);

/// What a read-only mount's handle reads at once: a file smaller than
/// this when it is opened, and from where its last read ended (see
/// [`PfsFs::read_follower`]). As much as one read of `pfs read`.
const WINDOW: usize = BLOCK_SIZE as usize;

/// How often a read-only mount's open follows a name to the file it leads
/// to now when the writer keeps replacing that file (as `pfs read` does).
const OPEN_TRIES: usize = 16;

/// Why a request failed.
enum Fail {
    /// What the core reported.
    Core(CoreError),
    /// The kernel named a file or directory that the writer of another
    /// host removed since (its inode number may name another one by now):
    /// `ESTALE`, on which the kernel looks the name up again, so an open or
    /// stat by name finds what the name is now.
    Stale,
    /// A change the mount refuses (`EPERM`): giving a file to another
    /// owner or group, making a device node.
    NotPermitted,
}

impl From<CoreError> for Fail {
    fn from(e: CoreError) -> Fail {
        Fail::Core(e)
    }
}

type FsResult<T> = std::result::Result<T, Fail>;

/// A core error of a call for a file or directory the kernel knows:
/// "not found" there means the writer removed it.
fn stale(e: CoreError) -> Fail {
    match e {
        CoreError::NotFound { .. } => Fail::Stale,
        e => Fail::Core(e),
    }
}

/// A node the kernel was told of.
struct Node {
    /// Its file's or directory's full birth time.
    btime: u64,
    /// The directory node and name it was last found by.
    parent: INodeNo,
    name: Vec<u8>,
    /// Entries of it the kernel has had and not forgotten.
    lookups: u64,
}

/// One FUSE file handle.
struct Handle {
    /// The PFS inode it reads; on a read-only mount not always the node's
    /// the kernel opened (see [`PfsFs::open_follower`]).
    ino: u64,
    /// Its file's birth time (read-only mounts).
    btime: u64,
    /// On the writer's mount the core handle all handles of the inode
    /// share; on a read-only mount this handle's own.
    file: Arc<File>,
    /// Read-only mounts: what this handle read last.
    window: Mutex<Window>,
    /// The writer's mount, a handle opened for writing: background writes
    /// of `file` that failed before this handle was opened or last told of
    /// one (see [`PfsFs::commit_for`]); [`NOT_TOLD`] for other handles.
    failures_seen: AtomicU64,
}

/// [`Handle::failures_seen`] of a handle that is not told of failed writes
/// (it cannot write).
const NOT_TOLD: u64 = u64::MAX;

/// A stretch of a file read by one call of the core, so in one committed
/// state and checked against the writer's frees.
#[derive(Default)]
struct Window {
    start: u64,
    data: Vec<u8>,
    /// The file ended at the end of `data` in that state.
    eof: bool,
    /// Where the read that the last answer belongs to goes on: only its
    /// next request is answered from here. A read that starts anywhere
    /// else (a file read again from the start, an in-place overwrite
    /// looked at again) reads the file anew.
    next: u64,
}

impl Window {
    fn end(&self) -> u64 {
        self.start + self.data.len() as u64
    }

    /// The answer to a read of `size` bytes at `off` from this stretch
    /// alone, if it holds one: all of them, or what it has up to the end of
    /// the file.
    fn answer(&mut self, off: u64, size: usize) -> Option<Vec<u8>> {
        if off != self.next || off < self.start || off > self.end() {
            return None;
        }
        let have = &self.data[(off - self.start) as usize..];
        if have.len() >= size || (self.eof && !have.is_empty()) {
            let got = have[..have.len().min(size)].to_vec();
            self.next = off + got.len() as u64;
            return Some(got);
        }
        None
    }
}

/// One inode's open state on the writer's mount: the core handle all its
/// FUSE handles share.
struct Open {
    file: Arc<File>,
    handles: usize,
}

/// The bytes a read answers with.
enum Read {
    /// Read into an aligned buffer (the writer's mount).
    Aligned(AlignedBuf),
    /// Taken from what a read-only mount's handle read before.
    Copied(Vec<u8>),
}

/// Who the files of a mount belong to and who may use them (`-o uid=`,
/// `gid=`, `umask=`, `quiet`). PFS stores no owner or mode: every file and
/// directory shows these, and the kernel checks each access against them
/// (`default_permissions`).
#[derive(Debug, Clone, Copy)]
pub struct Access {
    /// Owner of every file and directory.
    pub uid: u32,
    /// Their group.
    pub gid: u32,
    /// Bits taken away from `0666` for files and `0777` for directories.
    pub umask: u32,
    /// `chown` and `chgrp` to another owner or group succeed and change
    /// nothing, instead of failing with `EPERM`.
    pub quiet: bool,
}

/// A directory listing taken at `opendir`, served in pieces by `readdir`:
/// names, nodes and types.
type Listing = Vec<(Vec<u8>, INodeNo, FileType)>;

/// The filesystem the FUSE session serves.
pub struct PfsFs {
    mount: Option<Arc<Mount>>,
    /// A read-only mount, following the writer of another host.
    follower: bool,
    ttl: Duration,
    access: Access,
    /// The nodes the kernel was told of (but the root's).
    nodes: Mutex<HashMap<INodeNo, Node>>,
    /// The writer's open files, by inode.
    files: Mutex<HashMap<u64, Open>>,
    handles: Mutex<HashMap<u64, Arc<Handle>>>,
    dirs: Mutex<HashMap<u64, Listing>>,
    next_fh: AtomicU64,
    /// Where the mount is, for its readahead (see [`PfsFs::readahead`]).
    mountpoint: Option<std::path::PathBuf>,
    readahead_set: std::sync::Once,
    /// Set when `destroy` flushed and unmounted the PFS.
    pub unmount_error: Arc<Mutex<Option<String>>>,
    /// The writer's background commits (see [`DURABLE_WITHIN`]).
    committer: Option<pfs_core::Committer>,
    /// Read buffers given back after their reply, for the next reads.
    read_bufs: Mutex<Vec<AlignedBuf>>,
}

/// Read buffers kept for reuse: a fresh megabyte per read is zeroed and
/// faulted in before the device may read into it, which cost more than
/// the reply's copy.
const READ_BUFS: usize = 8;

/// An error as the errno the kernel passes on.
fn errno(e: impl Into<Fail>) -> Errno {
    match e.into() {
        Fail::Stale => Errno::from_i32(libc::ESTALE),
        Fail::NotPermitted => Errno::from_i32(libc::EPERM),
        Fail::Core(e) => {
            let n = e.errno();
            if n == libc::EIO {
                log(&format!("{e}"));
            }
            Errno::from_i32(n)
        }
    }
}

/// The FUSE node of PFS inode `ino` born at `btime`: the inode number plus
/// one in the low 32 bits (a PFS has fewer than 2^31 inodes), the birth
/// time folded to 32 bits in the high ones. So when the writer frees a file
/// and gives its inode number to a new one, the new file is a new node to
/// the kernel, which never takes one for the other: its names and handles
/// of the old one stay the old one's. The root is 1, as FUSE wants it.
fn node_of(ino: u64, btime: u64) -> INodeNo {
    if ino == ROOT_INO {
        return INodeNo(1);
    }
    INodeNo(((btime ^ (btime >> 32)) & 0xffff_ffff) << 32 | (ino + 1))
}

/// The PFS inode of FUSE node `node`.
fn pfs_ino(node: INodeNo) -> u64 {
    (node.0 & 0xffff_ffff).saturating_sub(1)
}

/// The device (`major:minor`) of the newest FUSE mount on `mp`, from
/// /proc/self/mountinfo (which escapes blanks and backslashes in octal).
fn mount_device(mp: &std::path::Path) -> Option<String> {
    let mut want = Vec::new();
    for &b in mp.as_os_str().as_bytes() {
        match b {
            b' ' | b'\t' | b'\n' | b'\\' => want.extend(format!("\\{b:03o}").bytes()),
            _ => want.push(b),
        }
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines()
        .rev()
        .find(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            f.get(4).map(|p| p.as_bytes()) == Some(&want[..])
                && l.split(" - ").nth(1).is_some_and(|t| t.starts_with("fuse"))
        })
        .and_then(|l| l.split(' ').nth(2))
        .map(str::to_owned)
}

fn time(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn kind(k: FileType) -> FuseType {
    match k {
        FileType::File => FuseType::RegularFile,
        FileType::Dir => FuseType::Directory,
    }
}

impl PfsFs {
    /// Serves `mount`; files and directories appear as `access` says.
    pub fn new(mount: Arc<Mount>, access: Access) -> PfsFs {
        let follower = mount.mode() == Mode::ReadOnly;
        let committer = (!follower).then(|| {
            mount.defer_durability();
            mount.spawn_committer(DURABLE_WITHIN)
        });
        PfsFs {
            committer,
            mount: Some(mount),
            follower,
            ttl: if follower { READER_TTL } else { WRITER_TTL },
            access,
            nodes: Mutex::new(HashMap::new()),
            files: Mutex::new(HashMap::new()),
            handles: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            mountpoint: None,
            readahead_set: std::sync::Once::new(),
            unmount_error: Arc::new(Mutex::new(None)),
            read_bufs: Mutex::new(Vec::new()),
        }
    }

    /// Raises the readahead of the writer's mount on `mountpoint` to
    /// [`READAHEAD_KB`] once it is up (the kernel only takes less than its
    /// default at `init`).
    pub fn readahead_on(&mut self, mountpoint: &std::path::Path) {
        if !self.follower {
            let full = mountpoint.canonicalize();
            self.mountpoint = Some(full.unwrap_or_else(|_| mountpoint.to_owned()));
        }
    }

    /// Sets the readahead of the mount (its backing device's
    /// `read_ahead_kb`), once, at the first open: the kernel answered
    /// `init` by then. Best effort: without it reads come in the kernel's
    /// default readahead, 128 KiB.
    fn readahead(&self) {
        let Some(mp) = &self.mountpoint else { return };
        self.readahead_set.call_once(|| {
            let Some(dev) = mount_device(mp) else { return };
            let knob = format!("/sys/class/bdi/{dev}/read_ahead_kb");
            if let Err(e) = std::fs::write(&knob, READAHEAD_KB.to_string()) {
                log(&format!("cannot set the readahead ({knob}): {e}"));
            }
        });
    }

    fn m(&self) -> CoreResult<&Arc<Mount>> {
        self.mount.as_ref().ok_or(CoreError::BadHandle {
            what: "the filesystem is unmounted",
        })
    }

    fn writable(&self) -> CoreResult<()> {
        match self.m()?.mode() {
            Mode::ReadOnly => Err(CoreError::ReadOnly),
            Mode::ReadWrite => Ok(()),
        }
    }

    /// The kernel's attributes of `a`: the values of the core's one
    /// conversion ([`Attr::stat`], what the SDK's `stat` reports too), with
    /// this mount's node number, owner and permissions.
    fn attr(&self, a: &Attr) -> FileAttr {
        let st = a.stat();
        FileAttr {
            ino: node_of(a.ino, a.btime),
            size: st.st_size,
            blocks: st.st_blocks,
            atime: time(st.st_atime),
            mtime: time(st.st_mtime),
            ctime: time(st.st_ctime),
            crtime: UNIX_EPOCH + Duration::from_micros(a.btime),
            kind: kind(a.kind),
            perm: self.perm(a),
            nlink: u32::try_from(st.st_nlink).unwrap_or(u32::MAX),
            uid: self.access.uid,
            gid: self.access.gid,
            rdev: 0,
            blksize: u32::try_from(st.st_blksize).unwrap_or(u32::MAX),
            flags: 0,
        }
    }

    /// The permission bits of `a`: directories `0777`, files `0666`, the
    /// system files (which nothing may change) `0444`, less the umask.
    fn perm(&self, a: &Attr) -> u16 {
        let full = if a.is_dir() {
            0o777
        } else if is_system(a.ino) {
            0o444
        } else {
            0o666
        };
        (full & !self.access.umask) as u16
    }

    /// Before a look at `ino` (a read, a stat, a lookup): commits what the
    /// writer's writes to it put on the device, if any (cheap when there
    /// is nothing), leaving a failed background write to be reported by
    /// the next `flush` or `fsync` ([`File::settle`]); whether the writer
    /// has it open.
    fn settle(&self, ino: u64) -> CoreResult<bool> {
        let Some(file) = self.open_file(ino) else {
            return Ok(false);
        };
        file.settle()?;
        Ok(true)
    }

    /// For `flush` and `fsync` of handle `h`: commits the writer's writes
    /// to its file and, for a handle opened for writing, reports a
    /// background write that failed since `h` was opened or last told of
    /// one. The core handle that the openers of a file share reports each
    /// failure once, to the first commit; every opener that may have
    /// written is told here, as a local file system tells every file open
    /// for writing of a failed writeback at its `fsync`.
    fn commit_for(&self, h: &Handle) -> CoreResult<()> {
        if self.follower {
            // Nothing of it is written here.
            return Ok(());
        }
        if h.failures_seen.load(Ordering::Acquire) == NOT_TOLD {
            // A reader's close commits what landed and takes no failure
            // from those who wrote.
            return h.file.settle();
        }
        let r = h.file.commit();
        let seen = h
            .failures_seen
            .swap(h.file.write_failures(), Ordering::AcqRel);
        r?;
        h.file.failed_since(seen).map_or(Ok(()), Err)
    }

    /// The writer's open file of `ino`, if it has one.
    fn open_file(&self, ino: u64) -> Option<Arc<File>> {
        self.files.lock().get(&ino).map(|o| Arc::clone(&o.file))
    }

    /// Notes that the kernel is told of the node of `a`, found as `name` in
    /// the directory node `parent`.
    fn announce(&self, a: &Attr, parent: INodeNo, name: &[u8]) {
        if a.ino == ROOT_INO {
            return;
        }
        let mut nodes = self.nodes.lock();
        let node = nodes.entry(node_of(a.ino, a.btime)).or_insert(Node {
            btime: a.btime,
            parent,
            name: Vec::new(),
            lookups: 0,
        });
        node.btime = a.btime;
        node.parent = parent;
        node.name = name.to_vec();
        node.lookups += 1;
    }

    /// Takes back `n` entries of `node` the kernel had (or was never given).
    fn forget_node(&self, node: INodeNo, n: u64) {
        let mut nodes = self.nodes.lock();
        if let Some(known) = nodes.get_mut(&node) {
            known.lookups = known.lookups.saturating_sub(n);
            if known.lookups == 0 {
                nodes.remove(&node);
            }
        }
    }

    /// The attributes of the file or directory of `node`: `ESTALE` once the
    /// writer removed it, also when its inode number names a newer one.
    fn node_attr(&self, node: INodeNo) -> FsResult<Attr> {
        let m = self.m()?;
        let ino = pfs_ino(node);
        if ino == ROOT_INO {
            return Ok(m.getattr(ino)?);
        }
        let btime = self.nodes.lock().get(&node).map(|n| n.btime);
        match btime {
            Some(b) => m.getattr_born(ino, b).map_err(stale),
            // Not a node the kernel was told of, or one it forgot.
            None => Err(Fail::Stale),
        }
    }

    /// `ESTALE` if the writer removed the file or directory of `node`.
    fn check_node(&self, node: INodeNo) -> FsResult<()> {
        self.node_attr(node).map(drop)
    }

    fn getattr_of(&self, node: INodeNo) -> FsResult<Attr> {
        self.settle(pfs_ino(node))?;
        self.node_attr(node)
    }

    /// What `name` in the directory of `parent` is: the name looked up and
    /// its inode's attributes read in one state (between two calls the
    /// writer of another host may give the inode number to a new file).
    fn do_lookup(&self, parent: INodeNo, name: &[u8]) -> FsResult<Attr> {
        let m = self.m()?;
        let found = m.lookup_attr(pfs_ino(parent), name);
        // The directory is still there: then it was when the name was
        // looked up in it (a birth time is never given out again).
        self.check_node(parent)?;
        let a = found?;
        if self.settle(a.ino)? {
            // The writer's open file: with the size of what it wrote.
            return Ok(m.getattr(a.ino)?);
        }
        Ok(a)
    }

    fn handle(&self, fh: FileHandle) -> CoreResult<Arc<Handle>> {
        let h = self.handles.lock().get(&fh.0).cloned();
        h.ok_or(CoreError::BadHandle {
            what: "unknown file handle",
        })
    }

    /// Opens `node` for a new FUSE handle.
    fn open_handle(&self, node: INodeNo, flags: i32) -> FsResult<u64> {
        let opts = OpenOptions::from_flags(flags);
        if opts.write {
            self.writable()?;
        }
        let h = if self.follower {
            self.open_follower(node)?
        } else {
            self.check_node(node)?;
            let ino = pfs_ino(node);
            let file = self.open_shared(ino, opts)?;
            Handle {
                ino,
                btime: 0,
                failures_seen: AtomicU64::new(match opts.write {
                    true => file.write_failures(),
                    false => NOT_TOLD,
                }),
                file,
                window: Mutex::new(Window::default()),
            }
        };
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles.lock().insert(fh, Arc::new(h));
        Ok(fh)
    }

    /// Opens `node` on a read-only mount: its file, or, once the writer
    /// replaced or removed that one, the file its name leads to now
    /// (`ESTALE` if none), as `pfs read` does: a name the writer replaces
    /// by rename always has a file, and opening it must not fail because
    /// the kernel has not heard of the newest one yet.
    fn open_follower(&self, node: INodeNo) -> FsResult<Handle> {
        let m = self.m()?;
        let known = self
            .nodes
            .lock()
            .get(&node)
            .map(|n| (n.btime, n.parent, n.name.clone()));
        let Some((mut btime, parent, name)) = known else {
            return Err(Fail::Stale);
        };
        let mut ino = pfs_ino(node);
        for _ in 0..OPEN_TRIES {
            match self.open_version(ino, btime) {
                Err(Fail::Stale) => {}
                r => return r,
            }
            let found = m.lookup_attr(pfs_ino(parent), &name);
            self.check_node(parent)?;
            let a = found.map_err(stale)?;
            (ino, btime) = (a.ino, a.btime);
        }
        Err(Fail::Stale)
    }

    /// Opens file `ino` born at `btime` on a read-only mount, and reads it
    /// whole if it is smaller than [`WINDOW`]; `ESTALE` if it is gone or
    /// has lost its name (the writer frees it, cutting it down first).
    fn open_version(&self, ino: u64, btime: u64) -> FsResult<Handle> {
        let m = self.m()?;
        let opened = m.open_ino(ino, OpenOptions::default());
        // Still there: then it was when opened (a birth time is never
        // given out again), and the handle is of it, not of a newer file
        // with its number.
        let a = self.named(ino, btime)?;
        let h = Handle {
            ino,
            btime,
            file: Arc::new(opened?),
            window: Mutex::new(Window::default()),
            failures_seen: AtomicU64::new(NOT_TOLD),
        };
        if a.kind == FileType::File && a.size < WINDOW as u64 {
            self.fill(&h, &mut h.window.lock(), 0, WINDOW)?;
        }
        Ok(h)
    }

    /// The attributes of `ino` born at `btime` if it still has its name;
    /// `ESTALE` otherwise.
    fn named(&self, ino: u64, btime: u64) -> FsResult<Attr> {
        let a = self.m()?.getattr_born(ino, btime).map_err(stale)?;
        if a.nlink == 0 {
            return Err(Fail::Stale);
        }
        Ok(a)
    }

    /// Opens `ino` on the writer's mount: the core handle all handles of
    /// the inode share.
    fn open_shared(&self, ino: u64, opened: OpenOptions) -> FsResult<Arc<File>> {
        let m = self.m()?;
        let mut files = self.files.lock();
        let file = if let Some(o) = files.get_mut(&ino) {
            o.handles += 1;
            Arc::clone(&o.file)
        } else {
            let write = m.mode() == Mode::ReadWrite && !is_system(ino);
            let opts = OpenOptions {
                // One handle serves every opener, so it may write unless the
                // mount or the file (system files) cannot be written.
                write,
                write_behind: write,
                ..OpenOptions::default()
            };
            let file = Arc::new(m.open_ino(ino, opts)?);
            files.insert(
                ino,
                Open {
                    file: Arc::clone(&file),
                    handles: 1,
                },
            );
            file
        };
        drop(files);
        if opened.write && is_system(ino) {
            self.close_handle(ino)?;
            return Err(CoreError::SystemFile {
                path: format!("inode {ino}"),
                op: "opening it for writing",
            }
            .into());
        }
        if opened.truncate {
            if let Err(e) = self.set_size(ino, 0) {
                let _ = self.close_handle(ino);
                return Err(e.into());
            }
        }
        Ok(file)
    }

    /// Drops one handle of `ino`; the last one commits and closes the file.
    fn close_handle(&self, ino: u64) -> CoreResult<()> {
        let last = {
            let mut files = self.files.lock();
            match files.get_mut(&ino) {
                Some(o) if o.handles > 1 => {
                    o.handles -= 1;
                    None
                }
                Some(_) => files.remove(&ino),
                None => None,
            }
        };
        match last {
            Some(o) => self.finish(o),
            None => Ok(()),
        }
    }

    /// Closes the last handle of `ino`: commits, then gives back blocks
    /// allocated ahead past the end ([`File::finish`]).
    fn finish(&self, o: Open) -> CoreResult<()> {
        o.file.finish()
    }

    /// Sets the size (`truncate`, `O_TRUNC`): through the writer's open
    /// file if it has one (which commits what is pending first).
    fn set_size(&self, ino: u64, len: u64) -> CoreResult<()> {
        match self.open_file(ino) {
            Some(f) if f.options().write => f.set_len(len),
            _ => self.m()?.truncate(ino, len),
        }
    }

    /// Replies to a lookup or mkdir of `name` in `parent` with the entry of
    /// the inode found or made, or with the error.
    fn reply_entry(&self, r: FsResult<Attr>, parent: INodeNo, name: &[u8], reply: ReplyEntry) {
        match r {
            Ok(a) => {
                self.announce(&a, parent, name);
                reply.entry(&self.ttl, &self.attr(&a), Generation(0));
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    /// Replies with attributes, or with the error.
    fn reply_attr(&self, r: FsResult<Attr>, reply: ReplyAttr) {
        match r {
            Ok(a) => reply.attr(&self.ttl, &self.attr(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    /// `truncate`, `chown` and `utimes`. PFS stores no owner: a change to
    /// the mount's own owner and group does nothing, to any other fails
    /// with `EPERM` (unless `quiet`). It stores a modification time, in
    /// seconds; the access time is not stored (it shows the modification
    /// time).
    fn do_setattr(
        &self,
        node: INodeNo,
        owner: (Option<u32>, Option<u32>),
        size: Option<u64>,
        mtime: Option<TimeOrNow>,
    ) -> FsResult<Attr> {
        let other_uid = owner.0.is_some_and(|u| u != self.access.uid);
        let other_gid = owner.1.is_some_and(|g| g != self.access.gid);
        if (other_uid || other_gid) && !self.access.quiet {
            return Err(Fail::NotPermitted);
        }
        let ino = pfs_ino(node);
        if let Some(len) = size {
            self.writable()?;
            self.check_node(node)?;
            self.set_size(ino, len)?;
        }
        if let Some(t) = mtime {
            self.writable()?;
            self.check_node(node)?;
            let secs = match t {
                TimeOrNow::SpecificTime(t) => {
                    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
                }
                TimeOrNow::Now => SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            };
            // What was written before is committed first, so its commit
            // does not stamp its own time over this one.
            self.settle(ino)?;
            self.m()?.set_mtime(ino, secs)?;
        }
        self.getattr_of(node)
    }

    /// Creates (or without `O_EXCL` opens) `name` in the directory of
    /// `parent`; the new handle and the file's attributes.
    fn do_create(&self, parent: INodeNo, name: &[u8], flags: i32) -> FsResult<(u64, Attr)> {
        self.writable()?;
        let m = self.m()?;
        let opts = OpenOptions::from_flags(flags | libc::O_CREAT);
        let (ino, _) = m.create_with(pfs_ino(parent), name, FileType::File, opts.exclusive)?;
        self.settle(ino)?;
        let a = m.getattr(ino)?;
        // Known before the kernel is told of it: opening checks it.
        self.announce(&a, parent, name);
        let node = node_of(a.ino, a.btime);
        let opened = self
            .open_handle(node, flags)
            .and_then(|fh| Ok((fh, self.getattr_of(node)?)));
        if opened.is_err() {
            // The kernel is not told of it after all.
            self.forget_node(node, 1);
        }
        opened
    }

    /// A read through the handle `h` of a read-only mount.
    ///
    /// The writer of another host may replace the file at any time and
    /// give its blocks to another, so what one read(2) gets must come from
    /// one read of the core, which checks that the writer did not free the
    /// blocks it read (the kernel splits a read(2) into requests of at most
    /// 1 MiB). A file smaller than [`WINDOW`] was read whole when it was
    /// opened; a read from where the last one ended reads [`WINDOW`] bytes
    /// at once. The next requests inside what was read, each starting
    /// where the last one ended, are answered from memory, so a file
    /// replaced meanwhile still reads as one version; past that, a file
    /// that is gone fails with `ESTALE`. A read starting anywhere else
    /// reads the file anew.
    fn read_follower(&self, h: &Handle, off: u64, size: usize) -> FsResult<Vec<u8>> {
        let mut w = h.window.lock();
        if let Some(got) = w.answer(off, size) {
            return Ok(got);
        }
        let len = if off == 0 || off == w.end() {
            size.max(WINDOW)
        } else {
            size
        };
        match self.fill(h, &mut w, off, len) {
            Ok(()) => Ok(w.answer(off, size).unwrap_or_default()),
            // Where the last read found the end, and gone since: that read
            // had the whole file (it is looked at again at its end only
            // because the writer may have appended).
            Err(Fail::Stale) if w.eof && off == w.end() => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Reads `len` bytes at `off` of `h`'s file, with one call of the
    /// core, as its window.
    fn fill(&self, h: &Handle, w: &mut Window, off: u64, len: usize) -> FsResult<()> {
        let mut buf = vec![0u8; len];
        let n = h.file.read_at(&mut buf, off).map_err(stale)?;
        if n < len {
            // At the end of the file only if it still has its name: the
            // writer cuts a file it removed down to nothing before it frees
            // it, and a name never comes back to a file that lost it.
            self.named(h.ino, h.btime)?;
        }
        buf.truncate(n);
        *w = Window {
            next: off,
            start: off,
            data: buf,
            eof: n < len,
        };
        Ok(())
    }

    /// A read: the bytes, and how many of them are the answer.
    fn do_read(&self, fh: FileHandle, off: u64, size: u32) -> FsResult<(Read, usize)> {
        let h = self.handle(fh)?;
        if self.follower {
            let got = self.read_follower(&h, off, size as usize)?;
            let n = got.len();
            return Ok((Read::Copied(got), n));
        }
        self.settle(h.ino)?;
        // Aligned, so a direct-IO device reads straight into it; one given
        // back by an earlier read when one is large enough.
        let size = size as usize;
        let kept = {
            let mut bufs = self.read_bufs.lock();
            let at = bufs.iter().position(|b| b.len() >= size);
            at.map(|i| bufs.swap_remove(i))
        };
        let mut buf = kept.unwrap_or_else(|| AlignedBuf::new(size));
        let n = h.file.read_at(&mut buf.as_mut_slice()[..size], off)?;
        Ok((Read::Aligned(buf), n))
    }

    /// Keeps read buffer `buf` for a later read, if there is room.
    fn give_back(&self, buf: AlignedBuf) {
        let mut bufs = self.read_bufs.lock();
        if bufs.len() < READ_BUFS {
            bufs.push(buf);
        }
    }

    fn do_write(&self, fh: FileHandle, off: u64, data: &[u8]) -> CoreResult<usize> {
        self.writable()?;
        // Write-behind: see the module comment.
        self.handle(fh)?.file.write_at(data, off)
    }

    fn do_opendir(&self, node: INodeNo) -> FsResult<u64> {
        let m = self.m()?;
        let ino = pfs_ino(node);
        let listed = m.lookup_attr(ino, b"..").and_then(|up| {
            let mut list: Listing = vec![
                (b".".to_vec(), node, FileType::Dir),
                (b"..".to_vec(), node_of(up.ino, up.btime), FileType::Dir),
            ];
            let entries = m.readdir(ino)?;
            list.extend(entries.map(|e| (e.name, node_of(e.ino, e.btime), e.kind)));
            Ok(list)
        });
        // Still the directory: then it was while listed.
        self.check_node(node)?;
        let list = listed?;
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.dirs.lock().insert(fh, list);
        Ok(fh)
    }

    fn do_fallocate(&self, fh: FileHandle, off: u64, len: u64, mode: i32) -> CoreResult<()> {
        self.writable()?;
        let mode = FallocMode::from_posix(mode)?;
        let h = self.handle(fh)?;
        self.settle(h.ino)?;
        h.file.allocate(off, len, mode)
    }

    /// Commits every open file and flushes the device.
    fn settle_all(&self) -> CoreResult<()> {
        let files: Vec<Arc<File>> = self
            .files
            .lock()
            .values()
            .map(|o| Arc::clone(&o.file))
            .collect();
        for f in files {
            f.commit()?;
        }
        Ok(())
    }
}

fn reply_empty(r: CoreResult<()>, reply: ReplyEmpty) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(e)),
    }
}

impl Filesystem for PfsFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // The kernel caps this at its own limit; ask for as much as it gives.
        let _ = config.set_max_write(MAX_WRITE);
        // As much readahead as the kernel allows at this point (it offers
        // its default, 128 KiB); more once it is up (see `readahead`).
        let offered = match config.set_max_readahead(u32::MAX) {
            Ok(_) => u32::MAX,
            Err(max) => max,
        };
        let _ = config.set_max_readahead(offered);
        // The pieces of one large O_DIRECT read or write (1 MiB each) come
        // as requests at once, not one after the other, and the request
        // threads serve them side by side (the kernel still sends a write
        // that extends the file one piece at a time).
        let _ = config.add_capabilities(InitFlags::FUSE_ASYNC_DIO);
        // No writeback cache on the writer (FUSE_WRITEBACK_CACHE): its
        // writes come as the same 1 MiB requests, after one more copy
        // through the page cache, and measured slower (benches/fuse.rs).
        if self.follower {
            // Files are opened FOPEN_DIRECT_IO; without this the kernel
            // refuses shared mappings of them (older kernels do anyway).
            let _ = config.add_capabilities(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP);
        }
        Ok(())
    }

    fn destroy(&mut self) {
        let mut r = self.settle_all();
        self.dirs.lock().clear();
        self.handles.lock().clear();
        let open: Vec<Open> = self.files.lock().drain().map(|(_, o)| o).collect();
        for o in open {
            let done = self.finish(o);
            if r.is_ok() {
                r = done;
            }
        }
        if let Some(mut c) = self.committer.take() {
            c.stop();
        }
        let Some(m) = self.mount.take() else { return };
        let r = r.and_then(|()| match Arc::try_unwrap(m) {
            Ok(m) => m.unmount(),
            // Some thread still holds it: flush what is committed (or
            // report that writes were stopped); the lease goes when the
            // process ends.
            Err(m) => m.sync(),
        });
        if let Err(e) = r {
            log(&format!("unmounting: {e}"));
            *self.unmount_error.lock() = Some(e.to_string());
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = name.as_bytes();
        self.reply_entry(self.do_lookup(parent, name), parent, name, reply);
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.forget_node(ino, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let r = match fh.filter(|_| self.follower) {
            // fstat: the handle's file, which need not be the one the kernel
            // opened (see open_follower).
            Some(fh) => self.handle(fh).map_err(Fail::from).and_then(|h| {
                let m = self.m()?;
                m.getattr_born(h.ino, h.btime).map_err(stale)
            }),
            None => self.getattr_of(ino),
        };
        self.reply_attr(r, reply);
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // PFS stores no mode: chmod is accepted and changes nothing (the
        // mount's umask decides what files show).
        self.reply_attr(self.do_setattr(ino, (uid, gid), size, mtime), reply);
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let name = name.as_bytes();
        let r = self.writable().and_then(|()| {
            let m = self.m()?;
            m.getattr(m.create(pfs_ino(parent), name, FileType::Dir)?)
        });
        self.reply_entry(r.map_err(Fail::from), parent, name, reply);
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        let name = name.as_bytes();
        // Regular files only: PFS has no device nodes, pipes or sockets
        // (EPERM, as the kernel answers for a filesystem without mknod).
        let r = if mode & libc::S_IFMT != libc::S_IFREG {
            Err(Fail::NotPermitted)
        } else {
            self.writable()
                .and_then(|()| {
                    let m = self.m()?;
                    m.getattr(m.create(pfs_ino(parent), name, FileType::File)?)
                })
                .map_err(Fail::from)
        };
        self.reply_entry(r, parent, name, reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self
            .writable()
            .and_then(|()| self.m()?.unlink(pfs_ino(parent), name.as_bytes()));
        reply_empty(r, reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let r = self
            .writable()
            .and_then(|()| self.m()?.rmdir(pfs_ino(parent), name.as_bytes()));
        reply_empty(r, reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let r = self.writable().and_then(|()| {
            let m = self.m()?;
            let (dir, to) = (pfs_ino(newparent), newname.as_bytes());
            if flags.contains(RenameFlags::RENAME_EXCHANGE) {
                return Err(CoreError::InvalidArgument(
                    "rename: RENAME_EXCHANGE is not supported".into(),
                ));
            }
            let replace = match flags.contains(RenameFlags::RENAME_NOREPLACE) {
                true => Replace::Never,
                false => Replace::Allow,
            };
            m.rename_with(pfs_ino(parent), name.as_bytes(), dir, to, replace)
        });
        reply_empty(r, reply);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.readahead();
        // A read-only mount reads past the page cache: the file the kernel
        // cached pages or a size of may have been replaced since.
        let how = if self.follower {
            FopenFlags::FOPEN_DIRECT_IO
        } else {
            FopenFlags::empty()
        };
        match self.open_handle(ino, flags.0) {
            Ok(fh) => reply.opened(FileHandle(fh), how),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        self.readahead();
        let r = self.do_create(parent, name.as_bytes(), flags);
        match r {
            Ok((fh, a)) => reply.created(
                &self.ttl,
                &self.attr(&a),
                Generation(0),
                FileHandle(fh),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.do_read(fh, offset, size) {
            Ok((Read::Aligned(buf), n)) => {
                reply.data(&buf.as_slice()[..n]);
                self.give_back(buf);
            }
            Ok((Read::Copied(buf), n)) => reply.data(&buf[..n]),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.do_write(fh, offset, data) {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Every close flushes: once another writer took over, nothing more
        // is acknowledged, also when the handle has nothing to commit.
        let r = self
            .handle(fh)
            .and_then(|h| self.commit_for(&h))
            .and_then(|()| self.m()?.check_writer());
        reply_empty(r, reply);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let h = self.handles.lock().remove(&fh.0);
        match h {
            Some(h) => reply_empty(self.close_handle(h.ino), reply),
            None => reply.error(Errno::from_i32(libc::EBADF)),
        }
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let r = self.handle(fh).and_then(|h| {
            if self.follower {
                // Nothing of it is written here.
                return Ok(());
            }
            self.commit_for(&h)?;
            h.file.sync_all()
        });
        reply_empty(r, reply);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.do_opendir(ino) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let dirs = self.dirs.lock();
        let Some(list) = dirs.get(&fh.0) else {
            reply.error(Errno::from_i32(libc::EBADF));
            return;
        };
        for (i, (name, node, k)) in list.iter().enumerate().skip(offset as usize) {
            if reply.add(*node, i as u64 + 1, kind(*k), OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.dirs.lock().remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Every namespace change is committed to the journal when it
        // returns; the flush makes it durable.
        let r = self.m().and_then(|m| m.sync());
        reply_empty(r, reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.m().and_then(|m| m.statfs()) {
            Ok(s) => reply.statfs(
                s.blocks,
                s.blocks_free,
                s.blocks_free,
                s.inodes,
                s.inodes_free,
                s.block_size as u32,
                s.name_max as u32,
                s.block_size as u32,
            ),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        reply_empty(self.do_fallocate(fh, offset, length, mode), reply);
    }
}
