//! Times whole `pfs` processes: `pfs stat` on a populated 10 GiB sparse
//! device (the reference takes about 120 ms, almost all mounting), and
//! `pfs mkdir` (a read-write mount, one commit, unmount).
//!
//! `cargo bench -p pfs-tool --bench stat`.

#![allow(missing_docs)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PFS: &str = env!("CARGO_BIN_EXE_pfs");

fn run(dir: &Path, args: &[&str]) -> Duration {
    let t = Instant::now();
    let st = Command::new(PFS)
        .arg("--device-dir")
        .arg(dir)
        .args(args)
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|e| {
            eprintln!("run pfs: {e}");
            std::process::exit(1)
        });
    let d = t.elapsed();
    if !st.success() {
        eprintln!("pfs {args:?} failed: {st}");
        std::process::exit(1);
    }
    d
}

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
    let dir = std::env::temp_dir().join(format!("pfs-bench-stat-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let img = dir.join("nvme1n1");
    if let Err(e) = std::fs::File::create(&img).and_then(|f| f.set_len(10 << 30)) {
        eprintln!("create device: {e}");
        std::process::exit(1);
    }
    run(&dir, &["mkfs", "nvme1n1"]);
    for i in 0..50 {
        run(&dir, &["mkdir", &format!("/nvme1n1/dir{i}")]);
    }
    let mkdirs: Vec<Duration> = (0..20)
        .map(|i| run(&dir, &["mkdir", &format!("/nvme1n1/m{i}")]))
        .collect();
    let stats: Vec<Duration> = (0..50)
        .map(|_| run(&dir, &["stat", "/nvme1n1/dir7"]))
        .collect();
    report("pfs stat process (populated 10 GiB device)", stats);
    report("pfs mkdir process (read-write mount, one commit)", mkdirs);
    let _ = std::fs::remove_dir_all(&dir);
}
