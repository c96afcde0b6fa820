//! Progress of long work, on stderr only (stdout stays the reference's):
//! a bar drawn by indicatif when stderr is a terminal, plain lines every
//! few seconds when it is not (a log file, a pipe, the journal of a
//! service), so a log of a long copy reads as lines with counts, never as
//! one line rewritten with `\r`. Work that ends within the first interval
//! shows nothing at all; work that printed lines ends with a `done` line.
//!
//! `PFS_PROGRESS_MS` sets the interval in milliseconds (default 5000; the
//! bar appears after at most one second); `0` turns progress off.
//!
//! A [`Progress`] belongs to one piece of work; its threads count through
//! `&Progress`. The display goes away when it is dropped.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Variable that sets the interval (ms) of the plain lines.
const INTERVAL_ENV: &str = "PFS_PROGRESS_MS";
/// Default interval of the plain lines.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// Longest wait before the bar shows on a terminal.
const BAR_DELAY: Duration = Duration::from_secs(1);

/// What the main counter counts.
#[derive(Debug, Clone, Copy)]
pub enum Unit {
    /// Bytes (shown in KiB, MiB, GiB, with a rate).
    Bytes,
    /// Things of this name (`"blocks"`, `"entries"`).
    Items(&'static str),
    /// Nothing: only the time taken.
    Time,
}

/// A progress display, or none.
#[derive(Default)]
pub struct Progress(Option<Active>);

/// A display and the thread that shows it.
struct Active {
    shared: Arc<Shared>,
    /// Dropping it wakes the ticker, which then ends.
    stop: Option<mpsc::Sender<()>>,
    ticker: Option<JoinHandle<()>>,
}

/// What the work and the ticker share.
struct Shared {
    /// `"fscp: copying"`, `"rm -r /nvme1n1/dir"`: what the work is.
    what: String,
    unit: Unit,
    done: AtomicU64,
    /// 0 when unknown.
    total: u64,
    /// The second counter (files copied, chunks done) and its name.
    count: AtomicU64,
    count_label: Option<&'static str>,
    start: Instant,
    view: View,
}

enum View {
    /// A bar, hidden until the ticker shows it.
    Bar(ProgressBar),
    /// Plain lines; whether one has been printed yet.
    Lines(AtomicBool),
}

/// The interval from the environment; `None` when progress is off.
fn interval() -> Option<Duration> {
    match std::env::var(INTERVAL_ENV)
        .ok()
        .map(|v| v.trim().parse::<u64>())
    {
        Some(Ok(0)) => None,
        Some(Ok(ms)) => Some(Duration::from_millis(ms)),
        _ => Some(DEFAULT_INTERVAL),
    }
}

/// `n` bytes for a person: `512 B`, `3.5 MiB`, `1.2 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

impl Progress {
    /// No display: every call does nothing.
    pub fn none() -> Progress {
        Progress(None)
    }

    /// Starts the display of `what`, counting `unit` up to `total` (when
    /// known), with a second counter named `count_label` (files, chunks)
    /// if given.
    pub fn start(
        what: impl Into<String>,
        unit: Unit,
        total: Option<u64>,
        count_label: Option<&'static str>,
    ) -> Progress {
        let Some(every) = interval() else {
            return Progress::none();
        };
        let what = what.into();
        let view = if std::io::stderr().is_terminal() {
            View::Bar(bar(&what, unit, total))
        } else {
            View::Lines(AtomicBool::new(false))
        };
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            what,
            unit,
            done: AtomicU64::new(0),
            total: total.unwrap_or(0),
            count: AtomicU64::new(0),
            count_label,
            start: Instant::now(),
            view,
        });
        shared.refresh_message();
        let theirs = Arc::clone(&shared);
        let Ok(ticker) = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || tick(&theirs, &rx, every))
        else {
            // No thread: no display (the work goes on all the same).
            return Progress::none();
        };
        Progress(Some(Active {
            shared,
            stop: Some(tx),
            ticker: Some(ticker),
        }))
    }

    /// Counts `n` more units done.
    pub fn inc(&self, n: u64) {
        if let Some(Active { shared: s, .. }) = &self.0 {
            s.done.fetch_add(n, Ordering::Relaxed);
            if let View::Bar(b) = &s.view {
                b.inc(n);
            }
        }
    }

    /// Counts `n` more of the second counter (files, chunks).
    pub fn count(&self, n: u64) {
        if let Some(Active { shared: s, .. }) = &self.0 {
            s.count.fetch_add(n, Ordering::Relaxed);
            s.refresh_message();
        }
    }

    /// Runs `f` with the bar off the screen, so what `f` prints to the
    /// same terminal is not drawn over.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.0 {
            Some(Active { shared: s, .. }) => match &s.view {
                View::Bar(b) => b.suspend(f),
                View::Lines(_) => f(),
            },
            None => f(),
        }
    }
}

/// A hidden bar for `what`; the ticker shows it after a moment.
fn bar(what: &str, unit: Unit, total: Option<u64>) -> ProgressBar {
    let template = match (unit, total) {
        (Unit::Bytes, Some(_)) => {
            "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg} eta {eta}".to_owned()
        }
        (Unit::Bytes, None) => "{spinner} {prefix} {bytes} {bytes_per_sec} {msg} {elapsed}".into(),
        (Unit::Items(u), Some(_)) => {
            format!("{{prefix}} [{{bar:30}}] {{pos}}/{{len}} {u} {{msg}} eta {{eta}}")
        }
        (Unit::Items(u), None) => format!("{{spinner}} {{prefix}} {{pos}} {u} {{msg}} {{elapsed}}"),
        (Unit::Time, _) => "{spinner} {prefix} {elapsed}".into(),
    };
    let style = ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    ProgressBar::with_draw_target(total, ProgressDrawTarget::hidden())
        .with_style(style)
        .with_prefix(what.to_owned())
        .with_finish(ProgressFinish::AndClear)
}

/// The ticker: shows the bar after a moment, or prints a line every
/// `every`, until the work is over (its [`Progress`] dropped).
fn tick(s: &Shared, stop: &mpsc::Receiver<()>, every: Duration) {
    let mut wait = match s.view {
        View::Bar(_) => every.min(BAR_DELAY),
        View::Lines(_) => every,
    };
    loop {
        match stop.recv_timeout(wait) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // The sender went with the work.
            _ => return,
        }
        match &s.view {
            View::Bar(b) => {
                b.set_draw_target(ProgressDrawTarget::stderr());
                b.enable_steady_tick(Duration::from_millis(200));
                return;
            }
            View::Lines(printed) => {
                s.print_line(false);
                printed.store(true, Ordering::Relaxed);
            }
        }
        wait = every;
    }
}

impl Shared {
    /// The bar's message: the second counter.
    fn refresh_message(&self) {
        if let View::Bar(b) = &self.view {
            b.set_message(self.second().unwrap_or_default());
        }
    }

    /// The second counter, as shown after the main one.
    fn second(&self) -> Option<String> {
        self.count_label
            .map(|label| format!("{} {label}", self.count.load(Ordering::Relaxed)))
    }

    /// One plain line: `pfs: fscp: copying: 120/269 blocks (45%), 1 chunks
    /// done, 8.0 s`, or for the end `pfs: fscp: copying: done: ...`.
    fn print_line(&self, last: bool) {
        let done = self.done.load(Ordering::Relaxed);
        let total = self.total;
        let secs = self.start.elapsed().as_secs_f64();
        let mut parts = Vec::new();
        let pct = |d: u64| format!(" ({:.0}%)", d.min(total) as f64 * 100.0 / total as f64);
        match self.unit {
            Unit::Bytes if total > 0 => parts.push(format!(
                "{}/{}{}",
                human_bytes(done),
                human_bytes(total),
                pct(done)
            )),
            Unit::Bytes => parts.push(human_bytes(done)),
            Unit::Items(u) if total > 0 => parts.push(format!("{done}/{total} {u}{}", pct(done))),
            Unit::Items(u) => parts.push(format!("{done} {u}")),
            Unit::Time => {}
        }
        parts.extend(self.second());
        parts.push(format!("{secs:.1} s"));
        if let Unit::Bytes = self.unit {
            if secs > 0.0 {
                parts.push(format!("{}/s", human_bytes((done as f64 / secs) as u64)));
            }
        }
        let head = if last { "done: " } else { "" };
        let _ = writeln!(
            std::io::stderr(),
            "pfs: {}: {head}{}",
            self.what,
            parts.join(", ")
        );
    }
}

impl Drop for Active {
    /// Stops the ticker, then ends the display: the bar is cleared (with
    /// the last reference to it), the lines get their `done` line.
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        if let View::Lines(printed) = &self.shared.view {
            if printed.load(Ordering::Relaxed) {
                self.shared.print_line(true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn bytes_read_as_a_person_would() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 20 | 512 << 10), "3.5 MiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
    }
}
