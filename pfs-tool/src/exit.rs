//! One mapping from errors to exit codes and messages, shared by every
//! command. One code per kind of error, the reference's where it has a
//! meaningful one:
//!
//! | kind | exit |
//! |---|---|
//! | usage: an unknown option, a missing or malformed argument | 1 (`chunk`, `fscp`, `fstrim` and `tail` print and exit as the reference does, 255 or 22: see `usage.rs`) |
//! | an argument that is not a PFS path (`/<pbd>/<path>`) or not a bare PBD name | 22 |
//! | a directory where the command needs a file (`cp`, `rm` without `-r`; `read`, `write`, `truncate` of a directory) | 235 |
//! | a device that holds no PFS, corrupt metadata, a writer that had to stop | 5 |
//! | a formatted device for `mkfs`, a device another writer holds | 16 |
//! | other `mkfs`/`growfs` failures, `chunk`'s and `fstrim`'s own | `256 - errno` (234 for EINVAL) |
//! | anything else (no such file, exists, not empty, no space, ...) | 255 |

use pfs_core::CoreError;
use pfs_format::{CorruptKind, FormatError};
use std::io::{self, Write};

/// Usage error.
pub const USAGE: u8 = 1;
/// Anything without a more specific code.
pub const FAILURE: u8 = 255;
/// An argument that is not a PFS path or a PBD name (`ls pbd`, `ls /pbd`,
/// `fsck /pbd/`): the reference's `exit(EINVAL)` for a path without a PBD.
pub const INVALID_ARGUMENT: u8 = 22;
/// A directory where the command needs a file (`cp` or `rm` without `-r`,
/// `read`/`write`/`truncate` of a directory): the reference's `-EISDIR`
/// from `cp`.
pub const IS_DIR: u8 = 235;

/// A command's failure: what to print and how to exit.
#[derive(Debug)]
pub struct Failure {
    /// Exit code.
    pub code: u8,
    /// Message for stderr (without the `pfs: ` prefix).
    pub message: String,
    /// The errno behind it, for `--json` failures (see [`Failure::errno_of`]).
    pub errno: i32,
}

impl Failure {
    /// A failure with an explicit code.
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
            errno: Failure::errno_of(code),
        }
    }

    /// The same failure with the errno that caused it.
    pub fn with_errno(mut self, errno: i32) -> Failure {
        self.errno = errno;
        self
    }

    /// The errno an exit code stands for when nothing more precise is
    /// known: EINVAL for usage errors and 22, EIO for 5, EBUSY for 16,
    /// `256 - code` for the reference's `-errno` codes (234, 235, 247,
    /// 251), and EIO for a bare 255.
    pub fn errno_of(code: u8) -> i32 {
        match code {
            USAGE => libc::EINVAL,
            c @ (5 | 16 | 22) => i32::from(c),
            c @ 129..=254 => 256 - i32::from(c),
            _ => libc::EIO,
        }
    }

    /// Maps a core error met by `command`.
    pub fn from_core(command: &str, e: &CoreError) -> Failure {
        let code = match e {
            CoreError::BadPbdName { .. } | CoreError::BadPath { .. } => INVALID_ARGUMENT,
            CoreError::IsDir { .. } => IS_DIR,
            CoreError::AlreadyFormatted { .. } | CoreError::Busy { .. } => 16,
            CoreError::NotFormatted { .. }
            | CoreError::Format(_)
            | CoreError::Journal(_)
            | CoreError::Corrupt { .. }
            | CoreError::Fenced { .. }
            | CoreError::LeaseLapsed => 5,
            _ if command == "mkfs" || command == "growfs" => (256 - e.errno().clamp(1, 255)) as u8,
            _ => FAILURE,
        };
        let message = match e {
            CoreError::BadPbdName { name, .. } if name.contains('/') => {
                let bare = name.split('/').find(|c| !c.is_empty()).unwrap_or("nvme1n1");
                format!("{name:?} is a path; give the PBD name alone, as in 'pfs {command} {bare}'")
            }
            CoreError::NotFormatted { device, reason } => {
                let blank = matches!(
                    reason,
                    FormatError::Corrupt {
                        kind: CorruptKind::ChunkMagic,
                        found: 0,
                        ..
                    }
                );
                if blank {
                    format!(
                        "{device} is not formatted (its first chunk header is blank): \
                         run 'pfs mkfs {device}' to make a filesystem on it"
                    )
                } else {
                    format!(
                        "{device} is not formatted: it holds no PFS ({reason}); if it is \
                         meant to be a new one, run 'pfs mkfs {device}' (which erases it)"
                    )
                }
            }
            e => e.to_string(),
        };
        Failure::new(code, format!("{command}: {message}")).with_errno(e.errno())
    }

    /// A write to stdout failed: a closed pipe is a quiet, successful stop.
    pub fn from_output(e: io::Error) -> Failure {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Failure::new(0, String::new())
        } else {
            Failure::new(FAILURE, format!("cannot write output: {e}"))
                .with_errno(e.raw_os_error().unwrap_or(libc::EIO))
        }
    }

    /// Prints the message (if any) and returns the code.
    pub fn report(self, err: &mut dyn Write) -> u8 {
        if !self.message.is_empty() {
            let _ = writeln!(err, "pfs: {}", self.message);
        }
        self.code
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::from_output(e)
    }
}

/// Result of a command.
pub type CmdResult = Result<(), Failure>;
