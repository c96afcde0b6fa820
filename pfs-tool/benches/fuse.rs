//! Through a FUSE mount against the raw file in the same run: 1 GiB
//! sequential write (`dd bs=4M conv=fsync`) and read (`dd bs=4M`), and
//! files created per second. Needs root and /dev/fuse. The device is a
//! sparse file on the same filesystem as the raw file.
//!
//! `cargo bench -p pfs-tool --bench fuse` (`PFS_BENCH_MIB` changes the size).

#![allow(missing_docs)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

const PFS: &str = env!("CARGO_BIN_EXE_pfs");

fn die(msg: String) -> ! {
    eprintln!("{msg}");
    std::process::exit(1)
}

fn run(cmd: &mut Command) -> f64 {
    let t = Instant::now();
    let out = cmd
        .stdout(Stdio::null())
        .output()
        .unwrap_or_else(|e| die(format!("{cmd:?}: {e}")));
    if !out.status.success() {
        die(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    t.elapsed().as_secs_f64()
}

fn dd(input: &Path, output: &Path, mib: u64, extra: &[&str]) -> f64 {
    run(Command::new("dd")
        .arg(format!("if={}", input.display()))
        .arg(format!("of={}", output.display()))
        .args(["bs=4M", &format!("count={}", mib / 4)])
        .args(extra))
}

fn drop_caches() {
    // Best effort: not allowed everywhere.
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
}

struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new(PFS).arg("umount").arg(&self.0).status();
    }
}

fn main() {
    if !Path::new("/dev/fuse").exists() {
        die("needs /dev/fuse (and root)".into());
    }
    let mib: u64 = std::env::var("PFS_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let dir = std::env::temp_dir().join(format!("pfs-bench-fuse-{}", std::process::id()));
    let devs = dir.join("devs");
    let mnt = dir.join("mnt");
    for d in [&devs, &mnt] {
        std::fs::create_dir_all(d).unwrap_or_else(|e| die(e.to_string()));
    }
    std::fs::File::create(devs.join("nvme1n1"))
        .and_then(|f| f.set_len(10 << 30))
        .unwrap_or_else(|e| die(e.to_string()));
    let pfs = |args: &[&str]| run(Command::new(PFS).arg("--device-dir").arg(&devs).args(args));
    pfs(&["mkfs", "nvme1n1"]);
    pfs(&[
        "-H",
        "1",
        "mount",
        "nvme1n1",
        mnt.to_str().unwrap_or_default(),
    ]);
    let guard = Unmount(mnt.clone());
    let zero = Path::new("/dev/zero");
    let null = Path::new("/dev/null");
    let raw = dir.join("raw");

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
    std::fs::create_dir(&d).unwrap_or_else(|e| die(e.to_string()));
    let t = Instant::now();
    for i in 0..n {
        std::fs::write(d.join(format!("f{i}")), b"x").unwrap_or_else(|e| die(e.to_string()));
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "created {n} one-byte files through the mount: {:.0} files/s",
        n as f64 / s
    );
    drop(guard);
    let _ = std::fs::remove_dir_all(&dir);
}
