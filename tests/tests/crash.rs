//! Crash consistency: a workload of a few hundred namespace and file
//! operations runs on a device that freezes its durable image at the k-th
//! flush, for every k. Remounting the image a crash leaves gives exactly
//! the state after some committed transaction (all checksums valid, since
//! mounting validates every object and journal entry), and the recovered
//! filesystem takes new writes.

#![allow(clippy::unwrap_used)]

use pfs_core::testing::CrashDevice;
use pfs_core::{mkfs, MkfsOptions};
use pfs_core::{Device, FileType, MemDevice};
use pfs_core::{Mode, Mount, MountOptions};
use pfs_format::layout::CHUNK_SIZE;
use std::sync::Arc;

/// One visible path: name, is-directory, size, content digest.
type Seen = (String, bool, u64, String);

/// Visible state: every path with its kind, size and content digest, in
/// directory order.
fn snapshot(m: &Mount) -> Vec<Seen> {
    let mut out = Vec::new();
    walk(m, 0, "", &mut out);
    out
}

fn walk(m: &Mount, dir: u64, prefix: &str, out: &mut Vec<Seen>) {
    for e in m.readdir(dir).unwrap().collect::<Vec<_>>() {
        let path = format!("{prefix}/{}", String::from_utf8_lossy(&e.name));
        let st = m.getattr(e.ino).unwrap();
        if st.is_dir() {
            out.push((path.clone(), true, st.size, String::new()));
            walk(m, e.ino, &path, out);
        } else if e.ino > 2 {
            let mut buf = vec![0u8; st.size as usize];
            let n = m.read_at(e.ino, &mut buf, 0).unwrap();
            out.push((path, false, st.size, pfs_tests::sha256_hex(&buf[..n])));
        }
    }
}

fn opts() -> MountOptions {
    // No lease renewals during the run: every flush is the workload's.
    MountOptions {
        lease_ms: 3_600_000,
        ..MountOptions::default()
    }
}

/// Runs the workload; returns the snapshot after each operation and the
/// flush count when it returned.
fn workload(m: &Mount, dev: &CrashDevice, record: bool) -> (Vec<Vec<Seen>>, Vec<u64>) {
    workload_syncing(m, dev, record, None).0
}

/// For each sync of [`workload_syncing`]: the flush count when it
/// returned, and the operations done before it.
type Synced = Vec<(u64, usize)>;

/// [`workload`], with a [`Mount::sync`] after every `sync_every`
/// operations; also returns when each sync returned.
fn workload_syncing(
    m: &Mount,
    dev: &CrashDevice,
    record: bool,
    sync_every: Option<usize>,
) -> ((Vec<Vec<Seen>>, Vec<u64>), Synced) {
    let mut synced = Vec::new();
    let mut snaps = Vec::new();
    let mut syncs = Vec::new();
    if record {
        snaps.push(snapshot(m));
    }
    let mut seed = 12345u64;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    let mut files: Vec<String> = Vec::new();
    let mut dirs: Vec<String> = vec![String::new()];
    for i in 0..120 {
        let r = next() % 10;
        let res = match r {
            0 | 1 => {
                let parent = dirs[next() % dirs.len()].clone();
                let d = format!("{parent}/d{i}");
                dirs.push(d.clone());
                m.mkdir_path(&d).map(|_| ())
            }
            2 | 3 => {
                let parent = dirs[next() % dirs.len()].clone();
                let name = if i % 7 == 0 {
                    format!("{}-{i}", "long".repeat(30))
                } else {
                    format!("f{i}")
                };
                let f = format!("{parent}/{name}");
                files.push(f.clone());
                m.create_path(&f, FileType::File).map(|_| ())
            }
            4 | 5 if !files.is_empty() => {
                let f = files[next() % files.len()].clone();
                let ino = m.resolve(&f).unwrap();
                let size = m.getattr(ino).unwrap().size;
                let data: Vec<u8> = (0..(next() % 9000) + 1)
                    .map(|k| (k * 7 + i) as u8)
                    .collect();
                m.write_at(ino, &data, size).map(|_| ())
            }
            6 if !files.is_empty() => {
                let f = files[next() % files.len()].clone();
                let ino = m.resolve(&f).unwrap();
                let size = m.getattr(ino).unwrap().size;
                m.truncate(ino, size / 2)
            }
            7 if !files.is_empty() => {
                let k = next() % files.len();
                let f = files.remove(k);
                m.unlink_path(&f)
            }
            8 if !files.is_empty() => {
                let k = next() % files.len();
                let f = files.remove(k);
                let parent = dirs[next() % dirs.len()].clone();
                let to = format!("{parent}/r{i}");
                files.push(to.clone());
                m.rename_path(&f, &to)
            }
            _ => m.checkpoint(),
        };
        res.unwrap();
        if record {
            snaps.push(snapshot(m));
        }
        if sync_every.is_some_and(|n| i % n == n - 1) {
            m.sync().unwrap();
            synced.push((dev.syncs(), i + 1));
        }
        syncs.push(dev.syncs());
    }
    ((snaps, syncs), synced)
}

/// A formatted device whose durable image freezes at flush `freeze_at`.
fn fresh(freeze_at: u64) -> Arc<CrashDevice> {
    let dev = Arc::new(CrashDevice::new("crash", CHUNK_SIZE, freeze_at));
    mkfs(dev.as_ref(), &MkfsOptions::default()).unwrap();
    dev
}

/// A formatted device (the smallest journal) whose durable image never
/// freezes: a test takes its crash images when it chooses.
fn formatted_crash_device() -> Arc<CrashDevice> {
    let dev = Arc::new(CrashDevice::new("crash", CHUNK_SIZE, u64::MAX));
    mkfs(
        dev.as_ref(),
        &MkfsOptions {
            log_size: pfs_format::layout::MIN_LOG_SIZE,
            ..MkfsOptions::default()
        },
    )
    .unwrap();
    dev
}

/// Crashes a run at each flush from `base` to `total`: for each `k`,
/// `run` works on a fresh device that freezes at flush `k`; each of two
/// images that crash leaves (no unflushed write kept, every other one
/// kept) must mount and pass fsck, and goes to `check` with its state.
/// Returns how many images were checked.
fn at_every_crash_point(
    base: u64,
    total: u64,
    run: impl Fn(&Arc<CrashDevice>),
    mut check: impl FnMut(u64, Arc<dyn Device>, Vec<Seen>),
) -> usize {
    let mut checked = 0;
    for k in base..=total {
        let dev = fresh(k);
        run(&dev);
        let variants: [&dyn Fn(usize) -> bool; 2] = [&|_| false, &|i| (i + k as usize) % 2 == 0];
        for keep in variants {
            let img: Arc<dyn Device> = Arc::new(dev.crash_image(keep).unwrap());
            let m = Mount::open_with(img.clone(), Mode::ReadOnly, &opts())
                .unwrap_or_else(|e| panic!("crash at flush {k}: mount failed: {e}"));
            let got = snapshot(&m);
            let report = m.fsck().unwrap();
            assert!(
                report.is_clean(),
                "crash at flush {k}: {:?}",
                report.problems
            );
            drop(m);
            check(k, img, got);
            checked += 1;
        }
    }
    checked
}

#[test]
fn every_crash_point_recovers_a_committed_state() {
    // Reference run.
    let dev = fresh(u64::MAX);
    let base = dev.syncs();
    let m = Mount::open_with(dev.clone() as Arc<dyn Device>, Mode::ReadWrite, &opts()).unwrap();
    let (snaps, ends) = workload(&m, &dev, true);
    drop(m);
    let total = dev.syncs();
    assert!(
        total > base + 150,
        "workload flushed {} times",
        total - base
    );

    let checked = at_every_crash_point(
        base,
        total,
        |dev| {
            let m =
                Mount::open_with(dev.clone() as Arc<dyn Device>, Mode::ReadWrite, &opts()).unwrap();
            workload(&m, dev, false);
            // Not a clean unmount: the lease is simply abandoned.
            std::mem::forget(m);
        },
        |k, img, got| {
            let done = ends.iter().filter(|&&e| e <= k).count();
            let ok = got == snaps[done] || snaps.get(done + 1).is_some_and(|s| *s == got);
            assert!(
                ok,
                "crash at flush {k} ({done} operations done): state matches no committed state"
            );
            if k % 16 == 0 {
                // Once the crashed writer's lease has run out, the recovered
                // filesystem takes writes and keeps them.
                // (Its slot is cleared here; waiting a lease out is the
                // lease tests' business.)
                img.write_at(&[0u8; 30 * 4096], (4 << 20) + 4096).unwrap();
                let w = Mount::open_with(img.clone(), Mode::ReadWrite, &opts()).unwrap();
                w.mkdir_path("/after-crash").unwrap();
                drop(w);
                let r = Mount::open_with(img, Mode::ReadOnly, &opts()).unwrap();
                assert!(snapshot(&r)
                    .iter()
                    .any(|(p, d, _, _)| p == "/after-crash" && *d));
            }
        },
    );
    assert!(checked > 300);
    let _ = MemDevice::new("unused", 1);
}

/// A writer that defers durability (a FUSE mount's) runs the workload,
/// syncing every few operations, on a device that crashes at each of its
/// flushes: what it recovers is the state after some operation (never
/// part of one), and no older than its last sync that returned.
#[test]
fn a_deferring_writer_recovers_a_state_no_older_than_its_last_sync() {
    let run = |dev: &Arc<CrashDevice>, record: bool| {
        let m = Mount::open_with(dev.clone() as Arc<dyn Device>, Mode::ReadWrite, &opts()).unwrap();
        m.defer_durability();
        let r = workload_syncing(&m, dev, record, Some(10));
        // Not a clean unmount: the lease is simply abandoned.
        std::mem::forget(m);
        r
    };
    let dev = fresh(u64::MAX);
    let base = dev.syncs();
    let ((snaps, _), synced) = run(&dev, true);
    let total = dev.syncs();
    assert!(synced.len() >= 10, "syncs: {synced:?}");
    let checked = at_every_crash_point(
        base,
        total,
        |dev| {
            run(dev, false);
        },
        |k, _, got| {
            // Operations acknowledged by a sync that returned before the
            // crash.
            let floor = synced
                .iter()
                .filter(|(s, _)| *s <= k)
                .map(|(_, n)| *n)
                .max()
                .unwrap_or(0);
            assert!(
                snaps[floor..].contains(&got),
                "crash at flush {k}: the state is not one after operation {floor} or later (it is after {:?}; syncs {synced:?}, total {total})",
                snaps.iter().position(|s| *s == got)
            );
        },
    );
    assert!(checked >= 20, "{checked} crash points");
}

#[test]
fn fsyncs_that_share_a_flush_keep_what_they_acknowledged() {
    // Threads write their own files and fsync at the same time: the flushes
    // they share must still make each one's acknowledged bytes durable. The
    // crash keeps nothing that no completed flush covered.
    let dev = formatted_crash_device();
    let m =
        Arc::new(Mount::open_with(dev.clone(), Mode::ReadWrite, &MountOptions::default()).unwrap());
    let threads: Vec<_> = (0..8u8)
        .map(|k| {
            let m = Arc::clone(&m);
            std::thread::spawn(move || {
                let opts = pfs_core::OpenOptions {
                    create: true,
                    write: true,
                    ..pfs_core::OpenOptions::default()
                };
                let f = m.open_file(format!("/f{k}"), opts).unwrap();
                for round in 0..4u64 {
                    f.write_at_deferred(&[b'a' + k; 16384], round * 16384)
                        .unwrap();
                    f.sync_all().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let image: Arc<dyn Device> = Arc::new(dev.crash_image(&|_| false).unwrap());
    let r = Mount::open_with(image, Mode::ReadOnly, &MountOptions::default()).unwrap();
    for k in 0..8u8 {
        let ino = r.resolve(format!("/f{k}")).unwrap();
        let mut buf = vec![0u8; 65536];
        assert_eq!(r.read_at(ino, &mut buf, 0).unwrap(), 65536, "f{k}");
        assert!(buf.iter().all(|&b| b == b'a' + k), "f{k} lost bytes");
    }
}

/// Creates `per` files named `/<tag>-<k>` from thread `tag` of mount `m`;
/// returns the names whose creation was acknowledged.
fn create_files(m: Arc<Mount>, tag: String, per: usize) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut acked = Vec::new();
        for k in 0..per {
            let name = format!("/{tag}-{k}");
            m.create_path(&name, FileType::File).unwrap();
            acked.push(name);
        }
        acked
    })
}

/// A crash image (nothing that no completed flush covered) has every
/// acknowledged name; returns how many there were.
fn all_acknowledged_survive(dev: &CrashDevice, acked: &[String]) -> usize {
    let image: Arc<dyn Device> = Arc::new(dev.crash_image(&|_| false).unwrap());
    let r = Mount::open_with(image, Mode::ReadOnly, &MountOptions::default()).unwrap();
    for name in acked {
        assert!(r.resolve(name).is_ok(), "{name} was acknowledged and lost");
    }
    acked.len()
}

#[test]
fn group_commits_of_threads_keep_what_they_acknowledged() {
    // Threads of one mount create files at once: their transactions share
    // flushes and leader writes (group commit), and a crash that keeps
    // nothing unflushed keeps every acknowledged one.
    let dev = formatted_crash_device();
    let m = Arc::new(Mount::open_with(dev.clone(), Mode::ReadWrite, &opts()).unwrap());
    // The first commit takes the writer lease (its own flushes).
    m.create_path("/first", FileType::File).unwrap();
    let before = dev.syncs();
    let threads: Vec<_> = (0..8)
        .map(|t| create_files(Arc::clone(&m), format!("t{t}"), 25))
        .collect();
    let acked: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let flushes = dev.syncs() - before;
    // Two flushes per commit at most; never more than without grouping.
    assert!(flushes <= 2 * 200, "{flushes} flushes for 200 commits");
    // With the mount still open: nothing acknowledged waits for a later
    // commit to become durable.
    assert_eq!(all_acknowledged_survive(&dev, &acked), 200);
    drop(m);
}

#[test]
fn group_commits_of_shared_mounts_keep_what_they_acknowledged() {
    // Two shared mounts of one host (as two processes of a machine are,
    // each with its own metadata in memory) and their threads create
    // files at once: each builds on what the other appended and not yet
    // committed, one leader write commits both, and a crash keeps every
    // acknowledged file.
    let dir = tempfile::tempdir().unwrap();
    let dev = formatted_crash_device();
    let shared = MountOptions {
        hostid: 1,
        shared: true,
        share_path: Some(dir.path().join("share")),
        ..opts()
    };
    let a = Arc::new(Mount::open_with(dev.clone(), Mode::ReadWrite, &shared).unwrap());
    let b = Arc::new(Mount::open_with(dev.clone(), Mode::ReadWrite, &shared).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let m = if t % 2 == 0 { &a } else { &b };
            create_files(Arc::clone(m), format!("s{t}"), 20)
        })
        .collect();
    let acked: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    // Each mount sees every file, the other's too.
    for name in &acked {
        assert!(a.resolve(name).is_ok() && b.resolve(name).is_ok(), "{name}");
    }
    assert_eq!(all_acknowledged_survive(&dev, &acked), 160);
}
