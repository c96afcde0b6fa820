//! What the tool must refuse, through the real `pfs` binary on a sparse
//! device file: changes to the system files `.pfs-paxos` and
//! `.pfs-journal`, offsets and sizes PFS cannot address, negative or zero
//! lengths, names no entry may have; and huge sparse files that must be
//! removable in bounded time. After every refusal the device still works
//! and `pfs fsck` finds it clean.

#![allow(clippy::unwrap_used)]

use pfs_tests::cli::Pfs;
use pfs_tests::device::Scratch;
use std::fs;
use std::time::Duration;

/// Runs a command that must fail with `<cmd> failed: <reason>` on stdout.
fn refused(pfs: &Pfs, args: &[&str], stdin: &[u8], reason: &str) {
    let o = pfs.run_with_input(args, stdin);
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "pfs {args:?} succeeded: {out}");
    assert!(
        out.contains(reason) || err.contains(reason),
        "pfs {args:?}: expected {reason:?}; stdout {out:?}, stderr {err:?}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// A fresh device in a scratch directory, and the tool on it; every
/// command fails the test if it runs longer than a minute (it is killed).
fn device(name: &str) -> (Scratch, Pfs) {
    let dir = Scratch::new(&format!("guards-cli-{name}"));
    let pfs = Pfs::new(&dir).time_limit(Duration::from_secs(60));
    pfs.mkfs_new("nvme1n1", 1, &[]);
    (dir, pfs)
}

/// The device still takes writes and reads them back, and fsck is clean.
fn still_healthy(pfs: &Pfs) {
    let o = pfs.run_with_input(&["write", "/nvme1n1/after"], b"still here");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(pfs.ok(&["read", "/nvme1n1/after"]), "still here");
    let fsck = pfs.run(&["fsck", "nvme1n1"]);
    assert!(
        fsck.status.success(),
        "fsck: {}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
}

#[test]
fn system_files_cannot_be_changed() {
    let (dir, pfs) = device("system");
    pfs.ok(&["touch", "/nvme1n1/x"]);
    let local = dir.join("local.bin");
    fs::write(&local, b"not a leader record").unwrap();
    let local = local.to_str().unwrap();
    let eperm = "Operation not permitted";
    for sys in ["/nvme1n1/.pfs-paxos", "/nvme1n1/.pfs-journal"] {
        refused(&pfs, &["write", sys], b"junk", eperm);
        refused(&pfs, &["write", "-o", "4096", sys], b"junk", eperm);
        refused(&pfs, &["truncate", "-l", "0", sys], b"", eperm);
        refused(&pfs, &["truncate", "-l", "8388608", sys], b"", eperm);
        refused(&pfs, &["fallocate", "-l", "4096", sys], b"", eperm);
        refused(
            &pfs,
            &["fallocate", "-o", "1073741824", "-l", "4096", sys],
            b"",
            eperm,
        );
        refused(&pfs, &["rename", "/nvme1n1/x", sys], b"", eperm);
        refused(&pfs, &["rename", sys, "/nvme1n1/moved"], b"", eperm);
        refused(&pfs, &["rm", sys], b"", eperm);
        let o = pfs.run(&["cp", "-f", local, sys]);
        assert!(!o.status.success(), "cp -f onto {sys} succeeded");
        // A PFS-to-PFS copy onto it is refused as well.
        let o = pfs.run(&["cp", "-f", "/nvme1n1/x", sys]);
        assert!(
            !o.status.success(),
            "cp -f of a PFS file onto {sys} succeeded"
        );
    }
    let ls = pfs.ok(&["ls", "/nvme1n1/"]);
    assert!(
        ls.contains(".pfs-paxos") && ls.contains(".pfs-journal"),
        "{ls}"
    );
    assert!(!ls.contains("moved"), "{ls}");
    still_healthy(&pfs);
}

#[test]
fn offsets_and_sizes_beyond_pfs_are_refused() {
    let (_dir, pfs) = device("sizes");
    pfs.ok(&["touch", "/nvme1n1/f"]);
    let einval = "Invalid argument";
    let efbig = "File too large";
    // Negative offsets and negative or zero lengths.
    refused(&pfs, &["write", "-o", "-5", "/nvme1n1/f"], b"x", einval);
    refused(&pfs, &["write", "-l", "-1", "/nvme1n1/f"], b"x", einval);
    refused(&pfs, &["write", "-l", "0", "/nvme1n1/f"], b"x", einval);
    refused(&pfs, &["read", "-l", "-1", "/nvme1n1/f"], b"", einval);
    refused(&pfs, &["read", "-l", "0", "/nvme1n1/f"], b"", einval);
    refused(&pfs, &["read", "-o", "-1", "/nvme1n1/f"], b"", einval);
    refused(&pfs, &["truncate", "-l", "-5", "/nvme1n1/f"], b"", einval);
    refused(
        &pfs,
        &["fallocate", "-o", "-4096", "-l", "4096", "/nvme1n1/f"],
        b"",
        einval,
    );
    refused(&pfs, &["fallocate", "-l", "-1", "/nvme1n1/f"], b"", einval);
    refused(&pfs, &["fallocate", "-l", "0", "/nvme1n1/f"], b"", einval);
    // Past 2^63 - 1 bytes.
    let big = "9223372036854775807"; // 2^63 - 1
    refused(&pfs, &["write", "-o", big, "/nvme1n1/f"], b"x", efbig);
    refused(
        &pfs,
        &["write", "-o", "0x8000000000000000", "/nvme1n1/f"],
        b"x",
        efbig,
    );
    refused(
        &pfs,
        &["truncate", "-l", "0x8000000000000000", "/nvme1n1/f"],
        b"",
        efbig,
    );
    refused(
        &pfs,
        &["fallocate", "-o", big, "-l", "1", "/nvme1n1/f"],
        b"",
        efbig,
    );
    // Nothing changed.
    let st = pfs.ok(&["stat", "/nvme1n1/f"]);
    assert!(st.contains("size: 0 "), "{st}");
    // Allocating more than the device has fails at once.
    refused(
        &pfs,
        &["fallocate", "-l", "0x4000000000000000", "/nvme1n1/f"],
        b"",
        "No space left on device",
    );
    still_healthy(&pfs);
}

#[test]
fn huge_sparse_files_are_removed_quickly() {
    let (_dir, pfs) = device("huge");
    let at = (1u64 << 62).to_string();
    // A write far out, a truncate far out, an allocation far out.
    let o = pfs.run_with_input(&["write", "-o", &at, "/nvme1n1/w"], b"far");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    pfs.ok(&["touch", "/nvme1n1/t"]);
    pfs.ok(&["truncate", "-l", &at, "/nvme1n1/t"]);
    pfs.ok(&["touch", "/nvme1n1/a"]);
    pfs.ok(&["fallocate", "-o", &at, "-l", "4096", "/nvme1n1/a"]);
    let st = pfs.ok(&["stat", "/nvme1n1/w"]);
    assert!(st.contains(&format!("size: {}", (1u64 << 62) + 3)), "{st}");
    let o = pfs.run(&["read", "-o", &at, "/nvme1n1/w"]);
    assert_eq!(o.stdout, b"far");
    // Shrinking walks the blocks that exist, not the address space.
    pfs.ok(&["truncate", "-l", "4096", "/nvme1n1/w"]);
    let st = pfs.ok(&["stat", "/nvme1n1/w"]);
    assert!(st.contains("size: 4096 "), "{st}");
    for f in ["/nvme1n1/w", "/nvme1n1/t", "/nvme1n1/a"] {
        pfs.ok(&["rm", f]);
    }
    still_healthy(&pfs);
}

#[test]
fn mkdir_p_follows_dot_dot() {
    let (_dir, pfs) = device("dotdot");
    pfs.ok(&["mkdir", "-p", "/nvme1n1/a/../b"]);
    pfs.ok(&["mkdir", "-p", "/nvme1n1/c/./d/.."]);
    let root = pfs.ok(&["ls", "/nvme1n1/"]);
    for name in ["a", "b", "c"] {
        assert!(
            root.lines().any(|l| l.ends_with(&format!(" {name}"))),
            "{name} missing: {root}"
        );
    }
    assert!(pfs.ok(&["ls", "/nvme1n1/a"]).starts_with("total 0"));
    let c = pfs.ok(&["ls", "/nvme1n1/c"]);
    assert!(c.lines().count() == 2 && c.contains(" d\n"), "{c}");
    // Names no entry may have are refused.
    refused(&pfs, &["mkdir", "/nvme1n1/a/.."], b"", "File exists");
    refused(&pfs, &["touch", "/nvme1n1/a/."], b"", "File exists");
    refused(
        &pfs,
        &["rename", "/nvme1n1/b", "/nvme1n1/a/.."],
        b"",
        "Invalid argument",
    );
    let tree = pfs.ok(&["tree", "/nvme1n1/"]);
    assert!(!tree.contains("|-.."), "{tree}");
    still_healthy(&pfs);
}
