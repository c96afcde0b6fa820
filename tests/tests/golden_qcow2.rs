//! The golden corpus's qcow2 images read by `pfs_tests::qcow2`, without
//! `qemu-img`: every image expands to the contents recorded below, and,
//! where `qemu-img` is installed, to the very bytes `qemu-img convert`
//! gives (which is how the table was checked when it was made).

#![allow(clippy::unwrap_used)]

use pfs_tests::{expand, file_digest, sha256_hex};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Each image of the corpus (`<case>/<image>`) and the SHA-256 of its
/// expanded size (u64 LE) followed by, for each 64 KiB cluster holding a
/// byte other than zero, its index (u64 LE) and its bytes.
const IMAGES: &[(&str, &str)] = &[
    (
        "chunk-backup/nvme1n1",
        "40cd34b4701aca55b4fc59510d67548d7e8c8df5be42b3a1fefce8af0cf8f652",
    ),
    (
        "chunk-backup/nvme2n1",
        "eaad9d2457360e3e8218348dba5ed405bc4c031018fcf60554ddfeaf4312af05",
    ),
    (
        "chunk-backup/nvme3n1",
        "891474155111f238c4191cfd074dd8dbe03e9f527b856177372e25286745d71b",
    ),
    (
        "cross-pbd/nvme1n1",
        "5b05fe9aa741f05bbc80756d66e210763632ab775581825dee21ea1c91034738",
    ),
    (
        "cross-pbd/nvme2n1",
        "246977cc894f381c20c20cdd249be0214ca9d86bce640d6cfad8d7b081558480",
    ),
    (
        "fresh-1chunk/nvme1n1",
        "2ec4261a4fcbfb6d5a856e75a3b14660d12aa9200e1c9f23c9c833a1861ac37c",
    ),
    (
        "fresh-3chunk-u10/nvme1n1",
        "462722e1dc3508b688e81b7f0fc3fbda7b544cfb989a78114421fe96188821ae",
    ),
    (
        "fscp/nvme1n1",
        "2ea276934856455d0ad1303f93abebe17871822efa487f954330b02c35fcea24",
    ),
    (
        "fscp/nvme2n1",
        "b6885e7885fafd2477b3e45e764975e993e8c6e82d56ad555738e1d81a4cbfaa",
    ),
    (
        "fscp/nvme3n1-after-fscp",
        "2c56ac821a7e816be96551eea4bcdc6a51d4aa2b0d2b0e54b329c77ef34fb086",
    ),
    (
        "fscp/nvme3n1",
        "eef5868138fce0743b6813e7ac1d0662ad9fe6239f5c24d359c6ce685431563f",
    ),
    (
        "fstrim/nvme1n1-before",
        "1e57a9bd635f0868e675037469b057bcefd17debb46f7a5d9e84da83ea1c956d",
    ),
    (
        "fstrim/nvme1n1",
        "9d79d86e326dae7a8b967a0f7b732d472bbc4b699a8ad1372052004840d29b4c",
    ),
    (
        "fstrim/nvme2n1",
        "69b16252d95f75d62aa801b4ddea54d3bf23f337652fb02ca7b8f405c0dc5194",
    ),
    (
        "fstrim/nvme3n1",
        "10e5b2e364fd5cd12e95cee1f7c327435135143836384eb7a6e46b50d977ab13",
    ),
    (
        "grown/nvme1n1",
        "7d7aae839ca38602139975e24b9ddd4f9d0d7470e6b26e9fc8b89d1c1772bf1a",
    ),
    (
        "populated/nvme1n1-before-cp",
        "3bbee15e9696123eef6541976ed04ac0cb42564b4f1ac8b40bf9587906f2f7fa",
    ),
    (
        "populated/nvme1n1-flushlog",
        "afb009a9d31f6390c9e7317a23ef189bed09128f58e687da608bc287d32025ce",
    ),
    (
        "populated/nvme1n1",
        "81e652fcba87b1bcbe3f26fe8a098a6cf1ac03a730c8d83a2f643d82edb7774f",
    ),
    (
        "tail/nvme1n1",
        "3842f0f3793a9e80e2a4749d0b25b1f7f5494d357ff7c086438e99a016b5d6cc",
    ),
];

/// The digest of [`IMAGES`] over an expanded (sparse) raw image.
fn contents_digest(path: &Path) -> String {
    use sha2::Digest;
    const CLUSTER: u64 = 64 << 10;
    let f = File::open(path).unwrap();
    let len = f.metadata().unwrap().len();
    let mut h = sha2::Sha256::new();
    h.update(len.to_le_bytes());
    let mut buf = vec![0u8; CLUSTER as usize];
    let mut at = 0u64;
    while at < len {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
        let Ok(data) = nix::unistd::lseek(fd, at as i64, nix::unistd::Whence::SeekData) else {
            break;
        };
        let index = data as u64 / CLUSTER;
        at = index * CLUSTER;
        buf.fill(0);
        let n = (len - at).min(CLUSTER) as usize;
        f.read_exact_at(&mut buf[..n], at).unwrap();
        if buf.iter().any(|&b| b != 0) {
            h.update(index.to_le_bytes());
            h.update(&buf);
        }
        at += CLUSTER;
    }
    sha256_hex(&h.finalize())
}

fn split(image: &str) -> (&str, &str) {
    image.split_once('/').unwrap()
}

#[test]
fn every_golden_image_expands_to_its_recorded_contents() {
    let bad: Vec<String> = std::thread::scope(|s| {
        let halves = IMAGES.chunks(IMAGES.len().div_ceil(2));
        let workers: Vec<_> = halves
            .map(|part| {
                s.spawn(move || {
                    let mut bad = Vec::new();
                    for (image, want) in part {
                        let (case, name) = split(image);
                        let got = contents_digest(&expand(case, name));
                        if got != *want {
                            bad.push(format!("{image}: {got}, recorded {want}"));
                        }
                    }
                    bad
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert!(
        bad.is_empty(),
        "images that expand otherwise:\n{}",
        bad.join("\n")
    );
}

#[test]
fn every_golden_image_expands_as_qemu_img_converts_it() {
    if !pfs_tests::require("qemu-img") {
        return;
    }
    let scratch = pfs_tests::device::Scratch::new("qcow2-vs-qemu-img");
    for (image, _) in IMAGES {
        let (case, name) = split(image);
        let theirs = scratch.join(format!("{case}-{name}.raw"));
        let src = pfs_tests::golden_dir()
            .join(case)
            .join(format!("{name}.qcow2"));
        pfs_tests::cli::run_ok(
            std::process::Command::new("qemu-img")
                .args(["convert", "-O", "raw"])
                .arg(&src)
                .arg(&theirs),
        );
        assert_eq!(
            file_digest(&expand(case, name)),
            file_digest(&theirs),
            "{image}"
        );
        std::fs::remove_file(&theirs).unwrap();
    }
}
