//! Crafted damaged images (valid checksums, impossible contents) handed to
//! every read command of the real `pfs` binary, each run as a process with
//! a time limit and an address-space limit: every command ends, by itself,
//! with either success or a clear error (non-zero exit and a message on
//! stderr), never a signal, a hang or unbounded memory. `fsck` lists each
//! problem.

#![allow(clippy::unwrap_used)]

use pfs_format::MetaType;
use pfs_tests::cli::Pfs;
use pfs_tests::crafted::{build_base, edit_object, long_name, lookup, rename_entry, Damage};
use pfs_tests::device::Scratch;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const PBD: &str = "nvme9n1";
/// Longest a command may run on a damaged image.
const TIME_LIMIT: Duration = Duration::from_secs(20);
/// Address-space limit of each command (`prlimit --as`).
const MEMORY_LIMIT: u64 = 2 << 30;

struct Run {
    code: Option<i32>,
    signal: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// Runs `pfs` under `prlimit` with the time limit; kills it when late.
fn run(dir: &Path, args: &[&str]) -> Run {
    run_for(dir, args, TIME_LIMIT)
}

/// [`run`] with another time limit.
fn run_for(dir: &Path, args: &[&str], limit: Duration) -> Run {
    let start = Instant::now();
    // Keep only the head of a long output (a damaged size may still ask
    // for a lot of zeros before the fix).
    let o = Pfs::new(dir)
        .under(&["prlimit", &format!("--as={MEMORY_LIMIT}"), "--"])
        .time_limit(limit)
        .keep_output(1 << 16)
        .run(args);
    Run {
        code: o.status.code(),
        signal: o.status.signal(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        elapsed: start.elapsed(),
    }
}

/// A fresh base image in a new device directory.
fn image(name: &str) -> (Scratch, PathBuf) {
    let dir = Scratch::new(&format!("crafted-{name}"));
    let img = dir.join(PBD);
    build_base(&img);
    (dir, img)
}

fn p(rest: &str) -> String {
    format!("/{PBD}{rest}")
}

/// What a command must do on a damaged image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Fail with a clear error.
    Fail,
    /// Succeed or fail clearly; the damage may not lie on its path.
    Either,
}

/// Runs every read command (and `rm -r`, last) on a damaged image.
fn every_command(d: Damage, target: &str, dir: &str, must_fail: &[&str]) {
    let (work, img) = image(&format!("{d:?}"));
    d.apply(&img);
    let local = work.join("copy-out");
    let target = p(target);
    let dirp = p(dir);
    let local_s = local.to_string_lossy().into_owned();
    let cmds: Vec<(&str, Vec<&str>)> = vec![
        ("ls", vec!["ls", &dirp]),
        ("tree", vec!["tree", "/nvme9n1/"]),
        ("tree -v", vec!["tree", "-v", "/nvme9n1/"]),
        ("du", vec!["du", "/nvme9n1/"]),
        ("du -a", vec!["du", "-a", "/nvme9n1/"]),
        ("stat", vec!["stat", &target]),
        ("read", vec!["read", &target]),
        ("map", vec!["map", &target]),
        ("fsck", vec!["fsck", PBD]),
        ("cp -r", vec!["cp", "-r", &dirp, &local_s]),
        ("rm -r", vec!["rm", "-r", &dirp]),
    ];
    let mut report = Vec::new();
    for (label, args) in &cmds {
        let r = run(&work, args);
        let want = if must_fail.contains(label) {
            Want::Fail
        } else {
            Want::Either
        };
        let line = format!(
            "{d:?} {label}: code {:?} signal {:?} in {:?}; stderr {:?}",
            r.code,
            r.signal,
            r.elapsed,
            r.stderr.lines().next().unwrap_or("")
        );
        report.push(line.clone());
        assert!(r.signal.is_none(), "{line}\nstdout: {}", r.stdout);
        let code = r.code.unwrap();
        // Memory exhaustion shows as an allocation failure message and
        // abort; anything above 128 would be a shell-style signal code.
        assert!(
            !r.stderr.contains("memory allocation") && !r.stderr.contains("stack overflow"),
            "{line}"
        );
        if code != 0 {
            assert!(
                r.stderr.starts_with("pfs: ") && r.stderr.trim().len() > 5,
                "a failure must say why on stderr: {line}"
            );
            assert!(
                !r.stderr.contains("panicked"),
                "a failure must not be a panic: {line}"
            );
        }
        if want == Want::Fail {
            assert_ne!(code, 0, "must fail on this damage: {line}");
        }
        if *label == "fsck" {
            assert!(
                r.stdout.contains("problem: "),
                "fsck lists the problem: {line}\n{}",
                r.stdout
            );
        }
    }
    eprintln!("{}", report.join("\n"));
    // Whatever the damage, nothing outside the copy's target may appear.
    for e in fs::read_dir(&work).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        assert!(
            ["stdout", "stderr", PBD, "copy-out"].contains(&n.as_str())
                || n.ends_with("-paxos-hostid")
                || n.starts_with('.'),
            "a command wrote {n} outside its target"
        );
    }
}

#[test]
fn clean_base_image_passes_every_command() {
    let (work, _img) = image("clean");
    let out = run(&work, &["fsck", PBD]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("clean"), "{}", out.stdout);
    for args in [
        vec!["tree", "/nvme9n1/"],
        vec!["du", "-a", "/nvme9n1/"],
        vec!["read", "/nvme9n1/d3/top"],
        vec!["map", "/nvme9n1/d3/top"],
    ] {
        let r = run(&work, &args);
        assert_eq!(r.code, Some(0), "{args:?}: {}", r.stderr);
    }
    let local = work.join("copy-out");
    let r = run(
        &work,
        &["cp", "-r", "/nvme9n1/d1", &local.to_string_lossy()],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(fs::read(local.join("d2/f")).unwrap().len(), 100);
    assert!(local.join(long_name()).is_file());
    let r = run(&work, &["rm", "-r", "/nvme9n1/d1"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let r = run(&work, &["fsck", PBD]);
    assert_eq!(r.code, Some(0), "{}", r.stdout);
}

#[test]
fn entry_pointing_back_to_its_parent() {
    every_command(
        Damage::EntryToParent,
        "/d1/d2/f",
        "/d1",
        &["tree", "tree -v", "du", "du -a", "fsck", "cp -r", "rm -r"],
    );
}

#[test]
fn block_tag_chain_cycle() {
    every_command(
        Damage::BlockTagCycle,
        "/d3/top",
        "/d3",
        &["read", "map", "fsck", "cp -r", "rm -r"],
    );
}

#[test]
fn directory_entry_chain_cycle() {
    every_command(
        Damage::DirEntryCycle,
        // A name that is not there: the lookup walks the whole chain.
        "/d1/missing",
        "/d1",
        &[
            "ls", "tree", "tree -v", "du", "du -a", "stat", "read", "map", "fsck", "cp -r", "rm -r",
        ],
    );
}

#[test]
fn huge_file_size() {
    every_command(
        Damage::HugeSize,
        "/d3/top",
        "/d3",
        &["read", "map", "fsck", "cp -r"],
    );
}

#[test]
fn duplicate_names_in_a_directory() {
    every_command(Damage::DuplicateName, "/d1/h", "/d1", &["fsck"]);
}

#[test]
fn entry_named_dot_dot() {
    every_command(
        Damage::DotDotName,
        "/d1/h",
        "/d1",
        &["fsck", "cp -r", "rm -r"],
    );
}

#[test]
fn rm_r_never_follows_a_dot_dot_entry_out_of_its_tree() {
    let (work, img) = image("dotdot-rm");
    Damage::DotDotName.apply(&img);
    let r = run(&work, &["rm", "-r", "/nvme9n1/d1"]);
    assert_ne!(r.code, Some(0), "{}", r.stdout);
    // Nothing outside /d1 was touched.
    for f in ["/nvme9n1/d3/top", "/nvme9n1/d4/a", "/nvme9n1/d4/b"] {
        let r = run(&work, &["stat", f]);
        assert_eq!(r.code, Some(0), "{f} must survive: {}", r.stderr);
    }
}

#[test]
fn a_file_with_an_impossible_size_can_still_be_removed() {
    let (work, img) = image("huge-rm");
    Damage::HugeSize.apply(&img);
    let r = run(&work, &["rm", "/nvme9n1/d3/top"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let r = run(&work, &["fsck", PBD]);
    assert_eq!(r.code, Some(0), "{}", r.stdout);
}

#[test]
fn link_count_zero() {
    every_command(Damage::NlinkZero, "/d1/g", "/d1", &["fsck"]);
}

#[test]
fn unknown_inode_type() {
    every_command(
        Damage::UnknownType,
        "/d1/g",
        "/d1",
        &[
            "ls", "tree", "tree -v", "du", "du -a", "stat", "read", "map", "fsck", "cp -r",
        ],
    );
}

/// One image with every independent kind of damage at once: fsck names
/// each, and goes on past bad checksums instead of stopping at the first.
#[test]
fn fsck_lists_every_problem() {
    let (work, img) = image("all");
    Damage::BlockTagCycle.apply(&img);
    Damage::DuplicateName.apply(&img);
    let (h_ino, _, _) = lookup(&img, "/d1/h");
    edit_object(&img, MetaType::Inode, h_ino, true, |mo| {
        mo.inode_mut().in_nlink.set(0)
    });
    let (a_ino, _, _) = lookup(&img, "/d4/a");
    edit_object(&img, MetaType::Inode, a_ino, true, |mo| {
        mo.inode_mut().in_type = 9
    });
    let (_, b_de, _) = lookup(&img, "/d4/b");
    rename_entry(&img, b_de, b"..");
    // Two objects with bad checksums, in different sectors.
    let (f_ino, _, _) = lookup(&img, "/d1/d2/f");
    let (_, long_de, _) = lookup(&img, &format!("/d1/{}", long_name()));
    edit_object(&img, MetaType::Inode, f_ino, false, |mo| {
        mo.inode_mut().in_size.set(12345)
    });
    edit_object(&img, MetaType::DirEntry, long_de + 40, false, |mo| {
        mo.mo_version.set(77)
    });
    let r = run(&work, &["fsck", PBD]);
    assert_ne!(r.code, Some(0));
    let problems: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.starts_with("problem: "))
        .collect();
    let has = |needle: &str| problems.iter().any(|l| l.contains(needle));
    let all = problems.join("\n");
    assert!(has("cycle"), "block tag cycle: {all}");
    assert!(has("duplicate name"), "duplicate name: {all}");
    assert!(has("nlink 0"), "nlink 0: {all}");
    assert!(has("unknown inode type 9"), "type: {all}");
    assert!(has("impossible name"), "dot-dot name: {all}");
    assert!(
        problems.iter().filter(|l| l.contains("checksum")).count() >= 2,
        "both bad checksums: {all}"
    );
}

/// A tree about as deep as a path can name (2000 levels of one-letter
/// names; 2047 is the limit, a one-chunk device has 2048 direntries): every
/// walk gets through it without running out of stack (cp -r used to).
#[test]
fn deepest_possible_tree_is_walked_without_stack_overflow() {
    use pfs_core::{Device, FileDevice};
    use pfs_core::{Mode, Mount, MountOptions};
    let (work, img) = image("deep");
    let depth = 2000;
    assert!(depth <= pfs_core::MAX_DEPTH as usize);
    {
        let dev: std::sync::Arc<dyn Device> =
            std::sync::Arc::new(FileDevice::open("img", &img, true).unwrap());
        let m = Mount::open_with(dev, Mode::ReadWrite, &MountOptions::default()).unwrap();
        let mut dir = pfs_format::layout::ROOT_INO;
        for _ in 0..depth {
            dir = m.create(dir, b"a", pfs_core::FileType::Dir).unwrap();
        }
    }
    let local = work.join("copy-out");
    let local_s = local.to_string_lossy().into_owned();
    for args in [
        vec!["tree", "/nvme9n1/"],
        vec!["du", "/nvme9n1/"],
        vec!["fsck", PBD],
        vec!["cp", "-r", "/nvme9n1/a", &local_s],
        vec!["rm", "-r", "/nvme9n1/a"],
    ] {
        // cp and rm resolve each level's path from the root: quadratic in
        // the depth, slow but bounded.
        let r = run_for(&work, &args, Duration::from_secs(300));
        assert_eq!(r.code, Some(0), "{args:?}: {:?} {}", r.signal, r.stderr);
    }
}
