//! A real PostgreSQL server for tests: found among the system's packages,
//! run as user `postgres` on a data directory of the test's, reached
//! through a socket directory with `psql`, and stopped when dropped. A
//! test skips with a note where PostgreSQL (or root, to run it as
//! `postgres`) is missing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The newest installed PostgreSQL's `bin` directory holding every one of
/// `programs` (`postgres` is always needed); when there is none, or the
/// tests do not run as root, the test is skipped with a note.
pub fn install(programs: &[&str]) -> Option<PathBuf> {
    if !crate::require_root() || !crate::require("runuser") {
        return None;
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.flatten()
                .map(|e| e.path().join("bin"))
                .filter(|p| {
                    ["postgres"]
                        .iter()
                        .chain(programs)
                        .all(|x| p.join(x).exists())
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    let bin = found.pop();
    if bin.is_none() {
        crate::skipped(&format!(
            "no PostgreSQL server with {programs:?} in /usr/lib/postgresql (Debian package postgresql)"
        ));
    }
    bin
}

/// Runs `prog ARGS...` as user postgres; panics with its output unless it
/// succeeds; returns its stdout, trimmed.
pub fn as_postgres(prog: &Path, args: &[&str]) -> String {
    let o = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run runuser");
    assert!(
        o.status.success(),
        "{} {args:?} failed: {}\n{}",
        prog.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// A free TCP port of this machine's loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Calls `done` every 100 ms until it holds; fails the test after `secs`.
pub fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < Duration::from_secs(secs), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A PostgreSQL server run by user postgres on a data directory, listening
/// only on a socket in `sock`; stopped when dropped.
pub struct Server {
    /// The installation's `bin` directory.
    pub bin: PathBuf,
    /// The data directory.
    pub data: PathBuf,
    /// The socket directory.
    pub sock: PathBuf,
    /// Its port (names the socket).
    pub port: u16,
}

impl Server {
    /// A new cluster at `data` (initdb, trust authentication) on a free
    /// port, listening only on a socket in `sock`, with `conf` appended to
    /// its `postgresql.conf`; not started yet. The parents of `data` and
    /// `sock` must let user postgres in.
    pub fn init(bin: &Path, data: &Path, sock: &Path, conf: &str) -> Server {
        let s = Server {
            bin: bin.to_owned(),
            data: data.to_owned(),
            sock: sock.to_owned(),
            port: free_port(),
        };
        let d = data.display().to_string();
        as_postgres(
            &bin.join("initdb"),
            &["-D", &d, "--auth=trust", "-U", "postgres", "--no-sync"],
        );
        s.configure(&format!(
            "port = {}\nlisten_addresses = ''\nunix_socket_directories = '{}'\n{conf}",
            s.port,
            sock.display()
        ));
        s
    }

    /// Stops this server, and sets up one of the same installation and
    /// socket directory on the base backup `base` on a free port, with
    /// `conf` appended to its `postgresql.conf`, to recover when it starts
    /// (`recovery.signal`); not started yet.
    pub fn restore(self, base: &Path, conf: &str) -> Server {
        self.stop();
        let s = Server {
            bin: self.bin.clone(),
            data: base.to_owned(),
            sock: self.sock.clone(),
            port: free_port(),
        };
        s.configure(&format!("port = {}\n{conf}", s.port));
        let signal = base.join("recovery.signal");
        std::fs::write(&signal, b"").expect("write recovery.signal");
        let d = base.display().to_string();
        as_postgres(Path::new("chmod"), &["0700", &d]);
        let _ = Command::new("chown")
            .arg("postgres:postgres")
            .arg(&signal)
            .status();
        s
    }

    /// Appends `conf` to `postgresql.conf`.
    pub fn configure(&self, conf: &str) {
        let p = self.data.join("postgresql.conf");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .unwrap_or_else(|e| panic!("append to {}: {e}", p.display()));
    }

    /// `pg_ctl start`, waiting up to 60 s; the log goes beside the data
    /// directory (`<data>.log`).
    pub fn start(&self) {
        let data = self.data.display().to_string();
        let log = self.log().display().to_string();
        as_postgres(
            &self.bin.join("pg_ctl"),
            &["-D", &data, "-l", &log, "-w", "-t", "60", "start"],
        );
    }

    /// The server's log file.
    pub fn log(&self) -> PathBuf {
        self.data.with_extension("log")
    }

    /// `pg_ctl stop -m fast`; quiet if it is not running.
    pub fn stop(&self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "stop"])
            .output();
    }

    /// Runs `sql` with psql; its unaligned, tuples-only output.
    pub fn psql(&self, sql: &str) -> String {
        let port = self.port.to_string();
        let sock = self.sock.display().to_string();
        as_postgres(
            &self.bin.join("psql"),
            &[
                "-X", "-A", "-t", "-h", &sock, "-p", &port, "-d", "postgres", "-c", sql,
            ],
        )
    }

    /// `pg_basebackup` into `dest` without WAL (`-X none`), with a fast
    /// checkpoint.
    pub fn base_backup(&self, dest: &Path) {
        let (sock, port) = (self.sock.display().to_string(), self.port.to_string());
        let d = dest.display().to_string();
        as_postgres(
            &self.bin.join("pg_basebackup"),
            &[
                "-h", &sock, "-p", &port, "-D", &d, "-X", "none", "-c", "fast",
            ],
        );
    }

    /// Creates the table the WAL tests fill, `t (i int, pad text)`, with
    /// 1000 rows.
    pub fn create_table(&self) {
        self.psql("create table t (i int, pad text)");
        self.psql("insert into t select g, repeat('x', 200) from generate_series(1, 1000) g");
    }

    /// Four rounds of 5000 more rows in `t`, each followed by a WAL
    /// switch. Returns the last segment switched away from and the rows
    /// `t` holds now.
    pub fn insert_and_switch(&self) -> (String, u64) {
        let mut last = String::new();
        for round in 0..4 {
            self.psql(&format!(
                "insert into t select g, repeat('y', 300) from generate_series({}, {}) g",
                10_000 * (round + 1),
                10_000 * (round + 1) + 4999
            ));
            last = self.psql("select pg_walfile_name(pg_current_wal_lsn())");
            self.psql("select pg_switch_wal()");
        }
        let rows = self.psql("select count(*) from t");
        (
            last,
            rows.parse()
                .unwrap_or_else(|e| panic!("count {rows:?}: {e}")),
        )
    }

    /// Whether `bytes` are segment `name` as the server's `pg_wal` holds
    /// it; false when `pg_wal` has no such file any more. Only a segment
    /// after `last` (the last one switched away from) may differ: its file
    /// was recycled; any other difference fails the test.
    pub fn same_segment(&self, name: &str, bytes: &[u8], last: &str) -> bool {
        let Ok(local) = std::fs::read(self.data.join("pg_wal").join(name)) else {
            return false;
        };
        if local == bytes {
            return true;
        }
        assert!(name > last, "{name} differs from the server's pg_wal");
        false
    }

    /// Waits (up to 120 s) until recovery has ended.
    pub fn wait_recovered(&self) {
        wait_for("recovery", 120, || {
            self.psql("select pg_is_in_recovery()") == "f"
        });
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
