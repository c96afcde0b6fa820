//! One mapping from errors to exit codes and messages, shared by every
//! command.
//!
//! Codes follow the reference where it has a meaningful one: 1 for usage
//! errors (`chunk`, `fscp`, `fstrim` and `tail` report theirs as the
//! reference does, see `usage.rs`), 16 (EBUSY) for formatting a formatted
//! device or a device another writer holds, 5 (EIO) for a device that holds
//! no PFS, corrupt metadata or a writer that had to stop, `256 - errno` for other mkfs/growfs failures
//! (234 for EINVAL), 255 otherwise.

use pfs_core::CoreError;
use std::io::{self, Write};

/// Usage error.
pub const USAGE: u8 = 1;
/// Anything without a more specific code.
pub const FAILURE: u8 = 255;

/// A command's failure: what to print and how to exit.
#[derive(Debug)]
pub struct Failure {
    /// Exit code.
    pub code: u8,
    /// Message for stderr (without the `pfs: ` prefix).
    pub message: String,
}

impl Failure {
    /// A failure with an explicit code.
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// Maps a core error met by `command`.
    pub fn from_core(command: &str, e: &CoreError) -> Failure {
        let code = match e {
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
        Failure::new(code, format!("{command}: {e}"))
    }

    /// A write to stdout failed: a closed pipe is a quiet, successful stop.
    pub fn from_output(e: io::Error) -> Failure {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Failure::new(0, String::new())
        } else {
            Failure::new(FAILURE, format!("cannot write output: {e}"))
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
