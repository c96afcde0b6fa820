//! Prints creates per second (10,000 files in one directory in one mount,
//! on a 60 GiB device: a chunk holds 2048 inodes), on a memory device (the
//! cost of PFS itself) and on a sparse file (plus two flushes per commit),
//! and 4 MiB
//! sequential pwrite/pread throughput through PFS next to the raw device's
//! (the same sparse file, a region PFS does not use), in the same run.
//!
//! `cargo bench -p pfs-core --bench fileio` (`PFS_BENCH_DIR` picks the
//! directory for the device files).

#![allow(missing_docs)]

use pfs_core::OpenOptions;
use pfs_core::{mkfs, MkfsOptions};
use pfs_core::{Device, FileDevice};
use pfs_core::{Mode, Mount, MountOptions};
use pfs_tests::device::Scratch;
use std::sync::Arc;
use std::time::Instant;

const MIB: u64 = 1 << 20;

fn die(msg: String) -> ! {
    eprintln!("{msg}");
    std::process::exit(1)
}

/// Formats `dev`, mounts it and creates 10,000 files in one directory;
/// prints the rate and returns the mount.
fn creates(dev: &Arc<dyn Device>, what: &str) -> Arc<Mount> {
    mkfs(dev.as_ref(), &MkfsOptions::default()).unwrap_or_else(|e| die(e.to_string()));
    let m = Arc::new(
        Mount::open_with(
            dev.clone(),
            Mode::ReadWrite,
            &MountOptions {
                lease_ms: 600_000,
                ..MountOptions::default()
            },
        )
        .unwrap_or_else(|e| die(e.to_string())),
    );
    m.mkdir_path("/many").unwrap_or_else(|e| die(e.to_string()));
    let n = 10_000;
    let t = Instant::now();
    for i in 0..n {
        let o = OpenOptions {
            create: true,
            exclusive: true,
            write: true,
            ..OpenOptions::default()
        };
        m.open_file(format!("/many/f{i}"), o)
            .unwrap_or_else(|e| die(e.to_string()));
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "create ({what}): {n} files in {secs:.2} s, {:.0} creates/s",
        n as f64 / secs
    );
    m
}

fn main() {
    let dir = Scratch::for_bench("bench-fileio");
    let path = dir.device("dev", 6);
    let dev: Arc<dyn Device> =
        Arc::new(FileDevice::open("bench", &path, true).unwrap_or_else(|e| die(e.to_string())));
    let mem: Arc<dyn Device> = Arc::new(pfs_core::MemDevice::new("mem", 60 << 30));
    creates(&mem, "memory device");
    drop(mem);
    let m = creates(&dev, "sparse file, each committed and flushed");

    // Sequential 4 MiB IO through PFS.
    let total = 512 * MIB;
    let buf: Vec<u8> = (0..4 * MIB).map(|i| (i % 251) as u8).collect();
    let f = m
        .open_file(
            "/big",
            OpenOptions {
                create: true,
                write: true,
                ..OpenOptions::default()
            },
        )
        .unwrap_or_else(|e| die(e.to_string()));
    let t = Instant::now();
    let mut off = 0;
    while off < total {
        f.write_at(&buf, off).unwrap_or_else(|e| die(e.to_string()));
        off += 4 * MIB;
    }
    f.sync_all().unwrap_or_else(|e| die(e.to_string()));
    let pfs_w = total as f64 / t.elapsed().as_secs_f64() / MIB as f64;
    let mut rbuf = vec![0u8; 4 * MIB as usize];
    let t = Instant::now();
    let mut off = 0;
    while off < total {
        f.read_at(&mut rbuf, off)
            .unwrap_or_else(|e| die(e.to_string()));
        off += 4 * MIB;
    }
    let pfs_r = total as f64 / t.elapsed().as_secs_f64() / MIB as f64;

    // The raw device: the last 5 GiB of the last chunk, far from anything
    // this run allocated (blocks are taken from the front of each chunk).
    let base = 55u64 << 30;
    let t = Instant::now();
    let mut off = 0;
    while off < total {
        dev.write_at(&buf, base + off)
            .unwrap_or_else(|e| die(e.to_string()));
        off += 4 * MIB;
    }
    dev.sync().unwrap_or_else(|e| die(e.to_string()));
    let raw_w = total as f64 / t.elapsed().as_secs_f64() / MIB as f64;
    let t = Instant::now();
    let mut off = 0;
    while off < total {
        dev.read_at(&mut rbuf, base + off)
            .unwrap_or_else(|e| die(e.to_string()));
        off += 4 * MIB;
    }
    let raw_r = total as f64 / t.elapsed().as_secs_f64() / MIB as f64;
    println!(
        "pwrite 4 MiB sequential: PFS {pfs_w:.0} MiB/s, raw {raw_w:.0} MiB/s, ratio {:.2}",
        pfs_w / raw_w
    );
    println!(
        "pread  4 MiB sequential: PFS {pfs_r:.0} MiB/s, raw {raw_r:.0} MiB/s, ratio {:.2}",
        pfs_r / raw_r
    );
    drop(f);
    drop(m);
}
