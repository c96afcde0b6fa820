//! The PFS journal: committed log entries in the circular `.pfs-journal`.
//!
//! The leader record says which part of the journal is committed: entries
//! from `tail_offset` up to `head_offset` (wrapping at `log_size`), carrying
//! transactions `(tail_txid, head_txid]`. This crate owns everything about
//! that circle: encoding a transaction's entries and the leader record that
//! commits it ([`Append`]), the write and flush order of a commit
//! ([`append`]) and of a checkpoint ([`checkpoint`]), reading and checking
//! what is committed ([`committed_entries`], and [`span_entries`] for a
//! reader catching up from an older head, see [`Span::since`]). All IO goes
//! through a [`LogStore`], which the layer owning the device implements;
//! [`MemLog`] is an in-memory one for tests.
//!
//! # Example
//!
//! Commit a transaction to an in-memory journal, read it back, and see
//! what a crash keeps:
//!
//! ```
//! use pfs_format::{LeaderRecord, MetaObjPhy, MetaType, ObjectId};
//! use pfs_journal::{append, committed_entries, used, JournalError, LogStore, MemLog};
//!
//! /// The writer's check before each commit write; a real one checks its lease.
//! fn allow(_: &LeaderRecord) -> Result<(), JournalError> {
//!     Ok(())
//! }
//!
//! let log = MemLog::new(64 << 10);
//! let lr = log.read_leader()?;
//! let id = ObjectId::new(MetaType::Inode, 0, 3)?;
//! let tx = [(id, MetaObjPhy::new_free(id))];
//!
//! let lr = append(&log, &lr, &tx, &allow)?;
//! assert_eq!(lr.head_txid.get(), 1);
//! assert_eq!(used(&lr), 256); // one log entry
//! let entries = committed_entries(&log, &lr, 1)?;
//! assert_eq!(entries.len(), 1);
//! assert_eq!(entries[0].id, id);
//! assert_eq!(log.crashed().read_leader()?, lr); // committed means durable
//!
//! // A commit whose writes fail leaves the journal as it was.
//! log.fail_writes_after(0);
//! assert!(append(&log, &lr, &tx, &allow).is_err());
//! assert_eq!(log.read_leader()?, lr);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

mod append;
mod error;
mod journal;
mod mem;
mod range;
mod replay;
mod span;
mod store;
#[cfg(test)]
mod testutil;

pub use append::{checkpoint_due, checkpointed, used, Append, CHECKPOINT_NSECT, CHECKPOINT_NTX};
pub use error::{JournalError, Result};
pub use journal::{Journal, WriteHome};
pub use mem::MemLog;
pub use range::LogRange;
pub use replay::{committed_entries, span_entries, Committed};
pub use span::Span;
pub use store::{
    append, checkpoint, publish, publish_flushed, with_head, write_entries, Guard, LogStore,
};
