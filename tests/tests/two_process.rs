//! Two processes on one sparse image: this test process follows read-only
//! while a child process (this same test binary, re-run as the writer)
//! creates directories and files in a loop. The reader sees every committed
//! change, in order, and never a torn one.

#![allow(clippy::unwrap_used)]

use pfs_core::FileType;
use pfs_core::{Device, FileDevice};
use pfs_core::{Mode, Mount, MountOptions};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROUNDS: u64 = 150;
const ENV: &str = "PFS_TWO_PROCESS_WRITER_IMAGE";

/// The writer's side; does nothing unless started by the reader test.
#[test]
fn writer_child() {
    let Some(path) = std::env::var_os(ENV) else {
        return;
    };
    let dev: Arc<dyn Device> = Arc::new(FileDevice::open("img", Path::new(&path), true).unwrap());
    let opts = MountOptions {
        hostid: 1,
        ..MountOptions::default()
    };
    let m = Mount::open_with(dev, Mode::ReadWrite, &opts).unwrap();
    for i in 0..ROUNDS {
        let d = format!("/d{i}");
        m.mkdir_path(&d).unwrap();
        let f = format!("{d}/f");
        let ino = m.create_path(&f, FileType::File).unwrap();
        m.write_at(ino, &[i as u8; 100], 0).unwrap();
        if i % 50 == 49 {
            m.checkpoint().unwrap();
        }
    }
}

/// Checks one observed state; returns how many rounds are visible.
fn check_state(m: &Mount) -> u64 {
    let root = m.readdir(0).unwrap().collect::<Vec<_>>();
    let names: Vec<String> = root
        .iter()
        .map(|e| String::from_utf8_lossy(&e.name).into_owned())
        .collect();
    assert_eq!(&names[..2], [".pfs-paxos", ".pfs-journal"]);
    let k = names.len() as u64 - 2;
    for (j, e) in root[2..].iter().enumerate() {
        assert_eq!(
            names[j + 2],
            format!("d{j}"),
            "directories appear in commit order"
        );
        let inner = m.readdir(e.ino).unwrap().collect::<Vec<_>>();
        let complete = (j as u64) + 1 < k;
        if inner.is_empty() {
            assert!(!complete, "d{j} lost its file");
            continue;
        }
        assert_eq!(inner.len(), 1);
        assert_eq!(inner[0].name, b"f");
        let st = m.getattr(inner[0].ino).unwrap();
        if st.size == 0 {
            assert!(!complete, "d{j}/f lost its data");
            continue;
        }
        assert_eq!(st.size, 100);
        let mut buf = [0u8; 100];
        assert_eq!(m.read_at(inner[0].ino, &mut buf, 0).unwrap(), 100);
        assert!(buf.iter().all(|&b| b == j as u8), "d{j}/f has torn data");
    }
    k
}

#[test]
fn reader_follows_writer_process() {
    let dir = pfs_tests::device::Scratch::new("two-process");
    let img = dir.formatted("img", 1);
    let reader_dev: Arc<dyn Device> = Arc::new(FileDevice::open("img", &img, false).unwrap());
    let reader = Mount::open_with(
        reader_dev,
        Mode::ReadOnly,
        &MountOptions {
            hostid: 2,
            ..MountOptions::default()
        },
    )
    .unwrap();

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "writer_child", "--nocapture"])
        .env(ENV, &img)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = 0u64;
    let mut states = 0u64;
    loop {
        let k = check_state(&reader);
        assert!(k >= last, "the reader went back from {last} to {k} rounds");
        if k != last {
            states += 1;
        }
        last = k;
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "writer failed: {status}");
            // One more look after the writer is done: everything is there.
            assert_eq!(check_state(&reader), ROUNDS);
            let last_dir = format!("/d{}/f", ROUNDS - 1);
            let ino = reader.resolve(&last_dir).unwrap();
            assert_eq!(reader.getattr(ino).unwrap().size, 100);
            break;
        }
        assert!(Instant::now() < deadline, "writer did not finish");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        states > 5,
        "the reader saw only {states} intermediate states"
    );
}
