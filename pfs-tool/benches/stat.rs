//! Times whole `pfs` processes: `pfs stat` on a populated 10 GiB sparse
//! device (the reference takes about 120 ms, almost all mounting), and
//! `pfs mkdir` (a read-write mount, one commit, unmount).
//!
//! `cargo bench -p pfs-tool --bench stat`.

#![allow(missing_docs)]

use pfs_tests::cli::Pfs;
use pfs_tests::device::Scratch;
use std::time::{Duration, Instant};

fn report(label: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{label}: median {:.2} ms, min {:.2} ms, max {:.2} ms over {} processes",
        ms(v[v.len() / 2]),
        ms(v[0]),
        ms(v[v.len() - 1]),
        v.len()
    );
}

fn main() {
    let dir = Scratch::new("bench-stat");
    let pfs = Pfs::new(&dir);
    let run = |args: &[&str]| {
        let t = Instant::now();
        pfs.ok(args);
        t.elapsed()
    };
    pfs.mkfs_new("nvme1n1", 1, &[]);
    for i in 0..50 {
        run(&["mkdir", &format!("/nvme1n1/dir{i}")]);
    }
    let mkdirs: Vec<Duration> = (0..20)
        .map(|i| run(&["mkdir", &format!("/nvme1n1/m{i}")]))
        .collect();
    let stats: Vec<Duration> = (0..50).map(|_| run(&["stat", "/nvme1n1/dir7"])).collect();
    report("pfs stat process (populated 10 GiB device)", stats);
    report("pfs mkdir process (read-write mount, one commit)", mkdirs);
}
