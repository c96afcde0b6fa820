//! The reference's host-local writer lock: an fcntl write lock on
//! `/var/run/pfs/<pbd>-paxos-hostid`, bytes `[hostid * 1024, +1024)`, held
//! while mounted read-write. Taking it makes our tool and the reference tool
//! exclude each other on one machine.

use crate::error::{CoreError, Result};
use std::fs::{File, Metadata, OpenOptions, Permissions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Opens, creating it and its directory when needed, a file that the
/// users of a device on this machine share (the reference's lock file, our
/// share and live-mark files).
///
/// Whoever holds an `fcntl` lock on such a file can stall every writer of
/// the device, so only the device's users may open it: it follows the
/// device file `device` (see [`machine_mode`]). Each open brings a file
/// this process may change (its own, or any as root) to that owner, group
/// and mode, so a file made by an older version (mode 0666) is closed
/// again; a directory this call creates gets the same owner and group, and
/// `x` where the file gets `rw`. Without a device file (a device in
/// memory) the file is this user's alone.
pub(crate) fn open_machine_file(path: &Path, device: Option<&Path>) -> std::io::Result<File> {
    let model = device.and_then(|d| std::fs::metadata(d).ok());
    make_parent(path, model.as_ref())?;
    // Nobody else may open it before it has its owner and group.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    // Best effort: another user's file keeps its owner's choices.
    match &model {
        Some(dev) => {
            // Root gives it the device's owner and group; another user its
            // group, if a member.
            if std::os::unix::fs::fchown(&file, Some(dev.uid()), Some(dev.gid())).is_err() {
                let _ = std::os::unix::fs::fchown(&file, None, Some(dev.gid()));
            }
            if let Ok(now) = file.metadata() {
                let mode = machine_mode(dev, &now);
                if now.mode() & 0o7777 != mode {
                    let _ = file.set_permissions(Permissions::from_mode(mode));
                }
            }
        }
        None => {
            let _ = file.set_permissions(Permissions::from_mode(0o600));
        }
    }
    Ok(file)
}

/// Creates the directory of machine file `path` when it is missing, with
/// the owner and group of the device file whose metadata is `model`, and
/// `x` where a machine file of the device gets `rw`.
pub(crate) fn make_parent(path: &Path, model: Option<&Metadata>) -> std::io::Result<()> {
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    if dir.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    if let Some(dev) = model {
        let _ = std::os::unix::fs::chown(dir, Some(dev.uid()), Some(dev.gid()));
        let _ = std::os::unix::fs::chown(dir, None, Some(dev.gid()));
        if let Ok(now) = std::fs::metadata(dir) {
            let mode = machine_mode(dev, &now);
            let _ =
                std::fs::set_permissions(dir, Permissions::from_mode(mode | (mode & 0o444) >> 2));
        }
    }
    Ok(())
}

/// The mode of a machine file whose owner and group are now those of
/// `file`, for a device whose file is `dev`: read-write for each class of
/// users (owner, group, others) that may read or write the device, the
/// owner and group counting only when they are the device's; an owner
/// that is not the device's (a user who is not root made the file) always
/// has read-write. So a device `root:disk 0660` gives `root:disk 0660`,
/// and the members of `disk` (the database's user among them) can open
/// the file and nobody else can.
fn machine_mode(dev: &Metadata, file: &Metadata) -> u32 {
    let rw = |shift: u32| {
        if (dev.mode() >> shift) & 0o6 != 0 {
            0o6 << shift
        } else {
            0
        }
    };
    let owner = if file.uid() == dev.uid() {
        rw(6)
    } else {
        0o600
    };
    let group = if file.gid() == dev.gid() { rw(3) } else { 0 };
    owner | group | rw(0)
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
    /// locks the whole file, as the reference's mkfs does. The file gets the
    /// owner and group of the device file `device`, and read-write access
    /// for the classes of users that may use the device.
    pub fn acquire(path: &Path, hostid: u64, device: Option<&Path>) -> Result<HostLock> {
        let file = open_machine_file(path, device)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn machine_files_open_only_to_the_users_of_the_device() {
        let dir = std::env::temp_dir().join(format!("pfs-machine-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let dev = dir.join("dev");
        std::fs::File::create(&dev).unwrap();
        let file = dir.join("run").join("lock");
        // Whoever may read or write the device gets read-write, nobody
        // else; a file of an older version (0666) is closed again.
        for (dev_mode, want) in [(0o640, 0o660), (0o600, 0o600), (0o604, 0o606)] {
            std::fs::set_permissions(&dev, Permissions::from_mode(dev_mode)).unwrap();
            let _ = std::fs::set_permissions(&file, Permissions::from_mode(0o666));
            open_machine_file(&file, Some(&dev)).unwrap();
            assert_eq!(mode_of(&file), want, "device {dev_mode:o}");
        }
        // The directory it made: the device's users may enter it.
        assert_eq!(mode_of(&dir.join("run")), 0o770);
        let md = std::fs::metadata(&file).unwrap();
        let dev_md = std::fs::metadata(&dev).unwrap();
        assert_eq!((md.uid(), md.gid()), (dev_md.uid(), dev_md.gid()));
        // No device file: this user's alone.
        open_machine_file(&file, None).unwrap();
        assert_eq!(mode_of(&file), 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
