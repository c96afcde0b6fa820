//! Helpers shared by every test and bench of the workspace, so that each
//! set-up lives in one place:
//!
//! - [`cli`]: the `pfs` binary (found or built), a runner with the device
//!   directory and a clean environment, run/ok/fail helpers;
//! - [`device`]: scratch directories that remove themselves, sparse and
//!   formatted devices, devices in memory, loop devices for benches;
//! - [`fuse`]: `pfs mount` in the background or as a child, unmounted by
//!   a guard;
//! - [`pg`]: a real PostgreSQL server run as user `postgres`;
//! - [`ceph`]: a one-machine Ceph cluster for the RBD tests;
//! - [`netns`]: hosts in network namespaces (own `/var/run/pfs` and
//!   machine id) that can be cut off or delayed;
//! - [`failover`] and [`crafted`]: paused writers and damaged images;
//! - here: the reference's golden images (expanded by [`qcow2`], no
//!   `qemu-img` needed) and the outputs it printed beside them, and
//!   [`require`] and [`skipped`], which skip a test with a note where an
//!   optional tool is missing.

pub mod ceph;
pub mod cli;
pub mod crafted;
pub mod device;
pub mod failover;
pub mod fuse;
pub mod netns;
pub mod pg;
pub mod qcow2;

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The running test's name: libtest names each test's thread after it.
pub fn test_name() -> String {
    match std::thread::current().name() {
        Some(n) if n != "main" => n.to_owned(),
        _ => "test".to_owned(),
    }
}

/// Says that the running test is skipped and why, as `skipped: <test>:
/// <why>`, on the real stderr (past libtest's capture, so a passing run
/// shows it too). Returns false, for `if !skip_unless(...) { return; }`.
pub fn skipped(why: &str) -> bool {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "skipped: {}: {why}", test_name());
    false
}

/// Whether `ok` holds; when it does not, the test is [`skipped`] for `why`.
pub fn skip_unless(ok: bool, why: &str) -> bool {
    ok || skipped(why)
}

/// Whether `program` is on the `PATH`; when it is not, the test is
/// [`skipped`]: `if !pfs_tests::require("rsync") { return; }`.
pub fn require(program: &str) -> bool {
    skip_unless(on_path(program), &format!("{program} is not installed"))
}

/// Whether an executable `program` is on the `PATH`.
pub fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|d| {
        fs::metadata(d.join(program))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Whether the tests run as root; when not, the test is [`skipped`].
pub fn require_root() -> bool {
    skip_unless(is_root(), "needs root")
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The project root (the workspace holding this crate).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// The repository's copy of the reference's golden corpus (`tests/golden`),
/// or `$PFS_GOLDEN_DIR`.
pub fn golden_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("PFS_GOLDEN_DIR") {
        return PathBuf::from(d);
    }
    project_root().join("tests/golden")
}

/// Where expanded raw images are cached: `target/golden-raw` under the
/// project root, or `$PFS_GOLDEN_CACHE`.
fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("PFS_GOLDEN_CACHE") {
        return PathBuf::from(d);
    }
    project_root().join("target/golden-raw")
}

/// Expands `<golden>/<case>/<image>.qcow2` to a sparse raw file (cached) and
/// returns its path. Overlays find their backing file beside them. The
/// images are read by [`qcow2`], so no `qemu-img` is needed.
///
/// Panics with a clear message when the corpus is missing or an image
/// cannot be read: these tests must not pass vacuously.
pub fn expand(case: &str, image: &str) -> PathBuf {
    let src = golden_dir().join(case).join(format!("{image}.qcow2"));
    assert!(
        src.is_file(),
        "golden image {} is missing; the corpus must sit at tests/golden",
        src.display()
    );
    let out_dir = cache_dir().join(case);
    let out = out_dir.join(format!("{image}.raw"));
    let stamp = out_dir.join(format!("{image}.stamp"));
    let want_stamp = stamp_of(&src);
    if out.is_file() && fs::read_to_string(&stamp).ok().as_deref() == Some(want_stamp.as_str()) {
        return out;
    }
    fs::create_dir_all(&out_dir).expect("create golden cache dir");
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = out_dir.join(format!("{image}.raw.tmp-{}-{seq}", std::process::id()));
    if let Err(e) = qcow2::Qcow2::open(&src).and_then(|q| q.expand(&tmp)) {
        let _ = fs::remove_file(&tmp);
        panic!("cannot expand golden image {}: {e}", src.display());
    }
    fs::rename(&tmp, &out).expect("move expanded image into place");
    let stamp_tmp = out_dir.join(format!("{image}.stamp.tmp-{}-{seq}", std::process::id()));
    fs::write(&stamp_tmp, want_stamp).expect("write cache stamp");
    fs::rename(&stamp_tmp, &stamp).expect("move cache stamp into place");
    out
}

fn stamp_of(src: &Path) -> String {
    let meta = fs::metadata(src).ok();
    let len = meta.as_ref().map(|m| m.len()).unwrap_or(0);
    let mtime = meta
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{len}:{mtime}")
}

/// A read-only view of an expanded image.
pub struct RawImage {
    file: File,
    len: u64,
}

impl RawImage {
    /// Opens an expanded image.
    pub fn open(path: &Path) -> io::Result<RawImage> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(RawImage { file, len })
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the image is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads `len` bytes at `offset`.
    pub fn read(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, offset)
            .expect("read golden image");
        buf
    }
}

/// A recorded output of the reference tool: `<golden>/<case>/<rel>`.
pub fn output(case: &str, rel: &str) -> String {
    let p = golden_dir().join(case).join(rel);
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// Free/used/total counts of block tags, direntries and inodes, in that
/// order, from the table at the end of a `dumpfs` output.
pub fn dumpfs_counts(text: &str) -> [(u64, u64, u64); 3] {
    let mut out = [(0, 0, 0); 3];
    for (i, name) in ["blktag", "dentry", "inode"].iter().enumerate() {
        let line = text
            .lines()
            .find(|l| l.split('\t').next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} row in dumpfs output"));
        let v: Vec<u64> = line
            .split('\t')
            .skip(1)
            .map(|x| x.trim().parse().expect("number in dumpfs table"))
            .collect();
        assert_eq!(v.len(), 3, "dumpfs row {line:?}");
        out[i] = (v[0], v[1], v[2]);
    }
    out
}

/// A directory holding, for each `(image, pbd)`, a symlink named `pbd` to
/// the expanded image `<case>/<image>`: the tool's device directory.
pub fn device_dir(case: &str, devices: &[(&str, &str)]) -> PathBuf {
    let tag: Vec<String> = devices.iter().map(|(i, p)| format!("{i}={p}")).collect();
    let dir = cache_dir().join(format!("dev-{case}-{}", tag.join(",")));
    fs::create_dir_all(&dir).expect("create device dir");
    for (image, pbd) in devices {
        let raw = expand(case, image);
        let link = dir.join(pbd);
        if fs::read_link(&link).ok().as_deref() != Some(raw.as_path()) {
            // Made under a name of this thread's, then renamed into place:
            // tests running at once may set up the same directory.
            let tmp = dir.join(format!(
                ".{pbd}.{}.{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = fs::remove_file(&tmp);
            std::os::unix::fs::symlink(&raw, &tmp).expect("link device");
            fs::rename(&tmp, &link).expect("link device");
        }
    }
    dir
}

/// One recorded command of a golden case.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `NNN-label`.
    pub id: String,
    /// Exit code the reference returned.
    pub exit: i32,
    /// Arguments after `pfs`.
    pub args: Vec<String>,
    /// Input file fed on stdin, if any.
    pub stdin: Option<String>,
}

/// The commands of `<case>/<rel>` (a `commands.tsv`), `[shell]` steps and
/// notes left out.
pub fn commands(case: &str, rel: &str) -> Vec<Recorded> {
    output(case, rel)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let mut parts = l.splitn(3, '\t');
            let id = parts.next()?.to_owned();
            let exit = parts.next()?.parse().ok()?;
            let cmd = parts.next()?;
            let (cmd, stdin) = match cmd.split_once(" < ") {
                Some((c, f)) => (c.trim_end(), Some(f.trim().to_owned())),
                None => (cmd, None),
            };
            let mut words = cmd.split_whitespace();
            if words.next()? != "pfs" {
                return None;
            }
            Some(Recorded {
                id,
                exit,
                args: words.map(str::to_owned).collect(),
                stdin,
            })
        })
        .collect()
}

/// A digest of every byte of a (sparse) file, reading only the 1 MiB
/// windows that hold data: equal digests mean equal contents, however the
/// zeros are stored.
pub fn file_digest(path: &Path) -> u64 {
    use std::hash::{DefaultHasher, Hasher};
    const WIN: u64 = 1 << 20;
    let f = File::open(path).expect("open for digest");
    let len = f.metadata().expect("stat").len();
    let mut h = DefaultHasher::new();
    h.write_u64(len);
    let mut buf = vec![0u8; WIN as usize];
    let mut win = 0u64;
    while win * WIN < len {
        let from = (win * WIN) as i64;
        let data = match nix::unistd::lseek(
            std::os::fd::AsRawFd::as_raw_fd(&f),
            from,
            nix::unistd::Whence::SeekData,
        ) {
            Ok(d) => d as u64,
            Err(_) => break,
        };
        win = data / WIN;
        let at = win * WIN;
        let n = (len - at).min(WIN) as usize;
        f.read_exact_at(&mut buf[..n], at).expect("read");
        if buf[..n].iter().any(|&b| b != 0) {
            h.write_u64(at);
            h.write(&buf[..n]);
        }
        win += 1;
    }
    h.finish()
}

/// The indexes of the `win`-byte windows of `f` (`len` bytes long) that
/// hold data, as `SEEK_DATA` finds them.
pub fn data_windows(f: &File, len: u64, win: u64) -> Vec<u64> {
    let mut v = Vec::new();
    let mut w = 0u64;
    while w * win < len {
        let fd = std::os::fd::AsRawFd::as_raw_fd(f);
        match nix::unistd::lseek(fd, (w * win) as i64, nix::unistd::Whence::SeekData) {
            Ok(d) => {
                w = d as u64 / win;
                v.push(w);
                w += 1;
            }
            Err(_) => break,
        }
    }
    v
}

/// Calls `each(offset, a_byte, b_byte)` for every byte at which the sparse
/// files `a` and `b` differ, reading only the 1 MiB windows that hold data
/// in either. Panics if their sizes differ.
pub fn for_each_difference(a: &Path, b: &Path, mut each: impl FnMut(u64, u8, u8)) {
    const WIN: u64 = 1 << 20;
    let open = |p: &Path| File::open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    let (fa, fb) = (open(a), open(b));
    let len = fa.metadata().map(|m| m.len()).unwrap_or(0);
    assert_eq!(
        len,
        fb.metadata().map(|m| m.len()).unwrap_or(0),
        "image sizes"
    );
    let mut all = data_windows(&fa, len, WIN);
    all.extend(data_windows(&fb, len, WIN));
    all.sort_unstable();
    all.dedup();
    let (mut x, mut y) = (vec![0u8; WIN as usize], vec![0u8; WIN as usize]);
    for w in all {
        let at = w * WIN;
        let n = (len - at).min(WIN) as usize;
        fa.read_exact_at(&mut x[..n], at).expect("read image");
        fb.read_exact_at(&mut y[..n], at).expect("read image");
        if x[..n] == y[..n] {
            continue;
        }
        for (i, (p, q)) in x[..n].iter().zip(&y[..n]).enumerate() {
            if p != q {
                each(at + i as u64, *p, *q);
            }
        }
    }
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The corpus's deterministic input generator: the concatenation of
/// `sha256(seed || u64le(i))` for i = 0, 1, 2, ..., cut to `n` bytes.
pub fn gen_input(seed: &str, n: usize) -> Vec<u8> {
    use sha2::Digest;
    let mut out = Vec::with_capacity(n + 32);
    let mut i: u64 = 0;
    while out.len() < n {
        let mut h = sha2::Sha256::new();
        h.update(seed.as_bytes());
        h.update(i.to_le_bytes());
        out.extend_from_slice(&h.finalize());
        i += 1;
    }
    out.truncate(n);
    out
}

/// Writes the `populated` case's inputs into `dir`: the stored small files,
/// plus the large ones regenerated as the corpus README says.
pub fn populated_inputs(dir: &Path) {
    fs::create_dir_all(dir).expect("inputs dir");
    let src = golden_dir().join("populated/inputs");
    for e in fs::read_dir(&src).expect("read inputs").flatten() {
        fs::copy(e.path(), dir.join(e.file_name())).expect("copy input");
    }
    fs::write(
        dir.join("random-20MiB.bin"),
        gen_input("golden-20MiB", 20_971_520),
    )
    .expect("write input");
    fs::write(dir.join("local-cp.bin"), gen_input("local-cp", 300_000)).expect("write input");
    let mut lines = Vec::new();
    let mut i = 0u64;
    while lines.len() < 10_000_000 {
        lines.extend_from_slice(format!("trunc-down line {i:08}\n").as_bytes());
        i += 1;
    }
    lines.truncate(10_000_000);
    fs::write(dir.join("trunc-down.bin"), lines).expect("write input");
}

/// The number in environment variable `name` (a bench's knob), or
/// `default` when it is unset or not a number.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `n` reproducible bytes (xorshift64) from `seed`: test data that no two
/// seeds share and that compresses or dedupes nowhere.
pub fn seeded_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// Fails the test unless `got` is `want`, saying how they differ in a few
/// lines (a mismatch of megabytes printed whole by `assert_eq!` is cut off
/// by a CI log before it says anything): the lengths, and the runs of 4 KiB
/// pages that differ, with how many of those read as zeros.
#[track_caller]
pub fn assert_bytes(what: &str, got: &[u8], want: &[u8]) {
    if got == want {
        return;
    }
    const PAGE: usize = 4096;
    let common = got.len().min(want.len());
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let (mut pages, mut zeros) = (0usize, 0usize);
    for at in (0..common).step_by(PAGE) {
        let end = (at + PAGE).min(common);
        if got[at..end] == want[at..end] {
            continue;
        }
        pages += 1;
        zeros += usize::from(got[at..end].iter().all(|&b| b == 0));
        match runs.last_mut() {
            Some(r) if r.1 == at => r.1 = end,
            _ => runs.push((at, end)),
        }
    }
    let shown: Vec<String> = runs
        .iter()
        .take(8)
        .map(|(s, e)| format!("{s:#x}..{e:#x}"))
        .collect();
    panic!(
        "{what}: {} bytes read, {} expected; {pages} pages of 4 KiB differ in the common part \
         ({zeros} of them all zeros), in {} runs: {}{}",
        got.len(),
        want.len(),
        runs.len(),
        shown.join(", "),
        if runs.len() > shown.len() {
            ", ..."
        } else {
            ""
        }
    );
}
