//! What the tool must refuse, through the real `pfs` binary on a sparse
//! device file: changes to the system files `.pfs-paxos` and
//! `.pfs-journal`, offsets and sizes PFS cannot address, negative or zero
//! lengths, names no entry may have; and huge sparse files that must be
//! removable in bounded time. After every refusal the device still works
//! and `pfs fsck` finds it clean.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const PFS: &str = env!("CARGO_BIN_EXE_pfs");

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pfs-guards-cli-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `pfs` with `stdin` as input; fails the test if it runs longer than
/// `limit` (it is killed).
fn run(dir: &Path, args: &[&str], stdin: &[u8], limit: Duration) -> Output {
    let mut child = Command::new(PFS)
        .arg("--device-dir")
        .arg(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let _ = input.write_all(stdin);
    drop(input);
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pfs {args:?} ran longer than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn pfs(dir: &Path, args: &[&str]) -> Output {
    run(dir, args, b"", Duration::from_secs(60))
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let o = pfs(dir, args);
    assert!(
        o.status.success(),
        "pfs {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs a command that must fail with `<cmd> failed: <reason>` on stdout.
fn refused(dir: &Path, args: &[&str], stdin: &[u8], reason: &str) {
    let o = run(dir, args, stdin, Duration::from_secs(60));
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "pfs {args:?} succeeded: {out}");
    assert!(
        out.contains(reason) || err.contains(reason),
        "pfs {args:?}: expected {reason:?}; stdout {out:?}, stderr {err:?}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

fn device(name: &str) -> PathBuf {
    let dir = scratch(name);
    fs::File::create(dir.join("nvme1n1"))
        .unwrap()
        .set_len(10 << 30)
        .unwrap();
    ok(&dir, &["mkfs", "nvme1n1"]);
    dir
}

/// The device still takes writes and reads them back, and fsck is clean.
fn still_healthy(dir: &Path) {
    let o = run(
        dir,
        &["write", "/nvme1n1/after"],
        b"still here",
        Duration::from_secs(60),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(ok(dir, &["read", "/nvme1n1/after"]), "still here");
    let fsck = pfs(dir, &["fsck", "nvme1n1"]);
    assert!(
        fsck.status.success(),
        "fsck: {}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    // Every test ends here: the scratch directory goes.
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn system_files_cannot_be_changed() {
    let dir = device("system");
    ok(&dir, &["touch", "/nvme1n1/x"]);
    let local = dir.join("local.bin");
    fs::write(&local, b"not a leader record").unwrap();
    let local = local.to_str().unwrap();
    let eperm = "Operation not permitted";
    for sys in ["/nvme1n1/.pfs-paxos", "/nvme1n1/.pfs-journal"] {
        refused(&dir, &["write", sys], b"junk", eperm);
        refused(&dir, &["write", "-o", "4096", sys], b"junk", eperm);
        refused(&dir, &["truncate", "-l", "0", sys], b"", eperm);
        refused(&dir, &["truncate", "-l", "8388608", sys], b"", eperm);
        refused(&dir, &["fallocate", "-l", "4096", sys], b"", eperm);
        refused(
            &dir,
            &["fallocate", "-o", "1073741824", "-l", "4096", sys],
            b"",
            eperm,
        );
        refused(&dir, &["rename", "/nvme1n1/x", sys], b"", eperm);
        refused(&dir, &["rename", sys, "/nvme1n1/moved"], b"", eperm);
        refused(&dir, &["rm", sys], b"", eperm);
        let o = pfs(&dir, &["cp", "-f", local, sys]);
        assert!(!o.status.success(), "cp -f onto {sys} succeeded");
        // A PFS-to-PFS copy onto it is refused as well.
        let o = pfs(&dir, &["cp", "-f", "/nvme1n1/x", sys]);
        assert!(
            !o.status.success(),
            "cp -f of a PFS file onto {sys} succeeded"
        );
    }
    let ls = ok(&dir, &["ls", "/nvme1n1/"]);
    assert!(
        ls.contains(".pfs-paxos") && ls.contains(".pfs-journal"),
        "{ls}"
    );
    assert!(!ls.contains("moved"), "{ls}");
    still_healthy(&dir);
}

#[test]
fn offsets_and_sizes_beyond_pfs_are_refused() {
    let dir = device("sizes");
    ok(&dir, &["touch", "/nvme1n1/f"]);
    let einval = "Invalid argument";
    let efbig = "File too large";
    // Negative offsets and negative or zero lengths.
    refused(&dir, &["write", "-o", "-5", "/nvme1n1/f"], b"x", einval);
    refused(&dir, &["write", "-l", "-1", "/nvme1n1/f"], b"x", einval);
    refused(&dir, &["write", "-l", "0", "/nvme1n1/f"], b"x", einval);
    refused(&dir, &["read", "-l", "-1", "/nvme1n1/f"], b"", einval);
    refused(&dir, &["read", "-l", "0", "/nvme1n1/f"], b"", einval);
    refused(&dir, &["read", "-o", "-1", "/nvme1n1/f"], b"", einval);
    refused(&dir, &["truncate", "-l", "-5", "/nvme1n1/f"], b"", einval);
    refused(
        &dir,
        &["fallocate", "-o", "-4096", "-l", "4096", "/nvme1n1/f"],
        b"",
        einval,
    );
    refused(&dir, &["fallocate", "-l", "-1", "/nvme1n1/f"], b"", einval);
    refused(&dir, &["fallocate", "-l", "0", "/nvme1n1/f"], b"", einval);
    // Past 2^63 - 1 bytes.
    let big = "9223372036854775807"; // 2^63 - 1
    refused(&dir, &["write", "-o", big, "/nvme1n1/f"], b"x", efbig);
    refused(
        &dir,
        &["write", "-o", "0x8000000000000000", "/nvme1n1/f"],
        b"x",
        efbig,
    );
    refused(
        &dir,
        &["truncate", "-l", "0x8000000000000000", "/nvme1n1/f"],
        b"",
        efbig,
    );
    refused(
        &dir,
        &["fallocate", "-o", big, "-l", "1", "/nvme1n1/f"],
        b"",
        efbig,
    );
    // Nothing changed.
    let st = ok(&dir, &["stat", "/nvme1n1/f"]);
    assert!(st.contains("size: 0 "), "{st}");
    // Allocating more than the device has fails at once.
    refused(
        &dir,
        &["fallocate", "-l", "0x4000000000000000", "/nvme1n1/f"],
        b"",
        "No space left on device",
    );
    still_healthy(&dir);
}

#[test]
fn huge_sparse_files_are_removed_quickly() {
    let dir = device("huge");
    let at = (1u64 << 62).to_string();
    // A write far out, a truncate far out, an allocation far out.
    let o = run(
        &dir,
        &["write", "-o", &at, "/nvme1n1/w"],
        b"far",
        Duration::from_secs(60),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    ok(&dir, &["touch", "/nvme1n1/t"]);
    ok(&dir, &["truncate", "-l", &at, "/nvme1n1/t"]);
    ok(&dir, &["touch", "/nvme1n1/a"]);
    ok(&dir, &["fallocate", "-o", &at, "-l", "4096", "/nvme1n1/a"]);
    let st = ok(&dir, &["stat", "/nvme1n1/w"]);
    assert!(st.contains(&format!("size: {}", (1u64 << 62) + 3)), "{st}");
    let o = run(
        &dir,
        &["read", "-o", &at, "/nvme1n1/w"],
        b"",
        Duration::from_secs(60),
    );
    assert_eq!(o.stdout, b"far");
    // Shrinking walks the blocks that exist, not the address space.
    ok(&dir, &["truncate", "-l", "4096", "/nvme1n1/w"]);
    let st = ok(&dir, &["stat", "/nvme1n1/w"]);
    assert!(st.contains("size: 4096 "), "{st}");
    for f in ["/nvme1n1/w", "/nvme1n1/t", "/nvme1n1/a"] {
        ok(&dir, &["rm", f]);
    }
    still_healthy(&dir);
}

#[test]
fn mkdir_p_follows_dot_dot() {
    let dir = device("dotdot");
    ok(&dir, &["mkdir", "-p", "/nvme1n1/a/../b"]);
    ok(&dir, &["mkdir", "-p", "/nvme1n1/c/./d/.."]);
    let root = ok(&dir, &["ls", "/nvme1n1/"]);
    for name in ["a", "b", "c"] {
        assert!(
            root.lines().any(|l| l.ends_with(&format!(" {name}"))),
            "{name} missing: {root}"
        );
    }
    assert!(ok(&dir, &["ls", "/nvme1n1/a"]).starts_with("total 0"));
    let c = ok(&dir, &["ls", "/nvme1n1/c"]);
    assert!(c.lines().count() == 2 && c.contains(" d\n"), "{c}");
    // Names no entry may have are refused.
    refused(&dir, &["mkdir", "/nvme1n1/a/.."], b"", "File exists");
    refused(&dir, &["touch", "/nvme1n1/a/."], b"", "File exists");
    refused(
        &dir,
        &["rename", "/nvme1n1/b", "/nvme1n1/a/.."],
        b"",
        "Invalid argument",
    );
    let tree = ok(&dir, &["tree", "/nvme1n1/"]);
    assert!(!tree.contains("|-.."), "{tree}");
    still_healthy(&dir);
}
