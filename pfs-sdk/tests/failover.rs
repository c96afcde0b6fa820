//! Failover with real processes (issue 17), the SDK's part: a writer on
//! libpfsd paused past its lease while another host takes over must write
//! nothing more (§1), and an SDK process that died, or exited after forking
//! a writer, must not keep the device from the next writer (§2). The other
//! host and the operator are the `pfs` tool; `tests/c/failover.c` is the
//! SDK side. `PFS_FAILOVER_RUNS` sets the number of paused-writer runs
//! (default 20), `PFS_FAILOVER_PARALLEL` how many go at once,
//! `PFS_FAILOVER_SEED` repeats a run's pause points.

#![allow(clippy::unwrap_used)]

mod common;
use common::{program, Link, TestDev};
use pfs_tests::cli::text;
use pfs_tests::failover::{
    assert_none, collect, drain, in_parallel, next_writers_proceed, parse_calls,
    pause_and_take_over, report, signal, timed, wait_stopped, Rng, Signal, Verdict, AT_ONCE,
    LONG_LEASE_MS,
};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

/// The lease of the paused-writer runs: short, so that a run takes seconds.
const LEASE_MS: u32 = 1000;

/// One §1 run: the SDK writer of host 1 is paused at a random point of
/// its loop, host 2 takes over, the writer resumes for 2 s.
fn paused_sdk_writer(run: usize, seed: u64) -> Verdict {
    let mut rng = Rng::new(seed, run as u64);
    let dev = TestDev::new();
    let wseed = rng.next_u64() % 1_000_000;
    let pause_ms = rng.range(0, 1500);
    let label = format!("sdk run {run} (pause {pause_ms} ms, writer seed {wseed})");
    let mut w = dev
        .command(&program("failover", Link::Shared))
        .arg(&dev.pbd)
        .args(["writer", "1", "S", &wseed.to_string()])
        .env("PFS_LEASE_MS", LEASE_MS.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = w.id();
    let (lines, ready, reader) = collect(w.stdout.take().unwrap(), "ready");
    let errs = drain(w.stderr.take().unwrap());
    let tool = dev.pfs.clone().lease_ms(LEASE_MS);
    let (t, mut errors) = pause_and_take_over(&ready, pid, "writer", pause_ms, &tool, &dev.pbd);
    finish(w);
    reader.join().unwrap();
    let stderr = errs.join().unwrap();
    let (_, calls) = parse_calls(&lines.lock().unwrap());
    let g = tool.run(&["read", &dev.path("G")]).stdout;
    let names = tool.names(&dev.path(""));
    let mut v = Verdict::judge(label, t, &calls, &names, &g, tool.fsck(&dev.pbd));
    if !errors.is_empty() {
        errors.push(format!("writer's stderr: {}", tail(&stderr)));
    }
    v.errors.extend(errors);
    v
}

/// The end of a long text.
fn tail(s: &str) -> &str {
    let s = s.trim();
    let mut i = s.len().saturating_sub(600);
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

fn finish(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

#[test]
fn a_paused_sdk_writer_writes_nothing_after_a_takeover() {
    if !common::can_build() {
        return;
    }
    let started = Instant::now();
    let seed = pfs_tests::failover::seed("a_paused_sdk_writer_writes_nothing_after_a_takeover");
    // Build once before the runs start in parallel.
    let _ = (
        pfs_tests::cli::release_bin(),
        program("failover", Link::Shared),
    );
    let n = pfs_tests::failover::runs(20);
    let verdicts = in_parallel(n, pfs_tests::failover::parallel(4), |run| {
        paused_sdk_writer(run, seed)
    });
    report(
        "a_paused_sdk_writer_writes_nothing_after_a_takeover",
        &verdicts,
        started,
    );
}

// ---- §2: dead holders ----

/// Runs `failover <pbd> <mode> 1` to its end with the long lease.
fn sdk_program(dev: &TestDev, mode: &str) -> Output {
    dev.command(&program("failover", Link::Shared))
        .arg(&dev.pbd)
        .args([mode, "1"])
        .env("PFS_LEASE_MS", LONG_LEASE_MS.to_string())
        .output()
        .unwrap()
}

/// §2 for test `test`: each fresh device is left by the failover program
/// run in `mode` (`left` says whether it did what it should), then the
/// next writers must proceed at once.
fn next_writers_after(
    test: &str,
    what: &str,
    mode: &str,
    left: impl Fn(&Output) -> Result<(), String>,
) {
    if !common::can_build() {
        return;
    }
    // Built before anything is timed.
    pfs_tests::cli::release_bin();
    let started = Instant::now();
    let failures = next_writers_proceed(
        what,
        |_| TestDev::new(),
        |dev| left(&sdk_program(dev, mode)),
        false,
    );
    assert_none(test, &failures, started);
}

#[test]
fn a_killed_sdk_writer_blocks_no_one() {
    next_writers_after(
        "a_killed_sdk_writer_blocks_no_one",
        "SDK writer killed by SIGKILL",
        "crash",
        |o| match o.status.code() {
            None => Ok(()),
            Some(_) => Err(format!("the crash program did not die: {}", text(o))),
        },
    );
}

#[test]
fn a_forking_sdk_program_that_exits_leaves_the_device_free() {
    next_writers_after(
        "a_forking_sdk_program_that_exits_leaves_the_device_free",
        "forking SDK program exited",
        "fork",
        |o| {
            if !o.status.success() || String::from_utf8_lossy(&o.stdout) != "ok\n" {
                return Err(format!("the forking program failed: {}", text(o)));
            }
            Ok(())
        },
    );
}

#[test]
fn a_paused_sdk_holder_is_taken_over_with_force_and_then_plainly() {
    if !common::can_build() {
        return;
    }
    pfs_tests::cli::release_bin();
    let started = Instant::now();
    const LEASE: u32 = 1500;
    let margin = Duration::from_millis(LEASE as u64 / 5);
    let slack = Duration::from_secs(2);
    let dev = TestDev::new();
    let mut h = dev
        .command(&program("failover", Link::Shared))
        .arg(&dev.pbd)
        .args(["hold", "1"])
        .env("PFS_LEASE_MS", LEASE.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (_, held, reader) = collect(h.stdout.take().unwrap(), "held");
    held.recv_timeout(Duration::from_secs(60))
        .expect("the holder never held");
    // It renews: a plain writer of another host is refused.
    let tool = dev.pfs.clone().lease_ms(LEASE);
    let o = tool.run(&["-H", "2", "touch", &dev.path("refused")]);
    let mut failures = Vec::new();
    if o.status.code() != Some(16) {
        failures.push(format!(
            "host 2 was not refused by a live holder: {}",
            text(&o)
        ));
    }
    // And mkfs refuses the device while its writer lives.
    let o = tool.run(&["mkfs", "-f", &dev.pbd]);
    if o.status.code() != Some(16) {
        failures.push(format!("mkfs -f under a live holder: {}", text(&o)));
    }
    signal(h.id(), Signal::SIGSTOP);
    assert!(wait_stopped(h.id()));
    let lease = Duration::from_millis(LEASE as u64);
    match timed(
        &tool,
        &["-H", "2", "--force", "touch", &dev.path("forced")],
        lease + margin + slack,
    ) {
        Ok(took) if took < lease => failures.push(format!(
            "--force took over a holder after {took:?}, before its lease of {lease:?} could have run out"
        )),
        Ok(took) => eprintln!("--force took over in {took:?}"),
        Err(e) => failures.push(e),
    }
    match timed(&tool, &["-H", "2", "touch", &dev.path("plain")], AT_ONCE) {
        Ok(took) => eprintln!("plain host 2 touch after the takeover: ok in {took:?}"),
        Err(e) => failures.push(format!("after the takeover: {e}")),
    }
    signal(h.id(), Signal::SIGCONT);
    finish(h);
    reader.join().unwrap();
    let (clean, out) = tool.fsck(&dev.pbd);
    if !clean {
        failures.push(format!("fsck: {out}"));
    }
    assert_none(
        "a_paused_sdk_holder_is_taken_over_with_force_and_then_plainly",
        &failures,
        started,
    );
}

/// Whether process `pid` holds a read lock starting at or past byte `from`
/// of some file (its lines in `/proc/locks`).
fn holds_read_lock_past(pid: u32, from: u64) -> bool {
    let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    locks.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // "N: POSIX ADVISORY READ PID MAJ:MIN:INODE START END"
        f.len() >= 8
            && f[1] == "POSIX"
            && f[3] == "READ"
            && f[4] == pid.to_string()
            && f[6].parse::<u64>().is_ok_and(|s| s >= from)
    })
}

/// The first line of `c`'s output starting with `prefix`, within 30 s.
fn line_of(lines: &std::sync::mpsc::Receiver<String>, prefix: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(l) if l.starts_with(prefix) => return Some(l),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

/// Sends each line of `r` to the returned receiver.
fn lines_of(r: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn a_writer_stopped_inside_a_write_holds_up_no_truncate_of_the_next_host() {
    // Host 1's process overwrites bytes the file has, so its first device
    // write is the data write; it stops there, after its lease check,
    // holding the file's data lock in the machine's shared file (as a
    // paused primary may). Host 2 on the same machine takes the lease over
    // with force and truncates the file (as a promoted replica may): the
    // data lock of a host that no longer writes must not hold it up.
    if !common::can_build() {
        return;
    }
    let dev = TestDev::new();
    let tool = dev.pfs.clone().lease_ms(LEASE_MS);
    let o = tool.run_with_input(&["-H", "1", "write", &dev.path("f")], &[1u8; 8192]);
    assert!(o.status.success(), "{}", text(&o));
    let exe = program("datalock", Link::Shared);
    let mut w = dev
        .command(&exe)
        .arg(&dev.pbd)
        .args(["1", "overwrite", "f"])
        .env("PFS_LEASE_MS", LEASE_MS.to_string())
        .env("PFS_TEST_STOP_AT", "admitted:1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let wlines = lines_of(w.stdout.take().unwrap());
    let pid = w.id();
    assert!(
        line_of(&wlines, "pid ").is_some(),
        "the writer did not start"
    );
    assert!(
        wait_stopped(pid),
        "the writer did not stop at its data write"
    );
    // The data locks lie past 16 TiB of the shared file.
    let held = holds_read_lock_past(pid, 1 << 44);
    let mut t = dev
        .command(&exe)
        .arg(&dev.pbd)
        .args(["2", "truncate", "f"])
        .env("PFS_LEASE_MS", LEASE_MS.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let tlines = lines_of(t.stdout.take().unwrap());
    let truncated = line_of(&tlines, "truncate ");
    if truncated.is_none() {
        t.kill().unwrap();
    }
    let t_out = t.wait_with_output().unwrap();
    signal(pid, Signal::SIGCONT);
    let written = line_of(&wlines, "write ");
    let _ = w.kill();
    let w_out = w.wait_with_output().unwrap();
    assert!(held, "the stopped writer held no data lock");
    assert_eq!(
        truncated.as_deref(),
        Some("truncate 0 0"),
        "host 2's truncate did not finish while host 1 was stopped: {}",
        text(&t_out)
    );
    assert!(
        written.as_deref().is_some_and(|l| l != "write 4096 0"),
        "the deposed writer's write: {written:?} {}",
        text(&w_out)
    );
    assert!(tool.run(&["read", &dev.path("f")]).stdout.is_empty());
    dev.fsck();
}
