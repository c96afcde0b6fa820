//! Prints commit latency, how long a follower takes to see a commit, and
//! mount times of 1-chunk and 30-chunk devices, on sparse files.
//!
//! `cargo bench -p pfs-core --bench mount` (`PFS_BENCH_DIR` picks the
//! directory for the device files).

#![allow(missing_docs)]

use pfs_core::{mkfs, MkfsOptions};
use pfs_core::{Device, FileDevice};
use pfs_core::{Mode, Mount, MountOptions};
use pfs_tests::device::Scratch;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn die(msg: String) -> ! {
    eprintln!("{msg}");
    std::process::exit(1)
}

/// A new sparse device `name` of `chunks` chunks in `dir`, formatted.
fn device(dir: &Scratch, name: &str, chunks: u64) -> Arc<dyn Device> {
    let _ = std::fs::remove_file(dir.join(name));
    let path = dir.device(name, chunks);
    let dev = FileDevice::open("bench", &path, true).unwrap_or_else(|e| die(e.to_string()));
    mkfs(&dev, &MkfsOptions::default()).unwrap_or_else(|e| die(e.to_string()));
    Arc::new(dev)
}

fn stats(label: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mean = v.iter().sum::<Duration>() / v.len() as u32;
    println!(
        "{label}: mean {:.3} ms, p50 {:.3} ms, p99 {:.3} ms, min {:.3} ms over {} runs",
        ms(mean),
        ms(v[v.len() / 2]),
        ms(v[(v.len() * 99 / 100).min(v.len() - 1)]),
        ms(v[0]),
        v.len()
    );
}

fn main() {
    let dir = Scratch::for_bench("bench-mount");
    let opts = |hostid| MountOptions {
        hostid,
        lease_ms: 60_000,
        ..MountOptions::default()
    };

    for (label, chunks) in [("1-chunk", 1u64), ("30-chunk", 30)] {
        let dev = device(&dir, &format!("dev{chunks}"), chunks);
        let mut times = Vec::new();
        for _ in 0..10 {
            let t = Instant::now();
            let m = Mount::open_with(dev.clone(), Mode::ReadOnly, &opts(2))
                .unwrap_or_else(|e| die(e.to_string()));
            times.push(t.elapsed());
            drop(m);
        }
        stats(&format!("mount (read-only) {label} device"), times);
    }

    let dev = device(&dir, "dev1", 1);
    let w = Mount::open_with(dev.clone(), Mode::ReadWrite, &opts(1))
        .unwrap_or_else(|e| die(e.to_string()));
    let r = Mount::open_with(
        Arc::new(
            FileDevice::open("bench", &dir.join("dev1"), false)
                .unwrap_or_else(|e| die(e.to_string())),
        ),
        Mode::ReadOnly,
        &opts(2),
    )
    .unwrap_or_else(|e| die(e.to_string()));
    let mut commit = Vec::new();
    let mut lag = Vec::new();
    for i in 0..300 {
        let p = format!("/d{i}");
        let t = Instant::now();
        w.mkdir_path(&p).unwrap_or_else(|e| die(e.to_string()));
        let committed = Instant::now();
        commit.push(committed - t);
        // How long until a follower sees it.
        loop {
            if r.resolve(&p).is_ok() {
                break;
            }
        }
        lag.push(committed.elapsed());
    }
    stats("commit (mkdir: 2 log writes + 2 flushes)", commit);
    stats("follower sees a commit", lag);
}
