//! Shared by the failover tests (issue 17): pausing and resuming real
//! processes, the monotonic clock they log with, the call log of the C
//! writer (`pfs-sdk/tests/c/failover.c`) and the verdict on one paused-writer
//! run, reproducible random pause points, and runs in parallel.

use crate::cli::{text, Disk, Pfs};
pub use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

/// Nanoseconds on `CLOCK_MONOTONIC`, the clock the C writer logs with.
pub fn mono_ns() -> i64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
    t.tv_sec() * 1_000_000_000 + t.tv_nsec()
}

/// Sends `sig` to process `pid` (ignoring a process already gone).
pub fn signal(pid: u32, sig: Signal) {
    let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), sig);
}

/// The state letter (`R`, `S`, `T`, `Z` ...) in a `/proc/.../stat` text.
fn state_of(stat: &str) -> Option<char> {
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// The state letter of the process `pid` itself (its thread-group
/// leader); `None` when it is gone.
fn process_state(pid: u32) -> Option<char> {
    state_of(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The state letters of the live threads of `pid`: a thread that is
/// exiting (`Z`, `X`) is left out, for a process with many short-lived
/// threads (librbd's) always has one now and then.
fn thread_states(pid: u32) -> Vec<char> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter_map(|s| state_of(&s))
        .filter(|&c| c != 'Z' && c != 'X')
        .collect()
}

/// Waits until every thread of `pid` is stopped (`T`); `false` if the
/// process exited (or became a zombie) instead.
pub fn wait_stopped(pid: u32) -> bool {
    let t0 = Instant::now();
    loop {
        match process_state(pid) {
            None | Some('Z' | 'X') => return false,
            Some(_) => {}
        }
        let st = thread_states(pid);
        if !st.is_empty() && st.iter().all(|&c| c == 'T' || c == 't') {
            return true;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "process {pid} did not stop: {st:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Reads `out` to its end on a thread; the text when joined.
pub fn drain(mut out: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        String::from_utf8_lossy(&b).into_owned()
    })
}

/// A count above zero from the environment variable `name`, or `default`.
fn count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

/// Runs `PFS_FAILOVER_RUNS` (or `default`) runs per writer kind.
pub fn runs(default: usize) -> usize {
    count("PFS_FAILOVER_RUNS", default)
}

/// How many runs go at once: `PFS_FAILOVER_PARALLEL` (or `default`).
pub fn parallel(default: usize) -> usize {
    count("PFS_FAILOVER_PARALLEL", default)
}

/// The seed of a test's random pause points: `PFS_FAILOVER_SEED`, or the
/// clock (printed, so a failing run can be repeated).
pub fn seed(test: &str) -> u64 {
    let s = std::env::var("PFS_FAILOVER_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| mono_ns() as u64 ^ u64::from(std::process::id()) << 32);
    eprintln!("{test}: PFS_FAILOVER_SEED={s}");
    s
}

/// splitmix64: small, reproducible, good enough for pause points.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for run `run` of a test seeded with `seed`.
    pub fn new(seed: u64, run: u64) -> Rng {
        Rng(seed ^ run.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// Runs `f(0..n)` on `par` threads; results in run order.
pub fn in_parallel<R: Send>(n: usize, par: usize, f: impl Fn(usize) -> R + Sync) -> Vec<R> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let out: Vec<std::sync::Mutex<Option<R>>> = (0..n).map(|_| Default::default()).collect();
    std::thread::scope(|s| {
        for _ in 0..par.min(n).max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let r = f(i);
                *out[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            });
        }
    });
    out.into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .expect("every run finished")
        })
        .collect()
}

/// One call of the C writer, from its `S` and `E` lines.
#[derive(Debug, Clone)]
pub struct Call {
    /// Sequence number.
    pub seq: u64,
    /// `pwrite`, `fsync`, `create` or `close`.
    pub op: String,
    /// The file's name.
    pub arg: String,
    /// When it was called (`CLOCK_MONOTONIC` ns).
    pub start: i64,
    /// How it returned: success, errno, when; `None` if it never did.
    pub end: Option<(bool, i32, i64)>,
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} {} {}", self.seq, self.op, self.arg)?;
        match self.end {
            Some((true, _, _)) => write!(f, " ok"),
            Some((false, e, _)) => write!(f, " errno {e}"),
            None => write!(f, " (no return)"),
        }
    }
}

/// The writer's log: when it was ready, and its calls in order.
pub fn parse_calls(lines: &[String]) -> (Option<i64>, Vec<Call>) {
    let mut ready = None;
    let mut calls: Vec<Call> = Vec::new();
    for l in lines {
        let w: Vec<&str> = l.split_whitespace().collect();
        match w.as_slice() {
            ["ready", t] => ready = t.parse().ok(),
            ["S", seq, op, arg, t] => calls.push(Call {
                seq: seq.parse().unwrap_or(u64::MAX),
                op: (*op).to_owned(),
                arg: (*arg).to_owned(),
                start: t.parse().unwrap_or(i64::MAX),
                end: None,
            }),
            ["E", seq, res, errno, t] => {
                let seq: u64 = seq.parse().unwrap_or(u64::MAX);
                if let Some(c) = calls.iter_mut().rev().find(|c| c.seq == seq) {
                    c.end = Some((
                        *res == "ok",
                        errno.parse().unwrap_or(-1),
                        t.parse().unwrap_or(i64::MAX),
                    ));
                }
            }
            _ => {}
        }
    }
    (ready, calls)
}

/// When things happened in one run (`CLOCK_MONOTONIC` ns).
#[derive(Debug, Clone, Copy, Default)]
pub struct Timeline {
    /// The writer became ready (its 4 MiB written).
    pub ready: i64,
    /// SIGSTOP sent.
    pub stop_sent: i64,
    /// Every thread of the paused process seen stopped.
    pub stopped: i64,
    /// Host 2's `--force rm` started.
    pub takeover_start: i64,
    /// Host 2's `--force rm` returned: its commit (the takeover) is on
    /// the device.
    pub takeover_committed: i64,
    /// Host 2's G written and committed.
    pub g_committed: i64,
    /// SIGCONT sent.
    pub cont: i64,
}

impl fmt::Display for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |t: i64| (t - self.ready) as f64 / 1e6;
        write!(
            f,
            "paused {:.0} ms after ready (stopped at {:.0}); takeover committed at {:.0} ms ({:.0} ms after the pause), G at {:.0}, SIGCONT at {:.0}",
            ms(self.stop_sent),
            ms(self.stopped),
            ms(self.takeover_committed),
            (self.takeover_committed - self.stopped) as f64 / 1e6,
            ms(self.g_committed),
            ms(self.cont)
        )
    }
}

/// What one paused-writer run left behind, and whether it is right.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// Which run (for messages).
    pub label: String,
    /// The run's times.
    pub timeline: Timeline,
    /// Bytes of G that are not 'G' (missing bytes count too).
    pub g_changed: usize,
    /// G's length as read.
    pub g_len: usize,
    /// Calls made after the writer was paused (the SDK writer: after
    /// SIGCONT; a FUSE writer: served after SIGCONT).
    pub calls_after: usize,
    /// Of them, those that succeeded: must be none.
    pub acked_after: Vec<String>,
    /// errno (the tool: exit code) → count, of those that failed.
    pub errnos_after: BTreeMap<i32, usize>,
    /// Calls running across the pause (allowed either way).
    pub straddling: Vec<String>,
    /// `late-N` files that exist although their creation started after
    /// the pause (or was never logged): must be none.
    pub late_after: Vec<String>,
    /// `late-N` creations acknowledged before the pause that are gone.
    pub lost: Vec<String>,
    /// Whether lost creations count as failures (the SDK commits each
    /// create before it returns; a FUSE create is durable only after an
    /// fsync of its directory).
    pub creates_durable: bool,
    /// Whether F exists afterwards (host 2 removed it).
    pub f_exists: bool,
    /// fsck's verdict and output.
    pub fsck_clean: bool,
    /// fsck's output when it is not clean.
    pub fsck_out: String,
    /// Anything else that went wrong in the run.
    pub errors: Vec<String>,
}

impl Verdict {
    /// Judges a run: the writer's log, the names in the root directory
    /// afterwards, G's bytes, fsck's result.
    pub fn judge(
        label: String,
        timeline: Timeline,
        calls: &[Call],
        names: &[String],
        g: &[u8],
        fsck: (bool, String),
    ) -> Verdict {
        let mut v = Verdict {
            label,
            timeline,
            g_len: g.len(),
            g_changed: g.iter().filter(|&&b| b != b'G').count()
                + (4usize << 20).saturating_sub(g.len()),
            creates_durable: true,
            f_exists: names.iter().any(|n| n == "F"),
            fsck_clean: fsck.0,
            fsck_out: if fsck.0 { String::new() } else { fsck.1 },
            ..Verdict::default()
        };
        let stopped = timeline.stopped;
        for c in calls {
            if c.start > stopped {
                v.calls_after += 1;
                match c.end {
                    Some((true, _, _)) => v.acked_after.push(c.to_string()),
                    Some((false, e, _)) => *v.errnos_after.entry(e).or_default() += 1,
                    None => {}
                }
            } else if !matches!(c.end, Some((_, _, t)) if t <= timeline.cont) {
                v.straddling.push(c.to_string());
            }
        }
        for n in names.iter().filter(|n| n.starts_with("late-")) {
            let made_before = calls
                .iter()
                .any(|c| c.op == "create" && &c.arg == n && c.start <= stopped);
            if !made_before {
                v.late_after.push(n.clone());
            }
        }
        for c in calls {
            let acked_before = matches!(c.end, Some((true, _, t)) if t < stopped);
            if c.op == "create" && acked_before && !names.contains(&c.arg) {
                v.lost.push(c.arg.clone());
            }
        }
        v
    }

    /// Whether the run kept every promise.
    pub fn ok(&self) -> bool {
        self.g_changed == 0
            && self.acked_after.is_empty()
            && self.late_after.is_empty()
            && (!self.creates_durable || self.lost.is_empty())
            && !self.f_exists
            && self.fsck_clean
            && self.errors.is_empty()
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} | G: {} bytes, {} changed | after the pause: {} calls, {} acknowledged {:?}, errors (errno or exit code: count) {:?} | late files after the pause: {:?}",
            self.label,
            if self.ok() { "ok" } else { "FAILED" },
            self.g_len,
            self.g_changed,
            self.calls_after,
            self.acked_after.len(),
            self.acked_after.iter().take(6).collect::<Vec<_>>(),
            self.errnos_after,
            self.late_after,
        )?;
        if !self.straddling.is_empty() {
            write!(f, " | across the pause: {:?}", self.straddling)?;
        }
        if !self.lost.is_empty() {
            write!(f, " | acknowledged creates lost: {:?}", self.lost)?;
        }
        if self.f_exists {
            write!(f, " | F exists again")?;
        }
        if !self.fsck_clean {
            write!(f, " | fsck: {}", self.fsck_out.trim())?;
        }
        for e in &self.errors {
            write!(f, " | {e}")?;
        }
        write!(f, " | {}", self.timeline)
    }
}

/// Prints every verdict and a summary; panics unless all are ok.
pub fn report(test: &str, verdicts: &[Verdict], started: Instant) {
    for v in verdicts {
        eprintln!("{v}");
    }
    let bad: Vec<&Verdict> = verdicts.iter().filter(|v| !v.ok()).collect();
    let changed: usize = verdicts.iter().map(|v| v.g_changed).sum();
    let acked: usize = verdicts.iter().map(|v| v.acked_after.len()).sum();
    let late: usize = verdicts.iter().map(|v| v.late_after.len()).sum();
    let mut errnos = BTreeMap::new();
    for v in verdicts {
        for (e, n) in &v.errnos_after {
            *errnos.entry(*e).or_insert(0) += n;
        }
    }
    let summary = format!(
        "{test}: {} of {} runs failed in {:.1} s; bytes of G changed: {changed} in total; calls acknowledged after the pause: {acked}; late files created after the pause: {late}; errors returned after the pause (errno or exit code: count): {errnos:?}",
        bad.len(),
        verdicts.len(),
        started.elapsed().as_secs_f64()
    );
    eprintln!("{summary}");
    assert!(
        bad.is_empty(),
        "{summary}\n{}",
        bad.iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// `lines` collects what `out` prints; `ready` hears of the first line
/// starting with `word`.
pub fn collect(
    out: impl std::io::Read + Send + 'static,
    word: &'static str,
) -> (
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    std::sync::mpsc::Receiver<()>,
    std::thread::JoinHandle<()>,
) {
    use std::io::BufRead;
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let l = std::sync::Arc::clone(&lines);
    let h = std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if line.starts_with(word) {
                let _ = tx.send(());
            }
            if let Ok(mut l) = l.lock() {
                l.push(line);
            }
        }
    });
    (lines, rx, h)
}

/// Host 2 takes over `pbd` as an operator would: `--force rm F`, then a
/// new 4 MiB file G of 'G' bytes, with the tool `pfs` (its lease set).
/// Fills in the timeline; returns what failed.
pub fn take_over(pfs: &Pfs, pbd: &str, t: &mut Timeline) -> Vec<String> {
    use std::io::Write;
    let mut errors = Vec::new();
    t.takeover_start = mono_ns();
    let o = pfs.run(&["-H", "2", "--force", "rm", &format!("/{pbd}/F")]);
    t.takeover_committed = mono_ns();
    if !o.status.success() {
        errors.push(format!("host 2's --force rm F: {}", text(&o)));
    }
    let mut w = pfs
        .command(&["-H", "2", "--force", "write", &format!("/{pbd}/G")])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("start pfs write");
    if let Some(mut input) = w.stdin.take() {
        let _ = input.write_all(&[b'G'; 4 << 20]);
    }
    let o = w.wait_with_output().expect("wait for pfs write");
    t.g_committed = mono_ns();
    if !o.status.success() {
        errors.push(format!("host 2's --force write G: {}", text(&o)));
    }
    errors
}

/// The lease of the dead-holder cases: long enough that "at once" and
/// "after the lease" cannot be confused.
pub const LONG_LEASE_MS: u32 = 6000;

/// "At once": well inside the long lease.
pub const AT_ONCE: Duration = Duration::from_millis(LONG_LEASE_MS as u64 / 2);

/// Runs `pfs args`; `Err` with what it said unless it succeeded within
/// `limit`.
pub fn timed(pfs: &Pfs, args: &[&str], limit: Duration) -> Result<Duration, String> {
    let t = Instant::now();
    let o = pfs.run(args);
    let took = t.elapsed();
    if !o.status.success() {
        return Err(format!("pfs {args:?}: {} after {took:?}", text(&o)));
    }
    if took > limit {
        return Err(format!("pfs {args:?} took {took:?} (limit {limit:?})"));
    }
    Ok(took)
}

/// After `leave` (which leaves a dead or departed writer of host 1 behind
/// on a fresh device from `fresh`): host 1 writes at once; on another
/// fresh device host 2 writes at once; on a third `mkfs -f` succeeds at
/// once. After a touch, `mkfs -f` must go through at once too (and, with
/// `fsck`, the device be clean before it). Returns every failure.
pub fn next_writers_proceed<D: AsRef<Disk>>(
    what: &str,
    fresh: impl Fn(usize) -> D,
    leave: impl Fn(&D) -> Result<(), String>,
    fsck: bool,
) -> Vec<String> {
    let mut failures = Vec::new();
    let cases: [(&str, &[&str]); 3] = [
        ("host 1 touch", &["-H", "1", "touch"]),
        ("host 2 touch", &["-H", "2", "touch"]),
        ("mkfs -f", &["mkfs", "-f"]),
    ];
    for (i, (case, args)) in cases.into_iter().enumerate() {
        let d = fresh(i);
        if let Err(e) = leave(&d) {
            failures.push(format!("{what}: {e}"));
            continue;
        }
        let disk = d.as_ref();
        let pfs = disk.pfs.clone().lease_ms(LONG_LEASE_MS);
        let is_mkfs = args[0] == "mkfs";
        let target = if is_mkfs {
            disk.pbd.clone()
        } else {
            disk.path("next")
        };
        let mut a = args.to_vec();
        a.push(&target);
        match timed(&pfs, &a, AT_ONCE) {
            Ok(took) => {
                eprintln!("{what}: {case}: ok in {took:?}");
                if !is_mkfs {
                    if fsck {
                        let (clean, out) = pfs.fsck(&disk.pbd);
                        if !clean {
                            failures.push(format!("{what}: {case}: fsck: {out}"));
                        }
                    }
                    // And the device keeps working.
                    if let Err(e) = timed(&pfs, &["mkfs", "-f", &disk.pbd], AT_ONCE) {
                        failures.push(format!("{what}: {case}, then mkfs -f: {e}"));
                    }
                }
            }
            Err(e) => failures.push(format!("{what}: {case}: {e}")),
        }
    }
    failures
}

/// Prints how many failures `test` had, and panics with them if any.
pub fn assert_none(test: &str, failures: &[String], started: Instant) {
    eprintln!(
        "{test}: {} failures in {:.1} s",
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The middle of one paused-writer run: waits (up to 120 s) for the
/// writer to say it is `ready`, lets it work `pause_ms`, stops `pid` (the
/// writer, or the server it writes through: `who`), lets host 2 take `pbd`
/// over with `tool`, then resumes `pid` for 2 s. Returns the timeline and
/// what failed.
pub fn pause_and_take_over(
    ready: &std::sync::mpsc::Receiver<()>,
    pid: u32,
    who: &str,
    pause_ms: u64,
    tool: &Pfs,
    pbd: &str,
) -> (Timeline, Vec<String>) {
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
        errors.push(format!("the {who} exited before the pause"));
    }
    t.stopped = mono_ns();
    errors.extend(take_over(tool, pbd, &mut t));
    t.cont = mono_ns();
    signal(pid, Signal::SIGCONT);
    std::thread::sleep(Duration::from_secs(2));
    (t, errors)
}
