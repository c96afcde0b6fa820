//! Mounted filesystems: metadata in memory, kept in step with the journal.
//!
//! A read-only mount follows the writer: before each read-type operation it
//! re-reads the leader record and replays entries committed since its last
//! look. If the writer has checkpointed and reused journal space past what
//! this mount replayed, it reloads all metadata from the device instead of
//! failing (the reference exits the process there).

use crate::alloc::Allocator;
use crate::device::{AlignedBuf, Device};
use crate::error::{CoreError, Result};
use crate::fence::{Fence, FencedDevice};
use crate::hostlock::HostLock;
use crate::lease::{Lease, Slots};
use crate::meta::{DeviceLog, MetaImage, Replayed};
use crate::ns::FileBlock;
use crate::share::Share;
use crate::tx::Tx;
use parking_lot::RwLock;
use pfs_format::inode::NO_DIRENTRY;
use pfs_format::layout::{BLOCK_SIZE, SECTOR_SIZE};
use pfs_format::LeaderRecord;
use pfs_journal::{JournalError, LogStore, Span};
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How a filesystem is mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Follow the writer; never write to the device.
    ReadOnly,
    /// The single writer.
    ReadWrite,
}

/// Metadata as of some committed transaction.
pub(crate) struct State {
    pub(crate) meta: MetaImage,
    /// The leader record this state corresponds to (its head was replayed).
    pub(crate) leader: LeaderRecord,
    /// Device address of the leader record.
    pub(crate) leader_bda: u64,
    /// Journal blocks in file order.
    pub(crate) journal_blocks: Vec<u64>,
    /// Metaset sectors changed by committed transactions since the last
    /// checkpoint (device addresses).
    pub(crate) dirty: BTreeSet<u64>,
    /// Free-object index (read-write mounts).
    pub(crate) alloc: Option<Allocator>,
    /// Transactions committed since the last checkpoint.
    pub(crate) ntx: u64,
    /// Changes whenever the metadata may have changed (see [`next_gen`]):
    /// what was worked out from it under an older value is stale.
    pub(crate) gen: u64,
}

/// A number no state of this process had before.
fn next_gen() -> u64 {
    static GEN: AtomicU64 = AtomicU64::new(1);
    GEN.fetch_add(1, Ordering::Relaxed)
}

/// Block maps of files worked out from the metadata, kept while it does
/// not change, so reads and writes of data do not walk a file's block
/// chain each time.
type BlockCache = std::collections::HashMap<u64, (u64, Arc<BTreeMap<u64, FileBlock>>)>;

/// How many files' block maps are kept.
const BLOCK_CACHE_FILES: usize = 4096;

impl State {
    /// Where the writer-lease slots are.
    pub(crate) fn slots(&self) -> Slots {
        Slots::of(&self.leader, self.leader_bda)
    }
}

/// How to mount, beyond the mode.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// Host id; 0 means the tool's default, the leader's `num_hosts` — or,
    /// for a [`MountOptions::shared`] read-write mount, the host of this
    /// machine that holds the writer lease, if one does.
    pub hostid: u64,
    /// Take over an expired writer lease held by another mount (waiting
    /// for it to expire).
    pub force: bool,
    /// Host-lock file of the reference (`/var/run/pfs/<pbd>-paxos-hostid`);
    /// `None` skips the host-local lock.
    pub lock_path: Option<std::path::PathBuf>,
    /// Writer lease duration in milliseconds.
    pub lease_ms: u32,
    /// This process is one of several on this machine that mount the
    /// device at once (the C SDK's processes, forked or not): read-write
    /// mounts with the same host id are one writer that shares the host's
    /// lease and commits one transaction at a time, and every call sees
    /// what the others committed before it started. They meet in the
    /// file [`MountOptions::share_path`].
    pub shared: bool,
    /// Where shared mounts of this device meet (see
    /// [`crate::pbd::share_path`]); `None` means
    /// `/var/run/pfs/<device name>.pfs-rs-share`.
    pub share_path: Option<std::path::PathBuf>,
}

impl Default for MountOptions {
    /// Host id 0, no takeover, no host lock, the default lease duration
    /// ([`crate::lease::DEFAULT_LEASE_MS`]). Nothing is read from the
    /// environment.
    fn default() -> Self {
        MountOptions {
            hostid: 0,
            force: false,
            lock_path: None,
            lease_ms: crate::lease::DEFAULT_LEASE_MS,
            shared: false,
            share_path: None,
        }
    }
}

/// A mounted PFS.
pub struct Mount {
    /// The device as this mount writes it: behind [`Mount::fence`] for a
    /// read-write mount.
    dev: Arc<dyn Device>,
    /// The device itself (the lease writes its slot there).
    raw: Arc<dyn Device>,
    mode: Mode,
    hostid: u64,
    pub(crate) state: RwLock<State>,
    /// Whether writes may start, and the writer lease, taken at the first
    /// write (so a read-write mount that changes nothing leaves the device
    /// untouched).
    fence: Arc<Fence>,
    lease_ms: u32,
    /// Take over a silent holder's lease (`--force`).
    force: bool,
    /// Other hosts' heartbeats as watched so far, kept from the mount to
    /// the first commit so a forced takeover waits out a holder only once.
    watch: parking_lot::Mutex<pfs_paxos::Watch>,
    _lock: Option<HostLock>,
    /// Open handles per inode.
    open_files: parking_lot::Mutex<std::collections::HashMap<u64, usize>>,
    /// Set by [`Mount::freeze`]: calls stop catching up with the writer.
    frozen: std::sync::atomic::AtomicBool,
    /// What a shared mount shares with the other processes of the machine.
    share: Option<Arc<Share>>,
    /// The share's commit counter as of the state this mount has.
    seen: AtomicU64,
    /// Held by a write that extends a file or a block's written part (in a
    /// mount that is not shared; a shared one holds the host's lock).
    pub(crate) extending: parking_lot::Mutex<()>,
    /// Data locks of a mount that is not shared (a shared one uses its
    /// share's, common to the process): see [`crate::datalock`].
    data_locks: crate::datalock::Stripes,
    /// See [`BlockCache`].
    block_cache: parking_lot::Mutex<BlockCache>,
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(l) = self.fence.lease_slot().take() {
            l.release();
        }
        if let (Some(s), Mode::ReadWrite) = (&self.share, self.mode) {
            if s.last_member(self.hostid) {
                // The last process of the host to leave gives back a lease
                // that its other processes held and left behind.
                if let Ok(_tx) = s.lock_tx(self.hostid) {
                    if !s.others_mounted(self.hostid) {
                        let slots = self.state.read().slots();
                        crate::lease::release_abandoned(
                            self.raw.as_ref(),
                            slots,
                            self.hostid as u32,
                            s,
                        );
                    }
                }
            }
            s.leave(self.hostid);
        }
    }
}

/// Reads the leader record. A sector read while another process writes
/// it may come back torn (files are not written atomically per sector), so
/// a record whose checksum fails is read again a few times before that
/// counts as damage.
fn read_leader(dev: &dyn Device, bda: u64) -> Result<LeaderRecord> {
    let log = DeviceLog {
        dev,
        blocks: &[],
        leader_bda: bda,
    };
    let mut tries = 0;
    loop {
        match log.read_leader() {
            Err(CoreError::Format(_)) if tries < 5 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(1 << tries));
            }
            r => return r,
        }
    }
}

/// Loads everything from the device: metasets, leader, committed journal.
pub(crate) fn load_state(dev: &dyn Device) -> Result<State> {
    let r = Replayed::load(dev)?;
    Ok(State {
        meta: r.meta,
        leader: r.journal.leader,
        leader_bda: r.journal.leader_bda,
        dirty: r.dirty,
        journal_blocks: r.journal.blocks,
        alloc: None,
        ntx: 0,
        gen: next_gen(),
    })
}

/// [`load_state`] for a shared mount: when the host's other processes
/// checkpoint during every attempt, the load is made once more holding the
/// transaction lock of the host that writes on this machine (or of
/// `hostid`), so none can.
fn load_state_shared(dev: &dyn Device, share: Option<&Share>, hostid: u64) -> Result<State> {
    match (load_state(dev), share) {
        (Err(CoreError::Busy { .. }), Some(s)) => {
            let writer = s
                .live_host(crate::lease::mono_ms(), u64::from(u32::MAX))
                .unwrap_or(hostid);
            let _lock = s.lock_tx(writer)?;
            load_state(dev)
        }
        (r, _) => r,
    }
}

/// Brings `st` from its leader record to `new` with the entries the
/// journal holds between them, also when a checkpoint has moved past `st`
/// (the entries stay until the writer reuses their space). `false` when it
/// no longer holds them all, or the writer reused their space while they
/// were read: `st` is unchanged and must be loaded again.
fn advance(dev: &dyn Device, st: &mut State, new: LeaderRecord) -> Result<bool> {
    let old = st.leader;
    // Within the committed span, or past the tail the writer checkpointed.
    let Some(span) = Span::since(&old, &new).or_else(|| Span::after(&old, &new)) else {
        return Ok(false);
    };
    let log = DeviceLog {
        dev,
        blocks: &st.journal_blocks,
        leader_bda: st.leader_bda,
    };
    let Ok(entries) = pfs_journal::span_entries(&log, &span, st.meta.nchunk) else {
        return Ok(false);
    };
    // Each entry read proved itself (txid, lsn, checksum); what is left to
    // rule out is a writer that lapped the journal while we read.
    if Span::after(&old, &read_leader(dev, st.leader_bda)?).is_none() {
        return Ok(false);
    }
    st.gen = next_gen();
    st.meta.apply(&entries);
    if let Some(a) = st.alloc.as_mut() {
        // Another process of this host committed these.
        for c in &entries {
            a.observe(c.id, &c.entry.le_obj_val);
        }
    }
    st.dirty
        .extend(entries.iter().map(|c| c.entry.le_sector_bda.get()));
    st.leader = new;
    Ok(true)
}

/// `st` brought up to the device's latest commit: advanced when the
/// journal allows, loaded again otherwise.
fn resume(dev: &dyn Device, mut st: State, share: Option<&Share>, hostid: u64) -> Result<State> {
    let now = read_leader(dev, st.leader_bda)?;
    if now == st.leader {
        return Ok(st);
    }
    if now.head_txid.get() == st.leader.head_txid.get()
        && now.head_lsn.get() == st.leader.head_lsn.get()
    {
        // Only checkpointed: nothing to apply, and nothing left to write
        // back either.
        st.leader = now;
        st.dirty.clear();
        return Ok(st);
    }
    if advance(dev, &mut st, now)? {
        return Ok(st);
    }
    load_state_shared(dev, share, hostid)
}

impl Mount {
    /// Mounts `dev`: loads every chunk's metasets, finds the leader record
    /// and replays the committed journal.
    pub fn open(dev: Arc<dyn Device>, mode: Mode) -> Result<Mount> {
        Mount::open_with(dev, mode, &MountOptions::default())
    }

    /// Mounts with options. A read-write mount takes the host-local lock
    /// (when a lock path is given) and the writer lease, then loads the
    /// metadata as of the latest commit.
    pub fn open_with(dev: Arc<dyn Device>, mode: Mode, opts: &MountOptions) -> Result<Mount> {
        Mount::open_from(dev, mode, opts, None)
    }

    /// Mounts in a forked child, starting from the metadata of `parent`,
    /// the mount the child inherited: no metadata is loaded, only what the
    /// journal committed since the fork is read (unless the writer has
    /// reused that part of the journal, or `parent`'s state was locked by a
    /// thread at the fork; then everything is loaded as
    /// [`Mount::open_with`] does). The
    /// inherited memory stays shared with the parent until it changes.
    ///
    /// `parent` is consumed and never dropped: its lease, locks and
    /// threads belong to the parent process. Call this only in a child
    /// process, with the options of the same device.
    pub fn open_after_fork(
        dev: Arc<dyn Device>,
        mode: Mode,
        opts: &MountOptions,
        parent: Arc<Mount>,
    ) -> Result<Mount> {
        let start = parent.take_state_for_child(dev.name());
        std::mem::forget(parent);
        Mount::open_from(dev, mode, opts, start)
    }

    /// The state of this (inherited) mount, taken out for a child's mount:
    /// `None` when a thread of the parent held it at the fork (it may be
    /// half changed) or it is another device's. Leaves this mount hollow.
    fn take_state_for_child(&self, device: &str) -> Option<State> {
        let mut guard = self.state.try_write()?;
        if guard.meta.device() != device {
            return None;
        }
        let hollow = State {
            meta: MetaImage::hollow(device),
            leader: guard.leader,
            leader_bda: guard.leader_bda,
            journal_blocks: Vec::new(),
            dirty: BTreeSet::new(),
            alloc: None,
            ntx: 0,
            gen: next_gen(),
        };
        let mut st = std::mem::replace(&mut *guard, hollow);
        // Locks inside it may have been held by the parent's threads.
        st.meta.names = parking_lot::Mutex::new(Default::default());
        st.ntx = 0;
        st.gen = next_gen();
        Some(st)
    }

    fn open_from(
        dev: Arc<dyn Device>,
        mode: Mode,
        opts: &MountOptions,
        start: Option<State>,
    ) -> Result<Mount> {
        let share = match opts.shared {
            true => {
                let path = opts
                    .share_path
                    .clone()
                    .unwrap_or_else(|| crate::pbd::share_path(&dev.name().replace('/', "_"), None));
                Some(Share::open(&path)?)
            }
            false => None,
        };
        let seen = share.as_ref().map_or(0, |s| s.version());
        let mut state = match start {
            Some(mut st) => {
                if mode == Mode::ReadOnly {
                    st.alloc = None;
                }
                resume(dev.as_ref(), st, share.as_deref(), opts.hostid)?
            }
            None => load_state_shared(dev.as_ref(), share.as_deref(), opts.hostid)?,
        };
        // A shared read-write mount with host id 0 (a tool of the host
        // that runs the database) writes as the host of this machine that
        // holds the lease, as the reference's tools do through its daemon.
        let joined = match (&share, mode, opts.hostid) {
            (Some(s), Mode::ReadWrite, 0) => {
                s.live_host(crate::lease::mono_ms(), u64::from(opts.lease_ms))
            }
            _ => None,
        };
        let hostid =
            pfs_paxos::HostId::resolve(joined.unwrap_or(opts.hostid), &state.leader)?.get();
        let mut lock = None;
        let mut watch = pfs_paxos::Watch::new();
        if mode == Mode::ReadWrite {
            if let Some(s) = &share {
                s.join(hostid)?;
            }
            // Leaves the share again if the mount fails below.
            let member = MemberGuard(share.as_deref().map(|s| (s, hostid)));
            if let Some(p) = &opts.lock_path {
                match HostLock::acquire(p, hostid) {
                    Ok(l) => lock = Some(l),
                    // Another process of this machine mounted with the same
                    // host id holds it for the host.
                    Err(_) if share.as_ref().is_some_and(|s| s.others_mounted(hostid)) => {}
                    Err(e) => return Err(e),
                }
            }
            // The lease the other processes of this host hold is ours too.
            let own = share.as_ref().map_or(0, |s| s.lease(hostid).0);
            let sibling = share.as_ref().map(|_| hostid as u32);
            crate::lease::wait_free(
                dev.as_ref(),
                state.slots(),
                own,
                sibling,
                opts.force,
                &mut watch,
            )?;
            std::mem::forget(member);
            // Someone may have committed while we waited.
            state = resume(dev.as_ref(), state, share.as_deref(), hostid)?;
            if state.alloc.is_none() {
                state.alloc = Some(Allocator::build(&state.meta));
            }
        }
        let fence = Arc::new(Fence::new(share.as_ref(), hostid, opts.lease_ms));
        let raw = Arc::clone(&dev);
        let dev: Arc<dyn Device> = match mode {
            Mode::ReadWrite => Arc::new(FencedDevice::new(dev, Arc::clone(&fence))),
            Mode::ReadOnly => dev,
        };
        Ok(Mount {
            dev,
            raw,
            mode,
            hostid,
            state: RwLock::new(state),
            fence,
            lease_ms: opts.lease_ms,
            force: opts.force,
            watch: parking_lot::Mutex::new(watch),
            _lock: lock,
            open_files: parking_lot::Mutex::new(std::collections::HashMap::new()),
            frozen: std::sync::atomic::AtomicBool::new(false),
            share,
            seen: AtomicU64::new(seen),
            extending: parking_lot::Mutex::new(()),
            data_locks: Default::default(),
            block_cache: parking_lot::Mutex::new(BlockCache::new()),
        })
        .and_then(|m| {
            if m.mode == Mode::ReadWrite {
                m.reclaim_orphans()?;
            }
            Ok(m)
        })
    }

    /// Unmounts: flushes the device (a writer), releases the writer lease
    /// and the host lock. Reports a failed flush, or that writes had been
    /// stopped (a failed write or a lost lease), which dropping the mount
    /// cannot. Open [`crate::file::File`]s hold the mount, so they must be
    /// closed first (`Arc::try_unwrap`).
    pub fn unmount(self) -> Result<()> {
        let fenced = self.fence.stopped();
        let flushed = if fenced.is_none() && self.fence.lease().is_some() {
            self.dev.sync()
        } else {
            Ok(())
        };
        drop(self);
        flushed?;
        match fenced {
            Some(reason) => Err(CoreError::Fenced { reason }),
            None => Ok(()),
        }
    }

    /// Adds `delta` to inode `ino`'s open count; returns the new count.
    pub(crate) fn open_count(&self, ino: u64, delta: i64) -> usize {
        let mut map = self.open_files.lock();
        let c = map.entry(ino).or_insert(0);
        let before = *c;
        *c = (*c as i64 + delta).max(0) as usize;
        let now = *c;
        if now == 0 {
            map.remove(&ino);
        }
        if let Some(s) = &self.share {
            if before == 0 && now > 0 {
                s.mark_open(ino, 1);
            } else if before > 0 && now == 0 {
                s.mark_open(ino, -1);
            }
        }
        now
    }

    /// Whether inode `ino` has open handles, here or (shared mounts) in
    /// another process of this machine.
    pub(crate) fn is_open(&self, ino: u64) -> bool {
        self.open_files.lock().contains_key(&ino)
            || self.share.as_ref().is_some_and(|s| s.open_elsewhere(ino))
    }

    /// The host id this mount uses.
    pub fn hostid(&self) -> u64 {
        self.hostid
    }

    /// The writer lease, once this mount has committed something.
    pub fn lease(&self) -> Option<Arc<Lease>> {
        self.fence.lease()
    }

    /// The device.
    pub fn device(&self) -> &Arc<dyn Device> {
        &self.dev
    }

    /// How it is mounted.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The leader record as of the last replay.
    pub fn leader(&self) -> LeaderRecord {
        self.state.read().leader
    }

    /// Catches up with the writer: read-only mounts replay what it
    /// committed; a read-write mount that has not taken the writer lease yet
    /// reloads if anyone committed since it looked (once it holds the lease
    /// its memory is current and this does nothing).
    pub fn refresh(&self) -> Result<()> {
        if self.frozen.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        self.catch_up()
    }

    /// Makes every later call of this (read-only) mount see the committed
    /// state it has now, so a command that makes several calls (list a
    /// directory, then stat each entry) works on one state: an entry the
    /// writer deletes meanwhile is simply still there, never half gone.
    /// File data stays exact: [`Mount::read_at`] checks that the writer did
    /// not free the blocks it read, catching up only when it did.
    pub fn freeze(&self) {
        self.frozen
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether another writer may change the device under this mount.
    fn others_may_write(&self) -> bool {
        self.mode == Mode::ReadOnly || self.share.is_some() || self.fence.lease().is_none()
    }

    /// For a shared read-write mount whose host holds the writer lease on
    /// this machine: the share's commit counter, which then counts every
    /// commit to the device.
    fn machine_version(&self) -> Option<u64> {
        let s = self.share.as_ref()?;
        if self.mode != Mode::ReadWrite {
            return None;
        }
        let v = s.version();
        let (token, renewed) = s.lease(self.hostid);
        let valid = pfs_paxos::lease::Validity {
            renewed_at_ms: renewed,
            duration_ms: u64::from(self.lease_ms),
        };
        (token != 0 && valid.may_write(crate::lease::mono_ms())).then_some(v)
    }

    fn catch_up(&self) -> Result<()> {
        match self.machine_version() {
            Some(v) if v == self.seen.load(Ordering::Acquire) => Ok(()),
            _ => self.catch_up_device(),
        }
    }

    /// Catches up by reading the leader record from the device.
    fn catch_up_device(&self) -> Result<()> {
        let version = self.share.as_ref().map(|s| s.version());
        self.catch_up_from_device()?;
        if let Some(v) = version {
            self.seen.store(v, Ordering::Release);
        }
        Ok(())
    }

    fn catch_up_from_device(&self) -> Result<()> {
        if self.mode == Mode::ReadWrite && self.share.is_none() {
            if self.fence.lease().is_some() {
                return Ok(());
            }
            // A writer that has not written yet follows whoever did.
            let st = self.state.read();
            let now = read_leader(self.dev.as_ref(), st.leader_bda)?;
            if now == st.leader {
                return Ok(());
            }
            drop(st);
            return self.reload();
        }
        let (bda, old) = {
            let st = self.state.read();
            (st.leader_bda, st.leader)
        };
        let new = read_leader(self.dev.as_ref(), bda)?;
        if new.head_txid.get() == old.head_txid.get() && new.head_lsn.get() == old.head_lsn.get() {
            if self.mode == Mode::ReadWrite && new != old {
                // Checkpointed by another process of this host: the next
                // leader record we write must carry the tail it moved.
                let mut st = self.state.write();
                st.gen = next_gen();
                if st.leader == old {
                    st.leader = new;
                }
            }
            return Ok(());
        }
        let mut st = self.state.write();
        if !advance(self.dev.as_ref(), &mut st, new)? {
            // The writer reused the journal space of entries we miss
            // (they are in the metasets now), before or while we read.
            drop(st);
            return self.reload();
        }
        Ok(())
    }

    /// Follows the writer in the background as well: every `interval` a
    /// thread catches this (read-only) mount up with the journal, so it
    /// stays current between operations. The thread ends when the mount is
    /// dropped.
    pub fn spawn_follower(
        self: &Arc<Self>,
        interval: std::time::Duration,
    ) -> std::thread::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        std::thread::spawn(move || loop {
            std::thread::sleep(interval);
            let Some(m) = weak.upgrade() else { return };
            // Errors are met again, and reported, by the next operation.
            let _ = m.refresh();
        })
    }

    /// Drops all in-memory metadata and loads it again from the device.
    pub fn reload(&self) -> Result<()> {
        let mut fresh = load_state_shared(self.dev.as_ref(), self.share.as_deref(), self.hostid)?;
        if self.mode == Mode::ReadWrite {
            fresh.alloc = Some(Allocator::build(&fresh.meta));
        }
        *self.state.write() = fresh;
        Ok(())
    }

    /// Runs `f` on the current metadata, after catching up with the writer.
    pub fn with_meta<R>(&self, f: impl FnOnce(&MetaImage) -> R) -> Result<R> {
        self.refresh()?;
        Ok(f(&self.state.read().meta))
    }
}

/// The error for an inode that was removed by the writer while in use here.
pub(crate) fn gone(ino: u64) -> CoreError {
    CoreError::NotFound {
        path: format!("inode {ino} (removed by the writer)"),
    }
}

/// Disk usage counts whole blocks above this many blocks (`du_nblk_limit`).
const DU_NBLK_LIMIT: u64 = 1;
/// Small files' usage is rounded up to this unit.
const DU_ROUND: u64 = 128 << 10;

impl Mount {
    /// Blocks of file `ino` by index inside the file.
    pub fn blocks(&self, ino: u64) -> Result<BTreeMap<u64, FileBlock>> {
        Ok((*self.block_map(ino)?).clone())
    }

    /// [`Mount::blocks`], shared from the cache while the metadata does
    /// not change.
    pub(crate) fn block_map(&self, ino: u64) -> Result<Arc<BTreeMap<u64, FileBlock>>> {
        self.refresh()?;
        let st = self.state.read();
        self.cached_blocks(&st, ino)
    }

    /// The block map of `ino` in state `st` (which the caller holds).
    pub(crate) fn cached_blocks(
        &self,
        st: &State,
        ino: u64,
    ) -> Result<Arc<BTreeMap<u64, FileBlock>>> {
        let mut cache = self.block_cache.lock();
        if let Some((gen, map)) = cache.get(&ino) {
            if *gen == st.gen {
                return Ok(Arc::clone(map));
            }
        }
        let map = Arc::new(st.meta.blocks(ino)?);
        if cache.len() >= BLOCK_CACHE_FILES {
            cache.retain(|_, (gen, _)| *gen == st.gen);
            if cache.len() >= BLOCK_CACHE_FILES {
                cache.clear();
            }
        }
        cache.insert(ino, (st.gen, Arc::clone(&map)));
        Ok(map)
    }

    /// Reads file `ino` at `off` into `buf`; returns the bytes read (short
    /// at end of file). Unallocated ranges and bytes past a block's written
    /// part read as zeros.
    ///
    /// The file is the one `ino` names in the newest state this mount has
    /// seen; a caller that looked the file up earlier should use
    /// [`Mount::read_born_at`], which notices that the number was reused.
    pub fn read_at(&self, ino: u64, buf: &mut [u8], off: u64) -> Result<usize> {
        self.read_inode_at(ino, None, buf, off)
    }

    /// [`Mount::read_at`] of the file born at `btime` ([`Attr::btime`]):
    /// [`CoreError::NotFound`] if the writer removed it, even when its inode
    /// number already names a newer file.
    ///
    /// [`Attr::btime`]: crate::Attr::btime
    pub fn read_born_at(&self, ino: u64, btime: u64, buf: &mut [u8], off: u64) -> Result<usize> {
        self.read_inode_at(ino, Some(btime), buf, off)
    }

    fn read_inode_at(
        &self,
        ino: u64,
        mut born: Option<u64>,
        buf: &mut [u8],
        off: u64,
    ) -> Result<usize> {
        self.refresh()?;
        const ATTEMPTS: usize = 8;
        // The file being read, by its birth time: an inode number freed and
        // given to a new file meanwhile is another file.
        for _ in 0..ATTEMPTS {
            let version = self.machine_version();
            let (size, blocks, seen, bda) = {
                let st = self.state.read();
                let (_, i) = st.meta.inode(ino).map_err(|_| gone(ino))?;
                if *born.get_or_insert(i.in_btime.get()) != i.in_btime.get() {
                    return Err(gone(ino));
                }
                st.meta.check_attrs(ino, i)?;
                if i.is_dir() {
                    return Err(CoreError::IsDir {
                        path: format!("inode {ino}"),
                    });
                }
                (
                    i.in_size.get(),
                    self.cached_blocks(&st, ino)?,
                    st.leader,
                    st.leader_bda,
                )
            };
            let n = self.read_blocks(&blocks, size, off, buf)?;
            if !self.others_may_write() {
                return Ok(n);
            }
            // Nothing committed on this machine, which holds the lease.
            if version.is_some() && version == self.machine_version() {
                return Ok(n);
            }
            // The bytes are the file's if the writer committed nothing since
            // the state they were read by, or if what it committed left the
            // blocks of this range where they were.
            let now = read_leader(self.dev.as_ref(), bda)?;
            let head = |l: &LeaderRecord| (l.head_txid.get(), l.head_lsn.get());
            if head(&now) == head(&seen) {
                return Ok(n);
            }
            self.catch_up()?;
            let st = self.state.read();
            let (_, i) = st.meta.inode(ino).map_err(|_| gone(ino))?;
            if born != Some(i.in_btime.get()) {
                return Err(gone(ino));
            }
            let after = self.cached_blocks(&st, ino)?;
            let range = off / BLOCK_SIZE..=(off + n as u64).div_ceil(BLOCK_SIZE);
            if i.in_size.get() >= off + n as u64
                && blocks.range(range.clone()).eq(after.range(range))
            {
                return Ok(n);
            }
            // Unlinked, and its writer is cutting it down to free it (a
            // reader elsewhere does not keep it alive): its bytes are gone,
            // not shorter.
            if i.in_deno.get() == NO_DIRENTRY && i.in_size.get() < off + n as u64 {
                return Err(gone(ino));
            }
        }
        Err(CoreError::Busy {
            what: format!("inode {ino} kept changing while it was read"),
        })
    }

    /// Reads `buf` at `off` from a file of `size` bytes with `blocks`.
    fn read_blocks(
        &self,
        blocks: &BTreeMap<u64, FileBlock>,
        size: u64,
        off: u64,
        buf: &mut [u8],
    ) -> Result<usize> {
        if off >= size {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(size - off) as usize;
        let mut done = 0usize;
        while done < n {
            let pos = off + done as u64;
            let (blkid, in_blk) = (pos / BLOCK_SIZE, pos % BLOCK_SIZE);
            let take = (n - done).min((BLOCK_SIZE - in_blk) as usize);
            let out = &mut buf[done..done + take];
            match blocks.get(&blkid) {
                Some(b) if in_blk < b.data_end => {
                    let data = ((b.data_end - in_blk) as usize).min(take);
                    self.dev
                        .read_at(&mut out[..data], b.blkno * BLOCK_SIZE + in_blk)?;
                    out[data..].fill(0);
                }
                _ => out.fill(0),
            }
            done += take;
        }
        Ok(n)
    }

    /// Bytes of the device file `ino` uses, as the reference's `du` counts
    /// them: whole blocks for multi-block files, written bytes rounded up to
    /// 128 KiB for files of at most one block.
    pub fn disk_usage(&self, ino: u64) -> Result<u64> {
        self.refresh()?;
        let st = self.state.read();
        let (_, i) = st.meta.inode(ino)?;
        let nblock = i.in_nblock.get();
        if nblock > DU_NBLK_LIMIT {
            return Ok(nblock * BLOCK_SIZE);
        }
        let soft = i.in_size.get().div_ceil(BLOCK_SIZE);
        let mut sum = 0u64;
        let first = st.meta.inode(ino)?.0.mo_next.get();
        for r in st.meta.blktag_chain(ino, first) {
            let (_, bt_mo) = r?;
            let bt = bt_mo.blktag();
            if (bt.bt_blkid.get() as u64) < soft {
                sum += BLOCK_SIZE
                    - u64::try_from(bt.bt_holelen.get())
                        .unwrap_or(0)
                        .min(BLOCK_SIZE);
            }
        }
        Ok(sum.div_ceil(DU_ROUND) * DU_ROUND)
    }

    /// Writes every metaset sector changed since the last checkpoint to its
    /// home, flushes, then advances the leader's tail to its head and
    /// flushes again. Nothing is written when the journal holds nothing to
    /// apply. Read-only mounts refuse.
    pub fn checkpoint(&self) -> Result<()> {
        if self.mode != Mode::ReadWrite {
            return Err(CoreError::ReadOnly);
        }
        let _host = self.host_tx()?;
        let mut guard = self.state.write();
        guard.gen = next_gen();
        self.fence.check_stopped()?;
        if guard.leader.tail_txid == guard.leader.head_txid && guard.dirty.is_empty() {
            return Ok(());
        }
        let (lease, stale) = self.take_writer_lease(&guard.leader, guard.leader_bda)?;
        if stale {
            *guard = self.reloaded()?;
            return Ok(());
        }
        let st = &mut *guard;
        let bda = st.leader_bda;
        let log = DeviceLog {
            dev: self.dev.as_ref(),
            blocks: &st.journal_blocks,
            leader_bda: bda,
        };
        let r = checkpoint_sectors(&log, &st.meta, &mut st.leader, &mut st.dirty, &|l| {
            self.still_ours(&lease, l, bda)
        });
        match r {
            Ok(()) => {
                st.ntx = 0;
                self.committed();
                Ok(())
            }
            Err(e) => Err(self.fence.stop_io(e, "a checkpoint write or flush failed")),
        }
    }

    /// Runs `f` as one transaction and commits it: log entries appended at
    /// the journal head and flushed, then the leader record rewritten and
    /// flushed. Only then is the change applied in memory and committed.
    /// If `f` fails nothing is written and nothing changes.
    pub(crate) fn write_tx<R>(&self, f: impl FnOnce(&mut Tx<'_>) -> Result<R>) -> Result<R> {
        if self.mode != Mode::ReadWrite {
            return Err(CoreError::ReadOnly);
        }
        let _host = self.host_tx()?;
        self.refresh()?;
        let mut guard = self.state.write();
        guard.gen = next_gen();
        let State {
            meta,
            leader,
            leader_bda,
            journal_blocks,
            dirty,
            alloc,
            ntx,
            gen: _,
        } = &mut *guard;
        self.fence.check_stopped()?;
        let alloc = alloc.as_mut().ok_or(CoreError::ReadOnly)?;
        let mut tx = Tx::new(meta, alloc);
        let r = f(&mut tx)?;
        let objs = tx.entries();
        if objs.is_empty() {
            return Ok(r);
        }
        let bda = *leader_bda;
        let (lease, stale) = self.take_writer_lease(leader, bda)?;
        if stale {
            // Someone committed between our look and our taking the
            // lease. Nothing of ours is written: catch up and let the
            // caller try again.
            drop(tx);
            *guard = self.reloaded()?;
            return Err(CoreError::Busy {
                what: format!(
                    "another writer committed to {} while this mount was taking the writer lease; nothing was written, try again",
                    self.dev.name()
                ),
            });
        }
        let log = DeviceLog {
            dev: self.dev.as_ref(),
            blocks: journal_blocks,
            leader_bda: bda,
        };
        let ours = |l: &LeaderRecord| self.still_ours(&lease, l, bda);
        crate::lease::stop_point("commit-start");
        ours(leader)?;
        let before_leader = |l: &LeaderRecord| {
            crate::lease::stop_point("before-leader");
            ours(l)
        };
        if let Some(s) = &self.share {
            // A process of the host killed between its leader write and
            // settling leaves this behind: the head it wrote is the host's.
            s.set_next(self.hostid, leader.head_txid.get() + 1);
        }
        let new_leader = match pfs_journal::append(&log, leader, &objs, &before_leader) {
            Err(CoreError::Journal(JournalError::Full { .. })) => {
                if let Err(e) = checkpoint_sectors(&log, meta, leader, dirty, &ours) {
                    return Err(self.fence.stop_io(e, "a checkpoint write or flush failed"));
                }
                *ntx = 0;
                pfs_journal::append(&log, leader, &objs, &before_leader)
            }
            other => other,
        };
        let new_leader = match new_leader {
            Ok(l) => l,
            // Refused before anything was written.
            Err(e @ CoreError::Journal(JournalError::TxTooLarge { .. })) => return Err(e),
            Err(e) => return Err(self.fence.stop_io(e, "a journal write or flush failed")),
        };
        tx.finish();
        for (id, mo) in &objs {
            meta.set(*id, *mo);
            dirty.insert(id.sector_bda());
        }
        *leader = new_leader;
        self.adopt_head(leader);
        *ntx += 1;
        self.committed();
        if pfs_journal::checkpoint_due(*ntx, dirty.len() as u64) {
            if let Err(e) = checkpoint_sectors(&log, meta, leader, dirty, &ours) {
                return Err(self.fence.stop_io(e, "a checkpoint write or flush failed"));
            }
            *ntx = 0;
            self.committed();
        }
        Ok(r)
    }
}

impl Mount {
    /// Takes the writer lease now rather than at the first write, for a
    /// writer that should hold it for as long as it is mounted (a FUSE
    /// mount): a second writer is then refused from the start. Writes only
    /// this host's lease slot; the mount catches up with anything committed
    /// before it took the lease.
    pub fn take_lease(&self) -> Result<()> {
        if self.mode != Mode::ReadWrite {
            return Err(CoreError::ReadOnly);
        }
        let _host = self.host_tx()?;
        self.refresh()?;
        let mut guard = self.state.write();
        let (_, stale) = self.take_writer_lease(&guard.leader, guard.leader_bda)?;
        if stale {
            *guard = self.reloaded()?;
        }
        Ok(())
    }

    /// The lease a write on the state whose leader record is `leader`
    /// needs, taken now if this mount has none. `true` when it was taken
    /// just now and someone committed after that state was read: the state
    /// is stale (load it again with [`Mount::reloaded`]). The caller holds
    /// the host's transaction lock and the state.
    fn take_writer_lease(
        &self,
        leader: &LeaderRecord,
        leader_bda: u64,
    ) -> Result<(Arc<Lease>, bool)> {
        let mut held = self.fence.lease_slot();
        if let Some(l) = held.as_ref() {
            return Ok((Arc::clone(l), false));
        }
        crate::lease::stop_point("acquire");
        let l = Lease::acquire(
            Arc::clone(&self.raw),
            Slots::of(leader, leader_bda),
            self.hostid as u32,
            self.lease_ms,
            self.force,
            &mut self.watch.lock(),
            self.share.clone(),
        )
        .map_err(|e| self.fence.stop_on(e))?;
        *held = Some(Arc::clone(&l));
        drop(held);
        let ondisk = read_leader(self.raw.as_ref(), leader_bda)?;
        if head(&ondisk) != head(leader) {
            return Ok((l, true));
        }
        self.adopt_head(leader);
        Ok((l, false))
    }

    /// Everything loaded again from the device, for a read-write mount
    /// that has just become the writer (its host's commits start there).
    fn reloaded(&self) -> Result<State> {
        let mut fresh = load_state(self.raw.as_ref())?;
        fresh.alloc = Some(Allocator::build(&fresh.meta));
        self.adopt_head(&fresh.leader);
        Ok(fresh)
    }

    /// Records `leader`'s head as the one this mount's host wrote last (a
    /// shared mount; see [`Share::head`]).
    fn adopt_head(&self, leader: &LeaderRecord) {
        if let Some(s) = &self.share {
            s.settle(self.hostid, leader.head_txid.get());
        }
    }

    /// The check before every write to the journal, the leader record or
    /// the metasets, and before any write after a stall: the lease still
    /// runs on this machine's clock, or was taken again with no other host
    /// claiming it ([`Lease::prove`]), and the journal head on disk is the
    /// one `leader` (the state this mount is about to extend) has, so no
    /// other writer committed meanwhile. Another writer's commit stops
    /// this mount for good, and a shared mount's whole host with it.
    fn still_ours(&self, lease: &Lease, leader: &LeaderRecord, bda: u64) -> Result<()> {
        lease.prove().map_err(|e| self.fence.stop_on(e))?;
        let ondisk = read_leader(self.raw.as_ref(), bda)?;
        if head(&ondisk) != head(leader) {
            let why = format!(
                "another writer committed to the journal (head txid {} on disk, {} here)",
                ondisk.head_txid.get(),
                leader.head_txid.get()
            );
            if let Some(s) = &self.share {
                s.depose(self.hostid);
            }
            self.fence.stop(&why);
            return Err(CoreError::Fenced { reason: why });
        }
        Ok(())
    }

    /// Lets a write that goes to the device outside a transaction (file
    /// data, a flush) start: at once while the lease runs; after the lease
    /// ran out (a stall) only once this mount has proved it is still the
    /// writer ([`Mount::prove_writer`]). Fails for good once another writer
    /// took over.
    pub(crate) fn permit_write(&self) -> Result<()> {
        if self.mode != Mode::ReadWrite {
            return Err(CoreError::ReadOnly);
        }
        match self.fence.admit() {
            Err(CoreError::LeaseLapsed) => self.prove_writer(),
            other => other,
        }
    }

    /// Proves that this mount is still the writer before it writes again
    /// (or takes the lease, for a mount that has none yet): under the
    /// host's transaction lock and the state, the lease taken again with
    /// no other host claiming it, and the journal head on disk the one
    /// this host wrote last.
    fn prove_writer(&self) -> Result<()> {
        let _host = self.host_tx()?;
        let mut guard = self.state.write();
        self.fence.check_stopped()?;
        let (lease, stale) = self.take_writer_lease(&guard.leader, guard.leader_bda)?;
        if stale {
            // Taken just now: what others committed before is the
            // device's content, and this mount's state is loaded again.
            guard.gen = next_gen();
            *guard = self.reloaded()?;
            return Ok(());
        }
        let bda = guard.leader_bda;
        self.still_ours(&lease, &guard.leader, bda)
    }

    /// Runs `op`, which writes to the device outside a transaction, with
    /// [`Mount::permit_write`] before it and again after it (a write that
    /// stalled past a takeover is not acknowledged). A lease that runs out
    /// during `op` is proved and `op` run again: it must be safe to repeat.
    pub(crate) fn with_write_permit<R>(&self, mut op: impl FnMut() -> Result<R>) -> Result<R> {
        const ATTEMPTS: usize = 3;
        for _ in 0..ATTEMPTS {
            self.permit_write()?;
            match op() {
                Err(CoreError::LeaseLapsed) => continue,
                Err(e) => return Err(e),
                Ok(r) => {
                    self.permit_write()?;
                    return Ok(r);
                }
            }
        }
        Err(CoreError::LeaseLapsed)
    }

    /// Makes every write this mount completed durable (`fsync`), checking
    /// that the mount may still write before and after the flush.
    /// Read-only mounts flush nothing.
    pub fn sync(&self) -> Result<()> {
        if self.mode != Mode::ReadWrite {
            return Ok(());
        }
        self.with_write_permit(|| self.dev.sync())
    }
}

impl Mount {
    /// Takes inode `ino`'s data lock: shared around a write's data,
    /// `exclusive` around a truncate (see [`crate::datalock`]). Taken
    /// before the host's transaction lock, never while holding it.
    pub(crate) fn data_lock(
        &self,
        ino: u64,
        exclusive: bool,
    ) -> Result<crate::datalock::DataGuard<'_>> {
        let share = self.share.as_deref();
        let stripes = share.map_or(&self.data_locks, |s| &s.stripes);
        crate::datalock::DataGuard::take(stripes, share, ino, exclusive)
    }

    /// A shared mount's turn to write among the processes of its host on
    /// this machine (the host's transaction lock), caught up with what they
    /// committed; `None` for a mount that is not shared. A read-write
    /// mount finds out here whether another host committed while this
    /// host held the lease.
    pub(crate) fn host_tx(&self) -> Result<Option<crate::share::TxLock<'_>>> {
        let Some(s) = &self.share else {
            return Ok(None);
        };
        let lock = s.lock_tx(self.hostid)?;
        if lock.outermost() {
            if self.mode == Mode::ReadWrite {
                self.watch_host_head(s)?;
            }
            self.catch_up_device()?;
        }
        Ok(Some(lock))
    }

    /// Under the host's transaction lock, while the machine records a
    /// lease of this mount's host: the journal head on the device must be
    /// the one a process of the host wrote last. Any other head means
    /// another host took the lease over and committed: the host is deposed
    /// and this mount stops writing. A lease no live process of the host
    /// holds any more was abandoned, not taken: it is forgotten.
    fn watch_host_head(&self, s: &Share) -> Result<()> {
        let (token, _) = s.lease(self.hostid);
        if token == 0 {
            return Ok(());
        }
        let bda = self.state.read().leader_bda;
        let t = read_leader(self.raw.as_ref(), bda)?.head_txid.get();
        let (settled, next) = s.head(self.hostid);
        if t == settled {
            return Ok(());
        }
        if next != 0 && t == next {
            s.settle(self.hostid, t);
            return Ok(());
        }
        if crate::live::marked(self.raw.as_ref(), token) == Some(false) {
            s.clear_lease(self.hostid);
            return Ok(());
        }
        s.depose(self.hostid);
        let why = format!(
            "another host committed to {} (journal head txid {t}, this host's last {settled}) after taking the writer lease over; this host stopped writing",
            self.dev.name()
        );
        self.fence.stop(&why);
        Err(CoreError::Fenced { reason: why })
    }

    /// For a [`MountOptions::shared`] mount: whether another process of
    /// this machine is mounted read-write with the same host id (say, a
    /// parent remounted read-write after it forked this process, which may
    /// then mount read-write too and share its lease).
    pub fn host_has_writer(&self) -> bool {
        self.share
            .as_ref()
            .is_some_and(|s| s.others_mounted(self.hostid))
    }

    /// Whether this mount is shared with other processes of this machine.
    pub(crate) fn is_shared(&self) -> bool {
        self.share.is_some()
    }

    /// Tells the other processes of this machine that the device changed
    /// (a shared mount, after a commit or checkpoint).
    fn committed(&self) {
        if let Some(s) = &self.share {
            self.seen.store(s.bump(), Ordering::Release);
        }
    }
}

/// Leaves the share's members on drop (a mount that failed half-way).
struct MemberGuard<'a>(Option<(&'a Share, u64)>);

impl Drop for MemberGuard<'_> {
    fn drop(&mut self) {
        if let Some((s, h)) = self.0 {
            s.leave(h);
        }
    }
}

/// Where a leader record says the journal's head is.
fn head(l: &LeaderRecord) -> (u64, u64, u64) {
    (l.head_txid.get(), l.head_offset.get(), l.head_lsn.get())
}

/// Writes the dirty metaset sectors home and advances the journal's tail
/// to its head (see [`pfs_journal::checkpoint`] for the order of writes and
/// flushes); `guard` runs before anything is written and again before the
/// leader record.
fn checkpoint_sectors(
    log: &DeviceLog<'_>,
    meta: &MetaImage,
    leader: &mut LeaderRecord,
    dirty: &mut BTreeSet<u64>,
    guard: pfs_journal::Guard<'_, CoreError>,
) -> Result<()> {
    if leader.tail_txid == leader.head_txid && dirty.is_empty() {
        return Ok(());
    }
    let mut write_home = || -> Result<()> {
        let mut sect = AlignedBuf::new(SECTOR_SIZE as usize);
        for &bda in dirty.iter() {
            let objs = meta.sector_objects(bda)?;
            sect.as_mut_slice()
                .copy_from_slice(&pfs_format::metaset::encode_sector(&objs));
            log.dev.write_at(sect.as_slice(), bda)?;
        }
        Ok(())
    };
    *leader = pfs_journal::checkpoint(log, leader, &mut write_home, guard)?;
    dirty.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MemDevice;
    use crate::mkfs::{mkfs, MkfsOptions};
    use crate::namespace::FileType;
    use pfs_format::layout::{CHUNK_SIZE, INODE_SET_OFFSET, MIN_LOG_SIZE};

    fn host(hostid: u64) -> MountOptions {
        MountOptions {
            hostid,
            lease_ms: 60_000,
            ..MountOptions::default()
        }
    }

    fn read_all(m: &Mount, path: &str) -> Vec<u8> {
        let ino = m.resolve(path).unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let n = m.read_at(ino, &mut buf, 0).unwrap();
        buf.truncate(n);
        buf
    }

    /// A formatted memory device, and the same as a `dyn Device`.
    fn formatted() -> (Arc<MemDevice>, Arc<dyn Device>) {
        let dev = Arc::new(MemDevice::new("mem", CHUNK_SIZE));
        let opts = MkfsOptions {
            log_size: MIN_LOG_SIZE,
            ..MkfsOptions::default()
        };
        mkfs(dev.as_ref(), &opts).unwrap();
        let shared: Arc<dyn Device> = dev.clone();
        (dev, shared)
    }

    /// Where [`spoil`] writes.
    const SPOILED: u64 = INODE_SET_OFFSET + 15 * SECTOR_SIZE;

    /// A device whose last inode sector of chunk 0 (never used by a small
    /// filesystem) is garbage: loading the metadata fails on it, so a
    /// mount that succeeds did not load it.
    fn spoil(dev: &MemDevice) -> Vec<u8> {
        let at = SPOILED;
        let mut saved = vec![0u8; SECTOR_SIZE as usize];
        dev.read_at(&mut saved, at).unwrap();
        dev.write_at(&vec![0xEE; SECTOR_SIZE as usize], at).unwrap();
        saved
    }

    #[test]
    fn a_forked_child_starts_from_its_parents_metadata() {
        let (dev, shared) = formatted();
        let w = Mount::open_with(shared.clone(), Mode::ReadWrite, &host(1)).unwrap();
        let a = w.create_path("/a", FileType::File).unwrap();
        w.write_at(a, b"before the fork", 0).unwrap();
        let parent = Arc::new(Mount::open_with(shared.clone(), Mode::ReadOnly, &host(2)).unwrap());
        assert_eq!(read_all(&parent, "/a"), b"before the fork");
        // After the fork the writer goes on.
        let b = w.create_path("/b", FileType::File).unwrap();
        w.write_at(b, b"after the fork", 0).unwrap();
        let saved = spoil(&dev);
        assert!(Mount::open_with(shared.clone(), Mode::ReadOnly, &host(2)).is_err());

        // The child reads only the journal: the spoiled sector is never
        // read, and it sees both files.
        let child =
            Mount::open_after_fork(shared.clone(), Mode::ReadOnly, &host(2), parent).unwrap();
        assert_eq!(read_all(&child, "/a"), b"before the fork");
        assert_eq!(read_all(&child, "/b"), b"after the fork");

        // A child may also be the writer (a promoted replica's backend):
        // it takes over from the writer once that one is gone.
        drop(w);
        let child = Arc::new(child);
        let writer =
            Mount::open_after_fork(shared.clone(), Mode::ReadWrite, &host(1), child).unwrap();
        writer.mkdir_path("/made-by-the-child").unwrap();
        dev.write_at(&saved, SPOILED).unwrap();
        assert!(writer.fsck().unwrap().is_clean());
        let fresh = Mount::open_with(shared.clone(), Mode::ReadOnly, &host(2)).unwrap();
        assert_eq!(read_all(&fresh, "/b"), b"after the fork");
        assert!(fresh.resolve("/made-by-the-child").is_ok());
    }

    #[test]
    fn an_orphan_freed_meanwhile_is_left_alone() {
        // A mounting process lists the orphans, then another process of
        // the host frees one before this one takes the host's lock.
        let (_, shared) = formatted();
        let w = Mount::open_with(shared, Mode::ReadWrite, &host(1)).unwrap();
        let ino = w.create_path("/f", FileType::File).unwrap();
        w.unlink_path("/f").unwrap();
        w.release_if_orphan(ino).unwrap();
        assert!(w.fsck().unwrap().is_clean());
    }

    #[test]
    fn a_child_loads_everything_when_a_parent_thread_held_the_state() {
        let (dev, shared) = formatted();
        let w = Mount::open_with(shared.clone(), Mode::ReadWrite, &host(1)).unwrap();
        w.mkdir_path("/d").unwrap();
        // A thread of the parent held the state at the fork: it may be half
        // changed, so the child loads (and meets the spoiled sector).
        let parent = Arc::new(Mount::open_with(shared.clone(), Mode::ReadOnly, &host(2)).unwrap());
        let held = parent.state.read();
        let saved = spoil(&dev);
        let p2 = Arc::clone(&parent);
        assert!(Mount::open_after_fork(shared.clone(), Mode::ReadOnly, &host(2), p2).is_err());
        dev.write_at(&saved, SPOILED).unwrap();
        drop(held);
        let p3 = Arc::clone(&parent);
        let child = Mount::open_after_fork(shared.clone(), Mode::ReadOnly, &host(2), p3).unwrap();
        assert!(child.resolve("/d").is_ok());
    }

    #[test]
    fn followers_advance_past_checkpoints_and_reload_only_when_lapped() {
        let (dev, shared) = formatted();
        let w = Mount::open_with(shared.clone(), Mode::ReadWrite, &host(1)).unwrap();
        let r = Mount::open_with(shared.clone(), Mode::ReadOnly, &host(2)).unwrap();
        w.mkdir_path("/a").unwrap();
        assert!(r.resolve("/a").is_ok());
        let parent = Arc::new(Mount::open_with(shared.clone(), Mode::ReadOnly, &host(2)).unwrap());

        // The writer checkpoints past both, then goes on: the entries they
        // miss are still in the journal, so neither loads the metadata.
        w.mkdir_path("/b").unwrap();
        w.checkpoint().unwrap();
        w.mkdir_path("/c").unwrap();
        assert!(w.leader().tail_txid.get() > r.leader().head_txid.get());
        let saved = spoil(&dev);
        assert!(r.resolve("/c").is_ok() && r.resolve("/b").is_ok());
        let child =
            Mount::open_after_fork(shared.clone(), Mode::ReadOnly, &host(2), parent).unwrap();
        assert!(child.resolve("/c").is_ok() && child.resolve("/b").is_ok());

        // Once the writer has written a whole journal's worth since, the
        // entries are gone: the follower loads again (and meets the spoiled
        // sector, then, restored, gets everything).
        let seen = r.leader().head_lsn.get();
        let ring = w.leader().log_size.get() / pfs_format::layout::LOG_ENTRY_SIZE as u64;
        let big = w.create_path("/big", FileType::File).unwrap();
        let mut cycle = 0u64;
        while w.leader().head_lsn.get() - seen <= ring {
            w.fallocate(big, 0, 900 << 22, crate::FallocMode::default())
                .unwrap();
            w.truncate(big, cycle % 3).unwrap();
            cycle += 1;
        }
        assert!(r.refresh().is_err(), "a lapped follower must load again");
        dev.write_at(&saved, SPOILED).unwrap();
        r.refresh().unwrap();
        let ino = r.resolve("/big").unwrap();
        assert_eq!(r.getattr(ino).unwrap().size, (cycle - 1) % 3);
    }
}
