//! What the processes of one machine that mount the same PBD share, when
//! they mount it with [`crate::MountOptions::shared`] (the C SDK does):
//! a small file ([`crate::pbd::share_path`]), mapped into every process.
//!
//! - A commit counter. A writer bumps it after each commit (and
//!   checkpoint); a call of another process compares it with the value it
//!   last caught up to, so it sees every commit of this machine without
//!   reading the device.
//! - Per host id, the writer lease as this machine holds it: the token its
//!   slot carries, the time of the last renewal on `CLOCK_MONOTONIC` (one
//!   clock for all processes of a boot), and the heartbeat counter. A
//!   process of a host whose lease another process of the machine holds
//!   joins that lease instead of competing with it.
//! - Per host id, the journal head of the host's last commit while it
//!   holds the lease, and how many times it was deposed: a head on the
//!   device that none of its processes wrote means another host took the
//!   lease over and committed, and every process of the host that was
//!   mounted then stops writing for good.
//! - A journal window: the bytes the appends of the host that holds the
//!   lease last wrote to the journal, so the host's other processes catch
//!   up with them without reading the device.
//! - Slots of appends whose device writes are still under way (made after
//!   the transaction lock is let go): the process, the head the append
//!   starts at and its writes, so a committer commits nothing past one,
//!   and writes one from the window if its process died first.
//! - Byte-range locks (`fcntl`, owned by the process, so a killed process
//!   never leaves one behind and a forked child does not inherit them):
//!   the host's transaction lock, one at a time per host id; a read lock
//!   per host id held by every process mounted with it ("members"); a
//!   read lock per open inode, so that a file one process has open is not
//!   freed when another unlinks it (machine-wide: a replica's open file
//!   stays whole while the writer unlinks it, and the check never waits);
//!   and a data lock per host id and inode, shared by writes (a process
//!   keeps its hold a moment after its last write, see `holds`) and taken
//!   alone by a truncate ([`crate::datalock`]). Only one host writes at a
//!   time, so the data locks of different hosts need not meet: a stopped
//!   writer of one host (a paused primary) never holds up a truncate of
//!   the host that took over.

use crate::error::{CoreError, Result};
use crate::hostlock::{flock, open_machine_file};
use memmap2::MmapRaw;
use parking_lot::{Mutex, ReentrantMutex, ReentrantMutexGuard};
use std::cell::Cell;
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

mod holds;

/// Size of the shared file.
const FILE_LEN: u64 = (OFF_WINDOW + W_DATA + WINDOW_BYTES) as u64;
const MAGIC: u64 = u64::from_le_bytes(*b"PFSRSHR8");
const OFF_MAGIC: usize = 0;
const OFF_BOOT: usize = 8;
const OFF_VERSION: usize = 16;
/// Per-host words start here, `HOST_STRIDE` bytes per host id.
const OFF_HOSTS: usize = 64;
const HOST_STRIDE: usize = 64;
const H_TOKEN: usize = 0;
const H_RENEWED: usize = 8;
const H_COUNTER: usize = 16;
/// The journal head txid of the host's last commit, while it holds the
/// lease.
const H_HEAD: usize = 24;
/// The head txid of a commit in flight (between its leader write and
/// [`Share::settle`]), 0 when none.
const H_NEXT: usize = 32;
/// How many times another host took this host's lease over and committed.
const H_DEPOSED: usize = 40;
/// Flushes asked for by the host's processes (see [`crate::flush`]).
const H_FLUSH_REQUESTED: usize = 48;
/// The newest of those requests a completed flush covered.
const H_FLUSH_COVERED: usize = 56;
/// Highest host id the file has room for.
const MAX_HOSTID: u64 = ((OFF_GROUP - OFF_HOSTS) / HOST_STRIDE - 1) as u64;
/// Per-host words of group commit ([`crate::mount`]'s `group` module)
/// start here, `HOST_STRIDE` bytes per host id.
const OFF_GROUP: usize = 16 << 10;
/// Bumped before and after each write of an appended head; the head is in
/// slot `G_SLOTS + (gen / 2 % 2) * 24` (two slots, so a process killed
/// while writing one leaves the other whole).
const G_GEN: usize = 0;
/// Two slots of (txid, journal offset, lsn): the head of the newest
/// transaction a process of the host wrote to the journal, committed or
/// not.
const G_SLOTS: usize = 8;
/// How many times a commit of the host failed (its flush or leader write):
/// what it had written may be lost, so none of the host's processes
/// writes on.
const G_BROKEN: usize = 56;
/// One word per host id from here: how many checkpoints the host's
/// processes made (each moves the journal's tail in the leader record).
const OFF_CHECKPOINTS: usize = 32 << 10;
/// One word per host id from here: until when (`CLOCK_MONOTONIC`
/// milliseconds) a truncate of the host waits for a data lock
/// ([`Share::want_data`]).
const OFF_DATA_WANTED: usize = 34 << 10;
/// One word per host id from here: bumped each time a process lets the
/// host's committer lock go, and waited on (a futex) by the processes
/// that want it ([`Share::lock_commit`]).
const OFF_TURNS: usize = 36 << 10;
const _: () = assert!(OFF_CHECKPOINTS + (MAX_HOSTID as usize + 1) * 8 <= OFF_DATA_WANTED);
const _: () = assert!(OFF_DATA_WANTED + (MAX_HOSTID as usize + 1) * 8 <= OFF_TURNS);
const _: () = assert!(OFF_TURNS + (MAX_HOSTID as usize + 1) * 8 <= OFF_FLIGHT);
/// How long a process waiting for the committer lock sleeps before it
/// tries again unwoken: the lock of a killed committer is let go by the
/// kernel, which wakes nobody.
const TURN_LOOK: std::time::Duration = std::time::Duration::from_millis(2);
/// Appends whose device writes are under way ([`Share::flight_begin`]):
/// `FLIGHT_SLOTS` slots of `FLIGHT_STRIDE` bytes, for every host id.
const OFF_FLIGHT: usize = 40 << 10;
/// Slots of appends under way, machine-wide.
const FLIGHT_SLOTS: usize = 16;
const FLIGHT_STRIDE: usize = 128;
/// The slot's owner: `generation << 48 | pid << 16 | hostid` (host ids fit
/// in 8 bits; pid 0 once its process gave it up), or `F_FILLING | pid << 16
/// | hostid` while its other fields are written; 0 when the slot is free. The
/// generation, counted per slot, makes each use of a slot a tag of its
/// own.
const F_TAG: usize = 0;
const F_FILLING: u64 = 1 << 15;
/// The slot's generation counter.
const F_GEN: usize = 120;
/// The head (txid, journal offset, lsn) the append starts at.
const F_START: usize = 8;
/// The head txid after it.
const F_END: usize = 32;
/// How many device writes it makes (at most [`FLIGHT_PIECES`]).
const F_COUNT: usize = 40;
/// Per write: (journal offset, device address, length).
const F_PIECES: usize = 48;
/// Device writes an append under way may make.
const FLIGHT_PIECES: usize = 3;
/// The journal window ([`Share::window_put`]): what the appends of the
/// host that holds the lease on this machine last wrote to the journal.
const OFF_WINDOW: usize = 48 << 10;
/// Bumped before and after each change of the window: odd while one is
/// under way (or was cut short by a killed process).
const W_GEN: usize = 0;
/// The host id whose appends the window holds (0: none).
const W_HOST: usize = 8;
/// The journal offsets `[W_LO, W_HI)` the window holds.
const W_LO: usize = 16;
const W_HI: usize = 24;
/// The window's bytes start here: journal offset `o` at
/// `W_DATA + o % WINDOW_BYTES`.
const W_DATA: usize = 64;
/// How much of the journal the window holds: many transactions, more than
/// the host's processes fall behind each other by.
const WINDOW_BYTES: usize = 256 << 10;

/// Lock ranges (byte offsets in the file; locks may lie past its end).
const LOCK_INIT: i64 = 1 << 20;
const LOCK_TX: i64 = 2 << 20;
const LOCK_MEMBER: i64 = 3 << 20;
/// One byte per host id: the order of the host's flushes.
const LOCK_FLUSH: i64 = 4 << 20;
/// One byte per host id: one committer at a time (group commit).
const LOCK_COMMIT: i64 = 5 << 20;
const LOCK_OPEN: i64 = 1 << 32;
/// Data locks: host id `h`'s inode `ino` at `LOCK_DATA + h * DATA_STRIDE + ino`.
const LOCK_DATA: i64 = 1 << 44;
const DATA_STRIDE: i64 = 1 << 40;

/// The shared state of one PBD on this machine, as seen by this process.
pub(crate) struct Share {
    file: File,
    map: MmapRaw,
    path: PathBuf,
    /// The in-process half of the transaction lock (fcntl locks do not
    /// exclude threads of one process), with how deep the holding thread
    /// has taken it: a write that extends a file holds it around the
    /// transactions it makes.
    tx: ReentrantMutex<TxHold>,
    /// Threads of this process waiting for [`Share::tx`].
    tx_waiters: std::sync::atomic::AtomicU32,
    /// Mounts of this process per host id holding the member lock.
    members: Mutex<HashMap<u64, usize>>,
    /// Handles of this process per open-inode lock (by its offset).
    open: Mutex<HashMap<i64, usize>>,
    /// The data locks this process holds shared for its writes (and keeps
    /// a moment after them).
    writing: holds::Holds,
    /// This share, for the thread that lets go of unused data locks.
    me: OnceLock<Weak<Share>>,
    /// The in-process half of the order of flushes ([`Share::flush`]).
    flushing: Mutex<()>,
    /// The in-process half of the committer's lock ([`Share::lock_commit`]).
    committing: Mutex<()>,
    /// The in-process half of the data locks, shared by every mount of
    /// this process on the PBD.
    pub(crate) stripes: crate::stripes::Stripes,
}

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Share").field("path", &self.path).finish()
    }
}

/// Gives every page of the shared file `file` its storage, where its
/// filesystem can (a filesystem that cannot leaves it sparse, as before).
fn allocate(file: &File) -> std::io::Result<()> {
    use nix::errno::Errno;
    match nix::fcntl::posix_fallocate(file.as_raw_fd(), 0, FILE_LEN as libc::off_t) {
        Ok(()) | Err(Errno::EOPNOTSUPP | Errno::EINVAL | Errno::ENOSYS) => Ok(()),
        Err(e) => Err(std::io::Error::from(e)),
    }
}

/// One `Share` per file per process, so that closing one mount's file
/// never drops the locks another mount of the process holds.
static OPEN_SHARES: Mutex<Vec<(PathBuf, u32, Weak<Share>)>> = Mutex::new(Vec::new());

/// A stable number for this boot of the machine (`CLOCK_MONOTONIC` values
/// are comparable only within one boot).
fn boot_id() -> u64 {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    u64::from(pfs_format::checksum::pfs_crc32c(id.trim().as_bytes())) | 1 << 40
}

impl Share {
    /// Opens (creating it and its directory when needed) the shared file
    /// at `path` of the device file `device` (whose users may open it).
    pub(crate) fn open(path: &Path, device: Option<&Path>) -> Result<Arc<Share>> {
        let path = path.to_path_buf();
        let pid = std::process::id();
        let mut all = OPEN_SHARES.lock();
        all.retain(|(_, p, w)| *p == pid && w.strong_count() > 0);
        if let Some(s) = all
            .iter()
            .find(|(p, _, _)| *p == path)
            .and_then(|(_, _, w)| w.upgrade())
        {
            return Ok(s);
        }
        let io = |what: &'static str, e: std::io::Error| {
            CoreError::io(&path.display().to_string(), what, 0, e)
        };
        let file = open_machine_file(&path, device).map_err(|e| io("open", e))?;
        let share = Share {
            map: {
                let len = file.metadata().map_err(|e| io("stat", e))?.len();
                if len < FILE_LEN {
                    file.set_len(FILE_LEN).map_err(|e| io("size", e))?;
                }
                // Its pages are given to it now: a store into a page of the
                // mapped file that its filesystem (a full /run) has no room
                // for would be a SIGBUS instead of this error.
                allocate(&file).map_err(|e| io("allocate", e))?;
                MmapRaw::map_raw(&file).map_err(|e| io("map", e))?
            },
            file,
            path: path.clone(),
            tx: ReentrantMutex::new(TxHold::default()),
            tx_waiters: Default::default(),
            members: Mutex::new(HashMap::new()),
            open: Mutex::new(HashMap::new()),
            writing: Default::default(),
            me: OnceLock::new(),
            flushing: Mutex::new(()),
            committing: Mutex::new(()),
            stripes: Default::default(),
        };
        share.init()?;
        let share = Arc::new(share);
        let _ = share.me.set(Arc::downgrade(&share));
        all.push((path, pid, Arc::downgrade(&share)));
        Ok(share)
    }

    fn word(&self, off: usize) -> &AtomicU64 {
        static ZERO: AtomicU64 = AtomicU64::new(0);
        crate::sys::shared_u64(&self.map, off).unwrap_or(&ZERO)
    }

    fn host_word(&self, hostid: u64, field: usize) -> &AtomicU64 {
        self.word(OFF_HOSTS + hostid.min(MAX_HOSTID) as usize * HOST_STRIDE + field)
    }

    fn group_word(&self, hostid: u64, field: usize) -> &AtomicU64 {
        self.word(OFF_GROUP + hostid.min(MAX_HOSTID) as usize * HOST_STRIDE + field)
    }

    /// Sets the file up for this boot: what a previous boot left (clock
    /// readings, lease tokens) means nothing now.
    fn init(&self) -> Result<()> {
        let boot = boot_id();
        if self.word(OFF_MAGIC).load(Ordering::Acquire) == MAGIC
            && self.word(OFF_BOOT).load(Ordering::Acquire) == boot
        {
            return Ok(());
        }
        self.lock(libc::F_WRLCK, LOCK_INIT, 1, true)?;
        if self.word(OFF_MAGIC).load(Ordering::Acquire) != MAGIC
            || self.word(OFF_BOOT).load(Ordering::Acquire) != boot
        {
            for off in (OFF_BOOT..FILE_LEN as usize).step_by(8) {
                self.word(off).store(0, Ordering::Relaxed);
            }
            self.word(OFF_BOOT).store(boot, Ordering::Release);
            self.word(OFF_MAGIC).store(MAGIC, Ordering::Release);
        }
        self.unlock(LOCK_INIT, 1);
        Ok(())
    }

    fn lock(&self, kind: i32, start: i64, len: i64, wait: bool) -> Result<bool> {
        let fl = flock(kind, start, len);
        loop {
            let arg = if wait {
                nix::fcntl::FcntlArg::F_SETLKW(&fl)
            } else {
                nix::fcntl::FcntlArg::F_SETLK(&fl)
            };
            match nix::fcntl::fcntl(self.file.as_raw_fd(), arg) {
                Ok(_) => return Ok(true),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES) if !wait => {
                    return Ok(false)
                }
                // The kernel finds cycles between processes, not threads:
                // a thread waiting for the transaction lock while another
                // of its process holds a data lock looks like a deadlock
                // to it. Locks are always taken in one order, so the wait
                // ends; wait on.
                Err(nix::errno::Errno::EDEADLK) if wait => {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(e) => {
                    return Err(CoreError::io(
                        &self.path.display().to_string(),
                        "lock a range of",
                        start as u64,
                        std::io::Error::from(e),
                    ))
                }
            }
        }
    }

    fn unlock(&self, start: i64, len: i64) {
        let fl = flock(libc::F_UNLCK, start, len);
        let _ = nix::fcntl::fcntl(self.file.as_raw_fd(), nix::fcntl::FcntlArg::F_SETLK(&fl));
    }

    /// Whether another process holds a lock on `[start, start + len)`.
    fn held_elsewhere(&self, start: i64, len: i64) -> bool {
        let mut fl = flock(libc::F_WRLCK, start, len);
        match nix::fcntl::fcntl(
            self.file.as_raw_fd(),
            nix::fcntl::FcntlArg::F_GETLK(&mut fl),
        ) {
            Ok(_) => i32::from(fl.l_type) != libc::F_UNLCK,
            // Cannot tell: assume someone does (the safe answer for every
            // caller: keep a file, keep a lease).
            Err(_) => true,
        }
    }

    /// Takes host `hostid`'s transaction lock, waiting for the other
    /// processes (and threads) of this machine that hold it. A thread that
    /// holds it already takes it again at once.
    pub(crate) fn lock_tx(&self, hostid: u64) -> Result<TxLock<'_>> {
        self.tx_waiters.fetch_add(1, Ordering::AcqRel);
        let inner = self.tx.lock();
        self.tx_waiters.fetch_sub(1, Ordering::AcqRel);
        if inner.depth.get() == 0 && !inner.holds(hostid) {
            if let Some((pid, other)) = inner.held.take() {
                // Passed on for another host id (a forked child holds no
                // lock its parent held).
                if pid == std::process::id() {
                    self.unlock(LOCK_TX + other.min(MAX_HOSTID) as i64, 1);
                }
            }
            self.lock(
                libc::F_WRLCK,
                LOCK_TX + hostid.min(MAX_HOSTID) as i64,
                1,
                true,
            )?;
            inner.held.set(Some((std::process::id(), hostid)));
        }
        inner.depth.set(inner.depth.get() + 1);
        Ok(TxLock {
            share: self,
            hostid,
            inner,
        })
    }

    /// Counts this process as mounted with `hostid` (until [`Self::leave`]).
    pub(crate) fn join(&self, hostid: u64) -> Result<()> {
        let mut m = self.members.lock();
        let n = m.entry(hostid).or_insert(0);
        if *n == 0 {
            if !self.others_mounted(hostid) {
                // The first process of the host on this machine: what an
                // earlier one left (a head appended to a journal since made
                // anew) means nothing now. Under the transaction lock, so
                // no process of the host is appending.
                let _tx = self.lock_tx(hostid)?;
                if !self.others_mounted(hostid) {
                    self.group_word(hostid, G_GEN).store(0, Ordering::Release);
                    for k in 0..6 {
                        self.group_word(hostid, G_SLOTS + 8 * k)
                            .store(0, Ordering::Release);
                    }
                }
            }
            self.lock(
                libc::F_RDLCK,
                LOCK_MEMBER + hostid.min(MAX_HOSTID) as i64,
                1,
                true,
            )?;
        }
        *n += 1;
        Ok(())
    }

    /// Undoes [`Self::join`].
    pub(crate) fn leave(&self, hostid: u64) {
        let mut m = self.members.lock();
        if let Some(n) = m.get_mut(&hostid) {
            *n -= 1;
            if *n == 0 {
                m.remove(&hostid);
                self.unlock(LOCK_MEMBER + hostid.min(MAX_HOSTID) as i64, 1);
            }
        }
    }

    /// Whether the caller's mount is the last one mounted with `hostid` on
    /// this machine: the only one of this process, and no other process.
    pub(crate) fn last_member(&self, hostid: u64) -> bool {
        self.members.lock().get(&hostid).copied().unwrap_or(0) <= 1 && !self.others_mounted(hostid)
    }

    /// Whether another process of this machine is mounted with `hostid`.
    pub(crate) fn others_mounted(&self, hostid: u64) -> bool {
        self.held_elsewhere(LOCK_MEMBER + hostid.min(MAX_HOSTID) as i64, 1)
    }

    /// Marks inode `ino` open in this process (`delta` 1) or closed (-1).
    pub(crate) fn mark_open(&self, ino: u64, delta: i64) {
        let at = per_inode(LOCK_OPEN, ino);
        if delta > 0 {
            // Best effort: a failure only loses the protection.
            let _ = self.hold_shared(&self.open, at);
        } else {
            self.release_shared(&self.open, at);
        }
    }

    /// Takes inode `ino`'s data lock of host `hostid` among the processes
    /// of this machine: shared for a write (the process holds one
    /// byte-range read lock for all its threads writing the file, and
    /// keeps it a moment after the last: see [`holds`]), or alone for a
    /// truncate (whose thread holds the in-process lock alone, so no
    /// thread of this process writes the file now).
    pub(crate) fn lock_data(&self, hostid: u64, ino: u64, exclusive: bool) -> Result<()> {
        let at = data_lock_at(hostid, ino);
        if !exclusive {
            return self.hold_data(hostid, at);
        }
        // A hold this process kept would be turned into the write lock
        // while the kernel waits for the others' holds, and two processes
        // doing so would wait for each other.
        let mut m = self.writing.map.lock();
        if m.get(&at).is_some_and(|h| h.writes == 0) {
            m.remove(&at);
            self.unlock(at, 1);
        }
        drop(m);
        let until = self.want_data(hostid);
        let r = self.lock(libc::F_WRLCK, at, 1, true);
        // Taken (or failed): the host's processes may keep holds again,
        // unless another truncate announced itself meanwhile.
        let _ = self.data_wanted_word(hostid).compare_exchange(
            until,
            0,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        r.map(|_| ())
    }

    /// Undoes [`Self::lock_data`].
    pub(crate) fn unlock_data(&self, hostid: u64, ino: u64, exclusive: bool) {
        let at = data_lock_at(hostid, ino);
        if exclusive {
            self.unlock(at, 1);
            return;
        }
        let mut m = self.writing.map.lock();
        let Some(h) = m.get_mut(&at) else { return };
        h.writes = h.writes.saturating_sub(1);
        if h.writes > 0 {
            return;
        }
        let me = || self.me.get().cloned().unwrap_or_default();
        if self.data_wanted(hostid) || !self.writing.may_keep(me) {
            m.remove(&at);
            self.unlock(at, 1);
            return;
        }
        h.since = std::time::Instant::now();
        drop(m);
        self.writing.kept();
    }

    /// Counts one more write holding the data lock at `at` (of host
    /// `hostid`); the process takes the byte-range lock with its first
    /// hold, unless it kept it from an earlier write.
    fn hold_data(&self, hostid: u64, at: i64) -> Result<()> {
        loop {
            let mut m = self.writing.map.lock();
            if let Some(h) = m.get_mut(&at) {
                h.writes += 1;
                return Ok(());
            }
            if self.lock(libc::F_RDLCK, at, 1, false)? {
                m.insert(
                    at,
                    holds::Hold {
                        hostid,
                        writes: 1,
                        since: std::time::Instant::now(),
                    },
                );
                return Ok(());
            }
            drop(m);
            // Another process holds the range alone (a truncate): wait for
            // it without holding up this process's other holds, then count
            // this one under the map's lock (a thread of ours may have
            // let the process's hold go meanwhile, so it is taken again
            // there).
            self.lock(libc::F_RDLCK, at, 1, true)?;
        }
    }

    /// Announces that a truncate of host `hostid` waits for a data lock:
    /// until the announcement is taken back, or for [`WANT`] at most, the
    /// host's processes let go of their holds as soon as no write uses
    /// them, instead of keeping them. Returns the mark made.
    fn want_data(&self, hostid: u64) -> u64 {
        let until = crate::lease::mono_ms() + WANT.as_millis() as u64;
        self.data_wanted_word(hostid)
            .fetch_max(until, Ordering::AcqRel);
        until
    }

    /// Whether a truncate of host `hostid` waits for a data lock.
    fn data_wanted(&self, hostid: u64) -> bool {
        crate::lease::mono_ms() < self.data_wanted_word(hostid).load(Ordering::Acquire)
    }

    fn data_wanted_word(&self, hostid: u64) -> &AtomicU64 {
        self.word(OFF_DATA_WANTED + hostid.min(MAX_HOSTID) as usize * 8)
    }

    /// Lets go of the kept holds no write used for [`holds::KEEP`], and of
    /// every unused one while a truncate of their host waits; returns how
    /// long until the next one may be due, if the process holds any. (A
    /// truncate that starts waiting waits at most that long for the holds
    /// of this process that no write uses.)
    fn release_unused(&self) -> Option<std::time::Duration> {
        let now = std::time::Instant::now();
        let mut next: Option<std::time::Duration> = None;
        let mut m = self.writing.map.lock();
        m.retain(|&at, h| {
            // One in use is kept for at least as long once its writes end.
            let left = if h.writes > 0 {
                holds::KEEP
            } else {
                let age = now.saturating_duration_since(h.since);
                if age >= holds::KEEP || self.data_wanted(h.hostid) {
                    self.unlock(at, 1);
                    return false;
                }
                holds::KEEP - age
            };
            next = Some(next.map_or(left, |n| n.min(left)));
            true
        });
        next
    }

    /// Counts one more hold of the read lock at `at` in `holds`; the
    /// process takes the byte-range lock with its first hold.
    fn hold_shared(&self, holds: &Mutex<HashMap<i64, usize>>, at: i64) -> Result<()> {
        loop {
            let mut m = holds.lock();
            let n = m.entry(at).or_insert(0);
            if *n > 0 || self.lock(libc::F_RDLCK, at, 1, false)? {
                *n += 1;
                return Ok(());
            }
            if *n == 0 {
                m.remove(&at);
            }
            drop(m);
            // Another process holds the range alone (a truncate): wait for
            // it without holding up this process's other holds, then count
            // this one under the map's lock (a thread of ours may have
            // dropped the process's hold meanwhile, so it is taken again
            // there).
            self.lock(libc::F_RDLCK, at, 1, true)?;
        }
    }

    /// Undoes [`Self::hold_shared`]; the last hold releases the lock.
    fn release_shared(&self, holds: &Mutex<HashMap<i64, usize>>, at: i64) {
        let mut m = holds.lock();
        if let Some(n) = m.get_mut(&at) {
            *n -= 1;
            if *n == 0 {
                m.remove(&at);
                self.unlock(at, 1);
            }
        }
    }

    /// Whether another process of this machine has inode `ino` open.
    pub(crate) fn open_elsewhere(&self, ino: u64) -> bool {
        self.held_elsewhere(per_inode(LOCK_OPEN, ino), 1)
    }

    /// The commit counter.
    pub(crate) fn version(&self) -> u64 {
        self.word(OFF_VERSION).load(Ordering::Acquire)
    }

    /// Makes durable every write this process completed before the call,
    /// by `flush` or by a flush another process (or thread) of host
    /// `hostid` on this machine started after it (see [`crate::flush`]).
    /// Only the processes of one host wait for each other: a host that is
    /// stopped (a paused primary) never holds up another's flushes.
    pub(crate) fn flush(&self, hostid: u64, flush: impl FnOnce() -> Result<()>) -> Result<()> {
        let requested = self.host_word(hostid, H_FLUSH_REQUESTED);
        let me = requested.fetch_add(1, Ordering::SeqCst) + 1;
        let _turn = self.flushing.lock();
        let at = LOCK_FLUSH + hostid.min(MAX_HOSTID) as i64;
        self.lock(libc::F_WRLCK, at, 1, true)?;
        let r = crate::flush::covered_or_flush(
            me,
            requested,
            self.host_word(hostid, H_FLUSH_COVERED),
            flush,
        );
        self.unlock(at, 1);
        r
    }

    /// Counts a commit or checkpoint made by this process; returns the new
    /// value.
    pub(crate) fn bump(&self) -> u64 {
        self.word(OFF_VERSION).fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The lease host `hostid` holds on this machine: its token and the
    /// `CLOCK_MONOTONIC` millisecond of its last renewal (0 when none).
    pub(crate) fn lease(&self, hostid: u64) -> (u64, u64) {
        (
            self.host_word(hostid, H_TOKEN).load(Ordering::Acquire),
            self.host_word(hostid, H_RENEWED).load(Ordering::Acquire),
        )
    }

    /// Records that host `hostid` holds the lease with `token`, renewed at
    /// `renewed_ms` (or later).
    pub(crate) fn set_lease(&self, hostid: u64, token: u64, renewed_ms: u64) {
        let tok = self.host_word(hostid, H_TOKEN);
        if tok.swap(token, Ordering::AcqRel) != token {
            self.host_word(hostid, H_RENEWED)
                .store(renewed_ms, Ordering::Release);
        } else {
            self.host_word(hostid, H_RENEWED)
                .fetch_max(renewed_ms, Ordering::AcqRel);
        }
    }

    /// The host id whose lease this machine holds and renewed at most
    /// `within_ms` ago, if any.
    pub(crate) fn live_host(&self, now_ms: u64, within_ms: u64) -> Option<u64> {
        (1..=MAX_HOSTID).find(|&h| {
            let (token, renewed) = self.lease(h);
            token != 0 && renewed != 0 && now_ms.saturating_sub(renewed) < within_ms
        })
    }

    /// The head txid of host `hostid`'s last commit, and of a commit in
    /// flight (0 when none).
    pub(crate) fn head(&self, hostid: u64) -> (u64, u64) {
        (
            self.host_word(hostid, H_HEAD).load(Ordering::Acquire),
            self.host_word(hostid, H_NEXT).load(Ordering::Acquire),
        )
    }

    /// Records that a commit of host `hostid` is about to move the head to
    /// `txid` (under the host's transaction lock).
    pub(crate) fn set_next(&self, hostid: u64, txid: u64) {
        self.host_word(hostid, H_NEXT)
            .store(txid, Ordering::Release);
    }

    /// Records `txid` as the head host `hostid` committed last (under the
    /// host's transaction lock).
    pub(crate) fn settle(&self, hostid: u64, txid: u64) {
        self.host_word(hostid, H_HEAD)
            .store(txid, Ordering::Release);
        self.host_word(hostid, H_NEXT).store(0, Ordering::Release);
    }

    /// How many times host `hostid` was deposed on this boot.
    pub(crate) fn deposed(&self, hostid: u64) -> u64 {
        self.host_word(hostid, H_DEPOSED).load(Ordering::Acquire)
    }

    /// Records that another host took host `hostid`'s lease over and
    /// committed: its lease is forgotten, and every mount of the host made
    /// before now stops writing.
    pub(crate) fn depose(&self, hostid: u64) {
        self.host_word(hostid, H_DEPOSED)
            .fetch_add(1, Ordering::AcqRel);
        self.clear_lease(hostid);
    }

    /// Forgets host `hostid`'s lease (released).
    pub(crate) fn clear_lease(&self, hostid: u64) {
        self.host_word(hostid, H_RENEWED)
            .store(0, Ordering::Release);
        self.host_word(hostid, H_TOKEN).store(0, Ordering::Release);
    }

    /// The head (txid, journal offset, lsn) of the newest transaction a
    /// process of host `hostid` wrote to the journal, committed or not
    /// (zeros when none was recorded).
    pub(crate) fn appended(&self, hostid: u64) -> (u64, u64, u64) {
        loop {
            let gen = self.group_word(hostid, G_GEN).load(Ordering::Acquire);
            let slot = G_SLOTS + (gen / 2 % 2) as usize * 24;
            let head = (
                self.group_word(hostid, slot).load(Ordering::Acquire),
                self.group_word(hostid, slot + 8).load(Ordering::Acquire),
                self.group_word(hostid, slot + 16).load(Ordering::Acquire),
            );
            // The slot read is rewritten only two heads later.
            if self.group_word(hostid, G_GEN).load(Ordering::Acquire) < gen + 2 {
                return head;
            }
        }
    }

    /// Records `head` as [`Share::appended`] (under the host's
    /// transaction lock).
    pub(crate) fn set_appended(&self, hostid: u64, head: (u64, u64, u64)) {
        let gen = self.group_word(hostid, G_GEN);
        let next = gen.load(Ordering::Acquire) / 2 * 2 + 2;
        let slot = G_SLOTS + (next / 2 % 2) as usize * 24;
        // Odd while the slot the readers do not use is written.
        gen.store(next - 1, Ordering::Release);
        self.group_word(hostid, slot)
            .store(head.0, Ordering::Release);
        self.group_word(hostid, slot + 8)
            .store(head.1, Ordering::Release);
        self.group_word(hostid, slot + 16)
            .store(head.2, Ordering::Release);
        gen.store(next, Ordering::Release);
    }

    /// How many checkpoints the processes of host `hostid` made since the
    /// file was set up for this boot.
    pub(crate) fn checkpoints(&self, hostid: u64) -> u64 {
        self.checkpoint_word(hostid).load(Ordering::Acquire)
    }

    /// Counts a checkpoint of host `hostid` (under the host's transaction
    /// lock, once its leader record is written).
    pub(crate) fn count_checkpoint(&self, hostid: u64) {
        self.checkpoint_word(hostid).fetch_add(1, Ordering::AcqRel);
    }

    fn checkpoint_word(&self, hostid: u64) -> &AtomicU64 {
        self.word(OFF_CHECKPOINTS + hostid.min(MAX_HOSTID) as usize * 8)
    }

    fn turns_word(&self, hostid: u64) -> &AtomicU64 {
        self.word(OFF_TURNS + hostid.min(MAX_HOSTID) as usize * 8)
    }

    /// Wakes the threads and processes waiting for host `hostid`'s
    /// committer lock ([`Share::lock_commit`]), just let go.
    fn wake_turns(&self, hostid: u64) {
        let turns = self.turns_word(hostid);
        turns.fetch_add(1, Ordering::AcqRel);
        crate::sys::futex_wake_all(turns);
    }

    /// Takes host `hostid`'s committer lock: one process (and thread) of
    /// the host at a time writes the leader record that commits what its
    /// processes appended.
    /// `None`, with no lock held, when `done` says so: the caller waits
    /// for a commit that another thread or process made durable
    /// meanwhile.
    ///
    /// The threads and processes that want the lock do not queue for it
    /// (a queue hands it to each waiter in turn, and each of those whose
    /// transaction the last commit covered would take it only to let it
    /// go): each tries it, and sleeps until it changes hands
    /// ([`Share::wake_turns`]); then those whose transaction is durable
    /// return, the others try again.
    pub(crate) fn lock_commit(
        &self,
        hostid: u64,
        done: impl Fn() -> bool,
    ) -> Result<Option<CommitLock<'_>>> {
        let at = LOCK_COMMIT + hostid.min(MAX_HOSTID) as i64;
        let turns = self.turns_word(hostid);
        loop {
            if done() {
                return Ok(None);
            }
            // Read before trying: a holder that lets go after the try
            // changes it, and the wait below returns at once.
            let seen = turns.load(Ordering::Acquire) as u32;
            // The byte-range lock is the process's: its threads take
            // turns by `committing`.
            if let Some(inner) = self.committing.try_lock() {
                if self.lock(libc::F_WRLCK, at, 1, false)? {
                    let lock = CommitLock {
                        share: self,
                        hostid,
                        at,
                        _inner: inner,
                    };
                    // The one that held the lock before may have
                    // committed what the caller waits for: then the lock
                    // goes on at once.
                    if done() {
                        return Ok(None);
                    }
                    return Ok(Some(lock));
                }
            }
            crate::sys::futex_wait(turns, seen, TURN_LOOK);
        }
    }

    /// Records `bytes`, just appended to the journal at `offset` by host
    /// `hostid` (under the host's transaction lock), in the journal
    /// window: a process of the host that catches up with them later
    /// copies them from here ([`Share::window_get`]) rather than reading
    /// the device, and an append whose process died before its device
    /// write completed is written from here. `offset` and the length are
    /// multiples of 8 (whole sectors); anything else empties the window.
    /// The window holds only what was appended (written to the device or
    /// being written, see [`Share::flight_begin`]), and changes only under
    /// the transaction lock: one change at a time.
    pub(crate) fn window_put(&self, hostid: u64, offset: u64, bytes: &[u8]) {
        let gen = self.word(OFF_WINDOW + W_GEN);
        let g = gen.load(Ordering::Acquire);
        // A killed process may have left the window half changed (odd):
        // then nothing in it counts any more.
        let torn = g % 2 == 1;
        let busy = g + 1 + g % 2;
        gen.store(busy, Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::Release);
        let end = offset + bytes.len() as u64;
        let (host, lo, hi) = (
            self.word(OFF_WINDOW + W_HOST).load(Ordering::Relaxed),
            self.word(OFF_WINDOW + W_LO).load(Ordering::Relaxed),
            self.word(OFF_WINDOW + W_HI).load(Ordering::Relaxed),
        );
        if offset % 8 != 0 || bytes.len() % 8 != 0 || bytes.len() > WINDOW_BYTES {
            self.word(OFF_WINDOW + W_HOST).store(0, Ordering::Relaxed);
        } else {
            // Appends follow one another; one anywhere else (the journal
            // wrapped, or another lease) starts the window again.
            let follows = !torn && host == hostid && lo <= offset && offset <= hi;
            let lo = if follows { lo } else { offset };
            let hi = if follows { hi.max(end) } else { end };
            for (i, w) in bytes.chunks_exact(8).enumerate() {
                let o = offset as usize + i * 8;
                let v = u64::from_le_bytes(w.try_into().unwrap_or_default());
                self.word(OFF_WINDOW + W_DATA + o % WINDOW_BYTES)
                    .store(v, Ordering::Relaxed);
            }
            self.word(OFF_WINDOW + W_HOST)
                .store(hostid, Ordering::Relaxed);
            self.word(OFF_WINDOW + W_LO).store(
                lo.max(hi.saturating_sub(WINDOW_BYTES as u64)),
                Ordering::Relaxed,
            );
            self.word(OFF_WINDOW + W_HI).store(hi, Ordering::Relaxed);
        }
        gen.store(busy + 1, Ordering::Release);
    }

    /// Empties the journal window, under the host's transaction lock (a
    /// host that takes the lease anew: what the window holds may be
    /// older than what another host wrote since).
    pub(crate) fn window_clear(&self) {
        self.window_put(0, 0, &[]);
    }

    /// Fills `buf` with the journal's bytes at `offset` from the window,
    /// when it holds all of them for host `hostid`: `false` (and `buf`
    /// unspecified) when not, or when an append changed the window
    /// meanwhile.
    pub(crate) fn window_get(&self, hostid: u64, offset: u64, buf: &mut [u8]) -> bool {
        let gen = self.word(OFF_WINDOW + W_GEN);
        let g = gen.load(Ordering::Acquire);
        let end = offset + buf.len() as u64;
        if g % 2 == 1
            || hostid == 0
            || self.word(OFF_WINDOW + W_HOST).load(Ordering::Relaxed) != hostid
            || offset < self.word(OFF_WINDOW + W_LO).load(Ordering::Relaxed)
            || end > self.word(OFF_WINDOW + W_HI).load(Ordering::Relaxed)
        {
            return false;
        }
        let first = offset / 8 * 8;
        let mut at = 0usize;
        let mut o = first;
        while o < end {
            let v = self
                .word(OFF_WINDOW + W_DATA + o as usize % WINDOW_BYTES)
                .load(Ordering::Relaxed)
                .to_le_bytes();
            let from = offset.saturating_sub(o) as usize;
            let n = (8 - from).min(buf.len() - at);
            buf[at..at + n].copy_from_slice(&v[from..from + n]);
            at += n;
            o += 8;
        }
        std::sync::atomic::fence(Ordering::Acquire);
        gen.load(Ordering::Relaxed) == g
    }

    /// Records an append of host `hostid` whose device writes `pieces`
    /// ((journal offset, device address, length), whole sectors that no
    /// other append writes) go on after the host's transaction lock is let
    /// go: it starts at head `start` (the host's appended head) and ends at
    /// txid `end`. Called under the transaction lock, before the appended
    /// head moves past it; slots a killed process left behind are freed
    /// first ([`Share::flight_drop_stale`]). The slot, or `None` when every
    /// slot is taken (the caller then writes under the lock, as before) or
    /// `pieces` are too many.
    pub(crate) fn flight_begin(
        &self,
        hostid: u64,
        start: (u64, u64, u64),
        end: u64,
        pieces: &[(u64, u64, u64)],
    ) -> Option<usize> {
        if pieces.is_empty() || pieces.len() > FLIGHT_PIECES {
            return None;
        }
        self.flight_drop_stale(hostid, start.0);
        let owner = u64::from(std::process::id()) << 16 | hostid.min(MAX_HOSTID);
        // Taken as "being filled in" first: a reader ignores the slot
        // until the tag is whole, so it never sees half-written fields.
        let slot = (0..FLIGHT_SLOTS).find(|&i| {
            self.flight_word(i, F_TAG)
                .compare_exchange(0, F_FILLING | owner, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        })?;
        let gen = self.flight_word(slot, F_GEN).fetch_add(1, Ordering::AcqRel) + 1;
        let tag = (gen & 0xffff) << 48 | owner;
        let w = |f: usize, v: u64| self.flight_word(slot, f).store(v, Ordering::Release);
        w(F_START, start.0);
        w(F_START + 8, start.1);
        w(F_START + 16, start.2);
        w(F_END, end);
        w(F_COUNT, pieces.len() as u64);
        for (k, &(off, bda, len)) in pieces.iter().enumerate() {
            w(F_PIECES + k * 24, off);
            w(F_PIECES + k * 24 + 8, bda);
            w(F_PIECES + k * 24 + 16, len);
        }
        w(F_TAG, tag);
        Some(slot)
    }

    /// Frees `slot`: its append's device writes completed.
    pub(crate) fn flight_end(&self, slot: usize) {
        self.flight_word(slot, F_TAG).store(0, Ordering::Release);
    }

    /// Marks `slot` as given up by its process (its writes failed): a
    /// committer that waits for it writes it again, as for a process that
    /// died.
    pub(crate) fn flight_abandon(&self, slot: usize) {
        let w = self.flight_word(slot, F_TAG);
        let tag = w.load(Ordering::Acquire);
        // The pid cleared; generation and host id kept.
        w.store(tag & !(0xffff_ffff << 16), Ordering::Release);
    }

    /// Host `hostid`'s appends whose device writes are under way.
    pub(crate) fn flights(&self, hostid: u64) -> Vec<Flight> {
        let host = hostid.min(MAX_HOSTID);
        (0..FLIGHT_SLOTS)
            .filter_map(|slot| loop {
                let r = |f: usize| self.flight_word(slot, f).load(Ordering::Acquire);
                let tag = r(F_TAG);
                if tag == 0 || tag & 0xff != host {
                    return None;
                }
                let count = (r(F_COUNT) as usize).min(FLIGHT_PIECES);
                let f = Flight {
                    slot,
                    tag,
                    filling: tag & F_FILLING != 0,
                    pid: (tag >> 16) as u32,
                    start: (r(F_START), r(F_START + 8), r(F_START + 16)),
                    end: r(F_END),
                    pieces: (0..count)
                        .map(|k| {
                            (
                                r(F_PIECES + k * 24),
                                r(F_PIECES + k * 24 + 8),
                                r(F_PIECES + k * 24 + 16),
                            )
                        })
                        .collect(),
                };
                // The fields belong to the tag only if it did not change
                // while they were read (freed and taken again, given up):
                // read again until it holds still.
                if r(F_TAG) == tag {
                    return Some(f);
                }
            })
            .collect()
    }

    /// Frees `f`'s slot if it still holds that append (one whose owner
    /// died, once its bytes were written for it).
    pub(crate) fn flight_take_over(&self, f: &Flight) -> bool {
        self.flight_word(f.slot, F_TAG)
            .compare_exchange(f.tag, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Under host `hostid`'s transaction lock, with its appended head at
    /// txid `appended`: frees the slots that a process killed while it
    /// recorded an append left behind (being filled in, or starting at or
    /// past the appended head: the head never moved past them). Nobody
    /// waits for those, and the next append may start where they did.
    fn flight_drop_stale(&self, hostid: u64, appended: u64) {
        for f in self.flights(hostid) {
            if f.filling || f.start.0 >= appended {
                self.flight_take_over(&f);
            }
        }
    }

    /// Frees every slot of host `hostid` (a host that takes the lease
    /// anew: nothing appended under its earlier lease will be committed).
    pub(crate) fn flight_clear(&self, hostid: u64) {
        for f in self.flights(hostid) {
            self.flight_take_over(&f);
        }
    }

    fn flight_word(&self, slot: usize, field: usize) -> &AtomicU64 {
        self.word(OFF_FLIGHT + slot.min(FLIGHT_SLOTS - 1) * FLIGHT_STRIDE + field)
    }

    /// How many times a commit of host `hostid` failed on this boot.
    pub(crate) fn broken(&self, hostid: u64) -> u64 {
        self.group_word(hostid, G_BROKEN).load(Ordering::Acquire)
    }

    /// Records that a commit of host `hostid` failed: every mount of the
    /// host made before now stops writing.
    pub(crate) fn set_broken(&self, hostid: u64) {
        self.group_word(hostid, G_BROKEN)
            .fetch_add(1, Ordering::AcqRel);
    }

    /// The next heartbeat counter of host `hostid`, shared by its
    /// processes so the slot's counter only ever grows.
    pub(crate) fn next_counter(&self, hostid: u64, at_least: u64) -> u64 {
        let w = self.host_word(hostid, H_COUNTER);
        w.fetch_max(at_least, Ordering::AcqRel);
        w.fetch_add(1, Ordering::AcqRel) + 1
    }
}

/// Where inode `ino`'s byte of the per-inode lock range starting at
/// `base` lies in the shared file.
fn per_inode(base: i64, ino: u64) -> i64 {
    i64::try_from(ino)
        .ok()
        .and_then(|i| base.checked_add(i))
        .unwrap_or(i64::MAX - 1)
}

/// How long a truncate's announcement ([`Share::want_data`]) lasts: a
/// truncate waits for the writes under way, and a process killed while it
/// waits leaves a mark that soon means nothing.
const WANT: std::time::Duration = std::time::Duration::from_secs(5);

/// Where host `hostid`'s data lock of inode `ino` lies in the shared file.
fn data_lock_at(hostid: u64, ino: u64) -> i64 {
    let host = hostid.min(MAX_HOSTID) as i64 * DATA_STRIDE;
    per_inode(LOCK_DATA + host, ino)
}

/// An append whose device writes are under way ([`Share::flights`]).
#[derive(Debug, Clone)]
pub(crate) struct Flight {
    slot: usize,
    tag: u64,
    /// Its slot is still being filled in: the append is not recorded as
    /// appended yet, and the other fields mean nothing.
    pub(crate) filling: bool,
    /// The process that writes it.
    pub(crate) pid: u32,
    /// The head it starts at.
    pub(crate) start: (u64, u64, u64),
    /// The head txid after it.
    pub(crate) end: u64,
    /// Its writes: (journal offset, device address, length).
    pub(crate) pieces: Vec<(u64, u64, u64)>,
}

/// A host's committer lock, held until dropped.
pub(crate) struct CommitLock<'a> {
    share: &'a Share,
    hostid: u64,
    at: i64,
    _inner: parking_lot::MutexGuard<'a, ()>,
}

impl Drop for CommitLock<'_> {
    fn drop(&mut self) {
        self.share.unlock(self.at, 1);
        self.share.wake_turns(self.hostid);
    }
}

/// Host `hostid`'s transaction lock, held until dropped.
pub(crate) struct TxLock<'a> {
    share: &'a Share,
    hostid: u64,
    inner: ReentrantMutexGuard<'a, TxHold>,
}

impl TxLock<'_> {
    /// Whether this is the outermost hold of the lock by its thread.
    pub(crate) fn outermost(&self) -> bool {
        self.inner.depth.get() == 1
    }
}

/// At most this many transactions in a row of one process's threads pass
/// the host's transaction lock on without letting go of it (and so
/// without an `fcntl` each), before the process lets other processes in.
const TX_HANDOVERS: u32 = 16;

/// The in-process half of the transaction lock: how deep the holding
/// thread has taken it, and whether this process holds the byte-range
/// lock (kept across transactions while another thread of the process
/// waits for its turn).
#[derive(Default)]
struct TxHold {
    depth: Cell<u32>,
    /// The process and host id of the byte-range lock held (the process
    /// id, since a forked child inherits memory but no `fcntl` lock).
    held: Cell<Option<(u32, u64)>>,
    handovers: Cell<u32>,
}

impl TxHold {
    fn holds(&self, hostid: u64) -> bool {
        self.held.get() == Some((std::process::id(), hostid))
    }
}

impl Drop for TxLock<'_> {
    fn drop(&mut self) {
        let depth = self.inner.depth.get().saturating_sub(1);
        self.inner.depth.set(depth);
        if depth > 0 {
            return;
        }
        let n = self.inner.handovers.get();
        if self.share.tx_waiters.load(Ordering::Acquire) > 0 && n < TX_HANDOVERS {
            // Another thread of this process is next: it takes the lock
            // over as it is.
            self.inner.handovers.set(n + 1);
            return;
        }
        self.inner.handovers.set(0);
        self.inner.held.set(None);
        self.share
            .unlock(LOCK_TX + self.hostid.min(MAX_HOSTID) as i64, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> (PathBuf, Arc<Share>) {
        let dir = std::env::temp_dir().join(format!("pfs-share-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let share = Share::open(&dir.join("share"), None).unwrap();
        (dir, share)
    }

    #[test]
    fn a_kept_data_lock_is_let_go_by_the_releaser_which_does_not_spin_meanwhile() {
        let (dir, s) = scratch("holds");
        let at = data_lock_at(1, 42);
        // A write keeps its hold once it ends.
        s.lock_data(1, 42, false).unwrap();
        s.unlock_data(1, 42, false);
        assert!(s.writing.map.lock().contains_key(&at));
        // Writes one after another for a while: the releaser looks about
        // once per KEEP, not once per write.
        let file = std::fs::File::create(dir.join("data")).unwrap();
        let rounds = s.writing.rounds();
        let (start, mut writes) = (std::time::Instant::now(), 0u64);
        while start.elapsed() < std::time::Duration::from_millis(300) {
            s.lock_data(1, 42, false).unwrap();
            std::os::unix::fs::FileExt::write_all_at(&file, &[7u8; 8192], 0).unwrap();
            s.unlock_data(1, 42, false);
            writes += 1;
        }
        let looked = s.writing.rounds() - rounds;
        assert!(
            looked <= 300 / holds::KEEP.as_millis() as u64 * 2,
            "the releaser looked {looked} times during {writes} writes in 300 ms"
        );
        // Unused, the hold goes within a few KEEPs.
        let start = std::time::Instant::now();
        while s.writing.map.lock().contains_key(&at) {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(5),
                "the unused hold was never let go"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        drop(s);
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn get(s: &Share, hostid: u64, offset: u64, len: usize) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; len];
        s.window_get(hostid, offset, &mut buf).then_some(buf)
    }

    #[test]
    fn appends_under_way_are_recorded_per_host_until_written_or_taken_over() {
        let (dir, s) = scratch("flights");
        let pieces = [(1024, 4096, 512), (0, 8192, 512)];
        let a = s.flight_begin(1, (5, 1024, 20), 6, &pieces).unwrap();
        let f = s.flights(1);
        assert_eq!(f.len(), 1);
        assert!(!f[0].filling);
        assert_eq!(f[0].pid, std::process::id());
        assert_eq!((f[0].start, f[0].end), ((5, 1024, 20), 6));
        assert_eq!(f[0].pieces, pieces);
        assert!(s.flights(2).is_empty(), "another host's");
        s.flight_end(a);
        assert!(s.flights(1).is_empty());
        // Given up by its process: pid 0, and a look taken before no
        // longer frees it (the append still waits to be written).
        let b = s.flight_begin(1, (6, 1536, 22), 7, &pieces[..1]).unwrap();
        let before = s.flights(1).remove(0);
        s.flight_abandon(b);
        let after = s.flights(1).remove(0);
        assert_eq!((after.pid, after.start), (0, (6, 1536, 22)));
        assert!(!s.flight_take_over(&before));
        assert!(s.flight_take_over(&after));
        assert!(s.flights(1).is_empty());
        // The slot taken again is a new use of it: an old look frees
        // nothing.
        let c = s.flight_begin(1, (7, 2048, 24), 8, &pieces[..1]).unwrap();
        assert_eq!(c, b);
        assert!(!s.flight_take_over(&after));
        assert_eq!(s.flights(1).len(), 1);
        // Too many writes, or no slot left: the caller writes under the lock.
        assert!(s.flight_begin(1, (8, 0, 0), 9, &[(0, 0, 512); 4]).is_none());
        let taken: Vec<usize> = (0..FLIGHT_SLOTS)
            .map_while(|i| s.flight_begin(2, (i as u64, 0, 0), i as u64 + 1, &pieces[..1]))
            .collect();
        assert_eq!(taken.len(), FLIGHT_SLOTS - 1);
        assert_eq!(s.flights(2).len(), FLIGHT_SLOTS - 1);
        s.flight_clear(2);
        assert!(s.flights(2).is_empty());
        // Left by a process killed between recording an append and moving
        // the appended head past it (here: head still at txid 7).
        s.flight_drop_stale(1, 8);
        assert_eq!(s.flights(1).len(), 1, "txid 7 was appended: kept");
        s.flight_drop_stale(1, 7);
        assert!(s.flights(1).is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_journal_window_holds_the_last_appends_of_one_host_at_their_offsets() {
        let (dir, s) = scratch("window");
        let bytes = |seed: u8, n: usize| {
            (0..n)
                .map(|i| seed.wrapping_add(i as u8))
                .collect::<Vec<u8>>()
        };
        // Appends one after another, the second rewriting the sector the
        // first ended in.
        s.window_put(1, 4096, &bytes(1, 1024));
        s.window_put(1, 4608, &bytes(9, 1024));
        let mut want = bytes(1, 512);
        want.extend(bytes(9, 1024));
        assert_eq!(get(&s, 1, 4096, 1536).unwrap(), want);
        // Any part, at any byte.
        assert_eq!(get(&s, 1, 4099, 700).unwrap(), want[3..703]);
        // Not another host's, and nothing outside what was put.
        assert_eq!(get(&s, 2, 4096, 512), None);
        assert_eq!(get(&s, 1, 4000, 200), None);
        assert_eq!(get(&s, 1, 5000, 1000), None);
        // An append anywhere else (the journal wrapped) starts it again.
        s.window_put(1, 512, &bytes(7, 512));
        assert_eq!(get(&s, 1, 4096, 512), None);
        assert_eq!(get(&s, 1, 512, 512).unwrap(), bytes(7, 512));
        // Past its size, the oldest bytes are gone.
        let big = bytes(3, WINDOW_BYTES / 2);
        s.window_put(1, 1024, &big);
        s.window_put(1, 1024 + big.len() as u64, &big);
        assert_eq!(get(&s, 1, 512, 512), None);
        assert_eq!(get(&s, 1, 1024, 8).unwrap(), big[..8]);
        s.window_put(1, 1024 + 2 * big.len() as u64, &big[..4096]);
        assert_eq!(get(&s, 1, 1024, 8), None);
        assert_eq!(get(&s, 1, 1024 + 4096, 8).unwrap(), big[4096..4104]);
        let end = 1024 + 2 * big.len() as u64 + 4096;
        assert_eq!(get(&s, 1, end - 4096, 4096).unwrap(), big[..4096]);
        // A change cut short (odd generation) leaves nothing to read, and
        // the next append starts over.
        s.word(OFF_WINDOW + W_GEN).fetch_add(1, Ordering::AcqRel);
        assert_eq!(get(&s, 1, end - 8, 8), None);
        s.window_put(1, end, &bytes(5, 8));
        assert_eq!(get(&s, 1, end - 8, 8), None);
        assert_eq!(get(&s, 1, end, 8).unwrap(), bytes(5, 8));
        // Emptied: a new lease.
        s.window_clear();
        assert_eq!(get(&s, 1, end, 8), None);
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
