//! Replays the golden `populated` command list (up to its last step before
//! `cp`) with our tool on a fresh sparse image and compares the result with
//! the reference's image at that point: the same inode, direntry and block
//! numbers, the same journal entries and leader record, the same data;
//! only clock fields (and the checksums over them) may differ.

#![allow(clippy::unwrap_used)]

use pfs_tests::cli::Pfs;
use pfs_tests::device::Scratch;
use pfs_tests::{commands, expand, populated_inputs, sha256_hex};
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Byte ranges of an inode image that hold clocks or the checksum over them
/// (`mo_checksum`, `in_atime`, `in_ctime`, `in_mtime`, `in_btime`).
fn inode_clock_byte(i: usize) -> bool {
    (36..40).contains(&i) || (80..112).contains(&i)
}

#[test]
fn populated_before_cp_matches_reference() {
    let dir = Scratch::new("replay-populated");
    let pfs = Pfs::new(&dir);
    let inputs = dir.join("inputs");
    populated_inputs(&inputs);
    let img = dir.device("nvme1n1", 1);
    for r in commands("populated", "outputs/commands.tsv") {
        let n: u32 = r.id[..3].parse().unwrap();
        if n > 33 {
            break;
        }
        let out = pfs.run_recorded(&r, &inputs);
        assert_eq!(
            out.status.code(),
            Some(r.exit),
            "{}: pfs {} ({})",
            r.id,
            r.args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    compare(&img, &expand("populated", "nvme1n1-before-cp"));
    // The data reads back as the reference read it.
    let out = pfs.run(&["read", "/nvme1n1/archive/random-20MiB.bin"]);
    let sums =
        fs::read_to_string(pfs_tests::golden_dir().join("populated/inputs/SHA256SUMS")).unwrap();
    let want = sums
        .lines()
        .find(|l| l.ends_with("random-20MiB.bin"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap();
    assert_eq!(sha256_hex(&out.stdout), want);
}

/// Every 128-byte metaset object and 256-byte journal entry must match,
/// except clock bytes of inode images and the checksums covering them.
fn compare(ours: &Path, golden: &Path) {
    let (a, b) = (
        fs::File::open(ours).unwrap(),
        fs::File::open(golden).unwrap(),
    );
    // Metadata area of chunk 0, the paxos block, and every block the
    // reference wrote (journal head and data) are compared.
    let ranges: &[(u64, u64)] = &[
        (0, 4 << 20),
        (4 << 20, 4 << 20),
        (8 << 20, 1 << 30),
        ((1 << 30) + (8 << 20), 200 << 20),
    ];
    let mut diffs = Vec::new();
    for &(start, len) in ranges {
        let mut off = start;
        while off < start + len {
            let n = (1u64 << 20).min(start + len - off) as usize;
            let (mut x, mut y) = (vec![0u8; n], vec![0u8; n]);
            a.read_exact_at(&mut x, off).unwrap();
            b.read_exact_at(&mut y, off).unwrap();
            if x != y {
                for (i, (p, q)) in x.iter().zip(&y).enumerate() {
                    if p == q {
                        continue;
                    }
                    let at = off + i as u64;
                    // The writer-lease slots live in sectors of .pfs-paxos
                    // the reference never writes after mkfs.
                    let ok = if lease_slots().contains(&at) {
                        true
                    } else if (0x91000..0xD1000).contains(&at) {
                        inode_clock_byte((at % 128) as usize)
                    } else if (8 << 20..(8 << 20) + (1 << 30)).contains(&at) {
                        // A journal entry carrying an inode: its image's
                        // clocks, the image checksum, and le_checksum.
                        let entry = (at - (8 << 20)) / 256 * 256 + (8 << 20);
                        let mut e = [0u8; 256];
                        b.read_exact_at(&mut e, entry).unwrap();
                        let k = (at - entry) as usize;
                        e[32] == 3 && (inode_clock_byte(k) || (156..160).contains(&k))
                    } else {
                        false
                    };
                    if !ok {
                        diffs.push(format!("{at:#x}: ours {p:#04x} reference {q:#04x}"));
                    }
                }
            }
            off += n as u64;
        }
    }
    assert!(
        diffs.is_empty(),
        "{} bytes differ, first: {:?}",
        diffs.len(),
        &diffs[..diffs.len().min(20)]
    );
}

/// Device bytes of the writer-lease slots: sectors 1..=255 of `.pfs-paxos`
/// (block 1).
fn lease_slots() -> std::ops::Range<u64> {
    (4 << 20) + 4096..(4 << 20) + 256 * 4096
}
