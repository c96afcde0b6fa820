//! Every bad input of the golden `errors` case: a message on stderr, a non-zero exit with the
//! reference's code where it has a meaningful one, the same stdout as the
//! reference (times aside), and no byte of any device changed. The setup
//! steps and the good inputs succeed as they did for the reference.

#![allow(clippy::unwrap_used)]

use pfs_tests::cli::Pfs;
use pfs_tests::device::Scratch;
use pfs_tests::{commands, file_digest, golden_dir};
use std::fs;
use std::path::Path;

/// Cases where we deliberately differ: the reference exits 0 after failing.
const STRICTER: &[&str] = &["028-dumpfs-not-pfs-device", "052-dumpfs-bad-chunk"];
/// Exit codes that carry meaning and must match.
const MEANINGFUL: &[i32] = &[1, 5, 16, 22, 234, 235];

/// Replaces ctime-style stamps (`Sat Nov 21 14:14:12 2026`) with a marker.
fn mask_times(s: &str) -> String {
    let days = ["Mon ", "Tue ", "Wed ", "Thu ", "Fri ", "Sat ", "Sun "];
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = days.iter().filter_map(|d| rest.find(d)).min() {
        out.push_str(&rest[..i]);
        out.push_str("<time>");
        rest = rest.get(i + 24..).unwrap_or("");
    }
    out.push_str(rest);
    // Epoch seconds (ten digits) too.
    let mut masked = String::new();
    let mut digits = String::new();
    for c in out.chars().chain(std::iter::once('\n')) {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        masked.push_str(if digits.len() == 10 {
            "<secs>"
        } else {
            &digits
        });
        digits.clear();
        masked.push(c);
    }
    masked.pop();
    masked
}

#[test]
fn bad_inputs_are_refused_cleanly() {
    let dir = Scratch::new("errors-cli");
    let pfs = Pfs::new(&dir);
    for (name, size) in [
        ("nvme1n1", 10u64 << 30),
        ("nvme9n1", 10 << 30),
        ("nvme8n1", 5 << 30),
    ] {
        dir.sparse(name, size);
    }
    let local = dir.join("local.txt");
    fs::write(&local, b"local text\n").unwrap();
    // The cp cases name fixed local paths.
    fs::create_dir_all("/tmp/golden-inputs/errors").unwrap();
    fs::create_dir_all("/tmp/golden-out").unwrap();
    fs::write("/tmp/golden-inputs/errors/local.txt", b"local text\n").unwrap();
    let _ = fs::remove_file("/tmp/golden-inputs/errors/no-such-local-file");
    let _ = fs::remove_dir_all("/tmp/golden-out/d");
    let digests = |d: &Path| -> Vec<u64> {
        ["nvme1n1", "nvme9n1", "nvme8n1"]
            .iter()
            .map(|n| file_digest(&d.join(n)))
            .collect()
    };
    let mut failures_checked = 0;
    for r in commands("errors", "outputs/commands.tsv") {
        let before = digests(&dir);
        let out = match r.stdin {
            Some(_) => pfs.run_with_file(&r.args, &local),
            None => pfs.run(&r.args),
        };
        let code = out.status.code().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        if r.exit == 0 && !STRICTER.contains(&r.id.as_str()) {
            assert_eq!(
                code,
                0,
                "{}: pfs {} failed: {stderr}",
                r.id,
                r.args.join(" ")
            );
            let want = fs::read_to_string(
                golden_dir()
                    .join("errors/outputs")
                    .join(format!("{}.stdout", r.id)),
            )
            .unwrap_or_default();
            assert_eq!(mask_times(&stdout), mask_times(&want), "{}: stdout", r.id);
            continue;
        }
        assert_ne!(code, 0, "{}: pfs {} must fail", r.id, r.args.join(" "));
        assert!(!stderr.trim().is_empty(), "{}: no message on stderr", r.id);
        assert!(!stderr.contains("panicked"), "{}: {stderr}", r.id);
        if MEANINGFUL.contains(&r.exit) {
            assert_eq!(code, r.exit, "{}: exit code ({stderr})", r.id);
        }
        // The reference's "<cmd> failed: <reason>" line, where it printed
        // one. Its reason is sometimes a stale errno ("No such file or
        // directory" for a directory rm refuses); ours is the real one.
        let want = fs::read_to_string(
            golden_dir()
                .join("errors/outputs")
                .join(format!("{}.stdout", r.id)),
        )
        .unwrap_or_default();
        if let Some((prefix, _)) = want.trim().split_once(" failed: ") {
            let prefix = prefix.rsplit('\n').next().unwrap_or(prefix);
            assert!(
                stdout.contains(&format!("{prefix} failed: ")),
                "{}: stdout {stdout:?}",
                r.id
            );
        }
        assert_eq!(digests(&dir), before, "{}: a device changed", r.id);
        failures_checked += 1;
    }
    assert!(failures_checked >= 35, "{failures_checked}");
}
