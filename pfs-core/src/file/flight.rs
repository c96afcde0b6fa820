//! Write-behind's writes in flight: a large aligned write of a
//! write-behind handle is copied and handed to a background writer, and
//! the call returns at once, so the front end (a FUSE request thread)
//! takes the next request while the device writes this one; up to
//! [`MAX_IN_FLIGHT`] bytes of a handle are on their way at once, written
//! in parallel.
//!
//! What keeps this as exact as writing inline:
//! - A write goes to the background only if it needs no gap zeroed before
//!   it (it starts where the block's written part ends once the writes
//!   under way are done, or before) and covers whole sectors, so no two
//!   writes under way touch the same sector; one that overlaps a write
//!   under way waits for it first.
//! - Every other write of the handle waits for all writes under way and
//!   goes inline, with no background write starting meanwhile.
//! - The extents a background write reaches are taken into the handle's
//!   uncommitted extents only when it is done: [`File::commit`] (and so
//!   every read, stat, truncate, flush, fsync and close of the handle)
//!   waits for the writes under way first, and a commit never records
//!   bytes that are not on the device.
//! - A background write that fails is reported, once, by the handle's
//!   next write or commit (as a local file system reports a failed
//!   writeback at `fsync` or `close`), and the extents of the background
//!   writes since the last commit are not committed: one of them may
//!   reach over the failed one's bytes. A look at the file ([`File::settle`]:
//!   a read, a stat) commits what landed but leaves the failure to the
//!   next write or commit, so a `stat` that happens to come first does not
//!   take it from the `fsync` or `close` that must report it.

use super::File;
use crate::error::{CoreError, Result};
use crate::mount::Extents;
use parking_lot::{Condvar, Mutex};
use pfs_format::layout::BLOCK_SIZE;
use std::collections::HashMap;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, OnceLock};

/// The most bytes of one handle on their way to the device at once.
pub(crate) const MAX_IN_FLIGHT: u64 = 32 << 20;

/// The smallest write that goes to the background.
const MIN_BACKGROUND: u64 = 64 << 10;

/// What a background write's offset and length are multiples of: whole
/// sectors of any device.
const ALIGN: u64 = 4096;

/// Background writer threads of the process.
const WRITERS: usize = 4;

/// A background write.
type Job = Box<dyn FnOnce() + Send>;

/// The writers' queue; `None` if no writer thread could be started
/// (every write then goes inline).
fn writers() -> Option<&'static Sender<Job>> {
    static QUEUE: OnceLock<Option<Sender<Job>>> = OnceLock::new();
    QUEUE
        .get_or_init(|| {
            let (tx, rx) = channel::<Job>();
            let rx = Arc::new(Mutex::new(rx));
            let mut started = 0;
            for i in 0..WRITERS {
                let rx = Arc::clone(&rx);
                let t = crate::threads::spawn_quiet(&format!("pfs-writer-{i}"), move || loop {
                    let job = rx.lock().recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                });
                started += usize::from(t.is_ok());
            }
            (started > 0).then_some(tx)
        })
        .as_ref()
}

/// A handle's writes in flight.
#[derive(Default)]
pub(super) struct Flight {
    state: Mutex<FlightState>,
    /// Signalled when a background write is done.
    done: Condvar,
    /// Held while a background write is planned and handed over, and
    /// around a write that goes inline.
    turn: Mutex<()>,
}

#[derive(Default)]
struct FlightState {
    /// File ranges of the writes under way.
    ranges: Vec<(u64, u64)>,
    /// Their bytes.
    bytes: u64,
    /// Extents the finished background writes reached, not yet taken
    /// into the handle's uncommitted ones.
    landed: Extents,
    /// File block index → where its written part ends once the writes
    /// under way are done.
    planned: HashMap<u64, u64>,
    /// The first failure of a background write since the last commit.
    error: Option<CoreError>,
    /// Background writes of the handle that failed so far, and what the
    /// last one said (see [`File::write_failures`]).
    failures: u64,
    last_failure: String,
}

impl File {
    /// A write of a write-behind handle whose blocks exist: in the
    /// background when it may go there (see the module documentation),
    /// inline otherwise.
    pub(super) fn write_blocks(&self, buf: &[u8], off: u64) -> Result<usize> {
        let len = buf.len() as u64;
        let aligned = off % ALIGN == 0 && len % ALIGN == 0 && len >= MIN_BACKGROUND;
        let queue = writers().filter(|_| aligned);
        let turn = self.flight.turn.lock();
        if let Some(queue) = queue {
            if let Some(ext) = self.plan_background(buf, off)? {
                // Planned: among the writes under way, which whatever
                // comes next waits for as it needs to. The bytes are
                // copied without the turn.
                drop(turn);
                self.send_background(queue, buf, off, ext);
                return Ok(buf.len());
            }
        }
        self.land(true)?;
        let n = self.write_at_deferred(buf, off)?;
        drop(turn);
        Ok(n)
    }

    /// Plans the write of `buf` at `off` as a background write: it is then
    /// among the writes under way, and the extents it starts from are
    /// returned. `None` if it would have to zero a gap first. The caller
    /// holds the turn.
    fn plan_background(&self, buf: &[u8], off: u64) -> Result<Option<Extents>> {
        let len = buf.len() as u64;
        let end = off + len;
        let blocks = self.m.block_map(self.ino)?;
        let (blkid, in_blk) = (off / BLOCK_SIZE, off % BLOCK_SIZE);
        let Some(first) = blocks.get(&blkid) else {
            return Ok(None);
        };
        let uncommitted = self.pending.lock().blocks.get(&first.btno).copied();
        let mut st = self.flight.state.lock();
        loop {
            if st.error.is_some() {
                return Ok(None);
            }
            let overlaps = st.ranges.iter().any(|&(s, e)| s < end && off < e);
            if !overlaps && st.bytes + len <= MAX_IN_FLIGHT {
                break;
            }
            self.flight.done.wait(&mut st);
        }
        let known = first
            .data_end
            .max(uncommitted.unwrap_or(0))
            .max(st.landed.blocks.get(&first.btno).copied().unwrap_or(0))
            .max(st.planned.get(&blkid).copied().unwrap_or(0));
        if in_blk > known {
            return Ok(None);
        }
        let mut pos = off;
        while pos < end {
            let (b, at) = (pos / BLOCK_SIZE, pos % BLOCK_SIZE);
            let n = (end - pos).min(BLOCK_SIZE - at);
            let e = st.planned.entry(b).or_insert(0);
            *e = (*e).max(at + n);
            pos += n;
        }
        st.ranges.push((off, end));
        st.bytes += len;
        // The write starts inside what is written: nothing to zero before
        // it.
        let mut ext = Extents::default();
        ext.blocks.insert(first.btno, in_blk);
        Ok(Some(ext))
    }

    /// Copies a planned background write and hands it to the writers.
    fn send_background(&self, queue: &Sender<Job>, buf: &[u8], off: u64, mut ext: Extents) {
        let (len, end) = (buf.len() as u64, off + buf.len() as u64);
        // Aligned, so the device writes it as it is (O_DIRECT), with no
        // second copy through a bounce buffer.
        let data = crate::device::AlignedBuf::copy_of(buf);
        let (m, ino, born) = (Arc::clone(&self.m), self.ino, self.born);
        let flight = Arc::clone(&self.flight);
        let job: Job = Box::new(move || {
            let r = (|| {
                let _locks = m.data_write_guard(ino)?;
                m.with_write_permit(|| {
                    m.write_data(ino, Some(born), off, data.as_slice(), &mut ext)
                })
            })();
            let mut st = flight.state.lock();
            match r {
                Ok(()) => {
                    for (bt, e) in ext.blocks {
                        let l = st.landed.blocks.entry(bt).or_insert(0);
                        *l = (*l).max(e);
                    }
                    st.landed.end = st.landed.end.max(ext.end);
                }
                Err(e) => {
                    st.failures += 1;
                    st.last_failure = e.to_string();
                    st.error.get_or_insert(e);
                }
            }
            if let Some(i) = st.ranges.iter().position(|&r| r == (off, end)) {
                st.ranges.swap_remove(i);
            }
            st.bytes -= len;
            flight.done.notify_all();
        });
        if let Err(e) = queue.send(job) {
            // No writer takes it: done here.
            (e.0)();
        }
    }

    /// How many of the handle's background writes failed so far. A front
    /// end whose openers share one handle (a FUSE mount's) notes the count
    /// when one opens the file and reports a failure counted since at that
    /// opener's `flush` or `fsync` with [`File::failed_since`]: the handle
    /// itself reports each failure once, to whichever commit comes first,
    /// and every opener that may have written must hear of it.
    pub fn write_failures(&self) -> u64 {
        self.flight.state.lock().failures
    }

    /// The error to report to an opener that noted `seen`
    /// ([`File::write_failures`]) when background writes failed since.
    pub fn failed_since(&self, seen: u64) -> Option<CoreError> {
        let st = self.flight.state.lock();
        (st.failures > seen).then(|| CoreError::Io {
            device: self.m.device().name().to_owned(),
            op: "a background write of the file (reported to another opener first)",
            offset: 0,
            source: std::io::Error::other(st.last_failure.clone()),
        })
    }

    /// Waits for the handle's writes under way and takes what they wrote
    /// into its uncommitted extents. Once one failed, what the background
    /// writes since the last commit reached is dropped instead, and the
    /// failure is returned when `report` (a write or a commit), or kept for
    /// the next call that reports (a look at the file).
    pub(super) fn land(&self, report: bool) -> Result<()> {
        let mut st = self.flight.state.lock();
        while !st.ranges.is_empty() {
            self.flight.done.wait(&mut st);
        }
        st.planned.clear();
        let landed = std::mem::take(&mut st.landed);
        if st.error.is_some() {
            return match report {
                true => Err(st.error.take().expect("checked above")),
                false => Ok(()),
            };
        }
        drop(st);
        if landed.blocks.is_empty() && landed.end == 0 {
            return Ok(());
        }
        let mut p = self.pending.lock();
        for (bt, e) in landed.blocks {
            let have = p.blocks.entry(bt).or_insert(0);
            *have = (*have).max(e);
        }
        p.end = p.end.max(landed.end);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::MIN_BACKGROUND;
    use crate::sim::FailingDevice;
    use crate::testutil::{behind, mem_writer, writer_on};
    use crate::OpenOptions;
    use pfs_format::layout::CHUNK_SIZE;
    use std::sync::Arc;

    /// `n` bytes of pattern `k`.
    fn piece(k: u8, n: u64) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31) ^ k).collect()
    }

    /// A write-behind handle of `/f` on a device that fails on request,
    /// its first [`MIN_BACKGROUND`] bytes written and committed.
    fn one_piece_committed() -> (Arc<FailingDevice>, Arc<crate::Mount>, crate::File) {
        let dev = Arc::new(FailingDevice::new("failing", CHUNK_SIZE));
        let m = writer_on(dev.clone());
        let f = m.open_file("/f", behind()).unwrap();
        f.write_at(&piece(1, MIN_BACKGROUND), 0).unwrap();
        f.commit().unwrap();
        (dev, m, f)
    }

    /// Writes the second piece of `f`, which goes to the background (the
    /// block is there: its data is the next device write) and fails there.
    fn fail_in_background(dev: &FailingDevice, f: &crate::File) {
        let n = MIN_BACKGROUND;
        dev.fail_after(1);
        let before = dev.writes();
        assert_eq!(f.write_at(&piece(2, n), n).unwrap(), n as usize);
        while dev.writes() == before {
            std::thread::yield_now();
        }
        dev.heal();
    }

    #[test]
    fn background_writes_from_threads_land_whole_and_later_ones_win() {
        let m = mem_writer();
        let f = Arc::new(m.open_file("/f", behind()).unwrap());
        let n = MIN_BACKGROUND;
        // Two threads write alternate pieces of a 3 MiB file, growing
        // it, some across the first block's end.
        std::thread::scope(|s| {
            for t in 0..2u64 {
                let f = Arc::clone(&f);
                s.spawn(move || {
                    for i in (t..48).step_by(2) {
                        f.write_at(&piece(i as u8, n), i * n).unwrap();
                    }
                });
            }
        });
        // Written again over pieces still on their way, and a small write
        // (inline) in the middle.
        f.write_at(&piece(100, 2 * n), 4 * n).unwrap();
        f.write_at(b"inline", 7 * n + 5).unwrap();
        let other = m.open_file("/f", OpenOptions::default()).unwrap();
        assert_eq!(other.getattr().unwrap().size, 0, "nothing committed yet");
        f.commit().unwrap();
        let mut want = Vec::new();
        for i in 0..48 {
            want.extend(piece(i as u8, n));
        }
        want[(4 * n) as usize..(6 * n) as usize].copy_from_slice(&piece(100, 2 * n));
        want[(7 * n + 5) as usize..(7 * n + 11) as usize].copy_from_slice(b"inline");
        let mut got = vec![0u8; want.len() + 10];
        assert_eq!(other.read_at(&mut got, 0).unwrap(), want.len());
        assert!(got[..want.len()] == want[..], "the file reads as written");
    }

    #[test]
    fn a_failed_background_write_is_reported_once_and_nothing_it_reached_is_committed() {
        let (dev, m, f) = one_piece_committed();
        let n = MIN_BACKGROUND;
        fail_in_background(&dev, &f);
        // The next write of the handle reports it (a commit would too).
        assert!(f.write_at(&piece(3, n), 2 * n).is_err());
        f.commit().unwrap();
        let other = m.open_file("/f", OpenOptions::default()).unwrap();
        assert_eq!(
            other.getattr().unwrap().size,
            n,
            "nothing past it committed"
        );
        // Reported once; later writes go on.
        f.write_at(&piece(4, n), n).unwrap();
        f.commit().unwrap();
        assert_eq!(other.getattr().unwrap().size, 2 * n);
        let mut got = vec![0u8; (2 * n) as usize];
        other.read_at(&mut got, 0).unwrap();
        assert_eq!(&got[n as usize..], &piece(4, n)[..]);
    }

    #[test]
    fn a_look_at_the_file_leaves_a_failed_background_write_to_the_next_commit() {
        let (dev, _m, f) = one_piece_committed();
        let n = MIN_BACKGROUND;
        fail_in_background(&dev, &f);
        // A stat and a read of the handle come first (as a FUSE getattr or
        // read does before a close's flush or an fsync): they see the file
        // without the failed write and do not take its failure.
        assert_eq!(f.getattr().unwrap().size, n);
        let mut got = vec![0u8; (2 * n) as usize];
        assert_eq!(f.read_at(&mut got, 0).unwrap(), n as usize);
        f.settle().unwrap();
        // The fsync after them reports it, once.
        assert!(f.sync_all().is_err(), "the failed write is reported");
        f.sync_all().unwrap();
        assert_eq!(f.getattr().unwrap().size, n, "nothing of it committed");
    }

    #[test]
    fn every_opener_sharing_a_handle_hears_of_a_failed_background_write() {
        let (dev, _m, f) = one_piece_committed();
        // Two openers of the one handle, as on a FUSE mount.
        let (a, b) = (f.write_failures(), f.write_failures());
        assert!(f.failed_since(a).is_none());
        fail_in_background(&dev, &f);
        // The first opener's flush gets the handle's report; the second's
        // commit has nothing left, yet it hears of the failure too.
        assert!(f.commit().is_err());
        assert!(f.failed_since(a).is_some());
        f.commit().unwrap();
        let e = f.failed_since(b).expect("the second opener hears of it");
        assert_eq!(e.errno(), libc::EIO);
        // An opener that came after it does not.
        assert!(f.failed_since(f.write_failures()).is_none());
    }
}
