//! Devices for recovery and race tests: one that simulates a crash at the
//! k-th flush, one whose writes, flushes or reads fail from the n-th on,
//! one that holds back a chosen write.

use crate::device::{Device, MemDevice};
use crate::error::{CoreError, Result};
use crate::forward::forward_geometry;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A device whose durable image stops changing after its `freeze_at`-th
/// flush: writes reach the live image at once (so the running mount reads
/// them back) but become durable only at the next flush. The machine
/// "crashes" between flush `freeze_at` and the next one: writes issued in
/// that interval may or may not have landed, later ones never did. [`CrashDevice::crash_image`] gives what a
/// machine would find after a power cut.
pub struct CrashDevice {
    live: MemDevice,
    durable: MemDevice,
    pending: Mutex<Vec<(u64, Vec<u8>)>>,
    syncs: AtomicU64,
    freeze_at: u64,
}

impl CrashDevice {
    /// A zeroed device of `len` bytes that freezes at flush `freeze_at`
    /// (`u64::MAX`: never).
    pub fn new(name: &str, len: u64, freeze_at: u64) -> CrashDevice {
        CrashDevice {
            live: MemDevice::new(name, len),
            durable: MemDevice::new(name, len),
            pending: Mutex::new(Vec::new()),
            syncs: AtomicU64::new(0),
            freeze_at,
        }
    }

    /// Flushes so far.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }

    /// The image after a crash: the durable bytes plus the unflushed writes
    /// of the interval the crash cut short that `keep` selects (each write
    /// lands whole or not at all, in any combination).
    pub fn crash_image(&self, keep: &dyn Fn(usize) -> bool) -> Result<MemDevice> {
        let out = MemDevice::new(self.durable.name(), self.durable.len());
        copy_all(&self.durable, &out)?;
        for (i, (off, data)) in self.pending.lock().iter().enumerate() {
            if keep(i) {
                out.write_at(data, *off)?;
            }
        }
        Ok(out)
    }

    /// Writes not yet durable (those the crash could lose).
    pub fn pending_writes(&self) -> usize {
        self.pending.lock().len()
    }
}

/// Copies every resident page of `src` to `dst`.
fn copy_all(src: &MemDevice, dst: &MemDevice) -> Result<()> {
    for (off, page) in src.pages_snapshot() {
        dst.write_at(&page, off)?;
    }
    Ok(())
}

impl Device for CrashDevice {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.live.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.live.write_at(buf, offset)?;
        // Writes after the flush that follows the freeze never happened:
        // the machine was already down.
        if self.syncs() <= self.freeze_at {
            self.pending.lock().push((offset, buf.to_vec()));
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        let n = self.syncs.fetch_add(1, Ordering::SeqCst) + 1;
        if n <= self.freeze_at {
            let writes = std::mem::take(&mut *self.pending.lock());
            for (off, data) in writes {
                self.durable.write_at(&data, off)?;
            }
        }
        Ok(())
    }

    forward_geometry!(live, 512);

    fn zero_range(&self, offset: u64, len: u64) -> Result<()> {
        // Zeroing is a write like any other; record it as one.
        self.live.zero_range(offset, len)?;
        if self.syncs() > self.freeze_at {
            return Ok(());
        }
        if len <= (1 << 20) {
            self.pending.lock().push((offset, vec![0u8; len as usize]));
        } else {
            // Large ranges (mkfs's journal) are applied at once to the
            // durable image when not frozen; mkfs flushes right after.
            if self.syncs() < self.freeze_at {
                self.durable.zero_range(offset, len)?;
            }
        }
        Ok(())
    }
}

/// A memory device that fails on request, as a dying disk would: from the
/// `n`-th write, flush or read on (each counted separately, 1-based),
/// every one of that kind fails with EIO until [`FailingDevice::heal`].
pub struct FailingDevice {
    inner: MemDevice,
    writes: Counter,
    syncs: Counter,
    reads: Counter,
}

/// Calls of one kind so far, and the first one that fails.
struct Counter {
    done: AtomicU64,
    fail_at: AtomicU64,
}

impl Counter {
    fn new() -> Counter {
        Counter {
            done: AtomicU64::new(0),
            fail_at: AtomicU64::new(u64::MAX),
        }
    }

    fn fail_after(&self, n: u64) {
        let now = self.done.load(Ordering::SeqCst);
        self.fail_at
            .store(now.saturating_add(n.max(1)), Ordering::SeqCst);
    }

    /// Counts one call; whether it fails.
    fn fails(&self) -> bool {
        let n = self.done.fetch_add(1, Ordering::SeqCst) + 1;
        n >= self.fail_at.load(Ordering::SeqCst)
    }
}

fn eio(dev: &MemDevice, op: &'static str, offset: u64) -> CoreError {
    CoreError::io(dev.name(), op, offset, std::io::Error::from_raw_os_error(5))
}

impl FailingDevice {
    /// Wraps a new zeroed device.
    pub fn new(name: &str, len: u64) -> FailingDevice {
        FailingDevice {
            inner: MemDevice::new(name, len),
            writes: Counter::new(),
            syncs: Counter::new(),
            reads: Counter::new(),
        }
    }

    /// Makes the `n`-th write from now fail (and all after it).
    pub fn fail_after(&self, n: u64) {
        self.writes.fail_after(n);
    }

    /// Makes the `n`-th flush from now fail (and all after it).
    pub fn fail_sync_after(&self, n: u64) {
        self.syncs.fail_after(n);
    }

    /// Makes the `n`-th read from now fail (and all after it).
    pub fn fail_read_after(&self, n: u64) {
        self.reads.fail_after(n);
    }

    /// Stops failing: every later call of every kind succeeds.
    pub fn heal(&self) {
        for c in [&self.writes, &self.syncs, &self.reads] {
            c.fail_at.store(u64::MAX, Ordering::SeqCst);
        }
    }

    /// Writes (and zeroed ranges) attempted so far, failed ones included.
    pub fn writes(&self) -> u64 {
        self.writes.done.load(Ordering::SeqCst)
    }

    /// The underlying bytes.
    pub fn inner(&self) -> &MemDevice {
        &self.inner
    }
}

impl Device for FailingDevice {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        if self.reads.fails() {
            return Err(eio(&self.inner, "read", offset));
        }
        self.inner.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        if self.writes.fails() {
            return Err(eio(&self.inner, "write", offset));
        }
        self.inner.write_at(buf, offset)
    }

    fn sync(&self) -> Result<()> {
        if self.syncs.fails() {
            return Err(eio(&self.inner, "flush", 0));
        }
        Ok(())
    }

    forward_geometry!(inner, 512);

    fn zero_range(&self, offset: u64, len: u64) -> Result<()> {
        if self.writes.fails() {
            return Err(eio(&self.inner, "zero range", offset));
        }
        self.inner.zero_range(offset, len)
    }
}

/// A device that holds back one write: the first whose bytes start with
/// `mark` runs a hook (which may wait) before it lands, as a write caught
/// between looking up its block and reaching the disk would.
pub struct StallingDevice<D> {
    inner: D,
    mark: u8,
    stalled: std::sync::atomic::AtomicBool,
    hook: Box<dyn Fn() + Send + Sync>,
}

impl<D: Device> StallingDevice<D> {
    /// Wraps `inner`; `hook` runs once, before the first write starting
    /// with `mark` lands.
    pub fn new(inner: D, mark: u8, hook: impl Fn() + Send + Sync + 'static) -> Self {
        StallingDevice {
            inner,
            mark,
            stalled: std::sync::atomic::AtomicBool::new(false),
            hook: Box::new(hook),
        }
    }
}

impl<D: Device> Device for StallingDevice<D> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.inner.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        if buf.first() == Some(&self.mark) && !self.stalled.swap(true, Ordering::SeqCst) {
            (self.hook)();
        }
        self.inner.write_at(buf, offset)
    }

    fn sync(&self) -> Result<()> {
        self.inner.sync()
    }

    forward_geometry!(inner);
}
