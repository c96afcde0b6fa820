//! The file API: paths inside a mounted filesystem, open files with a
//! position, POSIX-like calls.
//!
//! Paths here are inside the filesystem (`/dir/file`); empty components are
//! ignored, a trailing `/` requires a directory.

use crate::error::{CoreError, Result};
use crate::fsops::Extents;
use crate::mount::{Mount, Stat};
use crate::ns::Entry;
use parking_lot::Mutex;
use pfs_format::layout::{MAX_NAME_LEN, MAX_PATH_LEN};
use std::io::SeekFrom;

/// How to open a file (`O_CREAT`, `O_EXCL`, `O_TRUNC`, `O_APPEND`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Create the file if it does not exist.
    pub create: bool,
    /// With `create`: fail if it exists.
    pub exclusive: bool,
    /// Cut the file to size 0 on open.
    pub truncate: bool,
    /// Every write goes to the end of the file.
    pub append: bool,
    /// Writes are allowed (needs a read-write mount).
    pub write: bool,
}

/// How `fallocate` treats new blocks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FallocMode {
    /// Do not change the file size (`FALLOC_FL_KEEP_SIZE`).
    pub keep_size: bool,
    /// Mark new blocks as written: their old bytes become visible
    /// instead of zeros (`FALLOC_FL_NO_HIDE_STALE`, used by PolarDB for
    /// files it initialises itself).
    pub no_hide_stale: bool,
}

/// A parsed in-filesystem path.
pub(crate) struct FsPath {
    pub(crate) components: Vec<String>,
    pub(crate) must_be_dir: bool,
}

pub(crate) fn parse(path: &str) -> Result<FsPath> {
    if path.len() > MAX_PATH_LEN {
        return Err(CoreError::NameTooLong {
            path: path.to_owned(),
        });
    }
    if !path.starts_with('/') {
        return Err(CoreError::BadPath {
            path: path.to_owned(),
            reason: "paths inside a filesystem start with '/'",
        });
    }
    let components: Vec<String> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect();
    if components.iter().any(|c| c.len() > MAX_NAME_LEN) {
        return Err(CoreError::NameTooLong {
            path: path.to_owned(),
        });
    }
    if components.iter().any(|c| c.contains('\0')) {
        return Err(CoreError::BadPath {
            path: path.to_owned(),
            reason: "a name contains a NUL byte",
        });
    }
    Ok(FsPath {
        must_be_dir: path.ends_with('/'),
        components,
    })
}

/// An open file.
pub struct File<'m> {
    m: &'m Mount,
    ino: u64,
    opts: OpenOptions,
    pos: Mutex<u64>,
    /// Extents written by `pwrite_deferred` and not yet committed.
    pending: Mutex<Extents>,
}

impl Mount {
    /// Opens (and with `create`, creates) the file at `path`.
    pub fn open_file(&self, path: &str, opts: OpenOptions) -> Result<File<'_>> {
        let p = parse(path)?;
        let ino = if opts.create {
            self.create(&p.components, opts.exclusive, path)?
        } else {
            let ino = self.resolve(&p.components, p.must_be_dir, path)?;
            if self.stat(ino)?.is_dir && opts.write {
                return Err(CoreError::IsDir {
                    path: path.to_owned(),
                });
            }
            ino
        };
        self.open_count(ino, 1);
        let f = File {
            m: self,
            ino,
            opts,
            pos: Mutex::new(0),
            pending: Mutex::new(Extents::default()),
        };
        if opts.truncate && opts.write && f.m.stat(ino)?.size > 0 {
            f.m.truncate_ino(ino, 0)?;
        }
        Ok(f)
    }

    /// Attributes of the file or directory at `path`.
    pub fn stat_path(&self, path: &str) -> Result<Stat> {
        let p = parse(path)?;
        let ino = self.resolve(&p.components, p.must_be_dir, path)?;
        self.stat(ino)
    }

    /// Succeeds when `path` exists (PFS has no permissions: every existing
    /// file is readable and, on the writer, writable).
    pub fn access(&self, path: &str) -> Result<()> {
        self.stat_path(path).map(|_| ())
    }

    /// Creates directory `path`.
    pub fn mkdir_path(&self, path: &str) -> Result<()> {
        let p = parse(path)?;
        self.mkdir(&p.components, false, path).map(|_| ())
    }

    /// Removes empty directory `path`.
    pub fn rmdir_path(&self, path: &str) -> Result<()> {
        let p = parse(path)?;
        self.rmdir(&p.components, path)
    }

    /// Removes file `path`. If it is open, the name goes at once and the
    /// inode and blocks when the last handle closes.
    pub fn unlink_path(&self, path: &str) -> Result<()> {
        let p = parse(path)?;
        self.unlink(&p.components, path)
    }

    /// Renames `from` to `to` atomically, replacing a target of the same kind.
    pub fn rename_path(&self, from: &str, to: &str) -> Result<()> {
        let (a, b) = (parse(from)?, parse(to)?);
        self.rename(&a.components, &b.components, from, to)
    }

    /// A consistent snapshot of directory `path`'s entries (no `.`/`..`).
    pub fn readdir(&self, path: &str) -> Result<Vec<Entry>> {
        let p = parse(path)?;
        let ino = self.resolve(&p.components, true, path)?;
        self.read_dir(ino)
    }

    /// Sets the size of file `path`.
    pub fn truncate_path(&self, path: &str, len: u64) -> Result<()> {
        let p = parse(path)?;
        let ino = self.resolve(&p.components, p.must_be_dir, path)?;
        self.truncate_ino(ino, len)
    }
}

impl File<'_> {
    /// The inode number.
    pub fn ino(&self) -> u64 {
        self.ino
    }

    fn writable(&self) -> Result<()> {
        if self.opts.write {
            Ok(())
        } else {
            Err(CoreError::BadHandle {
                what: "file not opened for writing",
            })
        }
    }

    /// Reads at the position and advances it.
    pub fn read(&self, buf: &mut [u8]) -> Result<usize> {
        let mut pos = self.pos.lock();
        let n = self.m.read(self.ino, *pos, buf)?;
        *pos += n as u64;
        Ok(n)
    }

    /// Reads at `off` without moving the position.
    pub fn pread(&self, buf: &mut [u8], off: u64) -> Result<usize> {
        self.m.read(self.ino, off, buf)
    }

    /// Writes at the position (the end with `append`) and advances it.
    pub fn write(&self, data: &[u8]) -> Result<usize> {
        self.writable()?;
        let mut pos = self.pos.lock();
        if self.opts.append {
            *pos = self.m.stat(self.ino)?.size;
        }
        let n = self.m.pwrite(self.ino, *pos, data)?;
        *pos += n as u64;
        Ok(n)
    }

    /// Writes at `off` without moving the position.
    pub fn pwrite(&self, data: &[u8], off: u64) -> Result<usize> {
        self.writable()?;
        self.m.pwrite(self.ino, off, data)
    }

    /// Moves the position.
    pub fn seek(&self, to: SeekFrom) -> Result<u64> {
        let mut pos = self.pos.lock();
        let base = match to {
            SeekFrom::Start(o) => Some(o),
            SeekFrom::Current(d) => pos.checked_add_signed(d),
            SeekFrom::End(d) => self.m.stat(self.ino)?.size.checked_add_signed(d),
        };
        *pos = base.ok_or_else(|| {
            CoreError::InvalidArgument("seek before the start of the file".into())
        })?;
        Ok(*pos)
    }

    /// Writes at `off` like [`Self::pwrite`], but leaves the new written
    /// extent and size uncommitted until [`Self::commit`], [`Self::fsync`]
    /// or close: one transaction for many writes (bulk copies). Until then
    /// readers (this handle included) see the file as it was.
    pub fn pwrite_deferred(&self, data: &[u8], off: u64) -> Result<usize> {
        self.writable()?;
        if data.is_empty() {
            return Ok(0);
        }
        let mut p = self.pending.lock();
        self.m.pwrite_data(self.ino, off, data, &mut p)?;
        Ok(data.len())
    }

    /// Commits what [`Self::pwrite_deferred`] wrote.
    pub fn commit(&self) -> Result<()> {
        let mut p = self.pending.lock();
        if p.blocks.is_empty() && p.end == 0 {
            return Ok(());
        }
        self.m.commit_extents(self.ino, &p)?;
        *p = Extents::default();
        Ok(())
    }

    /// Commits pending writes and makes the file's data and all committed
    /// metadata durable.
    pub fn fsync(&self) -> Result<()> {
        self.commit()?;
        self.m.device().sync()
    }

    /// Attributes of the open file.
    pub fn fstat(&self) -> Result<Stat> {
        self.m.stat(self.ino)
    }

    /// Sets the size (`ftruncate`).
    pub fn set_len(&self, len: u64) -> Result<()> {
        self.writable()?;
        self.m.truncate_ino(self.ino, len)
    }

    /// Allocates blocks for `[off, off + len)` (`fallocate`).
    pub fn allocate(&self, off: u64, len: u64, mode: FallocMode) -> Result<()> {
        self.writable()?;
        self.m.fallocate_mode(self.ino, off, len, mode)
    }
}

impl Drop for File<'_> {
    fn drop(&mut self) {
        // Deferred writes are committed at close, as a file system would
        // make them visible; errors surface through fsync, not here.
        let _ = self.commit();
        if self.m.open_count(self.ino, -1) == 0 {
            // The last handle of an unlinked file frees it; if that fails
            // the orphan is reclaimed by the next read-write mount.
            let _ = self.m.release_if_orphan(self.ino);
        }
    }
}
