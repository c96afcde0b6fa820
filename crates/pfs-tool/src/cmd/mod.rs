//! The commands.

use crate::exit::Failure;
use pfs_core::mount::{Mode, Mount, MountOptions};
use pfs_core::{pbd, FileDevice};
use std::path::PathBuf;
use std::sync::Arc;

pub mod files;
pub mod inspect;
pub mod mkfs;
pub mod modify;

/// What every command gets from the global options.
#[derive(Debug, Clone)]
pub struct Context {
    /// Device directory, if devices are files.
    pub device_dir: Option<PathBuf>,
    /// Host id (`-H`; 0 = the filesystem's `num_hosts`).
    pub hostid: u64,
    /// Take over an expired writer lease (`--force`).
    pub force: bool,
}

impl Context {
    /// Opens PBD `name`.
    pub fn open(&self, command: &str, name: &str, writable: bool) -> Result<FileDevice, Failure> {
        pbd::open_pbd(name, self.device_dir.as_deref(), writable)
            .map_err(|e| Failure::from_core(command, &e))
    }

    /// Mounts PBD `name` read-only or read-write with the global options.
    pub fn mount(&self, command: &str, name: &str, mode: Mode) -> Result<Mount, Failure> {
        let dev = self.open(command, name, mode == Mode::ReadWrite)?;
        let opts = MountOptions {
            hostid: self.hostid,
            force: self.force,
            lock_path: (mode == Mode::ReadWrite)
                .then(|| pbd::lock_path(name, self.device_dir.as_deref())),
            ..MountOptions::default()
        };
        Mount::open_with(Arc::new(dev), mode, &opts).map_err(|e| Failure::from_core(command, &e))
    }
}
