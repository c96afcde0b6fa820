//! The SDK in safe Rust: the process's one mount, its descriptor table and
//! working directory, and every call of `pfsd_sdk.h` in terms of
//! `pfs-core`. The `sys` module only converts C arguments and results.
//!
//! Everything a file system decides is the core's: paths are parsed by
//! [`PfsPath`] (with `/<pbd>` alone the root, [`BarePbd::Root`]), open
//! flags, `fallocate` modes, `lseek` and `struct stat` by
//! [`pfs_core::posix`], and a descriptor is a [`File`] with its own
//! position and appends. What is left here is the C SDK's own: the mount
//! by PBD name, descriptors and directory streams as numbers, the working
//! directory, fork and remount.
//!
//! # Fork
//!
//! A fork handler counts the forks a process went through as a child, and
//! the state records that count when it mounts. When a call finds another
//! count, it runs in a forked child: the inherited mount and
//! descriptors are leaked on purpose (dropping the mount would release the
//! writer lease the parent still holds, and closing a descriptor would
//! touch the parent's bookkeeping), and the child mounts the PBD again with
//! the same arguments. Inherited descriptors and directory streams then
//! fail with `EBADF`.
//!
//! # Remount
//!
//! `pfsd_remount` turns a read-only mount read-write. Processes forked
//! before it have mounts of their own, so the promotion is published in a
//! word of shared anonymous memory created at `pfsd_mount` and inherited by
//! every child: each call of any process of the tree compares it with its
//! own flags and, on a read-only mount, mounts again read-write first.

use crate::error::{refuse, Result};
use crate::sys::{ForkLock, SharedWord};
use pfs_core::posix::{self, Stat};
use pfs_core::{pbd, BarePbd, CoreError, DirEntry, FallocMode, File, FileType, Mode, Mount};
use pfs_core::{MountOptions, OpenOptions, PfsPath};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

/// Mount flag: read.
pub const MNTFLG_RD: i32 = 0x1;
/// Mount flag: write.
pub const MNTFLG_WR: i32 = 0x2;
/// Mount flag: journal (always set by `PFS_RD` and `PFS_RDWR`).
pub const MNTFLG_LOG: i32 = 0x10;
/// Mount flag: a tool mounts, with the filesystem's default host id.
pub const MNTFLG_TOOL: i32 = 0x1000;
/// Mount flag: take the writer lease over from a silent holder.
pub const MNTFLG_PAXOS_BYFORCE: i32 = 0x20_0000;
/// `PFS_RD`: read-only.
pub const PFS_RD: i32 = MNTFLG_RD | MNTFLG_LOG;
/// `PFS_RDWR`: read-write.
pub const PFS_RDWR: i32 = MNTFLG_RD | MNTFLG_WR | MNTFLG_LOG;
/// SDK mode: threads of one process; a forked child has no mount.
pub const PFSD_SDK_THREADS: i32 = 0;
/// SDK mode (default): processes; a forked child mounts again.
pub const PFSD_SDK_PROCESS: i32 = 1;
/// Longest path, with its NUL.
pub const PFS_MAX_PATHLEN: usize = 4096;
/// Bit 30 marks the SDK's descriptors.
pub const PFSD_FD_VALIDBIT: u32 = 30;
/// Open descriptors per process, as in the reference.
pub const MAX_FDS: usize = 102_400;
/// `pfsd_meta_version_get()`.
pub const META_VERSION: u64 = 2;

/// The mount options of the SDK's arguments: the core's for the PBD and
/// the environment ([`MountOptions::from_env`]), shared by the processes of
/// the machine.
pub fn mount_options(pbdname: &str, hostid: u64, flags: i32) -> MountOptions {
    let mode = match flags & MNTFLG_WR != 0 {
        true => Mode::ReadWrite,
        false => Mode::ReadOnly,
    };
    MountOptions {
        hostid,
        force: flags & MNTFLG_PAXOS_BYFORCE != 0,
        // Every SDK process is one of possibly several of this machine
        // (forked or started apart) mounting the PBD.
        shared: true,
        ..MountOptions::from_env(pbdname, mode)
    }
}

/// Mounts PBD `pbdname` as the flags say.
fn mount_pbd(pbdname: &str, hostid: i32, flags: i32) -> Result<Arc<Mount>> {
    mount_pbd_in_child(pbdname, hostid, flags, None)
}

/// [`mount_pbd`], in a forked child starting from the mount it inherited
/// (`inherited`, consumed and never dropped): only what was committed
/// since the fork is read.
fn mount_pbd_in_child(
    pbdname: &str,
    hostid: i32,
    flags: i32,
    inherited: Option<Arc<Mount>>,
) -> Result<Arc<Mount>> {
    // Never dropped, whatever fails below: dropping it would release the
    // parent's lease.
    let inherited = inherited.map(std::mem::ManuallyDrop::new);
    let hostid = match u64::try_from(hostid) {
        Ok(_) if flags & MNTFLG_TOOL != 0 => 0,
        Ok(h) => h,
        Err(_) => return refuse(libc::EINVAL, "negative host id"),
    };
    let writable = flags & MNTFLG_WR != 0;
    let mode = if writable {
        Mode::ReadWrite
    } else {
        Mode::ReadOnly
    };
    let dir = pbd::device_dir_from_env();
    let dev = pbd::open_pbd(pbdname, dir.as_deref(), writable)?;
    let opts = mount_options(pbdname, hostid, flags);
    let mount = match inherited {
        Some(parent) => Mount::open_after_fork(
            Arc::from(dev),
            mode,
            &opts,
            std::mem::ManuallyDrop::into_inner(parent),
        )?,
        None => Mount::open_with(Arc::from(dev), mode, &opts)?,
    };
    Ok(Arc::new(mount))
}

struct Mounted {
    pbd: String,
    hostid: i32,
    flags: i32,
    mount: Arc<Mount>,
    /// [`crate::sys::fork_generation`] when this process mounted.
    generation: u64,
    /// The tree's promoted flags (0: none), see the module comment.
    promoted: SharedWord,
}

/// Everything the SDK keeps per process.
pub struct State {
    mounted: Option<Mounted>,
    /// Open descriptors by number (see [`raw_fd`]).
    fds: Vec<Option<Arc<File>>>,
    /// Free slots of `fds` below its length.
    free: Vec<usize>,
    nopen: usize,
    /// The working directory relative paths start from (`pfsd_chdir`).
    cwd: Option<PfsPath>,
    /// The open directory streams by number (see [`DirHandle`]); boxed so
    /// that the entry `pfsd_readdir` points into stays where it is while
    /// other streams come and go.
    dirs: BTreeMap<u64, Box<DirStream>>,
    /// The number of the last stream opened; numbers are never reused.
    last_dir: u64,
}

static STATE: ForkLock<State> = ForkLock::new(State {
    mounted: None,
    fds: Vec::new(),
    free: Vec::new(),
    nopen: 0,
    cwd: None,
    dirs: BTreeMap::new(),
    last_dir: 0,
});

static SDK_MODE: AtomicI32 = AtomicI32::new(PFSD_SDK_PROCESS);

/// The lock over the SDK's state, for the `sys` module's fork handlers.
pub(crate) fn state_lock() -> &'static ForkLock<State> {
    &STATE
}

/// `pfsd_set_mode`.
pub fn set_mode(mode: i32) {
    if mode == PFSD_SDK_THREADS || mode == PFSD_SDK_PROCESS {
        SDK_MODE.store(mode, Ordering::Relaxed);
    }
}

impl State {
    /// Forgets everything the process inherited from its parent.
    fn leak_inherited(&mut self) {
        if let Some(m) = self.mounted.take() {
            std::mem::forget(m.mount);
            // The shared word stays mapped; `Mounted` holds no other resource.
        }
        std::mem::forget(std::mem::take(&mut self.fds));
        self.free.clear();
        self.nopen = 0;
        // Streams are plain memory (no mount behind them): freed.
        self.dirs.clear();
    }

    /// Brings the state up to date with the process it runs in: after a
    /// fork, mounts again; after a promotion elsewhere in the process tree,
    /// mounts read-write.
    fn ensure(&mut self) -> Result<()> {
        let Some(m) = &self.mounted else {
            return Ok(());
        };
        let me = crate::sys::fork_generation();
        if m.generation != me {
            let (pbdname, hostid, promoted) = (m.pbd.clone(), m.hostid, m.promoted.clone());
            let flags = match promoted.get() {
                0 => m.flags,
                p => p,
            };
            // The parent's mount, whose metadata the child starts from (it
            // is leaked like the rest of what the child inherited).
            let inherited = Arc::clone(&m.mount);
            self.leak_inherited();
            if SDK_MODE.load(Ordering::Relaxed) == PFSD_SDK_THREADS {
                std::mem::forget(inherited);
                return Ok(());
            }
            let mount = mount_pbd_in_child(&pbdname, hostid, flags, Some(inherited))?;
            self.mounted = Some(Mounted {
                pbd: pbdname,
                hostid,
                flags,
                mount,
                generation: me,
                promoted,
            });
            return Ok(());
        }
        let p = m.promoted.get();
        if m.flags & MNTFLG_WR == 0 && p & MNTFLG_WR != 0 {
            self.remount_as(p)?;
        }
        Ok(())
    }

    /// Replaces the mount by one with `flags`, reopening every descriptor
    /// on it (a descriptor whose file cannot be reopened becomes invalid).
    fn remount_as(&mut self, flags: i32) -> Result<()> {
        let Some(m) = &mut self.mounted else {
            return refuse(libc::ENODEV, "no PBD is mounted");
        };
        let fresh = mount_pbd(&m.pbd, m.hostid, flags)?;
        for (i, slot) in self.fds.iter_mut().enumerate() {
            let Some(old) = slot.take() else { continue };
            if let Ok(file) = old.reopen(&fresh) {
                *slot = Some(Arc::new(file));
            } else {
                self.nopen -= 1;
                self.free.push(i);
            }
        }
        m.mount = fresh;
        m.flags = flags;
        Ok(())
    }

    fn mounted(&self) -> Result<&Mounted> {
        self.mounted
            .as_ref()
            .map_or_else(|| refuse(libc::ENODEV, "no PBD is mounted"), Ok)
    }

    /// `path` parsed, a relative one from the working directory.
    fn absolute(&self, path: &[u8]) -> Result<PfsPath> {
        let relative = !path.is_empty() && !path.starts_with(b"/");
        match (relative, &self.cwd) {
            (false, _) => Ok(PfsPath::parse_with(path, BarePbd::Root)?),
            (true, Some(cwd)) => Ok(cwd.join(path)?),
            (true, None) => refuse(libc::ENOENT, "relative path and no working directory"),
        }
    }

    /// Resolves `path` to the mount and the parsed path, whose
    /// [`PfsPath::inner`] is the path inside the filesystem.
    fn locate(&self, path: &[u8]) -> Result<(Arc<Mount>, PfsPath)> {
        let p = self.absolute(path)?;
        Ok((self.mount_of(&p)?, p))
    }

    /// The mount `p` is on: the mounted PBD's, or `ENODEV`.
    fn mount_of(&self, p: &PfsPath) -> Result<Arc<Mount>> {
        let m = self.mounted()?;
        if m.pbd != p.pbd {
            return refuse(libc::ENODEV, "path is on another PBD than the mounted one");
        }
        Ok(Arc::clone(&m.mount))
    }

    fn fd(&self, fd: i32) -> Result<Arc<File>> {
        let raw = raw_fd(fd)?;
        match self.fds.get(raw) {
            Some(Some(f)) => Ok(Arc::clone(f)),
            _ => refuse(libc::EBADF, "bad descriptor"),
        }
    }

    fn insert(&mut self, f: File) -> Result<i32> {
        let idx = match self.free.pop() {
            Some(i) => i,
            None if self.fds.len() < MAX_FDS => {
                self.fds.push(None);
                self.fds.len() - 1
            }
            None => return refuse(libc::EMFILE, "too many open descriptors"),
        };
        self.fds[idx] = Some(Arc::new(f));
        self.nopen += 1;
        let raw = i32::try_from(idx).map_err(|_| crate::error::SdkError::Refused {
            errno: libc::EMFILE,
            what: "too many open descriptors",
        })?;
        Ok(raw | (1 << PFSD_FD_VALIDBIT))
    }
}

/// The table index of an SDK descriptor.
fn raw_fd(fd: i32) -> Result<usize> {
    if fd < 0 || fd & (1 << PFSD_FD_VALIDBIT) == 0 {
        return refuse(libc::EBADF, "not an SDK descriptor");
    }
    Ok((fd & !(1 << PFSD_FD_VALIDBIT)) as usize)
}

/// The state, brought up to date with the process (see [`State::ensure`]).
fn state() -> Result<crate::sys::ForkGuard<'static, State>> {
    let mut st = STATE.lock();
    st.ensure()?;
    Ok(st)
}

fn locate(path: &[u8]) -> Result<(Arc<Mount>, PfsPath)> {
    state()?.locate(path)
}

fn get_fd(fd: i32) -> Result<Arc<File>> {
    raw_fd(fd)?;
    state()?.fd(fd)
}

/// `pfsd_mount` (and `pfsd_sdk_init`): mounts PBD `pbdname` unless a PBD
/// is mounted already (then it does nothing, as the reference).
pub fn mount(pbdname: &str, hostid: i32, flags: i32) -> Result<()> {
    let mut st = state()?;
    if st.mounted.is_some() {
        return Ok(());
    }
    crate::sys::register_fork_handlers();
    pbd::check_pbd_name(pbdname)?;
    let promoted = SharedWord::new()?;
    let mount = mount_pbd(pbdname, hostid, flags)?;
    st.mounted = Some(Mounted {
        pbd: pbdname.to_owned(),
        hostid,
        flags,
        mount,
        generation: crate::sys::fork_generation(),
        promoted,
    });
    Ok(())
}

/// `pfsd_umount`: closes every descriptor and unmounts.
pub fn umount(pbdname: &str) -> Result<()> {
    let mut st = state()?;
    if st.mounted()?.pbd != pbdname {
        return refuse(libc::ENODEV, "that PBD is not mounted");
    }
    let fds = std::mem::take(&mut st.fds);
    st.free.clear();
    st.nopen = 0;
    st.dirs.clear();
    let m = st.mounted.take();
    drop(st);
    drop(fds);
    if let Some(m) = m {
        if let Ok(mount) = Arc::try_unwrap(m.mount) {
            mount.unmount()?;
        }
    }
    Ok(())
}

/// `pfsd_remount`: makes a read-only mount read-write, for this process
/// and, lazily, every process of its tree.
pub fn remount(pbdname: &str, hostid: i32, flags: i32) -> Result<()> {
    let mut st = state()?;
    let m = st.mounted()?;
    if m.pbd != pbdname {
        return refuse(libc::ENODEV, "that PBD is not mounted");
    }
    if m.hostid != hostid {
        return refuse(libc::EINVAL, "remount with another host id");
    }
    if m.flags & MNTFLG_WR != 0 {
        return refuse(libc::EINVAL, "already mounted read-write");
    }
    let promoted = m.promoted.clone();
    st.remount_as(flags)?;
    promoted.set(flags);
    Ok(())
}

/// `pfsd_mount_growfs`: grows the filesystem to the device's size.
pub fn growfs(pbdname: &str) -> Result<()> {
    let st = state()?;
    let m = st.mounted()?;
    if m.pbd != pbdname {
        return refuse(libc::ENODEV, "that PBD is not mounted");
    }
    if m.flags & MNTFLG_WR == 0 {
        return refuse(libc::EROFS, "the PBD is mounted read-only");
    }
    let dir = pbd::device_dir_from_env();
    let dev = pbd::open_pbd(pbdname, dir.as_deref(), true)?;
    let old = m.mount.nchunk()?;
    let new = u64::from(pfs_core::chunks_of(pbdname, dev.len())?);
    if new > old {
        pfs_core::growfs(
            dev.as_ref(),
            pfs_core::GrowfsOptions {
                old_nchunk: old,
                new_nchunk: new,
                force: false,
            },
        )?;
        m.mount.reload()?;
    }
    Ok(())
}

/// `pfsd_abort_request`: nothing is ever waiting on a daemon.
pub fn abort_request() -> Result<()> {
    state()?.mounted().map(|_| ())
}

/// `pfsd_open`.
pub fn open(path: &[u8], flags: i32) -> Result<i32> {
    let (m, p) = locate(path)?;
    let file = m.open_file(p.inner(), OpenOptions::from_flags(flags))?;
    state()?.insert(file)
}

/// `pfsd_close`: frees the descriptor and reports what [`File::close`]
/// finds (nothing when another thread is still in a call on it: the last
/// one out closes the file).
pub fn close(fd: i32) -> Result<()> {
    let raw = raw_fd(fd)?;
    let mut st = state()?;
    match st.fds.get_mut(raw).and_then(Option::take) {
        Some(f) => {
            st.nopen -= 1;
            st.free.push(raw);
            drop(st);
            match Arc::try_unwrap(f) {
                Ok(file) => Ok(file.close()?),
                Err(_) => Ok(()),
            }
        }
        None => refuse(libc::EBADF, "bad descriptor"),
    }
}

/// `pfsd_read`.
pub fn read(fd: i32, buf: &mut [u8]) -> Result<usize> {
    Ok(get_fd(fd)?.read_next(buf)?)
}

fn offset(off: i64) -> Result<u64> {
    u64::try_from(off).map_or_else(|_| refuse(libc::EINVAL, "negative offset"), Ok)
}

/// `pfsd_pread`.
pub fn pread(fd: i32, buf: &mut [u8], off: i64) -> Result<usize> {
    let f = get_fd(fd)?;
    let off = offset(off)?;
    Ok(f.read_at(buf, off)?)
}

/// `pfsd_write`.
pub fn write(fd: i32, buf: &[u8]) -> Result<usize> {
    Ok(get_fd(fd)?.write_next(buf)?)
}

/// `pfsd_pwrite` (with `O_APPEND` it appends, as Linux does).
pub fn pwrite(fd: i32, buf: &[u8], off: i64) -> Result<usize> {
    let f = get_fd(fd)?;
    let off = offset(off)?;
    if f.options().append {
        f.append(buf)?;
        return Ok(buf.len());
    }
    Ok(f.write_at(buf, off)?)
}

/// `pfsd_lseek`.
pub fn lseek(fd: i32, off: i64, whence: i32) -> Result<i64> {
    if fd < 0 {
        return refuse(libc::EINVAL, "negative descriptor");
    }
    let f = get_fd(fd)?;
    let pos = f.seek_to(posix::seek_from(off, whence)?)?;
    // At most MAX_FILE_SIZE, which is i64::MAX.
    i64::try_from(pos).map_or_else(|_| refuse(libc::EOVERFLOW, "offset"), Ok)
}

/// `pfsd_fsync`: commits and flushes the device (nothing to do for a
/// descriptor not open for writing).
pub fn fsync(fd: i32) -> Result<()> {
    Ok(get_fd(fd)?.sync_all()?)
}

/// `pfsd_ftruncate`.
pub fn ftruncate(fd: i32, len: i64) -> Result<()> {
    if fd < 0 {
        return refuse(libc::EBADF, "negative descriptor");
    }
    let len = offset(len)?;
    Ok(get_fd(fd)?.set_len(len)?)
}

/// `pfsd_fallocate`.
pub fn fallocate(fd: i32, mode: i32, off: i64, len: i64) -> Result<()> {
    if fd < 0 {
        return refuse(libc::EBADF, "negative descriptor");
    }
    if off < 0 || len <= 0 {
        return refuse(libc::EINVAL, "bad range");
    }
    let mode = FallocMode::from_posix(mode)?;
    Ok(get_fd(fd)?.allocate(off as u64, len as u64, mode)?)
}

/// `pfsd_fstat`.
pub fn fstat(fd: i32) -> Result<Stat> {
    if fd < 0 {
        return refuse(libc::EBADF, "negative descriptor");
    }
    Ok(get_fd(fd)?.getattr()?.stat())
}

/// `pfsd_stat`.
pub fn stat(path: &[u8]) -> Result<Stat> {
    let (m, p) = locate(path)?;
    Ok(m.stat_path(p.inner())?.stat())
}

/// `pfsd_truncate`.
pub fn truncate(path: &[u8], len: i64) -> Result<()> {
    let len = offset(len)?;
    let (m, p) = locate(path)?;
    Ok(m.truncate_path(p.inner(), len)?)
}

/// `pfsd_unlink`.
pub fn unlink(path: &[u8]) -> Result<()> {
    let (m, p) = locate(path)?;
    Ok(m.unlink_path(p.inner())?)
}

/// `pfsd_rename`: both paths on the mounted PBD (`EXDEV` across PBDs).
pub fn rename(from: &[u8], to: &[u8]) -> Result<()> {
    let st = state()?;
    let (a, b) = (st.absolute(from)?, st.absolute(to)?);
    if a.pbd != b.pbd {
        return refuse(libc::EXDEV, "rename across PBDs");
    }
    let m = st.mount_of(&a)?;
    drop(st);
    Ok(m.rename_path(a.inner(), b.inner())?)
}

/// `pfsd_mkdir`.
pub fn mkdir(path: &[u8]) -> Result<()> {
    let (m, p) = locate(path)?;
    m.mkdir_path(p.inner())?;
    Ok(())
}

/// `pfsd_rmdir`.
pub fn rmdir(path: &[u8]) -> Result<()> {
    let (m, p) = locate(path)?;
    Ok(m.rmdir_path(p.inner())?)
}

/// `pfsd_access`: existence; `W_OK` on a read-only mount is `EROFS`.
pub fn access(path: &[u8], amode: i32) -> Result<()> {
    if amode != libc::F_OK && amode & (libc::R_OK | libc::W_OK | libc::X_OK) == 0 {
        return refuse(libc::EINVAL, "bad access mode");
    }
    let (m, p) = locate(path)?;
    m.access(p.inner())?;
    if amode & libc::W_OK != 0 && m.mode() != Mode::ReadWrite {
        return refuse(libc::EROFS, "the PBD is mounted read-only");
    }
    Ok(())
}

/// `pfsd_chmod`, `pfsd_chown`: the path must exist; nothing changes.
pub fn exists(path: &[u8]) -> Result<()> {
    let (m, p) = locate(path)?;
    Ok(m.access(p.inner())?)
}

/// `pfsd_fchmod`: the descriptor must be valid; nothing changes.
pub fn fd_exists(fd: i32) -> Result<()> {
    get_fd(fd).map(|_| ())
}

/// `pfsd_chdir`: sets the working directory for relative paths, named
/// the short way ([`Mount::canonical_path`]: `.` and `..` followed through
/// the namespace, the root as `/<pbd>/`).
pub fn chdir(path: &[u8]) -> Result<()> {
    let mut st = state()?;
    let (m, p) = st.locate(path)?;
    let (attr, inner) = m.canonical_path(p.inner())?;
    if !attr.is_dir() {
        return Err(CoreError::NotDir {
            path: p.to_string(),
        }
        .into());
    }
    st.cwd = Some(p.with_inner(inner)?);
    Ok(())
}

/// `pfsd_getcwd`: the working directory, if it fits `size` bytes with its
/// NUL (`ERANGE` otherwise, `ENOENT` if none was set).
pub fn getcwd(size: usize) -> Result<Vec<u8>> {
    let st = STATE.lock();
    match &st.cwd {
        None => refuse(libc::ENOENT, "no working directory"),
        Some(c) if c.as_bytes().len() >= size.min(PFS_MAX_PATHLEN) => {
            refuse(libc::ERANGE, "buffer too small")
        }
        Some(c) => Ok(c.as_bytes().to_vec()),
    }
}

/// An open directory stream (`DIR *`).
pub struct DirStream {
    entries: std::vec::IntoIter<DirEntry>,
    /// The entry `pfsd_readdir` returns a pointer to.
    ent: libc::dirent,
}

/// The `DIR *` value of a directory stream: not an address but the
/// stream's number shifted left, with the lowest bit set as the reference's
/// `PFSD_DIR_ISVALID` expects. A handle is looked up in the state's table
/// on every call, so a closed or forged one is refused with `EBADF` and
/// never dereferenced; numbers are never reused, so a closed handle stays
/// closed whatever is opened later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirHandle(u64);

impl DirHandle {
    /// The handle of stream number `n`.
    fn of(n: u64) -> DirHandle {
        DirHandle((n << 1) | 1)
    }

    /// The handle a caller passed (`DIR *` as an integer).
    pub fn from_raw(raw: usize) -> DirHandle {
        DirHandle(raw as u64)
    }

    /// The value to give the caller as its `DIR *`.
    pub fn raw(self) -> usize {
        self.0 as usize
    }

    /// The stream number: NULL and values without the mark bit are no SDK
    /// stream at all (`EINVAL`, as the reference's check of the bit).
    fn number(self) -> Result<u64> {
        if self.0 & 1 == 0 || self.0 == 1 {
            return refuse(libc::EINVAL, "not a directory stream of the SDK");
        }
        Ok(self.0 >> 1)
    }
}

/// `pfsd_opendir`: reads the directory's entries as of one committed
/// state.
pub fn opendir(path: &[u8]) -> Result<DirHandle> {
    let (m, p) = locate(path)?;
    let entries: Vec<DirEntry> = m.readdir_path(p.inner())?.collect();
    let mut st = STATE.lock();
    // One number per nanosecond would take centuries to wrap; the largest
    // still fits the handle (and the address space) with its mark bit.
    if st.last_dir >= (usize::MAX >> 1) as u64 {
        return refuse(libc::EMFILE, "directory stream numbers exhausted");
    }
    st.last_dir += 1;
    let n = st.last_dir;
    let stream = DirStream {
        entries: entries.into_iter(),
        ent: libc::dirent {
            d_ino: 0,
            d_off: 0,
            d_reclen: 0,
            d_type: 0,
            d_name: [0; 256],
        },
    };
    st.dirs.insert(n, Box::new(stream));
    Ok(DirHandle::of(n))
}

/// `pfsd_readdir` and `pfsd_readdir_r`: fills the stream's own `dirent`
/// with the next entry and passes its address to `f` (`None` at the end)
/// while the state is locked, so no other thread closes the stream
/// meanwhile; the address stays valid until the stream's next call or its
/// close. A closed or unknown handle fails with `EBADF`, as does a stream
/// opened before an unmount or, in a forked child, by its parent.
pub fn readdir<R>(h: DirHandle, f: impl FnOnce(Option<*mut libc::dirent>) -> R) -> Result<R> {
    let n = h.number()?;
    let mut st = state()?;
    let Some(d) = st.dirs.get_mut(&n) else {
        return refuse(libc::EBADF, "closed or unknown directory stream");
    };
    let Some(e) = d.entries.next() else {
        return Ok(f(None));
    };
    let ent = &mut d.ent;
    ent.d_ino = e.ino;
    ent.d_off += 1;
    ent.d_reclen = std::mem::size_of::<libc::dirent>() as u16;
    ent.d_type = match e.kind {
        FileType::Dir => libc::DT_DIR,
        FileType::File => libc::DT_REG,
    };
    let len = e.name.len().min(ent.d_name.len() - 1);
    for (dst, &src) in ent.d_name.iter_mut().zip(&e.name[..len]) {
        *dst = src as libc::c_char;
    }
    ent.d_name[len] = 0;
    Ok(f(Some(std::ptr::addr_of_mut!(d.ent))))
}

/// `pfsd_closedir`: frees the stream; a closed or unknown handle fails
/// with `EBADF` (as does one an unmount or, in a forked child, the fork
/// already freed).
pub fn closedir(h: DirHandle) -> Result<()> {
    let n = h.number()?;
    let stream = state()?.dirs.remove(&n);
    match stream {
        Some(d) => {
            drop(d);
            Ok(())
        }
        None => refuse(libc::EBADF, "closed or unknown directory stream"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_parsed_by_the_core_with_the_sdk_rules() {
        let st = STATE.lock();
        let p = st.absolute(b"/1-1/a/b").unwrap();
        assert_eq!((p.pbd.as_str(), p.inner()), ("1-1", &b"/a/b"[..]));
        let p = st.absolute(b"//1-1").unwrap();
        assert_eq!((p.pbd.as_str(), p.inner()), ("1-1", &b"/"[..]));
        for (path, errno) in [
            (&b"/"[..], libc::EINVAL),
            (b"", libc::EINVAL),
            (b"rel", libc::ENOENT),
        ] {
            assert_eq!(st.absolute(path).unwrap_err().errno(), errno, "{path:?}");
        }
        let long = format!("/1-1/{}", "n".repeat(256));
        let e = st.absolute(long.as_bytes()).unwrap_err();
        assert_eq!(e.errno(), libc::ENAMETOOLONG);
        let long_pbd = format!("/{}/x", "p".repeat(64));
        let e = st.absolute(long_pbd.as_bytes()).unwrap_err();
        assert_eq!(e.errno(), libc::ENAMETOOLONG);
    }

    #[test]
    fn descriptors_carry_the_valid_bit() {
        assert_eq!(raw_fd((1 << 30) | 7).unwrap(), 7);
        assert_eq!(raw_fd(7).unwrap_err().errno(), libc::EBADF);
        assert_eq!(raw_fd(-1).unwrap_err().errno(), libc::EBADF);
    }

    #[test]
    fn directory_handles_carry_the_mark_bit_and_are_checked() {
        let h = DirHandle::of(5);
        assert_eq!(h.raw() & 1, 1);
        assert_eq!(DirHandle::from_raw(h.raw()).number().unwrap(), 5);
        for bad in [0usize, 1, 0x1000] {
            let e = DirHandle::from_raw(bad).number().unwrap_err();
            assert_eq!(e.errno(), libc::EINVAL, "{bad:#x}");
        }
        let e = closedir(DirHandle::of(u64::MAX >> 2)).unwrap_err();
        assert_eq!(e.errno(), libc::EBADF);
        let e = readdir(DirHandle::of(u64::MAX >> 2), |_| ()).unwrap_err();
        assert_eq!(e.errno(), libc::EBADF);
    }

    #[test]
    fn flags_map_to_mount_options() {
        let o = mount_options("1-1", 3, PFS_RDWR | MNTFLG_PAXOS_BYFORCE);
        assert!(o.force && o.shared && o.lock_path.is_some());
        assert_eq!(o.hostid, 3);
        let o = mount_options("1-1", 0, PFS_RD);
        assert!(!o.force && o.lock_path.is_none());
    }
}
