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
