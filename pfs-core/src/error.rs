//! The error type of `pfs-core`, and its mapping to errno values.

use pfs_format::FormatError;
use std::io;

/// Result alias of this crate.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;

/// Everything that can go wrong below the tool.
///
/// Front ends map it to an errno with [`CoreError::errno`] (or convert it
/// into a [`std::io::Error`] carrying that errno).
///
/// # Example
///
/// What a front end does with an error (`m` is a read-write `Arc<Mount>` of a new filesystem):
///
/// ```
/// # struct Scratch(std::path::PathBuf);
/// # impl Drop for Scratch {
/// #     fn drop(&mut self) {
/// #         let _ = std::fs::remove_dir_all(&self.0);
/// #     }
/// # }
/// # let scratch = Scratch(std::env::temp_dir().join(format!("pfs-doc-error-{}", std::process::id())));
/// # std::fs::create_dir_all(&scratch.0)?;
/// # let dir = scratch.0.clone();
/// # let img = scratch.0.join("disk");
/// # std::fs::File::create(&img)?.set_len(10 << 30)?;
/// # let dev = std::sync::Arc::new(pfs_core::FileDevice::open("disk", &img, true)?);
/// # pfs_core::mkfs(dev.as_ref(), &pfs_core::MkfsOptions::default())?;
/// # let opts = pfs_core::MountOptions { hostid: 1, ..pfs_core::MountOptions::default() };
/// # let m = std::sync::Arc::new(pfs_core::Mount::open_with(dev, pfs_core::Mode::ReadWrite, &opts)?);
/// use pfs_core::CoreError;
/// use std::io;
///
/// let err = m.stat_path("/no/such/file").unwrap_err();
/// assert!(matches!(err, CoreError::NotFound { .. }));
/// assert_eq!(err.errno(), libc::ENOENT); // what a C caller gets in errno
/// assert!(err.to_string().contains("/no/such/file"));
///
/// // Into std::io::Error, for code that speaks std::io.
/// let io_err = io::Error::from(err);
/// assert_eq!(io_err.kind(), io::ErrorKind::NotFound);
/// assert_eq!(io_err.raw_os_error(), None);
/// let inner = io_err.get_ref().and_then(|e| e.downcast_ref::<CoreError>());
/// assert_eq!(inner.map(CoreError::errno), Some(libc::ENOENT));
///
/// m.mkdir_path("/d")?;
/// m.create_path("/d/f", pfs_core::FileType::File)?;
/// assert_eq!(m.rmdir_path("/d").unwrap_err().errno(), libc::ENOTEMPTY);
/// assert_eq!(m.unlink_path("/d").unwrap_err().errno(), libc::EISDIR);
/// assert_eq!(m.mkdir_path("/d").unwrap_err().errno(), libc::EEXIST);
/// assert_eq!(m.unlink_path("/.pfs-journal").unwrap_err().errno(), libc::EPERM);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// The mount stopped writing: a write failed, or another writer appeared.
    #[error("writes are stopped on this mount: {reason}; remount to continue")]
    Fenced {
        /// Why.
        reason: String,
    },
    /// The writer lease ran out on this machine's clock (the process or
    /// the device stalled) before a write could start. The core answers it
    /// itself, by proving the mount is still the writer and trying again;
    /// a caller sees it only from a device write made outside the core's
    /// write paths.
    #[error("the writer lease ran out before the write could start; it must be proved again")]
    LeaseLapsed,
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
    /// A name no directory entry may have: empty, `.`, `..`, or holding
    /// `/` or NUL (EINVAL).
    #[error("{name:?}: invalid file name: {reason}")]
    InvalidName {
        /// The name, with bytes that are not UTF-8 replaced.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A change to `.pfs-paxos` or `.pfs-journal`, which hold the leader
    /// record and the journal (EPERM).
    #[error("{path}: is a PFS system file; {op} is not allowed")]
    SystemFile {
        /// The path or inode.
        path: String,
        /// What was refused (`write`, `truncate`, `rename` ...).
        op: &'static str,
    },
    /// An offset or size past the largest a PFS file can have (EFBIG).
    #[error("{what}: {value} is past the largest file size PFS allows ({max} bytes)")]
    FileTooBig {
        /// What was asked (`write`, `truncate` ...).
        what: &'static str,
        /// The offending end offset or size.
        value: u128,
        /// The limit, [`crate::MAX_FILE_SIZE`].
        max: u64,
    },
    /// A position that `off_t` cannot hold, such as a seek past
    /// [`crate::MAX_FILE_SIZE`] from the current position or the end
    /// (EOVERFLOW).
    #[error("{what}: the resulting offset is past the largest an off_t holds")]
    Overflow {
        /// What was asked (`seek` ...).
        what: &'static str,
    },
    /// A mode or flag of a POSIX call that PFS does not implement, such as
    /// `FALLOC_FL_PUNCH_HOLE` (EOPNOTSUPP).
    #[error("{0} is not supported")]
    Unsupported(String),
}

impl CoreError {
    /// The errno value the reference would report for this error.
    pub fn errno(&self) -> i32 {
        match self {
            CoreError::Io { source, .. } | CoreError::Open { source, .. } => {
                source.raw_os_error().unwrap_or(libc::EIO)
            }
            CoreError::BadPbdName { .. }
            | CoreError::InvalidArgument(_)
            | CoreError::InvalidName { .. }
            | CoreError::DeviceTooSmall { .. }
            | CoreError::Host(_)
            | CoreError::BadPath { .. } => libc::EINVAL,
            CoreError::Journal(
                pfs_journal::JournalError::TxTooLarge { .. }
                | pfs_journal::JournalError::Full { .. },
            ) => libc::ENOSPC,
            CoreError::Format(_)
            | CoreError::NotFormatted { .. }
            | CoreError::Journal(_)
            | CoreError::Corrupt { .. }
            | CoreError::Fenced { .. }
            | CoreError::LeaseLapsed => libc::EIO,
            CoreError::AlreadyFormatted { .. } | CoreError::Busy { .. } => libc::EBUSY,
            CoreError::NotFound { .. } => libc::ENOENT,
            CoreError::ReadOnly => libc::EROFS,
            CoreError::BadHandle { .. } => libc::EBADF,
            CoreError::NoSpace { .. } => libc::ENOSPC,
            CoreError::NotDir { .. } => libc::ENOTDIR,
            CoreError::Exists { .. } => libc::EEXIST,
            CoreError::NotEmpty { .. } => libc::ENOTEMPTY,
            CoreError::IsDir { .. } => libc::EISDIR,
            CoreError::NameTooLong { .. } => libc::ENAMETOOLONG,
            CoreError::SystemFile { .. } => libc::EPERM,
            CoreError::FileTooBig { .. } => libc::EFBIG,
            CoreError::Overflow { .. } => libc::EOVERFLOW,
            CoreError::Unsupported(_) => libc::EOPNOTSUPP,
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

impl From<CoreError> for io::Error {
    /// An IO error of the kind [`CoreError::errno`] maps to, wrapping the
    /// core error (`get_ref()` and downcast give it back, and its errno);
    /// a device's own OS error is passed through as it is.
    fn from(e: CoreError) -> io::Error {
        match e {
            CoreError::Io { source, .. } | CoreError::Open { source, .. }
                if source.raw_os_error().is_some() =>
            {
                source
            }
            other => {
                let code = io::Error::from_raw_os_error(other.errno());
                io::Error::new(code.kind(), other)
            }
        }
    }
}
