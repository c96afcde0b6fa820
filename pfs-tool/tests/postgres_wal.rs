//! A real PostgreSQL server archives its WAL into a PFS image through
//! `pfs archive push`, and a point-in-time restore from a base backup
//! fetches it back with `pfs archive fetch`.
//!
//! Needs the PostgreSQL server from the system packages (`.ci/run`
//! installs it) and root (the server runs as user `postgres`).

#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PFS: &str = env!("CARGO_BIN_EXE_pfs");

fn pg_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.flatten()
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("postgres").exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().expect(
        "PostgreSQL server binaries are needed (Debian package postgresql); .ci/run installs them",
    )
}

/// Runs a command as user postgres; panics with its output on failure.
fn as_pg(args: &[&str]) -> String {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server {
    bin: PathBuf,
    data: PathBuf,
    sock: PathBuf,
    port: u16,
}

impl Server {
    fn psql(&self, sql: &str) -> String {
        as_pg(&[
            &self.bin.join("psql").display().to_string(),
            "-X",
            "-A",
            "-t",
            "-h",
            &self.sock.display().to_string(),
            "-p",
            &self.port.to_string(),
            "-d",
            "postgres",
            "-c",
            sql,
        ])
    }

    fn start(&self) {
        as_pg(&[
            &self.bin.join("pg_ctl").display().to_string(),
            "-D",
            &self.data.display().to_string(),
            "-l",
            &self.data.with_extension("log").display().to_string(),
            "-w",
            "-t",
            "60",
            "start",
        ]);
    }

    fn stop(&self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args([
                "-D",
                &self.data.display().to_string(),
                "-m",
                "fast",
                "-w",
                "stop",
            ])
            .output();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn postgres_archives_to_pfs_and_restores_from_it() {
    let bin = pg_bin();
    let t = std::env::temp_dir().join(format!("pfs-pg-{}", std::process::id()));
    let _ = fs::remove_dir_all(&t);
    fs::create_dir_all(t.join("devs")).unwrap();
    fs::create_dir_all(t.join("sock")).unwrap();
    for d in [&t, &t.join("devs"), &t.join("sock")] {
        chmod(d, 0o777);
    }
    // The tool where user postgres can run it, and the PFS device.
    let pfs = t.join("pfs");
    fs::copy(PFS, &pfs).unwrap();
    chmod(&pfs, 0o755);
    let devs = t.join("devs");
    let dev = devs.join("nvme1n1");
    fs::File::create(&dev).unwrap().set_len(10 << 30).unwrap();
    chmod(&dev, 0o666);
    let tool = |args: &[&str]| {
        let o = Command::new(&pfs)
            .arg("--device-dir")
            .arg(&devs)
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "pfs {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o.stdout
    };
    tool(&["mkfs", "nvme1n1"]);
    tool(&["mkdir", "/nvme1n1/archive"]);

    let push = format!(
        "PFS_DEVICE_DIR={} {} archive push %p /nvme1n1/archive/%f",
        devs.display(),
        pfs.display()
    );
    let fetch = format!(
        "PFS_DEVICE_DIR={} {} archive fetch /nvme1n1/archive/%f %p",
        devs.display(),
        pfs.display()
    );

    let primary = Server {
        bin: bin.clone(),
        data: t.join("primary"),
        sock: t.join("sock"),
        port: free_port(),
    };
    as_pg(&[
        &bin.join("initdb").display().to_string(),
        "-D",
        &primary.data.display().to_string(),
        "--auth=trust",
        "-U",
        "postgres",
        "--no-sync",
    ]);
    let conf = format!(
        "port = {}\nlisten_addresses = ''\nunix_socket_directories = '{}'\nwal_level = replica\narchive_mode = on\narchive_command = '{}'\nmax_wal_senders = 4\n",
        primary.port,
        primary.sock.display(),
        push
    );
    fs::OpenOptions::new()
        .append(true)
        .open(primary.data.join("postgresql.conf"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, conf.as_bytes()))
        .unwrap();
    primary.start();
    primary.psql("create table t (i int, pad text)");
    primary.psql("insert into t select g, repeat('x', 200) from generate_series(1, 1000) g");
    // Base backup without WAL: the restore must fetch it from the archive.
    let base = t.join("base");
    as_pg(&[
        &bin.join("pg_basebackup").display().to_string(),
        "-h",
        &primary.sock.display().to_string(),
        "-p",
        &primary.port.to_string(),
        "-D",
        &base.display().to_string(),
        "-X",
        "none",
        "-c",
        "fast",
    ]);
    let mut last = String::new();
    for round in 0..4 {
        primary.psql(&format!(
            "insert into t select g, repeat('y', 300) from generate_series({}, {}) g",
            10_000 * (round + 1),
            10_000 * (round + 1) + 4999
        ));
        last = primary.psql("select pg_walfile_name(pg_current_wal_lsn())");
        primary.psql("select pg_switch_wal()");
    }
    let expected: u64 = primary.psql("select count(*) from t").parse().unwrap();
    assert_eq!(expected, 21_000);
    // Wait for the archiver to get past the last switched segment.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let row = primary.psql("select archived_count, coalesce(last_archived_wal, ''), failed_count from pg_stat_archiver");
        let parts: Vec<&str> = row.split('|').collect();
        assert_eq!(
            parts[2],
            "0",
            "archive_command failed; see {}",
            primary.data.with_extension("log").display()
        );
        if parts[1] >= last.as_str() && !parts[1].is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "archiving stalled at {row}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Every segment still in pg_wal that was archived matches byte for byte.
    let listing = String::from_utf8(tool(&["ls", "/nvme1n1/archive"])).unwrap();
    let archived: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter(|n| n.len() == 24 || n.ends_with(".backup"))
        .collect();
    assert!(archived.len() >= 5, "archive holds {archived:?}");
    let mut compared = 0;
    for name in archived.iter().filter(|n| n.len() == 24) {
        let seg = primary.data.join("pg_wal").join(name);
        if let Ok(local) = fs::read(&seg) {
            let stored = tool(&["read", &format!("/nvme1n1/archive/{name}")]);
            assert_eq!(stored.len(), 16 << 20, "{name}");
            if stored == local {
                compared += 1;
            } else {
                // A recycled segment file no longer holds what was archived.
                assert!(
                    *name > last.as_str(),
                    "{name} differs from the archived copy"
                );
            }
        }
    }
    assert!(compared >= 1, "no archived segment could be compared");
    // Pushing an archived segment again (a retry) succeeds.
    primary.stop();
    drop(primary);

    // Point-in-time restore from the base backup, WAL fetched from PFS.
    let restored = Server {
        bin: bin.clone(),
        data: base.clone(),
        sock: t.join("sock"),
        port: free_port(),
    };
    let conf = format!(
        "port = {}\narchive_mode = off\nrestore_command = '{}'\n",
        restored.port, fetch
    );
    fs::OpenOptions::new()
        .append(true)
        .open(base.join("postgresql.conf"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, conf.as_bytes()))
        .unwrap();
    fs::write(base.join("recovery.signal"), b"").unwrap();
    as_pg(&["chmod", "0700", &base.display().to_string()]);
    let _ = Command::new("chown")
        .args([
            "postgres:postgres",
            &base.join("recovery.signal").display().to_string(),
        ])
        .status();
    restored.start();
    let deadline = Instant::now() + Duration::from_secs(120);
    while restored.psql("select pg_is_in_recovery()") != "f" {
        assert!(Instant::now() < deadline, "recovery did not finish");
        std::thread::sleep(Duration::from_millis(200));
    }
    let count: u64 = restored.psql("select count(*) from t").parse().unwrap();
    assert_eq!(count, expected, "rows after point-in-time restore");
    restored.stop();
    drop(restored);
    assert!(String::from_utf8(tool(&["fsck", "nvme1n1"]))
        .unwrap()
        .ends_with("clean\n"));
    let _ = fs::remove_dir_all(&t);
}
