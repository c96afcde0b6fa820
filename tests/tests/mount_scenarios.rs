//! Mount-level scenarios: the single-writer lease, followers catching up
//! (also across the writer's checkpoints), a journal that wraps many times,
//! a failing device.

#![allow(clippy::unwrap_used)]

use pfs_core::testing::FailingDevice;
use pfs_core::{CoreError, Device};
use pfs_core::{FileType, OpenOptions};
use pfs_core::{Mode, Mount, MountOptions};
use pfs_format::layout::{CHUNK_SIZE, MIN_LOG_SIZE};
use pfs_tests::device::{self, host, names};
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of host `hostid` taking the lease over by force.
fn forced(hostid: u64, lease_ms: u32) -> MountOptions {
    MountOptions {
        force: true,
        ..host(hostid, lease_ms)
    }
}

/// Host 1 (`w1`) stops renewing its lease; host 2 is refused without
/// --force, then takes over with it (with a lease of `lease_ms`).
fn stall_and_force(dev: &Arc<dyn Device>, w1: &Mount, lease_ms: u32) -> Mount {
    w1.lease().unwrap().stop_renewing();
    assert!(matches!(
        Mount::open_with(dev.clone(), Mode::ReadWrite, &host(2, 400)),
        Err(CoreError::Busy { .. })
    ));
    Mount::open_with(dev.clone(), Mode::ReadWrite, &forced(2, lease_ms)).unwrap()
}

fn formatted(log_size: u64) -> Arc<dyn Device> {
    device::in_memory("mem", log_size)
}

#[test]
fn second_writer_is_refused_naming_the_holder() {
    let dev = formatted(MIN_LOG_SIZE);
    let w1 = Mount::open_with(dev.clone(), Mode::ReadWrite, &host(1, 60_000)).unwrap();
    w1.mkdir_path("/a").unwrap();
    match Mount::open_with(dev.clone(), Mode::ReadWrite, &host(2, 60_000)) {
        Err(CoreError::Busy { what }) => assert!(what.contains("host 1"), "{what}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a second writer mounted"),
    }
    // Readers are always welcome.
    let r = Mount::open_with(dev.clone(), Mode::ReadOnly, &host(2, 60_000)).unwrap();
    assert!(names(&r, "/").contains(&"a".to_owned()));
    // A clean unmount frees the lease.
    drop(w1);
    let w2 = Mount::open_with(dev, Mode::ReadWrite, &host(2, 60_000)).unwrap();
    w2.mkdir_path("/b").unwrap();
}

#[test]
fn forced_takeover_after_expiry_fences_the_stale_writer() {
    let dev = formatted(MIN_LOG_SIZE);
    let w1 = Mount::open_with(dev.clone(), Mode::ReadWrite, &host(1, 400)).unwrap();
    w1.mkdir_path("/one").unwrap();
    // While host 1 renews, even --force gives up after waiting.
    let started = Instant::now();
    let e = Mount::open_with(dev.clone(), Mode::ReadWrite, &forced(2, 400));
    assert!(
        matches!(e, Err(CoreError::Busy { .. })),
        "live lease must not be taken"
    );
    assert!(started.elapsed() >= Duration::from_millis(800));
    // Host 1 hangs: it stops renewing but still believes it is the writer.
    let w2 = stall_and_force(&dev, &w1, 400);
    w2.mkdir_path("/two").unwrap();
    // The stale writer's next commit is refused, and stays refused.
    match w1.mkdir_path("/stale") {
        Err(CoreError::Fenced { reason }) => assert!(reason.contains("host 2"), "{reason}"),
        other => panic!("stale writer committed: {other:?}"),
    }
    assert!(matches!(
        w1.mkdir_path("/stale2"),
        Err(CoreError::Fenced { .. })
    ));
    drop(w1);
    drop(w2);
    let r = Mount::open_with(dev, Mode::ReadOnly, &host(0, 400)).unwrap();
    let n = names(&r, "/");
    assert!(n.contains(&"one".to_owned()) && n.contains(&"two".to_owned()));
    assert!(!n.iter().any(|x| x.starts_with("stale")));
}

/// Reads all of file `path` through a new reader of `dev`.
fn read_file(dev: &Arc<dyn Device>, path: &str) -> Vec<u8> {
    let r = Arc::new(Mount::open_with(dev.clone(), Mode::ReadOnly, &host(0, 400)).unwrap());
    let mut out = Vec::new();
    r.open_file(path, OpenOptions::default())
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// A fresh device, host 1's mount of it with a lease of `lease_ms`, and
/// `/F` made through it holding `data`.
fn writing_f(lease_ms: u32, data: &[u8]) -> (Arc<dyn Device>, Arc<Mount>, pfs_core::File) {
    let dev = formatted(MIN_LOG_SIZE);
    let w1 = Arc::new(Mount::open_with(dev.clone(), Mode::ReadWrite, &host(1, lease_ms)).unwrap());
    let f = w1.open_file("/F", device::create_write()).unwrap();
    f.write_at(data, 0).unwrap();
    (dev, w1, f)
}

#[test]
fn a_paused_writer_lands_no_data_in_the_next_writers_files() {
    // Host 1 writes F and hangs past its lease with F open. Host 2 takes
    // over, removes F and writes G, which gets F's inode number and block,
    // then unmounts (its slot says idle again). Host 1 resumes: its data
    // writes, flushes and commits must all be refused, for good.
    let (dev, w1, f) = writing_f(400, &[b'F'; 65536]);
    f.sync_all().unwrap();
    let f_ino = f.ino();
    w1.lease().unwrap().stop_renewing();
    std::thread::sleep(Duration::from_millis(500));
    let w2 = Arc::new(Mount::open_with(dev.clone(), Mode::ReadWrite, &forced(2, 400)).unwrap());
    w2.unlink_path("/F").unwrap();
    let g = w2.open_file("/G", device::create_write()).unwrap();
    g.write_at(&[b'G'; 65536], 0).unwrap();
    g.sync_all().unwrap();
    assert_eq!(g.ino(), f_ino, "G should reuse F's inode for this test");
    drop(g);
    drop(w2);
    // Host 1 wakes up: nothing it does reaches the device.
    let e = f.write_at(&[b'x'; 4096], 0).unwrap_err();
    assert!(
        matches!(e, CoreError::Fenced { .. } | CoreError::NotFound { .. }),
        "{e}"
    );
    assert!(f.sync_all().is_err());
    assert!(f.write_at(&[b'y'; 4096], 8192).is_err());
    assert!(matches!(
        w1.mkdir_path("/late"),
        Err(CoreError::Fenced { .. })
    ));
    assert!(w1.sync().is_err(), "a deposed writer's flush is refused");
    assert_eq!(read_file(&dev, "/G"), vec![b'G'; 65536]);
    let r = Mount::open_with(dev.clone(), Mode::ReadOnly, &host(0, 400)).unwrap();
    assert!(!names(&r, "/").contains(&"late".to_owned()));
}

#[test]
fn a_writer_that_only_stalled_proves_its_lease_and_goes_on() {
    // No one took over: after the stall the next data write takes the
    // lease again (no other host claims it, the journal head is its own).
    let (dev, w1, f) = writing_f(300, &[b'a'; 8192]);
    let lease = w1.lease().unwrap();
    lease.stop_renewing();
    std::thread::sleep(Duration::from_millis(400));
    assert!(lease.check().is_err(), "the lease ran out");
    f.write_at(&[b'b'; 4096], 0).unwrap();
    f.sync_all().unwrap();
    w1.mkdir_path("/after").unwrap();
    let mut want = vec![b'b'; 4096];
    want.extend_from_slice(&[b'a'; 4096]);
    assert_eq!(read_file(&dev, "/F"), want);
}

#[test]
fn writer_without_lease_sees_foreign_commits_and_stops() {
    // A writer that lost the race for the head (the journal moved under it)
    // stops writing instead of overwriting the other's entries.
    let dev = formatted(MIN_LOG_SIZE);
    let w1 = Mount::open_with(dev.clone(), Mode::ReadWrite, &host(1, 400)).unwrap();
    w1.mkdir_path("/w1").unwrap();
    // Without --force a silent holder is still refused; with it, host 2
    // waits the silence out and takes over.
    let w2 = stall_and_force(&dev, &w1, 60_000);
    w2.mkdir_path("/x").unwrap();
    assert!(matches!(w1.mkdir_path("/y"), Err(CoreError::Fenced { .. })));
}

#[test]
fn hostid_above_num_hosts_is_refused() {
    let dev = formatted(MIN_LOG_SIZE);
    assert!(matches!(
        Mount::open_with(dev.clone(), Mode::ReadWrite, &host(31, 1000)),
        Err(CoreError::Host(_))
    ));
    let m = Mount::open_with(dev, Mode::ReadOnly, &host(0, 1000)).unwrap();
    assert_eq!(m.hostid(), 30);
}

#[test]
fn follower_catches_up_across_a_checkpoint() {
    let dev = formatted(MIN_LOG_SIZE);
    let w = Mount::open_with(dev.clone(), Mode::ReadWrite, &host(1, 60_000)).unwrap();
    let r = Mount::open_with(dev.clone(), Mode::ReadOnly, &host(2, 60_000)).unwrap();
    w.mkdir_path("/a").unwrap();
    assert_eq!(names(&r, "/"), vec![".pfs-paxos", ".pfs-journal", "a"]);
    // The writer checkpoints: the entries the reader has not seen leave the
    // journal's committed range, but stay in the journal for it to read.
    w.mkdir_path("/b").unwrap();
    w.checkpoint().unwrap();
    w.mkdir_path("/c").unwrap();
    assert_eq!(
        names(&r, "/"),
        vec![".pfs-paxos", ".pfs-journal", "a", "b", "c"]
    );
    let ino = w.create_path("/c/f", FileType::File).unwrap();
    w.write_at(ino, b"hello", 0).unwrap();
    let rino = r.resolve("/c/f").unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(r.read_at(rino, &mut buf, 0).unwrap(), 5);
    assert_eq!(&buf[..5], b"hello");
    // A read-only mount refuses writes.
    assert!(matches!(r.mkdir_path("/no"), Err(CoreError::ReadOnly)));
}

#[test]
fn journal_wraps_many_times_without_loss() {
    let dev = formatted(MIN_LOG_SIZE);
    let w = Mount::open_with(dev.clone(), Mode::ReadWrite, &host(1, 60_000)).unwrap();
    let r = Mount::open_with(dev.clone(), Mode::ReadOnly, &host(2, 60_000)).unwrap();
    let ino = w.create_path("/big", FileType::File).unwrap();
    let mut wraps = 0u64;
    let mut last_head = w.leader().head_offset.get();
    let mut cycle = 0u64;
    while wraps < 6 {
        // ~1000 blocks in, then out: two transactions of ~1000 entries.
        let blocks = 900 + (cycle % 100);
        w.fallocate(ino, 0, blocks << 22, pfs_core::FallocMode::default())
            .unwrap();
        w.truncate(ino, (cycle % 7) << 20).unwrap();
        let head = w.leader().head_offset.get();
        if head < last_head {
            wraps += 1;
        }
        last_head = head;
        cycle += 1;
        if cycle % 10 == 0 {
            // The follower keeps up whether or not the writer checkpointed.
            let st = r.getattr(r.resolve("/big").unwrap()).unwrap();
            assert_eq!(st.size, ((cycle - 1) % 7) << 20);
        }
    }
    assert!(cycle > 100, "{cycle} cycles");
    let expect = ((cycle - 1) % 7) << 20;
    let nblock = expect.div_ceil(4 << 20);
    drop(w);
    for mode in [Mode::ReadOnly, Mode::ReadWrite] {
        let m = Mount::open_with(dev.clone(), mode, &host(1, 60_000)).unwrap();
        let st = m.getattr(m.resolve("/big").unwrap()).unwrap();
        assert_eq!((st.size, st.nblock), (expect, nblock));
    }
}

#[test]
fn failing_device_stops_the_writer() {
    let dev = Arc::new(FailingDevice::new("failing", CHUNK_SIZE));
    device::mkfs(dev.as_ref(), MIN_LOG_SIZE);
    let w = Mount::open_with(
        dev.clone() as Arc<dyn Device>,
        Mode::ReadWrite,
        &host(1, 60_000),
    )
    .unwrap();
    w.mkdir_path("/ok").unwrap();
    dev.fail_after(1);
    assert!(matches!(w.mkdir_path("/bad"), Err(CoreError::Io { .. })));
    // After a failed write the mount refuses further writes.
    dev.fail_after(u64::MAX / 2);
    assert!(matches!(
        w.mkdir_path("/bad2"),
        Err(CoreError::Fenced { .. })
    ));
    std::mem::forget(w);
    let r = Mount::open_with(dev as Arc<dyn Device>, Mode::ReadOnly, &host(2, 60_000)).unwrap();
    assert_eq!(names(&r, "/"), vec![".pfs-paxos", ".pfs-journal", "ok"]);
}

#[test]
fn read_write_mount_that_changes_nothing_writes_nothing() {
    let dev = formatted(MIN_LOG_SIZE);
    let snapshot = |d: &Arc<dyn Device>| {
        let mut v = vec![0u8; 8 << 20];
        d.read_at(&mut v, 0).unwrap();
        v
    };
    let before = snapshot(&dev);
    let w = Mount::open_with(dev.clone(), Mode::ReadWrite, &host(1, 60_000)).unwrap();
    assert!(w.mkdir_path("/").is_err());
    assert!(w.lease().is_none());
    drop(w);
    assert!(snapshot(&dev) == before);
}

#[test]
fn background_follower_keeps_a_reader_current() {
    let dev = formatted(MIN_LOG_SIZE);
    let w = Mount::open_with(dev.clone(), Mode::ReadWrite, &host(1, 60_000)).unwrap();
    let r = Arc::new(Mount::open_with(dev, Mode::ReadOnly, &host(2, 60_000)).unwrap());
    let handle = r.spawn_follower(Duration::from_millis(5));
    w.mkdir_path("/late").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    // The leader record cached by the reader moves without any call on it.
    while r.leader().head_txid.get() == 0 {
        assert!(
            Instant::now() < deadline,
            "the follower thread did not catch up"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(r);
    handle.join().unwrap();
}

#[test]
fn many_threads_share_one_mount() {
    let dev = formatted(MIN_LOG_SIZE);
    let w = Arc::new(Mount::open_with(dev.clone(), Mode::ReadWrite, &host(1, 60_000)).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let w = Arc::clone(&w);
            std::thread::spawn(move || {
                let d = format!("/t{t}");
                w.mkdir_path(&d).unwrap();
                for i in 0..25 {
                    let p = format!("{d}/f{i}");
                    let f = w
                        .open_file(
                            &p,
                            pfs_core::OpenOptions {
                                create: true,
                                write: true,
                                ..Default::default()
                            },
                        )
                        .unwrap();
                    (&f).write_all(&vec![t as u8; 1000 + i]).unwrap();
                    (&f).write_all(b"end").unwrap();
                    assert_eq!(f.getattr().unwrap().size, 1003 + i as u64);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let report = device::fsck_clean(&w);
    assert_eq!((report.dirs, report.files), (5, 102));
    drop(w);
    let r = Arc::new(Mount::open_with(dev, Mode::ReadOnly, &host(2, 60_000)).unwrap());
    for t in 0..4u8 {
        let f = r
            .open_file(format!("/t{t}/f24"), Default::default())
            .unwrap();
        let mut buf = vec![0u8; 2000];
        let n = (&f).read(&mut buf).unwrap();
        assert_eq!(n, 1027);
        assert!(buf[..1024].iter().all(|&b| b == t) && &buf[1024..1027] == b"end");
    }
}

#[test]
fn damaged_committed_entry_is_reported_with_its_place() {
    let dev = formatted(MIN_LOG_SIZE);
    let w = Mount::open_with(dev.clone(), Mode::ReadWrite, &host(1, 60_000)).unwrap();
    for i in 0..5 {
        w.mkdir_path(format!("/d{i}")).unwrap();
    }
    drop(w);
    // The journal's first block on a fresh 1-chunk device is block 2.
    let entry = (2u64 << 22) + 3 * 256;
    let mut b = [0u8; 1];
    dev.read_at(&mut b, entry + 100).unwrap();
    dev.write_at(&[b[0] ^ 0xff], entry + 100).unwrap();
    match Mount::open_with(dev, Mode::ReadOnly, &host(2, 60_000)) {
        Err(CoreError::Journal(pfs_journal::JournalError::Corrupt {
            offset, head_txid, ..
        })) => {
            assert_eq!((offset, head_txid), (3 * 256, 5));
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a corrupt journal mounted"),
    }
}

#[test]
fn follower_reading_a_replaced_file_finds_it_gone_never_short() {
    let dev = formatted(MIN_LOG_SIZE);
    let w = Arc::new(Mount::open_with(dev.clone(), Mode::ReadWrite, &host(1, 60_000)).unwrap());
    let old = w.create_path("/rot", FileType::File).unwrap();
    w.write_at(old, &[b'a'; 10_000], 0).unwrap();
    let r = Mount::open_with(dev.clone(), Mode::ReadOnly, &host(2, 60_000)).unwrap();
    // The tool's way: one state for the lookup and every later call.
    r.freeze();
    let seen = r.stat_path("/rot").unwrap();
    assert_eq!((seen.ino, seen.size), (old, 10_000));

    // The writer replaces /rot; the old file, still open on the writer,
    // becomes an orphan, which is then cut to nothing (as freeing it does).
    let held = w
        .open_file(
            "/rot",
            OpenOptions {
                write: true,
                ..OpenOptions::default()
            },
        )
        .unwrap();
    let new = w.create_path("/rot.tmp", FileType::File).unwrap();
    w.write_at(new, &[b'b'; 5_000], 0).unwrap();
    w.rename_path("/rot.tmp", "/rot").unwrap();
    held.set_len(0).unwrap();

    // Read through the name it had: the file is gone, not empty.
    let mut buf = vec![0u8; 20_000];
    match r.read_born_at(seen.ino, seen.btime, &mut buf, 0) {
        Err(CoreError::NotFound { .. }) => {}
        other => panic!("the replaced file read as {other:?}"),
    }
    // The name leads to the new file, whole.
    let now = r.stat_path("/rot").unwrap();
    assert_eq!((now.ino, now.size), (new, 5_000));
    let n = r.read_born_at(now.ino, now.btime, &mut buf, 0).unwrap();
    assert_eq!(&buf[..n], &[b'b'; 5_000][..]);

    // A follower's open file is the file, not its inode number: after the
    // writer frees it and gives the number to a new file, the handle finds
    // it gone while the number reads the newcomer.
    let r = Arc::new(Mount::open_with(dev, Mode::ReadOnly, &host(2, 60_000)).unwrap());
    let f = r.open_file("/rot", OpenOptions::default()).unwrap();
    assert_eq!(f.read_at(&mut buf, 0).unwrap(), 5_000);
    drop(held);
    w.unlink_path("/rot").unwrap();
    // Freed numbers are given out first-freed-first: the old /rot's, then
    // this one's.
    assert_eq!(w.create_path("/first", FileType::File).unwrap(), old);
    let reborn = w.create_path("/other", FileType::File).unwrap();
    w.write_at(reborn, b"someone else", 0).unwrap();
    assert_eq!(reborn, new, "the freed inode number is given out again");
    assert!(matches!(
        f.read_at(&mut buf, 0),
        Err(CoreError::NotFound { .. })
    ));
    assert!(matches!(f.getattr(), Err(CoreError::NotFound { .. })));
    assert_eq!(r.read_at(new, &mut buf, 0).unwrap(), 12);
}

#[test]
fn a_follower_asks_for_a_file_by_its_birth_not_its_number() {
    let dev = formatted(MIN_LOG_SIZE);
    let w = Mount::open_with(dev.clone(), Mode::ReadWrite, &host(1, 60_000)).unwrap();
    let old = w.create_path("/a", FileType::File).unwrap();
    w.write_at(old, b"old", 0).unwrap();
    let r = Mount::open_with(dev, Mode::ReadOnly, &host(2, 60_000)).unwrap();
    // A name and what it names, from one state.
    let seen = r.lookup_attr(pfs_format::layout::ROOT_INO, b"a").unwrap();
    assert_eq!((seen.ino, seen.size), (old, 3));
    assert_eq!(r.getattr_born(old, seen.btime).unwrap(), seen);

    // Removed: gone, not a broken reference.
    w.unlink_path("/a").unwrap();
    assert!(matches!(
        r.getattr_born(old, seen.btime),
        Err(CoreError::NotFound { .. })
    ));
    // Its number given to another file: still gone, and the newcomer is
    // itself.
    let mut n = 0;
    let reborn = loop {
        let ino = w.create_path(format!("/b{n}"), FileType::File).unwrap();
        if ino == old {
            break format!("b{n}");
        }
        n += 1;
        assert!(n < 1000, "inode {old} is never given out again");
    };
    assert!(matches!(
        r.getattr_born(old, seen.btime),
        Err(CoreError::NotFound { .. })
    ));
    let now = r
        .lookup_attr(pfs_format::layout::ROOT_INO, reborn.as_bytes())
        .unwrap();
    assert_eq!((now.ino, now.size), (old, 0));
    assert_ne!(now.btime, seen.btime);
    assert_eq!(r.getattr_born(old, now.btime).unwrap(), now);
    assert!(matches!(
        r.lookup_attr(pfs_format::layout::ROOT_INO, b"a"),
        Err(CoreError::NotFound { .. })
    ));
}
