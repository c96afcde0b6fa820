//! PBD names and where their devices are.
//!
//! As in the reference, PBD `nvme1n1` is `/dev/nvme1n1` and `mapper_x` is
//! `/dev/mapper/x`. With a device directory (the tool's `--device-dir` flag
//! or the `PFS_DEVICE_DIR` environment variable) PBD `name` is the file
//! `<dir>/name`, so everything runs on plain sparse files.
//!
//! PBD `rbd:<pool>:<image>` is a Ceph RBD image reached through librbd
//! (see [`crate::rbd`]), with or without a device directory. Its host-lock
//! and share files are found by name as for any PBD (in `/var/run/pfs`, or
//! the device directory when there is one); its live-mark file is
//! `/var/run/pfs/rbd:<fsid>:<pool>:<image>.pfs-rs-live`.

use crate::device::{Device, FileDevice};
use crate::error::{CoreError, Result};
use crate::rbd::{RbdClient, RbdDevice, RbdSpec};
use pfs_format::layout::MAX_PBD_NAME_LEN;
use std::path::{Path, PathBuf};

/// Environment variable naming the device directory.
pub const DEVICE_DIR_ENV: &str = "PFS_DEVICE_DIR";

/// Checks a PBD name: 1..=63 bytes, no `/`, not `.` or `..`.
pub fn check_pbd_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(CoreError::BadPbdName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty name");
    }
    if name.len() > MAX_PBD_NAME_LEN {
        return bad("longer than 63 bytes");
    }
    if name.contains('/') || name.contains('\0') {
        return bad("contains '/' or NUL");
    }
    if name == "." || name == ".." {
        return bad("not a device name");
    }
    Ok(())
}

/// Where the device of PBD `name` is.
pub fn device_path(name: &str, device_dir: Option<&Path>) -> Result<PathBuf> {
    check_pbd_name(name)?;
    Ok(match device_dir {
        Some(dir) => dir.join(name),
        None => match name.strip_prefix("mapper_") {
            Some(rest) if !rest.is_empty() => Path::new("/dev/mapper").join(rest),
            _ => Path::new("/dev").join(name),
        },
    })
}

/// The device directory from the environment, if set and not empty.
pub fn device_dir_from_env() -> Option<PathBuf> {
    std::env::var_os(DEVICE_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The reference's host-lock file for PBD `name`:
/// `/var/run/pfs/<name>-paxos-hostid`, or `<dir>/.<name>-paxos-hostid` when
/// devices live in a device directory.
pub fn lock_path(name: &str, device_dir: Option<&Path>) -> PathBuf {
    match device_dir {
        Some(dir) => dir.join(format!(".{name}-paxos-hostid")),
        None => Path::new("/var/run/pfs").join(format!("{name}-paxos-hostid")),
    }
}

/// Where the processes of this machine that mount PBD `name` shared (see
/// [`crate::MountOptions::shared`]) meet: next to its host-lock file,
/// `/var/run/pfs/<name>.pfs-rs-share` or `<dir>/.<name>.pfs-rs-share`.
pub fn share_path(name: &str, device_dir: Option<&Path>) -> PathBuf {
    match device_dir {
        Some(dir) => dir.join(format!(".{name}.pfs-rs-share")),
        None => Path::new("/var/run/pfs").join(format!("{name}.pfs-rs-share")),
    }
}

/// Whether PBD `name` is an RBD image (`rbd:...`) rather than a device
/// of this machine.
pub fn is_rbd(name: &str) -> bool {
    RbdSpec::parse(name).is_some()
}

/// Opens the device of PBD `name`: an RBD image for `rbd:<pool>:<image>`
/// (the cluster as the environment says, see [`RbdClient::from_env`]),
/// else the block device or file [`device_path`] gives.
///
/// # Example
///
/// PBD `disk` in a device directory (`dir`, a scratch directory), as
/// `PFS_DEVICE_DIR=dir` makes the tool and the SDK find it; without a
/// directory it would be `/dev/disk`:
///
/// ```
/// # struct Scratch(std::path::PathBuf);
/// # impl Drop for Scratch {
/// #     fn drop(&mut self) {
/// #         let _ = std::fs::remove_dir_all(&self.0);
/// #     }
/// # }
/// # let scratch = Scratch(std::env::temp_dir().join(format!("pfs-doc-open-pbd-{}", std::process::id())));
/// # std::fs::create_dir_all(&scratch.0)?;
/// # let dir = scratch.0.clone();
/// use pfs_core::{mkfs, pbd, MkfsOptions, Mode, Mount, MountOptions};
/// use std::sync::Arc;
///
/// std::fs::File::create(dir.join("disk"))?.set_len(10 << 30)?;
/// assert_eq!(pbd::device_path("disk", Some(&dir))?, dir.join("disk"));
/// assert_eq!(pbd::device_path("nvme1n1", None)?, std::path::Path::new("/dev/nvme1n1"));
///
/// let dev: Arc<dyn pfs_core::Device> = Arc::from(pbd::open_pbd("disk", Some(&dir), true)?);
/// mkfs(dev.as_ref(), &MkfsOptions::default())?;
/// let opts = MountOptions { hostid: 1, ..MountOptions::for_pbd("disk", Some(&dir), Mode::ReadWrite) };
/// let m = Mount::open_with(dev, Mode::ReadWrite, &opts)?;
/// m.mkdir_path("/data")?;
/// assert!(pbd::open_pbd("no/such", Some(&dir), false).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn open_pbd(name: &str, device_dir: Option<&Path>, writable: bool) -> Result<Box<dyn Device>> {
    check_pbd_name(name)?;
    if let Some(spec) = RbdSpec::parse(name) {
        let dev = RbdDevice::open(name, &spec?, &RbdClient::from_env(), writable)?;
        return Ok(Box::new(dev));
    }
    let path = device_path(name, device_dir)?;
    Ok(Box::new(FileDevice::open(name, &path, writable)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_like_the_reference() {
        assert_eq!(
            device_path("nvme1n1", None).unwrap(),
            Path::new("/dev/nvme1n1")
        );
        assert_eq!(
            device_path("mapper_vg-lv", None).unwrap(),
            Path::new("/dev/mapper/vg-lv")
        );
        assert_eq!(
            device_path("nvme1n1", Some(Path::new("/tmp/devs"))).unwrap(),
            Path::new("/tmp/devs/nvme1n1")
        );
        assert!(device_path("", None).is_err());
        assert!(device_path("a/b", None).is_err());
        assert!(device_path("..", None).is_err());
        assert!(device_path(&"x".repeat(64), None).is_err());
    }
}
