//! Two hosts' writers and two readers hammer one device for a minute, all
//! as real `pfs` processes. Every operation a writer acknowledged is there
//! at the end, and no reader ever fails or sees a file half replaced.

#![allow(clippy::unwrap_used)]

use pfs_tests::cli::Pfs;
use pfs_tests::device::Scratch;
use std::collections::BTreeMap;
use std::fs;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RUN_FOR: Duration = Duration::from_secs(60);

/// What a host's directory holds, as far as acknowledged operations say:
/// name → file content (`None` for a directory).
type Model = BTreeMap<String, Option<Vec<u8>>>;

/// How an acknowledged operation changes the model.
type Change = Box<dyn Fn(&mut Model)>;

/// Content of the shared file `/rot` at version `v`: one line repeated, so
/// a reader can tell a whole version from a mixture.
fn rot_content(v: u64) -> Vec<u8> {
    format!("rot version {v:08}\n")
        .repeat(3000 + (v as usize % 7) * 1000)
        .into_bytes()
}

/// One host's writer: random operations inside `/h<host>`, plus (host 1)
/// replacing `/rot` by write-then-rename.
fn writer(pfs: Pfs, host: u32, stop: Arc<AtomicBool>, rot: Arc<AtomicU64>) -> (Model, u64, u64) {
    let h = host.to_string();
    let base = format!("/nvme1n1/h{host}");
    let mut model = Model::new();
    let (mut acked, mut refused) = (0u64, 0u64);
    let mut seq = 0u64;
    let scratch = pfs.dir().join(format!("input-{host}"));
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let files: Vec<String> = model
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        let pick = seq % 6;
        let (args, change): (Vec<String>, Change) = match pick {
            0 | 1 => {
                let name = format!("f{seq}");
                let data = format!("host {host} file {seq}\n")
                    .repeat(1 + (seq as usize % 50))
                    .into_bytes();
                fs::write(&scratch, &data).unwrap();
                let n = name.clone();
                (
                    vec![
                        "-H".into(),
                        h.clone(),
                        "write".into(),
                        format!("{base}/{name}"),
                    ],
                    Box::new(move |m: &mut Model| {
                        m.insert(n.clone(), Some(data.clone()));
                    }),
                )
            }
            2 => {
                let name = format!("d{seq}");
                let n = name.clone();
                (
                    vec![
                        "-H".into(),
                        h.clone(),
                        "mkdir".into(),
                        format!("{base}/{name}"),
                    ],
                    Box::new(move |m: &mut Model| {
                        m.insert(n.clone(), None);
                    }),
                )
            }
            3 if !files.is_empty() => {
                let victim = files[seq as usize % files.len()].clone();
                let v = victim.clone();
                (
                    vec![
                        "-H".into(),
                        h.clone(),
                        "rm".into(),
                        format!("{base}/{victim}"),
                    ],
                    Box::new(move |m: &mut Model| {
                        m.remove(&v);
                    }),
                )
            }
            4 if !files.is_empty() => {
                let from = files[seq as usize % files.len()].clone();
                let to = format!("r{seq}");
                let (f, t) = (from.clone(), to.clone());
                (
                    vec![
                        "-H".into(),
                        h.clone(),
                        "rename".into(),
                        format!("{base}/{from}"),
                        format!("{base}/{to}"),
                    ],
                    Box::new(move |m: &mut Model| {
                        let v = m.remove(&f).unwrap();
                        m.insert(t.clone(), v);
                    }),
                )
            }
            _ if host == 1 => {
                // Replace /rot whole: write a new version under a temporary
                // name, then rename it over the old one.
                let v = rot.load(Ordering::Relaxed) + 1;
                fs::write(&scratch, rot_content(v)).unwrap();
                let o = pfs.run_with_file(&["-H", &h, "write", "/nvme1n1/rot.tmp"], &scratch);
                if o.status.success() {
                    let o = pfs.run(&["-H", &h, "rename", "/nvme1n1/rot.tmp", "/nvme1n1/rot"]);
                    if o.status.success() {
                        rot.store(v, Ordering::Relaxed);
                    }
                }
                continue;
            }
            _ => continue,
        };
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = if pick <= 1 {
            pfs.run_with_file(&argv, &scratch)
        } else {
            pfs.run(&argv)
        };
        match o.status.code() {
            Some(0) => {
                change(&mut model);
                acked += 1;
            }
            Some(16) | Some(5) => refused += 1,
            other => panic!(
                "host {host}: pfs {argv:?} exited {other:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            ),
        }
    }
    (model, acked, refused)
}

/// A reader: lists, walks and reads while the writers work; every command
/// must succeed and `/rot` must always be one whole version.
fn reader(pfs: Pfs, stop: Arc<AtomicBool>) -> u64 {
    let mut runs = 0u64;
    let cmds: [&[&str]; 6] = [
        &["ls", "/nvme1n1/h1"],
        &["ls", "/nvme1n1/h2"],
        &["tree", "/nvme1n1/"],
        &["du", "-a", "/nvme1n1/"],
        &["read", "/nvme1n1/rot"],
        &["stat", "/nvme1n1/rot"],
    ];
    while !stop.load(Ordering::Relaxed) {
        for args in cmds {
            let o = pfs.run(args);
            assert!(
                o.status.success(),
                "reader: pfs {args:?} exited {:?}: {}",
                o.status.code(),
                String::from_utf8_lossy(&o.stderr)
            );
            if args[0] == "read" {
                let text = String::from_utf8_lossy(&o.stdout);
                let first = text.lines().next().unwrap_or("");
                if !first.starts_with("rot version ") {
                    // What the file looks like now tells a reader's slip
                    // from a lost write.
                    let again = pfs.run(&["read", "/nvme1n1/rot"]);
                    let stat = pfs.run(&["stat", "/nvme1n1/rot"]);
                    panic!(
                        "read /rot: {first:?} (stderr {:?}); read again: {:?}; stat: {}",
                        String::from_utf8_lossy(&o.stderr),
                        String::from_utf8_lossy(&again.stdout).lines().next(),
                        String::from_utf8_lossy(&stat.stdout)
                    );
                }
                assert!(
                    text.lines().all(|l| l == first),
                    "read /rot: a mixture of versions"
                );
                let v: u64 = first["rot version ".len()..].parse().unwrap();
                assert_eq!(o.stdout, rot_content(v), "read /rot: version {v} not whole");
            }
            runs += 1;
        }
    }
    runs
}

#[test]
fn two_hosts_and_readers_for_a_minute_lose_nothing() {
    let dir = Scratch::new("hammer");
    let pfs = Pfs::new(&dir);
    pfs.mkfs_new("nvme1n1", 1, &["-f"]);
    pfs.ok(&["mkdir", "/nvme1n1/h1"]);
    pfs.ok(&["mkdir", "/nvme1n1/h2"]);
    let first = dir.join("rot-0");
    fs::write(&first, rot_content(0)).unwrap();
    assert!(pfs
        .run_with_file(&["write", "/nvme1n1/rot"], &first)
        .status
        .success());

    let stop = Arc::new(AtomicBool::new(false));
    let rot = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = [1u32, 2]
        .into_iter()
        .map(|host| {
            let (d, s, r) = (pfs.clone(), stop.clone(), rot.clone());
            std::thread::spawn(move || writer(d, host, s, r))
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (d, s) = (pfs.clone(), stop.clone());
            std::thread::spawn(move || reader(d, s))
        })
        .collect();
    let t0 = Instant::now();
    while t0.elapsed() < RUN_FOR && !writers.iter().any(|w| w.is_finished()) {
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    let mut reads = 0;
    for r in readers {
        reads += r.join().unwrap();
    }
    for (host, w) in [1u32, 2].into_iter().zip(writers) {
        let (model, acked, refused) = w.join().unwrap();
        eprintln!("host {host}: {acked} acknowledged, {refused} refused");
        assert!(acked > 20, "host {host} got almost nothing done");
        let base = format!("/nvme1n1/h{host}/");
        let have = pfs.names(&base);
        let want: Vec<String> = model.keys().cloned().collect();
        let mut sorted = have.clone();
        sorted.sort();
        assert_eq!(
            sorted, want,
            "host {host}: directory differs from its acknowledged operations"
        );
        for (name, content) in &model {
            if let Some(data) = content {
                let o = pfs.run(&["read", &format!("{base}{name}")]);
                assert_eq!(&o.stdout, data, "host {host}: {name} has wrong bytes");
            }
        }
    }
    eprintln!("readers: {reads} commands, all successful");
    pfs.fsck_clean("nvme1n1");
}
