//! The C API test program (`tests/c/api.c`): every function and the errno
//! cases of the contract, linked with the shared library and with the
//! static archive.

#![allow(clippy::unwrap_used)]

mod common;
use common::{assert_ok, program, Link, TestDev};

fn api(link: Link) {
    if !common::can_build() {
        return;
    }
    let dev = TestDev::new();
    dev.passes("api", link);
}

#[test]
fn api_shared_library() {
    api(Link::Shared);
}

#[test]
fn api_static_archive() {
    api(Link::Static);
}

/// `pfsd_stat` and a FUSE mount of the writer report a file and a
/// directory alike: both are the core's one conversion (`Attr::stat`).
/// Only the inode number (FUSE makes nodes of its own) and the permission
/// bits (a FUSE mount's `uid=`, `gid=`, `umask=`) are the front end's.
#[test]
fn pfsd_stat_and_a_fuse_mount_agree() {
    use std::os::unix::fs::MetadataExt;
    if !common::can_build() || !pfs_tests::fuse::available() {
        return;
    }
    let dev = TestDev::new();
    let stat = program("stat", Link::Shared);
    let m = dev.mount("1", &[], "mnt");
    std::fs::create_dir(m.path("d")).unwrap();
    // Two 4 MiB blocks, the second written in part.
    std::fs::write(m.path("d/f"), vec![7u8; (5 << 20) + 3]).unwrap();
    // Durable, so another host sees it now (the mount makes its changes
    // durable within 50 ms anyway).
    std::fs::File::open(m.path("d"))
        .unwrap()
        .sync_all()
        .unwrap();
    for rel in ["d", "d/f"] {
        let md = std::fs::metadata(m.path(rel)).unwrap();
        let kind = if md.is_dir() { "dir" } else { "file" };
        let fuse = format!(
            "type={kind} size={} blocks={} blksize={} nlink={} atime={} mtime={} ctime={}",
            md.size(),
            md.blocks(),
            md.blksize(),
            md.nlink(),
            md.atime(),
            md.mtime(),
            md.ctime()
        );
        let out = dev.run(&stat, &["2", rel]);
        assert_ok("stat", &out);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), fuse, "{rel}");
    }
    let md = std::fs::metadata(m.path("d/f")).unwrap();
    assert_eq!((md.blocks(), md.blksize()), (2 * 8192, 4 << 20));
    assert_eq!(
        md.atime(),
        md.mtime(),
        "no access time: the modification time"
    );
    m.umount();
    dev.fsck();
}
