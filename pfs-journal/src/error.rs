//! The error type of `pfs-journal`.

use pfs_format::FormatError;

/// Result alias of this crate.
pub type Result<T, E = JournalError> = std::result::Result<T, E>;

/// What can go wrong reading or replaying the journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The store failed to read or write journal bytes.
    #[error("journal IO at offset {offset:#x} failed: {source}")]
    Io {
        /// Journal offset of the request.
        offset: u64,
        /// The store's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An entry inside the committed range does not decode.
    #[error("corrupt journal entry at offset {offset:#x} (committed txids {tail_txid}..={head_txid}): {source}")]
    Corrupt {
        /// Journal offset of the entry.
        offset: u64,
        /// Oldest committed txid not yet checkpointed, plus one.
        tail_txid: u64,
        /// Newest committed txid.
        head_txid: u64,
        /// What is wrong with it.
        source: Box<FormatError>,
    },
    /// Entries decode but do not form the committed sequence the leader
    /// describes (lsn gap, txid out of order, transaction cut short).
    #[error("journal sequence broken at offset {offset:#x}: {what}")]
    Sequence {
        /// Journal offset of the offending entry.
        offset: u64,
        /// What was expected.
        what: String,
    },
    /// A transaction larger than the whole journal.
    #[error("transaction needs {need} bytes of journal, the journal holds {log_size}")]
    TxTooLarge {
        /// Bytes of log entries needed.
        need: u64,
        /// Journal size.
        log_size: u64,
    },
    /// The journal has no room for the transaction until it is checkpointed.
    #[error("journal full: transaction needs {need} bytes, {free} are free until a checkpoint")]
    Full {
        /// Bytes of log entries needed.
        need: u64,
        /// Bytes free.
        free: u64,
    },
}
