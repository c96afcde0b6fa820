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
pub use store::{append, checkpoint, publish, with_head, write_entries, Guard, LogStore};
