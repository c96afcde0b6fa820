//! `pfs fscp` of a filesystem holding some data, next to a raw `dd`
//! (O_DIRECT, 4 MiB requests) of the same number of bytes between the same
//! two devices, in the same run. Cheap by default (512 MiB of data on
//! 10 GiB sparse files); the figure is
//! `PFS_BENCH_FSCP_MIB=10240 PFS_BENCH_FSCP_DEV_GIB=20`.
//!
//! `cargo bench -p pfs-tool --bench fscp`

#![allow(missing_docs)]

use pfs_tests::cli::{run_ok, Pfs};
use pfs_tests::device::{BenchDevices, Scratch};
use pfs_tests::env_u64;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

fn main() {
    let mib = env_u64("PFS_BENCH_FSCP_MIB", 512);
    let gib = env_u64("PFS_BENCH_FSCP_DEV_GIB", 10);
    let base = Scratch::new("bench-fscp");
    let devices = BenchDevices::new(&base, &["nvme1n1", "nvme2n1", "raw-dst"], gib << 30);
    let kind = devices.kind;
    let pfs = Pfs::new(&devices.dir);
    pfs.ok(&["mkfs", "nvme1n1"]);
    // The data: one file written through PFS from a pipe.
    let mut w = pfs
        .command(&["write", "/nvme1n1/data"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start pfs write");
    {
        let mut input = w.stdin.take().expect("stdin of pfs write");
        let piece: Vec<u8> = (0..4u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        for _ in 0..mib / 4 {
            input.write_all(&piece).expect("feed pfs write");
        }
    }
    let o = w.wait_with_output().expect("wait for pfs write");
    assert!(
        o.status.success(),
        "writing the data failed: {}",
        pfs_tests::cli::text(&o)
    );

    let t = Instant::now();
    let out = pfs.ok(&["fscp", "nvme1n1", "nvme2n1"]);
    let fscp_s = t.elapsed().as_secs_f64();
    let used: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("[2] send "))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no block count in fscp's output: {out}"));

    let t = Instant::now();
    let real = |n: &str| devices.real(n).display().to_string();
    run_ok(
        Command::new("dd")
            .arg(format!("if={}", real("nvme1n1")))
            .arg(format!("of={}", real("raw-dst")))
            .args([
                "bs=4M",
                &format!("count={used}"),
                "iflag=direct",
                "oflag=direct",
                "conv=fsync,notrunc",
            ])
            .stderr(Stdio::null()),
    );
    let dd_s = t.elapsed().as_secs_f64();

    let bytes = used as f64 * 4.0 * 1024.0 * 1024.0;
    let rate = |s: f64| bytes / s / (1 << 20) as f64;
    println!(
        "fscp of {used} used blocks ({mib} MiB of file data, {gib} GiB {kind}): \
         {fscp_s:.2} s, {:.0} MiB/s; dd of the same bytes: {dd_s:.2} s, {:.0} MiB/s; \
         ratio {:.2}",
        rate(fscp_s),
        rate(dd_s),
        dd_s / fscp_s
    );
}
