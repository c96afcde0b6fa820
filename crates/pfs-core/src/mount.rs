//! Mounted filesystems: metadata in memory, kept in step with the journal.
//!
//! A read-only mount follows the writer: before each read-type operation it
//! re-reads the leader record and replays entries committed since its last
//! look. If the writer has checkpointed and reused journal space past what
//! this mount replayed, it reloads all metadata from the device instead of
//! failing (the reference exits the process there).

use crate::device::{AlignedBuf, Device};
use crate::error::Result;
use crate::meta::{Journal, MetaImage};
use parking_lot::RwLock;
use pfs_format::layout::{BLOCK_SIZE, PAXOS_FILE_INO, SECTOR_SIZE};
use pfs_format::LeaderRecord;
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
}

/// A mounted PFS.
pub struct Mount {
    dev: Arc<dyn Device>,
    mode: Mode,
    pub(crate) state: RwLock<State>,
}

fn read_leader(dev: &dyn Device, bda: u64) -> Result<LeaderRecord> {
    let mut sect = AlignedBuf::new(SECTOR_SIZE as usize);
    dev.read_at(sect.as_mut_slice(), bda)?;
    LeaderRecord::decode(sect.as_slice()).map_err(|e| e.on_device(dev.name()).at_offset(bda).into())
}

/// Loads everything from the device: metasets, leader, committed journal.
fn load_state(dev: &dyn Device) -> Result<State> {
    let mut meta = MetaImage::load(dev)?;
    let journal = Journal::locate(dev, &meta)?;
    let entries = journal.committed(meta.nchunk)?;
    let leader = journal.leader;
    let journal_blocks = journal.blocks.clone();
    meta.apply(&entries);
    let leader_bda = meta
        .file_blocks(PAXOS_FILE_INO)?
        .first()
        .copied()
        .unwrap_or(1)
        * BLOCK_SIZE;
    Ok(State {
        meta,
        leader,
        leader_bda,
        journal_blocks,
    })
}

impl Mount {
    /// Mounts `dev`: loads every chunk's metasets, finds the leader record
    /// and replays the committed journal.
    pub fn open(dev: Arc<dyn Device>, mode: Mode) -> Result<Mount> {
        let state = load_state(dev.as_ref())?;
        Ok(Mount {
            dev,
            mode,
            state: RwLock::new(state),
        })
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

    /// Catches up with the writer (read-only mounts; a no-op for the writer,
    /// whose memory is always current).
    pub fn refresh(&self) -> Result<()> {
        if self.mode == Mode::ReadWrite {
            return Ok(());
        }
        let (bda, old) = {
            let st = self.state.read();
            (st.leader_bda, st.leader)
        };
        let new = read_leader(self.dev.as_ref(), bda)?;
        if new.head_txid.get() == old.head_txid.get() && new.head_lsn.get() == old.head_lsn.get() {
            return Ok(());
        }
        if new.tail_txid.get() > old.head_txid.get() || new.log_size != old.log_size {
            // Trimmed past what we replayed: the entries we miss are gone
            // from the journal but in the metasets now.
            return self.reload();
        }
        let mut st = self.state.write();
        // Entries (our head, new head]: a range starting where we stopped.
        let mut since = new;
        since.tail_txid = old.head_txid;
        since.tail_offset = old.head_offset;
        let log = Journal {
            dev: self.dev.as_ref(),
            leader: since,
            blocks: st.journal_blocks.clone(),
        };
        let entries = match log.committed(st.meta.nchunk) {
            Ok(e) => e,
            Err(_) => {
                drop(st);
                return self.reload();
            }
        };
        // The writer may have reused the space while we read it.
        let check = read_leader(self.dev.as_ref(), bda)?;
        if check.tail_txid.get() > old.head_txid.get() {
            drop(st);
            return self.reload();
        }
        st.meta.apply(&entries);
        st.leader = new;
        Ok(())
    }

    /// Drops all in-memory metadata and loads it again from the device.
    pub fn reload(&self) -> Result<()> {
        let fresh = load_state(self.dev.as_ref())?;
        *self.state.write() = fresh;
        Ok(())
    }

    /// Runs `f` on the current metadata, after catching up with the writer.
    pub fn with_meta<R>(&self, f: impl FnOnce(&MetaImage) -> R) -> Result<R> {
        self.refresh()?;
        Ok(f(&self.state.read().meta))
    }
}
