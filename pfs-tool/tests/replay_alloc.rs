//! Replays the golden cases whose images depend on which blocks are reused
//! after `rm`, `truncate` and `fstrim` (the sources of `fscp` and
//! `chunk-backup`, and the `fstrim` case with the write after its trim) on
//! fresh sparse images, checking each command's exit code and stdout, and
//! compares the images with the reference's: the same objects in the same
//! places, the same journal and data; only clock fields (and the checksums
//! over them) and our lease slots may differ.

#![allow(clippy::unwrap_used)]

use pfs_tests::cli::Pfs;
use pfs_tests::device::Scratch;
use pfs_tests::{commands, expand, golden_dir, sha256_hex};
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MIB4: u64 = 4 << 20;
const CHUNK: u64 = 10 << 30;

/// One golden case replayed: a device directory holding the case's inputs
/// and blank sparse devices, and the tool on it.
struct Case {
    name: &'static str,
    dir: Scratch,
    pfs: Pfs,
    inputs: PathBuf,
}

impl Case {
    /// Case `name` with a blank device of `gib` GiB for each of `pbds`.
    fn new(name: &'static str, pbds: &[&str], gib: u64) -> Case {
        let dir = Scratch::new(&format!("replay-alloc-{name}"));
        let inputs = dir.join("inputs");
        write_inputs(name, &inputs);
        for pbd in pbds {
            dir.sparse(pbd, gib << 30);
        }
        let pfs = Pfs::new(&dir).env("PFS_CONFIG", dir.join("no-such-polarfs.conf"));
        Case {
            name,
            dir,
            pfs,
            inputs,
        }
    }

    /// Runs the recorded commands whose ids `pick` accepts, checking exit
    /// codes, and stdout where it holds no clock.
    fn replay(&self, pick: impl Fn(u32) -> bool) {
        replay(self.name, &self.pfs, &self.inputs, pick);
    }

    /// Compares `nvme1n1` with the reference's image `golden` of the case,
    /// where its journal (blocks from [`journal_blocks`]) may differ.
    fn compare(&self, golden: &str, journal: &[u64]) {
        compare(
            &self.dir.join("nvme1n1"),
            &expand(self.name, golden),
            journal,
        );
    }
}

/// The inputs of the `fscp`, `fstrim` and `chunk-backup` cases: the stored
/// ones, and the line files their READMEs describe, checked against the
/// recorded sums.
fn write_inputs(case: &str, dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    let src = golden_dir().join(case).join("inputs");
    for e in fs::read_dir(&src).unwrap().flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().ends_with(".xz") {
            fs::copy(e.path(), dir.join(&name)).unwrap();
        }
    }
    for (name, len) in [
        ("big9", 9_437_184usize),
        ("five", 5_247_201),
        ("gone", 8_388_708),
        ("trunc", 6_291_456),
    ] {
        let mut v = Vec::with_capacity(len + 64);
        let mut i = 0u64;
        while v.len() < len {
            v.extend_from_slice(format!("golden {name} line {i:08}\n").as_bytes());
            i += 1;
        }
        v.truncate(len);
        fs::write(dir.join(format!("{name}.txt")), v).unwrap();
    }
    let sums = fs::read_to_string(src.join("SHA256SUMS")).unwrap();
    for line in sums.lines() {
        let (sum, name) = line.split_once("  ").unwrap();
        let path = dir.join(name.trim());
        if path.is_file() {
            assert_eq!(sha256_hex(&fs::read(&path).unwrap()), sum, "{name}");
        }
    }
}

/// Runs the recorded commands of `case` whose ids `pick` accepts with
/// `pfs`, checking exit codes, and stdout where it holds no clock.
fn replay(case: &str, pfs: &Pfs, input_dir: &Path, pick: impl Fn(u32) -> bool) {
    for r in commands(case, "outputs/commands.tsv") {
        let n: u32 = r.id[..3].parse().unwrap();
        if !pick(n) {
            continue;
        }
        let out = pfs.run_recorded(&r, input_dir);
        let line = format!("{case} {}: pfs {}", r.id, r.args.join(" "));
        assert_eq!(
            out.status.code(),
            Some(r.exit),
            "{line} ({})",
            String::from_utf8_lossy(&out.stderr)
        );
        let recorded = golden_dir()
            .join(case)
            .join("outputs")
            .join(format!("{}.stdout", r.id));
        let timed = ["tree", "ls", "stat", "dumpfs", "dumple"];
        if r.exit == 0 && !r.args.iter().any(|a| timed.contains(&a.as_str())) {
            if let Ok(want) = fs::read(&recorded) {
                assert_eq!(
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&want),
                    "{line}: stdout"
                );
            }
        }
    }
}

/// Device byte addresses of the journal's blocks, from `pfs map`.
fn journal_blocks(pfs: &Pfs, pbd: &str) -> Vec<u64> {
    pfs.ok(&["map", &format!("/{pbd}/.pfs-journal")])
        .lines()
        .skip(3)
        .map(|l| l.split_whitespace().nth(6).unwrap().parse().unwrap())
        .collect()
}

/// Bytes of an inode image that hold clocks or the checksum over them
/// (`mo_checksum`, `in_atime`, `in_ctime`, `in_mtime`, `in_btime`).
fn inode_clock_byte(i: u64) -> bool {
    (36..40).contains(&i) || (80..112).contains(&i)
}

/// Data windows (1 MiB) of a sparse file.
fn windows(f: &fs::File, len: u64) -> Vec<u64> {
    let mut v = Vec::new();
    let mut w = 0u64;
    while w << 20 < len {
        let fd = std::os::fd::AsRawFd::as_raw_fd(f);
        match nix::unistd::lseek(fd, (w << 20) as i64, nix::unistd::Whence::SeekData) {
            Ok(d) => {
                w = d as u64 >> 20;
                v.push(w);
                w += 1;
            }
            Err(_) => break,
        }
    }
    v
}

fn compare(ours: &Path, golden: &Path, journal: &[u64]) {
    let (a, b) = (
        fs::File::open(ours).unwrap(),
        fs::File::open(golden).unwrap(),
    );
    let len = a.metadata().unwrap().len();
    assert_eq!(len, b.metadata().unwrap().len());
    let mut all = windows(&a, len);
    all.extend(windows(&b, len));
    all.sort_unstable();
    all.dedup();
    // The writer-lease slots: sectors 1..=255 of `.pfs-paxos` (block 1).
    let lease = MIB4 + 4096..MIB4 + 256 * 4096;
    let in_journal = |at: u64| journal.iter().any(|&j| (j..j + MIB4).contains(&at));
    let mut diffs = Vec::new();
    let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    for w in all {
        let at0 = w << 20;
        let n = (len - at0).min(1 << 20) as usize;
        a.read_exact_at(&mut x[..n], at0).unwrap();
        b.read_exact_at(&mut y[..n], at0).unwrap();
        if x[..n] == y[..n] {
            continue;
        }
        for i in 0..n {
            if x[i] == y[i] {
                continue;
            }
            let at = at0 + i as u64;
            let in_chunk = at % CHUNK;
            let ok = if lease.contains(&at) {
                true
            } else if (0x91000..0xD1000).contains(&in_chunk) {
                inode_clock_byte(in_chunk % 128)
            } else if in_journal(at) {
                // An entry carrying an inode: its image's clocks, the
                // image's checksum and the entry's.
                let entry = at / 256 * 256;
                let k = at - entry;
                y[(entry - at0) as usize + 32] == 3
                    && (inode_clock_byte(k) || (156..160).contains(&k))
            } else {
                false
            };
            if !ok {
                diffs.push(format!(
                    "{at:#x} (block {}): ours {:#04x} reference {:#04x}",
                    at / MIB4,
                    x[i],
                    y[i]
                ));
            }
        }
    }
    assert!(
        diffs.is_empty(),
        "{} vs {}: {} bytes differ, first: {:#?}",
        ours.display(),
        golden.display(),
        diffs.len(),
        &diffs[..diffs.len().min(12)]
    );
}

#[test]
fn fscp_source_reuses_the_blocks_the_reference_reuses() {
    // gone.txt's three blocks are freed, falloc.bin and trunc.txt take them
    // again, truncate frees one more, gone2.txt takes two and is removed.
    let c = Case::new("fscp", &["nvme1n1"], 20);
    c.replay(|n| n <= 25);
    c.compare("nvme1n1", &journal_blocks(&c.pfs, "nvme1n1"));
}

#[test]
fn chunk_backup_source_matches_the_reference() {
    let c = Case::new("chunk-backup", &["nvme1n1"], 30);
    c.replay(|n| n <= 17);
    c.compare("nvme1n1", &journal_blocks(&c.pfs, "nvme1n1"));
}

#[test]
fn fstrim_then_write_takes_the_blocks_the_reference_takes() {
    // Five freed blocks (131, 132, 134 in chunk 0, 2691, 2693 in chunk 1)
    // stay READY through fstrim; the next file takes 132 and 134, the
    // reference's choice (the root of its tree of READY tags), not 131.
    let c = Case::new("fstrim", &["nvme1n1", "nvme2n1"], 20);
    c.replay(|n| n <= 14);
    let journal = journal_blocks(&c.pfs, "nvme1n1");
    c.compare("nvme1n1-before", &journal);
    // Variant A (no -H without -q, then -H 1 -q -a), the failures that
    // leave nvme1n1 as it is, then the write and the inspections.
    c.replay(|n| matches!(n, 17 | 19 | 27..=33 | 34..=38));
    c.compare("nvme1n1", &journal);
}
