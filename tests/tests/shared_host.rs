//! Several processes of one machine mounting one device read-write with
//! the same host id (`MountOptions::shared`, as the C SDK's processes do):
//! they write at the same time, each sees the others' commits as soon as
//! they are made, nothing any of them acknowledged is lost, and one killed
//! in the middle of its work stops nobody.
//!
//! The processes are this test binary run again with an environment
//! variable naming their role.

#![allow(clippy::unwrap_used)]

use pfs_core::testing::StallingDevice;
use pfs_core::{Device, FileDevice, FileType, Mode, Mount, MountOptions};
use pfs_tests::device::{self, Scratch};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROLE: &str = "PFS_SHARED_TEST_ROLE";
const IMAGE: &str = "PFS_SHARED_TEST_IMAGE";

fn options(image: &Path, hostid: u64) -> MountOptions {
    MountOptions {
        hostid,
        shared: true,
        share_path: Some(image.with_extension("share")),
        lease_ms: 2_000,
        ..MountOptions::default()
    }
}

fn mount(image: &Path, mode: Mode, hostid: u64) -> Arc<Mount> {
    let dev: Arc<dyn Device> =
        Arc::new(FileDevice::open("img", image, mode == Mode::ReadWrite).unwrap());
    Arc::new(Mount::open_with(dev, mode, &options(image, hostid)).unwrap())
}

/// A fresh one-chunk image `img` in a scratch directory of its own.
fn image(tag: &str) -> (Scratch, PathBuf) {
    let dir = Scratch::new(&format!("shared-{tag}"));
    let img = dir.formatted("img", 1);
    (dir, img)
}

fn spawn(role: &str, img: &Path) -> Child {
    spawn_with(role, img, &[])
}

/// [`spawn`] with more environment variables.
fn spawn_with(role: &str, img: &Path, env: &[(&str, &str)]) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(IMAGE, img)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The bytes child `k` writes as its `i`-th file.
fn data(k: u64, i: u64) -> Vec<u8> {
    let len = 1 + ((k * 7919 + i * 104_729) % 20_000) as usize;
    (0..len)
        .map(|j| (j as u64 * 31 + k * 7 + i) as u8)
        .collect()
}

/// The 8 KiB page child `k` writes at its `i`-th slot of `/common`.
fn page(k: u64, i: u64) -> Vec<u8> {
    vec![((k * 37 + i % 50) % 255) as u8 + 1; 8192]
}

/// A child: works for its time, printing each acknowledged step.
#[test]
fn child() {
    let Some(role) = std::env::var_os(ROLE) else {
        return;
    };
    let role = role.into_string().unwrap();
    let img = PathBuf::from(std::env::var_os(IMAGE).unwrap());
    let mut parts = role.split(':');
    let kind = parts.next().unwrap();
    let k: u64 = parts.next().unwrap().parse().unwrap();
    let secs: u64 = parts.next().unwrap().parse().unwrap();
    let m = mount(&img, Mode::ReadWrite, 1);
    let out = std::io::stdout();
    let say = |line: String| {
        let mut o = out.lock();
        writeln!(o, "{line}").unwrap();
        o.flush().unwrap();
    };
    say("ready".into());
    match kind {
        "worker" => {
            m.create_dir_all("/shared").unwrap();
            let common = match m.create_path("/common", FileType::File) {
                Ok(ino) => ino,
                Err(_) => m.resolve("/common").unwrap(),
            };
            let until = Instant::now() + Duration::from_secs(secs);
            let mut i = 0u64;
            while Instant::now() < until {
                let name = format!("/shared/c{k}-{i}");
                let ino = m.create_path(&name, FileType::File).unwrap();
                m.write_at(ino, &data(k, i), 0).unwrap();
                let slot = (i * 8 + k) * 8192;
                m.write_at(common, &page(k, i), slot).unwrap();
                match i % 3 {
                    0 => {
                        m.rename_path(&name, format!("/shared/r{k}-{i}")).unwrap();
                        say(format!("file r{k}-{i} {k} {i}"));
                    }
                    1 => {
                        m.unlink_path(&name).unwrap();
                        say(format!("gone c{k}-{i}"));
                    }
                    _ => say(format!("file c{k}-{i} {k} {i}")),
                }
                say(format!("page {k} {i}"));
                i += 1;
            }
        }
        "maker" => {
            // Makes a file, says so, and waits for the next line.
            let stdin = std::io::stdin();
            for i in 0..secs {
                let name = format!("/made{i}");
                let ino = m.create_path(&name, FileType::File).unwrap();
                m.write_at(ino, &data(k, i), 0).unwrap();
                say(format!("made {name}"));
                let mut line = String::new();
                stdin.lock().read_line(&mut line).unwrap();
            }
        }
        "staller" => {
            // A write inside /f's size that stalls between finding its
            // block and landing: it says "stalled" and lands half a second
            // later.
            drop(m);
            let file = FileDevice::open("img", &img, true).unwrap();
            let dev: Arc<dyn Device> = Arc::new(StallingDevice::new(file, b'W', || {
                let mut o = std::io::stdout().lock();
                writeln!(o, "stalled").unwrap();
                o.flush().unwrap();
                drop(o);
                std::thread::sleep(Duration::from_millis(500));
            }));
            let m = Mount::open_with(dev, Mode::ReadWrite, &options(&img, 1)).unwrap();
            let f = m.resolve("/f").unwrap();
            m.write_at(f, &[b'W'; 4096], 0).unwrap();
            say("wrote".into());
        }
        "slowflush" => {
            // Commits /s0; then stops renewing its lease, and the first
            // flush of /s1's commit takes longer than the lease runs:
            // says "made" when /s1's create returned, or "failed: ...".
            drop(m);
            let file = FileDevice::open("img", &img, true).unwrap();
            let dev = Arc::new(SlowNextFlush {
                inner: file,
                stall_ms: 0.into(),
            });
            let m = Mount::open_with(dev.clone(), Mode::ReadWrite, &options(&img, 1)).unwrap();
            m.create_path("/s0", FileType::File).unwrap();
            m.lease().unwrap().stop_renewing();
            dev.stall_ms
                .store(3_000, std::sync::atomic::Ordering::SeqCst);
            match m.create_path("/s1", FileType::File) {
                Ok(_) => say("made".into()),
                Err(e) => say(format!("failed: {e}")),
            }
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).unwrap();
        }
        "idler" => {
            // Writes /f once, then waits for a line.
            let f = m.resolve("/f").unwrap();
            m.write_at(f, &[b'i'; 4096], 0).unwrap();
            say("wrote".into());
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).unwrap();
        }
        "hammer" => {
            // Writes /f again and again for `secs` seconds.
            let f = m.resolve("/f").unwrap();
            let until = Instant::now() + Duration::from_secs(secs);
            let mut n = 0u64;
            while Instant::now() < until {
                m.write_at(f, &[b'h'; 4096], 0).unwrap();
                n += 1;
                if n == 1 {
                    say("writing".into());
                }
            }
            say(format!("wrote {n}"));
        }
        "creator" => {
            // Threads that each create files in a directory of their own
            // and look at each at once, unlinking the older ones.
            let m = Arc::new(m);
            let until = Instant::now() + Duration::from_secs(secs);
            let threads: Vec<_> = (0..CREATOR_THREADS)
                .map(|t| {
                    let m = Arc::clone(&m);
                    std::thread::spawn(move || {
                        let dir = format!("/t{k}-{t}");
                        m.mkdir_path(&dir).unwrap();
                        let mut made = std::collections::VecDeque::new();
                        let mut i = 0u64;
                        while Instant::now() < until {
                            let name = format!("{dir}/f{i}");
                            let ino = m.create_path(&name, FileType::File).unwrap();
                            let attr = m.getattr(ino).unwrap_or_else(|e| {
                                panic!("{name} (inode {ino}) just created: {e}")
                            });
                            assert!(!attr.is_dir());
                            assert_eq!(m.resolve(&name).unwrap(), ino);
                            made.push_back(name);
                            if made.len() > 16 {
                                m.unlink_path(made.pop_front().unwrap()).unwrap();
                            }
                            i += 1;
                        }
                        i
                    })
                })
                .collect();
            let n: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
            say(format!("created {n}"));
        }
        other => panic!("unknown role {other}"),
    }
    say("done".into());
}

/// "creator" children.
const CREATORS: u64 = 8;

/// Threads of a "creator" child.
const CREATOR_THREADS: u64 = 4;

/// What the workers acknowledged.
#[derive(Default)]
struct Acked {
    files: BTreeMap<String, (u64, u64)>,
    gone: Vec<String>,
    pages: Vec<(u64, u64)>,
}

impl Acked {
    /// Takes in one line a worker printed; `true` for its last ("done").
    fn take(&mut self, line: &str) -> bool {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["file", name, k, i] => {
                self.files
                    .insert(name.to_string(), (k.parse().unwrap(), i.parse().unwrap()));
            }
            ["gone", name] => self.gone.push(name.to_string()),
            ["page", k, i] => self.pages.push((k.parse().unwrap(), i.parse().unwrap())),
            ["done"] => return true,
            _ => {}
        }
        false
    }
}

fn collect(child: Child, acked: &mut Acked) -> (std::process::ExitStatus, bool) {
    let mut child = child;
    let out = child.stdout.take().unwrap();
    let mut done = false;
    for line in BufReader::new(out).lines() {
        done |= acked.take(&line.unwrap());
    }
    (child.wait().unwrap(), done)
}

fn verify(img: &Path, acked: &Acked) {
    let m = mount(img, Mode::ReadOnly, 2);
    for (name, (k, i)) in &acked.files {
        let ino = m
            .resolve(format!("/shared/{name}"))
            .unwrap_or_else(|e| panic!("acknowledged /shared/{name} is missing: {e}"));
        let want = data(*k, *i);
        let mut got = vec![0u8; want.len() + 10];
        let n = m.read_at(ino, &mut got, 0).unwrap();
        let attr = m.getattr(ino).unwrap();
        assert_eq!(
            n,
            want.len(),
            "{name}: inode {ino}, {attr:?}, fsck {:?}",
            m.fsck()
        );
        assert!(got[..want.len()] == want[..], "{name} has the wrong bytes");
    }
    for name in &acked.gone {
        assert!(
            m.resolve(format!("/shared/{name}")).is_err(),
            "{name} came back"
        );
    }
    let common = m.resolve("/common").unwrap();
    for (k, i) in &acked.pages {
        let mut got = vec![0u8; 8192];
        let off = (i * 8 + k) * 8192;
        assert_eq!(m.read_at(common, &mut got, off).unwrap(), 8192);
        let bad = got.iter().zip(page(*k, *i)).position(|(a, b)| *a != b);
        assert_eq!(bad, None, "page {k}/{i} of /common differs at this byte");
    }
    device::fsck_clean(&m);
}

#[test]
fn processes_of_one_host_write_together() {
    let (_dir, img) = image("together");
    let children: Vec<Child> = (0..4)
        .map(|k| spawn(&format!("worker:{k}:4"), &img))
        .collect();
    let mut acked = Acked::default();
    for c in children {
        let (status, done) = collect(c, &mut acked);
        assert!(status.success() && done, "a worker failed: {status}");
    }
    assert!(
        acked.files.len() > 20,
        "too little work: {}",
        acked.files.len()
    );
    verify(&img, &acked);
}

#[test]
fn a_killed_process_stops_nobody() {
    let (_dir, img) = image("killed");
    let mut victim = spawn("worker:0:30", &img);
    let others: Vec<Child> = (1..3)
        .map(|k| spawn(&format!("worker:{k}:4"), &img))
        .collect();
    // Let the victim work a while, then kill it wherever it is.
    let out = victim.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut acked = Acked::default();
        for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
            acked.take(&line);
        }
        acked
    });
    std::thread::sleep(Duration::from_millis(1500));
    victim.kill().unwrap();
    victim.wait().unwrap();
    let mut acked = reader.join().unwrap();
    assert!(
        !acked.files.is_empty(),
        "the victim did nothing before it was killed"
    );
    for c in others {
        let (status, done) = collect(c, &mut acked);
        assert!(
            status.success() && done,
            "a worker failed after the kill: {status}"
        );
    }
    // A process started after the kill writes too.
    let (status, done) = collect(spawn("worker:5:1", &img), &mut acked);
    assert!(status.success() && done, "a later worker failed: {status}");
    verify(&img, &acked);
}

#[test]
fn a_commit_is_seen_by_the_next_call_of_another_process() {
    let (_dir, img) = image("seen");
    let here = mount(&img, Mode::ReadWrite, 1);
    // This process writes first, so the host holds the lease on this
    // machine and its commits are counted in the share.
    here.mkdir_path("/d").unwrap();
    let mut maker = spawn("maker:3:20", &img);
    let mut input = maker.stdin.take();
    let out = maker.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    let mut seen = 0;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(name) = line.strip_prefix("made ") {
            let ino = here
                .resolve(name)
                .unwrap_or_else(|e| panic!("{name}, made by another process, is not seen: {e}"));
            let size = here.getattr(ino).unwrap().size;
            assert_eq!(size, data(3, seen).len() as u64, "{name}");
            seen += 1;
            if let Some(i) = input.as_mut() {
                let _ = writeln!(i);
            }
        }
        if line == "done" {
            break;
        }
    }
    drop(input);
    assert!(maker.wait().unwrap().success());
    assert_eq!(seen, 20);
    // And this process writes after it, on the state it made.
    here.mkdir_path("/after").unwrap();
    assert!(here.resolve("/made19").is_ok());
}

#[test]
fn a_tool_mounting_with_host_id_0_writes_as_the_host_holding_the_lease() {
    let (_dir, img) = image("tool");
    let db = mount(&img, Mode::ReadWrite, 1);
    db.mkdir_path("/base").unwrap();
    let tool = mount(&img, Mode::ReadWrite, 0);
    assert_eq!(tool.hostid(), 1, "the tool joins the host that writes");
    tool.mkdir_path("/base/from-tool").unwrap();
    assert!(db.resolve("/base/from-tool").is_ok());
    db.mkdir_path("/base/from-db").unwrap();
    assert!(tool.resolve("/base/from-db").is_ok());
    // A read-only mount of another host id follows both.
    let replica = mount(&img, Mode::ReadOnly, 2);
    assert!(replica.resolve("/base/from-tool").is_ok());
    assert!(replica.resolve("/base/from-db").is_ok());
}

/// A file device whose next flush, once `stall_ms` is set, takes that
/// long (a flush held up behind other IO).
struct SlowNextFlush {
    inner: FileDevice,
    stall_ms: std::sync::atomic::AtomicU64,
}

impl Device for SlowNextFlush {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> pfs_core::Result<()> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> pfs_core::Result<()> {
        self.inner.write_at(buf, offset)
    }
    fn sync(&self) -> pfs_core::Result<()> {
        let ms = self.stall_ms.swap(0, std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(ms));
        self.inner.sync()
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn sector_size(&self) -> u32 {
        self.inner.sector_size()
    }
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn local_path(&self) -> Option<&Path> {
        self.inner.local_path()
    }
}

#[test]
fn a_commit_held_up_past_the_lease_stops_no_process_of_the_host() {
    // The other process's lease runs out while the first flush of its
    // commit is held up; nobody else renews it (this process has not
    // written yet). Its leader write, refused for the lapsed lease, is
    // made once it proved the lease again: its create returns, and this
    // process of the same host writes on afterwards.
    let (_dir, img) = image("slowflush");
    let here = mount(&img, Mode::ReadWrite, 1);
    let mut child = spawn("slowflush:0:0", &img);
    let mut input = child.stdin.take();
    let mut lines = said(&mut child);
    assert_eq!(lines.next().unwrap(), "ready");
    assert_eq!(lines.next().unwrap(), "made");
    here.create_path("/p", FileType::File).unwrap();
    for name in ["/s0", "/s1", "/p"] {
        here.resolve(name)
            .unwrap_or_else(|e| panic!("{name} is missing: {e}"));
    }
    if let Some(i) = input.as_mut() {
        writeln!(i).unwrap();
    }
    drop(input);
    assert!(child.wait().unwrap().success());
    device::fsck_clean(&here);
}

#[test]
fn a_truncate_in_one_process_waits_for_a_write_in_another() {
    let (_dir, m, f, mut child, mut lines) = file_and_child("truncate", "staller:0:0");
    assert_eq!(lines.next().unwrap(), "stalled");
    // The other process's write found its block and is on its way. Cutting
    // the file frees the block, and the next file to grow gets it: the
    // truncate must wait for that write, or its bytes land in /g.
    m.truncate(f, 0).unwrap();
    let g = m.create_path("/g", FileType::File).unwrap();
    m.write_at(g, &[b'g'; 8192], 0).unwrap();
    assert_eq!(lines.next().unwrap(), "wrote");
    assert!(child.wait().unwrap().success());
    let mut buf = vec![0u8; 8192];
    assert_eq!(m.read_at(g, &mut buf, 0).unwrap(), 8192);
    assert!(
        buf.iter().all(|&b| b == b'g'),
        "the other process's write landed in /g's block"
    );
    device::fsck_clean(&m);
    drop(m);
}

/// A fresh image whose `/f` holds 8 KiB, written through this process's
/// mount of it (returned, with `/f`'s inode), and child `role` started on
/// it, with the lines it says after "ready".
fn file_and_child(
    tag: &str,
    role: &str,
) -> (
    Scratch,
    Arc<Mount>,
    u64,
    Child,
    impl Iterator<Item = String>,
) {
    let (dir, img) = image(tag);
    let m = mount(&img, Mode::ReadWrite, 1);
    let f = m.create_path("/f", FileType::File).unwrap();
    m.write_at(f, &[b'f'; 8192], 0).unwrap();
    let mut child = spawn(role, &img);
    let mut lines = said(&mut child);
    assert_eq!(lines.next().unwrap(), "ready");
    (dir, m, f, child, lines)
}

/// The lines child `c` says, without the test harness's own words ("test
/// child ... " comes first on the child's first line).
fn said(c: &mut Child) -> impl Iterator<Item = String> {
    BufReader::new(c.stdout.take().unwrap())
        .lines()
        .map(Result::unwrap)
        .map(|l| l.rsplit(" ... ").next().unwrap_or("").to_owned())
        .filter(|l| !l.is_empty() && !l.starts_with("running "))
}

/// `m.truncate(f, 0)` on a thread; how long it took, or a panic when it
/// has not returned after 20 s.
fn timed_truncate(m: &Arc<Mount>, f: u64) -> Duration {
    let (tx, rx) = std::sync::mpsc::channel();
    let m2 = Arc::clone(m);
    std::thread::spawn(move || {
        let t = Instant::now();
        let r = m2.truncate(f, 0);
        let _ = tx.send((r, t.elapsed()));
    });
    let (r, took) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the truncate did not return within 20 s");
    r.unwrap();
    took
}

#[test]
fn a_truncate_waits_at_most_a_moment_for_a_process_that_wrote_the_file_before() {
    // A process keeps its data lock a moment after its last write of a
    // file (its next write then takes none); one that stopped writing must
    // not hold a truncate in another process up.
    let (_dir, m, f, mut child, mut lines) = file_and_child("idle", "idler:0:0");
    assert_eq!(lines.next().unwrap(), "wrote");
    let took = timed_truncate(&m, f);
    assert!(took < Duration::from_secs(2), "the truncate took {took:?}");
    assert_eq!(m.getattr(f).unwrap().size, 0);
    writeln!(child.stdin.take().unwrap()).unwrap();
    assert!(child.wait().unwrap().success());
    device::fsck_clean(&m);
}

#[test]
fn a_truncate_is_not_starved_by_a_process_writing_the_file_all_the_time() {
    let (_dir, m, f, mut child, mut lines) = file_and_child("hammer", "hammer:0:4");
    assert_eq!(lines.next().unwrap(), "writing");
    std::thread::sleep(Duration::from_millis(200));
    let took = timed_truncate(&m, f);
    assert!(took < Duration::from_secs(2), "the truncate took {took:?}");
    let wrote = lines.find(|l| l.starts_with("wrote ")).unwrap();
    assert!(child.wait().unwrap().success());
    eprintln!("truncated in {took:?} beside a writer that made {wrote}");
    // The writer's block landed in the file whole, before or after the
    // truncate.
    let mut buf = vec![0u8; 4096];
    assert_eq!(m.read_at(f, &mut buf, 0).unwrap(), 4096);
    assert!(buf.iter().all(|&b| b == b'h'));
    device::fsck_clean(&m);
}

/// A "maker" child with `env`, fed a line after each file it makes (on a
/// thread, returned), once it has stopped itself at the stop point in
/// `env`; panics, naming `where_`, unless it stops.
fn stopped_maker(
    img: &Path,
    env: &[(&str, &str)],
    where_: &str,
) -> (Child, std::thread::JoinHandle<()>) {
    let mut maker = spawn_with("maker:3:20", img, env);
    let mut input = maker.stdin.take().unwrap();
    let out = maker.stdout.take().unwrap();
    let feeder = std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
            if line.starts_with("made ") && writeln!(input).is_err() {
                break;
            }
        }
    });
    assert!(
        pfs_tests::failover::wait_stopped(maker.id()),
        "the maker did not stop {where_}"
    );
    (maker, feeder)
}

#[test]
fn an_append_whose_process_died_before_writing_it_is_written_by_the_next_commit() {
    let (_dir, img) = image("inflight");
    let here = mount(&img, Mode::ReadWrite, 1);
    // This process writes first: the host holds the lease on this machine.
    here.mkdir_path("/d").unwrap();
    // The maker stops itself at its third append, once the append is the
    // host's (the other processes build on it) and before its device
    // write; it is then killed there.
    let (mut maker, feeder) = stopped_maker(
        &img,
        &[
            ("PFS_TEST_STOP_AT", "append-in-flight:3"),
            (pfs_core::SIDE_BY_SIDE_ENV, "1"),
        ],
        "at its third append",
    );
    maker.kill().unwrap();
    maker.wait().unwrap();
    feeder.join().unwrap();
    // This process catches up with the dead one's append (from the
    // share's window), builds on it and commits: the commit waits for the
    // dead append, finds its process gone and writes it first.
    let t0 = Instant::now();
    here.mkdir_path("/after").unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "the commit waited {:?}",
        t0.elapsed()
    );
    let names = |m: &Mount| -> Vec<String> {
        let mut v: Vec<String> = m
            .readdir_path("/")
            .unwrap()
            .map(|e| String::from_utf8_lossy(&e.name).into_owned())
            .collect();
        v.sort();
        v
    };
    let seen_here = names(&here);
    assert!(seen_here.contains(&"after".to_owned()));
    // What the device holds is what this process built on.
    let fresh = mount(&img, Mode::ReadOnly, 2);
    assert_eq!(names(&fresh), seen_here);
    device::fsck_clean(&fresh);
    // And the host writes on.
    here.mkdir_path("/later").unwrap();
    drop(here);
    let fresh = mount(&img, Mode::ReadOnly, 2);
    assert!(fresh.resolve("/later").is_ok());
    device::fsck_clean(&fresh);
}

#[test]
fn a_process_killed_holding_the_committer_lock_holds_up_nobody() {
    let (_dir, img) = image("committer");
    let here = Arc::new(mount(&img, Mode::ReadWrite, 1));
    here.mkdir_path("/d").unwrap();
    // The maker stops itself in its first commit (of the create of
    // `/made0`), holding the host's committer lock, just before its
    // leader write.
    let (mut maker, feeder) = stopped_maker(
        &img,
        &[("PFS_TEST_STOP_AT", "before-leader:1")],
        "in its first commit",
    );
    // A commit of this process waits for the lock meanwhile.
    let (tx, rx) = std::sync::mpsc::channel();
    let h = Arc::clone(&here);
    let waiter = std::thread::spawn(move || {
        let r = h.mkdir_path("/after").map(|_| ());
        tx.send(Instant::now()).unwrap();
        r
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        rx.try_recv().is_err(),
        "a commit went ahead while another process held the committer lock"
    );
    // The kernel lets the dead process's lock go, waking no one: the
    // waiter finds it free on its own.
    let killed = Instant::now();
    maker.kill().unwrap();
    maker.wait().unwrap();
    feeder.join().unwrap();
    let done = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the commit still waits 10 s after the lock holder was killed");
    waiter.join().unwrap().unwrap();
    eprintln!("the commit went on {:?} after the kill", done - killed);
    // Everything the host appended is on the device: the maker's file
    // too, whose commit the killed process never finished (this
    // process's commit covered it).
    let fresh = mount(&img, Mode::ReadOnly, 2);
    for p in ["/d", "/made0", "/after"] {
        assert!(fresh.resolve(p).is_ok(), "{p} is not on the device");
    }
    device::fsck_clean(&fresh);
    drop(fresh);
    drop(here);
}

#[test]
fn threads_of_several_processes_see_the_files_they_just_created() {
    // Many threads of a host append at once: a thread catching up with
    // the others (or loading the state again) must never leave its
    // process without a transaction one of its threads appended.
    let (_dir, img) = image("creators");
    let here = mount(&img, Mode::ReadWrite, 1);
    here.mkdir_path("/d").unwrap();
    let children: Vec<Child> = (0..CREATORS)
        .map(|k| {
            spawn_with(
                &format!("creator:{k}:3"),
                &img,
                &[(pfs_core::SIDE_BY_SIDE_ENV, "1")],
            )
        })
        .collect();
    let mut created = 0u64;
    for mut c in children {
        let out = c.stdout.take().unwrap();
        let mut done = false;
        for line in BufReader::new(out).lines() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("created ") {
                created += n.parse::<u64>().unwrap();
            }
            done |= line == "done";
        }
        let status = c.wait().unwrap();
        assert!(status.success() && done, "a creator failed: {status}");
    }
    assert!(created > 0);
    eprintln!("{created} files created and looked at");
    drop(here);
    let fresh = mount(&img, Mode::ReadOnly, 2);
    for k in 0..CREATORS {
        for t in 0..CREATOR_THREADS {
            assert!(fresh.resolve(format!("/t{k}-{t}")).is_ok());
        }
    }
    device::fsck_clean(&fresh);
}

#[test]
fn processes_killed_one_after_another_lose_nothing_acknowledged() {
    // Workers are killed wherever they are, one every few hundred
    // milliseconds, and new ones take their places: in the middle of an
    // append (written after the transaction lock is let go), holding the
    // transaction or committer lock, between a leader write and settling.
    // Whatever any of them acknowledged is there at the end, and the
    // device checks clean.
    // Room for everything the workers make (one chunk holds 2,048
    // directory entries).
    let dir = Scratch::new("shared-kills");
    let img = dir.formatted("img", 4);
    let start = |k: u64| {
        let mut c = spawn_with(
            &format!("worker:{k}:3"),
            &img,
            &[(pfs_core::SIDE_BY_SIDE_ENV, "1")],
        );
        let out = c.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut acked = Acked::default();
            let mut done = false;
            for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
                done |= acked.take(&line);
            }
            (acked, done)
        });
        (c, reader)
    };
    let mut running: Vec<_> = (0..3).map(start).collect();
    let mut acked = Acked::default();
    let mut killed = 0;
    // Worker k writes page slots of its own, so at most 8 of them.
    for k in 3..8u64 {
        std::thread::sleep(Duration::from_millis(250 + k * 37 % 200));
        let (mut victim, reader) = running.remove((k as usize * 5) % running.len());
        if victim.try_wait().unwrap().is_none() {
            victim.kill().unwrap();
            killed += 1;
        }
        victim.wait().unwrap();
        let (got, _) = reader.join().unwrap();
        acked.files.extend(got.files);
        acked.gone.extend(got.gone);
        acked.pages.extend(got.pages);
        running.push(start(k));
    }
    for (mut c, reader) in running {
        let status = c.wait().unwrap();
        let (got, done) = reader.join().unwrap();
        assert!(
            status.success() && done,
            "a worker that was not killed failed: {status}"
        );
        acked.files.extend(got.files);
        acked.gone.extend(got.gone);
        acked.pages.extend(got.pages);
    }
    assert!(killed >= 3, "only {killed} workers were killed at work");
    assert!(
        acked.files.len() > 20,
        "too little work: {}",
        acked.files.len()
    );
    verify(&img, &acked);
}
