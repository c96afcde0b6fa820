//! Crafted damaged images at the library level: every chain walk ends with
//! `CoreError::Corrupt` naming the device and object, fsck names each kind
//! of damage (and goes on past bad checksums), and a writer can still
//! remove a file whose size is impossible, in one short step. The same
//! images go through the real `pfs` binary in `pfs-tool/tests/crafted_cli.rs`.

#![allow(clippy::unwrap_used)]

use pfs_core::inspect::fsck_device as check_device;
use pfs_core::{CoreError, Device, FileDevice};
use pfs_core::{Mode, Mount, MountOptions};
use pfs_format::MetaType;
use pfs_tests::crafted::{build_base, edit_object, long_name, lookup, Damage};
use pfs_tests::device::Scratch;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn image(name: &str) -> (Scratch, PathBuf) {
    let dir = Scratch::new(&format!("crafted-lib-{name}"));
    let img = dir.join("img");
    build_base(&img);
    (dir, img)
}

/// A base image with damage `d` done, the inode of `path` looked up
/// before, and a read-only mount of it.
fn damaged(name: &str, path: &str, d: Damage) -> (Scratch, PathBuf, u64, Mount) {
    let (dir, img) = image(name);
    let (ino, _, _) = lookup(&img, path);
    d.apply(&img);
    let m = mount(&img, Mode::ReadOnly);
    (dir, img, ino, m)
}

fn mount(img: &Path, mode: Mode) -> Mount {
    let dev: Arc<dyn Device> =
        Arc::new(FileDevice::open("img", img, mode == Mode::ReadWrite).unwrap());
    Mount::open_with(dev, mode, &MountOptions::default()).unwrap()
}

fn fsck_problems(img: &Path) -> Vec<String> {
    let dev = FileDevice::open("img", img, false).unwrap();
    check_device(&dev).unwrap().problems
}

/// The corruption error of `r`, or a panic saying what came instead.
fn corrupt<T: std::fmt::Debug>(r: pfs_core::Result<T>) -> (MetaType, u64, String) {
    match r {
        Err(CoreError::Corrupt {
            device,
            object,
            number,
            problem,
        }) => {
            assert_eq!(device, "img");
            (object, number, problem)
        }
        other => panic!("expected a corruption error, got {other:?}"),
    }
}

#[test]
fn base_image_is_clean() {
    let (_dir, img) = image("clean");
    assert!(fsck_problems(&img).is_empty());
}

#[test]
fn block_tag_cycle_ends_every_block_walk() {
    let (_dir, img, ino, m) = damaged("btcycle", "/d3/top", Damage::BlockTagCycle);
    let (object, number, problem) = corrupt(m.blocks(ino));
    assert_eq!((object, number), (MetaType::Inode, ino));
    assert!(problem.contains("block-tag chain has a cycle"), "{problem}");
    corrupt(m.read_at(ino, &mut [0u8; 16], 0));
    let p = fsck_problems(&img);
    assert!(p.iter().any(|l| l.contains("cycle")), "{p:?}");
}

#[test]
fn directory_entry_cycle_ends_lookups() {
    let (_dir, _img, d1, m) = damaged("decycle", "/d1", Damage::DirEntryCycle);
    // A lookup of a missing name walks the whole chain (to build the
    // directory's name index): the loop is a corruption error, whether the
    // chain walk meets the cycle or the entries' back links give it away
    // first.
    match m.resolve("/d1/missing") {
        Err(CoreError::Corrupt {
            object,
            number,
            problem,
            ..
        }) => {
            assert_eq!((object, number), (MetaType::Inode, d1));
            assert!(
                problem.contains("directory entry chain has a cycle"),
                "{problem}"
            );
        }
        Err(CoreError::Format(pfs_format::FormatError::Corrupt { .. })) => {}
        other => panic!("expected a corruption error, got {other:?}"),
    }
    assert!(m.readdir(d1).is_err());
}

#[test]
fn extension_chain_cycle_ends_name_assembly() {
    let (_dir, img) = image("extcycle");
    let long = format!("/d1/{}", long_name());
    let (_, head, _) = lookup(&img, &long);
    let (d1, _, _) = lookup(&img, "/d1");
    // The long name's first extension links to itself.
    let dev = FileDevice::open("img", &img, false).unwrap();
    let meta = pfs_core::inspect::MetaImage::load(&dev).unwrap();
    let ext = meta
        .lookup(MetaType::DirEntry, head)
        .unwrap()
        .1
        .direntry()
        .de_extdeno
        .get();
    drop(meta);
    assert_ne!(ext, 0, "a 100-byte name has an extension");
    edit_object(&img, MetaType::DirEntry, ext, true, |mo| {
        mo.direntry_mut().de_extdeno.set(ext);
    });
    let m = mount(&img, Mode::ReadOnly);
    let (object, number, problem) = corrupt(m.readdir(d1));
    assert_eq!((object, number), (MetaType::DirEntry, head));
    assert!(problem.contains("name extension chain"), "{problem}");
    assert!(!fsck_problems(&img).is_empty());
}

#[test]
fn fsck_names_each_kind_of_damage() {
    let cases: [(Damage, &str); 8] = [
        (Damage::EntryToParent, "second name"),
        (Damage::BlockTagCycle, "has a cycle"),
        (Damage::DirEntryCycle, "directory /d1"),
        (Damage::HugeSize, "beyond the largest file size"),
        (Damage::DuplicateName, "duplicate name \"h\""),
        (Damage::DotDotName, "impossible name \"..\""),
        (Damage::NlinkZero, "nlink 0"),
        (Damage::UnknownType, "unknown inode type 7"),
    ];
    for (d, needle) in cases {
        let (_dir, img) = image(&format!("fsck-{d:?}"));
        d.apply(&img);
        let p = fsck_problems(&img);
        assert!(
            p.iter().any(|l| l.contains(needle)),
            "{d:?}: no problem line contains {needle:?}: {p:#?}"
        );
    }
}

#[test]
fn fsck_goes_on_past_bad_checksums() {
    let (_dir, img) = image("checksums");
    let (g, _, _) = lookup(&img, "/d1/g");
    Damage::DuplicateName.apply(&img);
    // Stale checksums in two sectors: an inode in use and a free direntry.
    edit_object(&img, MetaType::Inode, g, false, |mo| {
        mo.inode_mut().in_size.set(1)
    });
    edit_object(&img, MetaType::DirEntry, 100, false, |mo| {
        mo.mo_version.set(5)
    });
    let p = fsck_problems(&img);
    let bad = p.iter().filter(|l| l.contains("checksum")).count();
    assert_eq!(bad, 2, "{p:#?}");
    assert!(p.iter().any(|l| l.contains("duplicate name")), "{p:#?}");
}

#[test]
fn a_file_with_an_impossible_size_is_removed_in_one_short_step() {
    let (_dir, img) = image("huge-rm");
    Damage::HugeSize.apply(&img);
    let m = mount(&img, Mode::ReadWrite);
    let t = Instant::now();
    m.unlink_path("/d3/top").unwrap();
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    drop(m);
    assert!(fsck_problems(&img).is_empty());
}
