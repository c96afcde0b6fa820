//! `pfs fscp` of a filesystem holding some data, next to a raw `dd`
//! (O_DIRECT, 4 MiB requests) of the same number of bytes between the same
//! two devices, in the same run. Cheap by default (512 MiB of data on
//! 10 GiB sparse files); the figure is
//! `PFS_BENCH_FSCP_MIB=10240 PFS_BENCH_FSCP_DEV_GIB=20`.
//!
//! `cargo bench -p pfs-tool --bench fscp`

#![allow(missing_docs)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

const PFS: &str = env!("CARGO_BIN_EXE_pfs");

fn die(msg: String) -> ! {
    eprintln!("{msg}");
    std::process::exit(1)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Loop devices made by this run, detached at the end.
struct Loops(Vec<String>);

impl Drop for Loops {
    fn drop(&mut self) {
        for l in &self.0 {
            let _ = Command::new("losetup").args(["-d", l]).status();
        }
    }
}

fn main() {
    let mib = env_u64("PFS_BENCH_FSCP_MIB", 512);
    let gib = env_u64("PFS_BENCH_FSCP_DEV_GIB", 10);
    let base = std::env::temp_dir().join(format!("pfs-bench-fscp-{}", std::process::id()));
    let dir = base.join("devs");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| die(e.to_string()));
    // Direct-IO loop devices when they can be made (as in real use: block
    // devices, O_DIRECT on both sides), sparse files otherwise.
    let mut loops = Loops(Vec::new());
    let mut kind = "direct-IO loop devices";
    for name in ["nvme1n1", "nvme2n1", "raw-dst"] {
        let backing = base.join(format!("{name}.img"));
        std::fs::File::create(&backing)
            .and_then(|f| f.set_len(gib << 30))
            .unwrap_or_else(|e| die(e.to_string()));
        let o = Command::new("losetup")
            .args(["--direct-io=on", "--show", "-f"])
            .arg(&backing)
            .output();
        match o {
            Ok(o) if o.status.success() && kind.starts_with("direct") => {
                let dev = String::from_utf8_lossy(&o.stdout).trim().to_owned();
                std::os::unix::fs::symlink(&dev, dir.join(name))
                    .unwrap_or_else(|e| die(e.to_string()));
                loops.0.push(dev);
            }
            _ => {
                kind = "sparse files";
                std::fs::rename(&backing, dir.join(name)).unwrap_or_else(|e| die(e.to_string()));
            }
        }
    }
    if kind == "sparse files" && !loops.0.is_empty() {
        die("could not set up every device the same way".into());
    }
    let pfs = |args: &[&str]| {
        let mut c = Command::new(PFS);
        c.arg("--device-dir").arg(&dir).args(args);
        c
    };
    let ok = |c: &mut Command| {
        let o = c.output().unwrap_or_else(|e| die(format!("{c:?}: {e}")));
        if !o.status.success() {
            die(format!("{c:?}: {}", String::from_utf8_lossy(&o.stderr)));
        }
        o
    };
    ok(&mut pfs(&["mkfs", "nvme1n1"]));
    // The data: one file written through PFS from a pipe.
    let mut w = pfs(&["write", "/nvme1n1/data"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| die(e.to_string()));
    {
        let mut input = w.stdin.take().unwrap_or_else(|| die("no stdin".into()));
        let piece: Vec<u8> = (0..4u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        for _ in 0..mib / 4 {
            input
                .write_all(&piece)
                .unwrap_or_else(|e| die(e.to_string()));
        }
    }
    if !w.wait().map(|s| s.success()).unwrap_or(false) {
        die("writing the data failed".into());
    }

    let t = Instant::now();
    let o = ok(&mut pfs(&["fscp", "nvme1n1", "nvme2n1"]));
    let fscp_s = t.elapsed().as_secs_f64();
    let out = String::from_utf8_lossy(&o.stdout);
    let used: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("[2] send "))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| die(format!("no block count in fscp's output: {out}")));

    let t = Instant::now();
    let real = |n: &str| {
        std::fs::canonicalize(dir.join(n))
            .unwrap_or_else(|e| die(e.to_string()))
            .display()
            .to_string()
    };
    ok(Command::new("dd")
        .arg(format!("if={}", real("nvme1n1")))
        .arg(format!("of={}", real("raw-dst")))
        .args([
            "bs=4M",
            &format!("count={used}"),
            "iflag=direct",
            "oflag=direct",
            "conv=fsync,notrunc",
        ])
        .stderr(Stdio::null()));
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
    drop(loops);
    let _ = std::fs::remove_dir_all(&base);
}
