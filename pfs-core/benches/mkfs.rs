//! Prints how long mkfs takes on 10 GiB and 30 GiB sparse-file devices.
//!
//! `cargo bench -p pfs-core --bench mkfs`. Set `PFS_BENCH_DIR` to put the
//! device files elsewhere (default: the system temp dir). The reference took
//! about 0.6 s (buffered loop device) and 1.0 s (direct-IO loop device) for
//! 10 GiB on this machine kind, most of it writing the journal's zeros.

#![allow(missing_docs)]

use pfs_core::FileDevice;
use pfs_core::{mkfs, MkfsOptions};
use pfs_tests::device::Scratch;
use std::time::{Duration, Instant};

fn main() {
    let dir = Scratch::for_bench("bench-mkfs");
    const RUNS: u32 = 5;
    for (label, size, hosts) in [("10 GiB", 10u64 << 30, 30), ("30 GiB", 30u64 << 30, 10)] {
        let path = dir.join("dev");
        let mut times: Vec<Duration> = Vec::new();
        for _ in 0..RUNS {
            let _ = std::fs::remove_file(&path);
            dir.sparse("dev", size);
            let dev = match FileDevice::open("dev", &path, true) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(1);
                }
            };
            let opts = MkfsOptions {
                num_hosts: hosts,
                ..MkfsOptions::default()
            };
            let t = Instant::now();
            if let Err(e) = mkfs(&dev, &opts) {
                eprintln!("mkfs failed: {e}");
                std::process::exit(1);
            }
            times.push(t.elapsed());
        }
        times.sort();
        let mean = times.iter().sum::<Duration>() / RUNS;
        println!(
            "mkfs {label:>6} sparse file: min {:>8.2} ms, median {:>8.2} ms, mean {:>8.2} ms over {RUNS} runs (reference: ~600 ms buffered loop, ~1000 ms direct-IO loop for 10 GiB)",
            times[0].as_secs_f64() * 1e3,
            times[times.len() / 2].as_secs_f64() * 1e3,
            mean.as_secs_f64() * 1e3
        );
    }
}
