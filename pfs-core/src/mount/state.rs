//! The metadata a mount holds, as of one committed transaction, and how
//! it is loaded from the device and brought forward through the journal.

use super::tail::{CatchLog, TailSector};
use crate::alloc::Allocator;
use crate::device::Device;
use crate::error::{CoreError, Result};
use crate::lease::Slots;
use crate::meta::{DeviceLog, MetaImage, Replayed};
use crate::share::Share;
use parking_lot::Mutex;
use pfs_format::LeaderRecord;
use pfs_journal::{Journal, LogStore};
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Metadata as of some committed transaction.
pub(crate) struct State {
    pub(crate) meta: MetaImage,
    /// The journal as of this state: its leader record (whose head was
    /// replayed), the sectors changed since the last checkpoint.
    pub(crate) journal: Journal,
    /// Device address of the leader record.
    pub(crate) leader_bda: u64,
    /// Journal blocks in file order.
    pub(crate) journal_blocks: Vec<u64>,
    /// Free-object index (read-write mounts).
    pub(crate) alloc: Option<Allocator>,
    /// Changes whenever the metadata may have changed (see [`next_gen`]):
    /// what was worked out from it under an older value is stale.
    pub(crate) gen: u64,
}

/// A number no state of this process had before.
pub(super) fn next_gen() -> u64 {
    static GEN: AtomicU64 = AtomicU64::new(1);
    GEN.fetch_add(1, Ordering::Relaxed)
}

impl State {
    /// The leader record this state corresponds to.
    pub(crate) fn leader(&self) -> &LeaderRecord {
        self.journal.leader()
    }

    /// Where the writer-lease slots are.
    pub(crate) fn slots(&self) -> Slots {
        Slots::of(self.leader(), self.leader_bda)
    }
}

/// Reads the leader record. A sector read while another process writes
/// it may come back torn (files are not written atomically per sector), so
/// a record whose checksum fails is read again a few times before that
/// counts as damage.
pub(super) fn read_leader(dev: &dyn Device, bda: u64) -> Result<LeaderRecord> {
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
        journal: Journal::new(r.journal.leader, r.dirty),
        leader_bda: r.journal.leader_bda,
        journal_blocks: r.journal.blocks,
        alloc: None,
        gen: next_gen(),
    })
}

/// [`load_state`] for a shared mount: when the host's other processes
/// checkpoint during every attempt, the load is made once more holding the
/// transaction lock of the host that writes on this machine (or of
/// `hostid`), so none can.
pub(super) fn load_state_shared(
    dev: &dyn Device,
    share: Option<&Share>,
    hostid: u64,
) -> Result<State> {
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
/// were read (`reread` gives the journal's leader record as it is after
/// the read): `st` is unchanged and must be loaded again. With `tail`, the
/// sector of `new`'s head is kept there when the entries' read reached it
/// (for the append that follows; see [`super::tail`]).
pub(super) fn advance(
    dev: &dyn Device,
    st: &mut State,
    new: LeaderRecord,
    reread: impl FnOnce() -> Result<LeaderRecord>,
    tail: Option<&Mutex<TailSector>>,
    window: Option<(&Share, u64)>,
    before_device: Option<&dyn Fn() -> Result<()>>,
) -> Result<bool> {
    let (bda, nchunk) = (st.leader_bda, st.meta.nchunk);
    let log = DeviceLog {
        dev,
        blocks: &st.journal_blocks,
        leader_bda: bda,
    };
    let followed = match tail {
        None => st.journal.follow(&log, new, nchunk, reread)?,
        Some(kept) => {
            let catch = CatchLog {
                log,
                head: new.head_offset.get(),
                caught: RefCell::new(None),
                window,
                before_device,
            };
            let followed = st.journal.follow(&catch, new, nchunk, reread)?;
            if followed.is_some() {
                if let Some(t) = catch.tail(new.head_txid.get()) {
                    *kept.lock() = t;
                }
            }
            followed
        }
    };
    let Some(entries) = followed else {
        return Ok(false);
    };
    st.gen = next_gen();
    st.meta.apply(&entries);
    if let Some(a) = st.alloc.as_mut() {
        // Another process of this host committed these.
        for c in &entries {
            a.observe(c.id, &c.entry.le_obj_val);
        }
    }
    Ok(true)
}

/// `st` brought up to the device's latest commit: advanced when the
/// journal allows, loaded again otherwise.
pub(super) fn resume(
    dev: &dyn Device,
    mut st: State,
    share: Option<&Share>,
    hostid: u64,
) -> Result<State> {
    let now = read_leader(dev, st.leader_bda)?;
    if now == *st.leader() {
        return Ok(st);
    }
    if now.head_txid.get() == st.leader().head_txid.get()
        && now.head_lsn.get() == st.leader().head_lsn.get()
    {
        // Only checkpointed: nothing to apply, and nothing left to write
        // back either.
        st.journal.checkpointed_elsewhere(now);
        st.journal.forget_dirty();
        return Ok(st);
    }
    let bda = st.leader_bda;
    if advance(
        dev,
        &mut st,
        now,
        || read_leader(dev, bda),
        None,
        None,
        None,
    )? {
        return Ok(st);
    }
    load_state_shared(dev, share, hostid)
}

/// The error for an inode that was removed by the writer while in use here.
pub(crate) fn gone(ino: u64) -> CoreError {
    CoreError::NotFound {
        path: format!("inode {ino} (removed by the writer)"),
    }
}

/// Where a leader record says the journal's head is.
pub(super) fn head(l: &LeaderRecord) -> (u64, u64, u64) {
    (l.head_txid.get(), l.head_offset.get(), l.head_lsn.get())
}
