//! The inode-based calls front ends share: create (exclusive or not) and
//! rename (replacing or not), each decided inside its transaction.

use crate::testutil::mem_writer as writer;
use crate::{FileType, Replace};
use pfs_format::layout::ROOT_INO;

#[test]
fn create_exclusive_refuses_a_taken_name_and_otherwise_finds_it() {
    let m = writer();
    let (f, made) = m.create_with(ROOT_INO, b"f", FileType::File, true).unwrap();
    assert!(made);
    let e = m
        .create_with(ROOT_INO, b"f", FileType::File, true)
        .unwrap_err();
    assert_eq!(e.errno(), libc::EEXIST);
    assert_eq!(
        m.create_with(ROOT_INO, b"f", FileType::File, false)
            .unwrap(),
        (f, false),
        "without O_EXCL the file there is opened"
    );
    let (d, made) = m.create_with(ROOT_INO, b"d", FileType::Dir, false).unwrap();
    assert!(made && m.getattr(d).unwrap().is_dir());
    assert_eq!(
        m.create_with(ROOT_INO, b"d", FileType::Dir, false).unwrap(),
        (d, false)
    );
    let e = m
        .create_with(ROOT_INO, b"d", FileType::File, false)
        .unwrap_err();
    assert_eq!(e.errno(), libc::EISDIR);
    let e = m
        .create_with(ROOT_INO, b"f", FileType::Dir, false)
        .unwrap_err();
    assert_eq!(e.errno(), libc::ENOTDIR);
    let e = m.create_with(f, b"x", FileType::File, false).unwrap_err();
    assert_eq!(e.errno(), libc::ENOTDIR, "a file holds no names");
    assert_eq!(m.readdir(ROOT_INO).unwrap().count(), 4);
}

#[test]
fn of_two_threads_creating_one_name_exclusively_one_succeeds() {
    let m = writer();
    let made: Vec<bool> = std::thread::scope(|s| {
        let racers: Vec<_> = (0..4)
            .map(|_| s.spawn(|| m.create_with(ROOT_INO, b"x", FileType::File, true).is_ok()))
            .collect();
        racers.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(made.iter().filter(|&&b| b).count(), 1, "{made:?}");
}

#[test]
fn rename_without_replacing_leaves_an_existing_target_whole() {
    let m = writer();
    let src = m.create(ROOT_INO, b"src", FileType::File).unwrap();
    m.write_at(src, b"new", 0).unwrap();
    let dst = m.create(ROOT_INO, b"dst", FileType::File).unwrap();
    m.write_at(dst, b"old", 0).unwrap();
    let e = m
        .rename_with(ROOT_INO, b"src", ROOT_INO, b"dst", Replace::Never)
        .unwrap_err();
    assert_eq!(e.errno(), libc::EEXIST);
    assert_eq!(m.lookup(ROOT_INO, b"dst").unwrap(), dst, "the target stays");
    assert_eq!(m.lookup(ROOT_INO, b"src").unwrap(), src, "the source too");
    let read = |ino| {
        let mut buf = [0u8; 8];
        let n = m.read_at(ino, &mut buf, 0).unwrap();
        buf[..n].to_vec()
    };
    assert_eq!(read(dst), b"old");
    // Onto itself: the name exists.
    let e = m
        .rename_with(ROOT_INO, b"src", ROOT_INO, b"src", Replace::Never)
        .unwrap_err();
    assert_eq!(e.errno(), libc::EEXIST);
    // A free name is taken; replacing is the default.
    m.rename_with(ROOT_INO, b"src", ROOT_INO, b"moved", Replace::Never)
        .unwrap();
    assert_eq!(m.lookup(ROOT_INO, b"moved").unwrap(), src);
    m.rename_with(ROOT_INO, b"moved", ROOT_INO, b"dst", Replace::Allow)
        .unwrap();
    assert_eq!(m.lookup(ROOT_INO, b"dst").unwrap(), src);
    assert_eq!(read(src), b"new");
}

#[test]
fn of_two_threads_renaming_onto_one_free_name_without_replacing_one_succeeds() {
    let m = writer();
    let names: Vec<Vec<u8>> = (0..4).map(|i| format!("f{i}").into_bytes()).collect();
    for n in &names {
        m.create(ROOT_INO, n, FileType::File).unwrap();
    }
    let moved: Vec<bool> = std::thread::scope(|s| {
        let racers: Vec<_> = names
            .iter()
            .map(|n| {
                let m = &m;
                s.spawn(move || {
                    m.rename_with(ROOT_INO, n, ROOT_INO, b"t", Replace::Never)
                        .is_ok()
                })
            })
            .collect();
        racers.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(moved.iter().filter(|&&b| b).count(), 1, "{moved:?}");
    assert_eq!(m.readdir(ROOT_INO).unwrap().count(), 2 + 4);
}
