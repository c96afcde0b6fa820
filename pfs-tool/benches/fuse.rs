//! Through a FUSE mount against the raw file in the same run: 1 GiB
//! sequential write (`dd bs=4M conv=fsync`) and read (`dd bs=4M`), and
//! files created per second. Needs root and /dev/fuse. The device is a
//! sparse file on the same filesystem as the raw file.
//!
//! `cargo bench -p pfs-tool --bench fuse` (`PFS_BENCH_MIB` changes the size).

#![allow(missing_docs)]

use pfs_tests::cli::{run_ok, Disk};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

fn dd(input: &Path, output: &Path, mib: u64, extra: &[&str]) -> f64 {
    let t = Instant::now();
    run_ok(
        Command::new("dd")
            .arg(format!("if={}", input.display()))
            .arg(format!("of={}", output.display()))
            .args(["bs=4M", &format!("count={}", mib / 4)])
            .args(extra)
            .stdout(Stdio::null()),
    );
    t.elapsed().as_secs_f64()
}

fn drop_caches() {
    // Best effort: not allowed everywhere.
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
}

fn main() {
    if !pfs_tests::fuse::available() {
        std::process::exit(1);
    }
    let mib: u64 = std::env::var("PFS_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let disk = Disk::new("bench-fuse", "nvme1n1");
    let m = disk.mount("1", &[], "mnt");
    let mnt = m.mp.clone();
    let zero = Path::new("/dev/zero");
    let null = Path::new("/dev/null");
    let raw = disk.dir.join("raw");

    let w_raw = dd(zero, &raw, mib, &["conv=fsync"]);
    let w_fuse = dd(zero, &mnt.join("big"), mib, &["conv=fsync"]);
    drop_caches();
    let r_raw = dd(&raw, null, mib, &[]);
    drop_caches();
    let r_fuse = dd(&mnt.join("big"), null, mib, &[]);
    let mbs = |s: f64| mib as f64 / s;
    println!("sequential write {mib} MiB, dd bs=4M conv=fsync:");
    println!(
        "  raw file {:8.1} MiB/s   fuse {:8.1} MiB/s   ratio {:.2}",
        mbs(w_raw),
        mbs(w_fuse),
        w_raw / w_fuse
    );
    println!("sequential read {mib} MiB, dd bs=4M:");
    println!(
        "  raw file {:8.1} MiB/s   fuse {:8.1} MiB/s   ratio {:.2}",
        mbs(r_raw),
        mbs(r_fuse),
        r_raw / r_fuse
    );

    let n = 2000;
    let d = mnt.join("many");
    std::fs::create_dir(&d).expect("mkdir through the mount");
    let t = Instant::now();
    for i in 0..n {
        std::fs::write(d.join(format!("f{i}")), b"x").expect("create through the mount");
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "created {n} one-byte files through the mount: {:.0} files/s",
        n as f64 / s
    );
    m.umount();
}
