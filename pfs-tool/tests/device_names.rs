//! Device names as users have them: loop devices behind `/dev/rbd0`,
//! `/dev/dm-3`, `/dev/xvdb`, `/dev/nbd0`, `/dev/md0` and `/dev/sdb1`
//! symlinks, used by `cp` (the command that tells PFS paths from local ones)
//! and `ls` without a device directory. Skips with a note when loop devices
//! cannot be made (not root, no `losetup`); loop devices, symlinks and the
//! local directory it makes are removed in every case.

#![allow(clippy::unwrap_used)]

use pfs_tests::cli::Pfs;
use pfs_tests::device::Scratch;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const NAMES: [&str; 6] = ["rbd0", "dm-3", "xvdb", "nbd0", "md0", "sdb1"];

/// Everything the test set up, undone on drop (also when it fails).
#[derive(Default)]
struct Setup {
    loops: Vec<String>,
    links: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        for l in &self.links {
            let _ = fs::remove_file(l);
        }
        for l in &self.loops {
            let _ = Command::new("losetup").args(["-d", l]).status();
        }
        for d in &self.dirs {
            let _ = fs::remove_dir_all(d);
        }
    }
}

/// Attaches a 10 GiB sparse file as a loop device and links `/dev/<name>`
/// to it; `None` when that cannot be done here.
fn attach(setup: &mut Setup, dir: &Path, name: &str) -> Option<()> {
    let backing = dir.join(format!("{name}.img"));
    pfs_tests::device::sparse(&backing, 10 << 30);
    let o = Command::new("losetup")
        .args(["--show", "-f"])
        .arg(&backing)
        .output()
        .ok()?;
    if !o.status.success() {
        return None;
    }
    let dev = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    setup.loops.push(dev.clone());
    let link = Path::new("/dev").join(name);
    std::os::unix::fs::symlink(&dev, &link).ok()?;
    setup.links.push(link);
    Some(())
}

#[test]
fn any_block_device_name_is_a_pbd() {
    // Dropped after `setup`: the loop devices go before their files.
    let dir = Scratch::new("devnames");
    let mut setup = Setup::default();
    let pfs = Pfs::without_device_dir();
    for n in NAMES {
        if fs::symlink_metadata(Path::new("/dev").join(n)).is_ok() {
            pfs_tests::skipped(&format!("/dev/{n} exists on this machine"));
            return;
        }
        if fs::symlink_metadata(Path::new("/").join(n)).is_ok() {
            pfs_tests::skipped(&format!("/{n} exists on this machine"));
            return;
        }
    }
    for n in NAMES {
        if attach(&mut setup, &dir, n).is_none() {
            pfs_tests::skipped("cannot make loop devices here (needs root and losetup)");
            return;
        }
    }
    for n in NAMES.iter().filter(|n| **n != "md0") {
        pfs.ok(&["mkfs", n]);
    }
    let input = dir.join("input.bin");
    let data = pfs_tests::gen_input("device-names", 5_000_000);
    fs::write(&input, &data).unwrap();
    let input_s = input.to_str().unwrap();

    // A chain of copies through every name, local → PFS → PFS ... → local.
    pfs.ok(&["cp", input_s, "/rbd0/a"]);
    pfs.ok(&["cp", "/rbd0/a", "/dm-3/b"]);
    pfs.ok(&["cp", "/dm-3/b", "/xvdb/c"]);
    pfs.ok(&["cp", "/xvdb/c", "/nbd0/d"]);
    pfs.ok(&["cp", "/nbd0/d", "/sdb1/e"]);
    let back = dir.join("back.bin");
    pfs.ok(&["cp", "/sdb1/e", back.to_str().unwrap()]);
    assert!(fs::read(&back).unwrap() == data, "bytes changed on the way");
    let ls = pfs.ok(&["ls", "/sdb1/"]);
    assert!(ls.contains(" e\n"));

    // Ambiguous: a local /md0 and /dev/md0. Without a PFS on the device the
    // local directory wins; once formatted, the device does.
    let local = PathBuf::from("/md0");
    fs::create_dir(&local).unwrap();
    setup.dirs.push(local.clone());
    pfs.ok(&["cp", input_s, "/md0/x"]);
    assert_eq!(fs::read(local.join("x")).unwrap().len(), data.len());
    pfs.ok(&["mkfs", "md0"]);
    pfs.ok(&["cp", input_s, "/md0/y"]);
    assert!(!local.join("y").exists(), "went to the local directory");
    let st = pfs.ok(&["stat", "/md0/y"]);
    assert!(st.contains("size: 5000000"));

    // Neither a device nor a local directory: an error naming both.
    let o = pfs.run(&["cp", input_s, "/pfs-no-such-place/x"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("/dev/pfs-no-such-place") && err.contains("local /pfs-no-such-place"),
        "{err}"
    );
}
