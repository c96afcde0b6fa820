//! The C boundary: every exported `pfsd_*` function, the fork-safe lock
//! over the SDK's state, the shared word remounts are published in, and
//! `errno`. All `unsafe` code of the crate is here; the logic is in
//! [`crate::sdk`].

use crate::error::{Result, SdkError};
use crate::sdk;
use pfs_core::posix::Stat;
use std::cell::UnsafeCell;
use std::ffi::{c_char, c_int, c_ulong, CStr};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};

/// A lock that a fork cannot leave held: the fork handlers take it before
/// `fork` and release it in both processes afterwards. It spins and then
/// yields (critical sections are short table updates, or a mount).
pub struct ForkLock<T> {
    held: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is only reached through a `ForkGuard`, of which at most
// one exists at a time (the `held` flag), so sharing the lock between
// threads shares no unsynchronized access; `T: Send` lets it move between
// the threads that take the lock.
unsafe impl<T: Send> Sync for ForkLock<T> {}

impl<T> ForkLock<T> {
    /// A new, free lock.
    pub const fn new(value: T) -> ForkLock<T> {
        ForkLock {
            held: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    fn acquire(&self) {
        let mut spins = 0u32;
        while self
            .held
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else if spins < 1024 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
        }
    }

    fn release(&self) {
        self.held.store(false, Ordering::Release);
    }

    /// Takes the lock.
    pub fn lock(&self) -> ForkGuard<'_, T> {
        self.acquire();
        ForkGuard { lock: self }
    }
}

/// Access to a [`ForkLock`]'s value while it is held.
pub struct ForkGuard<'a, T> {
    lock: &'a ForkLock<T>,
}

impl<T> Deref for ForkGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while `held` is set by it, so no
        // other reference to the value exists.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for ForkGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only borrow.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for ForkGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.release();
    }
}

extern "C" fn before_fork() {
    sdk::state_lock().acquire();
}

extern "C" fn after_fork_parent() {
    sdk::state_lock().release();
}

/// Forks this process has gone through (as a child), since the handlers
/// were registered.
static FORKS: AtomicU64 = AtomicU64::new(0);

extern "C" fn after_fork_child() {
    FORKS.fetch_add(1, Ordering::SeqCst);
    sdk::state_lock().release();
}

/// Changes in a child each time it is forked: the state compares it with
/// the value it had when it mounted, with no system call.
pub fn fork_generation() -> u64 {
    FORKS.load(Ordering::SeqCst)
}

/// Registers the fork handlers (once per process).
pub fn register_fork_handlers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: the handlers are plain functions that only touch atomics,
        // which is async-signal-safe as a fork handler must be.
        let rc = unsafe {
            libc::pthread_atfork(
                Some(before_fork),
                Some(after_fork_parent),
                Some(after_fork_child),
            )
        };
        // A failure (ENOMEM) leaves forks unguarded, as without handlers.
        let _ = rc;
    });
}

/// A word of shared anonymous memory, inherited by every child the process
/// forks; it is never unmapped.
#[derive(Clone)]
pub struct SharedWord {
    word: &'static AtomicI32,
}

impl SharedWord {
    /// Maps a new word, 0.
    pub fn new() -> Result<SharedWord> {
        // SAFETY: an anonymous shared mapping with no address hint touches
        // no existing memory; the result is checked before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return crate::error::refuse(libc::ENOMEM, "cannot map shared memory");
        }
        // SAFETY: the mapping is page aligned, zero filled, at least 4 bytes
        // long and never unmapped, so it is a valid `AtomicI32` for ever.
        let word = unsafe { &*(p as *const AtomicI32) };
        Ok(SharedWord { word })
    }

    /// The value.
    pub fn get(&self) -> i32 {
        self.word.load(Ordering::SeqCst)
    }

    /// Sets the value, for this process and every process sharing it.
    pub fn set(&self, v: i32) {
        self.word.store(v, Ordering::SeqCst);
    }
}

fn set_errno(e: c_int) {
    // SAFETY: `__errno_location` returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() = e };
}

/// Reports `r`'s error through errno and `fail`.
fn ret<T>(r: Result<T>, fail: T) -> T {
    match r {
        Ok(v) => v,
        Err(e) => {
            if std::env::var_os("PFSD_SDK_DEBUG").is_some() {
                eprintln!("pfsd: {e}");
            }
            set_errno(e.errno());
            fail
        }
    }
}

fn einval<T>(what: &'static str) -> Result<T> {
    Err(SdkError::Refused {
        errno: libc::EINVAL,
        what,
    })
}

/// The bytes of C string `p`.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string that outlives the call.
unsafe fn bytes<'a>(p: *const c_char) -> Result<&'a [u8]> {
    if p.is_null() {
        return einval("NULL path");
    }
    // SAFETY: the caller's contract.
    Ok(unsafe { CStr::from_ptr(p) }.to_bytes())
}

/// A UTF-8 C string (PBD names).
///
/// # Safety
/// As [`bytes`].
unsafe fn name<'a>(p: *const c_char) -> Result<&'a str> {
    // SAFETY: the caller's contract.
    let b = unsafe { bytes(p) }?;
    std::str::from_utf8(b).map_or_else(|_| einval("PBD name is not UTF-8"), Ok)
}

/// `pfsd_set_mode`.
#[no_mangle]
pub extern "C" fn pfsd_set_mode(mode: c_int) {
    sdk::set_mode(mode);
}

/// `pfsd_set_svr_addr`: accepted, unused (there is no daemon).
#[no_mangle]
pub extern "C" fn pfsd_set_svr_addr(_svraddr: *const c_char, _len: usize) {}

/// `pfsd_set_connect_timeout`: accepted, unused.
#[no_mangle]
pub extern "C" fn pfsd_set_connect_timeout(_timeout_ms: c_int) {}

/// `pfsd_sdk_init`: sets the mode, then mounts.
///
/// # Safety
/// String arguments are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn pfsd_sdk_init(
    mode: c_int,
    _svraddr: *const c_char,
    _timeout_ms: c_int,
    _cluster: *const c_char,
    pbdname: *const c_char,
    hostid: c_int,
    flags: c_int,
) -> c_int {
    sdk::set_mode(mode);
    // SAFETY: forwarded contract.
    let r = unsafe { name(pbdname) }.and_then(|n| sdk::mount(n, hostid, flags));
    ret(r.map(|()| 0), -1)
}

/// `pfsd_mount`.
///
/// # Safety
/// String arguments are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn pfsd_mount(
    _cluster: *const c_char,
    pbdname: *const c_char,
    hostid: c_int,
    flags: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    let r = unsafe { name(pbdname) }.and_then(|n| sdk::mount(n, hostid, flags));
    ret(r.map(|()| 0), -1)
}

/// `pfsd_remount`.
///
/// # Safety
/// String arguments are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn pfsd_remount(
    _cluster: *const c_char,
    pbdname: *const c_char,
    hostid: c_int,
    flags: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    let r = unsafe { name(pbdname) }.and_then(|n| sdk::remount(n, hostid, flags));
    ret(r.map(|()| 0), -1)
}

/// `pfsd_umount`.
///
/// # Safety
/// `pbdname` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn pfsd_umount(pbdname: *const c_char) -> c_int {
    // SAFETY: forwarded contract.
    let r = unsafe { name(pbdname) }.and_then(sdk::umount);
    ret(r.map(|()| 0), -1)
}

/// `pfsd_umount_force`: as `pfsd_umount`.
///
/// # Safety
/// `pbdname` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn pfsd_umount_force(pbdname: *const c_char) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { pfsd_umount(pbdname) }
}

/// `pfsd_mount_growfs`.
///
/// # Safety
/// `pbdname` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn pfsd_mount_growfs(pbdname: *const c_char) -> c_int {
    // SAFETY: forwarded contract.
    let r = unsafe { name(pbdname) }.and_then(sdk::growfs);
    ret(r.map(|()| 0), -1)
}

/// `pfsd_abort_request`: accepted (no request ever waits on a daemon).
#[no_mangle]
pub extern "C" fn pfsd_abort_request(_pid: libc::pid_t) -> c_int {
    ret(sdk::abort_request().map(|()| 0), -1)
}

/// `pfsd_rename`.
///
/// # Safety
/// Paths are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn pfsd_rename(from: *const c_char, to: *const c_char) -> c_int {
    // SAFETY: forwarded contract.
    let r = unsafe { bytes(from) }.and_then(|f| {
        // SAFETY: forwarded contract.
        let t = unsafe { bytes(to) }?;
        sdk::rename(f, t)
    });
    ret(r.map(|()| 0), -1)
}

/// `pfsd_open`.
///
/// # Safety
/// `path` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn pfsd_open(
    path: *const c_char,
    flags: c_int,
    _mode: libc::mode_t,
) -> c_int {
    // SAFETY: forwarded contract.
    let r = unsafe { bytes(path) }.and_then(|p| sdk::open(p, flags));
    ret(r, -1)
}

/// `pfsd_creat`: `O_CREAT | O_TRUNC | O_WRONLY`.
///
/// # Safety
/// `path` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn pfsd_creat(path: *const c_char, mode: libc::mode_t) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { pfsd_open(path, libc::O_CREAT | libc::O_TRUNC | libc::O_WRONLY, mode) }
}

/// The caller's buffer as a slice.
///
/// # Safety
/// `buf` is NULL or valid for `len` bytes.
unsafe fn buf_mut<'a>(buf: *mut libc::c_void, len: usize) -> Result<&'a mut [u8]> {
    if buf.is_null() {
        return einval("NULL buffer");
    }
    // SAFETY: the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), len) })
}

/// # Safety
/// `buf` is NULL or valid for `len` bytes.
unsafe fn buf_ref<'a>(buf: *const libc::c_void, len: usize) -> Result<&'a [u8]> {
    if buf.is_null() {
        return einval("NULL buffer");
    }
    // SAFETY: the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) })
}

fn count(r: Result<usize>) -> isize {
    ret(r.map(|n| n as isize), -1)
}

/// `pfsd_read`.
///
/// # Safety
/// `buf` is NULL or writable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn pfsd_read(fd: c_int, buf: *mut libc::c_void, len: usize) -> isize {
    // SAFETY: forwarded contract.
    count(unsafe { buf_mut(buf, len) }.and_then(|b| sdk::read(fd, b)))
}

/// `pfsd_write`.
///
/// # Safety
/// `buf` is NULL or readable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn pfsd_write(fd: c_int, buf: *const libc::c_void, len: usize) -> isize {
    // SAFETY: forwarded contract.
    count(unsafe { buf_ref(buf, len) }.and_then(|b| sdk::write(fd, b)))
}

/// `pfsd_pread`.
///
/// # Safety
/// `buf` is NULL or writable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn pfsd_pread(
    fd: c_int,
    buf: *mut libc::c_void,
    len: usize,
    off: libc::off_t,
) -> isize {
    // SAFETY: forwarded contract.
    count(unsafe { buf_mut(buf, len) }.and_then(|b| sdk::pread(fd, b, off)))
}

/// `pfsd_pwrite`.
///
/// # Safety
/// `buf` is NULL or readable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn pfsd_pwrite(
    fd: c_int,
    buf: *const libc::c_void,
    len: usize,
    off: libc::off_t,
) -> isize {
    // SAFETY: forwarded contract.
    count(unsafe { buf_ref(buf, len) }.and_then(|b| sdk::pwrite(fd, b, off)))
}

/// `pfsd_truncate`.
///
/// # Safety
/// `path` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn pfsd_truncate(path: *const c_char, len: libc::off_t) -> c_int {
    // SAFETY: forwarded contract.
    let r = unsafe { bytes(path) }.and_then(|p| sdk::truncate(p, len));
    ret(r.map(|()| 0), -1)
}

/// `pfsd_ftruncate`.
#[no_mangle]
pub extern "C" fn pfsd_ftruncate(fd: c_int, len: libc::off_t) -> c_int {
    ret(sdk::ftruncate(fd, len).map(|()| 0), -1)
}

/// `pfsd_unlink`.
///
/// # Safety
/// `path` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn pfsd_unlink(path: *const c_char) -> c_int {
    // SAFETY: forwarded contract.
    let r = unsafe { bytes(path) }.and_then(sdk::unlink);
    ret(r.map(|()| 0), -1)
}

/// Fills `*st` from `s` (fields the core has no value for are 0).
///
/// # Safety
/// `st` is valid for writing one `struct stat`.
unsafe fn fill_stat(st: *mut libc::stat, s: &Stat) {
    // SAFETY: the caller's contract; all-zero is a valid `struct stat`.
    let out = unsafe {
        std::ptr::write_bytes(st, 0, 1);
        &mut *st
    };
    let time = |t: u64| libc::time_t::try_from(t).unwrap_or(libc::time_t::MAX);
    out.st_ino = s.st_ino;
    out.st_mode = s.st_mode;
    out.st_nlink = libc::nlink_t::try_from(s.st_nlink).unwrap_or(libc::nlink_t::MAX);
    out.st_size = libc::off_t::try_from(s.st_size).unwrap_or(libc::off_t::MAX);
    out.st_blksize = libc::blksize_t::try_from(s.st_blksize).unwrap_or(libc::blksize_t::MAX);
    out.st_blocks = libc::blkcnt_t::try_from(s.st_blocks).unwrap_or(libc::blkcnt_t::MAX);
    out.st_atime = time(s.st_atime);
    out.st_mtime = time(s.st_mtime);
    out.st_ctime = time(s.st_ctime);
}

fn stat_out(r: Result<Stat>, st: *mut libc::stat) -> c_int {
    let r = r.and_then(|a| {
        if st.is_null() {
            return einval("NULL stat buffer");
        }
        // SAFETY: not NULL; the caller passes a `struct stat`.
        unsafe { fill_stat(st, &a) };
        Ok(0)
    });
    ret(r, -1)
}

/// `pfsd_stat`.
///
/// # Safety
/// `path` is NULL or NUL-terminated; `st` is NULL or a `struct stat`.
#[no_mangle]
pub unsafe extern "C" fn pfsd_stat(path: *const c_char, st: *mut libc::stat) -> c_int {
    if st.is_null() {
        return ret(einval("NULL stat buffer"), -1);
    }
    // SAFETY: forwarded contract.
    stat_out(unsafe { bytes(path) }.and_then(sdk::stat), st)
}

/// `pfsd_fstat`.
///
/// # Safety
/// `st` is NULL or a `struct stat`.
#[no_mangle]
pub unsafe extern "C" fn pfsd_fstat(fd: c_int, st: *mut libc::stat) -> c_int {
    stat_out(sdk::fstat(fd), st)
}

/// `pfsd_posix_fallocate`: `pfsd_fallocate` with mode 0.
#[no_mangle]
pub extern "C" fn pfsd_posix_fallocate(fd: c_int, off: libc::off_t, len: libc::off_t) -> c_int {
    pfsd_fallocate(fd, 0, off, len)
}

/// `pfsd_fallocate`.
#[no_mangle]
pub extern "C" fn pfsd_fallocate(
    fd: c_int,
    mode: c_int,
    off: libc::off_t,
    len: libc::off_t,
) -> c_int {
    ret(sdk::fallocate(fd, mode, off, len).map(|()| 0), -1)
}

/// `pfsd_lseek`.
#[no_mangle]
pub extern "C" fn pfsd_lseek(fd: c_int, off: libc::off_t, whence: c_int) -> libc::off_t {
    ret(sdk::lseek(fd, off, whence), -1)
}

/// `pfsd_close`.
#[no_mangle]
pub extern "C" fn pfsd_close(fd: c_int) -> c_int {
    ret(sdk::close(fd).map(|()| 0), -1)
}

/// `pfsd_fsync`.
#[no_mangle]
pub extern "C" fn pfsd_fsync(fd: c_int) -> c_int {
    ret(sdk::fsync(fd).map(|()| 0), -1)
}

/// `pfsd_mkdir`.
///
/// # Safety
/// `path` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn pfsd_mkdir(path: *const c_char, _mode: libc::mode_t) -> c_int {
    // SAFETY: forwarded contract.
    let r = unsafe { bytes(path) }.and_then(sdk::mkdir);
    ret(r.map(|()| 0), -1)
}

/// `pfsd_rmdir`.
///
/// # Safety
/// `path` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn pfsd_rmdir(path: *const c_char) -> c_int {
    // SAFETY: forwarded contract.
    let r = unsafe { bytes(path) }.and_then(sdk::rmdir);
    ret(r.map(|()| 0), -1)
}

/// `pfsd_opendir`: a `DIR *` with its lowest bit set (`PFSD_DIR_MAKE`).
/// It is a handle, not an address (see [`sdk::DirHandle`]).
///
/// # Safety
/// `path` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn pfsd_opendir(path: *const c_char) -> *mut libc::DIR {
    // SAFETY: forwarded contract.
    let r = unsafe { bytes(path) }.and_then(sdk::opendir);
    match r {
        Ok(h) => h.raw() as *mut libc::DIR,
        Err(e) => ret(Err(e), std::ptr::null_mut()),
    }
}

/// The handle a `DIR *` stands for; never dereferenced.
fn handle(dir: *mut libc::DIR) -> sdk::DirHandle {
    sdk::DirHandle::from_raw(dir as usize)
}

/// `pfsd_readdir`: the next entry, or NULL with errno 0 at the end; NULL
/// with `EBADF` for a closed or unknown stream. The entry lives in the
/// stream until its next `pfsd_readdir` or its `pfsd_closedir`.
#[no_mangle]
pub extern "C" fn pfsd_readdir(dir: *mut libc::DIR) -> *mut libc::dirent {
    let r = sdk::readdir(handle(dir), |e| e.unwrap_or(std::ptr::null_mut()));
    match r {
        Ok(p) => {
            if p.is_null() {
                set_errno(0);
            }
            p
        }
        Err(e) => ret(Err(e), std::ptr::null_mut()),
    }
}

/// `pfsd_readdir_r`: copies the next entry into `*entry` and points
/// `*result` at it, or sets `*result` to NULL at the end; 0, or -1 with
/// errno (`EBADF` for a closed or unknown stream).
///
/// # Safety
/// `entry` and `result` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn pfsd_readdir_r(
    dir: *mut libc::DIR,
    entry: *mut libc::dirent,
    result: *mut *mut libc::dirent,
) -> c_int {
    if entry.is_null() || result.is_null() {
        return ret(einval("NULL entry or result"), -1);
    }
    let r = sdk::readdir(handle(dir), |next| {
        // SAFETY: `entry` and `result` are valid (checked not NULL; the
        // caller's contract); `e` points into the live stream, which the
        // state's lock keeps from being closed during this call, and is a
        // different object than `*entry` unless the caller passed the
        // stream's own entry, which `copy` (memmove) allows.
        unsafe {
            match next {
                Some(e) => {
                    std::ptr::copy(e, entry, 1);
                    *result = entry;
                }
                None => *result = std::ptr::null_mut(),
            }
        }
        0
    });
    ret(r, -1)
}

/// `pfsd_closedir`: 0, or -1 with `EBADF` for a closed or unknown stream.
#[no_mangle]
pub extern "C" fn pfsd_closedir(dir: *mut libc::DIR) -> c_int {
    ret(sdk::closedir(handle(dir)).map(|()| 0), -1)
}

/// `pfsd_chdir`.
///
/// # Safety
/// `path` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn pfsd_chdir(path: *const c_char) -> c_int {
    // SAFETY: forwarded contract.
    let r = unsafe { bytes(path) }.and_then(sdk::chdir);
    ret(r.map(|()| 0), -1)
}

/// `pfsd_getcwd`.
///
/// # Safety
/// `buf` is NULL or writable for `size` bytes.
#[no_mangle]
pub unsafe extern "C" fn pfsd_getcwd(buf: *mut c_char, size: usize) -> *mut c_char {
    if buf.is_null() {
        return ret(einval("NULL buffer"), std::ptr::null_mut());
    }
    match sdk::getcwd(size) {
        Ok(cwd) => {
            // SAFETY: `getcwd` returned a path shorter than `size`, so it
            // and its NUL fit the caller's buffer.
            unsafe {
                std::ptr::copy_nonoverlapping(cwd.as_ptr(), buf.cast::<u8>(), cwd.len());
                *buf.add(cwd.len()) = 0;
            }
            buf
        }
        Err(e) => ret(Err(e), std::ptr::null_mut()),
    }
}

/// `pfsd_getwd`: `pfsd_getcwd` with a `PFS_MAX_PATHLEN` buffer.
///
/// # Safety
/// `buf` is NULL or writable for `PFS_MAX_PATHLEN` bytes.
#[no_mangle]
pub unsafe extern "C" fn pfsd_getwd(buf: *mut c_char) -> *mut c_char {
    // SAFETY: forwarded contract.
    unsafe { pfsd_getcwd(buf, sdk::PFS_MAX_PATHLEN) }
}

/// `pfsd_access`.
///
/// # Safety
/// `path` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn pfsd_access(path: *const c_char, amode: c_int) -> c_int {
    // SAFETY: forwarded contract.
    let r = unsafe { bytes(path) }.and_then(|p| sdk::access(p, amode));
    ret(r.map(|()| 0), -1)
}

/// `pfsd_readlink`: PFS has no symbolic links (EINVAL).
#[no_mangle]
pub extern "C" fn pfsd_readlink(_path: *const c_char, _buf: *mut c_char, _size: usize) -> isize {
    set_errno(libc::EINVAL);
    -1
}

/// `pfsd_chmod`: accepted, no effect.
///
/// # Safety
/// `path` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn pfsd_chmod(path: *const c_char, _mode: libc::mode_t) -> c_int {
    // SAFETY: forwarded contract.
    let r = unsafe { bytes(path) }.and_then(sdk::exists);
    ret(r.map(|()| 0), -1)
}

/// `pfsd_fchmod`: accepted, no effect.
#[no_mangle]
pub extern "C" fn pfsd_fchmod(fd: c_int, _mode: libc::mode_t) -> c_int {
    ret(sdk::fd_exists(fd).map(|()| 0), -1)
}

/// `pfsd_chown`: accepted, no effect.
///
/// # Safety
/// `path` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn pfsd_chown(
    path: *const c_char,
    _owner: libc::uid_t,
    _group: libc::gid_t,
) -> c_int {
    // SAFETY: forwarded contract.
    let r = unsafe { bytes(path) }.and_then(sdk::exists);
    ret(r.map(|()| 0), -1)
}

/// `pfsd_meta_version_get`: 2.
#[no_mangle]
pub extern "C" fn pfsd_meta_version_get() -> c_ulong {
    sdk::META_VERSION as c_ulong
}

static BUILD_VERSION: &CStr = match CStr::from_bytes_with_nul(
    concat!("libpfs_version_pfs-rs-", env!("CARGO_PKG_VERSION"), "\0").as_bytes(),
) {
    Ok(s) => s,
    Err(_) => panic!("version string has a NUL"),
};

/// `pfsd_build_version_get`.
#[no_mangle]
pub extern "C" fn pfsd_build_version_get() -> *const c_char {
    BUILD_VERSION.as_ptr()
}
