//! Live marks: how the processes of one machine tell whether a writer
//! lease is still held by a running process.
//!
//! A lease holder keeps an `fcntl` read lock on one byte of a small file
//! beside the device (the byte is chosen by the lease's token) for as long
//! as it holds the lease. The kernel drops the lock when the process dies,
//! however it dies, so an observer on the same machine that finds a
//! slot's token unlocked knows at once that no process holds that lease
//! any more, whatever kind of process held it (the tool, an SDK process,
//! a FUSE server) and whatever the slot says about its pid. Slots written
//! by a holder that keeps a mark carry [`pfs_paxos::lease::FLAG_LIVE_MARK`].
//!
//! `fcntl` locks belong to a process and vanish when it closes *any*
//! descriptor of the file, so each process opens the file once (see
//! [`LiveFile::open`]) and every mark and question goes through that one
//! descriptor.

use crate::device::Device;
use crate::hostlock::{flock, open_machine_file};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

/// The live-mark file of `dev`: `.<file>.pfs-rs-live` beside a regular
/// file, `/var/run/pfs/<node>.pfs-rs-live` for a block device,
/// `/var/run/pfs/<key>.pfs-rs-live` for a network device with a
/// [`Device::machine_key`]. Symbolic links are resolved, so every name of
/// one device finds the same file. `None` for a device that is neither in
/// the file system nor on the network (memory).
pub(crate) fn live_path(dev: &dyn Device) -> Option<PathBuf> {
    machine_path(dev, "pfs-rs-live")
}

/// A machine-wide file of `dev` named for `ext`, where [`live_path`] puts
/// the live marks: `.<file>.<ext>` beside a regular file,
/// `/var/run/pfs/<node>.<ext>` for a block device and
/// `/var/run/pfs/<key>.<ext>` for a network device.
pub(crate) fn machine_path(dev: &dyn Device, ext: &str) -> Option<PathBuf> {
    if let Some(key) = dev.machine_key() {
        return Some(Path::new("/var/run/pfs").join(format!("{key}.{ext}")));
    }
    let real = std::fs::canonicalize(dev.local_path()?).ok()?;
    let name = real.file_name()?.to_string_lossy().into_owned();
    let is_node = std::fs::metadata(&real)
        .map(|m| m.file_type().is_block_device())
        .unwrap_or(false);
    Some(if is_node {
        Path::new("/var/run/pfs").join(format!("{name}.{ext}"))
    } else {
        real.parent()?.join(format!(".{name}.{ext}"))
    })
}

/// The byte of the file that stands for `token`.
fn byte_of(token: u64) -> i64 {
    (token >> 2) as i64
}

/// One process's descriptor of a live-mark file, and the marks it holds.
pub(crate) struct LiveFile {
    file: File,
    /// Marks of this process per token (the lock is taken with the first).
    holds: Mutex<HashMap<u64, usize>>,
}

/// Open live-mark files of this process (by path, with the pid that
/// opened them: a forked child opens its own).
static OPEN: Mutex<Vec<(PathBuf, u32, Weak<LiveFile>)>> = Mutex::new(Vec::new());

impl LiveFile {
    /// This process's descriptor of the file at `path` of `dev`, opened
    /// (and the file created, for the device's users) on first use.
    fn open(path: &Path, dev: &dyn Device) -> std::io::Result<Arc<LiveFile>> {
        let pid = std::process::id();
        let mut all = OPEN.lock();
        all.retain(|(_, p, w)| *p == pid && w.strong_count() > 0);
        if let Some(f) = all
            .iter()
            .find(|(p, _, _)| p == path)
            .and_then(|(_, _, w)| w.upgrade())
        {
            return Ok(f);
        }
        let f = Arc::new(LiveFile {
            file: open_machine_file(path, dev.local_path())?,
            holds: Mutex::new(HashMap::new()),
        });
        all.push((path.to_path_buf(), pid, Arc::downgrade(&f)));
        Ok(f)
    }

    /// Marks `token` held by this process until the mark is dropped.
    fn hold(self: &Arc<Self>, token: u64) -> std::io::Result<LiveMark> {
        let mut holds = self.holds.lock();
        let n = holds.entry(token).or_insert(0);
        if *n == 0 {
            let fl = flock(libc::F_RDLCK, byte_of(token), 1);
            if let Err(e) =
                nix::fcntl::fcntl(self.file.as_raw_fd(), nix::fcntl::FcntlArg::F_SETLK(&fl))
            {
                holds.remove(&token);
                return Err(std::io::Error::from(e));
            }
        }
        *n += 1;
        Ok(LiveMark {
            file: Arc::clone(self),
            token,
        })
    }

    fn release(&self, token: u64) {
        let mut holds = self.holds.lock();
        if let Some(n) = holds.get_mut(&token) {
            *n -= 1;
            if *n == 0 {
                holds.remove(&token);
                let fl = flock(libc::F_UNLCK, byte_of(token), 1);
                let _ =
                    nix::fcntl::fcntl(self.file.as_raw_fd(), nix::fcntl::FcntlArg::F_SETLK(&fl));
            }
        }
    }

    /// Whether some process of this machine (this one included) marks
    /// `token`; `None` when the kernel cannot say.
    fn marked(&self, token: u64) -> Option<bool> {
        if self.holds.lock().contains_key(&token) {
            return Some(true);
        }
        let mut fl = flock(libc::F_WRLCK, byte_of(token), 1);
        nix::fcntl::fcntl(
            self.file.as_raw_fd(),
            nix::fcntl::FcntlArg::F_GETLK(&mut fl),
        )
        .ok()?;
        Some(i32::from(fl.l_type) != libc::F_UNLCK)
    }
}

/// A held mark; dropping it (or the process ending) takes it away.
pub(crate) struct LiveMark {
    file: Arc<LiveFile>,
    token: u64,
}

impl Drop for LiveMark {
    fn drop(&mut self) {
        self.file.release(self.token);
    }
}

impl std::fmt::Debug for LiveMark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveMark").finish_non_exhaustive()
    }
}

/// Marks `token` as held by this process on `dev`'s machine; `None` when
/// the device has no live-mark file or it cannot be used (the holder's
/// slot then says so, and observers judge it by its heartbeat alone).
pub(crate) fn mark(dev: &dyn Device, token: u64) -> Option<LiveMark> {
    let f = LiveFile::open(&live_path(dev)?, dev).ok()?;
    f.hold(token).ok()
}

/// Whether a process of this machine holds `token`'s mark on `dev`:
/// `Some(false)` only when it is certain that none does.
pub(crate) fn marked(dev: &dyn Device, token: u64) -> Option<bool> {
    let path = live_path(dev)?;
    if !path.exists() {
        return None;
    }
    LiveFile::open(&path, dev).ok()?.marked(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::FileDevice;

    #[test]
    fn a_mark_lasts_while_held_and_is_shared_by_every_name_of_the_device() {
        let dir = std::env::temp_dir().join(format!("pfs-live-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let img = dir.join("img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(1 << 20)
            .unwrap();
        let link = dir.join("alias");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&img, &link).unwrap();
        let a = FileDevice::open("img", &img, false).unwrap();
        let b = FileDevice::open("alias", &link, false).unwrap();
        assert_eq!(live_path(&a), live_path(&b));
        let token = 0xdead_beef_0000_1235;
        assert_eq!(marked(&a, token), None, "no file yet");
        let m = mark(&a, token).expect("mark");
        assert_eq!(marked(&b, token), Some(true));
        assert_eq!(marked(&b, token + 4), Some(false));
        let m2 = mark(&b, token).expect("second mark");
        drop(m);
        assert_eq!(marked(&a, token), Some(true), "one mark is left");
        drop(m2);
        assert_eq!(marked(&a, token), Some(false));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
