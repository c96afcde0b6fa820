//! The commands.

use crate::exit::Failure;
use pfs_core::CoreError;
use pfs_core::PfsPath;
use pfs_core::{pbd, Device};
use pfs_core::{Mode, Mount, MountOptions};
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;

pub mod chunk;
pub mod copy;
pub mod cp;
pub mod docs;
pub mod files;
pub mod fscp;
pub mod fstrim;
pub mod inspect;
pub mod interrupt;
pub mod json;
pub mod mkfs;
pub mod modify;
pub mod tail;

/// Reads up to `buf.len()` bytes, stopping early only at end of input.
pub fn read_full(input: &mut dyn std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The C library's text for an errno, as the reference prints it.
pub fn strerror(errno: i32) -> String {
    let s = std::io::Error::from_raw_os_error(errno).to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// A failure of `cmd`: the reference's `<cmd> failed: <reason>` line on
/// stdout (scripts look for it) plus our detailed message.
pub fn failed(cmd: &str, out: &mut dyn Write, e: &CoreError) -> Failure {
    let _ = writeln!(out, "{cmd} failed: {}", strerror(e.errno()));
    Failure::from_core(cmd, e)
}

/// An argument for a message (bytes that are not UTF-8 shown as U+FFFD).
pub fn lossy(arg: &OsStr) -> String {
    arg.to_string_lossy().into_owned()
}

/// Names the path as the user gave it in an error about it.
pub fn shown(e: CoreError, arg: &OsStr) -> CoreError {
    let path = lossy(arg);
    match e {
        CoreError::NotFound { .. } => CoreError::NotFound { path },
        CoreError::NotDir { .. } => CoreError::NotDir { path },
        CoreError::IsDir { .. } => CoreError::IsDir { path },
        CoreError::Exists { .. } => CoreError::Exists { path },
        CoreError::NotEmpty { .. } => CoreError::NotEmpty { path },
        CoreError::SystemFile { op, .. } => CoreError::SystemFile { path, op },
        other => other,
    }
}

/// Parses a `/<pbd>/<path>` argument. A malformed path (no leading '/', no
/// PBD, longer than 4095 bytes) exits 22 as the reference's path without a
/// PBD does; a name over 255 bytes fails like any other bad name.
pub fn parse_path(cmd: &str, arg: &OsStr, out: &mut dyn Write) -> Result<PfsPath, Failure> {
    let bytes = arg.as_bytes();
    if !bytes.starts_with(b"/") {
        return Err(Failure::new(
            crate::exit::INVALID_ARGUMENT,
            format!(
                "{cmd}: {}: not a PFS path; use /<pbd>/<path>, e.g. /nvme1n1/dir/file",
                lossy(arg)
            ),
        ));
    }
    match PfsPath::parse(bytes) {
        Ok(p) => Ok(p),
        Err(e @ CoreError::NameTooLong { .. })
            if bytes.len() <= pfs_format::layout::MAX_PATH_LEN =>
        {
            Err(failed(cmd, out, &e))
        }
        Err(e) => Err(Failure::new(
            crate::exit::INVALID_ARGUMENT,
            format!("{cmd}: {e}"),
        )),
    }
}

/// A mount point that does not exist is named as such (the FUSE side
/// would call it "not a directory").
pub fn check_mount_point(mp: &std::path::Path) -> Result<(), Failure> {
    if std::fs::symlink_metadata(mp).is_err() {
        let shown = mp.display();
        return Err(Failure::new(
            crate::exit::FAILURE,
            format!(
                "mount: mount point {shown} does not exist; create it first (mkdir -p {shown})"
            ),
        )
        .with_errno(libc::ENOENT));
    }
    Ok(())
}

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
    pub fn open(
        &self,
        command: &str,
        name: &str,
        writable: bool,
    ) -> Result<Box<dyn Device>, Failure> {
        pbd::open_pbd(name, self.device_dir.as_deref(), writable)
            .map_err(|e| Failure::from_core(command, &e))
    }

    /// Takes the reference's host-local lock of `hostid` for PBD `name`
    /// (0: the whole file).
    pub fn host_lock(
        &self,
        command: &str,
        name: &str,
        hostid: u64,
    ) -> Result<pfs_core::HostLock, Failure> {
        let dir = self.device_dir.as_deref();
        let device = pbd::device_path(name, dir).ok();
        pfs_core::HostLock::acquire(&pbd::lock_path(name, dir), hostid, device.as_deref())
            .map_err(|e| Failure::from_core(command, &e))
    }

    /// Mounts PBD `name` read-only or read-write with the global options.
    pub fn mount(&self, command: &str, name: &str, mode: Mode) -> Result<Arc<Mount>, Failure> {
        self.mount_as(command, name, mode, self.hostid)
    }

    /// Mounts PBD `name` with an explicit host id.
    pub fn mount_as(
        &self,
        command: &str,
        name: &str,
        mode: Mode,
        hostid: u64,
    ) -> Result<Arc<Mount>, Failure> {
        let dev = self.open(command, name, mode == Mode::ReadWrite)?;
        let opts = MountOptions {
            hostid,
            force: self.force,
            ..MountOptions::for_pbd(name, self.device_dir.as_deref(), mode)
        };
        Mount::open_with(Arc::from(dev), mode, &opts)
            .map(Arc::new)
            .map_err(|e| Failure::from_core(command, &e))
    }
}
