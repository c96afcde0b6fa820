//! `pfs cp` and `pfs archive`: the golden cross-device case reproduced,
//! round trips checked by content, the reference's refusals, and copies
//! killed at random points that never leave a partial file under the final
//! name.

#![allow(clippy::unwrap_used)]

use pfs_tests::cli::{formatted, Pfs};
use pfs_tests::device::Scratch;
use pfs_tests::{commands, gen_input, golden_dir, sha256_hex};
use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// Masks `ctime` stamps and epoch seconds.
fn mask(s: &str) -> String {
    let mut out = String::new();
    for line in s.lines() {
        let mut l = line.to_owned();
        for day in ["Mon ", "Tue ", "Wed ", "Thu ", "Fri ", "Sat ", "Sun "] {
            while let Some(i) = l.find(day) {
                let end = (i + 24).min(l.len());
                l.replace_range(i..end, "<time>");
            }
        }
        let words: Vec<String> = l
            .split(' ')
            .map(|w| {
                if w.len() == 11 && w.ends_with(',') && w[..10].bytes().all(|b| b.is_ascii_digit())
                {
                    "<secs>,".to_owned()
                } else {
                    w.to_owned()
                }
            })
            .collect();
        let mut line = words.join(" ");
        // Inode images carry clock values and a checksum over them.
        for key in [" in_ctime ", " in_mtime "] {
            if line.contains(key) {
                line = key.to_owned();
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    if out.contains("mo_type    inode") {
        out = out
            .lines()
            .map(|l| {
                if l.trim_start().starts_with("mo_checksum") {
                    " mo_checksum <masked>"
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
    }
    out
}

#[test]
fn cross_pbd_case_reproduced() {
    let dir = Scratch::new("cp-cli-xpbd");
    let pfs = Pfs::new(&dir);
    let inputs = dir.join("inputs");
    fs::create_dir_all(&inputs).unwrap();
    for e in fs::read_dir(golden_dir().join("cross-pbd/inputs"))
        .unwrap()
        .flatten()
    {
        fs::copy(e.path(), inputs.join(e.file_name())).unwrap();
    }
    fs::write(inputs.join("f.bin"), gen_input("xpbd-f", 200_123)).unwrap();
    let mut checked = 0;
    for r in commands("cross-pbd", "outputs/commands.tsv") {
        let n: u32 = r.id[..3].parse().unwrap();
        let args: Vec<&str> = r.args.iter().map(String::as_str).collect();
        let mut cmd = pfs.command(&args);
        if n <= 2 {
            dir.device(args.last().unwrap(), 1);
        }
        if let Some(f) = &r.stdin {
            cmd.stdin(fs::File::open(inputs.join(f)).unwrap());
        }
        let o = cmd.output().unwrap();
        assert_eq!(
            o.status.success(),
            r.exit == 0,
            "{}: {}",
            r.id,
            String::from_utf8_lossy(&o.stderr)
        );
        // Our copies go through a temporary name and a rename, so the
        // journals differ from the reference's; everything else matches.
        if args.contains(&"dumple") {
            continue;
        }
        let base = golden_dir().join("cross-pbd/outputs");
        if let Ok(sha) = fs::read_to_string(base.join(format!("{}.stdout.sha256", r.id))) {
            assert_eq!(
                sha256_hex(&o.stdout),
                sha.split_whitespace().next().unwrap(),
                "{}",
                r.id
            );
        }
        if let Ok(want) = fs::read_to_string(base.join(format!("{}.stdout", r.id))) {
            assert_eq!(
                mask(&String::from_utf8_lossy(&o.stdout)),
                mask(&want),
                "{}: pfs {}",
                r.id,
                r.args.join(" ")
            );
            checked += 1;
        }
    }
    assert!(checked > 30, "{checked}");
    for d in ["nvme1n1", "nvme2n1"] {
        pfs.fsck_clean(d);
    }
}

#[test]
fn copies_round_trip_and_refuse_like_the_reference() {
    let (dir, pfs) = formatted("cp-cli-rt", &["nvme1n1", "nvme3n1"]);
    let local = dir.join("local");
    fs::create_dir_all(local.join("tree/sub")).unwrap();
    let big = gen_input("big", 9 << 20);
    fs::write(local.join("tree/big.bin"), &big).unwrap();
    fs::write(local.join("tree/sub/small"), b"small").unwrap();
    fs::write(local.join("tree/.hidden"), b"h").unwrap();
    let l = |p: &str| local.join(p).display().to_string();

    pfs.ok(&["cp", &l("tree/big.bin"), "/nvme1n1/big.bin"]);
    pfs.ok(&["cp", "-r", &l("tree"), "/nvme1n1/tree"]);
    // PFS → PFS across devices without -S/-D (the reference refuses this).
    pfs.ok(&["-C", "disk", "cp", "-r", "/nvme1n1/tree", "/nvme3n1/copy"]);
    let across = |from: &str, to: &str| pfs.ok(&["cp", "-S", "disk", "-D", "disk", from, to]);
    across("/nvme1n1/big.bin", "/nvme3n1/big.bin");
    // The WAL path form of archive_command, double slash and all.
    pfs.ok(&["mkdir", "-p", "/nvme1n1/shared_data/pg_wal"]);
    pfs.ok(&[
        "cp",
        &l("tree/sub/small"),
        "/nvme1n1/shared_data//pg_wal/000000010000000000000001",
    ]);
    pfs.ok(&["mkdir", "/nvme3n1/archive"]);
    across(
        "/nvme1n1/shared_data//pg_wal/000000010000000000000001",
        "/nvme3n1/archive/000000010000000000000001",
    );
    // And back out to local files.
    let out = dir.join("out");
    fs::create_dir_all(&out).unwrap();
    pfs.ok(&[
        "cp",
        "/nvme3n1/copy/big.bin",
        &out.join("big.bin").display().to_string(),
    ]);
    pfs.ok(&[
        "cp",
        "-r",
        "/nvme3n1/copy",
        &out.join("copy").display().to_string(),
    ]);
    assert_eq!(
        sha256_hex(&fs::read(out.join("big.bin")).unwrap()),
        sha256_hex(&big)
    );
    assert_eq!(fs::read(out.join("copy/sub/small")).unwrap(), b"small");
    assert_eq!(fs::read(out.join("copy/.hidden")).unwrap(), b"h");
    let read = pfs.ok(&["read", "/nvme3n1/archive/000000010000000000000001"]);
    assert_eq!(read, "small");
    // No temporary names are left anywhere.
    assert!(!pfs.ok(&["ls", "/nvme3n1/copy"]).contains(".pfscp"));
    assert!(fs::read_dir(&out)
        .unwrap()
        .flatten()
        .all(|e| !e.file_name().to_string_lossy().starts_with(".pfscp")));

    // Refusals: an existing file without -f, a directory without -r, a
    // file onto itself, a missing source.
    let o = pfs.run(&["cp", &l("tree/sub/small"), "/nvme1n1/big.bin"]);
    assert_eq!(o.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot overwrite"));
    assert_eq!(pfs_read(&pfs, "/nvme1n1/big.bin"), big);
    let o = pfs.run(&["cp", "/nvme1n1/tree", &out.join("x").display().to_string()]);
    assert_eq!(o.status.code(), Some(235));
    let o = pfs.run(&["cp", "-f", "/nvme1n1/big.bin", "/nvme1n1/big.bin"]);
    assert_eq!(o.status.code(), Some(255));
    let o = pfs.run(&["cp", &l("nope"), "/nvme1n1/nope"]);
    assert_eq!(o.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("cp failed: "));
    // With -f the file is replaced, atomically.
    pfs.ok(&["cp", "-f", &l("tree/sub/small"), "/nvme1n1/big.bin"]);
    assert_eq!(pfs.ok(&["read", "/nvme1n1/big.bin"]), "small");
    for d in ["nvme1n1", "nvme3n1"] {
        pfs.fsck_clean(d);
    }
}

#[test]
fn archive_push_and_fetch_follow_the_postgres_contracts() {
    let (dir, pfs) = formatted("cp-cli-arch", &["nvme1n1"]);
    pfs.ok(&["mkdir", "/nvme1n1/archive"]);
    let seg = dir.join("000000010000000000000002");
    fs::write(&seg, gen_input("seg", 1 << 20)).unwrap();
    let s = seg.display().to_string();
    pfs.ok(&[
        "archive",
        "push",
        &s,
        "/nvme1n1/archive/000000010000000000000002",
    ]);
    // A retry after a crash: identical content is success.
    pfs.ok(&[
        "archive",
        "push",
        &s,
        "/nvme1n1/archive/000000010000000000000002",
    ]);
    // Different content under the same name is refused loudly.
    let other = dir.join("other");
    fs::write(&other, b"not the same").unwrap();
    let o = pfs.run(&[
        "archive",
        "push",
        &other.display().to_string(),
        "/nvme1n1/archive/000000010000000000000002",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("DIFFERENT"));
    // Fetch back; a missing segment fails quietly.
    let back = dir.join("RECOVERYXLOG");
    let back_s = back.display().to_string();
    let fetch = |src: &str| pfs.run(&["archive", "fetch", src, &back_s]);
    let o = fetch("/nvme1n1/archive/000000010000000000000002");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(fs::read(&back).unwrap(), fs::read(&seg).unwrap());
    let o = fetch("/nvme1n1/archive/000000010000000000000009");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Only "not archived" exits 1: a fetch from a device that is not there
    // is an error PostgreSQL must not take for the end of the archive.
    let o = fetch("/nvme7n1/archive/000000010000000000000002");
    assert_ne!(o.status.code(), Some(1));
    assert_ne!(o.status.code(), Some(0));
    // A push into a missing directory names the directory, never a
    // temporary file of ours; both directions.
    for dst in [
        "/nvme1n1/no-such-dir/000000010000000000000002".to_owned(),
        dir.join("no-such-dir/000000010000000000000002")
            .display()
            .to_string(),
    ] {
        let src = if dst.starts_with("/nvme1n1") {
            s.clone()
        } else {
            "/nvme1n1/archive/000000010000000000000002".to_owned()
        };
        let o = pfs.run(&["archive", "push", &src, &dst]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{dst}");
        assert!(
            err.contains("no-such-dir") && err.contains("does not exist"),
            "{err}"
        );
        assert!(!err.contains(".pfscp"), "{err}");
    }
    // Local archive directory too.
    let arch = dir.join("localarch");
    fs::create_dir_all(&arch).unwrap();
    pfs.ok(&[
        "archive",
        "push",
        "/nvme1n1/archive/000000010000000000000002",
        &arch.join("seg").display().to_string(),
    ]);
    assert_eq!(fs::read(arch.join("seg")).unwrap(), fs::read(&seg).unwrap());
}

#[test]
fn killed_copies_never_leave_a_partial_file() {
    let (dir, pfs) = formatted("cp-cli-kill", &["nvme1n1"]);
    // Two versions that alternate: each round copies one over the other.
    let versions = [gen_input("a", 28 << 20), gen_input("b", 20 << 20)];
    let shas = [sha256_hex(&versions[0]), sha256_hex(&versions[1])];
    let local = [dir.join("a.bin"), dir.join("b.bin")];
    for (p, v) in local.iter().zip(&versions) {
        fs::write(p, v).unwrap();
    }
    pfs.ok(&["cp", &local[1].display().to_string(), "/nvme1n1/target"]);
    pfs.ok(&["mkdir", "/nvme1n1/v"]);
    pfs.ok(&["cp", &local[0].display().to_string(), "/nvme1n1/v/a"]);
    pfs.ok(&["cp", &local[1].display().to_string(), "/nvme1n1/v/b"]);
    let local_target = dir.join("local-target");
    fs::write(&local_target, &versions[1]).unwrap();
    let mut seed = 7u64;
    let mut interrupted = 0;
    for round in 0..12usize {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let delay = Duration::from_millis((seed >> 33) % 120);
        let now = round % 2;
        // Alternate directions: local → PFS and PFS → local.
        let to_pfs = round % 4 < 2;
        let (from, to) = if to_pfs {
            (
                local[now].display().to_string(),
                "/nvme1n1/target".to_owned(),
            )
        } else {
            (
                format!("/nvme1n1/v/{}", ["a", "b"][now]),
                local_target.display().to_string(),
            )
        };
        let mut child = pfs
            .command(&["cp", "-f", &from, &to])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let status = child.wait().unwrap();
        if status.code().is_none() {
            interrupted += 1;
        } else {
            assert!(status.success(), "round {round}: cp failed on its own");
        }
        let read = |pfs_side: bool| {
            if pfs_side {
                pfs_read(&pfs, "/nvme1n1/target")
            } else {
                fs::read(&local_target).unwrap()
            }
        };
        // Whatever is under the final name is one whole version.
        let sha = sha256_hex(&read(to_pfs));
        assert!(
            shas.contains(&sha),
            "round {round}: partial file under the final name"
        );
        pfs.fsck_clean("nvme1n1");
        // A retry right away succeeds: the killed writer's lease is seen
        // to belong to a dead process of this machine.
        pfs.ok(&["cp", "-f", &from, &to]);
        assert_eq!(sha256_hex(&read(to_pfs)), shas[now], "round {round}: retry");
    }
    assert!(interrupted >= 3, "only {interrupted} copies were cut short");
    // Temporary files of the killed copies were cleaned up by later ones.
    assert!(!pfs.ok(&["ls", "/nvme1n1/"]).contains(".pfscp-"));
    assert!(fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .all(|e| !e.file_name().to_string_lossy().starts_with(".pfscp-")));
}

fn pfs_read(pfs: &Pfs, p: &str) -> Vec<u8> {
    pfs.ok_bytes(&["read", p])
}

#[test]
fn pipelined_copies_are_exact_at_every_size() {
    // Sizes around the 4 MiB pieces and the reader and writer counts of
    // the pipeline (pieces go to readers and writers in turn), in all
    // three directions, the last one into a bare relative name.
    let (dir, pfs) = formatted("cp-cli-sizes", &["nvme1n1", "nvme3n1"]);
    let out = dir.join("out");
    fs::create_dir_all(&out).unwrap();
    const M: usize = 4 << 20;
    // A copy pipeline that waits forever fails the test instead of
    // hanging it.
    let within = pfs
        .clone()
        .current_dir(&out)
        .time_limit(Duration::from_secs(120));
    for (k, size) in [
        0,
        1,
        4095,
        M - 1,
        M,
        M + 1,
        2 * M + 4096,
        3 * M,
        5 * M - 7,
        7 * M + 12345,
    ]
    .into_iter()
    .enumerate()
    {
        let data = gen_input(&format!("size-{size}"), size);
        let src = dir.join(format!("src-{k}"));
        fs::write(&src, &data).unwrap();
        let (a, b) = (format!("/nvme1n1/f{k}"), format!("/nvme3n1/f{k}"));
        let leaf = format!("back-{k}");
        for (from, to) in [
            (src.display().to_string(), a.clone()),
            (a.clone(), b.clone()),
            (b.clone(), leaf.clone()),
        ] {
            let o = within.run(&["cp", &from, &to]);
            assert!(
                o.status.success(),
                "cp {from} {to} ({size} bytes): {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        assert_eq!(pfs_read(&pfs, &a), data, "{size} bytes to PFS");
        assert_eq!(pfs_read(&pfs, &b), data, "{size} bytes across devices");
        assert_eq!(
            fs::read(out.join(&leaf)).unwrap(),
            data,
            "{size} bytes back to a local file"
        );
        let st = pfs.ok(&["stat", &b]);
        assert!(st.contains(&format!("size: {size}")), "{st}");
    }
    for d in ["nvme1n1", "nvme3n1"] {
        pfs.fsck_clean(d);
        assert!(!pfs.ok(&["ls", &format!("/{d}/")]).contains(".pfscp-"));
    }
}

#[test]
fn copies_into_pfs_are_exact_with_any_number_of_writers() {
    // PFS_COPY_WRITERS sets the writer threads of a copy into PFS (the
    // device's choice otherwise, as for values out of 1..=32): pieces go
    // to them in turn, each through its own handle, across a GiB-slice
    // commit too when the file is large enough; here, a file of 9 pieces
    // and a bit at 1, 3, 8 and 32 writers and two values that are ignored.
    let (dir, pfs) = formatted("cp-cli-writers", &["nvme1n1"]);
    const M: usize = 4 << 20;
    let size = 9 * M + 4097;
    let data = gen_input("writers", size);
    let src = dir.join("src");
    fs::write(&src, &data).unwrap();
    for (k, n) in ["1", "3", "8", "32", "0", "many"].into_iter().enumerate() {
        let to = format!("/nvme1n1/w{k}");
        let o = pfs
            .clone()
            .env("PFS_COPY_WRITERS", n)
            .time_limit(Duration::from_secs(120))
            .run(&["cp", &src.display().to_string(), &to]);
        assert!(
            o.status.success(),
            "cp with {n} writers: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(pfs_read(&pfs, &to), data, "{n} writers");
    }
    pfs.fsck_clean("nvme1n1");
}

#[test]
fn a_copy_that_cannot_get_its_blocks_stops_cleanly() {
    // The destination has 2 free blocks; the copy needs 6. Its readers are
    // already filling buffers when the allocation fails: the copy must
    // stop (not wait for them forever), say why, and leave nothing.
    let (dir, pfs) = formatted("cp-cli-nospace", &["nvme1n1", "nvme3n1"]);
    let free: u64 = 2302;
    pfs.ok(&["touch", "/nvme3n1/filler"]);
    pfs.ok(&[
        "fallocate",
        "-l",
        &((free - 2) * (4 << 20)).to_string(),
        "/nvme3n1/filler",
    ]);
    let data = gen_input("nospace", 23 << 20);
    let src = dir.join("src");
    fs::write(&src, &data).unwrap();
    pfs.ok(&["cp", &src.display().to_string(), "/nvme1n1/f"]);
    let within = pfs
        .clone()
        .current_dir(&dir)
        .time_limit(Duration::from_secs(60));
    for from in [src.display().to_string(), "/nvme1n1/f".to_owned()] {
        let o = within.run(&["cp", &from, "/nvme3n1/f"]);
        assert_eq!(o.status.code(), Some(255), "cp {from}");
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            "cp failed: No space left on device\n"
        );
        assert!(!pfs.ok(&["ls", "/nvme3n1/"]).contains(".pfscp-"));
        assert!(!pfs.ok(&["ls", "/nvme3n1/"]).contains(" f\n"));
    }
    // The blocks the failed copies took are free again: with the filler
    // gone the same copy succeeds.
    pfs.ok(&["rm", "/nvme3n1/filler"]);
    pfs.ok(&["cp", "/nvme1n1/f", "/nvme3n1/f"]);
    assert_eq!(pfs_read(&pfs, "/nvme3n1/f"), data);
    pfs.fsck_clean("nvme3n1");
}

/// PostgreSQL takes an archive_command exit status above 125 as fatal (the
/// archiver aborts): every failure of `archive push` exits 1, whatever its
/// cause, so PostgreSQL simply retries the segment later.
#[test]
fn archive_push_failures_exit_1() {
    let (dir, pfs) = formatted("cp-cli-push-exit", &["nvme1n1"]);
    pfs.ok(&["mkdir", "/nvme1n1/archive"]);
    dir.device("nvme2n1", 1);
    let seg = dir.join("000000010000000000000003");
    fs::write(&seg, gen_input("push-exit", 64 << 10)).unwrap();
    let s = seg.display().to_string();
    let archived = "/nvme1n1/archive/000000010000000000000003";
    pfs.ok(&["archive", "push", &s, archived]);
    let other = dir.join("other");
    fs::write(&other, b"different").unwrap();
    let o = other.display().to_string();
    let missing = dir.join("missing").display().to_string();
    let long = format!("/nvme1n1/archive/{}", "n".repeat(256));
    let cases: [(&str, [&str; 2]); 6] = [
        ("different archived copy", [&o, archived]),
        ("missing segment", [&missing, "/nvme1n1/archive/x"]),
        ("directory as destination", [&s, "/nvme1n1/archive"]),
        ("missing directory", [&s, "/nvme1n1/no-such-dir/x"]),
        ("device without PFS", [&s, "/nvme2n1/archive/x"]),
        ("name too long", [&s, &long]),
    ];
    for (what, [src, dst]) in cases {
        let out = pfs.run(&["archive", "push", src, dst]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(!err.is_empty(), "{what}: must say why");
    }
}

/// Blocks a PFS file has (`map`'s rows with a block behind them).
fn pfs_blocks(pfs: &Pfs, p: &str) -> usize {
    pfs.ok(&["map", p])
        .lines()
        .skip(3)
        .filter(|l| l.split_whitespace().nth(2).is_some_and(|bt| bt != "0"))
        .count()
}

/// `len` bytes of `p` from `off`, read through `pfs read`.
fn pfs_read_at(pfs: &Pfs, p: &str, off: u64, len: u64) -> Vec<u8> {
    pfs.ok_bytes(&["read", "-o", &off.to_string(), "-l", &len.to_string(), p])
}

#[test]
fn holes_stay_holes_in_every_direction() {
    // A 100 GiB file holding data only in its first block, across the
    // boundary of two blocks 40 GiB in, and in the last bytes: a copy
    // reads and writes those few blocks, and the destination gets the full
    // size without blocks (PFS) or disk space (local) for the holes.
    use std::os::unix::fs::{FileExt, MetadataExt};
    const SIZE: u64 = 100 << 30;
    let (dir, pfs) = formatted("cp-cli-holes", &["nvme1n1", "nvme3n1"]);
    let parts: [(u64, Vec<u8>); 3] = [
        (0, gen_input("holes-a", 300_000)),
        ((40 << 30) - 5000, gen_input("holes-b", 10_000)),
        (SIZE - 77, gen_input("holes-c", 77)),
    ];
    let src = dir.join("sparse.bin");
    let f = fs::File::create(&src).unwrap();
    f.set_len(SIZE).unwrap();
    for (off, data) in &parts {
        f.write_all_at(data, *off).unwrap();
    }
    drop(f);
    let within = pfs
        .clone()
        .current_dir(&dir)
        .time_limit(Duration::from_secs(60));
    let small_local = |p: &Path| {
        let m = fs::metadata(p).unwrap();
        assert_eq!(m.len(), SIZE, "{}", p.display());
        assert!(
            m.blocks() * 512 <= 32 << 20,
            "{}: {} bytes on disk",
            p.display(),
            m.blocks() * 512
        );
    };
    let out = dir.join("out");
    fs::create_dir_all(&out).unwrap();
    for (from, to) in [
        (src.display().to_string(), "/nvme1n1/s".to_owned()),
        ("/nvme1n1/s".to_owned(), "/nvme3n1/s".to_owned()),
        ("/nvme3n1/s".to_owned(), "/nvme3n1/again".to_owned()),
        (
            "/nvme3n1/again".to_owned(),
            out.join("s").display().to_string(),
        ),
    ] {
        let o = within.run(&["cp", &from, &to]);
        assert!(
            o.status.success(),
            "cp {from} {to}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        if to.starts_with('/') && !to.starts_with(&out.display().to_string()) {
            // Four blocks hold data: the first, the two around 40 GiB
            // and the last.
            assert_eq!(pfs_blocks(&pfs, &to), 4, "{to}");
            assert!(pfs.ok(&["stat", &to]).contains(&format!("size: {SIZE}")));
            for (off, data) in &parts {
                assert_eq!(
                    &pfs_read_at(&pfs, &to, *off, data.len() as u64),
                    data,
                    "{to} at {off}"
                );
            }
            // A hole reads as zeros.
            let hole = pfs_read_at(&pfs, &to, 7 << 30, 4096);
            assert!(hole.len() == 4096 && hole.iter().all(|&b| b == 0));
        }
    }
    let back = out.join("s");
    small_local(&back);
    let f = fs::File::open(&back).unwrap();
    for (off, data) in &parts {
        let mut buf = vec![0u8; data.len()];
        f.read_exact_at(&mut buf, *off).unwrap();
        assert_eq!(&buf, data, "local copy at {off}");
    }
    for d in ["nvme1n1", "nvme3n1"] {
        pfs.fsck_clean(d);
    }
}

/// A file of `len` bytes of data (not zeros, no holes), made quickly.
fn data_file(p: &Path, len: usize) {
    let mut block = vec![0u8; 1 << 20];
    let mut f = std::io::BufWriter::new(fs::File::create(p).unwrap());
    for i in 0..len >> 20 {
        for (j, b) in block.iter_mut().enumerate() {
            *b = (i as u8) ^ (j as u8) | 1;
        }
        std::io::Write::write_all(&mut f, &block).unwrap();
    }
}

#[test]
fn a_copy_stopped_by_a_signal_removes_its_temporary_file() {
    // SIGTERM while a local file is copied into PFS, SIGINT while a PFS
    // file is copied out: each copy removes its temporary file, leaves no
    // file under the final name and ends killed by its signal.
    use std::os::unix::process::ExitStatusExt;
    let (dir, pfs) = formatted("cp-cli-signals", &["nvme1n1"]);
    let src = dir.join("src.bin");
    data_file(&src, 768 << 20);
    pfs.ok(&["cp", &src.display().to_string(), "/nvme1n1/src"]);
    let out = dir.join("out");
    fs::create_dir_all(&out).unwrap();
    let local_temps = || {
        fs::read_dir(&out)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(".pfscp-"))
    };
    let pfs_temps = || pfs.ok(&["ls", "/nvme1n1/"]).contains(".pfscp-");
    let cases: [(&str, String, String, nix::sys::signal::Signal); 2] = [
        (
            "into PFS",
            src.display().to_string(),
            "/nvme1n1/dst".to_owned(),
            nix::sys::signal::Signal::SIGTERM,
        ),
        (
            "out of PFS",
            "/nvme1n1/src".to_owned(),
            out.join("dst").display().to_string(),
            nix::sys::signal::Signal::SIGINT,
        ),
    ];
    for (what, from, to, sig) in cases {
        let into_pfs = to.starts_with("/nvme1n1/");
        let mut stopped = false;
        for _ in 0..5 {
            let mut child = pfs
                .command(&["cp", &from, &to])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            // Signal it once its temporary file exists.
            let start = std::time::Instant::now();
            let mut seen = false;
            while child.try_wait().unwrap().is_none() && start.elapsed() < Duration::from_secs(60) {
                seen = if into_pfs { pfs_temps() } else { local_temps() };
                if seen {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            if seen {
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
            }
            let o = child.wait_with_output().unwrap();
            if !seen || o.status.success() {
                // Done before it could be stopped: try again.
                assert!(
                    o.status.success(),
                    "{what}: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
                if into_pfs {
                    pfs.ok(&["rm", &to]);
                } else {
                    fs::remove_file(&to).unwrap();
                }
                continue;
            }
            assert_eq!(
                o.status.signal(),
                Some(sig as i32),
                "{what}: {:?} ({})",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            );
            stopped = true;
            break;
        }
        assert!(stopped, "{what}: every copy finished before its signal");
        assert!(!local_temps(), "{what}: a local temporary file stayed");
        assert!(!pfs_temps(), "{what}: a PFS temporary file stayed");
        let ls = pfs.ok(&["ls", "/nvme1n1/"]);
        assert!(!ls.contains(" dst\n"), "{what}: {ls}");
        assert!(!out.join("dst").exists(), "{what}");
        pfs.fsck_clean("nvme1n1");
    }
}

#[test]
fn recursive_copies_of_dir_dot_copy_the_contents() {
    // `cp -r dir/. dst` copies what dir holds into dst (made if missing),
    // as cp does, from and to either side; `cp -r dir dst` still copies dir
    // itself into an existing dst.
    let (dir, pfs) = formatted("cp-cli-dirdot", &["nvme1n1", "nvme3n1"]);
    let src = dir.join("tree");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("a"), b"a\n").unwrap();
    fs::write(src.join("sub/b"), b"b\n").unwrap();
    let names = |listing: String| -> Vec<String> {
        let mut v: Vec<String> = listing
            .lines()
            .filter(|l| !l.starts_with("total "))
            .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
            .filter(|n| !n.starts_with(".pfs-"))
            .collect();
        v.sort();
        v
    };
    pfs.ok(&["mkdir", "/nvme1n1/dst"]);
    let s = format!("{}/.", src.display());
    pfs.ok(&["cp", "-r", &s, "/nvme1n1/dst"]);
    assert_eq!(names(pfs.ok(&["ls", "/nvme1n1/dst"])), ["a", "sub"]);
    assert_eq!(pfs_read(&pfs, "/nvme1n1/dst/sub/b"), b"b\n");
    // Into a missing directory, across devices, with a trailing slash.
    pfs.ok(&["cp", "-r", "/nvme1n1/dst/./", "/nvme3n1/new"]);
    assert_eq!(names(pfs.ok(&["ls", "/nvme3n1/new"])), ["a", "sub"]);
    // Out of PFS into an existing local directory.
    let back = dir.join("back");
    fs::create_dir_all(&back).unwrap();
    pfs.ok(&["cp", "-r", "/nvme3n1/new/.", &back.display().to_string()]);
    let mut local: Vec<String> = fs::read_dir(&back)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    local.sort();
    assert_eq!(local, ["a", "sub"]);
    assert_eq!(fs::read(back.join("sub/b")).unwrap(), b"b\n");
    // Without `/.` the directory itself goes inside.
    pfs.ok(&["cp", "-r", &src.display().to_string(), "/nvme1n1/dst"]);
    assert_eq!(names(pfs.ok(&["ls", "/nvme1n1/dst"])), ["a", "sub", "tree"]);
}
