//! Open files: owned handles with a position, usable across calls and
//! threads (a C descriptor or a FUSE file handle can hold one), with
//! `std::io::{Read, Write, Seek}` for `File` and `&File`.
//!
//! A handle keeps the file's position and its open options: reads and
//! writes at the position ([`File::read_next`], [`File::write_next`],
//! [`File::seek_to`]) and appends ([`File::append`]) are here once, for
//! every front end. Write-behind ([`OpenOptions::write_behind`]) is a
//! policy of a handle, in [`behind`].

mod behind;
mod flight;

use crate::error::{CoreError, Result};
use crate::fsops::{check_range, FallocMode};
use crate::mount::{gone, Extents};
use crate::namespace::{Attr, FileType};
use crate::system::refuse_system;
use crate::{Mode, Mount};
use parking_lot::Mutex;
use std::io::{self, SeekFrom};
use std::sync::Arc;

/// How to open a file (`O_CREAT`, `O_EXCL`, `O_TRUNC`, `O_APPEND`,
/// `O_WRONLY`, `O_DIRECTORY`); [`OpenOptions::from_flags`] makes them from
/// POSIX flags. The default opens for reading.
///
/// # Example
///
/// Replace a file's contents (`O_WRONLY | O_CREAT | O_TRUNC`) (`m` is a read-write `Arc<Mount>` of a new filesystem):
///
/// ```
/// # struct Scratch(std::path::PathBuf);
/// # impl Drop for Scratch {
/// #     fn drop(&mut self) {
/// #         let _ = std::fs::remove_dir_all(&self.0);
/// #     }
/// # }
/// # let scratch = Scratch(std::env::temp_dir().join(format!("pfs-doc-open-options-{}", std::process::id())));
/// # std::fs::create_dir_all(&scratch.0)?;
/// # let dir = scratch.0.clone();
/// # let img = scratch.0.join("disk");
/// # std::fs::File::create(&img)?.set_len(10 << 30)?;
/// # let dev = std::sync::Arc::new(pfs_core::FileDevice::open("disk", &img, true)?);
/// # pfs_core::mkfs(dev.as_ref(), &pfs_core::MkfsOptions::default())?;
/// # let opts = pfs_core::MountOptions { hostid: 1, ..pfs_core::MountOptions::default() };
/// # let m = std::sync::Arc::new(pfs_core::Mount::open_with(dev, pfs_core::Mode::ReadWrite, &opts)?);
/// use pfs_core::OpenOptions;
///
/// let rewrite = OpenOptions { create: true, truncate: true, write: true, ..OpenOptions::default() };
/// m.open_file("/conf", rewrite)?.write_at(b"a long first version", 0)?;
/// m.open_file("/conf", rewrite)?.write_at(b"short", 0)?;
/// assert_eq!(m.stat_path("/conf")?.size, 5);
///
/// // A handle without `write` refuses writes (EBADF).
/// let ro = m.open_file("/conf", OpenOptions::default())?;
/// assert_eq!(ro.write_at(b"x", 0).unwrap_err().errno(), libc::EBADF);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Create the file if it does not exist.
    pub create: bool,
    /// With `create`: fail if it exists.
    pub exclusive: bool,
    /// With `write`: cut the file to size 0 on open.
    pub truncate: bool,
    /// Every write goes to the end of the file ([`File::write_next`]).
    pub append: bool,
    /// Writes are allowed. On a read-only mount the handle opens, and its
    /// writes fail with `ReadOnly` (EROFS), as the C SDK's do.
    pub write: bool,
    /// With `write`: reads are refused (`BadHandle`, EBADF), as for
    /// `O_WRONLY`.
    pub write_only: bool,
    /// The path must name a directory (`NotDir` otherwise).
    pub directory: bool,
    /// Write-behind (a FUSE mount's choice): writes at an offset
    /// ([`File::write_at`], [`File::write_next`]) go to the device at
    /// once but are committed only at [`File::commit`], [`File::sync_all`],
    /// [`File::finish`] or close, before this handle reads or looks at
    /// the file, and after every 256 MiB; a growing file gets its blocks
    /// up to 64 MiB ahead, and what is left past its end goes back when it
    /// finishes. Until committed, other handles see the file as it was.
    /// Without it every write is committed when it returns.
    pub write_behind: bool,
}

/// An open file. It holds its mount, so it lives as long as needed; the
/// inode of a file unlinked while open is freed when its last handle
/// closes.
///
/// # Example
///
/// `std::io` on an open file (`m` is a read-write `Arc<Mount>` of a new filesystem):
///
/// ```
/// # struct Scratch(std::path::PathBuf);
/// # impl Drop for Scratch {
/// #     fn drop(&mut self) {
/// #         let _ = std::fs::remove_dir_all(&self.0);
/// #     }
/// # }
/// # let scratch = Scratch(std::env::temp_dir().join(format!("pfs-doc-file-{}", std::process::id())));
/// # std::fs::create_dir_all(&scratch.0)?;
/// # let dir = scratch.0.clone();
/// # let img = scratch.0.join("disk");
/// # std::fs::File::create(&img)?.set_len(10 << 30)?;
/// # let dev = std::sync::Arc::new(pfs_core::FileDevice::open("disk", &img, true)?);
/// # pfs_core::mkfs(dev.as_ref(), &pfs_core::MkfsOptions::default())?;
/// # let opts = pfs_core::MountOptions { hostid: 1, ..pfs_core::MountOptions::default() };
/// # let m = std::sync::Arc::new(pfs_core::Mount::open_with(dev, pfs_core::Mode::ReadWrite, &opts)?);
/// use pfs_core::OpenOptions;
/// use std::io::{Read, Seek, SeekFrom, Write};
///
/// let mut f = m.open_file("/f", OpenOptions { create: true, write: true, ..OpenOptions::default() })?;
/// f.write_all(b"hello, world")?;
/// assert_eq!(f.position(), 12);
/// f.seek(SeekFrom::Start(7))?;
/// let mut word = String::new();
/// f.read_to_string(&mut word)?;
/// assert_eq!(word, "world");
/// assert_eq!(f.getattr()?.size, 12);
///
/// // An unlinked file lives on until its last handle closes.
/// m.unlink_path("/f")?;
/// f.rewind()?;
/// let mut all = Vec::new();
/// f.read_to_end(&mut all)?;
/// assert_eq!(all, b"hello, world");
/// f.close()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
    /// Write-behind's bookkeeping ([`OpenOptions::write_behind`]).
    behind: Mutex<behind::Behind>,
    /// Write-behind's writes on their way to the device.
    flight: Arc<flight::Flight>,
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
    /// for writing. On a read-only mount, creating a file that does not
    /// exist, `exclusive` and `truncate` fail with `ReadOnly`.
    ///
    /// # Example
    ///
    /// Create, write, read back (`m` is a read-write `Arc<Mount>` of a new filesystem):
    ///
    /// ```
    /// # struct Scratch(std::path::PathBuf);
    /// # impl Drop for Scratch {
    /// #     fn drop(&mut self) {
    /// #         let _ = std::fs::remove_dir_all(&self.0);
    /// #     }
    /// # }
    /// # let scratch = Scratch(std::env::temp_dir().join(format!("pfs-doc-open-file-{}", std::process::id())));
    /// # std::fs::create_dir_all(&scratch.0)?;
    /// # let dir = scratch.0.clone();
    /// # let img = scratch.0.join("disk");
    /// # std::fs::File::create(&img)?.set_len(10 << 30)?;
    /// # let dev = std::sync::Arc::new(pfs_core::FileDevice::open("disk", &img, true)?);
    /// # pfs_core::mkfs(dev.as_ref(), &pfs_core::MkfsOptions::default())?;
    /// # let opts = pfs_core::MountOptions { hostid: 1, ..pfs_core::MountOptions::default() };
    /// # let m = std::sync::Arc::new(pfs_core::Mount::open_with(dev, pfs_core::Mode::ReadWrite, &opts)?);
    /// use pfs_core::{CoreError, OpenOptions};
    /// use std::io::{Read, Write};
    ///
    /// let new = OpenOptions { create: true, exclusive: true, write: true, ..OpenOptions::default() };
    /// let mut f = m.open_file("/log", new)?;
    /// f.write_all(b"first line\n")?;
    /// f.sync_all()?; // durable on the device
    /// drop(f);
    ///
    /// // `O_CREAT | O_EXCL` of an existing file.
    /// assert!(matches!(m.open_file("/log", new), Err(CoreError::Exists { .. })));
    /// // The default opens for reading.
    /// let mut text = String::new();
    /// m.open_file("/log", OpenOptions::default())?.read_to_string(&mut text)?;
    /// assert_eq!(text, "first line\n");
    /// assert_eq!(m.open_file("/missing", OpenOptions::default()).unwrap_err().errno(), libc::ENOENT);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
            CoreError::NotDir { .. } => CoreError::NotDir {
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
        if opts.directory && !attr.is_dir() {
            return Err(CoreError::NotDir {
                path: format!("inode {ino}"),
            });
        }
        if opts.write && attr.is_dir() {
            return Err(CoreError::IsDir {
                path: format!("inode {ino}"),
            });
        }
        if opts.write && opts.truncate && self.mode() != Mode::ReadWrite {
            return Err(CoreError::ReadOnly);
        }
        self.open_count(ino, 1);
        let f = File {
            m: Arc::clone(self),
            ino,
            born: attr.btime,
            opts,
            pos: Mutex::new(0),
            pending: Mutex::new(Extents::default()),
            behind: Mutex::new(behind::Behind::default()),
            flight: Arc::default(),
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

    /// The options it was opened with.
    pub fn options(&self) -> OpenOptions {
        self.opts
    }

    /// The position reads and writes at the position start from.
    pub fn position(&self) -> u64 {
        *self.pos.lock()
    }

    /// This file opened again on `m`, another mount of its device (a
    /// remount): the same options, nothing created or truncated again, and
    /// the same position, after committing this handle's deferred writes.
    /// `NotFound` when the file is no longer there in `m`'s view, also when
    /// its inode number names a newer file by then.
    pub fn reopen(&self, m: &Arc<Mount>) -> Result<File> {
        self.commit()?;
        let opts = OpenOptions {
            create: false,
            exclusive: false,
            truncate: false,
            ..self.opts
        };
        let f = m.open_ino(self.ino, opts)?;
        if f.born != self.born {
            return Err(gone(self.ino));
        }
        *f.pos.lock() = self.position();
        Ok(f)
    }

    fn writable(&self) -> Result<()> {
        if !self.opts.write {
            Err(CoreError::BadHandle {
                what: "file not opened for writing",
            })
        } else if self.m.mode() != Mode::ReadWrite {
            Err(CoreError::ReadOnly)
        } else {
            Ok(())
        }
    }

    fn readable(&self) -> Result<()> {
        if self.opts.write_only {
            Err(CoreError::BadHandle {
                what: "file not opened for reading",
            })
        } else {
            Ok(())
        }
    }

    /// Reads at `off` without moving the position; returns the bytes read
    /// (short only at end of file).
    ///
    /// # Example
    ///
    /// Positional reads and writes, as `pread`/`pwrite` (`m` is a read-write `Arc<Mount>` of a new filesystem):
    ///
    /// ```
    /// # struct Scratch(std::path::PathBuf);
    /// # impl Drop for Scratch {
    /// #     fn drop(&mut self) {
    /// #         let _ = std::fs::remove_dir_all(&self.0);
    /// #     }
    /// # }
    /// # let scratch = Scratch(std::env::temp_dir().join(format!("pfs-doc-read-at-{}", std::process::id())));
    /// # std::fs::create_dir_all(&scratch.0)?;
    /// # let dir = scratch.0.clone();
    /// # let img = scratch.0.join("disk");
    /// # std::fs::File::create(&img)?.set_len(10 << 30)?;
    /// # let dev = std::sync::Arc::new(pfs_core::FileDevice::open("disk", &img, true)?);
    /// # pfs_core::mkfs(dev.as_ref(), &pfs_core::MkfsOptions::default())?;
    /// # let opts = pfs_core::MountOptions { hostid: 1, ..pfs_core::MountOptions::default() };
    /// # let m = std::sync::Arc::new(pfs_core::Mount::open_with(dev, pfs_core::Mode::ReadWrite, &opts)?);
    /// use pfs_core::OpenOptions;
    ///
    /// let f = m.open_file("/f", OpenOptions { create: true, write: true, ..OpenOptions::default() })?;
    /// f.write_at(b"tail", 8 << 20)?; // past the end: the gap is a hole
    /// let mut buf = [1u8; 8];
    /// assert_eq!(f.read_at(&mut buf, 0)?, 8);
    /// assert_eq!(buf, [0; 8]);
    /// assert_eq!(f.read_at(&mut buf, (8 << 20) + 2)?, 2); // short only at the end
    /// assert_eq!(&buf[..2], b"il");
    /// assert_eq!(f.position(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_at(&self, buf: &mut [u8], off: u64) -> Result<usize> {
        self.readable()?;
        self.settle()?;
        self.m.read_born_at(self.ino, self.born, buf, off)
    }

    /// Writes all of `buf` at `off` without moving the position; committed
    /// when it returns (with [`OpenOptions::write_behind`], later). Fails
    /// with [`CoreError::NotFound`] once the file was freed (its inode
    /// number may name another file by then).
    pub fn write_at(&self, buf: &[u8], off: u64) -> Result<usize> {
        self.writable()?;
        if self.opts.write_behind {
            return self.write_behind(buf, off);
        }
        self.m.write_inode_at(self.ino, Some(self.born), buf, off)
    }

    /// Before a look at the file (a read, a stat) through a write-behind
    /// handle: commits what its writes put on the device, like
    /// [`Self::commit`], except that the failure of a background write is
    /// not reported here but kept for the handle's next write, commit,
    /// [`Self::sync_all`] or close, which must report it (a look that came
    /// first would otherwise take it from them). Nothing for another handle.
    pub fn settle(&self) -> Result<()> {
        match self.opts.write_behind {
            true => File::commit_landed(std::slice::from_ref(self), false),
            false => Ok(()),
        }
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

    /// Commits what [`Self::write_at_deferred`] wrote (and what
    /// write-behind's writes under way write, once they are done).
    pub fn commit(&self) -> Result<()> {
        File::commit_all(std::slice::from_ref(self))
    }

    /// Commits what every handle in `files` wrote with
    /// [`Self::write_at_deferred`] in one transaction, where
    /// [`Self::commit`] on each would take one each (a copy's writer
    /// threads, each with a handle of its own). The handles must be of one
    /// file of one mount, and write blocks of their own: a handle's
    /// deferred writes are not seen by the others, as
    /// [`Self::write_at_deferred`] says.
    ///
    /// ```
    /// # struct Scratch(std::path::PathBuf);
    /// # impl Drop for Scratch {
    /// #     fn drop(&mut self) {
    /// #         let _ = std::fs::remove_dir_all(&self.0);
    /// #     }
    /// # }
    /// # let scratch = Scratch(std::env::temp_dir().join(format!("pfs-doc-commit-all-{}", std::process::id())));
    /// # std::fs::create_dir_all(&scratch.0)?;
    /// # let img = scratch.0.join("disk");
    /// # std::fs::File::create(&img)?.set_len(10 << 30)?;
    /// # let dev = std::sync::Arc::new(pfs_core::FileDevice::open("disk", &img, true)?);
    /// # pfs_core::mkfs(dev.as_ref(), &pfs_core::MkfsOptions::default())?;
    /// # let opts = pfs_core::MountOptions { hostid: 1, ..pfs_core::MountOptions::default() };
    /// # let m = std::sync::Arc::new(pfs_core::Mount::open_with(dev, pfs_core::Mode::ReadWrite, &opts)?);
    /// use pfs_core::{File, OpenOptions};
    ///
    /// let w = OpenOptions { write: true, ..OpenOptions::default() };
    /// let a = m.open_file("/f", OpenOptions { create: true, ..w })?;
    /// let b = m.open_ino(a.ino(), w)?;
    /// // Each writes blocks of its own (4 MiB each).
    /// a.write_at_deferred(b"front", 0)?;
    /// b.write_at_deferred(b"back", 4 << 20)?;
    /// assert_eq!(m.stat_path("/f")?.size, 0);
    /// File::commit_all(&[a, b])?;
    /// assert_eq!(m.stat_path("/f")?.size, (4 << 20) + 4);
    /// let r = m.open_file("/f", OpenOptions::default())?;
    /// let (mut front, mut back) = ([0u8; 5], [0u8; 4]);
    /// r.read_at(&mut front, 0)?;
    /// r.read_at(&mut back, 4 << 20)?;
    /// assert_eq!((&front, &back), (b"front", b"back"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn commit_all(files: &[File]) -> Result<()> {
        File::commit_landed(files, true)
    }

    /// [`Self::commit_all`]; the failure of a background write is returned
    /// only when `report`.
    fn commit_landed(files: &[File], report: bool) -> Result<()> {
        let Some(first) = files.first() else {
            return Ok(());
        };
        if files
            .iter()
            .any(|f| f.ino != first.ino || !Arc::ptr_eq(&f.m, &first.m))
        {
            return Err(CoreError::InvalidArgument(
                "commit_all: handles of more than one file".into(),
            ));
        }
        for f in files {
            f.land(report)?;
        }
        let mut held: Vec<_> = files.iter().map(|f| f.pending.lock()).collect();
        let mut all = Extents::default();
        for p in &held {
            for (&bt, &end) in &p.blocks {
                let e = all.blocks.entry(bt).or_insert(end);
                *e = (*e).max(end);
            }
            all.end = all.end.max(p.end);
        }
        if all.blocks.is_empty() && all.end == 0 {
            return Ok(());
        }
        first.m.commit_extents(first.ino, &all)?;
        for p in &mut held {
            **p = Extents::default();
        }
        drop(held);
        for f in files {
            f.behind_committed();
        }
        Ok(())
    }

    /// What closing the handle does to the file, for a handle several
    /// openers share (a FUSE mount's, one per inode) when the last of them
    /// closes: commits deferred writes and gives back blocks allocated
    /// ahead past the end ([`OpenOptions::write_behind`]). The handle stays
    /// usable.
    pub fn finish(&self) -> Result<()> {
        self.commit()?;
        self.give_back_ahead()
    }

    /// Writes all of `buf` at the end of the file, the end taken and the
    /// data written under the lock that orders the writes extending a file
    /// (see [`Mount::write_at`]): appends through any handles, threads or,
    /// on a shared mount, processes of the host each land whole, one after
    /// another. Does not move the position; returns the offset written at.
    /// Committed when it returns.
    ///
    /// # Example
    ///
    /// (`m` is a read-write `Arc<Mount>` of a new filesystem):
    ///
    /// ```
    /// # struct Scratch(std::path::PathBuf);
    /// # impl Drop for Scratch {
    /// #     fn drop(&mut self) {
    /// #         let _ = std::fs::remove_dir_all(&self.0);
    /// #     }
    /// # }
    /// # let scratch = Scratch(std::env::temp_dir().join(format!("pfs-doc-append-{}", std::process::id())));
    /// # std::fs::create_dir_all(&scratch.0)?;
    /// # let dir = scratch.0.clone();
    /// # let img = scratch.0.join("disk");
    /// # std::fs::File::create(&img)?.set_len(10 << 30)?;
    /// # let dev = std::sync::Arc::new(pfs_core::FileDevice::open("disk", &img, true)?);
    /// # pfs_core::mkfs(dev.as_ref(), &pfs_core::MkfsOptions::default())?;
    /// # let opts = pfs_core::MountOptions { hostid: 1, ..pfs_core::MountOptions::default() };
    /// # let m = std::sync::Arc::new(pfs_core::Mount::open_with(dev, pfs_core::Mode::ReadWrite, &opts)?);
    /// use pfs_core::OpenOptions;
    ///
    /// let opts = OpenOptions { create: true, write: true, append: true, ..OpenOptions::default() };
    /// let a = m.open_file("/wal", opts)?;
    /// let b = m.open_file("/wal", opts)?;
    /// assert_eq!(a.append(b"one ")?, 0);
    /// assert_eq!(b.append(b"two")?, 4);
    /// let mut buf = [0u8; 7];
    /// a.read_at(&mut buf, 0)?;
    /// assert_eq!(&buf, b"one two");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn append(&self, buf: &[u8]) -> Result<u64> {
        self.writable()?;
        // Deferred writes of this handle count in the end.
        self.commit()?;
        if buf.is_empty() {
            return Ok(self.getattr()?.size);
        }
        // A truncate waits, and no other write extends the file meanwhile.
        // On a shared mount the extend lock is the host's transaction lock;
        // taking it catches up with what the host's other processes
        // committed, so the size read under it is the end.
        let _locks = self.m.append_guard(self.ino)?;
        let end = self.getattr()?.size;
        check_range("write", end, buf.len() as u64)?;
        // Repeated as it is when the lease ran out under it and was proved
        // again: the same bytes at the same end, which nobody else moved.
        self.m.with_write_permit(|| {
            let mut pending = Extents::default();
            self.m
                .write_data(self.ino, Some(self.born), end, buf, &mut pending)?;
            self.m.commit_extents(self.ino, &pending)
        })?;
        Ok(end)
    }

    /// Closes the handle and reports what dropping it would hide
    /// (`close(2)`): the commit of deferred writes and, for a handle opened
    /// for writing, whether the mount may still write
    /// ([`Mount::check_writer`]: on a mount shared by the processes of a
    /// host, also whether another host took the writer lease over and
    /// committed), so that nothing is acknowledged after a takeover. The
    /// handle is closed either way.
    pub fn close(self) -> Result<()> {
        self.finish()?;
        if self.opts.write {
            self.m.check_writer()?;
        }
        Ok(())
    }

    /// Commits pending writes and makes the file's data and all committed
    /// metadata durable (`fsync`). A handle not opened for writing has
    /// nothing of its own to make durable: it does not flush (which on a
    /// writer that has not written yet would take the writer lease).
    pub fn sync_all(&self) -> Result<()> {
        if !self.opts.write {
            return Ok(());
        }
        self.commit()?;
        self.m.sync()
    }

    /// Attributes of the open file (`fstat`).
    pub fn getattr(&self) -> Result<Attr> {
        self.settle()?;
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
        self.behind_cut(len);
        self.m.truncate(self.ino, len)
    }

    /// Allocates blocks for `[off, off + len)` (`fallocate`).
    pub fn allocate(&self, off: u64, len: u64, mode: FallocMode) -> Result<()> {
        self.writable()?;
        self.getattr()?;
        self.m.fallocate(self.ino, off, len, mode)
    }

    /// Reads at the position and moves it past what was read (`read(2)`).
    pub fn read_next(&self, buf: &mut [u8]) -> Result<usize> {
        self.readable()?;
        self.settle()?;
        let mut pos = self.pos.lock();
        let n = self.m.read_born_at(self.ino, self.born, buf, *pos)?;
        *pos += n as u64;
        Ok(n)
    }

    /// Writes all of `buf` at the position, or with `append` at the end
    /// ([`File::append`]), and moves the position past it (`write(2)`).
    /// Committed when it returns. An empty write writes nothing and leaves
    /// the position.
    pub fn write_next(&self, buf: &[u8]) -> Result<usize> {
        self.writable()?;
        if buf.is_empty() {
            return Ok(0);
        }
        let mut pos = self.pos.lock();
        let at = if self.opts.append {
            self.append(buf)?
        } else {
            self.write_at(buf, *pos)?;
            *pos
        };
        *pos = at + buf.len() as u64;
        Ok(buf.len())
    }

    /// Moves the position (`lseek(2)`; [`crate::posix::seek_from`] makes
    /// `to` from `whence`) and returns it. A position before the start is
    /// `InvalidArgument` (EINVAL), as is one from the start past
    /// [`crate::MAX_FILE_SIZE`]; one past it from the position or the end
    /// is `Overflow` (EOVERFLOW).
    pub fn seek_to(&self, to: SeekFrom) -> Result<u64> {
        let mut pos = self.pos.lock();
        let (base, delta) = match to {
            SeekFrom::Start(o) if o <= crate::fsops::MAX_FILE_SIZE => {
                *pos = o;
                return Ok(o);
            }
            SeekFrom::Start(_) => {
                return Err(CoreError::InvalidArgument(
                    "seek past the largest file size".into(),
                ))
            }
            SeekFrom::Current(d) => (*pos, d),
            SeekFrom::End(d) => (self.getattr()?.size, d),
        };
        let new = i128::from(base) + i128::from(delta);
        if new < 0 {
            return Err(CoreError::InvalidArgument(
                "seek before the start of the file".into(),
            ));
        }
        if new > i128::from(crate::fsops::MAX_FILE_SIZE) {
            return Err(CoreError::Overflow { what: "seek" });
        }
        *pos = new as u64;
        Ok(*pos)
    }
}

impl io::Read for &File {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(self.read_next(buf)?)
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
        Ok(self.write_next(buf)?)
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
        Ok(self.seek_to(to)?)
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
        let _ = self.finish();
        if self.m.open_count(self.ino, -1) == 0 {
            // The last handle of an unlinked file frees it; if that fails
            // the orphan is reclaimed by the next read-write mount.
            let _ = self.m.release_if_orphan(self.ino);
        }
    }
}
