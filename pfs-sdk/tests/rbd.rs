//! PFS on Ceph RBD images (PBD `rbd:<pool>:<image>`), on a real
//! one-machine cluster started once for this test binary
//! (`pfs_tests::ceph`, `scripts/ceph-cluster.sh`) and stopped after it:
//! the tool, a C program through libpfsd (and its forked child), a FUSE
//! mount with a read-only mount of another host following it, and growing the
//! filesystem after `rbd resize`.
//!
//! Where Ceph is not installed or the cluster does not start, each test
//! prints a note and passes; the FUSE test also needs root and /dev/fuse.

#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_ok, program, Link};
use pfs_tests::ceph::{self, Cluster};
use pfs_tests::cli::Pfs;
use std::process::Command;
use std::time::{Duration, Instant};

/// `n` reproducible bytes for `seed`.
fn bytes(seed: u64, n: usize) -> Vec<u8> {
    pfs_tests::seeded_bytes(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15), n)
}

/// A new image `name` of `size`, formatted with `pfs mkfs`; its PBD name
/// and a runner for it.
fn formatted(c: &Cluster, name: &str, size: &str) -> (String, Pfs) {
    let pbd = c.create_image(name, size);
    let pfs = c.pfs(name);
    pfs.ok(&["mkfs", &pbd]);
    (pbd, pfs)
}

/// The chunk count `pfs info` reports (the block tags' `nchild`).
fn chunks(pfs: &Pfs, pbd: &str) -> u64 {
    let info = pfs.ok(&["info", pbd]);
    let line = info
        .lines()
        .find(|l| l.contains("nchild="))
        .unwrap_or_else(|| panic!("no nchild in pfs info:\n{info}"));
    let n = line.split("nchild=").nth(1).unwrap();
    n.split(',').next().unwrap().trim().parse().unwrap()
}

#[test]
fn the_tool_formats_writes_reads_and_lists_an_image() {
    let Some(c) = ceph::cluster() else {
        return;
    };
    // With rbd's default features: one process at a time writes here.
    let pbd = c.create_image_default_features("tool", "20G");
    let pfs = c.pfs("tool");
    pfs.ok(&["mkfs", &pbd]);
    assert_eq!(chunks(&pfs, &pbd), 2);
    pfs.ok(&["mkdir", &format!("/{pbd}/d")]);
    let data = bytes(1, (3 << 20) + 4321);
    let o = pfs.run_with_input(&["write", &format!("/{pbd}/d/hello")], &data);
    assert_ok("pfs write", &o);
    // Unaligned, past the end of what was written.
    let o = pfs.run_with_input(
        &["write", "-o", "5000001", &format!("/{pbd}/d/hello")],
        b"tail",
    );
    assert_ok("pfs write -o", &o);
    let back = pfs.ok_bytes(&["read", &format!("/{pbd}/d/hello")]);
    assert_eq!(back.len(), 5_000_005);
    pfs_tests::assert_bytes("read back", &back[..data.len()], &data);
    assert!(back[data.len()..5_000_001].iter().all(|&b| b == 0));
    assert_eq!(&back[5_000_001..], b"tail");
    assert_eq!(pfs.names(&format!("/{pbd}/d")), ["hello"]);
    // `pfs cp` takes /rbd:<pool>:<image>/... for a PFS path, both ways.
    let local = pfs.dir().join("local.bin");
    std::fs::write(&local, &data).unwrap();
    let local = local.display().to_string();
    pfs.ok(&["cp", &local, &format!("/{pbd}/d/copied")]);
    let back_local = pfs.dir().join("back.bin").display().to_string();
    pfs.ok(&["cp", &format!("/{pbd}/d/copied"), &back_local]);
    pfs_tests::assert_bytes("copied back", &std::fs::read(&back_local).unwrap(), &data);
    let mut names = pfs.names(&format!("/{pbd}/d"));
    names.sort();
    assert_eq!(names, ["copied", "hello"]);
    pfs.ok(&["rm", &format!("/{pbd}/d/hello")]);
    pfs.ok(&["rm", &format!("/{pbd}/d/copied")]);
    assert!(pfs.names(&format!("/{pbd}/d")).is_empty());
    pfs.fsck_clean(&pbd);
    // A second mkfs is refused without -f: the image is read back.
    let o = pfs.fail(&["mkfs", &pbd]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already formatted"),
        "{}",
        pfs_tests::cli::text(&o)
    );
}

#[test]
fn bad_and_missing_images_are_errors() {
    let Some(c) = ceph::cluster() else {
        return;
    };
    let pfs = c.pfs("missing");
    // No pool in the name.
    let o = pfs.fail(&["info", "rbd:nopool"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("rbd:<pool>:<image>"), "{err}");
    // An image that does not exist: ENOENT from rbd_open, said as such.
    let o = pfs.fail(&["info", "rbd:rbd:no-such-image"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("rbd_open") && err.contains("No such file"),
        "{err}"
    );
    // A pool that does not exist.
    let o = pfs.fail(&["info", "rbd:nopool:x"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("opening pool nopool"), "{err}");
    // A configuration file that does not exist.
    let o = pfs
        .clone()
        .env("PFS_RBD_CONF", c.dir().join("nonexistent.conf"))
        .fail(&["info", "rbd:rbd:x"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("rados_conf_read_file"), "{err}");
}

fn c_program(link: Link, image: &str) {
    if !common::can_build() {
        return;
    }
    let Some(c) = ceph::cluster() else {
        return;
    };
    let (pbd, pfs) = formatted(c, image, "20G");
    let exe = program("rbd", link);
    let run = |mode: &str| {
        let mut cmd = Command::new(&exe);
        cmd.env("PFS_DEVICE_DIR", pfs.dir())
            .env_remove("LD_LIBRARY_PATH")
            .args([pbd.as_str(), mode]);
        for (k, v) in c.client_env() {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert_ok(&format!("rbd {mode}"), &out);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    };
    run("write");
    run("check");
    // The tool sees what the program wrote.
    let f = pfs.ok_bytes(&["read", &format!("/{pbd}/d/small")]);
    assert_eq!(f, b"rbd\nparent\n");
    let f = pfs.ok_bytes(&["read", &format!("/{pbd}/d/child")]);
    assert_eq!(f, b"from child");
    pfs.fsck_clean(&pbd);
}

#[test]
fn a_c_program_uses_an_image_through_libpfsd() {
    c_program(Link::Shared, "sdk-shared");
}

#[test]
fn a_statically_linked_c_program_uses_an_image() {
    c_program(Link::Static, "sdk-static");
}

/// Polls `ok` for up to 10 s; fails the test with `what` if it never holds.
fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{what}: not within 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_fuse_mount_serves_an_image() {
    if !pfs_tests::fuse::available() {
        return;
    }
    let Some(c) = ceph::cluster() else {
        return;
    };
    let (pbd, pfs) = formatted(c, "fuse", "20G");
    let mp = pfs.dir().join("mnt");
    let m = pfs_tests::fuse::mount(&pfs, "1", &[], &pbd, &mp);
    std::fs::create_dir_all(m.path("a/b")).unwrap();
    let data = bytes(2, (9 << 20) + 77);
    // Written as std::fs::write does, but a close that reports an error
    // (a write that failed in the background) fails the test here.
    pfs_tests::fuse::write_file(&m.path("a/b/file"), &data);
    pfs_tests::fuse::write_file(&m.path("a/small"), b"small");
    std::fs::rename(m.path("a/small"), m.path("a/renamed")).unwrap();
    let got = std::fs::read(m.path("a/b/file")).unwrap();
    if got != data {
        // Which is wrong, the mount's reads or the image: read once more
        // through the mount, and with the tool once the mount's commits
        // are durable (within 50 ms).
        let again = std::fs::read(m.path("a/b/file")).unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let tool = pfs.ok_bytes(&["read", &format!("/{pbd}/a/b/file")]);
        eprintln!(
            "a/b/file read wrong; read again through the mount: {}; with pfs read: {}",
            if again == data { "right" } else { "wrong" },
            if tool == data { "right" } else { "wrong" },
        );
    }
    pfs_tests::assert_bytes("a/b/file through the mount", &got, &data);
    let mut names: Vec<String> = std::fs::read_dir(m.path("a"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["b", "renamed"]);
    // Another process, with a connection to the cluster of its own, reads
    // what the mount committed while it is still mounted.
    std::fs::File::open(m.path("a/b/file"))
        .unwrap()
        .sync_all()
        .unwrap();
    pfs_tests::assert_bytes(
        "pfs read a/b/file",
        &pfs.ok_bytes(&["read", &format!("/{pbd}/a/b/file")]),
        &data,
    );
    std::fs::write(m.path("a/b/file"), b"rewritten").unwrap();
    std::fs::File::open(m.path("a/b/file"))
        .unwrap()
        .sync_all()
        .unwrap();
    assert_eq!(
        pfs.ok_bytes(&["read", &format!("/{pbd}/a/b/file")]),
        b"rewritten"
    );
    std::fs::write(m.path("a/b/file"), &data).unwrap();
    // A read-only mount of another host follows the writer through the
    // journal on the image: new files and a removal show.
    let r = pfs_tests::fuse::mount(&pfs, "2", &["-r"], &pbd, &pfs.dir().join("ro"));
    for i in 0..3u64 {
        let body = bytes(10 + i, 100_000 * (i as usize + 1));
        let name = format!("a/new-{i}");
        std::fs::write(m.path(&name), &body).unwrap();
        wait_until(&format!("{name} on the read-only mount"), || {
            std::fs::read(r.path(&name)).is_ok_and(|got| got == body)
        });
    }
    std::fs::remove_file(m.path("a/new-0")).unwrap();
    wait_until("the removal on the read-only mount", || {
        !r.path("a/new-0").exists()
    });
    r.umount();
    m.umount();
    // What the mount wrote is on the image, for the tool.
    pfs_tests::assert_bytes(
        "pfs read a/b/file",
        &pfs.ok_bytes(&["read", &format!("/{pbd}/a/b/file")]),
        &data,
    );
    assert_eq!(
        pfs.ok_bytes(&["read", &format!("/{pbd}/a/renamed")]),
        b"small"
    );
    pfs.fsck_clean(&pbd);
}

/// From 201 chunks (a 2010 GiB image) to 1,000 (10,000 GiB) after `rbd
/// resize`: the images are thin, so only what PFS writes is stored.
#[test]
fn growfs_after_rbd_resize_from_201_to_1000_chunks() {
    let Some(c) = ceph::cluster() else {
        return;
    };
    let (pbd, pfs) = formatted(c, "grow", "2010G");
    assert_eq!(chunks(&pfs, &pbd), 201);
    let data = bytes(3, 1 << 20);
    assert_ok(
        "pfs write",
        &pfs.run_with_input(&["write", &format!("/{pbd}/before")], &data),
    );
    // Nothing to grow onto yet.
    let o = pfs.fail(&["growfs", &pbd]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nothing to grow"),
        "{}",
        pfs_tests::cli::text(&o)
    );
    c.resize_image("grow", "10000G");
    pfs.ok(&["growfs", &pbd]);
    assert_eq!(chunks(&pfs, &pbd), 1000);
    pfs_tests::assert_bytes(
        "pfs read before",
        &pfs.ok_bytes(&["read", &format!("/{pbd}/before")]),
        &data,
    );
    assert_ok(
        "pfs write",
        &pfs.run_with_input(&["write", &format!("/{pbd}/after")], b"grown"),
    );
    assert_eq!(pfs.ok_bytes(&["read", &format!("/{pbd}/after")]), b"grown");
    pfs.fsck_clean(&pbd);
}
