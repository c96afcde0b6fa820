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
use pfs_tests::failover::{
    drain, in_parallel, mono_ns, parse_calls, report, signal, wait_stopped, Rng, Signal, Timeline,
    Verdict,
};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// The lease of the paused-writer runs: short, so that a run takes seconds.
const LEASE_MS: u32 = 1000;

/// `lines` collects what `out` prints; `ready` hears of the first line
/// starting with `word`.
fn collect(
    out: impl std::io::Read + Send + 'static,
    word: &'static str,
) -> (
    Arc<Mutex<Vec<String>>>,
    mpsc::Receiver<()>,
    std::thread::JoinHandle<()>,
) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let l = Arc::clone(&lines);
    let h = std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if line.starts_with(word) {
                let _ = tx.send(());
            }
            l.lock().unwrap().push(line);
        }
    });
    (lines, rx, h)
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}: {}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).trim(),
        String::from_utf8_lossy(&o.stderr).trim()
    )
}

/// The names in the root directory, as `pfs ls` prints them.
fn names(dev: &TestDev) -> Vec<String> {
    let o = dev.pfs(LEASE_MS, &["ls", &dev.path("")]).output().unwrap();
    assert!(o.status.success(), "ls: {}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.starts_with("total "))
        .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
        .collect()
}

/// `pfs fsck`: clean, and what it said.
fn fsck(dev: &TestDev) -> (bool, String) {
    let o = dev.pfs(LEASE_MS, &["fsck", &dev.pbd]).output().unwrap();
    (o.status.success(), text(&o))
}

/// Host 2 takes over as an operator would: `--force rm F`, then a new
/// 4 MiB file G of 'G' bytes. Fills in the timeline; returns what failed.
fn take_over(dev: &TestDev, t: &mut Timeline) -> Vec<String> {
    let mut errors = Vec::new();
    t.takeover_start = mono_ns();
    let o = dev
        .pfs(LEASE_MS, &["-H", "2", "--force", "rm", &dev.path("F")])
        .output()
        .unwrap();
    t.takeover_committed = mono_ns();
    if !o.status.success() {
        errors.push(format!("host 2's --force rm F: {}", text(&o)));
    }
    let mut w = dev
        .pfs(LEASE_MS, &["-H", "2", "--force", "write", &dev.path("G")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    w.stdin.take().unwrap().write_all(&[b'G'; 4 << 20]).unwrap();
    let o = w.wait_with_output().unwrap();
    t.g_committed = mono_ns();
    if !o.status.success() {
        errors.push(format!("host 2's --force write G: {}", text(&o)));
    }
    errors
}

/// One §1 run: the SDK writer of host 1 is paused at a random point of
/// its loop, host 2 takes over, the writer resumes for 2 s.
fn paused_sdk_writer(run: usize, seed: u64) -> Verdict {
    let mut rng = Rng::new(seed, run as u64);
    let dev = TestDev::new(1);
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
    let mut t = Timeline::default();
    let mut errors = Vec::new();
    if ready.recv_timeout(Duration::from_secs(120)).is_err() {
        errors.push("the writer never got ready".to_owned());
    }
    t.ready = mono_ns();
    std::thread::sleep(Duration::from_millis(pause_ms));
    t.stop_sent = mono_ns();
    signal(pid, Signal::SIGSTOP);
    if !wait_stopped(pid) {
        errors.push("the writer exited before the pause".to_owned());
    }
    t.stopped = mono_ns();
    errors.extend(take_over(&dev, &mut t));
    t.cont = mono_ns();
    signal(pid, Signal::SIGCONT);
    std::thread::sleep(Duration::from_secs(2));
    finish(w);
    reader.join().unwrap();
    let stderr = errs.join().unwrap();
    let (_, calls) = parse_calls(&lines.lock().unwrap());
    let g = dev
        .pfs(LEASE_MS, &["read", &dev.path("G")])
        .output()
        .unwrap()
        .stdout;
    let mut v = Verdict::judge(label, t, &calls, &names(&dev), &g, fsck(&dev));
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
    let started = Instant::now();
    let seed = pfs_tests::failover::seed("a_paused_sdk_writer_writes_nothing_after_a_takeover");
    // Build once before the runs start in parallel.
    let _ = (common::pfs_tool(), program("failover", Link::Shared));
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

/// The lease of the dead-holder cases: long enough that "at once" and
/// "after the lease" cannot be confused.
const LONG_LEASE_MS: u32 = 6000;

/// "At once": well inside the lease.
const AT_ONCE: Duration = Duration::from_millis(LONG_LEASE_MS as u64 / 2);

/// Runs `pfs args` on `dev`; `Err` with what it said unless it succeeded
/// within `limit`.
fn timed(dev: &TestDev, lease_ms: u32, args: &[&str], limit: Duration) -> Result<Duration, String> {
    let t = Instant::now();
    let o = dev.pfs(lease_ms, args).output().unwrap();
    let took = t.elapsed();
    if !o.status.success() {
        return Err(format!("pfs {args:?}: {} after {took:?}", text(&o)));
    }
    if took > limit {
        return Err(format!("pfs {args:?} took {took:?} (limit {limit:?})"));
    }
    Ok(took)
}

/// Runs `failover <pbd> <mode> 1` to its end with the long lease.
fn sdk_program(dev: &TestDev, mode: &str) -> Output {
    dev.command(&program("failover", Link::Shared))
        .arg(&dev.pbd)
        .args([mode, "1"])
        .env("PFS_LEASE_MS", LONG_LEASE_MS.to_string())
        .output()
        .unwrap()
}

/// After `leave` (which leaves a dead or departed SDK writer of host 1
/// behind on a fresh device): host 1 writes at once; on another fresh
/// device host 2 writes at once; on a third `mkfs -f` succeeds at once.
/// Returns every failure.
fn next_writers_proceed(what: &str, leave: impl Fn(&TestDev) -> Result<(), String>) -> Vec<String> {
    let mut failures = Vec::new();
    let cases: [(&str, &[&str]); 3] = [
        ("host 1 touch", &["-H", "1", "touch"]),
        ("host 2 touch", &["-H", "2", "touch"]),
        ("mkfs -f", &["mkfs", "-f"]),
    ];
    for (case, args) in cases {
        let dev = TestDev::new(1);
        if let Err(e) = leave(&dev) {
            failures.push(format!("{what}: {e}"));
            continue;
        }
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let is_mkfs = args[0] == "mkfs";
        args.push(if is_mkfs {
            dev.pbd.clone()
        } else {
            dev.path("next")
        });
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        match timed(&dev, LONG_LEASE_MS, &a, AT_ONCE) {
            Ok(took) => {
                eprintln!("{what}: {case}: ok in {took:?}");
                if !is_mkfs {
                    // And the device keeps working, and is whole.
                    if let Err(e) = timed(&dev, LONG_LEASE_MS, &["mkfs", "-f", &dev.pbd], AT_ONCE) {
                        failures.push(format!("{what}: {case}, then mkfs -f: {e}"));
                    }
                }
            }
            Err(e) => failures.push(format!("{what}: {case}: {e}")),
        }
    }
    failures
}

fn assert_none(test: &str, failures: &[String], started: Instant) {
    eprintln!(
        "{test}: {} failures in {:.1} s",
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_killed_sdk_writer_blocks_no_one() {
    common::pfs_tool();
    let started = Instant::now();
    let failures = next_writers_proceed("SDK writer killed by SIGKILL", |dev| {
        let o = sdk_program(dev, "crash");
        match o.status.code() {
            None => Ok(()),
            Some(_) => Err(format!("the crash program did not die: {}", text(&o))),
        }
    });
    assert_none("a_killed_sdk_writer_blocks_no_one", &failures, started);
}

#[test]
fn a_forking_sdk_program_that_exits_leaves_the_device_free() {
    common::pfs_tool();
    let started = Instant::now();
    let failures = next_writers_proceed("forking SDK program exited", |dev| {
        let o = sdk_program(dev, "fork");
        if !o.status.success() || String::from_utf8_lossy(&o.stdout) != "ok\n" {
            return Err(format!("the forking program failed: {}", text(&o)));
        }
        Ok(())
    });
    assert_none(
        "a_forking_sdk_program_that_exits_leaves_the_device_free",
        &failures,
        started,
    );
}

#[test]
fn a_paused_sdk_holder_is_taken_over_with_force_and_then_plainly() {
    common::pfs_tool();
    let started = Instant::now();
    const LEASE: u32 = 1500;
    let margin = Duration::from_millis(LEASE as u64 / 5);
    let slack = Duration::from_secs(2);
    let dev = TestDev::new(1);
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
    let o = dev
        .pfs(LEASE, &["-H", "2", "touch", &dev.path("refused")])
        .output()
        .unwrap();
    let mut failures = Vec::new();
    if o.status.code() != Some(16) {
        failures.push(format!(
            "host 2 was not refused by a live holder: {}",
            text(&o)
        ));
    }
    // And mkfs refuses the device while its writer lives.
    let o = dev.pfs(LEASE, &["mkfs", "-f", &dev.pbd]).output().unwrap();
    if o.status.code() != Some(16) {
        failures.push(format!("mkfs -f under a live holder: {}", text(&o)));
    }
    signal(h.id(), Signal::SIGSTOP);
    assert!(wait_stopped(h.id()));
    let lease = Duration::from_millis(LEASE as u64);
    match timed(
        &dev,
        LEASE,
        &["-H", "2", "--force", "touch", &dev.path("forced")],
        lease + margin + slack,
    ) {
        Ok(took) if took < lease => failures.push(format!(
            "--force took over a holder after {took:?}, before its lease of {lease:?} could have run out"
        )),
        Ok(took) => eprintln!("--force took over in {took:?}"),
        Err(e) => failures.push(e),
    }
    match timed(
        &dev,
        LEASE,
        &["-H", "2", "touch", &dev.path("plain")],
        AT_ONCE,
    ) {
        Ok(took) => eprintln!("plain host 2 touch after the takeover: ok in {took:?}"),
        Err(e) => failures.push(format!("after the takeover: {e}")),
    }
    signal(h.id(), Signal::SIGCONT);
    finish(h);
    reader.join().unwrap();
    let (clean, out) = fsck(&dev);
    if !clean {
        failures.push(format!("fsck: {out}"));
    }
    assert_none(
        "a_paused_sdk_holder_is_taken_over_with_force_and_then_plainly",
        &failures,
        started,
    );
}
