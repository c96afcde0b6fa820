//! Failover with real processes (issue 17), the tool's and FUSE's part: a
//! writer paused past its lease while another host takes over must write
//! nothing more (§1), whether it is a process writing through `pfs mount`
//! (the FUSE server is paused) or a loop of `pfs write` and `pfs touch`
//! commands; and a killed FUSE server or tool writer must not keep the
//! device from the next writer (§2). The SDK's cases are in
//! `pfs-sdk/tests/failover.rs`; the FUSE writer is the same C program as
//! the SDK's (`pfs-sdk/tests/c/failover.c`), built with plain POSIX calls.
//!
//! `PFS_FAILOVER_RUNS` sets the number of paused-writer runs (default 20),
//! `PFS_FAILOVER_PARALLEL` how many go at once, `PFS_FAILOVER_SEED`
//! repeats a test's pause points. The FUSE tests need root and /dev/fuse
//! and pass with a note where they are missing.

#![allow(clippy::unwrap_used)]

use pfs_tests::cli::{text, Disk, Pfs};
use pfs_tests::failover::{
    assert_none, collect, drain, in_parallel, mono_ns, next_writers_proceed, parse_calls,
    pause_and_take_over, report, signal, take_over, wait_stopped, Rng, Signal, Timeline, Verdict,
    LONG_LEASE_MS,
};
use pfs_tests::fuse::{self, Mounted};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PBD: &str = "nvme1n1";

/// The lease of the paused-writer runs: short, so that a run takes seconds.
const LEASE_MS: u32 = 1000;

/// A device file with a fresh PFS in a directory of its own, which also
/// holds mount points; its tool has the short lease.
fn disk(name: &str) -> Disk {
    Disk::with(
        &format!("failover-{name}"),
        PBD,
        |p| p.lease_ms(LEASE_MS),
        &["-f"],
    )
}

/// The names in the root directory, as `pfs ls` prints them.
fn names(disk: &Disk) -> Vec<String> {
    disk.pfs.names(&disk.path(""))
}

/// A file's bytes (empty if it cannot be read).
fn read(disk: &Disk, rel: &str, len: Option<usize>) -> Vec<u8> {
    let l = len.map(|n| n.to_string());
    let p = disk.path(rel);
    let mut args = vec!["read", &p];
    if let Some(l) = &l {
        args.extend(["-l", l]);
    }
    disk.pfs.run(&args).stdout
}

/// A foreground `pfs -H 1 mount -f` server with lease `lease_ms`; stopped
/// and unmounted when dropped, also when a test fails.
fn server(disk: &Disk, lease_ms: u32) -> Mounted {
    let pfs = disk.pfs.clone().lease_ms(lease_ms);
    fuse::mount_fg(
        &pfs,
        "1",
        PBD,
        &disk.mountpoint("mnt"),
        Duration::from_secs(60),
    )
}

/// The C writer of `pfs-sdk/tests/c/failover.c` built with plain POSIX
/// calls (once).
fn posix_writer() -> PathBuf {
    static EXE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    EXE.get_or_init(|| {
        let c = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pfs-sdk/tests/c");
        let exe = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("failover-posix-{}", std::process::id()));
        let o = Command::new("cc")
            .args([
                "-std=gnu11",
                "-O1",
                "-g",
                "-Wall",
                "-Werror",
                "-DFAILOVER_POSIX",
            ])
            .arg(format!("-I{}", c.display()))
            .arg(c.join("failover.c"))
            .arg("-o")
            .arg(&exe)
            .output()
            .unwrap();
        assert!(o.status.success(), "cc failover.c: {}", text(&o));
        exe
    })
    .clone()
}

/// One §1 run with a FUSE writer: a process writes through `pfs -H 1
/// mount`; the server is paused at a random point of the writer's loop,
/// host 2 takes over, the server resumes for 2 s.
fn paused_fuse_writer(run: usize, seed: u64) -> Verdict {
    let mut rng = Rng::new(seed, run as u64);
    let disk = disk(&format!("fuse{run}"));
    let wseed = rng.next_u64() % 1_000_000;
    let pause_ms = rng.range(0, 1500);
    let label = format!("fuse run {run} (pause {pause_ms} ms, writer seed {wseed})");
    let mut server = server(&disk, LEASE_MS);
    let mut w = Command::new(posix_writer())
        .arg(&server.mp)
        .args(["writer", "-", "U", &wseed.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, ready, reader) = collect(w.stdout.take().unwrap(), "ready");
    let errs = drain(w.stderr.take().unwrap());
    let (t, mut errors) =
        pause_and_take_over(&ready, server.pid(), "server", pause_ms, &disk.pfs, PBD);
    let _ = w.kill();
    let _ = w.wait();
    server.stop();
    reader.join().unwrap();
    let stderr = errs.join().unwrap();
    let (_, calls) = parse_calls(&lines.lock().unwrap());
    let g = read(&disk, "G", None);
    let mut v = Verdict::judge(label, t, &calls, &names(&disk), &g, disk.pfs.fsck(PBD));
    // A name created through FUSE is durable once its directory is synced.
    v.creates_durable = false;
    if !errors.is_empty() {
        errors.push(format!("writer's stderr: {}", stderr.trim()));
    }
    v.errors.extend(errors);
    v
}

#[test]
fn a_paused_fuse_writer_writes_nothing_after_a_takeover() {
    const TEST: &str = "a_paused_fuse_writer_writes_nothing_after_a_takeover";
    if !fuse::available() || !pfs_tests::require("cc") {
        return;
    }
    let started = Instant::now();
    let seed = pfs_tests::failover::seed(TEST);
    posix_writer();
    let n = pfs_tests::failover::runs(20);
    let verdicts = in_parallel(n, pfs_tests::failover::parallel(4), |run| {
        paused_fuse_writer(run, seed)
    });
    report(TEST, &verdicts, started);
}

// ---- the tool writer: a loop of `pfs -H 1 write` and `pfs -H 1 touch` ----

/// One command of the loop.
#[derive(Debug, Clone)]
struct ToolCall {
    /// `write` (4 KiB of `byte` at offset 0 of F) or `touch` (of `name`).
    op: &'static str,
    name: String,
    byte: u8,
    start: i64,
    /// Exit code (-1: killed) and when it was seen.
    end: Option<(i32, i64)>,
}

/// What the loop and the pauser share. The loop reaps its commands only
/// holding the lock, so the pauser never signals a reused pid.
#[derive(Default)]
struct Loop {
    running: Option<(Child, usize)>,
    calls: Vec<ToolCall>,
    /// Set by the pauser: start no more commands.
    stop: bool,
}

/// The loop of host 1's commands: `write` whose input comes after a random
/// 0-60 ms (a slow producer), then `touch late-N`, then 20-80 ms of rest.
fn tool_loop(pfs: Pfs, shared: Arc<Mutex<Loop>>, mut rng: Rng) {
    for i in 0.. {
        for op in ["write", "touch"] {
            let byte = b'a' + (i % 26) as u8;
            let name = if op == "write" {
                "F".to_owned()
            } else {
                format!("late-{i}")
            };
            let p = format!("/{PBD}/{name}");
            let mut cmd = if op == "write" {
                let mut c = pfs.command(&["-H", "1", "write", "-o", "0", "-l", "4096", &p]);
                c.stdin(Stdio::piped());
                c
            } else {
                pfs.command(&["-H", "1", "touch", &p])
            };
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
            let mut input = {
                let mut l = shared.lock().unwrap();
                if l.stop {
                    return;
                }
                let mut child = cmd.spawn().unwrap();
                let input = child.stdin.take();
                l.calls.push(ToolCall {
                    op,
                    name,
                    byte,
                    start: mono_ns(),
                    end: None,
                });
                let k = l.calls.len() - 1;
                l.running = Some((child, k));
                input
            };
            let feed_at = Instant::now() + Duration::from_millis(rng.range(0, 60));
            loop {
                if input.is_some() && Instant::now() >= feed_at {
                    // The pipe takes 4 KiB even from a stopped reader.
                    let _ = input.take().unwrap().write_all(&[byte; 4096]);
                }
                {
                    let mut l = shared.lock().unwrap();
                    let (child, k) = l.running.as_mut().unwrap();
                    let k = *k;
                    if let Some(st) = child.try_wait().unwrap() {
                        l.calls[k].end = Some((st.code().unwrap_or(-1), mono_ns()));
                        l.running = None;
                        break;
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        std::thread::sleep(Duration::from_millis(rng.range(20, 80)));
    }
}

/// Where a paused command was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    /// It had not opened the device: it read nothing before the takeover.
    BeforeOpen,
    /// A `write` waiting for its input: F's handle is open.
    WaitingInput,
    /// Anywhere else with the device open.
    Open,
}

#[cfg(target_arch = "x86_64")]
const SYS_READ: &str = "0";
#[cfg(target_arch = "aarch64")]
const SYS_READ: &str = "63";
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const SYS_READ: &str = "?";

fn stage_of(pid: u32, device: &Path) -> Stage {
    let open = fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.flatten()
                .any(|fd| fs::read_link(fd.path()).is_ok_and(|p| p == device))
        })
        .unwrap_or(false);
    if !open {
        return Stage::BeforeOpen;
    }
    // The command runs on a thread of its own: look at every thread.
    let reading_stdin = fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks.flatten().any(|t| {
                let sys = fs::read_to_string(t.path().join("syscall")).unwrap_or_default();
                let w: Vec<&str> = sys.split_whitespace().collect();
                w.first() == Some(&SYS_READ) && w.get(1) == Some(&"0x0")
            })
        })
        .unwrap_or(false);
    if reading_stdin {
        return Stage::WaitingInput;
    }
    Stage::Open
}

/// One §1 run with the tool: the loop runs, one of its commands (a `write`
/// or a `touch`, chosen at random) is paused at a random moment, host 2
/// takes over, the command resumes.
///
/// Each command is a writer of its own, so what it may do after SIGCONT
/// depends on where it was. One that had not opened the device read
/// nothing before the takeover: it is a new writer after it and may
/// succeed (its `write` then makes a new F of its 4 KiB). A `write`
/// waiting for its input has F open from before the takeover: it must fail
/// (exit 5, or 16 "nothing was written"). Elsewhere with the device open a
/// command may still have been loading, so a `touch` may succeed, and a
/// `write` only as a new writer (a new F); one whose work was on the device
/// at the pause may report it. Always: G keeps its 4 MiB of 'G', nothing
/// of host 1 appears after the pause but the paused command's own
/// acknowledged work, a refused command leaves nothing, a non-zero exit is
/// 5 or 16, and fsck is clean.
fn paused_tool_writer(run: usize, seed: u64) -> (Verdict, String) {
    let mut rng = Rng::new(seed, run as u64);
    let disk = disk(&format!("tool{run}"));
    let device = disk.device();
    let o = disk
        .pfs
        .command(&["-H", "1", "write", &disk.path("F")])
        .stdin(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(&[b'F'; 4 << 20])?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(o.status.success(), "the first write of F: {}", text(&o));
    let pause_ms = rng.range(200, 1500);
    let into_ms = rng.range(0, 25);
    let want = if rng.next_u64() % 2 == 0 {
        "write"
    } else {
        "touch"
    };
    let label = format!("tool run {run} (pause {pause_ms} ms, {into_ms} ms into a {want})");
    let shared = Arc::new(Mutex::new(Loop::default()));
    let mut t = Timeline {
        ready: mono_ns(),
        ..Timeline::default()
    };
    let driver = {
        let (pfs, shared, rng) = (
            disk.pfs.clone(),
            Arc::clone(&shared),
            Rng::new(seed ^ 1, run as u64),
        );
        std::thread::spawn(move || tool_loop(pfs, shared, rng))
    };
    std::thread::sleep(Duration::from_millis(pause_ms));
    let mut errors = Vec::new();
    // Pause the `want` command running now, or the next one, `into_ms`
    // into it.
    let (paused, stage) = loop {
        let k = loop {
            {
                assert!(!driver.is_finished(), "the command loop ended early");
                let l = shared.lock().unwrap();
                if let Some((_, k)) = l.running.as_ref() {
                    if l.calls[*k].op == want {
                        break *k;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let since = mono_ns() - shared.lock().unwrap().calls[k].start;
        let wait = (into_ms as i64 * 1_000_000 - since).max(0);
        std::thread::sleep(Duration::from_nanos(wait as u64));
        let mut l = shared.lock().unwrap();
        match l.running.as_ref() {
            Some((c, k2)) if *k2 == k => {
                t.stop_sent = mono_ns();
                signal(c.id(), Signal::SIGSTOP);
                let pid = c.id();
                if wait_stopped(pid) {
                    t.stopped = mono_ns();
                    l.stop = true;
                    break (k, stage_of(pid, &device));
                }
                // It exited just now: take the next one.
            }
            _ => {}
        }
    };
    let at_pause = names(&disk);
    let f_at_pause = read(&disk, "F", Some(4096));
    errors.extend(take_over(&disk.pfs, PBD, &mut t));
    t.cont = mono_ns();
    {
        let l = shared.lock().unwrap();
        if let Some((c, _)) = l.running.as_ref() {
            signal(c.id(), Signal::SIGCONT);
        }
    }
    let t0 = Instant::now();
    while !driver.is_finished() && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(10));
    }
    if !driver.is_finished() {
        errors.push("the paused command did not end within 60 s".to_owned());
        if let Some((c, _)) = shared.lock().unwrap().running.as_mut() {
            let _ = c.kill();
        }
    }
    driver.join().unwrap();
    let calls = shared.lock().unwrap().calls.clone();
    let names = names(&disk);
    let g = read(&disk, "G", None);
    let f_now = names
        .iter()
        .any(|n| n == "F")
        .then(|| read(&disk, "F", None));
    let mut v = Verdict::judge(label, t, &[], &names, &g, disk.pfs.fsck(PBD));
    v.late_after.clear();
    v.f_exists = false;
    for (k, c) in calls.iter().enumerate() {
        if k < paused && c.end.map(|e| e.0) != Some(0) {
            errors.push(format!(
                "{} {} failed before the pause: {:?}",
                c.op, c.name, c.end
            ));
        }
    }
    let p = &calls[paused];
    let code = p.end.map_or(-1, |e| e.0);
    v.calls_after = 1;
    if code != 0 {
        *v.errnos_after.entry(code).or_default() += 1;
        // 5: its writes were stopped; 16: refused, nothing written; 255: it
        // proved itself the writer again (host 2 had left) but the file it
        // had open was removed meanwhile (ENOENT), so its handle writes
        // nothing to the inode number G now has.
        if code != 5 && code != 16 && code != 255 {
            errors.push(format!(
                "the paused {} exited {code}: not a clean refusal",
                p.op
            ));
        }
    }
    let done_at_pause = match p.op {
        "touch" => at_pause.contains(&p.name),
        _ => f_at_pause == vec![p.byte; 4096],
    };
    // A command that had read nothing before the takeover is a new writer
    // after it (its `write` makes a new F); one that had opened the device
    // may still have been loading. A `write` waiting for its input had F
    // open: it must not write.
    let newcomer_f = f_now.as_deref() == Some(&[p.byte; 4096][..]);
    let acked_ok = done_at_pause
        || match (p.op, stage) {
            ("touch", Stage::BeforeOpen | Stage::Open) => true,
            ("write", Stage::BeforeOpen | Stage::Open) => newcomer_f,
            _ => false,
        };
    if code == 0 && !acked_ok {
        v.acked_after.push(format!(
            "{} {} (paused at {stage:?}) exited 0",
            p.op, p.name
        ));
    }
    // Nothing of host 1 appears after the pause but the paused command's
    // own acknowledged work.
    for n in &names {
        if at_pause.contains(n) || n == "G" {
            continue;
        }
        let own = code == 0 && *n == p.name;
        if !own {
            v.late_after.push(n.clone());
        }
    }
    if f_now.is_some() && !(code == 0 && p.op == "write" && newcomer_f) {
        v.f_exists = true;
    }
    v.label = format!(
        "{} [{} {} paused at {stage:?}, exit {code}]",
        v.label, p.op, p.name
    );
    let where_ = format!("{} {stage:?}", p.op);
    v.errors.extend(errors);
    (v, where_)
}

#[test]
fn a_paused_tool_writer_writes_nothing_after_a_takeover() {
    const TEST: &str = "a_paused_tool_writer_writes_nothing_after_a_takeover";
    let started = Instant::now();
    let seed = pfs_tests::failover::seed(TEST);
    let n = pfs_tests::failover::runs(20);
    let results = in_parallel(n, pfs_tests::failover::parallel(4), |run| {
        paused_tool_writer(run, seed)
    });
    let mut stages: BTreeMap<String, usize> = BTreeMap::new();
    for (_, s) in &results {
        *stages.entry(s.clone()).or_default() += 1;
    }
    eprintln!("{TEST}: where the paused commands were: {stages:?}");
    let verdicts: Vec<Verdict> = results.into_iter().map(|(v, _)| v).collect();
    report(TEST, &verdicts, started);
}

// ---- §2: dead holders ----

#[test]
fn a_killed_fuse_server_blocks_no_one() {
    const TEST: &str = "a_killed_fuse_server_blocks_no_one";
    if !fuse::available() {
        return;
    }
    let started = Instant::now();
    let failures = next_writers_proceed(
        "FUSE server killed by SIGKILL",
        |i| disk(&format!("dead{i}")),
        |disk| {
            let mut server = server(disk, LONG_LEASE_MS);
            let mut f = fs::File::create(server.mp.join("written")).map_err(|e| e.to_string())?;
            f.write_all(&[7u8; 100_000]).map_err(|e| e.to_string())?;
            f.sync_all().map_err(|e| e.to_string())?;
            drop(f);
            let mut c = server.child.take().unwrap();
            c.kill().unwrap();
            c.wait().unwrap();
            server.stop();
            Ok(())
        },
        true,
    );
    assert_none(TEST, &failures, started);
}

#[test]
fn a_killed_tool_writer_blocks_no_one() {
    let started = Instant::now();
    let failures = next_writers_proceed(
        "tool writer killed by SIGKILL",
        |i| disk(&format!("dead{i}")),
        |disk| {
            let c = disk
                .pfs
                .clone()
                .lease_ms(LONG_LEASE_MS)
                .command(&["-H", "1", "touch", &disk.path("held")])
                .env("PFS_TEST_STOP_AT", "before-leader")
                .spawn()
                .unwrap();
            let stopped = wait_stopped(c.id());
            signal(c.id(), Signal::SIGKILL);
            let o = c.wait_with_output().unwrap();
            if !stopped {
                return Err(format!(
                    "the writer did not stop before its leader write: {}",
                    text(&o)
                ));
            }
            match o.status.code() {
                None => Ok(()),
                Some(_) => Err(format!("the writer was not killed: {}", text(&o))),
            }
        },
        true,
    );
    assert_none("a_killed_tool_writer_blocks_no_one", &failures, started);
}
