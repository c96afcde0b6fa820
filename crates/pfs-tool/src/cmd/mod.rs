//! The commands.

use crate::exit::Failure;
use pfs_core::{pbd, FileDevice};
use std::path::PathBuf;

pub mod files;
pub mod inspect;
pub mod mkfs;
pub mod modify;

/// What every command gets from the global options.
#[derive(Debug, Clone)]
pub struct Context {
    /// Device directory, if devices are files.
    pub device_dir: Option<PathBuf>,
}

impl Context {
    /// Opens PBD `name`.
    pub fn open(&self, command: &str, name: &str, writable: bool) -> Result<FileDevice, Failure> {
        pbd::open_pbd(name, self.device_dir.as_deref(), writable)
            .map_err(|e| Failure::from_core(command, &e))
    }
}
