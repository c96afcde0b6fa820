//! The error type of `pfs-core`, and its mapping to errno values.

use pfs_format::FormatError;
use std::io;

/// Result alias of this crate.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;

/// Everything that can go wrong below the tool.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// A device read, write, flush or control call failed.
    #[error("{op} on device {device} at offset {offset:#x} failed: {source}")]
    Io {
        /// PBD name or path.
        device: String,
        /// What was being done (`read`, `write`, `flush`, `zero range` ...).
        op: &'static str,
        /// Byte offset of the request.
        offset: u64,
        /// The system's error.
        source: io::Error,
    },
    /// The device could not be opened.
    #[error("cannot open device {device} ({path}): {source}")]
    Open {
        /// PBD name.
        device: String,
        /// Path tried.
        path: String,
        /// The system's error.
        source: io::Error,
    },
    /// A PBD name that cannot name a device.
    #[error("invalid PBD name {name:?}: {reason}")]
    BadPbdName {
        /// The name given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// On-disk bytes are corrupt or of an unknown format.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The device holds no PFS (chunk 0 has no valid header).
    #[error("device {device} is not formatted with PFS: {reason}")]
    NotFormatted {
        /// PBD name.
        device: String,
        /// What was found instead.
        reason: FormatError,
    },
    /// mkfs/growfs refused to overwrite a formatted chunk without `-f`.
    #[error(
        "device {device} chunk {chunk} is already formatted with PFS; use -f to format it again"
    )]
    AlreadyFormatted {
        /// PBD name.
        device: String,
        /// The chunk found formatted.
        chunk: u64,
    },
    /// The device cannot hold even one chunk.
    #[error("device {device} is {size} bytes; PFS needs at least one 10 GiB chunk ({need} bytes)")]
    DeviceTooSmall {
        /// PBD name.
        device: String,
        /// Size found.
        size: u64,
        /// Size needed.
        need: u64,
    },
    /// Metadata that validates object by object but is impossible as a
    /// whole: a chain or directory tree that loops or runs longer than the
    /// device's objects, a name no operation can make, an unknown inode
    /// type, a size beyond what PFS can address.
    #[error("corrupt metadata on device {device}: {object} {number}: {problem}")]
    Corrupt {
        /// PBD name.
        device: String,
        /// Type of the object the problem is found at.
        object: pfs_format::MetaType,
        /// Its number (`mo_number`).
        number: u64,
        /// What is wrong.
        problem: String,
    },
    /// The journal's committed range is damaged.
    #[error(transparent)]
    Journal(#[from] pfs_journal::JournalError),
    /// No file or directory of that name.
    #[error("{path}: no such file or directory")]
    NotFound {
        /// The path or name looked up.
        path: String,
    },
    /// A path component that must be a directory is not one.
    #[error("{path}: not a directory")]
    NotDir {
        /// The path.
        path: String,
    },
    /// A directory where a file is needed.
    #[error("{path}: is a directory")]
    IsDir {
        /// The path.
        path: String,
    },
    /// The name already exists.
    #[error("{path}: file exists")]
    Exists {
        /// The path.
        path: String,
    },
    /// A directory that still has entries.
    #[error("{path}: directory not empty")]
    NotEmpty {
        /// The path.
        path: String,
    },
    /// A name or path longer than PFS allows.
    #[error("{path}: file name too long")]
    NameTooLong {
        /// The path.
        path: String,
    },
    /// A path that names no PFS file (no PBD, relative, empty component).
    #[error("{path}: invalid path: {reason}")]
    BadPath {
        /// The path.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No free object of some type is left.
    #[error("no space left: every chunk is out of free {what} objects")]
    NoSpace {
        /// The object type that ran out.
        what: &'static str,
    },
    /// Another writer holds the device.
    #[error("device busy: {what}")]
    Busy {
        /// Who holds it.
        what: String,
    },
    /// The requested host id is not allowed by the filesystem.
    #[error(transparent)]
    Host(#[from] pfs_paxos::PaxosError),
    /// A transaction larger than the whole journal.
    #[error("transaction needs {need} bytes of journal, the journal holds {log_size}")]
    TxTooLarge {
        /// Bytes of log entries needed.
        need: u64,
        /// Journal size.
        log_size: u64,
    },
    /// The mount stopped writing: a write failed, or another writer appeared.
    #[error("writes are stopped on this mount: {reason}; remount to continue")]
    Fenced {
        /// Why.
        reason: String,
    },
    /// A handle used for something it was not opened for.
    #[error("bad file handle: {what}")]
    BadHandle {
        /// What was wrong.
        what: &'static str,
    },
    /// A write through a read-only mount.
    #[error("the filesystem is mounted read-only")]
    ReadOnly,
    /// An argument out of range or inconsistent with the device.
    #[error("{0}")]
    InvalidArgument(String),
}

impl CoreError {
    /// The errno value the reference would report for this error.
    pub fn errno(&self) -> i32 {
        match self {
            CoreError::Io { source, .. } | CoreError::Open { source, .. } => {
                source.raw_os_error().unwrap_or(libc_eio())
            }
            CoreError::BadPbdName { .. } | CoreError::InvalidArgument(_) => 22,
            CoreError::DeviceTooSmall { .. } => 22,
            CoreError::Format(_)
            | CoreError::NotFormatted { .. }
            | CoreError::Journal(_)
            | CoreError::Corrupt { .. } => libc_eio(),
            CoreError::AlreadyFormatted { .. } => 16,
            CoreError::NotFound { .. } => 2,
            CoreError::ReadOnly => 30,
            CoreError::BadHandle { .. } => 9,
            CoreError::NoSpace { .. } | CoreError::TxTooLarge { .. } => 28,
            CoreError::Fenced { .. } => 5,
            CoreError::Busy { .. } => 16,
            CoreError::Host(_) => 22,
            CoreError::NotDir { .. } => 20,
            CoreError::Exists { .. } => 17,
            CoreError::NotEmpty { .. } => 39,
            CoreError::IsDir { .. } => 21,
            CoreError::NameTooLong { .. } => 36,
            CoreError::BadPath { .. } => 22,
        }
    }

    /// Builds an IO error with its context.
    pub fn io(device: &str, op: &'static str, offset: u64, source: io::Error) -> CoreError {
        CoreError::Io {
            device: device.to_owned(),
            op,
            offset,
            source,
        }
    }
}

const fn libc_eio() -> i32 {
    5
}
