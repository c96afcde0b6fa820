//! Scratch directories that remove themselves, sparse device files of N
//! chunks (formatted or not), devices in memory, and the mount options
//! and listings the library-level tests share.

use pfs_core::{Device, MemDevice, MkfsOptions, Mount, MountOptions};
use pfs_format::layout::{CHUNK_SIZE, MIN_LOG_SIZE};
use std::fs::{self, File};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A directory under the system's temporary directory, removed with
/// everything in it when dropped, also when the test fails (a failed test
/// must not leave gigabytes of sparse devices behind). With
/// `PFS_KEEP_SCRATCH` set, a failed test keeps it and says where.
pub struct Scratch {
    dir: Option<tempfile::TempDir>,
}

impl Scratch {
    /// A new empty directory named `pfs-<name>-<random>`.
    pub fn new(name: &str) -> Scratch {
        Scratch::in_dir(&std::env::temp_dir(), name)
    }

    /// [`Scratch::new`] for a bench: under `$PFS_BENCH_DIR` when it is set
    /// (the disk to measure), else in the system's temporary directory.
    pub fn for_bench(name: &str) -> Scratch {
        let base = std::env::var_os("PFS_BENCH_DIR").map(PathBuf::from);
        Scratch::in_dir(&base.unwrap_or_else(std::env::temp_dir), name)
    }

    /// A new empty directory `pfs-<name>-<random>` in `base`.
    fn in_dir(base: &Path, name: &str) -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix(&format!("pfs-{name}-"))
            .tempdir_in(base)
            .unwrap_or_else(|e| panic!("cannot make a scratch directory for {name}: {e}"));
        Scratch { dir: Some(dir) }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or(Path::new("/nonexistent"), |d| d.path())
    }

    /// `rel` below the directory, made (with its parents) if missing.
    pub fn subdir(&self, rel: &str) -> PathBuf {
        let d = self.path().join(rel);
        fs::create_dir_all(&d).unwrap_or_else(|e| panic!("cannot make {}: {e}", d.display()));
        d
    }

    /// A sparse file `name` of `size` bytes in the directory.
    pub fn sparse(&self, name: &str, size: u64) -> PathBuf {
        let p = self.path().join(name);
        sparse(&p, size);
        p
    }

    /// A sparse device `name` of `chunks` 10 GiB chunks, all zeros.
    pub fn device(&self, name: &str, chunks: u64) -> PathBuf {
        self.sparse(name, chunks * CHUNK_SIZE)
    }

    /// A sparse device `name` of `chunks` chunks holding a new filesystem
    /// with the smallest journal (see [`format()`]).
    pub fn formatted(&self, name: &str, chunks: u64) -> PathBuf {
        let p = self.path().join(name);
        format(&p, chunks);
        p
    }
}

impl Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        self.path()
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        self.path()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        if std::thread::panicking() && std::env::var_os("PFS_KEEP_SCRATCH").is_some() {
            eprintln!("PFS_KEEP_SCRATCH: kept {}", dir.keep().display());
        }
    }
}

/// Makes `path` a sparse file of `size` bytes: created if missing, grown
/// or cut to `size` otherwise (the bytes below both sizes stay).
pub fn sparse(path: &Path, size: u64) {
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(size))
        .unwrap_or_else(|e| panic!("cannot make sparse file {}: {e}", path.display()));
}

/// Copies `from` to `to` keeping holes holes (`cp --sparse=always`).
pub fn sparse_copy(from: &Path, to: &Path) {
    let st = std::process::Command::new("cp")
        .arg("--sparse=always")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp");
    assert!(st.success(), "cp {}", from.display());
}

/// Makes `path` a sparse file of `chunks` 10 GiB chunks holding a new
/// filesystem with the smallest journal: the device the multi-process
/// tests share.
pub fn format(path: &Path, chunks: u64) {
    File::create(path)
        .and_then(|f| f.set_len(chunks * CHUNK_SIZE))
        .unwrap_or_else(|e| panic!("cannot make {}: {e}", path.display()));
    let dev = pfs_core::FileDevice::open("img", path, true).expect("open the new image");
    mkfs(&dev, MIN_LOG_SIZE);
}

/// Formats `dev` with the defaults and a journal of `log_size` bytes.
pub fn mkfs(dev: &dyn Device, log_size: u64) {
    pfs_core::mkfs(
        dev,
        &MkfsOptions {
            log_size,
            ..MkfsOptions::default()
        },
    )
    .expect("mkfs of a test device");
}

/// A one-chunk device in memory called `name`, formatted with a journal
/// of `log_size` bytes.
pub fn in_memory(name: &str, log_size: u64) -> Arc<MemDevice> {
    let dev = Arc::new(MemDevice::new(name, CHUNK_SIZE));
    mkfs(dev.as_ref(), log_size);
    dev
}

/// Mount options of host `hostid` with a lease of `lease_ms`.
pub fn host(hostid: u64, lease_ms: u32) -> MountOptions {
    MountOptions {
        hostid,
        lease_ms,
        ..MountOptions::default()
    }
}

/// Open options that create the file if need be and write.
pub fn create_write() -> pfs_core::OpenOptions {
    pfs_core::OpenOptions {
        create: true,
        write: true,
        ..pfs_core::OpenOptions::default()
    }
}

/// Checks the filesystem of a mount; panics with the problems unless it is
/// clean; returns the report.
pub fn fsck_clean(m: &Mount) -> pfs_core::FsckReport {
    let report = m.fsck().unwrap_or_else(|e| panic!("fsck: {e}"));
    assert!(report.is_clean(), "fsck: {:?}", report.problems);
    report
}

/// The names in directory `dir` of a mount, in the order it lists them.
pub fn names(m: &Mount, dir: &str) -> Vec<String> {
    let ino = m
        .resolve(dir)
        .unwrap_or_else(|e| panic!("resolve {dir}: {e}"));
    m.readdir(ino)
        .unwrap_or_else(|e| panic!("readdir {dir}: {e}"))
        .map(|e| String::from_utf8_lossy(&e.name).into_owned())
        .collect()
}

/// Devices for benches: direct-IO loop devices over sparse files where
/// `losetup` can make them (as root, as in real use: block devices,
/// O_DIRECT on both sides), the sparse files themselves otherwise; the
/// loop devices are detached when dropped.
pub struct BenchDevices {
    /// The device directory: a symlink to a loop device, or the sparse
    /// file, for each name.
    pub dir: PathBuf,
    /// What the devices are, for the report.
    pub kind: &'static str,
    loops: Vec<String>,
}

impl BenchDevices {
    /// One device of `size` bytes for each of `names`, in `<base>/devs`.
    pub fn new(base: &Path, names: &[&str], size: u64) -> BenchDevices {
        let dir = base.join("devs");
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut d = BenchDevices {
            dir,
            kind: "direct-IO loop devices",
            loops: Vec::new(),
        };
        for (i, name) in names.iter().enumerate() {
            let backing = base.join(format!("{name}.img"));
            sparse(&backing, size);
            let o = std::process::Command::new("losetup")
                .args(["--direct-io=on", "--show", "-f"])
                .arg(&backing)
                .output();
            let dev = match o {
                Ok(o) if o.status.success() => {
                    Some(String::from_utf8_lossy(&o.stdout).trim().to_owned())
                }
                _ => None,
            };
            match dev {
                Some(dev) if d.loops.len() == i => {
                    d.loops.push(dev.clone());
                    std::os::unix::fs::symlink(&dev, d.dir.join(name))
                        .unwrap_or_else(|e| panic!("link {dev}: {e}"));
                }
                other => {
                    if let Some(dev) = other {
                        // The ones before are files: so is this one.
                        let _ = std::process::Command::new("losetup")
                            .args(["-d", &dev])
                            .status();
                    }
                    d.kind = "sparse files (no loop devices here)";
                    fs::rename(&backing, d.dir.join(name))
                        .unwrap_or_else(|e| panic!("{}: {e}", backing.display()));
                }
            }
        }
        assert!(
            d.loops.is_empty() || d.loops.len() == names.len(),
            "could not set up every device the same way"
        );
        d
    }

    /// The device behind `name` (the loop device, or the file).
    pub fn real(&self, name: &str) -> PathBuf {
        fs::canonicalize(self.dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }
}

impl Drop for BenchDevices {
    fn drop(&mut self) {
        for l in &self.loops {
            let _ = std::process::Command::new("losetup")
                .args(["-d", l])
                .status();
        }
    }
}
