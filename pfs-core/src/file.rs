//! Open files: owned handles with a position, usable across calls and
//! threads (a C descriptor or a FUSE file handle can hold one), with
//! `std::io::{Read, Write, Seek}` for `File` and `&File`.

use crate::error::{CoreError, Result};
use crate::fsops::FallocMode;
use crate::mount::Extents;
use crate::mount::{gone, Mount};
use crate::namespace::{Attr, FileType};
use crate::system::refuse_system;
use parking_lot::Mutex;
use std::io::{self, SeekFrom};
use std::sync::Arc;

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

/// An open file. It holds its mount, so it lives as long as needed; the
/// inode of a file unlinked while open is freed when its last handle
/// closes.
pub struct File {
    m: Arc<Mount>,
    ino: u64,
    /// The file's birth time: after the writer of another host frees the
    /// inode, its number may name a newer file, which is not this one.
    born: u64,
    opts: OpenOptions,
    pos: Mutex<u64>,
    /// Extents written by `write_at_deferred` and not yet committed.
    pending: Mutex<Extents>,
}

impl std::fmt::Debug for File {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("File")
            .field("ino", &self.ino)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Mount {
    /// Opens (and with `create`, creates) the file at `path`. A directory
    /// opens for reading only; `.pfs-paxos` and `.pfs-journal` never open
    /// for writing.
    pub fn open_file(self: &Arc<Self>, path: impl AsRef<[u8]>, opts: OpenOptions) -> Result<File> {
        let path = path.as_ref();
        let ino = if opts.create {
            self.create_path_with(path, FileType::File, opts.exclusive)?
                .0
        } else {
            self.resolve(path)?
        };
        self.open_ino(ino, opts).map_err(|e| match e {
            CoreError::IsDir { .. } => CoreError::IsDir {
                path: String::from_utf8_lossy(path).into_owned(),
            },
            CoreError::SystemFile { op, .. } => CoreError::SystemFile {
                path: String::from_utf8_lossy(path).into_owned(),
                op,
            },
            other => other,
        })
    }

    /// Opens inode `ino` (`create` and `exclusive` are ignored).
    pub fn open_ino(self: &Arc<Self>, ino: u64, opts: OpenOptions) -> Result<File> {
        if opts.write {
            refuse_system(ino, "opening it for writing", || format!("inode {ino}"))?;
        }
        let attr = self.getattr(ino)?;
        if opts.write && attr.is_dir() {
            return Err(CoreError::IsDir {
                path: format!("inode {ino}"),
            });
        }
        self.open_count(ino, 1);
        let f = File {
            m: Arc::clone(self),
            ino,
            born: attr.btime,
            opts,
            pos: Mutex::new(0),
            pending: Mutex::new(Extents::default()),
        };
        if opts.truncate && opts.write && f.m.getattr(ino)?.size > 0 {
            f.m.truncate(ino, 0)?;
        }
        Ok(f)
    }
}

impl File {
    /// The inode number.
    pub fn ino(&self) -> u64 {
        self.ino
    }

    /// The mount the file is on.
    pub fn mount(&self) -> &Arc<Mount> {
        &self.m
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

    /// Reads at `off` without moving the position; returns the bytes read
    /// (short only at end of file).
    pub fn read_at(&self, buf: &mut [u8], off: u64) -> Result<usize> {
        self.m.read_born_at(self.ino, self.born, buf, off)
    }

    /// Writes all of `buf` at `off` without moving the position; committed
    /// when it returns. Fails with [`CoreError::NotFound`] once the file was
    /// freed (its inode number may name another file by then).
    pub fn write_at(&self, buf: &[u8], off: u64) -> Result<usize> {
        self.writable()?;
        self.m.write_inode_at(self.ino, Some(self.born), buf, off)
    }

    /// Writes at `off` like [`Self::write_at`], but leaves the new written
    /// extent and size uncommitted until [`Self::commit`],
    /// [`Self::sync_all`] or close: one transaction for many writes (bulk
    /// copies). Until then readers (this handle included) see the file as
    /// it was. Commit them before another handle truncates the file:
    /// extents committed after a truncate grow the file again.
    pub fn write_at_deferred(&self, buf: &[u8], off: u64) -> Result<usize> {
        self.writable()?;
        crate::fsops::check_range("write", off, buf.len() as u64)?;
        if buf.is_empty() {
            return Ok(0);
        }
        let mut p = self.pending.lock();
        let _locks = self.m.write_guard(self.ino, off, buf.len() as u64)?;
        self.m.with_write_permit(|| {
            self.m
                .write_data(self.ino, Some(self.born), off, buf, &mut p)
        })?;
        Ok(buf.len())
    }

    /// Commits what [`Self::write_at_deferred`] wrote.
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
    /// metadata durable (`fsync`).
    pub fn sync_all(&self) -> Result<()> {
        self.commit()?;
        self.m.sync()
    }

    /// Attributes of the open file (`fstat`).
    pub fn getattr(&self) -> Result<Attr> {
        let attr = self.m.getattr(self.ino)?;
        if attr.btime != self.born {
            return Err(gone(self.ino));
        }
        Ok(attr)
    }

    /// Sets the size (`ftruncate`), after committing this handle's
    /// deferred writes (which the new size then cuts like any others).
    pub fn set_len(&self, len: u64) -> Result<()> {
        self.writable()?;
        self.getattr()?;
        self.commit()?;
        self.m.truncate(self.ino, len)
    }

    /// Allocates blocks for `[off, off + len)` (`fallocate`).
    pub fn allocate(&self, off: u64, len: u64, mode: FallocMode) -> Result<()> {
        self.writable()?;
        self.getattr()?;
        self.m.fallocate(self.ino, off, len, mode)
    }

    fn read_pos(&self, buf: &mut [u8]) -> Result<usize> {
        let mut pos = self.pos.lock();
        let n = self.m.read_born_at(self.ino, self.born, buf, *pos)?;
        *pos += n as u64;
        Ok(n)
    }

    fn write_pos(&self, buf: &[u8]) -> Result<usize> {
        self.writable()?;
        let mut pos = self.pos.lock();
        if self.opts.append {
            *pos = self.m.getattr(self.ino)?.size;
        }
        let n = self.m.write_at(self.ino, buf, *pos)?;
        *pos += n as u64;
        Ok(n)
    }

    fn seek_pos(&self, to: SeekFrom) -> Result<u64> {
        let mut pos = self.pos.lock();
        let new = match to {
            SeekFrom::Start(o) => Some(o),
            SeekFrom::Current(d) => pos.checked_add_signed(d),
            SeekFrom::End(d) => self.m.getattr(self.ino)?.size.checked_add_signed(d),
        };
        *pos = new
            .filter(|&p| p <= crate::fsops::MAX_FILE_SIZE)
            .ok_or_else(|| {
                CoreError::InvalidArgument(
                    "seek before the start of the file or past the largest file size".into(),
                )
            })?;
        Ok(*pos)
    }
}

impl io::Read for &File {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(self.read_pos(buf)?)
    }
}

impl io::Read for File {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl io::Write for &File {
    /// Writes at the position (the end with `append`), committed when it
    /// returns.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(self.write_pos(buf)?)
    }

    /// Commits deferred writes (durability needs [`File::sync_all`]).
    fn flush(&mut self) -> io::Result<()> {
        Ok(self.commit()?)
    }
}

impl io::Write for File {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        (&*self).flush()
    }
}

impl io::Seek for &File {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        Ok(self.seek_pos(to)?)
    }
}

impl io::Seek for File {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        (&*self).seek(to)
    }
}

impl Drop for File {
    fn drop(&mut self) {
        // Deferred writes are committed at close, as a file system would
        // make them visible; errors surface through sync_all, not here.
        let _ = self.commit();
        if self.m.open_count(self.ino, -1) == 0 {
            // The last handle of an unlinked file frees it; if that fails
            // the orphan is reclaimed by the next read-write mount.
            let _ = self.m.release_if_orphan(self.ino);
        }
    }
}
