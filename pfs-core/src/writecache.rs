//! Whether a block device keeps written data in a volatile cache that a
//! flush must empty. A device whose queue reports `write through`
//! (`/sys/block/<dev>/queue/write_cache`) has none: a write is durable
//! when it completes, so the kernel issues no flush for it, and nor does
//! [`crate::device::FileDevice`]. The answer is read when the device is
//! opened; a cache mode changed later takes effect at the next mount.
//!
//! A loop device always says `write back`: its flush makes the backing
//! file durable. When that file lives in memory (tmpfs, ramfs) there is
//! nothing more durable to make it: a completed write is in the file, where
//! every process sees it, and no flush survives a power loss either. Such
//! a loop device is treated as having no volatile cache.

use std::path::Path;

/// Whether the block device numbered `rdev` may hold completed writes in
/// a volatile cache (`true` unless its queue says `write through`, or
/// when that cannot be read).
pub(crate) fn volatile(rdev: u64) -> bool {
    volatile_in(Path::new("/sys/dev/block"), rdev)
}

/// [`volatile`], with `sys` standing for `/sys/dev/block`.
fn volatile_in(sys: &Path, rdev: u64) -> bool {
    let dev = sys.join(format!(
        "{}:{}",
        nix::sys::stat::major(rdev),
        nix::sys::stat::minor(rdev)
    ));
    // A partition has no queue of its own: its disk's is one level up.
    for disk in [dev.clone(), dev.join("..")] {
        if let Ok(mode) = std::fs::read_to_string(disk.join("queue").join("write_cache")) {
            return mode.trim() != "write through" && !backed_by_memory(&disk);
        }
    }
    true
}

/// Whether `disk` (a block device's directory in sysfs) is a loop device
/// whose backing file is on a filesystem held in memory.
fn backed_by_memory(disk: &Path) -> bool {
    use nix::sys::statfs::{statfs, FsType, TMPFS_MAGIC};
    // ramfs's f_type (nix names no constant for it).
    const RAMFS_MAGIC: FsType = FsType(0x8584_58f6);
    let Ok(file) = std::fs::read_to_string(disk.join("loop").join("backing_file")) else {
        return false;
    };
    // A file removed since it was attached shows as "<path> (deleted)":
    // then nothing is known of where it lives.
    let file = file.trim_end_matches('\n');
    statfs(Path::new(file))
        .is_ok_and(|fs| [TMPFS_MAGIC, RAMFS_MAGIC].contains(&fs.filesystem_type()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_queue_that_says_write_through_needs_no_flush() {
        let sys = std::env::temp_dir().join(format!("pfs-wcache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&sys);
        let disk = |maj: u64, min: u64, mode: &str| {
            let q = sys.join(format!("{maj}:{min}")).join("queue");
            std::fs::create_dir_all(&q).unwrap();
            std::fs::write(q.join("write_cache"), mode).unwrap();
        };
        disk(8, 0, "write through\n");
        disk(8, 16, "write back\n");
        // A partition of 8:0: a link to a directory below its disk's, with
        // no queue of its own, as in sysfs.
        std::fs::create_dir_all(sys.join("8:0").join("sda1")).unwrap();
        std::os::unix::fs::symlink(sys.join("8:0").join("sda1"), sys.join("8:1")).unwrap();
        let dev = nix::sys::stat::makedev;
        assert!(!volatile_in(&sys, dev(8, 0)));
        assert!(!volatile_in(&sys, dev(8, 1)));
        assert!(volatile_in(&sys, dev(8, 16)));
        // No queue found at all: assume a cache, and flush.
        assert!(volatile_in(&sys, dev(9, 9)));
        // A loop device says write back; its backing file decides.
        let lo = |min: u64, backing: &Path| {
            disk(7, min, "write back\n");
            let l = sys.join(format!("7:{min}")).join("loop");
            std::fs::create_dir_all(&l).unwrap();
            std::fs::write(l.join("backing_file"), format!("{}\n", backing.display())).unwrap();
        };
        let shm = Path::new("/dev/shm");
        let in_memory = nix::sys::statfs::statfs(shm)
            .is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC);
        lo(0, shm);
        lo(1, Path::new("/nonexistent/pfs.img (deleted)"));
        assert_eq!(volatile_in(&sys, dev(7, 0)), !in_memory);
        assert!(volatile_in(&sys, dev(7, 1)));
        std::fs::remove_dir_all(&sys).unwrap();
    }
}
