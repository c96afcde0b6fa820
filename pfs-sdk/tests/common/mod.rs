//! Shared by the SDK's test binaries: installs the library into a prefix
//! once per binary, compiles the C programs of `tests/c` against the
//! installed header (once with the shared library, once with the static
//! archive), and makes PFS devices on sparse files.

#![allow(dead_code, clippy::unwrap_used)]

use pfs_core::{Device, FileDevice};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

/// The crate's directory.
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where this test binary keeps its files.
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
        let out = Command::new("bash")
            .arg(crate_dir().join("install.sh"))
            .arg(&p)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "install.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
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
    let out = cc.output().unwrap();
    assert!(
        out.status.success(),
        "cc {name} ({link:?}) failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    built.insert((name.to_owned(), link), exe.clone());
    exe
}

/// A PFS device on a sparse file in a device directory of its own.
pub struct TestDev {
    /// The device directory (`PFS_DEVICE_DIR`).
    pub dir: PathBuf,
    /// The PBD name.
    pub pbd: String,
}

impl TestDev {
    /// Formats a new device of `chunks` 10 GiB chunks with 30 hosts.
    pub fn new(chunks: u64) -> TestDev {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = scratch().join(format!("dev{}", N.fetch_add(1, Ordering::Relaxed)));
        std::fs::create_dir_all(&dir).unwrap();
        let pbd = "1-1".to_owned();
        pfs_tests::device::format(&dir.join(&pbd), chunks);
        TestDev { dir, pbd }
    }

    /// Runs `program` with this device's directory in its environment.
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        // cargo points LD_LIBRARY_PATH at its own build of the library.
        c.env("PFS_DEVICE_DIR", &self.dir)
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

    /// Opens the device (read-only) for checks.
    pub fn device(&self) -> FileDevice {
        FileDevice::open(&self.pbd, &self.dir.join(&self.pbd), false).unwrap()
    }

    /// Checks the filesystem; panics with the problems if it is not clean.
    pub fn fsck(&self) -> pfs_core::FsckReport {
        let dev = self.device();
        let r = pfs_core::inspect::fsck_device(&dev as &dyn Device).unwrap();
        assert!(r.is_clean(), "fsck found problems: {:#?}", r.problems);
        r
    }
}

impl Drop for TestDev {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Asserts that a program exited 0, showing its output otherwise.
pub fn assert_ok(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `pfs` tool (a release build, made once per test binary with the
/// same cargo and target directory as the library), for what other hosts
/// and the operator do next to the C programs.
pub fn pfs_tool() -> &'static Path {
    static PFS: OnceLock<PathBuf> = OnceLock::new();
    PFS.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let root = crate_dir().join("..");
        let out = Command::new(cargo)
            .args([
                "build",
                "--release",
                "--locked",
                "-p",
                "pfs-tool",
                "--bin",
                "pfs",
            ])
            .arg("--manifest-path")
            .arg(root.join("Cargo.toml"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "building pfs failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // This binary is <target>/debug/deps/<name>; the tool is
        // <target>/release/pfs.
        let exe = std::env::current_exe().unwrap();
        let target = exe.ancestors().nth(3).unwrap().to_path_buf();
        let pfs = target.join("release").join("pfs");
        assert!(pfs.is_file(), "{} was not built", pfs.display());
        pfs
    })
}

impl TestDev {
    /// `pfs <args>` on this device's directory (the PBD is named in the
    /// arguments), with `PFS_LEASE_MS`.
    pub fn pfs(&self, lease_ms: u32, args: &[&str]) -> Command {
        let mut c = Command::new(pfs_tool());
        c.arg("--device-dir")
            .arg(&self.dir)
            .args(args)
            .env("PFS_LEASE_MS", lease_ms.to_string())
            .env_remove("PFS_TEST_STOP_AT")
            .stdin(std::process::Stdio::null());
        c
    }

    /// `/<pbd>/<rel>`.
    pub fn path(&self, rel: &str) -> String {
        format!("/{}/{rel}", self.pbd)
    }
}
