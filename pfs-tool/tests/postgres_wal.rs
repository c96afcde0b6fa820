//! A real PostgreSQL server archives its WAL into a PFS image through
//! `pfs archive push`, and a point-in-time restore from a base backup
//! fetches it back with `pfs archive fetch`.
//!
//! Needs the PostgreSQL server from the system packages (`.ci/run`
//! installs it) and root (the server runs as user `postgres`); skips with
//! a note where either is missing.

#![allow(clippy::unwrap_used)]

use pfs_tests::cli::Pfs;
use pfs_tests::device::Scratch;
use pfs_tests::pg::{self, Server};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn postgres_archives_to_pfs_and_restores_from_it() {
    let Some(bin) = pg::install(&["initdb", "pg_ctl", "psql", "pg_basebackup"]) else {
        return;
    };
    let t = Scratch::new("pg");
    let devs = t.subdir("devs");
    let sock = t.subdir("sock");
    for d in [t.path(), &devs, &sock] {
        chmod(d, 0o777);
    }
    // The tool where user postgres can run it, and the PFS device.
    let pfs = t.join("pfs");
    fs::copy(pfs_tests::cli::bin(), &pfs).unwrap();
    chmod(&pfs, 0o755);
    let tool = Pfs::new(&devs).with_bin(&pfs);
    tool.mkfs_new("nvme1n1", 1, &[]);
    chmod(&devs.join("nvme1n1"), 0o666);
    tool.ok(&["mkdir", "/nvme1n1/archive"]);

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

    let primary = Server::init(
        &bin,
        &t.join("primary"),
        &sock,
        &format!(
            "wal_level = replica\narchive_mode = on\narchive_command = '{push}'\nmax_wal_senders = 4\n"
        ),
    );
    primary.start();
    primary.create_table();
    // Base backup without WAL: the restore must fetch it from the archive.
    let base = t.join("base");
    primary.base_backup(&base);
    let (last, expected) = primary.insert_and_switch();
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
            primary.log().display()
        );
        if parts[1] >= last.as_str() && !parts[1].is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "archiving stalled at {row}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Every segment still in pg_wal that was archived matches byte for byte.
    let listing = tool.ok(&["ls", "/nvme1n1/archive"]);
    let archived: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter(|n| n.len() == 24 || n.ends_with(".backup"))
        .collect();
    assert!(archived.len() >= 5, "archive holds {archived:?}");
    let mut compared = 0;
    for name in archived.iter().filter(|n| n.len() == 24) {
        if !primary.data.join("pg_wal").join(name).exists() {
            continue;
        }
        let stored = tool.ok_bytes(&["read", &format!("/nvme1n1/archive/{name}")]);
        assert_eq!(stored.len(), 16 << 20, "{name}");
        if primary.same_segment(name, &stored, &last) {
            compared += 1;
        }
    }
    assert!(compared >= 1, "no archived segment could be compared");
    // Point-in-time restore from the base backup, WAL fetched from PFS.
    let restored = primary.restore(
        &base,
        &format!("archive_mode = off\nrestore_command = '{fetch}'\n"),
    );
    restored.start();
    restored.wait_recovered();
    let count: u64 = restored.psql("select count(*) from t").parse().unwrap();
    assert_eq!(count, expected, "rows after point-in-time restore");
    drop(restored);
    tool.fsck_clean("nvme1n1");
}
