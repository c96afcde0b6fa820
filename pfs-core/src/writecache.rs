//! Whether a block device keeps written data in a volatile cache that a
//! flush must empty. A device whose queue reports `write through`
//! (`/sys/block/<dev>/queue/write_cache`) has none: a write is durable
//! when it completes, so the kernel issues no flush for it, and nor does
//! [`crate::device::FileDevice`]. The answer is read when the device is
//! opened; a cache mode changed later takes effect at the next mount.

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
    for queue in [dev.join("queue"), dev.join("..").join("queue")] {
        if let Ok(mode) = std::fs::read_to_string(queue.join("write_cache")) {
            return mode.trim() != "write through";
        }
    }
    true
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
        std::fs::remove_dir_all(&sys).unwrap();
    }
}
