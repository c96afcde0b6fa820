//! A FUSE mount beside `dd` on a raw device, in the same run: 1 GiB
//! sequential write and read with the same block size (4 MiB), and small
//! files created per second (open, write 100 bytes, close). Needs root and
//! /dev/fuse.
//!
//! The PFS and the raw device are direct-IO loop devices over sparse files
//! on the same filesystem (sparse files where `losetup` cannot make loop
//! devices). PFS reads and writes its device with O_DIRECT, so `dd` on the
//! raw device does too (`oflag=direct conv=fsync`, `iflag=direct`); through
//! the mount `dd` writes as programs do (`conv=fsync`: durable when it
//! ends) and reads after the page cache is dropped, so nothing of the
//! write is read back from memory. The mount is also measured with
//! O_DIRECT on its side, for the record.
//!
//! `cargo bench -p pfs-tool --bench fuse` (`PFS_BENCH_MIB` changes the size,
//! `PFS_BENCH_FILES` the number of small files, `PFS_BENCH_DIR` where the
//! devices live).

#![allow(missing_docs)]

use pfs_tests::cli::{run_ok, Pfs};
use pfs_tests::device::{BenchDevices, Scratch};
use pfs_tests::env_u64;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// Seconds `dd` takes to copy `mib` MiB in 4 MiB blocks.
fn dd(input: &Path, output: &Path, mib: u64, extra: &[&str]) -> f64 {
    let t = Instant::now();
    run_ok(
        Command::new("dd")
            .arg(format!("if={}", input.display()))
            .arg(format!("of={}", output.display()))
            .args(["bs=4M", &format!("count={}", mib / 4)])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    t.elapsed().as_secs_f64()
}

fn drop_caches() {
    // Best effort: not allowed everywhere.
    let _ = Command::new("sync").status();
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
}

fn main() {
    if !pfs_tests::fuse::available() {
        std::process::exit(1);
    }
    let mib = env_u64("PFS_BENCH_MIB", 1024).max(4);
    let files = env_u64("PFS_BENCH_FILES", 2000);
    let base = Scratch::for_bench("bench-fuse");
    // Two chunks of PFS: room for the small files (a block and an inode
    // each) as well.
    let size = (mib << 20).max(20 << 30) + (1 << 30);
    let devices = BenchDevices::new(&base, &["nvme1n1", "raw"], size);
    let pfs = Pfs::new(&devices.dir);
    pfs.ok(&["mkfs", "nvme1n1"]);
    let m = pfs_tests::fuse::mount(&pfs, "1", &[], "nvme1n1", &base.subdir("mnt"));
    let zero = Path::new("/dev/zero");
    let null = Path::new("/dev/null");
    let raw = devices.real("raw");
    let write = ["conv=fsync,notrunc"];
    let write_direct = ["oflag=direct", "conv=fsync,notrunc"];
    let rounds = env_u64("PFS_BENCH_ROUNDS", 2).max(1);
    // Seconds, best of the rounds: raw and ours for each row.
    let mut best = [[f64::MAX; 2]; 4];
    for _ in 0..rounds {
        let big = m.path("big");
        let direct = m.path("direct");
        let t = [
            [
                dd(zero, &raw, mib, &write_direct),
                dd(zero, &big, mib, &write),
            ],
            [
                {
                    drop_caches();
                    dd(&raw, null, mib, &["iflag=direct"])
                },
                {
                    drop_caches();
                    dd(&big, null, mib, &[])
                },
            ],
            [
                dd(zero, &raw, mib, &write_direct),
                dd(zero, &direct, mib, &write_direct),
            ],
            [
                dd(&raw, null, mib, &["iflag=direct"]),
                dd(&direct, null, mib, &["iflag=direct"]),
            ],
        ];
        for (b, t) in best.iter_mut().zip(t) {
            b[0] = b[0].min(t[0]);
            b[1] = b[1].min(t[1]);
        }
        std::fs::remove_file(&big).expect("remove through the mount");
        std::fs::remove_file(&direct).expect("remove through the mount");
    }
    let mbs = |s: f64| mib as f64 / s;
    println!(
        "devices: {}; {mib} MiB, dd bs=4M (raw device: O_DIRECT); best of {rounds} rounds",
        devices.kind
    );
    let what = [
        "write, mount conv=fsync   ",
        "read, mount cache dropped ",
        "write, mount O_DIRECT     ",
        "read, mount O_DIRECT      ",
    ];
    for (what, [raw, ours]) in what.iter().zip(best) {
        println!(
            "{what}: ours {:7.1} MiB/s   dd on the raw device {:7.1} MiB/s   ratio {:.2}",
            mbs(ours),
            mbs(raw),
            raw / ours
        );
    }

    let d = m.path("many");
    std::fs::create_dir(&d).expect("mkdir through the mount");
    let data = [b'x'; 100];
    let t = Instant::now();
    for i in 0..files {
        std::fs::write(d.join(format!("f{i}")), data).expect("create through the mount");
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "small files (create, write 100 B, close): {files} in {s:.2} s, {:.0} files/s",
        files as f64 / s
    );
    m.umount();
}
