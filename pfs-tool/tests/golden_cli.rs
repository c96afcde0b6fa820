//! The `pfs` binary against the reference's golden cases: our mkfs/growfs
//! write the reference's bytes, and the inspection commands print the
//! reference's stdout on its images without changing them.

#![allow(clippy::unwrap_used)]

use pfs_tests::cli::Pfs;
use pfs_tests::device::{sparse_copy, Scratch};
use pfs_tests::{commands, device_dir, expand, file_digest, golden_dir, Recorded};
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

/// Commands we implement and that never change a device.
const INSPECT: &[&str] = &[
    "dumpfs", "dumple", "info", "usedinfo", "ls", "tree", "stat", "read", "map", "du",
];
/// Recorded inspections we answer differently on purpose.
const SKIP: &[(&str, &str)] = &[
    // The reference's restore of 3 chunks onto a 2-chunk device left
    // headers saying 3 chunks; its dumpfs prints the readable ones and exits
    // 0, ours refuses the inconsistent device as corrupt (exit 5). Our
    // restore never makes such a device (see tools_cli.rs).
    ("chunk-backup", "065-dumpfs-3"),
];
/// Commands that change a device.
const MUTATING: &[&str] = &[
    "mkfs",
    "growfs",
    "write",
    "touch",
    "mkdir",
    "rm",
    "rmdir",
    "rename",
    "truncate",
    "fallocate",
    "cp",
    "flushlog",
    "chunk",
    "fscp",
    "fstrim",
];

/// The subcommand word of a recorded command line.
fn subcommand(r: &Recorded) -> &str {
    let mut it = r.args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-C" | "-H" | "-t" => {
                it.next();
            }
            s if s.starts_with('-') => {}
            s => return s,
        }
    }
    ""
}

/// Runs every inspection command recorded after the case's last mutating
/// step and compares stdout and success with the reference's.
fn check_inspection_of(case: &str, tsv: &str, outputs: &str, devices: &[(&str, &str)]) {
    let dir = device_dir(case, devices);
    let pfs = Pfs::new(&dir);
    let before: Vec<u64> = devices
        .iter()
        .map(|(_, p)| file_digest(&dir.join(p)))
        .collect();
    let recorded = commands(case, tsv);
    let last_mutation = recorded
        .iter()
        .rposition(|r| MUTATING.contains(&subcommand(r)))
        .map(|i| i + 1)
        .unwrap_or(0);
    let mut checked = 0;
    for r in &recorded[last_mutation..] {
        if !INSPECT.contains(&subcommand(r)) || SKIP.contains(&(case, r.id.as_str())) {
            continue;
        }
        let out = pfs.run(&r.args);
        let base = golden_dir().join(case).join(outputs);
        let want_path = base.join(format!("{}.stdout", r.id));
        let sha_path = base.join(format!("{}.stdout.sha256", r.id));
        if let Ok(sha) = fs::read_to_string(&sha_path) {
            let mut words = sha.split_whitespace();
            let hash = words.next().unwrap_or_default();
            let size = words
                .find_map(|w| w.strip_prefix("size="))
                .unwrap_or_default();
            assert_eq!(
                (
                    pfs_tests::sha256_hex(&out.stdout),
                    out.stdout.len().to_string()
                ),
                (hash.to_owned(), size.to_owned()),
                "{case} {}: stdout of `pfs {}` (stderr: {})",
                r.id,
                r.args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let want = fs::read(&want_path).unwrap_or_default();
        if !want_path.exists() && sha_path.exists() {
            // Only the digest was kept (large output); checked above.
        } else if out.stdout != want {
            let (got, want) = (
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&want),
            );
            let line = got.lines().zip(want.lines()).position(|(a, b)| a != b);
            panic!(
                "{case} {}: stdout of `pfs {}` differs at line {line:?} ({} vs {} lines); ours: {:?}, reference: {:?}; stderr: {}",
                r.id,
                r.args.join(" "),
                got.lines().count(),
                want.lines().count(),
                line.and_then(|l| got.lines().nth(l)),
                line.and_then(|l| want.lines().nth(l)),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert_eq!(
            out.status.success(),
            r.exit == 0,
            "{case} {}: exit {:?}",
            r.id,
            out.status
        );
        checked += 1;
    }
    assert!(checked > 0, "{case}: no inspection command checked");
    let after: Vec<u64> = devices
        .iter()
        .map(|(_, p)| file_digest(&dir.join(p)))
        .collect();
    assert_eq!(before, after, "{case}: inspection changed a device");
}

/// The case's one device, `nvme1n1`.
const ONE: &[(&str, &str)] = &[("nvme1n1", "nvme1n1")];

/// The case's three devices `nvme1n1`, `nvme2n1`, `nvme3n1`.
const THREE: &[(&str, &str)] = &[
    ("nvme1n1", "nvme1n1"),
    ("nvme2n1", "nvme2n1"),
    ("nvme3n1", "nvme3n1"),
];

/// [`check_inspection_of`] the case's main command list.
fn check_inspection(case: &str, devices: &[(&str, &str)]) {
    check_inspection_of(case, "outputs/commands.tsv", "outputs", devices);
}

#[test]
fn inspection_fresh_1chunk() {
    check_inspection("fresh-1chunk", ONE);
}

#[test]
fn inspection_fresh_3chunk() {
    check_inspection("fresh-3chunk-u10", ONE);
}

#[test]
fn inspection_grown() {
    check_inspection("grown", ONE);
}

#[test]
fn inspection_populated() {
    check_inspection("populated", ONE);
}

#[test]
fn inspection_populated_flushlog() {
    check_inspection_of(
        "populated",
        "flushlog/outputs/commands.tsv",
        "flushlog/outputs",
        &[("nvme1n1-flushlog", "nvme1n1")],
    );
}

#[test]
fn inspection_chunk_backup() {
    check_inspection("chunk-backup", THREE);
}

#[test]
fn inspection_fscp() {
    check_inspection("fscp", THREE);
}

#[test]
fn inspection_fstrim() {
    check_inspection("fstrim", THREE);
}

#[test]
fn inspection_tail() {
    check_inspection("tail", ONE);
}

#[test]
fn inspection_cross_pbd() {
    check_inspection(
        "cross-pbd",
        &[("nvme1n1", "nvme1n1"), ("nvme2n1", "nvme2n1")],
    );
}

/// Offsets inside a 128-byte inode object that hold clock values
/// (`in_ctime`, `in_mtime`, `in_btime`) or the checksum covering them.
fn is_clock_byte(i: usize) -> bool {
    (36..40).contains(&i) || (88..112).contains(&i)
}

/// Compares two sparse images: every byte equal, except clock bytes of
/// inode objects (inside a chunk's inode metaset).
fn compare_images(ours: &Path, golden: &Path) {
    compare_images_allowing(ours, golden, true)
}

/// Compares two sparse images; with `allow_clock`, clock bytes of inode
/// objects in the metasets may differ.
fn compare_images_allowing(ours: &Path, golden: &Path, allow_clock: bool) {
    let mut clock_diffs = 0;
    pfs_tests::for_each_difference(ours, golden, |off, p, q| {
        let in_chunk = off % (10 << 30);
        let in_inodes = (0x91000..0xD1000).contains(&in_chunk);
        // The writer-lease slots, sectors after the leader record in
        // .pfs-paxos (block 1), are ours alone: the reference only
        // zeroes them at mkfs.
        let slots = (4 << 20) + 4096..(4 << 20) + 256 * 4096;
        if slots.contains(&off) {
            return;
        }
        assert!(
            allow_clock && in_inodes && is_clock_byte((in_chunk % 128) as usize),
            "byte {off:#x} differs: ours {p:#x}, reference {q:#x}"
        );
        clock_diffs += 1;
    });
    assert!(
        clock_diffs < 64,
        "only a few clock bytes may differ, {clock_diffs} did"
    );
}

/// Makes `nvme1n1` of `gib` GiB and runs each of `steps` on it (a size in
/// GiB to grow the device to first, and the arguments); the last one's
/// stdout must be the reference's `<case>/outputs/<id>.stdout`, and the
/// image the reference's `<case>/nvme1n1`.
fn matches_reference(case: &str, id: &str, gib: u64, steps: &[(u64, &[&str])]) {
    let dir = Scratch::new(&format!("golden-cli-{case}"));
    let pfs = Pfs::new(&dir);
    dir.sparse("nvme1n1", gib << 30);
    let mut out = String::new();
    for (grow_to, args) in steps {
        dir.sparse("nvme1n1", grow_to << 30);
        out = pfs.ok(args);
    }
    let want = golden_dir().join(case).join(format!("outputs/{id}.stdout"));
    assert_eq!(out, fs::read_to_string(want).unwrap());
    compare_images(&dir.join("nvme1n1"), &expand(case, "nvme1n1"));
}

#[test]
fn mkfs_1chunk_matches_reference() {
    matches_reference(
        "fresh-1chunk",
        "001-mkfs",
        10,
        &[(10, &["-C", "disk", "mkfs", "nvme1n1"])],
    );
}

#[test]
fn mkfs_3chunk_u10_matches_reference() {
    matches_reference(
        "fresh-3chunk-u10",
        "001-mkfs",
        30,
        &[(30, &["-C", "disk", "mkfs", "-u", "10", "nvme1n1"])],
    );
}

#[test]
fn growfs_matches_reference() {
    matches_reference(
        "grown",
        "005-growfs",
        10,
        &[
            (10, &["-C", "disk", "mkfs", "nvme1n1"]),
            (
                20,
                &["-C", "disk", "growfs", "-o", "1", "-n", "2", "nvme1n1"],
            ),
        ],
    );
}

#[test]
fn mkfs_forced_reformat_and_partial_chunk() {
    let dir = Scratch::new("golden-cli-force");
    let pfs = Pfs::new(&dir);
    dir.sparse("d", (10 << 30) + 12345);
    let out = pfs.run(&["mkfs", "-u", "3", "d"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("12345 bytes at the end stay unused"), "{err}");
    // Write junk into a metaset; -f must give a clean filesystem again.
    let f = fs::OpenOptions::new()
        .write(true)
        .open(dir.join("d"))
        .unwrap();
    f.write_all_at(&[0xAA; 4096], 0x91000).unwrap();
    drop(f);
    let info = pfs.run(&["info", "d"]);
    assert!(
        !info.status.success(),
        "corrupt inode sector must be reported"
    );
    pfs.ok(&["mkfs", "-f", "d"]);
    let info = pfs.ok(&["info", "d"]);
    assert!(info.contains("nall 2048, nfree 2045"), "{info}");
}

/// The mkfs/growfs/dumpfs/info cases of the `errors` golden set: a message
/// on stderr, a non-zero exit (the reference's code where it means
/// something), and no byte of any device changed.
#[test]
fn error_cases_refuse_cleanly() {
    let dir = Scratch::new("golden-cli-errors");
    let pfs = Pfs::new(&dir);
    dir.sparse("nvme1n1", 10 << 30);
    dir.sparse("nvme9n1", 10 << 30);
    dir.sparse("nvme8n1", 5 << 30);
    pfs.ok(&["-C", "disk", "mkfs", "nvme1n1"]);
    let digests = || -> Vec<u64> {
        ["nvme1n1", "nvme9n1", "nvme8n1"]
            .iter()
            .map(|d| file_digest(&dir.join(d)))
            .collect()
    };
    let before = digests();
    let wanted: &[(&str, Option<i32>)] = &[
        ("011-mkfs-already-formatted", Some(16)),
        ("027-info-not-pfs-device", Some(5)),
        ("028-dumpfs-not-pfs-device", None),
        ("029-mkfs-too-small-device", Some(234)),
        ("030-growfs-bad-size", Some(234)),
        ("031-growfs-missing-args", None),
        ("051-mkfs-bad-num-users", None),
        ("052-dumpfs-bad-chunk", None),
    ];
    let recorded = commands("errors", "outputs/commands.tsv");
    for (id, code) in wanted {
        let r = recorded
            .iter()
            .find(|r| r.id == *id)
            .unwrap_or_else(|| panic!("{id} not recorded"));
        let out = pfs.run(&r.args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{id}: must fail");
        assert!(!stderr.trim().is_empty(), "{id}: must say why on stderr");
        if let Some(c) = code {
            assert_eq!(out.status.code(), Some(*c), "{id}: exit code ({stderr})");
        }
        assert_eq!(digests(), before, "{id}: a device changed");
    }
    let out = pfs.run(&["mkfs", "nvme8n1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("5368709120") && stderr.contains("10737418240"),
        "size found and needed: {stderr}"
    );
}

/// Detaches a loop device when dropped.
struct Loop(String);

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// The same mkfs through a real block device (O_DIRECT, BLKGETSIZE64,
/// BLKZEROOUT) when loop devices can be attached here; skipped otherwise.
#[test]
fn mkfs_on_loop_device_matches_reference() {
    let dir = Scratch::new("golden-cli-loop");
    dir.sparse("backing", 10 << 30);
    let attach = Command::new("losetup")
        .args(["--show", "-f"])
        .arg(dir.join("backing"))
        .output();
    let dev = match attach {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        _ => {
            pfs_tests::skipped("losetup cannot attach a loop device here");
            return;
        }
    };
    let guard = Loop(dev.clone());
    let devs = dir.subdir("devs");
    std::os::unix::fs::symlink(&dev, devs.join("nvme1n1")).unwrap();
    let pfs = Pfs::new(&devs);
    let out = pfs.ok(&["-C", "disk", "mkfs", "nvme1n1"]);
    assert!(out.ends_with("pfs mkfs succeeds!\n"));
    let info = pfs.ok(&["info", "nvme1n1"]);
    assert!(info.contains("nall 2560, nfree 2302"), "{info}");
    drop(guard);
    compare_images(&dir.join("backing"), &expand("fresh-1chunk", "nvme1n1"));
}

/// `pfs flushlog` on the reference's `populated` image gives the
/// reference's flushed image, byte for byte.
#[test]
fn flushlog_matches_reference() {
    let dir = Scratch::new("golden-cli-flushlog");
    let pfs = Pfs::new(&dir);
    let img = dir.join("nvme1n1");
    sparse_copy(&expand("populated", "nvme1n1"), &img);
    let out = pfs.ok(&["-C", "disk", "flushlog", "nvme1n1"]);
    assert_eq!(out, "");
    compare_images_allowing(&img, &expand("populated", "nvme1n1-flushlog"), false);
    // A second flushlog has nothing to do: metadata stays the same.
    pfs.ok(&["flushlog", "nvme1n1"]);
    compare_images_allowing(&img, &expand("populated", "nvme1n1-flushlog"), false);
}

/// Our consistency check finds every image the reference made sound.
#[test]
fn golden_images_pass_fsck() {
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("fresh-1chunk", &[("nvme1n1", "nvme1n1")]),
        ("fresh-3chunk-u10", &[("nvme1n1", "nvme1n1")]),
        ("grown", &[("nvme1n1", "nvme1n1")]),
        ("populated", &[("nvme1n1", "nvme1n1")]),
        ("populated", &[("nvme1n1-flushlog", "nvme1n1")]),
        ("populated", &[("nvme1n1-before-cp", "nvme1n1")]),
        (
            "cross-pbd",
            &[("nvme1n1", "nvme1n1"), ("nvme2n1", "nvme2n1")],
        ),
        // chunk-backup's nvme3n1 is the target of refused restores (a
        // 20 GiB device whose chunk 0 claims 3 chunks), not a filesystem.
        (
            "chunk-backup",
            &[("nvme1n1", "nvme1n1"), ("nvme2n1", "nvme2n1")],
        ),
        (
            "fscp",
            &[
                ("nvme1n1", "nvme1n1"),
                ("nvme2n1", "nvme2n1"),
                ("nvme3n1", "nvme3n1"),
            ],
        ),
        ("fscp", &[("nvme3n1-after-fscp", "nvme3n1")]),
        (
            "fstrim",
            &[
                ("nvme1n1", "nvme1n1"),
                ("nvme2n1", "nvme2n1"),
                ("nvme3n1", "nvme3n1"),
            ],
        ),
        ("fstrim", &[("nvme1n1-before", "nvme1n1")]),
        ("tail", &[("nvme1n1", "nvme1n1")]),
    ];
    for (case, devices) in cases {
        let pfs = Pfs::new(device_dir(case, devices));
        for (_, pbd) in devices.iter() {
            let (clean, said) = pfs.fsck(pbd);
            assert!(clean, "{case}/{pbd}: {said}");
        }
    }
}
