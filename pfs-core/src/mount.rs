//! Mounted filesystems: metadata in memory, kept in step with the journal.
//!
//! A read-only mount follows the writer: before each read-type operation it
//! re-reads the leader record and replays entries committed since its last
//! look. If the writer has checkpointed and reused journal space past what
//! this mount replayed, it reloads all metadata from the device instead of
//! failing (the reference exits the process there).
//!
//! This module ties the pieces of a mount together; each job has a module
//! of its own:
//!
//! | module | holds |
//! |---|---|
//! | `state` | the metadata as of one commit; loading it, advancing it through the journal |
//! | `follow` | catching up with the writer (readers, shared processes, forked children) |
//! | `data` | block maps, the data read path and write path |
//! | `commit` | transactions, checkpoints, the writer lease, the write permission |
//! | `group` | group commit: many transactions, of threads and processes, committed by one leader write |
//! | `host` | the processes of one machine sharing a host id |
//!
//! The transactions of file operations are in [`crate::fsops`], the
//! namespace in [`crate::namespace`], the gate every write passes in
//! [`crate::fence`], the order locks are taken in in [`crate::locks`].

mod commit;
mod committer;
mod data;
mod follow;
mod group;
mod host;
mod state;
mod tail;
#[cfg(test)]
mod tests;

pub(crate) use data::{Extend, Extents};
pub(crate) use state::{gone, State};

use crate::alloc::Allocator;
use crate::device::Device;
use crate::error::{CoreError, Result};
use crate::fence::{Fence, FencedDevice};
use crate::hostlock::HostLock;
use crate::lease::Lease;
use crate::meta::MetaImage;
use crate::share::Share;
pub use committer::Committer;
use data::BlockCache;
use parking_lot::RwLock;
use pfs_format::LeaderRecord;
use state::{load_state_shared, next_gen, resume};
use std::collections::BTreeSet;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// How a filesystem is mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Follow the writer; never write to the device.
    ReadOnly,
    /// The single writer.
    ReadWrite,
}

/// How to mount, beyond the mode.
///
/// # Example
///
/// What a front end mounts PBD `disk` of device directory `dir` with,
/// and a library user's own choice:
///
/// ```
/// use pfs_core::{pbd, Mode, MountOptions};
///
/// let dir = std::path::Path::new("/srv/pfs");
/// let opts = MountOptions::for_pbd("disk", Some(dir), Mode::ReadWrite);
/// assert_eq!(opts.lock_path, Some(pbd::lock_path("disk", Some(dir))));
/// assert_eq!(opts.lock_path, Some(dir.join(".disk-paxos-hostid")));
/// assert!(!opts.shared);
///
/// // Host 2, taking over the lease of a writer that died without releasing it.
/// let opts = MountOptions { hostid: 2, force: true, ..MountOptions::default() };
/// assert_eq!(opts.lock_path, None);
/// assert_eq!(opts.lease_ms, pfs_core::DEFAULT_LEASE_MS);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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

/// Environment variable: `0` stops the processes of a shared host from
/// writing their journal appends side by side, after the transaction lock
/// is let go (padded to whole sectors); each append is then written under
/// the lock. Side by side is the default.
pub const SIDE_BY_SIDE_ENV: &str = "PFS_SIDE_BY_SIDE_APPENDS";

/// Whether side-by-side appends are on: unless [`SIDE_BY_SIDE_ENV`] is
/// `0` (read once per process).
fn side_by_side_from_env() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var(SIDE_BY_SIDE_ENV).map_or(true, |v| v != "0"))
}

/// Environment variable: the writer lease's duration in milliseconds
/// (at least 100; otherwise, or unset, [`crate::DEFAULT_LEASE_MS`]).
pub const LEASE_MS_ENV: &str = "PFS_LEASE_MS";

impl MountOptions {
    /// The options every front end (the tool and its FUSE mount, the C
    /// SDK) mounts PBD `pbd` with, the environment read here and nowhere
    /// else: the host-lock file (read-write) and the share file of the
    /// device directory `device_dir` ([`crate::pbd::lock_path`],
    /// [`crate::pbd::share_path`]), and the lease duration of
    /// [`LEASE_MS_ENV`]. Host id 0, no takeover, not shared: the front end
    /// sets those from its own arguments.
    pub fn for_pbd(pbd: &str, device_dir: Option<&std::path::Path>, mode: Mode) -> MountOptions {
        let lease_ms = std::env::var(LEASE_MS_ENV)
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|&v| v >= 100)
            .unwrap_or(crate::lease::DEFAULT_LEASE_MS);
        MountOptions {
            lock_path: (mode == Mode::ReadWrite).then(|| crate::pbd::lock_path(pbd, device_dir)),
            lease_ms,
            share_path: Some(crate::pbd::share_path(pbd, device_dir)),
            ..MountOptions::default()
        }
    }

    /// [`MountOptions::for_pbd`] in the device directory the environment
    /// names ([`crate::pbd::DEVICE_DIR_ENV`], `PFS_DEVICE_DIR`).
    pub fn from_env(pbd: &str, mode: Mode) -> MountOptions {
        MountOptions::for_pbd(pbd, crate::pbd::device_dir_from_env().as_deref(), mode)
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
    /// Whether a shared mount pads its appends to whole sectors and writes
    /// them after the transaction lock is let go (see `commit`'s
    /// `Mount::pads`): on unless [`SIDE_BY_SIDE_ENV`] says `0` and no test
    /// turned it on.
    side_by_side: std::sync::atomic::AtomicBool,
    /// What a shared mount shares with the other processes of the machine.
    share: Option<Arc<Share>>,
    /// The share's commit counter as of the state this mount has.
    seen: AtomicU64,
    /// The share's count of the host's checkpoints as of the last leader
    /// record this mount read under the host's transaction lock
    /// (`u64::MAX`: none yet).
    seen_checkpoints: AtomicU64,
    /// How many times the state was loaded again from the device
    /// ([`Mount::reload`]).
    reloads: AtomicU64,
    /// Held by a write that extends a file or a block's written part (in a
    /// mount that is not shared; a shared one holds the host's lock): see
    /// [`crate::locks`].
    extending: crate::stripes::Stripes,
    /// Data locks of a mount that is not shared (a shared one uses its
    /// share's, common to the process): see [`crate::datalock`].
    data_locks: crate::stripes::Stripes,
    /// See [`BlockCache`].
    block_cache: parking_lot::Mutex<BlockCache>,
    /// Shares device flushes among this mount's threads (a mount that is
    /// not shared; a shared one shares them through its share).
    flushes: crate::flush::FlushGate,
    /// Reads of the leader record shared among this mount's threads: a
    /// reader's checks of the journal head (see [`Mount::read_leader_fresh`]).
    leader_reads: crate::freshread::FreshRead<(u64, pfs_format::LeaderRecord)>,
    /// Group commit's heads and committer lock (a mount that is not
    /// shared; a shared one keeps them in its share).
    group: group::LocalGroup,
    /// Transactions return before they are durable (see
    /// [`Mount::defer_durability`]).
    deferred: std::sync::atomic::AtomicBool,
    /// The last transaction that cut a file short or freed blocks (see
    /// [`Mount::settle_cuts`]).
    cut_txid: AtomicU64,
    /// The journal sector this mount's last append ended in (see
    /// [`tail`]).
    journal_tail: parking_lot::Mutex<tail::TailSector>,
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

impl Mount {
    /// Mounts `dev`: loads every chunk's metasets, finds the leader record
    /// and replays the committed journal.
    pub fn open(dev: Arc<dyn Device>, mode: Mode) -> Result<Mount> {
        Mount::open_with(dev, mode, &MountOptions::default())
    }

    /// Mounts with options. A read-write mount takes the host-local lock
    /// (when a lock path is given) and the writer lease, then loads the
    /// metadata as of the latest commit.
    ///
    /// # Example
    ///
    /// The writer and a follower of one device (a sparse file in `dir`, a
    /// scratch directory): the writer takes the writer lease at its first
    /// change, the follower reads what it committed.
    ///
    /// ```
    /// # struct Scratch(std::path::PathBuf);
    /// # impl Drop for Scratch {
    /// #     fn drop(&mut self) {
    /// #         let _ = std::fs::remove_dir_all(&self.0);
    /// #     }
    /// # }
    /// # let scratch = Scratch(std::env::temp_dir().join(format!("pfs-doc-open-with-{}", std::process::id())));
    /// # std::fs::create_dir_all(&scratch.0)?;
    /// # let dir = scratch.0.clone();
    /// use pfs_core::{mkfs, FileDevice, MkfsOptions, Mode, Mount, MountOptions};
    /// use std::sync::Arc;
    ///
    /// let img = dir.join("disk");
    /// std::fs::File::create(&img)?.set_len(10 << 30)?;
    /// let dev = Arc::new(FileDevice::open("disk", &img, true)?);
    /// mkfs(dev.as_ref(), &MkfsOptions::default())?;
    ///
    /// let opts = MountOptions { hostid: 1, ..MountOptions::default() };
    /// let writer = Mount::open_with(dev, Mode::ReadWrite, &opts)?;
    /// assert_eq!(writer.hostid(), 1);
    /// assert!(writer.lease().is_none());
    /// writer.mkdir_path("/data")?;
    /// assert!(writer.lease().is_some());
    ///
    /// let dev = Arc::new(FileDevice::open("disk", &img, false)?);
    /// let reader = Mount::open_with(dev, Mode::ReadOnly, &MountOptions::default())?;
    /// assert!(reader.stat_path("/data")?.is_dir());
    /// assert_eq!(reader.mkdir_path("/more").unwrap_err().errno(), libc::EROFS);
    ///
    /// // The follower sees the writer's later commits too.
    /// writer.mkdir_path("/data/more")?;
    /// assert!(reader.stat_path("/data/more")?.is_dir());
    ///
    /// drop(reader);
    /// writer.unmount()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
            journal: pfs_journal::Journal::new(*guard.leader(), BTreeSet::new()),
            leader_bda: guard.leader_bda,
            journal_blocks: Vec::new(),
            alloc: None,
            gen: next_gen(),
        };
        let mut st = std::mem::replace(&mut *guard, hollow);
        // Locks inside it may have been held by the parent's threads.
        st.meta.names = parking_lot::Mutex::new(Default::default());
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
                Some(Share::open(&path, dev.local_path())?)
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
            pfs_paxos::HostId::resolve(joined.unwrap_or(opts.hostid), state.leader())?.get();
        let mut lock = None;
        let mut watch = pfs_paxos::Watch::new();
        if mode == Mode::ReadWrite {
            if let Some(s) = &share {
                s.join(hostid)?;
            }
            // Leaves the share again if the mount fails below.
            let member = MemberGuard(share.as_deref().map(|s| (s, hostid)));
            if let Some(p) = &opts.lock_path {
                match HostLock::acquire(p, hostid, dev.local_path()) {
                    Ok(l) => lock = Some(l),
                    // Another process of this machine mounted with the same
                    // host id holds it for the host.
                    Err(_) if share.as_ref().is_some_and(|s| s.others_mounted(hostid)) => {}
                    Err(e) => return Err(e),
                }
            }
            // Registered before any write, so a host that takes the lease
            // over from this one can fence it at the storage.
            dev.register_writer(hostid as u32, crate::lease::node_id())?;
            // The lease the other processes of this host hold is ours too.
            let own = share.as_ref().map_or(0, |s| s.lease(hostid).0);
            let sibling = share.as_ref().map(|_| hostid as u32);
            let dead = crate::lease::wait_free(
                dev.as_ref(),
                state.slots(),
                own,
                sibling,
                opts.force,
                &mut watch,
            )?;
            if opts.force && !dead.is_empty() {
                // A takeover waited out a silent holder: noted now, so the
                // host's other processes (children forked before this
                // mount, say) need not wait it out once more.
                state
                    .slots()
                    .note_overridden(dev.as_ref(), hostid as u32, &dead)?;
            }
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
            side_by_side: std::sync::atomic::AtomicBool::new(side_by_side_from_env()),
            share,
            seen: AtomicU64::new(seen),
            seen_checkpoints: AtomicU64::new(u64::MAX),
            reloads: AtomicU64::new(0),
            extending: Default::default(),
            data_locks: Default::default(),
            block_cache: parking_lot::Mutex::new(BlockCache::new()),
            flushes: Default::default(),
            leader_reads: Default::default(),
            group: Default::default(),
            deferred: Default::default(),
            cut_txid: AtomicU64::new(0),
            journal_tail: Default::default(),
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
    ///
    /// # Example
    ///
    /// Files hold their mount, so they are closed before it is unmounted
    /// (`m` is a read-write `Arc<Mount>` of a new filesystem):
    ///
    /// ```
    /// # struct Scratch(std::path::PathBuf);
    /// # impl Drop for Scratch {
    /// #     fn drop(&mut self) {
    /// #         let _ = std::fs::remove_dir_all(&self.0);
    /// #     }
    /// # }
    /// # let scratch = Scratch(std::env::temp_dir().join(format!("pfs-doc-unmount-{}", std::process::id())));
    /// # std::fs::create_dir_all(&scratch.0)?;
    /// # let dir = scratch.0.clone();
    /// # let img = scratch.0.join("disk");
    /// # std::fs::File::create(&img)?.set_len(10 << 30)?;
    /// # let dev = std::sync::Arc::new(pfs_core::FileDevice::open("disk", &img, true)?);
    /// # pfs_core::mkfs(dev.as_ref(), &pfs_core::MkfsOptions::default())?;
    /// # let opts = pfs_core::MountOptions { hostid: 1, ..pfs_core::MountOptions::default() };
    /// # let m = std::sync::Arc::new(pfs_core::Mount::open_with(dev, pfs_core::Mode::ReadWrite, &opts)?);
    /// use pfs_core::OpenOptions;
    /// use std::sync::Arc;
    ///
    /// let f = m.open_file("/f", OpenOptions { create: true, write: true, ..OpenOptions::default() })?;
    /// f.write_at(b"data", 0)?;
    /// assert!(Arc::try_unwrap(m.clone()).is_err()); // `f` still holds it
    /// f.close()?;
    /// Arc::try_unwrap(m).ok().expect("no other holder").unmount()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn unmount(self) -> Result<()> {
        // What returned before it was durable is committed first.
        let committed = self.commit_appended();
        let fenced = self.fence.stopped();
        let flushed = if fenced.is_none() && self.fence.lease().is_some() {
            committed.and_then(|()| self.dev.sync().map_err(|e| self.flush_failed(e)))
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

    /// What this mount shares with the other processes of the machine.
    pub(crate) fn share(&self) -> Option<&Share> {
        self.share.as_deref()
    }

    /// The extend locks of a mount that is not shared, by inode stripe.
    pub(crate) fn extend_stripes(&self) -> &crate::stripes::Stripes {
        &self.extending
    }

    /// The in-process data-lock stripes of a mount that is not shared.
    pub(crate) fn local_stripes(&self) -> &crate::stripes::Stripes {
        &self.data_locks
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

    /// The chunks the filesystem has, as of the writer's last commit this
    /// mount has seen (what `growfs` grows from).
    pub fn nchunk(&self) -> Result<u64> {
        self.with_meta(|meta| u64::from(meta.nchunk))
    }

    /// The leader record as of the last replay.
    pub fn leader(&self) -> LeaderRecord {
        *self.state.read().leader()
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
