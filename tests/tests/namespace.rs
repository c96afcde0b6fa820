//! The inode-based namespace API as front ends use it: lookups, creates,
//! renames and listings by (directory inode, name); names as bytes and the
//! names no entry may have; the name index kept in step on the writer and
//! on a following reader; threads racing through one mount; owned file
//! handles with the std IO traits; system files; sizes and shrinking.

#![allow(clippy::unwrap_used)]

use pfs_core::testing::{CrashDevice, FailingDevice, StallingDevice};
use pfs_core::{
    CoreError, Device, FileType, MemDevice, Mode, Mount, MountOptions, OpenOptions, MAX_FILE_SIZE,
};
use pfs_format::layout::{CHUNK_SIZE, MIN_LOG_SIZE, ROOT_INO};
use pfs_tests::device;
use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Makes a filesystem with the smallest journal on `dev`.
fn format(dev: &dyn Device) {
    device::mkfs(dev, MIN_LOG_SIZE);
}

fn formatted() -> Arc<dyn Device> {
    device::in_memory("mem", MIN_LOG_SIZE)
}

fn opts(hostid: u64) -> MountOptions {
    device::host(hostid, 60_000)
}

fn writer(dev: &Arc<dyn Device>) -> Arc<Mount> {
    Arc::new(Mount::open_with(dev.clone(), Mode::ReadWrite, &opts(1)).unwrap())
}

fn errno<T: std::fmt::Debug>(r: Result<T, CoreError>) -> i32 {
    r.unwrap_err().errno()
}

fn names(m: &Mount, dir: u64) -> Vec<Vec<u8>> {
    m.readdir(dir).unwrap().map(|e| e.name).collect()
}

#[test]
fn inode_api() {
    let dev = formatted();
    let m = writer(&dev);
    let d = m.create(ROOT_INO, b"d", FileType::Dir).unwrap();
    let f = m.create(d, b"f", FileType::File).unwrap();
    assert_eq!(m.lookup(ROOT_INO, b"d").unwrap(), d);
    assert_eq!(m.lookup(d, b"f").unwrap(), f);
    assert_eq!(m.lookup(d, b".").unwrap(), d);
    assert_eq!(m.lookup(d, b"..").unwrap(), ROOT_INO);
    assert_eq!(m.lookup(ROOT_INO, b"..").unwrap(), ROOT_INO);
    assert_eq!(m.getattr(d).unwrap().kind, FileType::Dir);
    assert_eq!(m.getattr(f).unwrap().kind, FileType::File);
    assert_eq!(errno(m.create(d, b"f", FileType::File)), libc::EEXIST);
    assert_eq!(errno(m.lookup(d, b"nope")), libc::ENOENT);
    assert_eq!(errno(m.lookup(f, b"x")), libc::ENOTDIR);
    let listing: Vec<_> = m.readdir(ROOT_INO).unwrap().collect();
    let last = listing.last().unwrap();
    assert_eq!(
        (&last.name[..], last.ino, last.kind),
        (&b"d"[..], d, FileType::Dir)
    );
    assert_eq!(m.readdir(d).unwrap().len(), 1);

    // Renames: replace a file, replace an empty directory, refuse the rest.
    let g = m.create(d, b"g", FileType::File).unwrap();
    m.write_at(g, b"new", 0).unwrap();
    m.rename(d, b"g", d, b"f").unwrap();
    assert_eq!(m.lookup(d, b"f").unwrap(), g);
    assert!(m.getattr(f).is_err(), "the replaced inode is freed");
    assert_eq!(names(&m, d), vec![b"f".to_vec()]);
    let e = m.create(ROOT_INO, b"e", FileType::Dir).unwrap();
    let e2 = m.create(ROOT_INO, b"e2", FileType::Dir).unwrap();
    m.rename(ROOT_INO, b"e2", ROOT_INO, b"e").unwrap();
    assert_eq!(m.lookup(ROOT_INO, b"e").unwrap(), e2);
    assert_ne!(e, e2);
    // A directory with entries replaces an empty one, not the reverse.
    m.rename(ROOT_INO, b"d", ROOT_INO, b"e").unwrap();
    m.create(ROOT_INO, b"d2", FileType::Dir).unwrap();
    assert_eq!(
        errno(m.rename(ROOT_INO, b"d2", ROOT_INO, b"e")),
        libc::ENOTEMPTY
    );
    let d = m.lookup(ROOT_INO, b"e").unwrap();
    m.create(ROOT_INO, b"x", FileType::File).unwrap();
    assert_eq!(
        errno(m.rename(ROOT_INO, b"x", ROOT_INO, b"e")),
        libc::EISDIR
    );
    assert_eq!(
        errno(m.rename(ROOT_INO, b"e", ROOT_INO, b"x")),
        libc::ENOTDIR
    );
    let sub = m.create(d, b"sub", FileType::Dir).unwrap();
    assert_eq!(errno(m.rename(ROOT_INO, b"e", sub, b"e")), libc::EINVAL);
    assert_eq!(errno(m.rename(ROOT_INO, b"e", d, b"e")), libc::EINVAL);
    assert_eq!(errno(m.unlink(ROOT_INO, b"e")), libc::EISDIR);
    assert_eq!(errno(m.rmdir(ROOT_INO, b"x")), libc::ENOTDIR);
    assert_eq!(errno(m.rmdir(ROOT_INO, b"e")), libc::ENOTEMPTY);
    m.rmdir(d, b"sub").unwrap();
    device::fsck_clean(&m);
}

#[test]
fn names_are_bytes_and_impossible_names_are_refused() {
    let dev = formatted();
    let m = writer(&dev);
    for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b"] {
        assert_eq!(
            errno(m.create(ROOT_INO, bad, FileType::File)),
            libc::EINVAL,
            "{bad:?}"
        );
        assert_eq!(
            errno(m.create(ROOT_INO, bad, FileType::Dir)),
            libc::EINVAL,
            "{bad:?}"
        );
    }
    let long = vec![b'n'; 256];
    assert_eq!(
        errno(m.create(ROOT_INO, &long, FileType::File)),
        libc::ENAMETOOLONG
    );
    m.create(ROOT_INO, b"ok", FileType::File).unwrap();
    for bad in [&b".."[..], b".", b"", b"a/b"] {
        assert_eq!(
            errno(m.rename(ROOT_INO, b"ok", ROOT_INO, bad)),
            libc::EINVAL,
            "{bad:?}"
        );
    }
    assert_eq!(
        errno(m.rename(ROOT_INO, b"ok", ROOT_INO, &long)),
        libc::ENAMETOOLONG
    );
    // Any other bytes make a name, up to 255 of them.
    let latin1 = b"caf\xe9 \xff\xfe".to_vec();
    let max = vec![0xc3u8; 255];
    let a = m.create(ROOT_INO, &latin1, FileType::File).unwrap();
    let b = m.create(ROOT_INO, &max, FileType::Dir).unwrap();
    assert_eq!(m.lookup(ROOT_INO, &latin1).unwrap(), a);
    assert_eq!(m.lookup(ROOT_INO, &max).unwrap(), b);
    drop(m);
    let r = Mount::open_with(dev, Mode::ReadOnly, &opts(2)).unwrap();
    let listed = names(&r, ROOT_INO);
    assert!(listed.contains(&latin1) && listed.contains(&max));
    assert_eq!(r.lookup(ROOT_INO, &latin1).unwrap(), a);
    // Paths are bytes too.
    let mut p = b"/".to_vec();
    p.extend_from_slice(&max);
    assert_eq!(r.resolve(&p).unwrap(), b);
}

#[test]
fn dot_dot_is_followed_never_created() {
    let dev = formatted();
    let m = writer(&dev);
    m.create_dir_all("/a/../b/./c/..").unwrap();
    let a = m.resolve("/a").unwrap();
    assert!(names(&m, a).is_empty());
    let b = m.resolve("/b/").unwrap();
    assert_eq!(names(&m, b), vec![b"c".to_vec()]);
    assert_eq!(m.resolve("/b/c/../../a").unwrap(), a);
    assert_eq!(m.resolve("/../../b").unwrap(), b);
    assert_eq!(errno(m.mkdir_path("/a/..")), libc::EEXIST);
    assert_eq!(errno(m.create_path("/a/.", FileType::File)), libc::EEXIST);
    assert_eq!(errno(m.rmdir_path("/b/c/..")), libc::EINVAL);
    assert_eq!(errno(m.unlink_path("/b/..")), libc::EISDIR);
    device::fsck_clean(&m);
}

/// Every name the writer and a following reader find agrees with a walk of
/// the directory, through creates, in-place renames of long names (which
/// change only extension pieces), moves, replacements and unlinks.
#[test]
fn name_index_follows_commits_and_replay() {
    let dev = formatted();
    let w = writer(&dev);
    let r = Mount::open_with(dev.clone(), Mode::ReadOnly, &opts(2)).unwrap();
    let d = w.create(ROOT_INO, b"d", FileType::Dir).unwrap();
    let other = w.create(ROOT_INO, b"o", FileType::Dir).unwrap();
    let long = |tag: &str| format!("{}{tag}", "L".repeat(100)).into_bytes();
    let mut inos = Vec::new();
    for i in 0..300 {
        inos.push(
            w.create(d, format!("f{i}").as_bytes(), FileType::File)
                .unwrap(),
        );
    }
    let l1 = w.create(d, &long("one"), FileType::File).unwrap();
    // Both mounts index the directory now.
    assert_eq!(w.lookup(d, b"f7").unwrap(), inos[7]);
    assert_eq!(r.lookup(d, b"f7").unwrap(), inos[7]);
    assert_eq!(r.lookup(d, &long("one")).unwrap(), l1);
    w.rename(d, &long("one"), d, &long("two")).unwrap();
    w.rename(d, b"f1", other, b"g1").unwrap();
    w.rename(d, b"f2", d, b"f3").unwrap();
    w.unlink(d, b"f4").unwrap();
    let f5 = w.create(d, b"f5-new", FileType::File).unwrap();
    w.rename(d, b"f5-new", d, b"f5").unwrap();
    for m in [&*w, &r] {
        assert_eq!(errno(m.lookup(d, &long("one"))), libc::ENOENT);
        assert_eq!(m.lookup(d, &long("two")).unwrap(), l1);
        assert_eq!(errno(m.lookup(d, b"f1")), libc::ENOENT);
        assert_eq!(m.lookup(other, b"g1").unwrap(), inos[1]);
        assert_eq!(errno(m.lookup(d, b"f2")), libc::ENOENT);
        assert_eq!(m.lookup(d, b"f3").unwrap(), inos[2]);
        assert_eq!(errno(m.lookup(d, b"f4")), libc::ENOENT);
        assert_eq!(m.lookup(d, b"f5").unwrap(), f5);
        assert_eq!(errno(m.lookup(d, b"f5-new")), libc::ENOENT);
        // Every listed name looks up to its listed inode.
        for e in m.readdir(d).unwrap() {
            assert_eq!(m.lookup(d, &e.name).unwrap(), e.ino);
        }
    }
    // A checkpoint makes the reader reload instead of replay; still right.
    w.checkpoint().unwrap();
    w.rmdir(ROOT_INO, b"o").unwrap_err();
    w.unlink(other, b"g1").unwrap();
    w.rmdir(ROOT_INO, b"o").unwrap();
    let o2 = w.create(ROOT_INO, b"o", FileType::Dir).unwrap();
    assert_eq!(errno(r.lookup(o2, b"g1")), libc::ENOENT);
    assert_eq!(errno(w.lookup(o2, b"g1")), libc::ENOENT);
}

/// Threads changing one directory through one mount: of competing changes
/// only one can win, and the filesystem stays consistent.
#[test]
fn racing_threads_cannot_both_win() {
    let dev = formatted();
    let m = writer(&dev);
    let d = m.create(ROOT_INO, b"d", FileType::Dir).unwrap();
    let race = |f: &(dyn Fn(usize) -> Result<(), CoreError> + Sync)| -> Vec<i32> {
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..8).map(|t| s.spawn(move || f(t))).collect();
            hs.into_iter()
                .map(|h| h.join().unwrap().err().map(|e| e.errno()).unwrap_or(0))
                .collect()
        })
    };
    for round in 0..5 {
        let name = format!("same{round}");
        let r = race(&|_| m.create(d, name.as_bytes(), FileType::File).map(|_| ()));
        assert_eq!(r.iter().filter(|&&e| e == 0).count(), 1, "{r:?}");
        assert!(r.iter().all(|&e| e == 0 || e == libc::EEXIST), "{r:?}");
        let r = race(&|t| m.rename(d, name.as_bytes(), d, format!("to{round}-{t}").as_bytes()));
        assert_eq!(r.iter().filter(|&&e| e == 0).count(), 1, "{r:?}");
        let moved = names(&m, d)
            .into_iter()
            .find(|n| n.starts_with(format!("to{round}-").as_bytes()))
            .unwrap();
        let r = race(&|_| m.unlink(d, &moved));
        assert_eq!(r.iter().filter(|&&e| e == 0).count(), 1, "{r:?}");
        assert!(r.iter().all(|&e| e == 0 || e == libc::ENOENT), "{r:?}");
    }
    assert!(names(&m, d).is_empty());
    device::fsck_clean(&m);
}

#[test]
fn owned_handles_and_std_io() {
    let dev = formatted();
    let m = writer(&dev);
    let create = device::create_write();
    let mut f = m.open_file("/f", create).unwrap();
    let g = m.open_file("/f", OpenOptions::default()).unwrap();
    drop(m); // the handles keep the mount
    f.write_all(b"hello, ").unwrap();
    (&f).write_all(b"world").unwrap();
    f.seek(SeekFrom::Start(7)).unwrap();
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(s, "world");
    let mut all = Vec::new();
    (&g).read_to_end(&mut all).unwrap();
    assert_eq!(all, b"hello, world");
    assert_eq!((&g).seek(SeekFrom::End(-5)).unwrap(), 7);
    assert!((&g).seek(SeekFrom::Current(-100)).is_err());
    f.write_at(b"W", 7).unwrap();
    let mut buf = [0u8; 5];
    assert_eq!(g.read_at(&mut buf, 7).unwrap(), 5);
    assert_eq!(&buf, b"World");
    // A read-only handle refuses writes; errors carry their errno.
    let e = (&g).write(b"x").unwrap_err();
    let core = e.get_ref().unwrap().downcast_ref::<CoreError>().unwrap();
    assert_eq!(core.errno(), libc::EBADF);
    let m = Arc::clone(f.mount());
    let e: std::io::Error = m.resolve("/missing").unwrap_err().into();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    // Unlinked while open: readable until the last handle closes.
    m.unlink_path("/f").unwrap();
    let ino = f.ino();
    drop(f);
    assert_eq!(g.read_at(&mut buf, 0).unwrap(), 5);
    assert_eq!(&buf, b"hello");
    drop(g);
    assert!(m.getattr(ino).is_err(), "freed at the last close");
    // Unmount releases the lease: another host takes the device at once.
    let m = Arc::try_unwrap(m).ok().unwrap();
    m.unmount().unwrap();
    let start = Instant::now();
    let w2 = Mount::open_with(dev, Mode::ReadWrite, &opts(2)).unwrap();
    w2.create_path("/after", FileType::File).unwrap();
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn handles_writing_one_file_from_threads_keep_every_extent() {
    // Several handles extend one file at once, each writing whole blocks of
    // its own and committing after each: whatever order the commits take,
    // the file ends at the furthest write and every block holds its bytes.
    let dev = formatted();
    let m = writer(&dev);
    const BLOCK: usize = 4 << 20;
    const THREADS: usize = 4;
    const EACH: usize = 6;
    let create = device::create_write();
    drop(m.open_file("/f", create).unwrap());
    let w = OpenOptions {
        write: true,
        ..OpenOptions::default()
    };
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let f = m.open_file("/f", w).unwrap();
            s.spawn(move || {
                for i in 0..EACH {
                    let n = i * THREADS + t;
                    let data = vec![n as u8 + 1; BLOCK];
                    if i % 2 == 0 {
                        f.write_at(&data, (n * BLOCK) as u64).unwrap();
                    } else {
                        f.write_at_deferred(&data, (n * BLOCK) as u64).unwrap();
                        f.commit().unwrap();
                    }
                }
            });
        }
    });
    let f = m.open_file("/f", OpenOptions::default()).unwrap();
    assert_eq!(f.getattr().unwrap().size, (THREADS * EACH * BLOCK) as u64);
    let mut buf = vec![0u8; BLOCK];
    for n in 0..THREADS * EACH {
        assert_eq!(f.read_at(&mut buf, (n * BLOCK) as u64).unwrap(), BLOCK);
        assert!(buf.iter().all(|&b| b == n as u8 + 1), "block {n}");
    }
    device::fsck_clean(&m);
}

#[test]
fn unmount_reports_stopped_writes() {
    let dev = Arc::new(FailingDevice::new("failing", CHUNK_SIZE));
    format(dev.as_ref());
    let m = Mount::open_with(dev.clone(), Mode::ReadWrite, &opts(1)).unwrap();
    m.create_path("/a", FileType::File).unwrap();
    dev.fail_after(0);
    assert!(m.create_path("/b", FileType::File).is_err());
    let e = m.unmount().unwrap_err();
    assert_eq!(e.errno(), libc::EIO, "{e}");
}

#[test]
fn system_files_are_refused_in_the_core() {
    let dev = formatted();
    let m = writer(&dev);
    for (name, ino) in [(&b".pfs-paxos"[..], 1u64), (b".pfs-journal", 2)] {
        assert_eq!(m.lookup(ROOT_INO, name).unwrap(), ino);
        assert_eq!(errno(m.write_at(ino, b"x", 0)), libc::EPERM);
        assert_eq!(errno(m.truncate(ino, 0)), libc::EPERM);
        assert_eq!(
            errno(m.fallocate(ino, 0, 1, Default::default())),
            libc::EPERM
        );
        assert_eq!(errno(m.unlink(ROOT_INO, name)), libc::EPERM);
        assert_eq!(
            errno(m.rename(ROOT_INO, name, ROOT_INO, b"moved")),
            libc::EPERM
        );
        m.create(ROOT_INO, b"x", FileType::File).unwrap();
        assert_eq!(errno(m.rename(ROOT_INO, b"x", ROOT_INO, name)), libc::EPERM);
        m.unlink(ROOT_INO, b"x").unwrap();
        let w = OpenOptions {
            write: true,
            ..OpenOptions::default()
        };
        let mut path = b"/".to_vec();
        path.extend_from_slice(name);
        assert_eq!(errno(m.open_file(&path, w)), libc::EPERM);
        // Reading stays possible.
        let f = m.open_file(&path, OpenOptions::default()).unwrap();
        let mut buf = [0u8; 8];
        f.read_at(&mut buf, 0).unwrap();
    }
    device::fsck_clean(&m);
}

#[test]
fn sizes_are_bounded_and_shrinking_follows_the_blocks() {
    let dev = formatted();
    let m = writer(&dev);
    let f = m.create(ROOT_INO, b"f", FileType::File).unwrap();
    assert_eq!(errno(m.write_at(f, b"x", MAX_FILE_SIZE)), libc::EFBIG);
    assert_eq!(errno(m.write_at(f, b"", u64::MAX)), libc::EFBIG);
    assert_eq!(errno(m.truncate(f, MAX_FILE_SIZE + 1)), libc::EFBIG);
    assert_eq!(
        errno(m.fallocate(f, MAX_FILE_SIZE, 1, Default::default())),
        libc::EFBIG
    );
    assert_eq!(
        errno(m.fallocate(f, 0, 0, Default::default())),
        libc::EINVAL
    );
    assert_eq!(
        errno(m.fallocate(f, 0, 1 << 62, Default::default())),
        libc::ENOSPC,
        "refused up front, not block by block"
    );
    assert_eq!(m.getattr(f).unwrap().size, 0);
    // The largest size is fine; sparse blocks far apart shrink away in a
    // few transactions.
    m.truncate(f, MAX_FILE_SIZE).unwrap();
    m.write_at(f, b"a", 0).unwrap();
    m.write_at(f, b"b", 1 << 40).unwrap();
    m.write_at(f, b"c", 1 << 62).unwrap();
    let before = m.leader().head_txid.get();
    let start = Instant::now();
    m.truncate(f, 1).unwrap();
    let txs = m.leader().head_txid.get() - before;
    assert!(txs <= 8, "{txs} transactions");
    assert!(start.elapsed() < Duration::from_secs(10));
    let st = m.getattr(f).unwrap();
    assert_eq!((st.size, st.nblock), (1, 1));
}

/// A file unlinked while open whose writer then went away is an orphan;
/// the next writer reclaims it at mount, in time that follows its blocks
/// even when its size is huge.
#[test]
fn huge_orphans_are_reclaimed_quickly() {
    let dev = Arc::new(CrashDevice::new("crash", CHUNK_SIZE, u64::MAX));
    format(dev.as_ref());
    let short = |hostid, force| MountOptions {
        hostid,
        force,
        lease_ms: 300,
        ..MountOptions::default()
    };
    let m = Arc::new(Mount::open_with(dev.clone(), Mode::ReadWrite, &short(1, false)).unwrap());
    let create = device::create_write();
    let h = m.open_file("/orphan", create).unwrap();
    h.write_at(b"z", 1 << 62).unwrap();
    h.write_at(b"a", 0).unwrap();
    let ino = h.ino();
    m.unlink_path("/orphan").unwrap();
    assert!(m.getattr(ino).is_ok(), "open: not freed yet");
    // The device as the writer left it, handle still open.
    let image: Arc<dyn Device> = Arc::new(dev.crash_image(&|_| true).unwrap());
    let start = Instant::now();
    let again = Mount::open_with(image, Mode::ReadWrite, &short(2, true)).unwrap();
    assert!(again.getattr(ino).is_err(), "orphan reclaimed");
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    device::fsck_clean(&again);
    drop(h);
}

/// An entry named `..` (as an older `mkdir -p` could make) on a crafted
/// image is reported by fsck.
#[test]
fn fsck_reports_impossible_names() {
    let dev = formatted();
    let m = writer(&dev);
    m.create(ROOT_INO, b"xx", FileType::Dir).unwrap();
    drop(m);
    let (mut meta, _) = pfs_core::inspect::load_replayed(dev.as_ref()).unwrap();
    assert!(pfs_core::inspect::fsck_image(&meta).is_clean());
    let e = meta.find(ROOT_INO, b"xx").unwrap().unwrap();
    let (id, mut mo) = meta.lookup(pfs_format::MetaType::DirEntry, e.deno).unwrap();
    mo.direntry_mut().de_name[..3].copy_from_slice(b"..\0");
    meta.set(id, mo);
    let report = pfs_core::inspect::fsck_image(&meta);
    assert!(
        report.problems.iter().any(|p| p.contains("\"..\"")),
        "{:?}",
        report.problems
    );
}

#[test]
fn threads_extending_one_block_keep_each_others_bytes() {
    let dev = formatted();
    let m = writer(&dev);
    for round in 0..200u8 {
        let ino = m
            .create(ROOT_INO, format!("pages{round}").as_bytes(), FileType::File)
            .unwrap();
        std::thread::scope(|s| {
            for k in 0..4u8 {
                let m = &m;
                s.spawn(move || {
                    let page = vec![round.wrapping_mul(7).wrapping_add(k + 1); 8192];
                    m.write_at(ino, &page, u64::from(k) * 8192).unwrap();
                });
            }
        });
        let mut back = vec![0u8; 4 * 8192];
        assert_eq!(m.read_at(ino, &mut back, 0).unwrap(), back.len());
        for k in 0..4u8 {
            let want = round.wrapping_mul(7).wrapping_add(k + 1);
            let page = &back[usize::from(k) * 8192..usize::from(k + 1) * 8192];
            assert!(
                page.iter().all(|&b| b == want),
                "round {round}: page {k} lost bytes to another thread's write"
            );
        }
    }
}

/// A writer's mount of a memory device that holds back the first write of
/// `W` bytes on its way to the device, with the file `/f` made on it.
struct Stalling {
    m: Arc<Mount>,
    /// The inode of `/f`.
    f: u64,
    /// Receives once the write is held.
    entered: std::sync::mpsc::Receiver<()>,
    /// Lets the held write land (else it lands after the `hold` of
    /// [`stalling`]).
    release: std::sync::mpsc::Sender<()>,
}

/// A [`Stalling`] mount whose held write waits at most `hold`.
fn stalling(hold: Duration) -> Stalling {
    let (entered_tx, entered) = std::sync::mpsc::sync_channel(1);
    let (release, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    let dev = Arc::new(StallingDevice::new(
        MemDevice::new("stall", CHUNK_SIZE),
        b'W',
        move || {
            entered_tx.send(()).unwrap();
            let _ = release_rx.lock().unwrap().recv_timeout(hold);
        },
    ));
    format(dev.as_ref());
    let dev: Arc<dyn Device> = dev;
    let m = writer(&dev);
    let f = m.create(ROOT_INO, b"f", FileType::File).unwrap();
    Stalling {
        m,
        f,
        entered,
        release,
    }
}

#[test]
fn a_truncate_waits_for_writes_so_freed_blocks_get_no_stale_bytes() {
    // Held until released, or a while when nothing releases it (a
    // truncate that rightly waits for this write).
    let Stalling {
        m,
        f,
        entered,
        release,
    } = stalling(Duration::from_millis(500));
    m.write_at(f, &[b'f'; 8192], 0).unwrap();

    // A write inside the file's size: it finds its block, then stalls on
    // its way to the device.
    let w = {
        let m = m.clone();
        std::thread::spawn(move || m.write_at(f, &[b'W'; 4096], 0))
    };
    entered.recv().unwrap();
    // Meanwhile the file is cut to nothing and another file grows into the
    // block it freed (freed blocks are given out first).
    let t = {
        let m = m.clone();
        std::thread::spawn(move || {
            m.truncate(f, 0).unwrap();
            let g = m.create(ROOT_INO, b"g", FileType::File).unwrap();
            m.write_at(g, &[b'g'; 8192], 0).unwrap();
            g
        })
    };
    // The truncate must wait for the stalled write; give it the chance not
    // to, then let the write land.
    std::thread::sleep(Duration::from_millis(100));
    let _ = release.send(());
    w.join().unwrap().unwrap();
    let g = t.join().unwrap();
    let mut buf = vec![0u8; 8192];
    assert_eq!(m.read_at(g, &mut buf, 0).unwrap(), 8192);
    assert!(
        buf.iter().all(|&b| b == b'g'),
        "another file's write landed in g's block"
    );
    assert_eq!(m.getattr(f).unwrap().size, 0);
    device::fsck_clean(&m);
}

#[test]
fn writes_of_whole_new_blocks_of_one_file_reach_the_device_side_by_side() {
    // A copy's writers each write whole new blocks of one file: none zeroes
    // a gap, so one's device write does not wait for another's (on a
    // network device each takes milliseconds).
    const BLOCK: usize = 4 << 20;
    let Stalling {
        m,
        f,
        entered,
        release,
    } = stalling(Duration::from_secs(20));
    let first = {
        let m = m.clone();
        std::thread::spawn(move || m.write_at(f, &vec![b'W'; BLOCK], 0))
    };
    entered.recv().unwrap();
    // The first block's write is held on its way to the device; the
    // second block's goes through meanwhile.
    let t = Instant::now();
    m.write_at(f, &vec![b'x'; BLOCK], BLOCK as u64).unwrap();
    let waited = t.elapsed();
    let _ = release.send(());
    first.join().unwrap().unwrap();
    assert!(
        waited < Duration::from_secs(10),
        "the second block's write waited {waited:?} for the first's"
    );
    let mut back = vec![0u8; 2 * BLOCK];
    assert_eq!(m.read_at(f, &mut back, 0).unwrap(), 2 * BLOCK);
    assert!(back[..BLOCK].iter().all(|&b| b == b'W'));
    assert!(back[BLOCK..].iter().all(|&b| b == b'x'));
    device::fsck_clean(&m);
}

#[test]
fn truncating_a_handle_cuts_its_deferred_writes_too() {
    let dev = formatted();
    let m = writer(&dev);
    let o = device::create_write();
    let f = m.open_file("/f", o).unwrap();
    f.write_at_deferred(b"0123456789", 0).unwrap();
    f.set_len(3).unwrap();
    drop(f);
    let ino = m.resolve("/f").unwrap();
    assert_eq!(m.getattr(ino).unwrap().size, 3);
    let mut buf = [0u8; 16];
    assert_eq!(m.read_at(ino, &mut buf, 0).unwrap(), 3);
    assert_eq!(&buf[..3], b"012");
}

#[test]
fn a_modification_time_set_is_committed_and_replayed() {
    let dev = formatted();
    let m = writer(&dev);
    let f = m.create(ROOT_INO, b"f", FileType::File).unwrap();
    let d = m.create(ROOT_INO, b"d", FileType::Dir).unwrap();
    let before = m.getattr(f).unwrap();
    m.set_mtime(f, 1_000_000_000).unwrap();
    m.set_mtime(d, 7).unwrap();
    let a = m.getattr(f).unwrap();
    assert_eq!(a.mtime, 1_000_000_000);
    assert!(a.ctime >= before.ctime);
    assert_eq!((a.size, a.btime), (before.size, before.btime));
    assert_eq!(m.getattr(d).unwrap().mtime, 7);
    // The same time again commits nothing.
    let head = m.leader().head_txid.get();
    m.set_mtime(f, 1_000_000_000).unwrap();
    assert_eq!(m.leader().head_txid.get(), head);
    // The system files keep theirs; a free inode has none to set.
    assert_eq!(errno(m.set_mtime(2, 1)), libc::EPERM);
    m.unlink(ROOT_INO, b"f").unwrap();
    assert!(m.set_mtime(f, 1).is_err());
    // A reader of another host replays it; so does the next writer.
    let r = Mount::open_with(dev.clone(), Mode::ReadOnly, &opts(2)).unwrap();
    assert_eq!(r.getattr(d).unwrap().mtime, 7);
    drop(r);
    let m = Arc::try_unwrap(m).ok().unwrap();
    m.unmount().unwrap();
    let w = Mount::open_with(dev, Mode::ReadWrite, &opts(2)).unwrap();
    assert_eq!(w.getattr(d).unwrap().mtime, 7);
}

#[test]
fn handles_appending_from_threads_lose_no_bytes() {
    // Each append takes the end and writes there under the lock that
    // orders extending writes: records of every handle land whole, once,
    // also where they straddle a 4 MiB block.
    let dev = formatted();
    let m = writer(&dev);
    const THREADS: u8 = 4;
    const EACH: u32 = 150;
    let len = |i: u32| 1000 + (i as usize * 7919) % 60_000;
    let record = |t: u8, i: u32| {
        let mut r = format!("{t}{i:05}{:05}", len(i)).into_bytes();
        r.extend((0..len(i)).map(|k| (k as u32 ^ i).wrapping_mul(u32::from(t) + 3) as u8));
        r
    };
    let append = OpenOptions::from_flags(libc::O_CREAT | libc::O_WRONLY | libc::O_APPEND);
    drop(m.open_file("/log", append).unwrap());
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let f = m.open_file("/log", append).unwrap();
            s.spawn(move || {
                for i in 0..EACH {
                    // Through the position (write(2)) and without (pwrite
                    // on an O_APPEND descriptor) by turns.
                    if i % 2 == 0 {
                        (&f).write_all(&record(t, i)).unwrap();
                    } else {
                        f.append(&record(t, i)).unwrap();
                    }
                }
            });
        }
    });
    let mut all = Vec::new();
    m.open_file("/log", OpenOptions::default())
        .unwrap()
        .read_to_end(&mut all)
        .unwrap();
    let mut seen = std::collections::HashSet::new();
    let mut rest = &all[..];
    while !rest.is_empty() {
        let head = std::str::from_utf8(&rest[..11]).unwrap();
        let (t, i): (u8, u32) = (head[..1].parse().unwrap(), head[1..6].parse().unwrap());
        let r = record(t, i);
        assert_eq!(&rest[..r.len()], &r[..], "record {t}/{i} overwritten");
        assert!(seen.insert((t, i)), "record {t}/{i} twice");
        rest = &rest[r.len()..];
    }
    assert_eq!(seen.len(), usize::from(THREADS) * EACH as usize);
    device::fsck_clean(&m);
}

#[test]
fn handles_keep_posix_open_flags_and_positions() {
    let dev = formatted();
    let m = writer(&dev);
    m.mkdir_path("/d").unwrap();
    let rw = libc::O_CREAT | libc::O_RDWR;
    let f = m.open_file("/d/f", OpenOptions::from_flags(rw)).unwrap();
    assert_eq!(f.write_next(b"hello").unwrap(), 5);
    assert_eq!(f.position(), 5);
    let e = m.open_file("/d/f", OpenOptions::from_flags(rw | libc::O_EXCL));
    assert_eq!(errno(e), libc::EEXIST);
    let dir = libc::O_RDONLY | libc::O_DIRECTORY;
    assert_eq!(
        errno(m.open_file("/d/f", OpenOptions::from_flags(dir))),
        libc::ENOTDIR
    );
    assert!(m.open_file("/d", OpenOptions::from_flags(dir)).is_ok());
    assert_eq!(
        errno(m.open_file("/d", OpenOptions::from_flags(libc::O_RDWR))),
        libc::EISDIR
    );
    // O_WRONLY refuses reads; O_RDONLY writes.
    let w = m
        .open_file("/d/f", OpenOptions::from_flags(libc::O_WRONLY))
        .unwrap();
    assert_eq!(errno(w.read_at(&mut [0; 4], 0)), libc::EBADF);
    assert_eq!(errno(w.read_next(&mut [0; 4])), libc::EBADF);
    let r = m.open_file("/d/f", OpenOptions::default()).unwrap();
    assert_eq!(errno(r.write_next(b"x")), libc::EBADF);
    assert_eq!(errno(r.append(b"x")), libc::EBADF);
    // Positions: as lseek(2) has them.
    let mut buf = [0u8; 8];
    assert_eq!(r.read_next(&mut buf).unwrap(), 5);
    assert_eq!(r.seek_to(SeekFrom::End(-2)).unwrap(), 3);
    assert_eq!(errno(r.seek_to(SeekFrom::Current(-4))), libc::EINVAL);
    assert_eq!(
        errno(r.seek_to(SeekFrom::Current(i64::MAX))),
        libc::EOVERFLOW
    );
    assert_eq!(r.position(), 3, "a refused seek leaves the position");
    assert_eq!(errno(r.seek_to(SeekFrom::Start(u64::MAX))), libc::EINVAL);
    let whence = pfs_core::posix::seek_from(1, libc::SEEK_CUR).unwrap();
    assert_eq!(r.seek_to(whence).unwrap(), 4);
    // O_TRUNC cuts; appends go to the end whatever the position.
    let t = m
        .open_file(
            "/d/f",
            OpenOptions::from_flags(libc::O_WRONLY | libc::O_TRUNC | libc::O_APPEND),
        )
        .unwrap();
    assert_eq!(t.getattr().unwrap().size, 0);
    t.write_next(b"ab").unwrap();
    t.seek_to(SeekFrom::Start(0)).unwrap();
    t.write_next(b"cd").unwrap();
    assert_eq!((t.position(), t.append(b"ef").unwrap()), (4, 4));
    let mut all = Vec::new();
    (&r).seek(SeekFrom::Start(0)).unwrap();
    (&r).read_to_end(&mut all).unwrap();
    assert_eq!(all, b"abcdef");
    // fallocate modes and stat come from the same place.
    let mode = pfs_core::FallocMode::from_posix(0).unwrap();
    f.allocate(0, 5 << 20, mode).unwrap();
    let st = f.getattr().unwrap().stat();
    assert_eq!(
        (st.st_size, st.st_blocks, st.st_blksize),
        (5 << 20, 2 * 8192, 4 << 20)
    );
    assert_eq!(
        errno(pfs_core::FallocMode::from_posix(libc::FALLOC_FL_PUNCH_HOLE)),
        libc::EOPNOTSUPP
    );
}

#[test]
fn a_read_only_mount_opens_for_writing_and_refuses_the_writes() {
    let dev = formatted();
    let w = writer(&dev);
    drop(
        w.open_file(
            "/f",
            OpenOptions::from_flags(libc::O_CREAT | libc::O_WRONLY),
        )
        .unwrap(),
    );
    drop(w);
    let m = Arc::new(Mount::open_with(dev, Mode::ReadOnly, &opts(2)).unwrap());
    let f = m
        .open_file("/f", OpenOptions::from_flags(libc::O_CREAT | libc::O_RDWR))
        .unwrap();
    assert_eq!(errno(f.write_next(b"x")), libc::EROFS);
    assert_eq!(errno(f.write_next(b"")), libc::EROFS);
    assert_eq!(errno(f.set_len(0)), libc::EROFS);
    f.sync_all().unwrap();
    for flags in [
        libc::O_RDWR | libc::O_TRUNC,
        libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
    ] {
        assert_eq!(
            errno(m.open_file("/f", OpenOptions::from_flags(flags))),
            libc::EROFS
        );
    }
    let create = OpenOptions::from_flags(libc::O_RDWR | libc::O_CREAT);
    assert_eq!(errno(m.open_file("/new", create)), libc::EROFS);
}

#[test]
fn canonical_paths_follow_dot_dot_through_the_namespace() {
    let dev = formatted();
    let m = writer(&dev);
    m.create_dir_all("/a/b").unwrap();
    m.create_path("/a/f", FileType::File).unwrap();
    let named = |p: &str| m.canonical_path(p).map(|(_, n)| n);
    assert_eq!(named("/a/./b/../b/").unwrap(), b"/a/b");
    assert_eq!(named("/a/b/..").unwrap(), b"/a");
    assert_eq!(named("/..//a/../..").unwrap(), b"/");
    assert_eq!(named("/").unwrap(), b"/");
    assert_eq!(named("/a/f").unwrap(), b"/a/f");
    let (attr, _) = m.canonical_path("/a/b/").unwrap();
    assert!(attr.is_dir());
    assert_eq!(errno(named("/a/f/..")), libc::ENOTDIR);
    assert_eq!(errno(named("/a/f/")), libc::ENOTDIR);
    assert_eq!(errno(named("/a/missing/..")), libc::ENOENT);
}
