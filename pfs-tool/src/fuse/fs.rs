//! The FUSE adapter: each kernel request becomes one call of the core's
//! inode-based API, each [`CoreError`] its errno through
//! [`CoreError::errno`]. No filesystem logic lives here beyond what the
//! kernel protocol itself needs (inode number mapping, handle tables,
//! directory offsets).
//!
//! FUSE inode numbers are PFS inode numbers plus one, so the FUSE root (1)
//! is the PFS root (0) and every number is stable for the inode's life.
//!
//! A file being written gets its blocks ahead (as much again as it has, up
//! to [`ALLOC_AHEAD`]; what is left past the end goes back on close).
//! Writes go straight to the device with [`File::write_at_deferred`]; their
//! extents and the new size are committed in one transaction on `flush`
//! (every `close`), `fsync`, `release`, before anything looks at the file
//! (`getattr`, `lookup`, `read`, `setattr`, `fallocate`), and after every
//! [`COMMIT_EVERY`] bytes. All handles of one inode share one core [`File`],
//! so their uncommitted extents are one set.

use super::log;
use fuser::{
    Errno, FileAttr, FileHandle, FileType as FuseType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};
use parking_lot::Mutex;
use pfs_core::{
    Attr, CoreError, FallocMode, File, FileType, Mode, Mount, OpenOptions, Result as CoreResult,
};
use pfs_format::layout::{BLOCK_SIZE, JOURNAL_FILE_INO, PAXOS_FILE_INO};
use pfs_format::MetaType;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Uncommitted bytes after which a write commits its extents anyway, so a
/// transaction stays far below the smallest journal.
pub const COMMIT_EVERY: u64 = 256 << 20;

/// The most a write allocates ahead of the file's end.
pub const ALLOC_AHEAD: u64 = 64 << 20;

/// Largest write the kernel may send (it caps this at its own limit,
/// 1 MiB with the default `max_pages`).
pub const MAX_WRITE: u32 = 8 << 20;

/// How long the kernel may cache names and attributes on the writer's
/// mount (nobody else changes the filesystem).
const WRITER_TTL: Duration = Duration::from_secs(1);

/// The same on a read-only mount, which must show the writer's changes
/// within a second.
const READER_TTL: Duration = Duration::from_millis(200);

/// One inode's open state: the core handle all its FUSE handles share.
struct Open {
    file: Arc<File>,
    handles: usize,
    /// Bytes written since the last commit.
    dirty: u64,
    /// End of the last range allocated ahead; a write ending below it
    /// leaves any allocation it needs (a hole) to the core.
    alloc_end: u64,
    /// Writes allocated blocks past the written end, to be given back
    /// when the file closes.
    ahead: bool,
}

/// A directory listing taken at `opendir`, served in pieces by `readdir`.
type Listing = Vec<(Vec<u8>, u64, FileType)>;

/// The filesystem the FUSE session serves.
pub struct PfsFs {
    mount: Option<Arc<Mount>>,
    ttl: Duration,
    uid: u32,
    gid: u32,
    files: Mutex<HashMap<u64, Open>>,
    /// File handle → PFS inode.
    handles: Mutex<HashMap<u64, u64>>,
    dirs: Mutex<HashMap<u64, Listing>>,
    next_fh: AtomicU64,
    /// Set when `destroy` flushed and unmounted the PFS.
    pub unmount_error: Arc<Mutex<Option<String>>>,
}

/// A core error as the errno the kernel passes on.
fn errno(e: &CoreError) -> Errno {
    let n = e.errno();
    if n == libc::EIO {
        log(&format!("{e}"));
    }
    Errno::from_i32(n)
}

/// Whether `ino` is `.pfs-paxos` or `.pfs-journal`.
fn is_system(ino: u64) -> bool {
    ino == PAXOS_FILE_INO || ino == JOURNAL_FILE_INO
}

fn pfs_ino(ino: INodeNo) -> u64 {
    ino.0.saturating_sub(1)
}

fn fuse_ino(ino: u64) -> INodeNo {
    INodeNo(ino + 1)
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
    /// Serves `mount`; files and directories appear owned by `uid`/`gid`.
    pub fn new(mount: Arc<Mount>, uid: u32, gid: u32) -> PfsFs {
        let ttl = match mount.mode() {
            Mode::ReadOnly => READER_TTL,
            Mode::ReadWrite => WRITER_TTL,
        };
        PfsFs {
            mount: Some(mount),
            ttl,
            uid,
            gid,
            files: Mutex::new(HashMap::new()),
            handles: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            unmount_error: Arc::new(Mutex::new(None)),
        }
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

    fn attr(&self, a: &Attr) -> FileAttr {
        FileAttr {
            ino: fuse_ino(a.ino),
            size: a.size,
            blocks: a.nblock * (BLOCK_SIZE / 512),
            atime: time(a.mtime),
            mtime: time(a.mtime),
            ctime: time(a.ctime),
            crtime: UNIX_EPOCH + Duration::from_micros(a.btime),
            kind: kind(a.kind),
            perm: if a.is_dir() { 0o755 } else { 0o644 },
            // Directories: 1, the usual "not counted" (PFS keeps no
            // subdirectory count), so tools do not infer leaves from it.
            nlink: if a.is_dir() { 1 } else { a.nlink.max(1) as u32 },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 1 << 20,
            flags: 0,
        }
    }

    /// Commits the uncommitted writes to `ino`, if any (cheap when there
    /// are none).
    fn settle(&self, ino: u64) -> CoreResult<()> {
        let file = {
            let mut files = self.files.lock();
            match files.get_mut(&ino) {
                Some(o) => {
                    o.dirty = 0;
                    Arc::clone(&o.file)
                }
                None => return Ok(()),
            }
        };
        file.commit()
    }

    fn getattr_of(&self, ino: u64) -> CoreResult<FileAttr> {
        self.settle(ino)?;
        Ok(self.attr(&self.m()?.getattr(ino)?))
    }

    fn file_of(&self, fh: FileHandle) -> CoreResult<(u64, Arc<File>)> {
        let ino = *self.handles.lock().get(&fh.0).ok_or(CoreError::BadHandle {
            what: "unknown file handle",
        })?;
        let files = self.files.lock();
        let o = files.get(&ino).ok_or(CoreError::BadHandle {
            what: "file handle without an open file",
        })?;
        Ok((ino, Arc::clone(&o.file)))
    }

    /// Opens `ino` for a new FUSE handle.
    fn open_handle(&self, ino: u64, flags: i32) -> CoreResult<u64> {
        let m = self.m()?;
        let write = flags & libc::O_ACCMODE != libc::O_RDONLY;
        if write {
            self.writable()?;
        }
        let mut files = self.files.lock();
        if let Some(o) = files.get_mut(&ino) {
            o.handles += 1;
        } else {
            let opts = OpenOptions {
                // One handle serves every opener, so it may write unless the
                // mount or the file (system files) cannot be written.
                write: m.mode() == Mode::ReadWrite && !is_system(ino),
                ..OpenOptions::default()
            };
            let file = m.open_ino(ino, opts)?;
            files.insert(
                ino,
                Open {
                    file: Arc::new(file),
                    handles: 1,
                    dirty: 0,
                    alloc_end: 0,
                    ahead: false,
                },
            );
        }
        drop(files);
        if write && is_system(ino) {
            self.close_handle(ino)?;
            return Err(CoreError::SystemFile {
                path: format!("inode {ino}"),
                op: "opening it for writing",
            });
        }
        if write && flags & libc::O_TRUNC != 0 {
            if let Err(e) = self.set_size(ino, 0) {
                let _ = self.close_handle(ino);
                return Err(e);
            }
        }
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles.lock().insert(fh, ino);
        Ok(fh)
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
            Some(o) => self.finish(ino, o),
            None => Ok(()),
        }
    }

    /// Closes the last handle of `ino`: commits, then gives back blocks
    /// allocated ahead past the end.
    fn finish(&self, ino: u64, o: Open) -> CoreResult<()> {
        o.file.commit()?;
        if o.ahead {
            let m = self.m()?;
            let size = m.getattr(ino)?.size;
            if o.alloc_end > size.next_multiple_of(BLOCK_SIZE) {
                m.truncate(ino, size)?;
            }
        }
        Ok(())
    }

    /// Sets the size (`truncate`, `O_TRUNC`) after committing what is
    /// pending.
    fn set_size(&self, ino: u64, len: u64) -> CoreResult<()> {
        self.settle(ino)?;
        if let Some(o) = self.files.lock().get_mut(&ino) {
            o.alloc_end = o.alloc_end.min(len - len % BLOCK_SIZE);
        }
        self.m()?.truncate(ino, len)
    }

    /// Makes sure the blocks of `[off, end)` exist, allocating ahead of a
    /// file that is being written: as much again as the file already has
    /// before `off`, up to [`ALLOC_AHEAD`], so a sequential writer costs
    /// one allocating transaction per up to 64 MiB instead of one per
    /// block.
    fn reserve(&self, ino: u64, file: &File, off: u64, end: u64) -> CoreResult<()> {
        let known = self.files.lock().get(&ino).map_or(0, |o| o.alloc_end);
        if end <= known {
            return Ok(());
        }
        let start = off - off % BLOCK_SIZE;
        let mut extra = start.min(ALLOC_AHEAD);
        let blocks = self.m()?.blocks(ino)?;
        let stop = loop {
            let stop = end.next_multiple_of(BLOCK_SIZE).saturating_add(extra);
            if (start / BLOCK_SIZE..stop / BLOCK_SIZE).all(|b| blocks.contains_key(&b)) {
                break stop;
            }
            let mode = FallocMode {
                keep_size: true,
                no_hide_stale: false,
            };
            match file.allocate(start, stop - start, mode) {
                Ok(()) => break stop,
                // Too little room to allocate ahead: just what is written.
                Err(CoreError::NoSpace { .. }) if extra > 0 => extra = 0,
                Err(e) => return Err(e),
            }
        };
        if let Some(o) = self.files.lock().get_mut(&ino) {
            o.alloc_end = o.alloc_end.max(stop);
            o.ahead |= extra > 0;
        }
        Ok(())
    }

    /// Replies to a lookup or mkdir with the entry of the inode found or
    /// made, or with the error.
    fn reply_entry(&self, r: CoreResult<u64>, reply: ReplyEntry) {
        match r.and_then(|ino| self.getattr_of(ino)) {
            Ok(a) => reply.entry(&self.ttl, &a, Generation(0)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    /// Replies with attributes, or with the error.
    fn reply_attr(&self, r: CoreResult<FileAttr>, reply: ReplyAttr) {
        match r {
            Ok(a) => reply.attr(&self.ttl, &a),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn do_setattr(&self, ino: u64, size: Option<u64>) -> CoreResult<FileAttr> {
        if let Some(len) = size {
            self.writable()?;
            self.set_size(ino, len)?;
        }
        self.getattr_of(ino)
    }

    fn do_write(&self, fh: FileHandle, off: u64, data: &[u8]) -> CoreResult<usize> {
        self.writable()?;
        let (ino, file) = self.file_of(fh)?;
        let end = off
            .checked_add(data.len() as u64)
            .filter(|&e| e <= pfs_core::MAX_FILE_SIZE)
            .ok_or_else(|| CoreError::InvalidArgument("write past the largest file size".into()))?;
        self.reserve(ino, &file, off, end)?;
        let n = file.write_at_deferred(data, off)?;
        let commit = {
            let mut files = self.files.lock();
            match files.get_mut(&ino) {
                Some(o) => {
                    o.dirty += n as u64;
                    if o.dirty >= COMMIT_EVERY {
                        o.dirty = 0;
                        true
                    } else {
                        false
                    }
                }
                None => false,
            }
        };
        if commit {
            file.commit()?;
        }
        Ok(n)
    }

    fn do_statfs(&self) -> CoreResult<(u64, u64, u64, u64)> {
        self.m()?.with_meta(|meta| {
            let (bfree, bused) = meta.counts(MetaType::BlkTag);
            let (ifree, iused) = meta.counts(MetaType::Inode);
            (bfree + bused, bfree, ifree + iused, ifree)
        })
    }

    fn do_opendir(&self, ino: u64) -> CoreResult<u64> {
        let m = self.m()?;
        let parent = m.lookup(ino, b"..")?;
        let mut list: Listing = vec![
            (b".".to_vec(), ino, FileType::Dir),
            (b"..".to_vec(), parent, FileType::Dir),
        ];
        list.extend(m.readdir(ino)?.map(|e| (e.name, e.ino, e.kind)));
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.dirs.lock().insert(fh, list);
        Ok(fh)
    }

    fn do_fallocate(&self, fh: FileHandle, off: u64, len: u64, mode: i32) -> CoreResult<()> {
        self.writable()?;
        if mode & !libc::FALLOC_FL_KEEP_SIZE != 0 {
            return Err(CoreError::InvalidArgument(format!(
                "fallocate mode {mode:#x} (only 0 and FALLOC_FL_KEEP_SIZE)"
            )));
        }
        let (ino, file) = self.file_of(fh)?;
        self.settle(ino)?;
        file.allocate(
            off,
            len,
            FallocMode {
                keep_size: mode & libc::FALLOC_FL_KEEP_SIZE != 0,
                no_hide_stale: false,
            },
        )
    }

    /// Commits every open file and flushes the device.
    fn settle_all(&self) -> CoreResult<()> {
        let files: Vec<Arc<File>> = self
            .files
            .lock()
            .values_mut()
            .map(|o| {
                o.dirty = 0;
                Arc::clone(&o.file)
            })
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
        Err(e) => reply.error(errno(&e)),
    }
}

impl Filesystem for PfsFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // The kernel caps this at its own limit; ask for as much as it gives.
        let _ = config.set_max_write(MAX_WRITE);
        Ok(())
    }

    fn destroy(&mut self) {
        let mut r = self.settle_all();
        self.dirs.lock().clear();
        self.handles.lock().clear();
        let open: Vec<(u64, Open)> = self.files.lock().drain().collect();
        for (ino, o) in open {
            let done = self.finish(ino, o);
            if r.is_ok() {
                r = done;
            }
        }
        let Some(m) = self.mount.take() else { return };
        let r = r.and_then(|()| match Arc::try_unwrap(m) {
            Ok(m) => m.unmount(),
            // Some thread still holds it: flush what is committed; the
            // lease goes when the process ends.
            Err(m) => m.device().sync(),
        });
        if let Err(e) = r {
            log(&format!("unmounting: {e}"));
            *self.unmount_error.lock() = Some(e.to_string());
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let r = self
            .m()
            .and_then(|m| m.lookup(pfs_ino(parent), name.as_bytes()));
        self.reply_entry(r, reply);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.reply_attr(self.getattr_of(pfs_ino(ino)), reply);
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // PFS stores no owner, mode or settable times: chmod, chown and
        // utimes are accepted and change nothing. Only the size is stored.
        self.reply_attr(self.do_setattr(pfs_ino(ino), size), reply);
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
        let r = self.writable().and_then(|()| {
            self.m()?
                .create(pfs_ino(parent), name.as_bytes(), FileType::Dir)
        });
        self.reply_entry(r, reply);
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
            if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                match m.lookup(dir, to) {
                    Ok(_) => {
                        return Err(CoreError::Exists {
                            path: newname.to_string_lossy().into_owned(),
                        })
                    }
                    Err(CoreError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            m.rename(pfs_ino(parent), name.as_bytes(), dir, to)
        });
        reply_empty(r, reply);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.open_handle(pfs_ino(ino), flags.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(errno(&e)),
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
        let r = self.writable().and_then(|()| {
            let m = self.m()?;
            let dir = pfs_ino(parent);
            let ino = match m.create(dir, name.as_bytes(), FileType::File) {
                Ok(ino) => ino,
                Err(CoreError::Exists { .. }) if flags & libc::O_EXCL == 0 => {
                    m.lookup(dir, name.as_bytes())?
                }
                Err(e) => return Err(e),
            };
            let fh = self.open_handle(ino, flags)?;
            Ok((fh, self.getattr_of(ino)?))
        });
        match r {
            Ok((fh, a)) => reply.created(
                &self.ttl,
                &a,
                Generation(0),
                FileHandle(fh),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(errno(&e)),
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
        let r = self.file_of(fh).and_then(|(ino, file)| {
            self.settle(ino)?;
            let mut buf = vec![0u8; size as usize];
            let n = file.read_at(&mut buf, offset)?;
            buf.truncate(n);
            Ok(buf)
        });
        match r {
            Ok(buf) => reply.data(&buf),
            Err(e) => reply.error(errno(&e)),
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
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply_empty(self.settle(pfs_ino(ino)), reply);
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
        let ino = self.handles.lock().remove(&fh.0);
        match ino {
            Some(ino) => reply_empty(self.close_handle(ino), reply),
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
        let r = self.file_of(fh).and_then(|(ino, file)| {
            self.settle(ino)?;
            file.sync_all()
        });
        reply_empty(r, reply);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.do_opendir(pfs_ino(ino)) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(errno(&e)),
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
        for (i, (name, ino, k)) in list.iter().enumerate().skip(offset as usize) {
            if reply.add(
                fuse_ino(*ino),
                i as u64 + 1,
                kind(*k),
                OsStr::from_bytes(name),
            ) {
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
        let r = self.m().and_then(|m| match m.mode() {
            Mode::ReadWrite => m.device().sync(),
            Mode::ReadOnly => Ok(()),
        });
        reply_empty(r, reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.do_statfs() {
            Ok((blocks, bfree, files, ffree)) => reply.statfs(
                blocks,
                bfree,
                bfree,
                files,
                ffree,
                BLOCK_SIZE as u32,
                pfs_format::layout::MAX_NAME_LEN as u32,
                BLOCK_SIZE as u32,
            ),
            Err(e) => reply.error(errno(&e)),
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
