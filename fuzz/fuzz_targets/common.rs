//! What the image-level fuzz targets share: a small valid image built once
//! in memory, fresh copies of it, and a read-only workout of a (possibly
//! damaged) image that must end without a panic, a hang or unbounded
//! memory, whatever the bytes.

#![allow(dead_code)]

use pfs_core::TreeGuard;
use pfs_core::{mkfs, MkfsOptions};
use pfs_core::{Device, FileType, MemDevice};
use pfs_core::{Mode, Mount, MountOptions};
use pfs_format::layout::{CHUNK_SIZE, MIN_LOG_SIZE, ROOT_INO};
use std::sync::{Arc, OnceLock};

/// Resident pages of a built image.
type Pages = Vec<(u64, Box<[u8]>)>;

/// Builds the image: a few directories, files with one and two blocks, a
/// long name; with `checkpoint` the metasets hold everything and the
/// journal nothing to replay, otherwise the journal holds every change.
fn build(checkpoint: bool) -> Pages {
    let dev = Arc::new(MemDevice::new("fuzz", CHUNK_SIZE));
    let opts = MkfsOptions {
        log_size: MIN_LOG_SIZE,
        ..MkfsOptions::default()
    };
    mkfs(dev.as_ref(), &opts).expect("mkfs of the base image");
    {
        let m = Mount::open_with(
            dev.clone() as Arc<dyn Device>,
            Mode::ReadWrite,
            &MountOptions {
                lease_ms: 1000,
                ..MountOptions::default()
            },
        )
        .expect("mount of the base image");
        for d in ["/a", "/a/b", "/c"] {
            m.mkdir_path(d).expect("mkdir");
        }
        let long = format!("/a/{}", "n".repeat(150));
        for (p, n) in [
            ("/a/b/f", 100usize),
            ("/c/two", 5 << 20),
            (long.as_str(), 10),
        ] {
            let ino = m.create_path(p, FileType::File).expect("create");
            m.write_at(ino, &vec![0x5a; n], 0).expect("write");
        }
        if checkpoint {
            m.checkpoint().expect("checkpoint");
        }
    }
    dev.pages_snapshot()
}

/// A fresh copy of the base image.
pub fn image(checkpoint: bool) -> MemDevice {
    static CLEAN: OnceLock<Pages> = OnceLock::new();
    static JOURNALED: OnceLock<Pages> = OnceLock::new();
    let pages = if checkpoint {
        CLEAN.get_or_init(|| build(true))
    } else {
        JOURNALED.get_or_init(|| build(false))
    };
    let dev = MemDevice::new("fuzz", CHUNK_SIZE);
    for (off, page) in pages {
        dev.write_at(page, *off).expect("copy page");
    }
    dev
}

/// Mounts read-only and reads everything reachable the way the tool's
/// `tree`, `du` and `read` do, then runs fsck. Errors are fine; panics,
/// hangs and runaway memory are what the fuzzer looks for.
pub fn exercise(dev: Arc<dyn Device>) {
    let _ = pfs_core::inspect::fsck_device(dev.as_ref());
    let Ok(m) = Mount::open(dev.clone(), Mode::ReadOnly) else {
        return;
    };
    let mut guard = TreeGuard::new(dev.name());
    let mut stack = vec![(ROOT_INO, 0u64)];
    let mut buf = vec![0u8; 64 << 10];
    while let Some((dir, depth)) = stack.pop() {
        if guard.enter(dir, depth).is_err() {
            return;
        }
        let Ok(entries) = m.readdir(dir) else {
            continue;
        };
        for e in entries {
            let _ = guard.check_name(dir, &e.name);
            let Ok(st) = m.getattr(e.ino) else {
                continue;
            };
            if st.is_dir() {
                stack.push((e.ino, depth + 1));
            } else {
                let _ = m.disk_usage(e.ino);
                let _ = m.blocks(e.ino);
                let _ = m.read_at(e.ino, &mut buf, 0);
                let _ = m.read_at(e.ino, &mut buf, st.size.saturating_sub(10));
            }
        }
    }
    let _ = m.fsck();
    for p in ["/a/b/f", "/c/two", "/a/missing", "/a/../c/./two"] {
        let _ = m.stat_path(p);
    }
}
