//! The error type of `pfs-sdk`: what a C call reports through `errno`.

use pfs_core::CoreError;

/// Why an SDK call failed; [`SdkError::errno`] is what the caller sees.
#[derive(Debug, thiserror::Error)]
pub enum SdkError {
    /// The filesystem refused or failed the operation.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The SDK itself refused the call (bad argument, descriptor, device).
    #[error("{what} (errno {errno})")]
    Refused {
        /// The errno value to report.
        errno: i32,
        /// What was wrong, for messages.
        what: &'static str,
    },
}

impl SdkError {
    /// The errno value the reference SDK reports for this error.
    pub fn errno(&self) -> i32 {
        match self {
            SdkError::Core(e) => e.errno(),
            SdkError::Refused { errno, .. } => *errno,
        }
    }
}

/// Shorthand for a refusal with `errno`.
pub(crate) fn refuse<T>(errno: i32, what: &'static str) -> Result<T, SdkError> {
    Err(SdkError::Refused { errno, what })
}

/// Result alias of this crate.
pub type Result<T, E = SdkError> = std::result::Result<T, E>;
