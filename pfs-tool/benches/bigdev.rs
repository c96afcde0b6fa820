//! One tool command on a large device (issue 19): `pfs ls /` on a freshly
//! made 10 TiB filesystem (1,000 chunks of 10 GiB, a sparse file), its
//! time and peak memory (max RSS) next to the goal (0.2 s, 100 MB), and a
//! writer's command (`pfs touch`) beside it. As root it also drops the
//! page cache before each of five more runs, from the machine's copy of the
//! metasets (see `pfs-core`'s `metacache`) and with `PFS_META_CACHE=0`. With the reference tool built
//! (`$PFS_BENCH_REF_BIN`, else `/var/tmp/ref/bin/pfs` if it exists) and
//! `losetup` allowed (root), the reference's `pfs ls /` on the same device
//! through a loop device is shown beside ours.
//!
//! The device lives in `$PFS_BENCH_DIR` (default `/var/tmp`: a file system
//! on disk, as mkfs writes about 850 MB of metadata into it) and is removed
//! at the end; `PFS_BENCH_BIGDEV_CHUNKS` changes its size.
//!
//! `cargo bench -p pfs-tool --bench bigdev`

#![allow(missing_docs)]

use pfs_tests::cli::Pfs;
use pfs_tests::env_u64;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

/// Marks the line the measuring wrapper adds to the command's stderr.
const MARK: &str = "pfs-bench-measured";
/// The goal of issue 19 for `pfs ls /`.
const GOAL_S: f64 = 0.2;
const GOAL_MB: f64 = 100.0;

/// The wrapper mode (`bigdev --measure PROGRAM ARGS...`): runs the
/// command as this process's only child, then reports its wall time and
/// the child's max RSS (`getrusage(RUSAGE_CHILDREN)`) on stderr, and exits
/// as it did.
fn measure(cmd: &[OsString]) -> ExitCode {
    let Some((prog, args)) = cmd.split_first() else {
        eprintln!("--measure needs a command");
        return ExitCode::from(2);
    };
    let t = Instant::now();
    let status = match Command::new(prog).args(args).status() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot run {}: {e}", prog.to_string_lossy());
            return ExitCode::from(2);
        }
    };
    let secs = t.elapsed().as_secs_f64();
    let kb = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .map_or(0, |u| u.max_rss());
    eprintln!("{MARK} {secs} {kb}");
    ExitCode::from(status.code().map_or(1, |c| c.clamp(0, 255) as u8))
}

/// Time (s) and max RSS (MB) of each of `runs` runs of `args` by `pfs`.
fn runs(pfs: &Pfs, args: &[&str], runs: usize) -> Vec<(f64, f64)> {
    (0..runs)
        .map(|_| {
            let o = pfs.run(args);
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                o.status.success(),
                "{args:?} failed: {}",
                pfs_tests::cli::text(&o)
            );
            let line = err
                .lines()
                .rev()
                .find_map(|l| l.strip_prefix(MARK))
                .expect("the measuring wrapper's line");
            let mut f = line
                .split_whitespace()
                .map(|x| x.parse::<f64>().unwrap_or(0.0));
            let secs = f.next().unwrap_or(0.0);
            let kb = f.next().unwrap_or(0.0);
            (secs, kb / 1024.0)
        })
        .collect()
}

fn report(label: &str, mut v: Vec<(f64, f64)>, goal: bool) {
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let median = v[v.len() / 2].0;
    let rss = v.iter().map(|r| r.1).fold(0.0, f64::max);
    let verdict = if !goal {
        String::new()
    } else if median <= GOAL_S && rss <= GOAL_MB {
        format!("   (goal <= {GOAL_S} s, <= {GOAL_MB} MB: met)")
    } else {
        format!("   (goal <= {GOAL_S} s, <= {GOAL_MB} MB: NOT met)")
    };
    println!(
        "{label:<44} median {median:>6.3} s (min {:.3}, max {:.3}, {} runs), max RSS {rss:>6.1} MB{verdict}",
        v[0].0,
        v[v.len() - 1].0,
        v.len()
    );
}

/// Removes what it names when dropped (also when the bench panics).
struct Cleanup {
    dir: Option<PathBuf>,
    link: Option<PathBuf>,
    loopdev: Option<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(l) = self.link.take() {
            let _ = fs::remove_file(l);
        }
        if let Some(l) = self.loopdev.take() {
            let _ = Command::new("losetup").arg("-d").arg(l).status();
        }
        if let Some(d) = self.dir.take() {
            let _ = fs::remove_dir_all(d);
        }
    }
}

/// The reference's `pfs ls /` on `device` through a loop device, if the
/// reference tool and `losetup` are there.
fn reference(me: &Path, device: &Path, clean: &mut Cleanup) {
    let bin = std::env::var_os("PFS_BENCH_REF_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/ref/bin/pfs"));
    if !bin.is_file() {
        println!("reference tool: not built ({}), skipped", bin.display());
        return;
    }
    let attached = Command::new("losetup")
        .args(["--show", "-f"])
        .arg(device)
        .output();
    let loopdev = match attached {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        _ => {
            println!("reference tool: cannot attach a loop device (needs root), skipped");
            return;
        }
    };
    clean.loopdev = Some(loopdev.clone());
    // The reference opens /dev/<pbd>: a name nobody uses.
    let Some(pbd) = (90..99)
        .map(|i| format!("nvme{i}n1"))
        .find(|n| fs::symlink_metadata(Path::new("/dev").join(n)).is_err())
    else {
        println!("reference tool: no free /dev/nvme9Xn1 name, skipped");
        return;
    };
    let link = Path::new("/dev").join(&pbd);
    if std::os::unix::fs::symlink(&loopdev, &link).is_err() {
        println!("reference tool: cannot link {}, skipped", link.display());
        return;
    }
    clean.link = Some(link);
    let _ = fs::create_dir_all("/var/run/pfs");
    let me = me.to_string_lossy().into_owned();
    let ref_pfs = Pfs::without_device_dir()
        .with_bin(&bin)
        .under(&[&me, "--measure"]);
    let path = format!("/{pbd}/");
    report(
        "reference pfs ls / (loop device)",
        runs(&ref_pfs, &["-C", "disk", "ls", &path], 3),
        false,
    );
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "--measure") {
        return measure(&args[2..]);
    }
    let chunks = env_u64("PFS_BENCH_BIGDEV_CHUNKS", 1000);
    let base =
        std::env::var_os("PFS_BENCH_DIR").map_or_else(|| PathBuf::from("/var/tmp"), PathBuf::from);
    let dir = base.join(format!("pfs-bench-bigdev-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("make the bench directory");
    let mut clean = Cleanup {
        dir: Some(dir.clone()),
        link: None,
        loopdev: None,
    };
    let device = dir.join("nvme1n1");
    let size = chunks * pfs_format::layout::CHUNK_SIZE;
    fs::File::create(&device)
        .and_then(|f| f.set_len(size))
        .expect("make the sparse device");
    let me = std::env::current_exe().expect("the bench's own path");
    let me_s = me.to_string_lossy().into_owned();
    let pfs = Pfs::new(&dir);
    let t = Instant::now();
    pfs.ok(&["mkfs", "nvme1n1"]);
    println!(
        "device: {chunks} chunks of 10 GiB (a sparse file), mkfs {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let measured = pfs.clone().under(&[&me_s, "--measure"]);
    // One run first, so every measured run finds the metadata in the
    // page cache (as the reference's runs do).
    runs(&measured, &["ls", "/nvme1n1/"], 1);
    report("pfs ls /", runs(&measured, &["ls", "/nvme1n1/"], 7), true);
    // With nothing in the page cache: from the machine's copy of the
    // metasets (the first run made it), and without it.
    let cold = |pfs: &Pfs| -> Option<Vec<(f64, f64)>> {
        let mut v = Vec::new();
        for _ in 0..5 {
            fs::write("/proc/sys/vm/drop_caches", "1").ok()?;
            v.extend(runs(pfs, &["ls", "/nvme1n1/"], 1));
        }
        Some(v)
    };
    match cold(&measured) {
        Some(v) => {
            report("pfs ls /, page cache dropped", v, true);
            let whole = measured.clone().env(pfs_core::META_CACHE_ENV, "0");
            if let Some(v) = cold(&whole) {
                report("the same, PFS_META_CACHE=0 (every metaset)", v, false);
            }
        }
        None => println!("page cache not dropped (needs root): cold runs skipped"),
    }
    let touches: Vec<String> = (0..5).map(|i| format!("/nvme1n1/f{i}")).collect();
    let t: Vec<(f64, f64)> = touches
        .iter()
        .flat_map(|p| runs(&measured, &["touch", p], 1))
        .collect();
    report("pfs touch (read-write mount, one commit)", t, false);
    reference(&me, &device, &mut clean);
    drop(clean);
    ExitCode::SUCCESS
}
