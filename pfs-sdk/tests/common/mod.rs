//! Shared by the SDK's test binaries: installs the library into a prefix
//! once per binary, compiles the C programs of `tests/c` against the
//! installed header (once with the shared library, once with the static
//! archive), and runs them on PFS devices made by `pfs_tests`.

#![allow(dead_code, clippy::unwrap_used)]

pub mod records;

use pfs_core::{Device, FileDevice};
use pfs_tests::cli::Disk;
use std::collections::HashMap;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

/// The crate's directory.
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether the C programs can be built here (a C compiler); when not, the
/// test is skipped with a note.
pub fn can_build() -> bool {
    pfs_tests::require("cc")
}

/// Where this test binary keeps what it builds: the installed library
/// and the C programs.
pub fn scratch() -> PathBuf {
    let d =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("pfs-sdk-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The install prefix, after running `install.sh` into it (once).
pub fn prefix() -> &'static Path {
    static PREFIX: OnceLock<PathBuf> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let p = scratch().join("prefix");
        pfs_tests::cli::run_ok(
            Command::new("bash")
                .arg(crate_dir().join("install.sh"))
                .arg(&p),
        );
        for f in [
            "include/pfsd_sdk.h",
            "lib/libpfsd.so",
            "lib/libpfsd.a",
            "lib/pkgconfig/pfsd.pc",
        ] {
            assert!(p.join(f).is_file(), "install.sh did not install {f}");
        }
        p
    })
}

/// How a test program is linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Link {
    /// `-lpfsd` with an rpath to the installed `libpfsd.so`.
    Shared,
    /// The installed `libpfsd.a` with `-lpthread -ldl -lm` only.
    Static,
}

/// Compiles `tests/c/<name>.c` (once per link kind); returns the program.
pub fn program(name: &str, link: Link) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<(String, Link), PathBuf>>> = OnceLock::new();
    let prefix = prefix();
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap();
    if let Some(p) = built.get(&(name.to_owned(), link)) {
        return p.clone();
    }
    let exe = scratch().join(format!("{name}-{link:?}"));
    let src = crate_dir().join("tests/c").join(format!("{name}.c"));
    let lib = prefix.join("lib");
    let mut cc = Command::new("cc");
    cc.args(["-std=gnu11", "-O1", "-g", "-Wall", "-Werror"])
        .arg(format!("-I{}", prefix.join("include").display()))
        .arg(format!("-I{}", crate_dir().join("tests/c").display()))
        .arg(&src)
        .arg("-o")
        .arg(&exe);
    match link {
        Link::Shared => {
            cc.arg(format!("-L{}", lib.display()))
                .arg(format!("-Wl,-rpath,{}", lib.display()))
                .arg("-Wl,--disable-new-dtags")
                .args(["-lpfsd", "-lpthread"]);
        }
        Link::Static => {
            cc.arg(lib.join("libpfsd.a"))
                .args(["-lpthread", "-ldl", "-lm"]);
        }
    }
    assert_ok(&format!("cc {name} ({link:?})"), &cc.output().unwrap());
    built.insert((name.to_owned(), link), exe.clone());
    exe
}

/// A PFS device on a sparse file in a device directory of its own
/// (removed when dropped).
pub struct TestDev(Disk);

impl Deref for TestDev {
    type Target = Disk;

    fn deref(&self) -> &Disk {
        &self.0
    }
}

impl AsRef<Disk> for TestDev {
    fn as_ref(&self) -> &Disk {
        &self.0
    }
}

impl TestDev {
    /// Formats a new device of one chunk with 30 hosts and the smallest
    /// journal. Its `pfs` is a release build of the tool (built on first
    /// use), for what other hosts and the operator do next to the C
    /// programs.
    pub fn new() -> TestDev {
        let mut d = Disk::formatted("sdk", "1-1");
        d.pfs = d.pfs.clone().release();
        TestDev(d)
    }

    /// Runs `program` with this device's directory in its environment.
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        // cargo points LD_LIBRARY_PATH at its own build of the library.
        c.env("PFS_DEVICE_DIR", self.pfs.dir())
            .env("PFSD_SDK_DEBUG", "1")
            .env_remove("LD_LIBRARY_PATH");
        c
    }

    /// Runs `program <pbd> args...` to its end.
    pub fn run(&self, program: &Path, args: &[&str]) -> Output {
        self.command(program)
            .arg(&self.pbd)
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs the test program `name` (linked as `link`) on the device;
    /// panics unless it exits 0 printing `ok` and the filesystem is clean
    /// after it.
    pub fn passes(&self, name: &str, link: Link) {
        let out = self.run(&program(name, link), &[]);
        assert_ok(name, &out);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n", "{name}");
        self.fsck();
    }

    /// Opens the device (read-only) for checks.
    pub fn device(&self) -> FileDevice {
        FileDevice::open(&self.pbd, &self.0.device(), false).unwrap()
    }

    /// Checks the filesystem; panics with the problems if it is not clean.
    pub fn fsck(&self) -> pfs_core::FsckReport {
        let dev = self.device();
        let r = pfs_core::inspect::fsck_device(&dev as &dyn Device).unwrap();
        assert!(r.is_clean(), "fsck found problems: {:#?}", r.problems);
        r
    }
}

/// Asserts that a program exited 0, showing its output otherwise.
pub use pfs_tests::cli::assert_success as assert_ok;
