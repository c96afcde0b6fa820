//! The system files, `.pfs-paxos` and `.pfs-journal`: every front end
//! may read them, none may change them.

use crate::error::{CoreError, Result};
use pfs_format::layout::{JOURNAL_FILE_INO, PAXOS_FILE_INO};

/// Whether `ino` is `.pfs-paxos` or `.pfs-journal`.
pub fn is_system(ino: u64) -> bool {
    ino == PAXOS_FILE_INO || ino == JOURNAL_FILE_INO
}

/// Refuses `op` on a system file.
pub(crate) fn refuse_system(
    ino: u64,
    op: &'static str,
    shown: impl FnOnce() -> String,
) -> Result<()> {
    if is_system(ino) {
        return Err(CoreError::SystemFile { path: shown(), op });
    }
    Ok(())
}
