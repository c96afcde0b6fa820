//! Every system call this crate makes that needs `unsafe` or Linux-specific
//! flags: block device ioctls, O_DIRECT opens, range zeroing, flushes by
//! the kernel's AIO ([`aio`]); and librbd ([`ceph`]), loaded at run time.

pub(crate) mod aio;
pub(crate) mod ceph;

use nix::fcntl::{fallocate, FallocateFlags};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

mod ioctls {
    // BLKGETSIZE64: _IOR(0x12, 114, size_t).
    nix::ioctl_read!(blk_getsize64, 0x12, 114, u64);
    // BLKSSZGET: _IO(0x12, 104), result written through an int pointer.
    nix::ioctl_read_bad!(blk_sszget, nix::request_code_none!(0x12, 104), libc_int);
    // BLKZEROOUT: _IO(0x12, 127), argument is a pointer to [start, len].
    nix::ioctl_write_ptr_bad!(blk_zeroout, nix::request_code_none!(0x12, 127), [u64; 2]);
    // BLKDISCARD: _IO(0x12, 119), argument is a pointer to [start, len].
    nix::ioctl_write_ptr_bad!(blk_discard, nix::request_code_none!(0x12, 119), [u64; 2]);
    #[allow(non_camel_case_types)]
    type libc_int = i32;
}

/// Size in bytes of the block device open as `file` (BLKGETSIZE64).
pub fn block_device_size(file: &File) -> io::Result<u64> {
    let mut size = 0u64;
    // SAFETY: the fd is open for the lifetime of `file`, and BLKGETSIZE64
    // writes exactly one u64 through the pointer, which points at `size`.
    unsafe { ioctls::blk_getsize64(file.as_raw_fd(), &mut size) }.map_err(io::Error::from)?;
    Ok(size)
}

/// Logical sector size of the block device open as `file` (BLKSSZGET).
pub fn block_device_sector_size(file: &File) -> io::Result<u32> {
    let mut size = 0i32;
    // SAFETY: the fd is open for the lifetime of `file`, and BLKSSZGET writes
    // exactly one int through the pointer, which points at `size`.
    unsafe { ioctls::blk_sszget(file.as_raw_fd(), &mut size) }.map_err(io::Error::from)?;
    u32::try_from(size).map_err(|_| io::Error::other("negative sector size"))
}

/// Zeroes `len` bytes at `offset` of a block device (BLKZEROOUT).
pub fn block_device_zeroout(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let range = [offset, len];
    // SAFETY: the fd is open for the lifetime of `file`; BLKZEROOUT reads two
    // u64 values through the pointer, which points at `range`.
    unsafe { ioctls::blk_zeroout(file.as_raw_fd(), &range) }.map_err(io::Error::from)?;
    Ok(())
}

/// Discards `len` bytes at `offset` of a block device (BLKDISCARD).
pub fn block_device_discard(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let range = [offset, len];
    // SAFETY: the fd is open for the lifetime of `file`; BLKDISCARD reads two
    // u64 values through the pointer, which points at `range`.
    unsafe { ioctls::blk_discard(file.as_raw_fd(), &range) }.map_err(io::Error::from)?;
    Ok(())
}

/// Deallocates `len` bytes at `offset` of a regular file, keeping its size
/// (fallocate PUNCH_HOLE): the range reads as zeros afterwards.
pub fn file_punch_hole(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (off, n) = (
        i64::try_from(offset).map_err(|_| io::Error::other("offset too large"))?,
        i64::try_from(len).map_err(|_| io::Error::other("length too large"))?,
    );
    fallocate(
        file.as_raw_fd(),
        FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
        off,
        n,
    )
    .map_err(io::Error::from)
}

/// Zeroes a range of a regular file without writing data: ZERO_RANGE, else
/// PUNCH_HOLE. Returns an error when the filesystem supports neither.
pub fn file_zero_range(file: &File, offset: u64, len: u64) -> io::Result<()> {
    // A range that is all hole already reads as zeros: leave it sparse.
    if let Ok(start) = i64::try_from(offset) {
        match nix::unistd::lseek(file.as_raw_fd(), start, nix::unistd::Whence::SeekData) {
            Ok(next) if (next as u64) >= offset.saturating_add(len) => return Ok(()),
            Err(nix::errno::Errno::ENXIO) => return Ok(()),
            _ => {}
        }
    }
    let (off, n) = (
        i64::try_from(offset).map_err(|_| io::Error::other("offset too large"))?,
        i64::try_from(len).map_err(|_| io::Error::other("length too large"))?,
    );
    match fallocate(
        file.as_raw_fd(),
        FallocateFlags::FALLOC_FL_ZERO_RANGE,
        off,
        n,
    ) {
        Ok(()) => Ok(()),
        Err(_) => fallocate(
            file.as_raw_fd(),
            FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
            off,
            n,
        )
        .map_err(io::Error::from),
    }
}

/// This process's effective user id.
pub fn euid() -> u32 {
    // SAFETY: geteuid takes nothing, touches no memory and cannot fail.
    unsafe { libc::geteuid() }
}

/// The `O_DIRECT` open flag.
pub const O_DIRECT: i32 = nix::fcntl::OFlag::O_DIRECT.bits();

/// Broken-down local time (as `localtime_r` gives it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    /// Years since 1900.
    pub year: i32,
    /// Month, 0..=11.
    pub mon: i32,
    /// Day of month, 1..=31.
    pub mday: i32,
    /// Hours.
    pub hour: i32,
    /// Minutes.
    pub min: i32,
    /// Seconds.
    pub sec: i32,
    /// Day of week, 0 = Sunday.
    pub wday: i32,
}

/// Converts seconds since the epoch to local time, honouring `TZ`.
pub fn local_time(secs: i64) -> Option<LocalTime> {
    let t: libc::time_t = secs;
    // SAFETY: `tm` is a plain C struct for which all-zero bytes are valid.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers point at live locals of the right types;
    // localtime_r writes only into `tm` and is thread-safe.
    let r = unsafe { libc::localtime_r(&t, &mut tm) };
    if r.is_null() {
        return None;
    }
    Some(LocalTime {
        year: tm.tm_year,
        mon: tm.tm_mon,
        mday: tm.tm_mday,
        hour: tm.tm_hour,
        min: tm.tm_min,
        sec: tm.tm_sec,
        wday: tm.tm_wday,
    })
}

/// The 64-bit word at byte `offset` of a shared memory mapping, for
/// atomic access by every process that maps the same file. `None` when the
/// word does not lie inside the mapping or is not 8-byte aligned.
pub fn shared_u64(map: &memmap2::MmapRaw, offset: usize) -> Option<&std::sync::atomic::AtomicU64> {
    if offset % 8 != 0 || offset.checked_add(8)? > map.len() {
        return None;
    }
    let base = map.as_mut_ptr();
    if (base as usize) % 8 != 0 {
        return None;
    }
    // SAFETY: the word lies inside the mapping (checked above) and is 8-byte
    // aligned (page-aligned base plus a multiple of 8); the mapping lives as
    // long as `map`, which the returned reference borrows. The memory is
    // only ever accessed through atomics, by this and other processes, so
    // no non-atomic access races with it.
    Some(unsafe { &*(base.add(offset) as *const std::sync::atomic::AtomicU64) })
}

/// The 32-bit half of `word` that a futex waits on: the low half, which
/// counters that change by one at a time change in every step.
fn futex_half(word: &std::sync::atomic::AtomicU64) -> *mut u32 {
    let low = if cfg!(target_endian = "big") { 1 } else { 0 };
    (word.as_ptr() as *mut u32).wrapping_add(low)
}

/// Sleeps while the low 32 bits of `word`, a word of a shared mapping
/// ([`shared_u64`]), are `seen`: until [`futex_wake_all`] on the same word
/// by any process, a change, a signal, or `timeout`, whichever comes
/// first. Returns at once when the word no longer holds `seen`.
pub fn futex_wait(word: &std::sync::atomic::AtomicU64, seen: u32, timeout: std::time::Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: the address is that of a live, 4-byte aligned word inside
    // `word` (borrowed for the call); FUTEX_WAIT only reads it, and `ts`
    // outlives the call. Not FUTEX_PRIVATE: other processes wake it. Any
    // outcome (woken, EAGAIN, EINTR, ETIMEDOUT) is a return to the caller,
    // who looks again.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            futex_half(word),
            libc::FUTEX_WAIT,
            seen,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Wakes every process and thread in [`futex_wait`] on `word`.
pub fn futex_wake_all(word: &std::sync::atomic::AtomicU64) {
    // SAFETY: the address is that of a live, 4-byte aligned word inside
    // `word`; FUTEX_WAKE neither reads nor writes it, only wakes its
    // waiters.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            futex_half(word),
            libc::FUTEX_WAKE,
            i32::MAX,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// The C library's `tsearch` tree, which the reference keeps its free
/// blocks in: the allocator's tests compare ours with it.
#[cfg(test)]
pub(crate) mod ctree {
    use std::cmp::Ordering;
    use std::ffi::{c_int, c_void};

    extern "C" {
        fn tsearch(
            key: *const c_void,
            rootp: *mut *mut c_void,
            compar: extern "C" fn(*const c_void, *const c_void) -> c_int,
        ) -> *mut c_void;
        fn tdelete(
            key: *const c_void,
            rootp: *mut *mut c_void,
            compar: extern "C" fn(*const c_void, *const c_void) -> c_int,
        ) -> *mut c_void;
    }

    extern "C" fn compare(a: *const c_void, b: *const c_void) -> c_int {
        match (a as usize).cmp(&(b as usize)) {
            Ordering::Less => -1,
            Ordering::Equal => 0,
            Ordering::Greater => 1,
        }
    }

    /// The C library's tree, driven through its own functions (keys are
    /// stored as pointer values, as the reference stores block numbers).
    pub(crate) struct CTree(pub(crate) *mut c_void);

    /// glibc's node since 2.26: key, left pointer with the colour in its
    /// low bit, right pointer.
    #[repr(C)]
    struct CNode {
        key: usize,
        left: usize,
        right: usize,
    }

    impl CTree {
        pub(crate) fn insert(&mut self, key: u64) {
            // SAFETY: keys are never dereferenced (the comparison only
            // looks at the pointer values); `self.0` is a tree root only
            // these functions change.
            let r = unsafe { tsearch(key as usize as *const c_void, &mut self.0, compare) };
            assert!(!r.is_null());
        }

        pub(crate) fn remove(&mut self, key: u64) {
            // SAFETY: as in `insert`.
            unsafe { tdelete(key as usize as *const c_void, &mut self.0, compare) };
        }

        pub(crate) fn shape(&self) -> Vec<(u64, bool, Option<u64>, Option<u64>)> {
            let mut out = Vec::new();
            let mut todo: Vec<usize> = Vec::new();
            if !self.0.is_null() {
                todo.push(self.0 as usize);
            }
            let node = |p: usize| -> &CNode {
                // SAFETY: `p` is a live node of the C library's tree.
                unsafe { &*(p as *const CNode) }
            };
            let child = |v: usize| (v & !1usize != 0).then_some(v & !1usize);
            while let Some(p) = todo.pop() {
                let n = node(p);
                let (l, r) = (child(n.left), child(n.right));
                out.push((
                    n.key as u64,
                    n.left & 1 == 1,
                    l.map(|c| node(c).key as u64),
                    r.map(|c| node(c).key as u64),
                ));
                todo.extend(r);
                todo.extend(l);
            }
            out
        }
    }
}
