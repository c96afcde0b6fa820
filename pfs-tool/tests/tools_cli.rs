//! `chunk`, `fscp`, `fstrim` and `tail` against the reference's golden
//! cases (`chunk-backup`, `fscp`, `fstrim`, `tail`), and where the
//! reference is wrong (cut or damaged streams, copies onto the same or a
//! too-small device), the clear failures we give instead.

#![allow(clippy::unwrap_used)]

use pfs_tests::cli::Pfs;
use pfs_tests::device::{sparse, sparse_copy, Scratch};
use pfs_tests::failover::{signal, Signal};
use pfs_tests::{device_dir, expand, file_digest, golden_dir};
use std::fs;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
const MIB4: u64 = 4 << 20;
/// The writer-lease slots: sectors 1..=255 of `.pfs-paxos` (block 1), which
/// the reference only zeroes at mkfs.
const LEASE: std::ops::Range<u64> = (4 << 20) + 4096..(4 << 20) + 256 * 4096;

/// The tool on `dir`, reading no `/etc/polarfs.conf` of this machine.
fn tool(dir: &Path) -> Pfs {
    Pfs::new(dir).env("PFS_CONFIG", dir.join("no-such-polarfs.conf"))
}

/// A scratch directory for test `name` with an all-zero device of
/// `chunks` chunks for each of `pbds`.
fn blank(name: &str, pbds: &[&str], chunks: u64) -> Scratch {
    let dir = Scratch::new(&format!("tools-cli-{name}"));
    for pbd in pbds {
        dir.device(pbd, chunks);
    }
    dir
}

/// A golden backup stream, decompressed into `dir` (the corpus stores them
/// xz-compressed; `xz` must be installed).
fn stream(case: &str, name: &str, dir: &Path) -> PathBuf {
    let out = dir.join(name);
    let src = golden_dir()
        .join(case)
        .join("inputs")
        .join(format!("{name}.xz"));
    let st = Command::new("xz")
        .arg("-dc")
        .arg(&src)
        .stdout(fs::File::create(&out).unwrap())
        .status()
        .expect("xz must be installed to expand the golden backup streams");
    assert!(st.success(), "xz -dc {}", src.display());
    out
}

/// Two sparse images hold the same bytes, our lease sector aside.
fn assert_same_image(ours: &Path, golden: &Path) {
    pfs_tests::for_each_difference(ours, golden, |off, p, q| {
        assert!(
            LEASE.contains(&off),
            "{} vs {}: byte {off:#x} (block {}) differs: ours {p:#x}, reference {q:#x}",
            ours.display(),
            golden.display(),
            off / MIB4
        );
    });
}

fn read_block(path: &Path, blkno: u64) -> Vec<u8> {
    let mut buf = vec![0u8; MIB4 as usize];
    fs::File::open(path)
        .unwrap()
        .read_exact_at(&mut buf, blkno * MIB4)
        .unwrap();
    buf
}

fn golden_stdout(case: &str, id: &str) -> Vec<u8> {
    fs::read(
        golden_dir()
            .join(case)
            .join("outputs")
            .join(format!("{id}.stdout")),
    )
    .unwrap()
}

// ---------------------------------------------------------------- chunk

/// Compares our backup of the golden source with the reference's stream,
/// reading both as they are made: equal outside each header's ctime and
/// checksum (bytes 16..28).
fn assert_backup_matches(dir: &Path, args: &[&str], golden_stream: &str) {
    let mut ours: Child = tool(dir)
        .command(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let src = golden_dir()
        .join("chunk-backup/inputs")
        .join(format!("{golden_stream}.xz"));
    let mut theirs = Command::new("xz")
        .arg("-dc")
        .arg(src)
        .stdout(Stdio::piped())
        .spawn()
        .expect("xz must be installed");
    let (mut a, mut b) = (ours.stdout.take().unwrap(), theirs.stdout.take().unwrap());
    let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut pos = 0u64;
    loop {
        let n = read_up_to(&mut a, &mut x);
        let m = read_up_to(&mut b, &mut y);
        assert_eq!(
            n, m,
            "{golden_stream}: stream lengths differ near byte {pos}"
        );
        if n == 0 {
            break;
        }
        if x[..n] == y[..n] {
            pos += n as u64;
            continue;
        }
        for i in 0..n {
            let off = pos + i as u64;
            if x[i] != y[i] {
                let h = header_start(off);
                assert!(
                    h.is_some_and(|h| (16..28).contains(&(off - h))),
                    "{golden_stream}: byte {off} differs: ours {:#x}, reference {:#x}",
                    x[i],
                    y[i]
                );
            }
        }
        pos += n as u64;
    }
    assert!(ours.wait().unwrap().success(), "pfs {args:?}");
    assert!(theirs.wait().unwrap().success());
    assert!(pos > 4096, "{golden_stream}: stream is empty");
}

/// The start of the header `off` falls in, if any: every chunk of the
/// golden streams has 89 used blocks.
fn header_start(off: u64) -> Option<u64> {
    let per_chunk = 4096 + 4 * 89 + 89 * MIB4;
    let h = off - off % per_chunk;
    (off - h < 4096).then_some(h)
}

fn read_up_to(r: &mut dyn Read, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]).unwrap() {
            0 => break,
            k => n += k,
        }
    }
    n
}

#[test]
fn chunk_backup_streams_match_reference() {
    let dir = device_dir("chunk-backup", &[("nvme1n1", "nvme1n1")]);
    let before = file_digest(&dir.join("nvme1n1"));
    let backup = ["chunk", "-m", "backup", "-c"];
    assert_backup_matches(
        &dir,
        &[&backup[..], &["0", "nvme1n1"]].concat(),
        "backup-c0.oss",
    );
    assert_backup_matches(
        &dir,
        &[&backup[..], &["2", "nvme1n1"]].concat(),
        "backup-c2.oss",
    );
    assert_backup_matches(
        &dir,
        &[&backup[..], &["0", "-e", "3", "nvme1n1"]].concat(),
        "backup-c0-e3.oss",
    );
    assert_eq!(before, file_digest(&dir.join("nvme1n1")), "backup wrote");
}

#[test]
fn chunk_backup_failures_print_the_reference_line_and_no_stream() {
    let dir = device_dir("chunk-backup", &[("nvme1n1", "nvme1n1")]);
    let zeros = Scratch::new("tools-cli-backup-zeros");
    zeros.sparse("nvme2n1", 30 << 30);
    let _ = fs::remove_file(dir.join("nvme2n1"));
    std::os::unix::fs::symlink(zeros.join("nvme2n1"), dir.join("nvme2n1")).unwrap();
    // The reference's line and exit code (its reasons are stale errnos:
    // ours say on stderr what was wrong). Where it streamed chunk 2 before
    // failing on chunk 3 (-c 2 -e 4), we refuse before the first byte.
    let exists = b"chunk failed: File exists\n".to_vec();
    for (args, code, stdout) in [
        (
            vec!["chunk", "-m", "backup", "-c", "3", "nvme1n1"],
            234,
            golden_stdout("chunk-backup", "022-backup-c3-beyond"),
        ),
        (
            vec!["chunk", "-m", "backup", "-c", "2", "-e", "4", "nvme1n1"],
            234,
            exists.clone(),
        ),
        (
            vec!["chunk", "-m", "backup", "-c", "0", "nvme2n1"],
            5,
            golden_stdout("chunk-backup", "030-backup-unformatted"),
        ),
        (
            vec!["chunk", "-m", "backup", "-c", "0", "1-1"],
            247,
            golden_stdout("chunk-backup", "029-backup-pbdno-version"),
        ),
    ] {
        let o = tool(&dir).run(&args);
        assert_eq!(o.status.code(), Some(code), "{args:?}");
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&stdout),
            "{args:?}: stdout"
        );
        assert!(!o.stderr.is_empty(), "{args:?}: says why");
    }
    assert_eq!(
        exists,
        golden_stdout("chunk-backup", "022-backup-c3-beyond")
    );
    let _ = fs::remove_file(dir.join("nvme2n1"));
}

#[test]
fn chunk_restore_failures_print_the_reference_line() {
    // The reference's nvme3n1 (20 GiB): chunk 0 restored (035), then the
    // refused restores 040, 042 and 043, with its exit codes and stdout.
    let dir = Scratch::new("tools-cli-restore-lines");
    let c0 = stream("chunk-backup", "backup-c0.oss", &dir);
    let full = stream("chunk-backup", "backup-c0-e3.oss", &dir);
    let cut = stream("chunk-backup", "backup-c0-cut.oss", &dir);
    let inputs = golden_dir().join("chunk-backup/inputs");
    sparse(&dir.join("nvme3n1"), 20 << 30);
    let recorded = pfs_tests::commands("chunk-backup", "outputs/commands.tsv");
    let run = |id: &str, input: &Path| {
        let r = recorded.iter().find(|r| r.id == id).unwrap();
        let args: Vec<&str> = r.args.iter().map(String::as_str).collect();
        let o = tool(&dir).run_with_file(&args, input);
        assert_eq!(
            o.status.code(),
            Some(r.exit),
            "{id}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&golden_stdout("chunk-backup", id)),
            "{id}: stdout"
        );
        o
    };
    run("035-restore-c0-only", &c0);
    for (id, input) in [
        ("040-restore-bad-header", inputs.join("garbage.bin")),
        ("042-restore-cut-stream", cut.clone()),
        ("043-restore-3-chunks-onto-20GiB", full.clone()),
    ] {
        let o = run(id, &input);
        assert!(!o.stderr.is_empty(), "{id}: says why");
    }
}

#[test]
fn chunk_restore_of_reference_stream_gives_reference_image() {
    let dir = Scratch::new("tools-cli-restore");
    let s = stream("chunk-backup", "backup-c0-e3.oss", &dir);
    let dev = dir.join("nvme2n1");
    sparse(&dev, 30 << 30);
    let args = ["chunk", "-m", "restore", "-c", "0", "-e", "3", "nvme2n1"];
    let o = tool(&dir).run_with_file(&args, &s);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.stdout.is_empty());
    let golden = expand("chunk-backup", "nvme2n1");
    assert_same_image(&dev, &golden);
    // Formatted now: without -f nothing changes (exit 16), with -f the same
    // bytes are written again.
    let o = tool(&dir).run_with_file(&args, &s);
    assert_eq!(o.status.code(), Some(16));
    let forced = [
        "chunk", "-m", "restore", "-f", "-c", "0", "-e", "3", "nvme2n1",
    ];
    assert!(tool(&dir).run_with_file(&forced, &s).status.success());
    assert_same_image(&dev, &golden);
    let ls = tool(&dir).run(&["ls", "/nvme2n1/"]);
    assert_eq!(ls.stdout, golden_stdout("chunk-backup", "048-ls-dst"));
}

#[test]
fn chunk_restore_refuses_bad_streams_and_never_looks_whole() {
    let dir = Scratch::new("tools-cli-restore-bad");
    let full = stream("chunk-backup", "backup-c0-e3.oss", &dir);
    let c0 = stream("chunk-backup", "backup-c0.oss", &dir);
    let inputs = golden_dir().join("chunk-backup/inputs");
    let dev = dir.join("nvme3n1");
    sparse(&dev, 30 << 30);
    let restore = |input: &Path, extra: &[&str]| {
        let mut args = vec!["chunk", "-m", "restore", "-f"];
        args.extend_from_slice(extra);
        args.push("nvme3n1");
        tool(&dir).run_with_file(&args, input)
    };
    let refused = |o: &Output, what: &str| {
        assert_eq!(o.status.code(), Some(234), "{what}");
        assert_eq!(o.stdout, b"chunk failed: impl specific\n", "{what}");
        assert!(!o.stderr.is_empty(), "{what}: says why");
    };
    // Nothing written for an empty, a garbage or a foreign stream.
    let zero = file_digest(&dev);
    refused(
        &restore(&inputs.join("empty.bin"), &["-c", "0"]),
        "empty stream",
    );
    refused(
        &restore(&inputs.join("garbage.bin"), &["-c", "0"]),
        "garbage",
    );
    refused(&restore(&c0, &["-c", "1"]), "chunk 0 stream as chunk 1");
    assert_eq!(zero, file_digest(&dev), "a refused stream wrote");

    // A good restore first, then a stream cut inside chunk 1: the device
    // must not mount afterwards, and a full restore repairs it.
    assert!(restore(&full, &["-c", "0", "-e", "3"]).status.success());
    assert!(tool(&dir).run(&["ls", "/nvme3n1/"]).status.success());
    let cut = dir.join("cut.oss");
    let per_chunk = 4096 + 4 * 89 + 89 * MIB4;
    let mut f = fs::File::create(&cut).unwrap();
    let mut r = fs::File::open(&full)
        .unwrap()
        .take(per_chunk + 4096 + 356 + 3 * MIB4);
    std::io::copy(&mut r, &mut f).unwrap();
    drop(f);
    refused(&restore(&cut, &["-c", "0", "-e", "3"]), "cut stream");
    let ls = tool(&dir).run(&["ls", "/nvme3n1/"]);
    assert_eq!(ls.status.code(), Some(5), "a half-restored device mounted");

    // Damage inside chunk 0's metadata block (the last block of its part).
    let damaged = dir.join("damaged.oss");
    fs::copy(&c0, &damaged).unwrap();
    let meta_block = 4096 + 356 + 88 * MIB4;
    let f = fs::OpenOptions::new().write(true).open(&damaged).unwrap();
    f.write_all_at(&[0x5a], meta_block + 0x2000 + 40).unwrap();
    drop(f);
    let small = dir.join("nvme4n1");
    sparse(&small, 10 << 30);
    let o = tool(&dir).run_with_file(&["chunk", "-m", "restore", "-c", "0", "nvme4n1"], &damaged);
    refused(&o, "damaged metadata block");
    assert_eq!(tool(&dir).run(&["ls", "/nvme4n1/"]).status.code(), Some(5));

    // More chunks than the device holds: refused before writing.
    let before = file_digest(&small);
    let o = tool(&dir).run_with_file(
        &[
            "chunk", "-m", "restore", "-f", "-c", "0", "-e", "3", "nvme4n1",
        ],
        &full,
    );
    refused(&o, "3 chunks onto 1");
    assert_eq!(before, file_digest(&small));

    assert!(restore(&full, &["-c", "0", "-e", "3"]).status.success());
    assert_same_image(&dev, &expand("chunk-backup", "nvme2n1"));
}

#[test]
fn chunk_backup_restore_round_trip_through_a_pipe() {
    let src = device_dir("chunk-backup", &[("nvme1n1", "nvme1n1")]);
    let dir = Scratch::new("tools-cli-roundtrip");
    dir.sparse("nvme5n1", 30 << 30);
    let mut backup = tool(&src)
        .command(&["chunk", "-m", "backup", "-c", "0", "-e", "3", "nvme1n1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let restore = tool(&dir)
        .command(&["chunk", "-m", "restore", "-c", "0", "-e", "3", "nvme5n1"])
        .stdin(backup.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(backup.wait().unwrap().success());
    assert!(
        restore.status.success(),
        "{}",
        String::from_utf8_lossy(&restore.stderr)
    );
    assert_same_image(&dir.join("nvme5n1"), &expand("chunk-backup", "nvme2n1"));
}

// ---------------------------------------------------------------- fscp

/// The deterministic lines of fscp's stdout: all but the `\r` progress.
fn fscp_lines(out: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(out)
        .split(['\n', '\r'])
        .filter(|l| {
            !l.is_empty() && !l.contains("blocks have been copied") && !l.starts_with("crc check")
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn fscp_copies_like_the_reference() {
    let src = device_dir("fscp", &[("nvme1n1", "nvme1n1")]);
    let dir = Scratch::new("tools-cli-fscp");
    std::os::unix::fs::symlink(src.join("nvme1n1"), dir.join("nvme1n1")).unwrap();
    dir.sparse("nvme2n1", 20 << 30);
    dir.sparse("nvme3n1", 30 << 30);
    let src_digest = file_digest(&dir.join("nvme1n1"));

    // Failures first, while the destinations are zeros.
    let o = tool(&dir).run(&["fscp", "nvme2n1", "nvme3n1"]);
    assert_eq!(o.status.code(), Some(5), "source without PFS");
    assert_eq!(o.stdout, golden_stdout("fscp", "026-fscp-unformatted-src"));
    let o = tool(&dir).run(&["fscp", "nvme3n1", "nvme2n1"]);
    assert_eq!(o.status.code(), Some(255), "destination too small");
    assert_eq!(
        o.stdout,
        b"pfs fscp failed!\nfscp failed: No space left on device\n"
    );
    let o = tool(&dir).run(&["fscp", "nvme1n1", "nosuchdev"]);
    assert_eq!(o.status.code(), Some(255));
    assert_eq!(o.stdout, golden_stdout("fscp", "029-fscp-no-such-dst"));
    let o = tool(&dir).run(&["fscp", "-w", "100", "nvme1n1", "nvme1n1"]);
    assert_eq!(o.status.code(), Some(255), "same device twice");
    assert!(String::from_utf8_lossy(&o.stderr).contains("same device"));
    let zeros = file_digest(&dir.join("nvme2n1"));
    dir.sparse("zeros", 20 << 30);
    assert_eq!(
        zeros,
        file_digest(&dir.join("zeros")),
        "a refused fscp wrote"
    );

    let o = tool(&dir).run(&["fscp", "nvme1n1", "nvme2n1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        fscp_lines(&o.stdout),
        fscp_lines(&golden_stdout("fscp", "031-fscp-default"))
    );
    let golden2 = expand("fscp", "nvme2n1");
    assert_same_image(&dir.join("nvme2n1"), &golden2);
    // Unlike the reference, a destination that holds a PFS takes -f (as
    // mkfs and chunk restore do): the reference's 033 ran without it.
    let copied = file_digest(&dir.join("nvme2n1"));
    let o = tool(&dir).run(&["fscp", "-c", "nvme1n1", "nvme2n1"]);
    assert_eq!(
        o.status.code(),
        Some(16),
        "formatted destination without -f"
    );
    assert_eq!(
        o.stdout,
        b"pfs fscp failed!\nfscp failed: Device or resource busy\n"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("holds a PFS") && err.contains("-f"), "{err}");
    assert_eq!(
        copied,
        file_digest(&dir.join("nvme2n1")),
        "a refused fscp wrote"
    );
    let o = tool(&dir).run(&["fscp", "-c", "-f", "nvme1n1", "nvme2n1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        fscp_lines(&o.stdout),
        fscp_lines(&golden_stdout("fscp", "033-fscp-c-again"))
    );
    let checks = String::from_utf8_lossy(&o.stdout)
        .matches("crc check pass!")
        .count();
    assert_eq!(checks, 268, "every block with data is checked");
    assert_same_image(&dir.join("nvme2n1"), &golden2);

    let o = tool(&dir).run(&["fscp", "-c", "-w", "2", "-n", "4", "nvme1n1", "nvme3n1"]);
    assert!(o.status.success());
    assert_same_image(&dir.join("nvme3n1"), &expand("fscp", "nvme3n1-after-fscp"));
    for (args, id) in [
        (["ls", "/nvme2n1/"], "045-ls-dst"),
        (["ls", "/nvme3n1/"], "037-ls-30GiB-copy"),
    ] {
        assert_eq!(
            tool(&dir).run(&args).stdout,
            golden_stdout("fscp", id),
            "{id}"
        );
    }
    assert_eq!(
        src_digest,
        file_digest(&dir.join("nvme1n1")),
        "source changed"
    );
}

// ---------------------------------------------------------------- fstrim

/// Used block numbers (device offset / 4 MiB) from `usedinfo -t b`.
fn used_blocks(dir: &Path, pbd: &str) -> Vec<u64> {
    let o = tool(dir).run(&["usedinfo", "-t", "b", pbd]);
    assert!(o.status.success());
    let mut chunk = 0u64;
    let mut v = Vec::new();
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        if let Some(rest) = line.strip_prefix("chunk ") {
            chunk = rest.split_whitespace().next().unwrap().parse().unwrap();
            continue;
        }
        for w in line.split_whitespace() {
            let oid: u64 = w.parse().unwrap();
            v.push(chunk * 2560 + oid);
        }
    }
    v
}

fn fstrim_dir(name: &str) -> Scratch {
    let dir = Scratch::new(&format!("tools-cli-{name}"));
    let before = expand("fstrim", "nvme1n1-before");
    for pbd in ["nvme1n1", "nvme2n1", "nvme3n1"] {
        sparse_copy(&before, &dir.join(pbd));
    }
    dir
}

#[test]
fn fstrim_journals_and_discards_like_the_reference() {
    let dir = fstrim_dir("fstrim");
    // B: chunk 1, then all chunks; no discards (no configuration).
    let o = tool(&dir).run(&["-H", "1", "fstrim", "-q", "-b", "1", "-e", "2", "nvme2n1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.stdout.is_empty());
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing discarded: discards are off"));
    let o = tool(&dir).run(&["-H", "1", "fstrim", "nvme2n1"]);
    assert!(o.status.success());
    assert_eq!(o.stdout, golden_stdout("fstrim", "023-fstrim-H1"));
    assert_same_image(&dir.join("nvme2n1"), &expand("fstrim", "nvme2n1"));

    // C: discards on through a configuration file.
    let conf = dir.join("polarfs.conf");
    fs::write(&conf, "[common]\ndiskdev_trim_enable=1\n").unwrap();
    let o = tool(&dir)
        .command(&["-H", "1", "fstrim", "-q", "nvme3n1"])
        .env("PFS_CONFIG", &conf)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        o.stderr.is_empty(),
        "blocks were discarded: nothing to explain"
    );
    assert_same_image(&dir.join("nvme3n1"), &expand("fstrim", "nvme3n1"));

    // A: as shipped, then -a; its outputs and the later allocation.
    let o = tool(&dir).run(&["fstrim", "nvme1n1"]);
    assert_eq!(o.stdout, golden_stdout("fstrim", "017-fstrim-no-H"));
    let o = tool(&dir).run(&["-H", "1", "fstrim", "-q", "-a", "nvme1n1"]);
    assert!(o.status.success() && o.stdout.is_empty());
    for (args, id) in [
        (
            vec!["-H", "1", "fstrim", "-q", "-b", "1", "-e", "1", "nvme1n1"],
            "027-fstrim-empty-range",
        ),
        (
            vec!["-H", "1", "fstrim", "-q", "-e", "3", "nvme1n1"],
            "028-fstrim-end-beyond",
        ),
    ] {
        let before = file_digest(&dir.join("nvme1n1"));
        let o = tool(&dir).run(&args);
        assert_eq!(o.status.code(), Some(251), "{id}");
        assert_eq!(o.stdout, golden_stdout("fstrim", id), "{id}");
        assert_eq!(before, file_digest(&dir.join("nvme1n1")), "{id} wrote");
    }
    for (args, id) in [
        (["dumple", "-b", "131", "nvme1n1"], "037-dumple-bt131-A"),
        (["dumple", "-b", "2000", "nvme1n1"], "038-dumple-bt2000-A"),
    ] {
        let o = tool(&dir).run(&args);
        let (ours, theirs) = (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&golden_stdout("fstrim", id)).into_owned(),
        );
        // The reference's dumps include the later write; ours stop before
        // it: compare the entries fstrim made.
        let n = ours.lines().count();
        assert!(n > 0, "{id}");
        assert_eq!(
            ours.lines().collect::<Vec<_>>(),
            theirs.lines().take(n).collect::<Vec<_>>(),
            "{id}"
        );
    }
}

#[test]
fn fstrim_never_discards_a_used_block() {
    let dir = fstrim_dir("fstrim-safety");
    let before = expand("fstrim", "nvme1n1-before");
    let used = used_blocks(&dir, "nvme1n1");
    assert!(used.len() > 200, "used blocks listed");
    let conf = dir.join("polarfs.conf");
    fs::write(&conf, "[common]\ndiskdev_trim_enable=1\n").unwrap();
    let o = tool(&dir)
        .command(&["-H", "1", "fstrim", "-q", "-a", "nvme1n1"])
        .env("PFS_CONFIG", &conf)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let after = dir.join("nvme1n1");
    for &b in &used {
        if b == 1 || b == 2561 {
            // The leader record and the journal: fstrim's own transactions.
            continue;
        }
        assert!(
            read_block(&after, b) == read_block(&before, b),
            "used block {b} changed"
        );
    }
    // Every freed block that held data is zeros now.
    for b in [131u64, 132, 134, 2691, 2693] {
        assert!(read_block(&after, b).iter().all(|&x| x == 0), "block {b}");
    }
    assert_eq!(used, used_blocks(&dir, "nvme1n1"), "allocation changed");
    let o = tool(&dir).run(&["read", "/nvme1n1/five.txt"]);
    assert!(o.status.success());
    assert_eq!(o.stdout.len(), 5_247_201);
}

// ---------------------------------------------------------------- tail

#[test]
fn tail_prints_appends_and_stops_on_signal() {
    let dir = Scratch::new("tools-cli-tail");
    dir.sparse("nvme1n1", 10 << 30);
    assert!(tool(&dir).run(&["mkfs", "nvme1n1"]).status.success());
    let inputs = golden_dir().join("tail/inputs");
    let write = |args: &[&str], input: &str| {
        let o = tool(&dir).run_with_file(args, &inputs.join(input));
        assert!(o.status.success(), "{args:?}");
    };
    write(&["write", "/nvme1n1/f"], "first.txt");
    let o = tool(&dir).run(&["tail", "/nvme1n1/missing"]);
    assert_eq!(o.status.code(), Some(255));
    assert_eq!(o.stdout, golden_stdout("tail", "003-tail-missing"));

    let mut t = tool(&dir)
        .command(&["tail", "-f", "-n", "3", "/nvme1n1/f"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    write(&["write", "-o", "70", "/nvme1n1/f"], "app1.txt");
    std::thread::sleep(std::time::Duration::from_millis(700));
    write(&["write", "-o", "83", "/nvme1n1/f"], "app2.txt");
    std::thread::sleep(std::time::Duration::from_millis(700));
    write(&["write", "-o", "0", "/nvme1n1/f"], "over.txt");
    std::thread::sleep(std::time::Duration::from_millis(700));
    signal(t.id(), Signal::SIGINT);
    let status = t.wait().unwrap();
    let mut got = Vec::new();
    t.stdout.take().unwrap().read_to_end(&mut got).unwrap();
    assert_eq!(got, golden_stdout("tail", "006-tail-f"));
    assert!(status.success(), "SIGINT is a clean stop: {status:?}");
}

// ---------------------------------------------------------------- usage

/// Runs the recorded commands `ids` of `case` on the devices in `dir` and
/// checks each exit code and stdout against the reference's; `ours` turns
/// the reference's stdout into ours where we differ on purpose. Every one
/// must also say on stderr what was wrong, and change no device.
fn check_recorded(case: &str, dir: &Path, ids: &[&str], ours: impl Fn(&str, Vec<u8>) -> Vec<u8>) {
    let recorded = pfs_tests::commands(case, "outputs/commands.tsv");
    let devices: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    let digests = || -> Vec<u64> { devices.iter().map(|p| file_digest(p)).collect() };
    let before = digests();
    for id in ids {
        let r = recorded
            .iter()
            .find(|r| r.id == *id)
            .unwrap_or_else(|| panic!("{case} {id} not recorded"));
        let args: Vec<&str> = r.args.iter().map(String::as_str).collect();
        let o = tool(dir).run(&args);
        assert_eq!(
            o.status.code(),
            Some(r.exit),
            "{case} {id}: exit code of `pfs {}` (stderr: {})",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&ours(id, golden_stdout(case, id))),
            "{case} {id}: stdout of `pfs {}`",
            args.join(" ")
        );
        assert!(!o.stderr.is_empty(), "{case} {id}: must say why on stderr");
    }
    assert_eq!(before, digests(), "{case}: a usage error changed a device");
}

#[test]
fn chunk_usage_errors_match_reference() {
    let dir = blank("chunk-usage", &["nvme1n1"], 3);
    check_recorded(
        "chunk-backup",
        &dir,
        &[
            "024-backup-unknown-mode",
            "025-backup-no-chunkid",
            "026-backup-end-not-above-start",
            "027-backup-no-pbd",
            "028-backup-two-pbds",
        ],
        |_, golden| golden,
    );
    let o = tool(&dir).run(&["chunk", "-m", "frob", "-c", "0", "nvme1n1"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("frob"));
    // A non-numeric chunk id is refused (the reference reads it as 0).
    let o = tool(&dir).run(&["chunk", "-m", "backup", "-c", "x", "nvme1n1"]);
    assert_eq!(o.status.code(), Some(255));
    assert_eq!(o.stdout, golden_stdout("chunk-backup", "027-backup-no-pbd"));
    // No arguments at all: the general rule (the reference prints its
    // general usage and exits 1).
    assert_eq!(tool(&dir).run(&["chunk"]).status.code(), Some(1));
}

#[test]
fn fscp_usage_errors_match_reference() {
    let dir = blank("fscp-usage", &["nvme1n1", "nvme2n1"], 2);
    check_recorded(
        "fscp",
        &dir,
        &[
            "028-fscp-one-arg",
            "029-fscp-no-such-dst",
            "030-fscp-bad-option",
        ],
        |id, golden| {
            if id == "028-fscp-one-arg" {
                // The reference's last line has no reason ("impl
                // specific", errno 0): ours names it.
                let text = String::from_utf8(golden).unwrap();
                text.replace(
                    "fscp failed: impl specific\n",
                    "fscp failed: Invalid argument\n",
                )
                .into_bytes()
            } else {
                golden
            }
        },
    );
    let o = tool(&dir).run(&["fscp", "-x", "nvme1n1", "nvme2n1"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("'-x'"));
    // Options before the missing names, and a third name, are usage errors.
    let usage = golden_stdout("fscp", "030-fscp-bad-option");
    for args in [
        &["fscp", "-c", "-w", "4"][..],
        &["fscp", "nvme1n1", "nvme2n1", "nvme3n1"],
    ] {
        let o = tool(&dir).run(args);
        assert_eq!(o.status.code(), Some(255), "{args:?}");
        assert_eq!(o.stdout, usage, "{args:?}");
    }
}

#[test]
fn fstrim_usage_errors_match_reference() {
    let dir = blank("fstrim-usage", &["nvme1n1", "nvme2n1"], 2);
    check_recorded(
        "fstrim",
        &dir,
        &[
            "031-fstrim-two-pbds",
            "032-fstrim-no-pbd",
            "033-fstrim-bad-option",
        ],
        |_, golden| golden,
    );
    // A host id the tool refuses: exit 1 and the reference's general
    // usage, whose last line names the build (ours, not the reference's);
    // stderr says what is wrong.
    let o = tool(&dir).run(&["-H", "200", "fstrim", "-q", "nvme1n1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("200"));
    let ours = String::from_utf8(o.stdout).unwrap();
    let theirs = String::from_utf8(golden_stdout("fstrim", "030-fstrim-hostid-too-large")).unwrap();
    fn body(s: &str) -> Vec<&str> {
        s.lines().rev().skip(1).collect()
    }
    assert_eq!(body(&ours), body(&theirs));
    assert!(ours.lines().last().unwrap().starts_with("pfs version: "));
    assert!(ours.ends_with('\n'));
}

#[test]
fn tail_usage_errors_are_reported_like_the_other_commands() {
    // No case records them: the reference's usage and exit code, as for
    // the other commands.
    let dir = Scratch::new("tools-cli-tail-usage");
    let usage = "  tail file\n  $ pfs tail /1/mydir/newfile\n";
    for args in [&["tail", "-x", "/nvme1n1/f"][..], &["tail", "-f"]] {
        let o = tool(&dir).run(args);
        assert_eq!(o.status.code(), Some(255), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&o.stdout), usage, "{args:?}");
        assert!(!o.stderr.is_empty());
    }
    let o = tool(&dir).run(&["tail", "/nvme1n1/f", "/nvme1n1/g"]);
    assert_eq!(o.status.code(), Some(255));
    assert_eq!(o.stdout, b"tail failed: Invalid argument\n");
    assert_eq!(tool(&dir).run(&["tail"]).status.code(), Some(1));
}

/// Marks the machine's copy of `pbd`'s metasets (see `pfs-core`'s
/// `metacache`) with an old modification time; `false` when there is no
/// copy.
fn mark_copy(dir: &Path, pbd: &str) -> bool {
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    fs::OpenOptions::new()
        .write(true)
        .open(dir.join(format!(".{pbd}.pfs-rs-meta")))
        .and_then(|f| f.set_modified(old))
        .is_ok()
}

/// Whether the copy marked by [`mark_copy`] is still the one there: a
/// load that reads every metaset writes a new copy, one that reads the
/// copy leaves it as it is.
fn copy_kept(dir: &Path, pbd: &str) -> bool {
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    fs::metadata(dir.join(format!(".{pbd}.pfs-rs-meta")))
        .and_then(|m| m.modified())
        .is_ok_and(|t| t == old)
}

#[test]
fn a_large_device_is_read_from_the_machines_copy_of_its_metasets_never_a_stale_one() {
    let dir = Scratch::new("tools-cli-metacache");
    let pfs = tool(&dir);
    // 64 chunks: the smallest device a copy is kept of.
    pfs.mkfs_new("nvme1n1", 64, &[]);
    pfs.ok(&["touch", "/nvme1n1/a"]);
    assert!(
        mark_copy(&dir, "nvme1n1"),
        "no copy of a 64-chunk device's metasets"
    );
    // Commits leave the journal's tail where it is: the copy stands.
    pfs.ok(&["touch", "/nvme1n1/b"]);
    assert_eq!(pfs.names("/nvme1n1/")[2..], ["a", "b"]);
    assert!(copy_kept(&dir, "nvme1n1"), "the copy was not used");
    // A checkpoint moves the tail: the next load reads the metasets again,
    // sees everything, and makes a new copy.
    for round in 0..3 {
        pfs.ok(&["touch", &format!("/nvme1n1/c{round}")]);
        pfs.ok(&["flushlog", "nvme1n1"]);
        assert!(mark_copy(&dir, "nvme1n1"));
        let names = pfs.names("/nvme1n1/");
        assert!(names.contains(&format!("c{round}")), "{names:?}");
        assert!(!copy_kept(&dir, "nvme1n1"), "a stale copy was used");
    }
    // Another filesystem on the device: a copy of the old one, put back
    // as the reference's mkfs would leave it, is not used.
    let copy = dir.join(".nvme1n1.pfs-rs-meta");
    let kept = dir.join("old-copy");
    fs::copy(&copy, &kept).unwrap();
    pfs.ok(&["mkfs", "-f", "nvme1n1"]);
    assert!(!copy.exists(), "mkfs left the copy");
    fs::copy(&kept, &copy).unwrap();
    assert_eq!(
        pfs.names("/nvme1n1/").len(),
        2,
        "the old filesystem's files show"
    );
    pfs.fsck_clean("nvme1n1");
    // Switched off, nothing is written.
    fs::remove_file(&copy).unwrap();
    let off = tool(&dir).env("PFS_META_CACHE", "0");
    off.ok(&["touch", "/nvme1n1/d"]);
    assert_eq!(off.names("/nvme1n1/")[2..], ["d"]);
    assert!(!copy.exists());
}

#[test]
fn listings_from_the_machines_copy_show_every_file_while_a_writer_checkpoints() {
    // A writer creates files one process at a time and checkpoints every
    // few (each checkpoint rewrites metasets and moves the journal's
    // tail); beside it, listing processes load the metadata again and
    // again, from the copy when it stands and otherwise reading every
    // metaset and making a new copy, some of them while a checkpoint is
    // writing. Every file created before a listing started is in it.
    let dir = Scratch::new("tools-cli-metacache-race");
    let pfs = tool(&dir);
    pfs.mkfs_new("nvme1n1", 64, &[]);
    // The files go into a directory whose inode lies past chunk 0's first
    // inode sector (which the copy's stamp holds): only the journal's tail
    // tells that a checkpoint rewrote the metasets.
    for i in 0..40 {
        pfs.ok(&["touch", &format!("/nvme1n1/p{i}")]);
    }
    pfs.ok(&["mkdir", "/nvme1n1/d"]);
    pfs.ok(&["flushlog", "nvme1n1"]);
    let made = std::sync::atomic::AtomicUsize::new(0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(6);
    let mut listings = 0;
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0;
            while std::time::Instant::now() < until {
                pfs.ok(&["touch", &format!("/nvme1n1/d/f{i}")]);
                i += 1;
                made.store(i, std::sync::atomic::Ordering::SeqCst);
                if i % 4 == 0 {
                    pfs.ok(&["flushlog", "nvme1n1"]);
                }
            }
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let before = made.load(std::sync::atomic::Ordering::SeqCst);
            let names = pfs.names("/nvme1n1/d/");
            for i in 0..before {
                let want = format!("f{i}");
                assert!(
                    names.contains(&want),
                    "{want} is missing from a listing: {names:?}"
                );
            }
            listings += 1;
        }
    });
    assert!(listings > 3, "only {listings} listings");
    assert!(dir.join(".nvme1n1.pfs-rs-meta").is_file());
    pfs.fsck_clean("nvme1n1");
}
