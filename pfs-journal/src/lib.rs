//! The PFS journal: committed log entries in the circular `.pfs-journal`.
//!
//! The leader record says which part of the journal is committed: entries
//! from `tail_offset` up to `head_offset` (wrapping at `log_size`), carrying
//! transactions `(tail_txid, head_txid]`. This crate reads and checks that
//! range through a [`LogStore`], which the layer owning the device provides.

#![forbid(unsafe_code)]

pub mod error;
pub mod range;
pub mod replay;

pub use error::{JournalError, Result};
pub use range::LogRange;
pub use replay::{committed_entries, Committed, LogStore};
