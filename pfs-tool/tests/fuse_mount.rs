//! `pfs mount`: ordinary programs (std::fs, rsync, tar) use a PFS through
//! FUSE; the results are checked with the tool's own commands and fsck.
//!
//! Needs root and /dev/fuse (and fusermount3, rsync, tar, which `.ci/run`
//! installs). Where they are missing each test prints a note and passes.
//! Every mount is unmounted by a guard, also when a test fails.

#![allow(clippy::unwrap_used)]

use pfs_tests::cli::{run_ok as run, Disk};
use pfs_tests::failover::{signal, Signal};
use pfs_tests::file_digest;
use pfs_tests::fuse::{self, is_mounted, servers, wait_servers_gone, Mounted};
use pfs_tests::pg::{self, wait_for, Server};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PBD: &str = "loop7";

/// A fresh device for test `name`, where FUSE mounts can run (see
/// [`fuse::available`]) and every program of `needs` is installed; the
/// test is skipped with a note otherwise.
fn disk(name: &str, needs: &[&str]) -> Option<Disk> {
    if !fuse::available() || !needs.iter().all(|p| pfs_tests::require(p)) {
        return None;
    }
    Some(Disk::new(&format!("fuse-{name}"), PBD))
}

/// Where a mount server of `disk` logs: the path, and as text.
fn server_log(disk: &Disk) -> (std::path::PathBuf, String) {
    let log = disk.dir.join("server.log");
    let text = log.display().to_string();
    (log, text)
}

/// Unmounts `m` and checks the device it served.
fn unmount_and_check(m: Mounted, disk: &Disk) {
    m.umount();
    disk.fsck_clean();
}

/// How long a foreground server may take to mount.
const MOUNT_LIMIT: Duration = Duration::from_secs(30);

/// `n` reproducible pseudo-random bytes for `seed` (xorshift: fast in
/// debug builds too).
fn gen_input(seed: &str, n: usize) -> Vec<u8> {
    let x = seed.bytes().fold(0x9e37_79b9_7f4a_7c15u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    pfs_tests::seeded_bytes(x, n)
}

fn errno_of(r: std::io::Result<impl Sized>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

#[test]
fn posix_operations_match_the_tool() {
    let Some(disk) = disk("posix", &[]) else {
        return;
    };
    let m = disk.mount("1", &[], "mnt");
    fs::create_dir_all(m.path("d1/d2")).unwrap();
    fs::write(m.path("d1/d2/hello"), b"hello world\n").unwrap();
    let big = gen_input("fuse-big", 9 << 20 | 12345);
    fs::write(m.path("d1/big"), &big).unwrap();
    assert_eq!(fs::read(m.path("d1/big")).unwrap(), big);
    assert_eq!(
        fs::metadata(m.path("d1/big")).unwrap().len(),
        big.len() as u64
    );

    // Appending through a second handle while the first is open.
    {
        let mut a = fs::OpenOptions::new()
            .append(true)
            .open(m.path("d1/d2/hello"))
            .unwrap();
        a.write_all(b"more\n").unwrap();
        assert_eq!(
            fs::read(m.path("d1/d2/hello")).unwrap(),
            b"hello world\nmore\n"
        );
    }
    // rename, replacing a file; rename a directory.
    fs::write(m.path("victim"), b"old").unwrap();
    fs::write(m.path("newer"), b"new contents").unwrap();
    fs::rename(m.path("newer"), m.path("victim")).unwrap();
    assert_eq!(fs::read(m.path("victim")).unwrap(), b"new contents");
    assert!(!m.path("newer").exists());
    fs::rename(m.path("d1/d2"), m.path("d3")).unwrap();
    assert_eq!(
        fs::read(m.path("d3/hello")).unwrap(),
        b"hello world\nmore\n"
    );
    // truncate, fallocate, unlink, rmdir.
    let f = fs::OpenOptions::new()
        .write(true)
        .open(m.path("d1/big"))
        .unwrap();
    f.set_len(5_000_000).unwrap();
    nix::fcntl::fallocate(
        std::os::fd::AsRawFd::as_raw_fd(&f),
        nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE,
        0,
        20 << 20,
    )
    .unwrap();
    f.sync_all().unwrap();
    drop(f);
    assert_eq!(fs::metadata(m.path("d1/big")).unwrap().len(), 5_000_000);
    fs::write(m.path("gone"), b"x").unwrap();
    fs::remove_file(m.path("gone")).unwrap();
    fs::create_dir(m.path("empty")).unwrap();
    fs::remove_dir(m.path("empty")).unwrap();

    // Errors as errno.
    let excl = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(m.path("victim"));
    assert_eq!(errno_of(excl), libc::EEXIST);
    fs::write(m.path("spare"), b"spare").unwrap();
    let noreplace = nix::fcntl::renameat2(
        None,
        &m.path("spare"),
        None,
        &m.path("victim"),
        nix::fcntl::RenameFlags::RENAME_NOREPLACE,
    );
    assert_eq!(noreplace, Err(nix::errno::Errno::EEXIST));
    assert_eq!(fs::read(m.path("victim")).unwrap(), b"new contents");
    fs::remove_file(m.path("spare")).unwrap();
    let fifo = nix::sys::stat::mknod(
        &m.path("fifo"),
        nix::sys::stat::SFlag::S_IFIFO,
        nix::sys::stat::Mode::from_bits_truncate(0o644),
        0,
    );
    assert_eq!(fifo, Err(nix::errno::Errno::EPERM));
    nix::sys::stat::mknod(
        &m.path("made"),
        nix::sys::stat::SFlag::S_IFREG,
        nix::sys::stat::Mode::from_bits_truncate(0o644),
        0,
    )
    .unwrap();
    assert_eq!(fs::metadata(m.path("made")).unwrap().len(), 0);
    fs::remove_file(m.path("made")).unwrap();
    assert_eq!(errno_of(fs::remove_dir(m.path("d3"))), libc::ENOTEMPTY);
    assert_eq!(errno_of(fs::create_dir(m.path("d3"))), libc::EEXIST);
    assert_eq!(errno_of(fs::read(m.path("nope"))), libc::ENOENT);
    let long = "n".repeat(256);
    assert_eq!(errno_of(fs::write(m.path(&long), b"")), libc::ENAMETOOLONG);
    let ok_long = "L".repeat(255);
    fs::write(m.path(&ok_long), b"long name").unwrap();
    for sys in [".pfs-journal", ".pfs-paxos"] {
        assert_eq!(errno_of(fs::remove_file(m.path(sys))), libc::EPERM, "{sys}");
        assert_eq!(
            errno_of(fs::OpenOptions::new().write(true).open(m.path(sys))),
            libc::EPERM,
            "{sys}"
        );
    }
    // chmod and chown to the mount's own owner are accepted (and not
    // stored); utimes stores the modification time.
    fs::set_permissions(
        m.path("victim"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    std::os::unix::fs::chown(m.path("victim"), Some(0), Some(0)).unwrap();
    fs::File::open(m.path("victim"))
        .unwrap()
        .set_modified(std::time::SystemTime::UNIX_EPOCH)
        .unwrap();
    assert_eq!(fs::metadata(m.path("victim")).unwrap().mtime(), 0);
    // statfs: the device's real size and free space (4 MiB blocks).
    let st = nix::sys::statvfs::statvfs(&m.mp).unwrap();
    assert_eq!(st.block_size(), 4 << 20);
    assert_eq!(st.blocks() * st.block_size(), 10 << 30);
    assert!(st.blocks_free() > 0 && st.blocks_free() < st.blocks());

    // readdir with types.
    let mut names: Vec<(String, bool)> = fs::read_dir(&m.mp)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                e.file_type().unwrap().is_dir(),
            )
        })
        .collect();
    names.sort();
    let mut want = vec![
        (".pfs-journal".to_owned(), false),
        (".pfs-paxos".to_owned(), false),
        ("d1".to_owned(), true),
        ("d3".to_owned(), true),
        ("victim".to_owned(), false),
        (ok_long.clone(), false),
    ];
    want.sort();
    assert_eq!(names, want);
    m.umount();

    // The tool sees the same.
    let ls = String::from_utf8(disk.pfs.ok_bytes(&["ls", &format!("/{PBD}/d1")])).unwrap();
    assert!(ls.contains(" big\n") && !ls.contains("d2"), "{ls}");
    assert_eq!(
        disk.pfs.ok_bytes(&["read", &format!("/{PBD}/d3/hello")]),
        b"hello world\nmore\n"
    );
    assert_eq!(
        disk.pfs.ok_bytes(&["read", &format!("/{PBD}/d1/big")]),
        &big[..5_000_000]
    );
    assert_eq!(
        disk.pfs.ok_bytes(&["read", &format!("/{PBD}/{ok_long}")]),
        b"long name"
    );
    disk.fsck_clean();
}

/// Builds a tree of `n` files in nested directories, 0 bytes to ~20 MiB,
/// some with long names.
fn make_tree(root: &Path, n: usize) {
    for i in 0..n {
        let dir = root.join(format!("lvl{}/sub{}", i % 7, i % 3));
        fs::create_dir_all(&dir).unwrap();
        let size = match i % 50 {
            0 if i == 0 => 50 << 20,
            0 if i % 150 == 0 => 20 << 20,
            0 => 9 << 20,
            1 => 4 << 20,
            2 => (4 << 20) + 1,
            3 => 0,
            _ => (i * 7919) % 300_000,
        };
        let name = if i % 10 == 0 {
            format!("{i}-{}", "long-name-".repeat(24))
        } else {
            format!("file-{i}.dat")
        };
        fs::write(dir.join(name), gen_input(&format!("tree-{i}"), size)).unwrap();
    }
    fs::create_dir_all(root.join("empty/dir/chain")).unwrap();
}

/// Relative path → content digest (directories: "dir") of everything below `root`.
fn checksums(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if rel.starts_with(".pfs-") {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                out.insert(rel, "dir".into());
                walk(root, &p, out);
            } else {
                out.insert(rel, format!("{:016x}", file_digest(&p)));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn rsync_and_tar_round_trip() {
    let Some(disk) = disk("rsync", &["rsync", "tar"]) else {
        return;
    };
    let src = disk.dir.join("src");
    make_tree(&src, 300);
    let want = checksums(&src);
    assert!(want.len() > 300);

    let m = disk.mount("1", &[], "mnt");
    run(Command::new("rsync")
        .arg("-a")
        .arg(format!("{}/", src.display()))
        .arg(m.path("r/")));
    fs::create_dir(m.path("t")).unwrap();
    run(Command::new("sh").arg("-c").arg(format!(
        "tar -C '{}' -cf - . | tar -C '{}' -xf -",
        src.display(),
        m.path("t").display()
    )));
    assert_eq!(checksums(&m.path("r")), want);
    assert_eq!(checksums(&m.path("t")), want);
    unmount_and_check(m, &disk);

    // After a remount, out again with both tools.
    let m = disk.mount("1", &[], "mnt");
    let out_r = disk.dir.join("out-rsync");
    let out_t = disk.dir.join("out-tar");
    fs::create_dir_all(&out_t).unwrap();
    run(Command::new("rsync")
        .arg("-a")
        .arg(format!("{}/", m.path("r").display()))
        .arg(&out_r));
    run(Command::new("sh").arg("-c").arg(format!(
        "tar -C '{}' -cf - . | tar -C '{}' -xf -",
        m.path("t").display(),
        out_t.display()
    )));
    assert_eq!(checksums(&out_r), want);
    assert_eq!(checksums(&out_t), want);
    // A second rsync finds nothing to change and fails nowhere.
    run(Command::new("rsync")
        .arg("-a")
        .arg("--delete")
        .arg(format!("{}/", src.display()))
        .arg(m.path("r/")));
    unmount_and_check(m, &disk);
}

#[test]
fn read_only_mount_follows_the_writer() {
    let Some(disk) = disk("follow", &[]) else {
        return;
    };
    let w = disk.mount("1", &[], "rw");
    // The read-write mount is the single writer from the start: a second
    // one (another host id) is refused before it mounts anything.
    let mp2 = disk.mountpoint("rw2");
    let o = disk
        .pfs
        .run(&["-H", "3", "mount", PBD, &mp2.display().to_string()]);
    assert_eq!(
        o.status.code(),
        Some(16),
        "second writer: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!is_mounted(&mp2));
    let r = disk.mount("2", &["-r"], "ro");
    for i in 0..5 {
        let name = format!("new-{i}");
        let body = gen_input(&name, 100_000 * (i + 1));
        fs::create_dir_all(w.path("dir")).unwrap();
        let mut f = fs::File::create(w.path(&format!("dir/{name}"))).unwrap();
        f.write_all(&body).unwrap();
        drop(f);
        let t = Instant::now();
        loop {
            if let Ok(got) = fs::read(r.path(&format!("dir/{name}"))) {
                if got == body {
                    break;
                }
            }
            assert!(
                t.elapsed() < Duration::from_secs(1),
                "{name} not seen by the read-only mount within a second"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // A removal shows too.
    fs::remove_file(w.path("dir/new-0")).unwrap();
    let t = Instant::now();
    while r.path("dir/new-0").exists() {
        assert!(t.elapsed() < Duration::from_secs(1), "removal not seen");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Writes through the read-only mount fail with EROFS.
    assert_eq!(errno_of(fs::write(r.path("x"), b"x")), libc::EROFS);
    assert_eq!(errno_of(fs::create_dir(r.path("d"))), libc::EROFS);
    assert_eq!(errno_of(fs::remove_file(r.path("dir/new-1"))), libc::EROFS);
    assert_eq!(
        errno_of(fs::OpenOptions::new().write(true).open(r.path("dir/new-1"))),
        libc::EROFS
    );
    r.umount();
    w.umount();
    disk.fsck_clean();
}

/// Generation `g` of the file the writer keeps replacing: `g` as a
/// little-endian u32 in every word, so a read that mixes generations is
/// seen, and a length that changes with `g` (160 KB to 550 KB, rarely a
/// multiple of 4 KiB), so a length from another generation is seen too.
fn generation(g: u32) -> Vec<u8> {
    let words = 40_000 + (g as usize % 97) * 1_009;
    g.to_le_bytes().repeat(words)
}

/// How a read through the read-only mount of a file being replaced
/// turned out.
#[derive(Debug, Default)]
struct ReadTally {
    whole: u64,
    empty: u64,
    /// All words one generation, but not its length.
    wrong_length: u64,
    /// Words of several generations.
    mixed: u64,
    /// Older than a generation whose rename returned over a second before
    /// the read began (the mount promises to follow within a second).
    stale: u64,
    errors: BTreeMap<i32, u64>,
}

impl ReadTally {
    fn add(&mut self, got: std::io::Result<Vec<u8>>, floor: u32) {
        let body = match got {
            Ok(b) => b,
            Err(e) => {
                *self
                    .errors
                    .entry(e.raw_os_error().unwrap_or(-1))
                    .or_default() += 1;
                return;
            }
        };
        if body.is_empty() {
            self.empty += 1;
            return;
        }
        let mut word = [0u8; 4];
        let n = body.len().min(4);
        word[..n].copy_from_slice(&body[..n]);
        let g = u32::from_le_bytes(word);
        if !body.chunks(4).all(|w| w == &word[..w.len()]) {
            self.mixed += 1;
        } else if body.len() != generation(g).len() {
            self.wrong_length += 1;
        } else if g < floor {
            self.stale += 1;
        } else {
            self.whole += 1;
        }
    }

    fn merge(&mut self, other: ReadTally) {
        self.whole += other.whole;
        self.empty += other.empty;
        self.wrong_length += other.wrong_length;
        self.mixed += other.mixed;
        self.stale += other.stale;
        for (e, n) in other.errors {
            *self.errors.entry(e).or_default() += n;
        }
    }

    fn bad(&self) -> u64 {
        self.empty + self.wrong_length + self.mixed + self.stale + self.errors.values().sum::<u64>()
    }
}

/// Seconds [`a_follower_reads_a_file_replaced_by_rename_whole`] runs for:
/// `PFS_FUSE_REPLACE_SECS`, 20 by default.
fn replace_secs() -> u64 {
    std::env::var("PFS_FUSE_REPLACE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

/// Threads reading the replaced file at once.
const READERS: usize = 2;

/// Issue 17 §3: the writer's mount replaces a file over and over (a new
/// version under a temporary name, fsync, rename over the name) while
/// threads read it whole through a read-only mount of another host, each
/// read a fresh open. Every read is one version, whole: never empty, cut,
/// mixed, more than a second old, or an error (a rename leaves the name
/// with a file at every moment).
#[test]
fn a_follower_reads_a_file_replaced_by_rename_whole() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;
    let Some(disk) = disk("replace", &[]) else {
        return;
    };
    let w = disk.mount("1", &[], "rw");
    let r = disk.mount("2", &["-r"], "ro");
    // The way careful programs replace a file.
    let replace = |g: u32| {
        let tmp = w.path("rot.tmp");
        let mut f = fs::File::create(&tmp).unwrap();
        f.write_all(&generation(g)).unwrap();
        f.sync_all().unwrap();
        drop(f);
        fs::rename(&tmp, w.path("rot")).unwrap();
    };
    replace(1);
    let t = Instant::now();
    while fs::read(r.path("rot")).ok() != Some(generation(1)) {
        assert!(t.elapsed() < Duration::from_secs(2), "rot not seen");
        std::thread::sleep(Duration::from_millis(10));
    }
    // When each generation's rename returned.
    let renamed = Mutex::new(vec![(Instant::now(), 1u32)]);
    let stop = AtomicBool::new(false);
    let run_for = Duration::from_secs(replace_secs());
    let tally = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut g = 1;
            while !stop.load(Ordering::Relaxed) {
                g += 1;
                replace(g);
                renamed.lock().unwrap().push((Instant::now(), g));
            }
        });
        let read = || {
            let mut tally = ReadTally::default();
            let t = Instant::now();
            while t.elapsed() < run_for {
                // The newest generation renamed over a second ago.
                let floor = {
                    let log = renamed.lock().unwrap();
                    let before = Instant::now().checked_sub(Duration::from_secs(1));
                    let n = log.partition_point(|(at, _)| Some(*at) <= before);
                    n.checked_sub(1).map_or(0, |i| log[i].1)
                };
                tally.add(fs::read(r.path("rot")), floor);
            }
            tally
        };
        let readers: Vec<_> = (0..READERS).map(|_| s.spawn(read)).collect();
        let mut tally = ReadTally::default();
        for t in readers {
            tally.merge(t.join().unwrap());
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        tally
    });
    let generations = renamed.into_inner().unwrap().len();
    eprintln!(
        "{}s, {generations} generations written, reads through the read-only mount: {tally:?}",
        run_for.as_secs()
    );
    r.umount();
    w.umount();
    disk.fsck_clean();
    assert!(generations > 10, "the writer hardly wrote: {generations}");
    assert!(tally.whole > 10, "hardly any read: {tally:?}");
    assert_eq!(
        tally.bad(),
        0,
        "reads that were not one whole generation: {tally:?}"
    );
}

#[test]
fn sigkill_during_a_copy_leaves_fsynced_files() {
    let Some(disk) = disk("kill", &["rsync"]) else {
        return;
    };
    let mut m = disk.mount_fg("1", "mnt", MOUNT_LIMIT);
    // Files acknowledged by fsync.
    let mut kept = BTreeMap::new();
    fs::create_dir(m.path("safe")).unwrap();
    for i in 0..20 {
        let body = gen_input(&format!("safe-{i}"), 37_000 * i + 5);
        let p = m.path(&format!("safe/f{i}"));
        let mut f = fs::File::create(&p).unwrap();
        f.write_all(&body).unwrap();
        f.sync_all().unwrap();
        kept.insert(format!("f{i}"), body);
    }
    // fsyncdir makes the names durable too.
    fs::File::open(m.path("safe")).unwrap().sync_all().unwrap();
    // A copy still running when the server dies.
    let src = disk.dir.join("src");
    make_tree(&src, 120);
    let mut copy = Command::new("rsync")
        .arg("-a")
        .arg(format!("{}/", src.display()))
        .arg(m.path("busy/"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let mut server = m.child.take().unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
    let _ = copy.wait();
    run(Command::new("fusermount3").args(["-u", "-z"]).arg(&m.mp));
    drop(m);
    disk.fsck_clean();

    // The next mount on this machine takes the lease over at once.
    let t = Instant::now();
    let m = disk.mount("1", &[], "mnt");
    fs::write(m.path("after"), b"written after the takeover").unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    for (name, body) in &kept {
        assert_eq!(
            &fs::read(m.path(&format!("safe/{name}"))).unwrap(),
            body,
            "{name}"
        );
    }
    unmount_and_check(m, &disk);
}

#[test]
fn sigterm_unmounts_and_keeps_everything() {
    let Some(disk) = disk("term", &[]) else {
        return;
    };
    let mut m = disk.mount_fg("1", "mnt", MOUNT_LIMIT);
    let body = gen_input("term", 6 << 20);
    fs::write(m.path("file"), &body).unwrap();
    let mut server = m.child.take().unwrap();
    signal(server.id(), Signal::SIGTERM);
    let st = server.wait().unwrap();
    assert!(st.success(), "server exited with {st}");
    assert!(!is_mounted(&m.mp));
    drop(m);
    assert_eq!(disk.pfs.ok_bytes(&["read", &format!("/{PBD}/file")]), body);
    disk.fsck_clean();
    // A mount error is reported before the command detaches.
    let o = disk.pfs.run(&["mount", PBD, "/nonexistent/mountpoint"]);
    assert!(!o.status.success());
    assert!(!o.stderr.is_empty());
    let o = disk
        .pfs
        .run(&["mount", "loop9", disk.dir.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("loop9"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn a_background_server_logs_to_its_file() {
    let Some(disk) = disk("log", &[]) else {
        return;
    };
    let (log, logs) = server_log(&disk);
    let m = disk.mount("1", &["--log", &logs], "mnt");
    fs::write(m.path("f"), b"logged").unwrap();
    let pids = servers(&m.mp);
    assert_eq!(pids.len(), 1, "one server serves the mount: {pids:?}");
    signal(pids[0] as u32, Signal::SIGTERM);
    wait_servers_gone(&m.mp);
    assert!(!is_mounted(&m.mp));
    let text = fs::read_to_string(&log).unwrap();
    let want = format!(
        "pfs mount[{}]: SIGTERM: unmounting {}",
        pids[0],
        m.mp.display()
    );
    assert!(text.contains(&want), "the log says {text:?}");
    drop(m);
    assert_eq!(
        disk.pfs.ok_bytes(&["read", &format!("/{PBD}/f")]),
        b"logged"
    );
    // A log that cannot be opened fails the mount before it detaches.
    let mp = disk.mountpoint("mnt2");
    let o = disk.pfs.run(&[
        "mount",
        "--log",
        "/nonexistent/dir/server.log",
        PBD,
        mp.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot open the log"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!is_mounted(&mp));
}

/// A writer whose writes were stopped (another host took the lease over
/// while it was paused, and committed) keeps serving reads until it is
/// unmounted; `pfs umount` must then fail as the server does (exit 5), not
/// report a clean unmount, and the log must say how each server ended.
#[test]
fn umount_reports_a_writer_whose_writes_were_stopped() {
    let Some(disk) = disk("fenced", &[]) else {
        return;
    };
    let (log, logs) = server_log(&disk);
    let umount = |mp: &Path| {
        Command::new(pfs_tests::cli::bin())
            .arg("umount")
            .arg(mp)
            .output()
            .unwrap()
    };

    // A normal unmount is logged, and exits 0.
    let m = disk.mount("1", &["--log", &logs], "mnt");
    let pid = servers(&m.mp)[0];
    let o = umount(&m.mp);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = fs::read_to_string(&log).unwrap();
    for want in [
        format!(
            "pfs mount[{pid}]: mounted {PBD} on {} (read-write)",
            m.mp.display()
        ),
        format!("pfs mount[{pid}]: exit 0: unmounted {}", m.mp.display()),
    ] {
        assert!(text.contains(&want), "{want:?} not in the log: {text:?}");
    }
    drop(m);

    // A writer with a short lease, paused past it while host 2 takes the
    // lease over and commits.
    let mp = disk.mountpoint("fenced");
    let short = disk.pfs.clone().lease_ms(2000);
    let o = short
        .command(&["-H", "1", "mount", "--log", &logs, PBD])
        .arg(&mp)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = Mounted::adopt(&mp);
    fs::write(m.path("before"), b"acknowledged").unwrap();
    fs::File::open(m.path("before"))
        .unwrap()
        .sync_all()
        .unwrap();
    let pid = servers(&m.mp)[0];
    let server = pid as u32;
    signal(server, Signal::SIGSTOP);
    let o = short.run(&["-H", "2", "--force", "touch", &format!("/{PBD}/taken")]);
    signal(server, Signal::SIGCONT);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Its next commit finds another writer's: writes are stopped.
    let r = fs::write(m.path("after"), b"refused")
        .and_then(|()| fs::File::open(m.path("after"))?.sync_all());
    assert_eq!(errno_of(r), libc::EIO, "a fenced writer wrote");

    let o = umount(&m.mp);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(5),
        "pfs umount of a fenced writer: {err}"
    );
    assert!(err.contains("writes are stopped"), "{err}");
    assert!(!is_mounted(&m.mp));
    wait_servers_gone(&m.mp);
    let text = fs::read_to_string(&log).unwrap();
    let want = format!("pfs mount[{pid}]: exit 5: unmounted {}", m.mp.display());
    assert!(text.contains(&want), "{want:?} not in the log: {text:?}");
    drop(m);
    // What either writer acknowledged is there, and nothing else.
    assert_eq!(
        disk.pfs.ok_bytes(&["read", &format!("/{PBD}/before")]),
        b"acknowledged"
    );
    disk.pfs.ok_bytes(&["stat", &format!("/{PBD}/taken")]);
    disk.fsck_clean();
}

#[test]
fn pg_receivewal_streams_into_the_mount() {
    if !fuse::available() {
        return;
    }
    let Some(bin) = pg::install(&["initdb", "pg_ctl", "psql", "pg_basebackup", "pg_receivewal"])
    else {
        return;
    };
    let disk = Disk::new("fuse-pgwal", PBD);
    let sock = disk.mountpoint("sock");
    for d in [disk.dir.path(), &sock] {
        fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    }
    // allow_other: the restoring server (user postgres) reads the mount.
    let m = disk.mount("1", &["-o", "allow_other"], "mnt");
    fs::create_dir(m.path("wal")).unwrap();

    let primary = Server::init(
        &bin,
        &disk.dir.join("primary"),
        &sock,
        "wal_level = replica\nmax_wal_senders = 4\n",
    );
    primary.start();
    primary.create_table();
    // pg_receivewal (run as root: it is an ordinary client) streams into
    // the mount, through a slot so the server keeps what it has not sent.
    primary.psql("select pg_create_physical_replication_slot('recv', true)");
    let mut recv = Command::new(bin.join("pg_receivewal"))
        .arg("-D")
        .arg(m.path("wal"))
        .arg("-h")
        .arg(&sock)
        .args([
            "-p",
            &primary.port.to_string(),
            "-U",
            "postgres",
            "-n",
            "-S",
            "recv",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("pg_receivewal starting a segment", 60, || {
        fs::read_dir(m.path("wal")).unwrap().next().is_some()
    });
    // The base backup's checkpoint is in what pg_receivewal streams.
    let base = disk.dir.join("base");
    primary.base_backup(&base);
    let (last, expected) = primary.insert_and_switch();
    assert_eq!(expected, 21_000);
    wait_for(
        "pg_receivewal completing the last switched segment",
        120,
        || m.path(&format!("wal/{last}")).exists(),
    );
    signal(recv.id(), Signal::SIGINT);
    let st = recv.wait().unwrap();
    let mut errs = String::new();
    let _ = std::io::Read::read_to_string(recv.stderr.as_mut().unwrap(), &mut errs);
    assert!(st.success(), "pg_receivewal: {st}: {errs}");

    // Every completed segment still in pg_wal has the server's bytes,
    // through the mount and through the tool.
    let mut segments: Vec<String> = fs::read_dir(m.path("wal"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.len() == 24)
        .collect();
    segments.sort();
    assert!(segments.len() >= 4, "{segments:?}");
    let listing = disk.pfs.ok(&["ls", &format!("/{PBD}/wal")]);
    let mut compared = 0;
    for name in &segments {
        assert!(
            listing.contains(name.as_str()),
            "pfs ls lacks {name}: {listing}"
        );
        let through_mount = fs::read(m.path(&format!("wal/{name}"))).unwrap();
        assert_eq!(through_mount.len(), 16 << 20, "{name}");
        assert_eq!(
            disk.pfs.ok_bytes(&["read", &format!("/{PBD}/wal/{name}")]),
            through_mount,
            "{name}"
        );
        if primary.same_segment(name, &through_mount, &last) {
            compared += 1;
        }
    }
    assert!(compared >= 1, "no segment could be compared with pg_wal");
    // Point-in-time restore: restore_command copies from the mount.
    let restored = primary.restore(
        &base,
        &format!("restore_command = 'cp {}/%f %p'\n", m.path("wal").display()),
    );
    restored.start();
    restored.wait_recovered();
    let count: u64 = restored.psql("select count(*) from t").parse().unwrap();
    assert_eq!(count, expected, "rows after the point-in-time restore");
    drop(restored);
    unmount_and_check(m, &disk);
}

#[test]
fn names_that_are_not_utf8_pass_through_the_mount() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let name = |b: &'static [u8]| OsStr::from_bytes(b);
    let Some(disk) = disk("nonutf8", &[]) else {
        return;
    };
    let m = disk.mount("1", &[], "mnt");
    fs::create_dir(m.mp.join(name(b"\xff\xfe"))).unwrap();
    fs::write(m.mp.join(name(b"\xff\xfe/caf\xe9")), b"through fuse").unwrap();
    fs::write(m.mp.join(name(b"old\xe8")), b"x").unwrap();
    fs::rename(m.mp.join(name(b"old\xe8")), m.mp.join(name(b"new\xe8"))).unwrap();
    let mut got: Vec<Vec<u8>> = fs::read_dir(m.mp.join(name(b"\xff\xfe")))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_vec())
        .collect();
    got.sort();
    assert_eq!(got, [b"caf\xe9".to_vec()]);
    assert_eq!(
        fs::read(m.mp.join(name(b"\xff\xfe/caf\xe9"))).unwrap(),
        b"through fuse"
    );
    m.umount();

    // The tool lists the names byte for byte and reads through them.
    let ls = disk.pfs.ok_bytes(&["ls", &format!("/{PBD}/")]);
    let has = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    assert!(
        has(&ls, b"  \xff\xfe\n"),
        "{}",
        String::from_utf8_lossy(&ls)
    );
    assert!(has(&ls, b"  new\xe8\n") && !has(&ls, b"  old\xe8\n"));
    let o = disk.pfs.run(&[
        OsStr::new("read"),
        OsStr::from_bytes(&[b"/", PBD.as_bytes(), b"/\xff\xfe/caf\xe9"].concat()),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.stdout, b"through fuse");
    disk.fsck_clean();
}

/// A user id and group id with no account: an ordinary unprivileged user
/// for `setpriv`.
const OWNER: u32 = 4242;
/// Another such user, in the owner's group (as its primary group).
const MEMBER: u32 = 4343;
/// `nobody`, in no group of the mount.
const NOBODY: u32 = 65534;

/// Runs `sh -c script` as user `uid` with group `gid` and no other
/// groups; returns whether it succeeded and its stderr.
fn sh_as(uid: u32, gid: u32, script: &str) -> (bool, String) {
    let o = Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .args(["--clear-groups", "--", "sh", "-c", script])
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Asserts that `script` run as `uid`/`gid` succeeds.
fn allowed(uid: u32, gid: u32, script: &str) {
    let (ok, err) = sh_as(uid, gid, script);
    assert!(ok, "as {uid}:{gid}: {script}: {err}");
}

/// Asserts that `script` run as `uid`/`gid` fails with `EACCES`.
fn denied(uid: u32, gid: u32, script: &str) {
    let (ok, err) = sh_as(uid, gid, script);
    assert!(
        !ok && err.contains("Permission denied"),
        "as {uid}:{gid}: {script} should fail with EACCES: {err}"
    );
}

#[test]
fn a_shared_mount_lets_only_its_owner_and_group_in() {
    // setpriv (util-linux) runs the commands as other users.
    let Some(disk) = disk("perm", &["setpriv"]) else {
        return;
    };
    let devdir = disk.pfs.dir().to_path_buf();
    for d in [disk.dir.path(), devdir.as_path()] {
        fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    // Bad values are refused before anything is mounted.
    let spare = disk.dir.to_string_lossy().into_owned();
    for bad in ["uid=postgres", "gid=-1", "umask=088", "owner=1"] {
        let o = disk.pfs.run(&["-H", "1", "mount", "-o", bad, PBD, &spare]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(bad), "-o {bad}: {err}");
    }
    // The device belongs to root and the owner's group, as /dev/nvme*
    // belong to root:disk.
    let device = devdir.join(PBD);
    std::os::unix::fs::chown(&device, Some(0), Some(OWNER)).unwrap();
    fs::set_permissions(&device, std::os::unix::fs::PermissionsExt::from_mode(0o660)).unwrap();
    let opts = format!("allow_other,uid={OWNER},gid={OWNER},umask=027");
    let m = disk.mount("1", &["-o", &opts], "mnt");
    let mp = m.mp.display().to_string();

    // The owner creates, writes, renames and removes.
    allowed(
        OWNER,
        OWNER,
        &format!(
            "set -e; cd {mp}; mkdir d; echo hello > d/f; mv d/f d/g; echo keep > kept; \
             rm d/g; rmdir d; cat kept; chmod 600 kept; chown {OWNER}:{OWNER} kept"
        ),
    );
    // What everything shows: the mount's owner, group and umask.
    let st = fs::metadata(m.path("kept")).unwrap();
    assert_eq!(
        (st.uid(), st.gid(), st.mode() & 0o7777),
        (OWNER, OWNER, 0o640)
    );
    let st = fs::metadata(&m.mp).unwrap();
    assert_eq!(
        (st.uid(), st.gid(), st.mode() & 0o7777),
        (OWNER, OWNER, 0o750)
    );
    let st = fs::metadata(m.path(".pfs-journal")).unwrap();
    assert_eq!(st.mode() & 0o7777, 0o440);

    // The group reads and may not write.
    allowed(MEMBER, OWNER, &format!("cat {mp}/kept && ls {mp}"));
    denied(MEMBER, OWNER, &format!("echo x > {mp}/new"));
    denied(MEMBER, OWNER, &format!("echo x >> {mp}/kept"));
    denied(MEMBER, OWNER, &format!("rm -f {mp}/kept"));
    // Anyone else can do nothing, not even look.
    denied(NOBODY, NOBODY, &format!("ls {mp}"));
    denied(NOBODY, NOBODY, &format!("cat {mp}/kept"));
    denied(NOBODY, NOBODY, &format!("echo x > {mp}/new"));
    denied(NOBODY, NOBODY, &format!("mkdir {mp}/dir"));
    denied(NOBODY, NOBODY, &format!("rm -f {mp}/kept"));
    // Giving a file away is refused (PFS stores no owner), also to root.
    assert_eq!(
        errno_of(std::os::unix::fs::chown(m.path("kept"), Some(0), None)),
        libc::EPERM
    );
    assert_eq!(
        errno_of(std::os::unix::fs::chown(m.path("kept"), None, Some(0))),
        libc::EPERM
    );

    // The host lock and the live-mark file of the lease: the device's
    // owner and group may open them, nobody else (a lock held on them
    // would stall every writer of the device).
    for name in [
        format!(".{PBD}-paxos-hostid"),
        format!(".{PBD}.pfs-rs-live"),
    ] {
        let p = devdir.join(&name);
        let st = fs::metadata(&p).unwrap();
        assert_eq!(
            (st.uid(), st.gid(), st.mode() & 0o7777),
            (0, OWNER, 0o660),
            "{name}"
        );
        let ps = p.display();
        allowed(MEMBER, OWNER, &format!(": <> {ps}"));
        denied(NOBODY, NOBODY, &format!(": < {ps}"));
    }
    m.umount();
    assert_eq!(
        disk.pfs.ok_bytes(&["read", &format!("/{PBD}/kept")]),
        b"keep\n"
    );
    disk.fsck_clean();
}

/// Runs `rsync -a --stats` from `src` into `dst`; the number of regular
/// files it transferred.
fn rsync_transferred(src: &Path, dst: &Path) -> u64 {
    let o = Command::new("rsync")
        .args(["-a", "--stats"])
        .arg(format!("{}/", src.display()))
        .arg(dst)
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "rsync: {out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out.lines()
        .find_map(|l| l.strip_prefix("Number of regular files transferred: "))
        .map(|n| n.replace(',', "").trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no count in rsync's output: {out}"))
}

#[test]
fn rsync_again_transfers_nothing_because_times_are_kept() {
    let Some(disk) = disk("times", &["rsync"]) else {
        return;
    };
    let src = disk.dir.join("src");
    // Some files large enough to get blocks ahead of the writer, which
    // are given back when they close.
    make_tree(&src, 60);
    let files = checksums(&src).values().filter(|v| *v != "dir").count() as u64;
    let m = disk.mount("1", &[], "mnt");
    assert_eq!(rsync_transferred(&src, &m.path("r")), files);
    assert_eq!(rsync_transferred(&src, &m.path("r")), 0, "second run");
    // The times are the source's.
    let big = format!("lvl0/sub0/0-{}", "long-name-".repeat(24));
    for rel in ["lvl1/sub1/file-1.dat", &big, "lvl3/sub0"] {
        let (a, b) = (
            fs::metadata(src.join(rel)).unwrap(),
            fs::metadata(m.path("r").join(rel)).unwrap(),
        );
        assert_eq!(a.mtime(), b.mtime(), "{rel}");
    }
    // A time set while the file is still open (cp -p sets it before it
    // closes the copy) outlasts the close, which gives back the blocks
    // allocated ahead.
    let big_src = src.join(&big);
    run(Command::new("cp")
        .arg("-p")
        .arg(&big_src)
        .arg(m.path("cp-p")));
    assert_eq!(
        fs::metadata(m.path("cp-p")).unwrap().mtime(),
        fs::metadata(&big_src).unwrap().mtime()
    );
    {
        let mut f = fs::File::create(m.path("held")).unwrap();
        f.write_all(&gen_input("held", 20 << 20)).unwrap();
        f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(1_234_567_890))
            .unwrap();
    }
    assert_eq!(fs::metadata(m.path("held")).unwrap().mtime(), 1_234_567_890);
    // Set through the mount, kept across a remount, read by the tool.
    fs::write(m.path("stamped"), b"x").unwrap();
    run(Command::new("touch")
        .args(["-d", "@1000000000"])
        .arg(m.path("stamped")));
    assert_eq!(
        fs::metadata(m.path("stamped")).unwrap().mtime(),
        1_000_000_000
    );
    m.umount();
    let stat = String::from_utf8(disk.pfs.ok_bytes(&["stat", &format!("/{PBD}/stamped")])).unwrap();
    assert!(stat.contains("modify: 1000000000,"), "{stat}");
    let m = disk.mount("1", &[], "mnt");
    assert_eq!(
        fs::metadata(m.path("stamped")).unwrap().mtime(),
        1_000_000_000
    );
    assert_eq!(rsync_transferred(&src, &m.path("r")), 0, "after a remount");
    // A file changed since is copied again, and only that one.
    fs::write(src.join("lvl1/sub1/file-1.dat"), b"changed").unwrap();
    assert_eq!(rsync_transferred(&src, &m.path("r")), 1);
    m.umount();
    disk.fsck_clean();
}

/// The `major:minor` of the mount on `mp` (/proc/self/mountinfo).
fn mount_device(mp: &Path) -> String {
    let want = mp.canonicalize().unwrap().display().to_string();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .rev()
        .find(|l| l.split(' ').nth(4) == Some(want.as_str()))
        .and_then(|l| l.split(' ').nth(2))
        .unwrap_or_else(|| panic!("{want} is not mounted"))
        .to_owned()
}

#[test]
fn the_writer_reads_ahead_in_large_requests() {
    let Some(disk) = disk("readahead", &[]) else {
        return;
    };
    let m = disk.mount("1", &[], "mnt");
    let knob = format!("/sys/class/bdi/{}/read_ahead_kb", mount_device(&m.mp));
    // The kernel's default (128 KiB) until the first open.
    let body = gen_input("readahead", 3 << 20);
    fs::write(m.path("f"), &body).unwrap();
    assert_eq!(fs::read(m.path("f")).unwrap(), body);
    let kb: u32 = fs::read_to_string(&knob).unwrap().trim().parse().unwrap();
    assert_eq!(kb, 8192, "{knob}");
    unmount_and_check(m, &disk);
}
