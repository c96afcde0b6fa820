//! The write fence of a read-write mount: the one place that decides
//! whether a write or flush may start.
//!
//! Every write the mount makes — journal entries, the leader record,
//! metaset sectors, file data, zeroed gaps, discards — and every flush
//! reaches the device through [`FencedDevice`], which lets it start only
//! while the mount may write: it is not stopped for good, its host was not
//! deposed, and its writer lease runs on this machine's monotonic clock.
//! The lease's own slot is the one thing written past it (the lease writes
//! to the device itself).
//!
//! A lease that ran out is answered with [`CoreError::LeaseLapsed`]: the
//! mount then proves it is still the writer (the lease taken again with no
//! other host claiming it, and the journal head the one its host wrote
//! last) before it writes again, or stops for good.

use crate::device::Device;
use crate::error::{CoreError, Result};
use crate::forward::forward_geometry;
use crate::lease::{mono_ms, Lease};
use crate::share::Share;
use parking_lot::Mutex;
use std::path::Path;
use std::sync::Arc;

/// Whether, and under which lease, a read-write mount may write.
pub(crate) struct Fence {
    /// Why writes stopped for good, once they have (a failed write or
    /// flush, another writer seen, the lease lost).
    stopped: Mutex<Option<String>>,
    /// The writer lease, taken at the mount's first write.
    lease: Mutex<Option<Arc<Lease>>>,
    /// A shared mount's host on this machine: the share, the host id, and
    /// how many times the host had been deposed when the mount was made.
    host: Option<(Arc<Share>, u64, u64)>,
    /// How many commits of the host had failed when the mount was made.
    broken: u64,
    /// The lease duration, for judging a lease the host's other processes
    /// renew.
    lease_ms: u32,
}

impl Fence {
    /// The fence of a mount with host `hostid`, shared through `share`
    /// when it is a shared mount.
    pub(crate) fn new(share: Option<&Arc<Share>>, hostid: u64, lease_ms: u32) -> Fence {
        Fence {
            stopped: Mutex::new(None),
            lease: Mutex::new(None),
            host: share.map(|s| (Arc::clone(s), hostid, s.deposed(hostid))),
            broken: share.map_or(0, |s| s.broken(hostid)),
            lease_ms,
        }
    }

    /// Why writes stopped, if they have.
    pub(crate) fn stopped(&self) -> Option<String> {
        self.stopped.lock().clone()
    }

    /// Fails with the reason writes stopped, if they have.
    pub(crate) fn check_stopped(&self) -> Result<()> {
        match self.stopped() {
            Some(reason) => Err(CoreError::Fenced { reason }),
            None => Ok(()),
        }
    }

    /// Stops writes for good (the first reason given is kept), and the
    /// lease with them.
    pub(crate) fn stop(&self, why: &str) {
        {
            let mut s = self.stopped.lock();
            if s.is_none() {
                *s = Some(why.to_owned());
            }
        }
        if let Some(l) = self.lease() {
            l.lose(why);
        }
    }

    /// The one stop-writing policy: an error that shows another writer
    /// may exist stops this mount's writes until it is remounted.
    pub(crate) fn stop_on(&self, e: CoreError) -> CoreError {
        if let CoreError::Fenced { reason } = &e {
            self.stop(reason);
        }
        e
    }

    /// Like [`Fence::stop_on`], and any other failure of a device write or
    /// flush also stops writes (the device's state is unknown), with `why`.
    pub(crate) fn stop_io(&self, e: CoreError, why: &str) -> CoreError {
        match &e {
            CoreError::Fenced { reason } => self.stop(reason),
            CoreError::LeaseLapsed => {
                self.stop("the writer lease ran out in the middle of a commit (the process or the device stalled)")
            }
            _ => self.stop(why),
        }
        e
    }

    /// The lease, once taken.
    pub(crate) fn lease(&self) -> Option<Arc<Lease>> {
        self.lease.lock().clone()
    }

    /// Where the lease is kept (taken under this lock, so two threads
    /// never both take it).
    pub(crate) fn lease_slot(&self) -> parking_lot::MutexGuard<'_, Option<Arc<Lease>>> {
        self.lease.lock()
    }

    /// The host's deposition count changed since the mount was made:
    /// another host took its lease over and committed.
    fn host_deposed(&self) -> bool {
        self.host
            .as_ref()
            .is_some_and(|(s, h, seen)| s.deposed(*h) != *seen)
    }

    /// A commit of another process of the host failed since the mount was
    /// made: what it had written (this mount's transactions among it) may
    /// be lost.
    fn host_broken(&self) -> bool {
        self.host
            .as_ref()
            .is_some_and(|(s, h, _)| s.broken(*h) != self.broken)
    }

    /// Whether the lease that the other processes of this mount's host
    /// hold and renew still runs (a shared mount whose process has not
    /// needed a lease of its own).
    fn host_lease_runs(&self) -> bool {
        let Some((s, h, _)) = &self.host else {
            return false;
        };
        let (token, renewed) = s.lease(*h);
        let v = pfs_paxos::lease::Validity {
            renewed_at_ms: renewed,
            duration_ms: u64::from(self.lease_ms),
        };
        token != 0 && v.may_write(mono_ms())
    }

    /// May a write start now? [`CoreError::Fenced`] when writes stopped
    /// for good (this call may be the one that finds out), and
    /// [`CoreError::LeaseLapsed`] when the lease must be proved first.
    /// Costs no IO.
    pub(crate) fn admit(&self) -> Result<()> {
        self.check_stopped()?;
        if self.host_deposed() {
            let why =
                "another host took the writer lease over and committed; this host stopped writing";
            self.stop(why);
            return Err(CoreError::Fenced { reason: why.into() });
        }
        if self.host_broken() {
            let why = "a commit of another process of this host failed (a device write or flush); this host stopped writing";
            self.stop(why);
            return Err(CoreError::Fenced { reason: why.into() });
        }
        if let Some(l) = self.lease() {
            return l.check().map_err(|e| self.stop_on(e));
        }
        if self.host_lease_runs() {
            return Ok(());
        }
        Err(CoreError::LeaseLapsed)
    }
}

/// A read-write mount's view of its device: reads pass straight through;
/// writes, zeroing, discards and flushes start only when the [`Fence`]
/// admits them. An operation the storage refuses because another host
/// fenced this one there ([`CoreError::Fenced`] from the device) stops
/// writes for good.
pub(crate) struct FencedDevice {
    inner: Arc<dyn Device>,
    fence: Arc<Fence>,
}

impl FencedDevice {
    /// `inner` behind `fence`.
    pub(crate) fn new(inner: Arc<dyn Device>, fence: Arc<Fence>) -> FencedDevice {
        FencedDevice { inner, fence }
    }
}

impl Device for FencedDevice {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        // A read refused because the storage fenced this mount stops it.
        self.inner
            .read_at(buf, offset)
            .map_err(|e| self.fence.stop_on(e))
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.fence.admit()?;
        crate::lease::stop_point("admitted");
        self.inner
            .write_at(buf, offset)
            .map_err(|e| self.fence.stop_on(e))
    }

    fn sync(&self) -> Result<()> {
        self.fence.admit()?;
        self.inner.sync().map_err(|e| self.fence.stop_on(e))
    }

    fn sync_beside(&self, beside: &mut dyn FnMut()) -> Result<()> {
        self.fence.admit()?;
        self.inner
            .sync_beside(beside)
            .map_err(|e| self.fence.stop_on(e))
    }

    forward_geometry!(inner);

    fn caches_writes(&self) -> bool {
        self.inner.caches_writes()
    }

    fn zero_range(&self, offset: u64, len: u64) -> Result<()> {
        self.fence.admit()?;
        self.inner
            .zero_range(offset, len)
            .map_err(|e| self.fence.stop_on(e))
    }

    fn discard(&self, offset: u64, len: u64) -> Result<bool> {
        self.fence.admit()?;
        self.inner
            .discard(offset, len)
            .map_err(|e| self.fence.stop_on(e))
    }

    fn register_writer(&self, hostid: u32, node: u32) -> Result<()> {
        self.inner.register_writer(hostid, node)
    }

    fn fence_writers(&self, hosts: &[(u32, u32)]) -> Result<usize> {
        self.inner.fence_writers(hosts)
    }

    fn fence_every_writer(&self) -> Result<usize> {
        self.inner.fence_every_writer()
    }

    fn local_path(&self) -> Option<&Path> {
        self.inner.local_path()
    }

    fn machine_key(&self) -> Option<&str> {
        self.inner.machine_key()
    }
}

/// How many times an operation of a commit is tried while the lease keeps
/// running out before it starts (each time proved again in between).
const ATTEMPTS: usize = 3;

/// The device as a commit writes it: an operation the [`Fence`] refuses
/// because the lease ran out ([`CoreError::LeaseLapsed`], before anything
/// of it started) is tried again once `reprove` has shown that the mount
/// is still the writer: the lease taken again with no other host claiming
/// it, and the journal head the one its host wrote last. So a commit that
/// a slow device or a paused process held up past its lease (a flush
/// stuck behind other IO, say) finishes instead of stopping the mount, as
/// a transaction that starts after such a stall already does. Any other
/// error, `reprove`'s among them, is the caller's.
pub(crate) struct Reproving<'a> {
    dev: &'a dyn Device,
    reprove: &'a (dyn Fn() -> Result<()> + Sync),
}

impl<'a> Reproving<'a> {
    /// `dev` (the mount's fenced device), proved again with `reprove`.
    pub(crate) fn new(dev: &'a dyn Device, reprove: &'a (dyn Fn() -> Result<()> + Sync)) -> Self {
        Reproving { dev, reprove }
    }

    fn again<R>(&self, mut op: impl FnMut() -> Result<R>) -> Result<R> {
        for _ in 1..ATTEMPTS {
            match op() {
                Err(CoreError::LeaseLapsed) => (self.reprove)()?,
                r => return r,
            }
        }
        op()
    }
}

impl Device for Reproving<'_> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.dev.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.again(|| self.dev.write_at(buf, offset))
    }

    fn sync(&self) -> Result<()> {
        self.again(|| self.dev.sync())
    }

    fn sync_beside(&self, beside: &mut dyn FnMut()) -> Result<()> {
        // A refused flush never ran `beside`; the next try runs it.
        self.again(|| self.dev.sync_beside(&mut *beside))
    }

    forward_geometry!(dev);

    fn caches_writes(&self) -> bool {
        self.dev.caches_writes()
    }

    fn zero_range(&self, offset: u64, len: u64) -> Result<()> {
        self.again(|| self.dev.zero_range(offset, len))
    }

    fn discard(&self, offset: u64, len: u64) -> Result<bool> {
        self.again(|| self.dev.discard(offset, len))
    }

    fn register_writer(&self, hostid: u32, node: u32) -> Result<()> {
        self.dev.register_writer(hostid, node)
    }

    fn fence_writers(&self, hosts: &[(u32, u32)]) -> Result<usize> {
        self.dev.fence_writers(hosts)
    }

    fn fence_every_writer(&self) -> Result<usize> {
        self.dev.fence_every_writer()
    }

    fn local_path(&self) -> Option<&Path> {
        self.dev.local_path()
    }

    fn machine_key(&self) -> Option<&str> {
        self.dev.machine_key()
    }
}
