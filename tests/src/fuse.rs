//! `pfs mount` in tests and benches: whether FUSE mounts can run here,
//! mounts in the background or as a foreground child, and a guard that
//! unmounts (lazily if need be) when dropped, also when a test fails.

use crate::cli::Pfs;
use crate::failover::{signal, Signal};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether FUSE mounts can run here (root, `/dev/fuse`, `fusermount3`);
/// when not, the test is skipped with a note.
pub fn available() -> bool {
    crate::skip_unless(
        crate::is_root() && Path::new("/dev/fuse").exists(),
        "needs root and /dev/fuse",
    ) && crate::require("fusermount3")
}

/// Whether something is mounted at `mp`.
pub fn is_mounted(mp: &Path) -> bool {
    let want = mp.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("read /proc/self/mountinfo")
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

/// The pids of the `pfs ... mount` processes serving `mp`.
pub fn servers(mp: &Path) -> Vec<i32> {
    let want = mp.display().to_string();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| {
                    let args: Vec<&[u8]> = c.split(|&b| b == 0).collect();
                    args.contains(&&b"mount"[..]) && args.contains(&want.as_bytes())
                })
                .unwrap_or(false)
        })
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Waits until no `pfs ... mount` process serves `mp` any more.
pub fn wait_servers_gone(mp: &Path) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(20) {
        if servers(mp).is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the server of {} did not exit", mp.display());
}

/// `pfs [-H HOSTID] mount EXTRA... PBD MP` in the background (the
/// command returns once the mount is up); `extra` goes before the PBD.
pub fn mount(pfs: &Pfs, hostid: &str, extra: &[&str], pbd: &str, mp: &Path) -> Mounted {
    std::fs::create_dir_all(mp).expect("make the mount point");
    let mps = mp.display().to_string();
    let mut args = vec!["-H", hostid, "mount"];
    args.extend_from_slice(extra);
    args.extend([pbd, mps.as_str()]);
    pfs.ok(&args);
    assert!(is_mounted(mp), "{} is not mounted", mp.display());
    Mounted {
        mp: mp.to_owned(),
        child: None,
    }
}

/// `pfs -H HOSTID mount -f PBD MP` as a child process (so it can be
/// paused or killed), once the mount is up; fails the test if it is not up
/// within `limit`.
pub fn mount_fg(pfs: &Pfs, hostid: &str, pbd: &str, mp: &Path, limit: Duration) -> Mounted {
    std::fs::create_dir_all(mp).expect("make the mount point");
    let child = pfs
        .command(&["-H", hostid, "mount", "-f", pbd])
        .arg(mp)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pfs mount -f");
    let mut m = Mounted {
        mp: mp.to_owned(),
        child: Some(child),
    };
    let t = Instant::now();
    while !is_mounted(&m.mp) {
        if let Some(st) = m.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            panic!("pfs mount -f exited with {st}");
        }
        assert!(t.elapsed() < limit, "mount timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
    m
}

/// A mount; when dropped its foreground server (if any) is resumed, asked
/// to stop and killed if it does not, and the mount point is unmounted
/// lazily.
pub struct Mounted {
    /// The mount point.
    pub mp: PathBuf,
    /// The foreground server, for [`mount_fg`].
    pub child: Option<Child>,
}

impl Mounted {
    /// A guard for a mount made another way, with no child of ours.
    pub fn adopt(mp: &Path) -> Mounted {
        Mounted {
            mp: mp.to_owned(),
            child: None,
        }
    }

    /// `rel` below the mount point.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.mp.join(rel)
    }

    /// The foreground server's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("a foreground mount").id()
    }

    /// `pfs umount`, then waits for the server to finish (the foreground
    /// child, or the lease being released).
    pub fn umount(mut self) {
        let o = Command::new(crate::cli::bin())
            .arg("umount")
            .arg(&self.mp)
            .output()
            .expect("run pfs umount");
        assert!(
            o.status.success(),
            "pfs umount: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!is_mounted(&self.mp));
        if let Some(mut c) = self.child.take() {
            let st = c.wait().expect("wait for the mount server");
            assert!(st.success(), "mount server exited with {st}");
        }
        wait_servers_gone(&self.mp);
    }

    /// SIGTERM to the foreground server, SIGKILL if it has not ended
    /// within 10 s; then the mount point is cleared.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), Signal::SIGTERM);
            let t = Instant::now();
            while c.try_wait().ok().flatten().is_none() && t.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        for _ in 0..50 {
            if !is_mounted(&self.mp) {
                break;
            }
            let _ = Command::new("fusermount3")
                .args(["-u", "-z"])
                .arg(&self.mp)
                .output();
            if is_mounted(&self.mp) {
                let _ = Command::new("umount").arg("-l").arg(&self.mp).output();
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_ref() {
            signal(c.id(), Signal::SIGCONT);
        }
        self.stop();
    }
}

/// Writes `data` as the whole of file `path` (made or cut), as
/// `std::fs::write` does, but fails the test when `close` reports an
/// error, which `std::fs::write` ignores: on a FUSE mount the close's
/// flush commits what was written and reports a write that failed in the
/// background.
pub fn write_file(path: &Path, data: &[u8]) {
    use std::io::Write;
    use std::os::fd::IntoRawFd;
    let mut f =
        std::fs::File::create(path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
    f.write_all(data)
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    if let Err(e) = nix::unistd::close(f.into_raw_fd()) {
        panic!("the close of {} reported {e}", path.display());
    }
}
