//! Linux native AIO for one job: a flush (`fsync`/`fdatasync`) that the
//! kernel carries out on its own worker while the calling thread goes on,
//! so a commit can read from the device beside its flush without a thread
//! of ours. Contexts are made once per process and reused; a child after
//! `fork` (which inherits no AIO context) makes its own.

use parking_lot::Mutex;
use std::io;
use std::os::fd::RawFd;

/// `IOCB_CMD_FSYNC` and `IOCB_CMD_FDSYNC` of `linux/aio_abi.h`.
const CMD_FSYNC: u16 = 2;
const CMD_FDSYNC: u16 = 3;

/// `struct iocb` as a little-endian kernel lays it out (`aio_key` before
/// `aio_rw_flags`).
#[repr(C)]
#[derive(Default)]
struct Iocb {
    data: u64,
    key: u32,
    rw_flags: i32,
    opcode: u16,
    reqprio: i16,
    fildes: u32,
    buf: u64,
    nbytes: u64,
    offset: i64,
    reserved2: u64,
    flags: u32,
    resfd: u32,
}

/// `struct io_event`.
#[repr(C)]
#[derive(Default)]
struct IoEvent {
    data: u64,
    obj: u64,
    res: i64,
    res2: i64,
}

const _: () = assert!(std::mem::size_of::<Iocb>() == 64);
const _: () = assert!(std::mem::size_of::<IoEvent>() == 32);

/// Contexts this process made that no flush is using: (the pid that made
/// it, its id). A context is put back only once its flush was reaped. Only
/// ever tried, never waited for: a child forked while another thread of its
/// parent held the lock would wait for ever (it then makes a context per
/// flush instead).
static IDLE: Mutex<Vec<(u32, libc::c_ulong)>> = Mutex::new(Vec::new());

/// An idle context of this process, or a new one; `None` when the kernel
/// gives none (no AIO, or the machine's `aio-max-nr` reached).
fn take_context() -> Option<libc::c_ulong> {
    let pid = std::process::id();
    if let Some(mut idle) = IDLE.try_lock() {
        // A child after fork sees its parent's ids, which name nothing here.
        idle.retain(|&(p, _)| p == pid);
        if let Some((_, ctx)) = idle.pop() {
            return Some(ctx);
        }
    }
    let mut ctx: libc::c_ulong = 0;
    // SAFETY: io_setup writes one aio_context_t (an unsigned long) through
    // the pointer, which points at `ctx`, live for the call.
    let r = unsafe { libc::syscall(libc::SYS_io_setup, 1 as libc::c_long, &mut ctx) };
    (r == 0).then_some(ctx)
}

/// Puts `ctx`, which has nothing under way, back for the next flush, or
/// destroys it when the list cannot be had.
fn put_context(ctx: libc::c_ulong) {
    if let Some(mut idle) = IDLE.try_lock() {
        idle.push((std::process::id(), ctx));
        return;
    }
    // SAFETY: io_destroy takes the id by value; nothing of ours refers to
    // the context after this.
    unsafe { libc::syscall(libc::SYS_io_destroy, ctx) };
}

/// A flush under way in the kernel. [`Flush::wait`] gives its outcome;
/// dropped unwaited, it waits (and forgets the outcome) so that its context
/// can be used again.
#[derive(Debug)]
pub struct Flush {
    ctx: libc::c_ulong,
    reaped: bool,
}

/// Starts an `fsync` of `fd` (`fdatasync` when `data_only`) on a kernel
/// worker. `None` when it could not be started (no AIO context to be had,
/// or the kernel refused the request): the caller then flushes itself.
pub fn start_flush(fd: RawFd, data_only: bool) -> Option<Flush> {
    if !cfg!(target_endian = "little") {
        return None;
    }
    let ctx = take_context()?;
    let mut cb = Iocb {
        opcode: if data_only { CMD_FDSYNC } else { CMD_FSYNC },
        fildes: u32::try_from(fd).ok()?,
        ..Iocb::default()
    };
    let mut list: [*mut Iocb; 1] = [&mut cb];
    // SAFETY: io_submit reads one pointer from `list` and the iocb it
    // points at (`cb`), both live for the call; an fsync request carries
    // no buffer, so the kernel keeps no pointer into our memory after it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_io_submit,
            ctx,
            1 as libc::c_long,
            list.as_mut_ptr(),
        )
    };
    if r != 1 {
        // Nothing was queued on the context: it is idle again.
        put_context(ctx);
        return None;
    }
    Some(Flush { ctx, reaped: false })
}

impl Flush {
    /// Waits for the flush to end and gives its outcome.
    pub fn wait(mut self) -> io::Result<()> {
        self.reap()
    }

    fn reap(&mut self) -> io::Result<()> {
        let mut ev = IoEvent::default();
        loop {
            // SAFETY: io_getevents writes at most one io_event (max_nr 1)
            // through the pointer, which points at `ev`, live for the call;
            // a null timeout waits without one.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_io_getevents,
                    self.ctx,
                    1 as libc::c_long,
                    1 as libc::c_long,
                    &mut ev as *mut IoEvent,
                    std::ptr::null_mut::<libc::timespec>(),
                )
            };
            if r == 1 {
                break;
            }
            let e = io::Error::last_os_error();
            if r < 0 && e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // The context is in an unknown state: it is not used again.
            self.reaped = true;
            return Err(if r < 0 {
                e
            } else {
                io::Error::other("io_getevents returned no event")
            });
        }
        self.reaped = true;
        put_context(self.ctx);
        if ev.res < 0 {
            let errno = i32::try_from(-ev.res).unwrap_or(libc::EIO);
            return Err(io::Error::from_raw_os_error(errno));
        }
        Ok(())
    }
}

impl Drop for Flush {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.reap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    #[test]
    fn flushes_a_file_waited_or_dropped() {
        let path = std::env::temp_dir().join(format!("pfs-core-aio-{}", std::process::id()));
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(b"durable").unwrap();
        let Some(first) = start_flush(f.as_raw_fd(), true) else {
            // The library flushes on a thread there instead.
            eprintln!("note: no AIO context to be had on this machine; skipped");
            std::fs::remove_file(&path).unwrap();
            return;
        };
        first.wait().unwrap();
        // Dropped unwaited: reaped on drop, so the flush after it reaps
        // its own outcome, not a left-over one.
        drop(start_flush(f.as_raw_fd(), false).unwrap());
        start_flush(f.as_raw_fd(), false).unwrap().wait().unwrap();
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_bad_descriptor_is_refused_not_waited_for() {
        // No such descriptor: the kernel refuses the request at submit.
        assert!(start_flush(1 << 20, false).is_none());
        // A negative one does not fit the request at all.
        assert!(start_flush(-1, false).is_none());
    }
}
