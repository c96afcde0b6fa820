//! 1 GiB copies local → PFS, PFS → local and PFS → PFS across two devices,
//! next to the raw devices' O_DIRECT bandwidth (dd, 4 MiB) measured in the
//! same run. Uses direct-IO loop devices when `losetup` can make them
//! (root), sparse files otherwise (and says so).
//!
//! `cargo bench -p pfs-tool --bench cp` (`PFS_BENCH_MIB` changes the size,
//! `PFS_BENCH_ROUNDS` the number of rounds, 3 by default; each round runs
//! every copy and its dd once, and the best of each is reported;
//! `PFS_BENCH_LOAD=N` keeps N threads busy computing throughout, to see
//! the copies with other work running).

#![allow(missing_docs)]

use pfs_tests::cli::{run_ok, Pfs};
use pfs_tests::device::{BenchDevices, Scratch};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

fn timed(cmd: &mut Command) -> f64 {
    let t = Instant::now();
    run_ok(cmd.stdout(Stdio::null()));
    t.elapsed().as_secs_f64()
}

fn main() {
    let env = |k: &str, d: u64| -> u64 {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let mib = env("PFS_BENCH_MIB", 1024);
    let rounds = env("PFS_BENCH_ROUNDS", 3).max(1);
    let load = env("PFS_BENCH_LOAD", 0);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy: Vec<_> = (0..load)
        .map(|i| {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut x = i.wrapping_add(1);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for _ in 0..100_000 {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    }
                    std::hint::black_box(x);
                }
            })
        })
        .collect();
    let dir = Scratch::new("bench-cp");
    let devices = BenchDevices::new(&dir, &["nvme1n1", "nvme3n1"], 10 << 30);
    let kind = devices.kind;
    let tool = Pfs::new(&devices.dir);
    let pfs = |args: &[&str]| tool.command(args);
    tool.ok(&["mkfs", "-f", "nvme1n1"]);
    tool.ok(&["mkfs", "-f", "nvme3n1"]);

    // Raw equivalents of each copy, dd with O_DIRECT and 4 MiB requests,
    // on the very regions the files occupy (a fresh filesystem's first file
    // starts at block 258), so disk caching treats both alike.
    let (a, b) = (devices.real("nvme1n1"), devices.real("nvme3n1"));
    let count = mib / 4;
    const FIRST_DATA_BLOCK: u64 = 258;
    let dd = |input: String, output: String, iflag: bool, oflag: bool, skip: u64, seek: u64| {
        let mut c = Command::new("dd");
        c.arg(format!("if={input}"))
            .arg(format!("of={output}"))
            .args([
                "bs=4M",
                &format!("count={count}"),
                &format!("skip={skip}"),
                &format!("seek={seek}"),
            ])
            .stderr(Stdio::null());
        if iflag {
            c.arg("iflag=direct");
        }
        if oflag {
            c.args(["oflag=direct", "conv=fsync,notrunc"]);
        }
        c
    };
    let s = |p: &Path| p.display().to_string();
    let src = dir.join("src.bin");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&src).expect("create the source");
        let chunk: Vec<u8> = (0..4 << 20)
            .map(|i: u32| (i.wrapping_mul(2654435761) >> 24) as u8)
            .collect();
        for _ in 0..count {
            f.write_all(&chunk).expect("write the source");
        }
        f.sync_all().expect("sync the source");
    }
    let raw_local = dir.join("raw.bin");
    let back = dir.join("back.bin");
    let mut best = [f64::MAX; 6];
    let mbps = |secs: f64| mib as f64 / secs;
    for round in 0..rounds {
        let _ = std::fs::remove_file(&raw_local);
        let _ = std::fs::remove_file(&back);
        if round > 0 {
            tool.ok(&["rm", "/nvme1n1/big"]);
            tool.ok(&["rm", "/nvme3n1/big"]);
        }
        let t = [
            timed(&mut dd(s(&src), s(&a), false, true, 0, FIRST_DATA_BLOCK)),
            timed(&mut pfs(&["cp", &s(&src), "/nvme1n1/big"])),
            timed(&mut dd(
                s(&a),
                s(&raw_local),
                true,
                true,
                FIRST_DATA_BLOCK,
                0,
            )),
            timed(&mut pfs(&["cp", "/nvme1n1/big", &s(&back)])),
            timed(&mut dd(
                s(&a),
                s(&b),
                true,
                true,
                FIRST_DATA_BLOCK,
                FIRST_DATA_BLOCK,
            )),
            timed(&mut pfs(&[
                "cp",
                "-S",
                "disk",
                "-D",
                "disk",
                "/nvme1n1/big",
                "/nvme3n1/big",
            ])),
        ];
        println!(
            "round {}: MiB/s ours/dd: local -> PFS {:.0}/{:.0}, PFS -> local {:.0}/{:.0}, \
             PFS -> PFS {:.0}/{:.0}",
            round + 1,
            mbps(t[1]),
            mbps(t[0]),
            mbps(t[3]),
            mbps(t[2]),
            mbps(t[5]),
            mbps(t[4])
        );
        for (b, t) in best.iter_mut().zip(t) {
            *b = b.min(t);
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for b in busy {
        let _ = b.join();
    }
    println!(
        "devices: {kind}; {mib} MiB per copy; best of {rounds} rounds{}",
        if load > 0 {
            format!("; {load} busy threads running")
        } else {
            String::new()
        }
    );
    for (name, raw, ours) in [
        ("local -> PFS          ", best[0], best[1]),
        ("PFS -> local          ", best[2], best[3]),
        ("PFS -> PFS (2 devices)", best[4], best[5]),
    ] {
        println!(
            "{name}: ours {:>6.0} MiB/s, raw dd O_DIRECT same copy {:>6.0} MiB/s, ratio {:.2}",
            mbps(ours),
            mbps(raw),
            raw / ours
        );
    }
}
