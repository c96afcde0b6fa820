//! The reference's host-local writer lock: an fcntl write lock on
//! `/var/run/pfs/<pbd>-paxos-hostid`, bytes `[hostid * 1024, +1024)`, held
//! while mounted read-write. Taking it makes our tool and the reference tool
//! exclude each other on one machine.

use crate::error::{CoreError, Result};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Opens, creating it and its directory when needed, a file that every
/// user of a device on this machine shares (the reference's lock file, our
/// share file): read-write for all, whatever the umask.
pub(crate) fn open_machine_file(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o666)
        .open(path)?;
    // Best effort: another user's file keeps its owner's mode.
    let _ = std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o666));
    Ok(file)
}

/// An `fcntl` byte-range lock request of `kind` over `[start, start + len)`
/// (`len` 0: to the end of the file and beyond).
pub(crate) fn flock(kind: i32, start: i64, len: i64) -> libc::flock {
    libc::flock {
        l_type: kind as i16,
        l_whence: libc::SEEK_SET as i16,
        l_start: start,
        l_len: len,
        l_pid: 0,
    }
}

/// Bytes of the lock file per host id (`FLK_LEN`).
const SLOT: i64 = 1024;

/// A held lock; released when dropped (the file is closed).
#[derive(Debug)]
pub struct HostLock {
    _file: File,
    path: PathBuf,
    hostid: u64,
}

impl HostLock {
    /// Takes the lock of `hostid` in `path` without waiting; host id 0
    /// locks the whole file, as the reference's mkfs does.
    pub fn acquire(path: &Path, hostid: u64) -> Result<HostLock> {
        let file = open_machine_file(path)
            .map_err(|e| CoreError::io(&path.display().to_string(), "open lock file", 0, e))?;
        let (start, len) = if hostid == 0 {
            (0, 0)
        } else {
            (hostid as i64 * SLOT, SLOT)
        };
        let lock = flock(libc::F_WRLCK, start, len);
        nix::fcntl::fcntl(file.as_raw_fd(), nix::fcntl::FcntlArg::F_SETLK(&lock)).map_err(|_| {
            CoreError::Busy {
                what: format!(
                    "host id {hostid} is already mounted read-write by another process on this machine (lock {} bytes [{start}, {}))",
                    path.display(),
                    start + len
                ),
            }
        })?;
        Ok(HostLock {
            _file: file,
            path: path.to_owned(),
            hostid,
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The host id locked.
    pub fn hostid(&self) -> u64 {
        self.hostid
    }
}
