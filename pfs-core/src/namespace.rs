//! The namespace API: inode based (`lookup(dir, name)`, `create(dir, name,
//! kind)` ...), as a FUSE server or an SDK speaks it, and a thin path layer
//! over one resolver.
//!
//! Names are bytes (they need not be UTF-8). Every change checks, inside
//! its transaction (under the mount's metadata lock), what it depends on:
//! two threads changing one directory through one [`Mount`] cannot both
//! succeed where only one may.
//!
//! `.pfs-paxos` and `.pfs-journal` (inodes 1 and 2) hold the leader record
//! and the journal: no operation renames, removes, writes, truncates or
//! allocates them.

use crate::error::{CoreError, Result};
use crate::fsops::{dir_add, dir_del, dir_move, release_inode};
use crate::meta::MetaImage;
use crate::mount::Mount;
use crate::names::check_name;
use crate::system::refuse_system;
use pfs_format::layout::{MAX_NAME_LEN, MAX_PATH_LEN, ROOT_INO};
use pfs_format::MetaType;

#[cfg(test)]
mod tests;

/// How full the filesystem is (`statfs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsStats {
    /// Size of a block, the unit of `blocks` and `blocks_free`.
    pub block_size: u64,
    /// Blocks in all.
    pub blocks: u64,
    /// Blocks free.
    pub blocks_free: u64,
    /// Inodes in all.
    pub inodes: u64,
    /// Inodes free.
    pub inodes_free: u64,
    /// Longest name.
    pub name_max: u64,
}

/// The type of an inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    /// A regular file.
    File,
    /// A directory.
    Dir,
}

/// Attributes of an inode (`getattr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    /// Inode number (stable for the inode's life).
    pub ino: u64,
    /// File or directory.
    pub kind: FileType,
    /// Size in bytes (directories: 128 per entry).
    pub size: u64,
    /// 4 MiB blocks owned.
    pub nblock: u64,
    /// Link count.
    pub nlink: u64,
    /// `in_atime` (a change counter, not an access time).
    pub atime: u64,
    /// Modification time, seconds.
    pub mtime: u64,
    /// Change time, seconds.
    pub ctime: u64,
    /// Birth time, microseconds.
    pub btime: u64,
}

impl Attr {
    /// Whether it is a directory.
    pub fn is_dir(&self) -> bool {
        self.kind == FileType::Dir
    }
}

/// Whether a rename may replace an existing target
/// ([`Mount::rename_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// Replace it when POSIX allows (`rename(2)`).
    Allow,
    /// Never: an existing target is `Exists` (`RENAME_NOREPLACE`).
    Never,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The name (any bytes but `/` and NUL).
    pub name: Vec<u8>,
    /// The inode it names.
    pub ino: u64,
    /// The inode's type.
    pub kind: FileType,
    /// The inode's birth time, microseconds ([`Attr::btime`]).
    pub btime: u64,
}

/// The entries of a directory as of one committed state, in the order they
/// were added (no `.` or `..`). Returned by [`Mount::readdir`].
#[derive(Debug, Clone)]
pub struct ReadDir {
    entries: std::vec::IntoIter<DirEntry>,
}

impl Iterator for ReadDir {
    type Item = DirEntry;
    fn next(&mut self) -> Option<DirEntry> {
        self.entries.next()
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.entries.size_hint()
    }
}

impl ExactSizeIterator for ReadDir {}

fn lossy(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

fn attr_of(meta: &MetaImage, ino: u64) -> Result<Attr> {
    let (_, i) = meta.inode(ino)?;
    meta.check_attrs(ino, i)?;
    Ok(Attr {
        ino,
        kind: if i.is_dir() {
            FileType::Dir
        } else {
            FileType::File
        },
        size: i.in_size.get(),
        nblock: i.in_nblock.get(),
        nlink: i.in_nlink.get(),
        atime: i.in_atime.get(),
        mtime: i.in_mtime.get(),
        ctime: i.in_ctime.get(),
        btime: i.in_btime.get(),
    })
}

/// One step of resolution: `.` is `dir`, `..` its parent (the root's is the
/// root), anything else a name in `dir`. `None` when there is no such name.
fn step(meta: &MetaImage, dir: u64, name: &[u8]) -> Result<Option<u64>> {
    if !meta.inode(dir)?.1.is_dir() {
        return Err(CoreError::NotDir {
            path: format!("inode {dir}"),
        });
    }
    match name {
        b"." => Ok(Some(dir)),
        b".." => meta.parent(dir).map(Some),
        _ => {
            if name.len() > MAX_NAME_LEN {
                return Err(CoreError::NameTooLong { path: lossy(name) });
            }
            if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
                return Err(check_name(name).err().unwrap_or(CoreError::InvalidName {
                    name: lossy(name),
                    reason: "not a name",
                }));
            }
            Ok(meta.find(dir, name)?.map(|e| e.ino))
        }
    }
}

/// `name` in `dir`, or `NotFound`.
fn lookup_in(meta: &MetaImage, dir: u64, name: &[u8]) -> Result<u64> {
    step(meta, dir, name)?.ok_or_else(|| CoreError::NotFound { path: lossy(name) })
}

/// Whether `ino` is `dir` or lies below it.
fn is_within(meta: &MetaImage, ino: u64, dir: u64) -> Result<bool> {
    let mut cur = ino;
    // A chain longer than the inodes a device can have is a cycle.
    let limit = u64::from(meta.nchunk) * u64::from(pfs_format::layout::INODES_PER_CHUNK);
    for _ in 0..=limit {
        if cur == dir {
            return Ok(true);
        }
        if cur == ROOT_INO {
            return Ok(false);
        }
        cur = meta.parent(cur)?;
    }
    Err(crate::ns::broken(
        pfs_format::MetaType::Inode,
        ino,
        "a directory chain that reaches the root",
        limit,
    ))
}

/// Creates `name` in `dir` in one transaction, checking under it that the
/// name is free. With `exclusive` false an existing file is returned
/// instead (`(ino, false)`).
fn create_in(
    m: &Mount,
    dir: u64,
    name: &[u8],
    kind: FileType,
    exclusive: bool,
) -> Result<(u64, bool)> {
    check_name(name)?;
    m.write_tx(|tx| {
        let meta = tx.meta();
        if let Some(ino) = step(meta, dir, name)? {
            if exclusive {
                return Err(CoreError::Exists { path: lossy(name) });
            }
            return match (kind, meta.inode(ino)?.1.is_dir()) {
                (FileType::File, true) => Err(CoreError::IsDir { path: lossy(name) }),
                (FileType::Dir, false) => Err(CoreError::NotDir { path: lossy(name) }),
                _ => Ok((ino, false)),
            };
        }
        let ino = dir_add(tx, dir, name, kind == FileType::Dir)?;
        Ok((ino, true))
    })
}

impl Mount {
    /// The inode `name` names in directory `dir`; `.` and `..` are `dir`
    /// and its parent.
    pub fn lookup(&self, dir: u64, name: &[u8]) -> Result<u64> {
        self.refresh()?;
        lookup_in(&self.state.read().meta, dir, name)
    }

    /// How full the filesystem is, as of the writer's last commit this
    /// mount has seen (`statfs`).
    ///
    /// # Example
    ///
    /// A new 10 GiB filesystem (`m` is a read-write `Arc<Mount>` of a new filesystem): 2560 blocks of 4 MiB, some of them
    /// taken by `.pfs-paxos` and `.pfs-journal`.
    ///
    /// ```
    /// # struct Scratch(std::path::PathBuf);
    /// # impl Drop for Scratch {
    /// #     fn drop(&mut self) {
    /// #         let _ = std::fs::remove_dir_all(&self.0);
    /// #     }
    /// # }
    /// # let scratch = Scratch(std::env::temp_dir().join(format!("pfs-doc-statfs-{}", std::process::id())));
    /// # std::fs::create_dir_all(&scratch.0)?;
    /// # let dir = scratch.0.clone();
    /// # let img = scratch.0.join("disk");
    /// # std::fs::File::create(&img)?.set_len(10 << 30)?;
    /// # let dev = std::sync::Arc::new(pfs_core::FileDevice::open("disk", &img, true)?);
    /// # pfs_core::mkfs(dev.as_ref(), &pfs_core::MkfsOptions::default())?;
    /// # let opts = pfs_core::MountOptions { hostid: 1, ..pfs_core::MountOptions::default() };
    /// # let m = std::sync::Arc::new(pfs_core::Mount::open_with(dev, pfs_core::Mode::ReadWrite, &opts)?);
    /// let st = m.statfs()?;
    /// assert_eq!(st.block_size, 4 << 20);
    /// assert_eq!(st.blocks, 2560);
    /// assert!(st.blocks_free < st.blocks);
    /// assert_eq!(st.name_max, 255);
    ///
    /// m.open_file("/f", pfs_core::OpenOptions { create: true, write: true, ..Default::default() })?
    ///     .write_at(b"one block", 0)?;
    /// assert_eq!(m.statfs()?.blocks_free, st.blocks_free - 1);
    /// assert_eq!(m.statfs()?.inodes_free, st.inodes_free - 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn statfs(&self) -> Result<FsStats> {
        self.with_meta(|meta| {
            let (bfree, bused) = meta.counts(MetaType::BlkTag);
            let (ifree, iused) = meta.counts(MetaType::Inode);
            FsStats {
                block_size: pfs_format::layout::BLOCK_SIZE,
                blocks: bfree + bused,
                blocks_free: bfree,
                inodes: ifree + iused,
                inodes_free: ifree,
                name_max: MAX_NAME_LEN as u64,
            }
        })
    }

    /// Attributes of inode `ino`.
    pub fn getattr(&self, ino: u64) -> Result<Attr> {
        self.refresh()?;
        attr_of(&self.state.read().meta, ino)
    }

    /// [`Mount::lookup`] and the attributes of what it finds, from one
    /// committed state: between a lookup and a getattr the writer of another
    /// host may free the inode and give its number to a new file.
    pub fn lookup_attr(&self, dir: u64, name: &[u8]) -> Result<Attr> {
        self.refresh()?;
        let st = self.state.read();
        attr_of(&st.meta, lookup_in(&st.meta, dir, name)?)
    }

    /// [`Mount::getattr`] of the file or directory born at `btime`
    /// ([`Attr::btime`]): [`CoreError::NotFound`] once the writer removed
    /// it, also when its inode number already names a newer one.
    pub fn getattr_born(&self, ino: u64, btime: u64) -> Result<Attr> {
        self.refresh()?;
        let st = self.state.read();
        let (_, mo) = st.meta.lookup(pfs_format::MetaType::Inode, ino)?;
        if !mo.is_used() || mo.inode().in_btime.get() != btime {
            return Err(crate::mount::gone(ino));
        }
        attr_of(&st.meta, ino)
    }

    /// The entries of directory `dir`, as of one committed state.
    ///
    /// # Example
    ///
    /// List a directory (`m` is a read-write `Arc<Mount>` of a new filesystem):
    ///
    /// ```
    /// # struct Scratch(std::path::PathBuf);
    /// # impl Drop for Scratch {
    /// #     fn drop(&mut self) {
    /// #         let _ = std::fs::remove_dir_all(&self.0);
    /// #     }
    /// # }
    /// # let scratch = Scratch(std::env::temp_dir().join(format!("pfs-doc-readdir-{}", std::process::id())));
    /// # std::fs::create_dir_all(&scratch.0)?;
    /// # let dir = scratch.0.clone();
    /// # let img = scratch.0.join("disk");
    /// # std::fs::File::create(&img)?.set_len(10 << 30)?;
    /// # let dev = std::sync::Arc::new(pfs_core::FileDevice::open("disk", &img, true)?);
    /// # pfs_core::mkfs(dev.as_ref(), &pfs_core::MkfsOptions::default())?;
    /// # let opts = pfs_core::MountOptions { hostid: 1, ..pfs_core::MountOptions::default() };
    /// # let m = std::sync::Arc::new(pfs_core::Mount::open_with(dev, pfs_core::Mode::ReadWrite, &opts)?);
    /// use pfs_core::{FileType, OpenOptions};
    ///
    /// let dir = m.mkdir_path("/base")?;
    /// m.mkdir_path("/base/global")?;
    /// m.open_file("/base/PG_VERSION", OpenOptions { create: true, write: true, ..OpenOptions::default() })?
    ///     .write_at(b"14\n", 0)?;
    ///
    /// // In the order the entries were added, without `.` and `..`.
    /// let names: Vec<(String, FileType)> = m
    ///     .readdir(dir)?
    ///     .map(|e| (String::from_utf8_lossy(&e.name).into_owned(), e.kind))
    ///     .collect();
    /// assert_eq!(names, [("global".into(), FileType::Dir), ("PG_VERSION".into(), FileType::File)]);
    /// assert_eq!(m.readdir_path("/base")?.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn readdir(&self, dir: u64) -> Result<ReadDir> {
        self.refresh()?;
        let st = self.state.read();
        let entries = st
            .meta
            .read_dir(dir)?
            .into_iter()
            .map(|e| {
                let a = attr_of(&st.meta, e.ino)?;
                Ok(DirEntry {
                    name: e.name,
                    ino: e.ino,
                    kind: a.kind,
                    btime: a.btime,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ReadDir {
            entries: entries.into_iter(),
        })
    }

    /// Creates a file or directory `name` in `dir`; returns its inode.
    /// Fails with `Exists` if the name is taken, `InvalidName` or
    /// `NameTooLong` for a name no entry may have
    /// ([`Mount::create_with`], exclusive).
    ///
    /// # Example
    ///
    /// The namespace by inode, as a FUSE server or an SDK uses it (`m` is a read-write `Arc<Mount>` of a new filesystem):
    ///
    /// ```
    /// # struct Scratch(std::path::PathBuf);
    /// # impl Drop for Scratch {
    /// #     fn drop(&mut self) {
    /// #         let _ = std::fs::remove_dir_all(&self.0);
    /// #     }
    /// # }
    /// # let scratch = Scratch(std::env::temp_dir().join(format!("pfs-doc-create-{}", std::process::id())));
    /// # std::fs::create_dir_all(&scratch.0)?;
    /// # let dir = scratch.0.clone();
    /// # let img = scratch.0.join("disk");
    /// # std::fs::File::create(&img)?.set_len(10 << 30)?;
    /// # let dev = std::sync::Arc::new(pfs_core::FileDevice::open("disk", &img, true)?);
    /// # pfs_core::mkfs(dev.as_ref(), &pfs_core::MkfsOptions::default())?;
    /// # let opts = pfs_core::MountOptions { hostid: 1, ..pfs_core::MountOptions::default() };
    /// # let m = std::sync::Arc::new(pfs_core::Mount::open_with(dev, pfs_core::Mode::ReadWrite, &opts)?);
    /// use pfs_core::{limits::ROOT_INO, CoreError, FileType};
    ///
    /// let wal = m.create(ROOT_INO, b"wal", FileType::Dir)?;
    /// let seg = m.create(wal, b"000000010000000000000001", FileType::File)?;
    /// assert_eq!(m.lookup(wal, b"000000010000000000000001")?, seg);
    /// assert_eq!(m.lookup(wal, b"..")?, ROOT_INO);
    /// assert_eq!(m.getattr(seg)?.kind, FileType::File);
    ///
    /// // A name is created once; names are checked.
    /// let again = m.create(wal, b"000000010000000000000001", FileType::File);
    /// assert!(matches!(again, Err(CoreError::Exists { .. })));
    /// assert_eq!(m.create(wal, b"a/b", FileType::File).unwrap_err().errno(), libc::EINVAL);
    /// let long = [b'x'; 256];
    /// assert_eq!(m.create(wal, &long, FileType::File).unwrap_err().errno(), libc::ENAMETOOLONG);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create(&self, dir: u64, name: &[u8], kind: FileType) -> Result<u64> {
        self.create_with(dir, name, kind, true).map(|(ino, _)| ino)
    }

    /// Creates a file or directory `name` in `dir` (`open` with `O_CREAT`,
    /// `mknod`, `mkdir`): returns its inode and whether it was created.
    /// The name is checked inside the transaction that adds it, so of two
    /// threads or processes creating one name, one creates it and the
    /// other finds it. A name that is taken is `Exists` with `exclusive`
    /// (`O_EXCL`); without, the inode there is returned, unless it is of
    /// the other kind (`IsDir` for a file, `NotDir` for a directory). An
    /// existing entry is found without a transaction, so also on a
    /// read-only mount.
    pub fn create_with(
        &self,
        dir: u64,
        name: &[u8],
        kind: FileType,
        exclusive: bool,
    ) -> Result<(u64, bool)> {
        if !exclusive {
            if let Ok(a) = self.lookup_attr(dir, name) {
                return match (kind, a.kind) {
                    (FileType::File, FileType::Dir) => Err(CoreError::IsDir { path: lossy(name) }),
                    (FileType::Dir, FileType::File) => Err(CoreError::NotDir { path: lossy(name) }),
                    _ => Ok((a.ino, false)),
                };
            }
        }
        create_in(self, dir, name, kind, exclusive)
    }

    /// Removes file `name` from `dir`. If the file is open, its inode and
    /// blocks stay until the last handle closes.
    pub fn unlink(&self, dir: u64, name: &[u8]) -> Result<()> {
        // Its transactions and the freeing that follows them are one step
        // among the processes of a shared host.
        let _host = self.host_tx()?;
        let ino = self.write_tx(|tx| {
            let meta = tx.meta();
            let ino = lookup_in(meta, dir, name)?;
            refuse_system(ino, "removing it", || lossy(name))?;
            if meta.inode(ino)?.1.is_dir() {
                return Err(CoreError::IsDir { path: lossy(name) });
            }
            dir_del(tx, dir, ino)?;
            Ok(ino)
        })?;
        self.release_unlinked(ino)
    }

    /// Frees a file whose name is gone, unless a handle still has it open.
    fn release_unlinked(&self, ino: u64) -> Result<()> {
        if self.is_open(ino) {
            // Freed when its last handle closes.
            return Ok(());
        }
        self.release_if_orphan(ino)
    }

    /// Removes empty directory `name` from `dir`.
    pub fn rmdir(&self, dir: u64, name: &[u8]) -> Result<()> {
        check_name(name)?;
        // Its transactions and the freeing that follows them are one step
        // among the processes of a shared host.
        let _host = self.host_tx()?;
        let ino = self.write_tx(|tx| {
            let meta = tx.meta();
            let ino = lookup_in(meta, dir, name)?;
            let (mo, i) = meta.inode(ino)?;
            if !i.is_dir() {
                return Err(CoreError::NotDir { path: lossy(name) });
            }
            if mo.mo_next.get() != 0 {
                return Err(CoreError::NotEmpty { path: lossy(name) });
            }
            dir_del(tx, dir, ino)?;
            Ok(ino)
        })?;
        self.write_tx(|tx| release_inode(tx, ino))
    }

    /// Renames `old_name` in `old_dir` to `new_name` in `new_dir`, in one
    /// transaction. An existing target is replaced when POSIX allows it (a
    /// file by a file, an empty directory by a directory); a directory
    /// cannot move below itself.
    pub fn rename(
        &self,
        old_dir: u64,
        old_name: &[u8],
        new_dir: u64,
        new_name: &[u8],
    ) -> Result<()> {
        self.rename_with(old_dir, old_name, new_dir, new_name, Replace::Allow)
    }

    /// [`Mount::rename`], replacing an existing target or not
    /// (`renameat2`'s `RENAME_NOREPLACE`): with [`Replace::Never`] a
    /// target that exists, checked inside the transaction that renames, is
    /// `Exists` (EEXIST) and nothing changes, also when it is the source
    /// itself, as Linux has it.
    ///
    /// # Example
    ///
    /// Rename without replacing (`m` is a read-write `Arc<Mount>` of a new filesystem):
    ///
    /// ```
    /// # struct Scratch(std::path::PathBuf);
    /// # impl Drop for Scratch {
    /// #     fn drop(&mut self) {
    /// #         let _ = std::fs::remove_dir_all(&self.0);
    /// #     }
    /// # }
    /// # let scratch = Scratch(std::env::temp_dir().join(format!("pfs-doc-rename-with-{}", std::process::id())));
    /// # std::fs::create_dir_all(&scratch.0)?;
    /// # let dir = scratch.0.clone();
    /// # let img = scratch.0.join("disk");
    /// # std::fs::File::create(&img)?.set_len(10 << 30)?;
    /// # let dev = std::sync::Arc::new(pfs_core::FileDevice::open("disk", &img, true)?);
    /// # pfs_core::mkfs(dev.as_ref(), &pfs_core::MkfsOptions::default())?;
    /// # let opts = pfs_core::MountOptions { hostid: 1, ..pfs_core::MountOptions::default() };
    /// # let m = std::sync::Arc::new(pfs_core::Mount::open_with(dev, pfs_core::Mode::ReadWrite, &opts)?);
    /// use pfs_core::{limits::ROOT_INO, CoreError, FileType, Replace};
    ///
    /// m.create(ROOT_INO, b"a", FileType::File)?;
    /// m.create(ROOT_INO, b"b", FileType::File)?;
    /// let r = m.rename_with(ROOT_INO, b"a", ROOT_INO, b"b", Replace::Never);
    /// assert!(matches!(r, Err(CoreError::Exists { .. })));
    /// m.rename_with(ROOT_INO, b"a", ROOT_INO, b"c", Replace::Never)?;
    /// assert!(m.lookup(ROOT_INO, b"a").is_err());
    /// // `rename` replaces, as rename(2) does.
    /// m.rename(ROOT_INO, b"c", ROOT_INO, b"b")?;
    /// assert_eq!(m.readdir(ROOT_INO)?.filter(|e| !e.name.starts_with(b".")).count(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rename_with(
        &self,
        old_dir: u64,
        old_name: &[u8],
        new_dir: u64,
        new_name: &[u8],
        replace: Replace,
    ) -> Result<()> {
        check_name(old_name)?;
        check_name(new_name)?;
        // Its transactions and the freeing that follows them are one step
        // among the processes of a shared host.
        let _host = self.host_tx()?;
        let replaced = self.write_tx(|tx| {
            let meta = tx.meta();
            let src = lookup_in(meta, old_dir, old_name)?;
            refuse_system(src, "renaming it", || lossy(old_name))?;
            let src_dir = meta.inode(src)?.1.is_dir();
            if src_dir && is_within(meta, new_dir, src)? {
                return Err(CoreError::InvalidArgument(format!(
                    "rename: cannot move {} below itself",
                    lossy(old_name)
                )));
            }
            let target = step(meta, new_dir, new_name)?;
            if target.is_some() && replace == Replace::Never {
                return Err(CoreError::Exists {
                    path: lossy(new_name),
                });
            }
            if target == Some(src) {
                return Ok(None);
            }
            if let Some(t) = target {
                refuse_system(t, "replacing it", || lossy(new_name))?;
                let (t_mo, t_i) = meta.inode(t)?;
                match (t_i.is_dir(), src_dir) {
                    (true, false) => {
                        return Err(CoreError::IsDir {
                            path: lossy(new_name),
                        })
                    }
                    (false, true) => {
                        return Err(CoreError::NotDir {
                            path: lossy(new_name),
                        })
                    }
                    (true, true) if t_mo.mo_next.get() != 0 => {
                        return Err(CoreError::NotEmpty {
                            path: lossy(new_name),
                        })
                    }
                    _ => {}
                }
            }
            let deno = meta.inode(src)?.1.in_deno.get();
            if let Some(t) = target {
                dir_del(tx, new_dir, t)?;
            }
            dir_move(tx, old_dir, deno, new_dir, new_name)?;
            Ok(target)
        })?;
        match replaced {
            Some(t) => self.release_unlinked(t),
            None => Ok(()),
        }
    }

    /// Sets the modification time of file or directory `ino` to `mtime`
    /// (seconds since the epoch, as `in_mtime` holds it; what `utimes`
    /// asks for) and its change time to now, in one transaction. Nothing
    /// is written when it already has that modification time.
    pub fn set_mtime(&self, ino: u64, mtime: u64) -> Result<()> {
        refuse_system(ino, "setting its time", || format!("inode {ino}"))?;
        self.write_tx(|tx| {
            if tx.meta().inode(ino)?.1.in_mtime.get() == mtime {
                return Ok(());
            }
            let now = tx.now;
            let i = tx.take_no(MetaType::Inode, ino)?.1.inode_mut();
            i.in_mtime.set(mtime);
            i.in_ctime.set(now);
            Ok(())
        })
    }
}

/// A path inside a filesystem, split.
struct Split<'p> {
    components: Vec<&'p [u8]>,
    /// Ends in `/`: the target must be a directory.
    must_be_dir: bool,
    shown: String,
}

/// Splits an in-filesystem path (`/dir/file`): it starts with `/`, empty
/// components are ignored, a trailing `/` requires a directory.
fn split(path: &[u8]) -> Result<Split<'_>> {
    let shown = lossy(path);
    if path.len() > MAX_PATH_LEN {
        return Err(CoreError::NameTooLong { path: shown });
    }
    if path.first() != Some(&b'/') {
        return Err(CoreError::BadPath {
            path: shown,
            reason: "paths inside a filesystem start with '/'",
        });
    }
    if path.contains(&0) {
        return Err(CoreError::BadPath {
            path: shown,
            reason: "a path cannot contain a NUL byte",
        });
    }
    let components: Vec<&[u8]> = path
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .collect();
    if components.iter().any(|c| c.len() > MAX_NAME_LEN) {
        return Err(CoreError::NameTooLong { path: shown });
    }
    Ok(Split {
        components,
        must_be_dir: path.ends_with(b"/"),
        shown,
    })
}

/// Puts the whole path in a lookup error that names only one component.
fn with_path(e: CoreError, shown: &str) -> CoreError {
    match e {
        CoreError::NotFound { .. } => CoreError::NotFound {
            path: shown.to_owned(),
        },
        CoreError::NotDir { .. } => CoreError::NotDir {
            path: shown.to_owned(),
        },
        CoreError::NameTooLong { .. } => CoreError::NameTooLong {
            path: shown.to_owned(),
        },
        other => other,
    }
}

/// Resolves components from the root in one committed state: the one
/// resolver every path operation uses.
fn walk(meta: &MetaImage, components: &[&[u8]], must_be_dir: bool) -> Result<u64> {
    let mut ino = ROOT_INO;
    for c in components {
        ino = lookup_in(meta, ino, c)?;
    }
    if must_be_dir && !meta.inode(ino)?.1.is_dir() {
        return Err(CoreError::NotDir {
            path: format!("inode {ino}"),
        });
    }
    Ok(ino)
}

impl Mount {
    /// Resolves an in-filesystem path (`/dir/file`, `.` and `..` allowed;
    /// a trailing `/` requires a directory) to an inode.
    pub fn resolve(&self, path: impl AsRef<[u8]>) -> Result<u64> {
        let p = split(path.as_ref())?;
        self.refresh()?;
        walk(&self.state.read().meta, &p.components, p.must_be_dir)
            .map_err(|e| with_path(e, &p.shown))
    }

    /// Resolves all but the last component of `path` to a directory;
    /// returns it and the last component. The root alone has no last
    /// component (`Exists`, as creating it would be).
    pub fn resolve_parent<'p>(&self, path: &'p [u8]) -> Result<(u64, &'p [u8])> {
        let p = split(path)?;
        let (last, parents) = p.components.split_last().ok_or_else(|| CoreError::Exists {
            path: p.shown.clone(),
        })?;
        self.refresh()?;
        let dir =
            walk(&self.state.read().meta, parents, true).map_err(|e| with_path(e, &p.shown))?;
        Ok((dir, last))
    }

    /// Attributes of the file or directory at `path`, both looked up in
    /// one committed state (so `ino` and `btime` name the same file).
    ///
    /// # Example
    ///
    /// `stat` (`m` is a read-write `Arc<Mount>` of a new filesystem):
    ///
    /// ```
    /// # struct Scratch(std::path::PathBuf);
    /// # impl Drop for Scratch {
    /// #     fn drop(&mut self) {
    /// #         let _ = std::fs::remove_dir_all(&self.0);
    /// #     }
    /// # }
    /// # let scratch = Scratch(std::env::temp_dir().join(format!("pfs-doc-stat-path-{}", std::process::id())));
    /// # std::fs::create_dir_all(&scratch.0)?;
    /// # let dir = scratch.0.clone();
    /// # let img = scratch.0.join("disk");
    /// # std::fs::File::create(&img)?.set_len(10 << 30)?;
    /// # let dev = std::sync::Arc::new(pfs_core::FileDevice::open("disk", &img, true)?);
    /// # pfs_core::mkfs(dev.as_ref(), &pfs_core::MkfsOptions::default())?;
    /// # let opts = pfs_core::MountOptions { hostid: 1, ..pfs_core::MountOptions::default() };
    /// # let m = std::sync::Arc::new(pfs_core::Mount::open_with(dev, pfs_core::Mode::ReadWrite, &opts)?);
    /// use pfs_core::{CoreError, FileType, OpenOptions};
    ///
    /// m.mkdir_path("/pg_wal")?;
    /// let f = m.open_file("/pg_wal/seg", OpenOptions { create: true, write: true, ..OpenOptions::default() })?;
    /// f.write_at(&[7u8; 100], 4096)?;
    ///
    /// let a = m.stat_path("/pg_wal/seg")?;
    /// assert_eq!((a.kind, a.size, a.nblock, a.nlink), (FileType::File, 4196, 1, 1));
    /// assert_eq!(a.ino, f.ino());
    /// assert_eq!(m.stat_path("/pg_wal/./../pg_wal/seg")?, a);
    /// assert!(m.stat_path("/pg_wal/")?.is_dir());
    /// // A trailing `/` asks for a directory.
    /// assert!(matches!(m.stat_path("/pg_wal/seg/"), Err(CoreError::NotDir { .. })));
    /// assert_eq!(m.stat_path("/nothing").unwrap_err().errno(), libc::ENOENT);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stat_path(&self, path: impl AsRef<[u8]>) -> Result<Attr> {
        let p = split(path.as_ref())?;
        self.refresh()?;
        let st = self.state.read();
        let ino =
            walk(&st.meta, &p.components, p.must_be_dir).map_err(|e| with_path(e, &p.shown))?;
        attr_of(&st.meta, ino)
    }

    /// Resolves `path` as [`Mount::resolve`] does and names what it finds
    /// the short way, from the root: each `.` and `..` is followed through
    /// the namespace, one step at a time, and leaves no trace (`..` is the
    /// parent, the root's is the root), so `/a/./b/../c/` names `/a/c`
    /// when `/a/b` is a directory, and fails as a lookup of it would
    /// otherwise (a file before `..` is `NotDir`). The root is `/`.
    /// Returns the attributes too, from the same committed state: a
    /// working directory is set this way.
    pub fn canonical_path(&self, path: impl AsRef<[u8]>) -> Result<(Attr, Vec<u8>)> {
        let p = split(path.as_ref())?;
        self.refresh()?;
        let st = self.state.read();
        let mut ino = ROOT_INO;
        let mut names: Vec<&[u8]> = Vec::new();
        for c in &p.components {
            ino = lookup_in(&st.meta, ino, c).map_err(|e| with_path(e, &p.shown))?;
            match *c {
                b"." => {}
                b".." => {
                    names.pop();
                }
                name => names.push(name),
            }
        }
        let attr = attr_of(&st.meta, ino)?;
        if p.must_be_dir && !attr.is_dir() {
            return Err(CoreError::NotDir { path: p.shown });
        }
        let mut named = Vec::with_capacity(path.as_ref().len().max(1));
        for n in &names {
            named.push(b'/');
            named.extend_from_slice(n);
        }
        if named.is_empty() {
            named.push(b'/');
        }
        Ok((attr, named))
    }

    /// Succeeds when `path` exists (PFS has no permissions: every existing
    /// file is readable and, on the writer, writable).
    pub fn access(&self, path: impl AsRef<[u8]>) -> Result<()> {
        self.resolve(path).map(|_| ())
    }

    /// The entries of directory `path` (see [`Mount::readdir`]).
    pub fn readdir_path(&self, path: impl AsRef<[u8]>) -> Result<ReadDir> {
        let p = path.as_ref();
        let ino = self.resolve(p)?;
        if !self.getattr(ino)?.is_dir() {
            return Err(CoreError::NotDir { path: lossy(p) });
        }
        self.readdir(ino)
    }

    /// Creates a file or directory at `path`; `.` or `..` as the last
    /// component, or the root, is `Exists`.
    pub fn create_path(&self, path: impl AsRef<[u8]>, kind: FileType) -> Result<u64> {
        self.create_path_with(path.as_ref(), kind, true)
            .map(|(ino, _)| ino)
    }

    /// Like [`Mount::create_path`]; with `exclusive` false an existing file
    /// is returned instead. Returns the inode and whether it was created.
    pub(crate) fn create_path_with(
        &self,
        path: &[u8],
        kind: FileType,
        exclusive: bool,
    ) -> Result<(u64, bool)> {
        let shown = lossy(path);
        let (dir, name) = self.resolve_parent(path)?;
        if name == b"." || name == b".." {
            return Err(CoreError::Exists { path: shown });
        }
        if kind == FileType::File && path.ends_with(b"/") {
            return Err(match self.lookup(dir, name) {
                Ok(ino) if !self.getattr(ino)?.is_dir() => CoreError::NotDir { path: shown },
                _ => CoreError::IsDir { path: shown },
            });
        }
        self.create_with(dir, name, kind, exclusive)
            .map_err(|e| match e {
                CoreError::Exists { .. } => CoreError::Exists { path: shown },
                CoreError::IsDir { .. } => CoreError::IsDir { path: shown },
                CoreError::NotDir { .. } => CoreError::NotDir { path: shown },
                other => other,
            })
    }

    /// Creates directory `path`.
    pub fn mkdir_path(&self, path: impl AsRef<[u8]>) -> Result<u64> {
        self.create_path(path, FileType::Dir)
    }

    /// Creates directory `path` and any missing parents; an existing
    /// directory is fine (`mkdir -p`). `.` and `..` move as in any path:
    /// `/a/../b` creates `/a` and `/b`.
    ///
    /// # Example
    ///
    /// `mkdir -p`, `rmdir` and `rm` by path (`m` is a read-write `Arc<Mount>` of a new filesystem):
    ///
    /// ```
    /// # struct Scratch(std::path::PathBuf);
    /// # impl Drop for Scratch {
    /// #     fn drop(&mut self) {
    /// #         let _ = std::fs::remove_dir_all(&self.0);
    /// #     }
    /// # }
    /// # let scratch = Scratch(std::env::temp_dir().join(format!("pfs-doc-create-dir-all-{}", std::process::id())));
    /// # std::fs::create_dir_all(&scratch.0)?;
    /// # let dir = scratch.0.clone();
    /// # let img = scratch.0.join("disk");
    /// # std::fs::File::create(&img)?.set_len(10 << 30)?;
    /// # let dev = std::sync::Arc::new(pfs_core::FileDevice::open("disk", &img, true)?);
    /// # pfs_core::mkfs(dev.as_ref(), &pfs_core::MkfsOptions::default())?;
    /// # let opts = pfs_core::MountOptions { hostid: 1, ..pfs_core::MountOptions::default() };
    /// # let m = std::sync::Arc::new(pfs_core::Mount::open_with(dev, pfs_core::Mode::ReadWrite, &opts)?);
    /// use pfs_core::{CoreError, FileType};
    ///
    /// let leaf = m.create_dir_all("/a/b/c")?;
    /// assert_eq!(m.create_dir_all("/a/b/c")?, leaf);
    /// m.create_path("/a/b/c/file", FileType::File)?;
    ///
    /// assert!(matches!(m.rmdir_path("/a/b/c"), Err(CoreError::NotEmpty { .. })));
    /// m.unlink_path("/a/b/c/file")?;
    /// m.rmdir_path("/a/b/c")?;
    /// assert!(m.access("/a/b").is_ok());
    /// assert!(m.access("/a/b/c").is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_dir_all(&self, path: impl AsRef<[u8]>) -> Result<u64> {
        let p = split(path.as_ref())?;
        let mut dir = ROOT_INO;
        for c in &p.components {
            dir = match self.lookup(dir, c) {
                Ok(ino) => ino,
                Err(CoreError::NotFound { .. }) => {
                    self.create_with(dir, c, FileType::Dir, false)?.0
                }
                Err(e) => return Err(with_path(e, &p.shown)),
            };
            if !self.getattr(dir)?.is_dir() {
                return Err(CoreError::NotDir { path: p.shown });
            }
        }
        Ok(dir)
    }

    /// Removes empty directory `path`.
    pub fn rmdir_path(&self, path: impl AsRef<[u8]>) -> Result<()> {
        let path = path.as_ref();
        let (dir, name) = self.resolve_parent(path)?;
        self.rmdir(dir, name)
            .map_err(|e| with_path(e, &lossy(path)))
    }

    /// Removes file `path` (see [`Mount::unlink`]).
    pub fn unlink_path(&self, path: impl AsRef<[u8]>) -> Result<()> {
        let path = path.as_ref();
        let shown = lossy(path);
        let (dir, name) = self.resolve_parent(path)?;
        if path.ends_with(b"/") {
            return Err(CoreError::IsDir { path: shown });
        }
        self.unlink(dir, name).map_err(|e| match e {
            CoreError::IsDir { .. } => CoreError::IsDir { path: shown },
            CoreError::SystemFile { op, .. } => CoreError::SystemFile { path: shown, op },
            other => with_path(other, &shown),
        })
    }

    /// Renames `from` to `to` (see [`Mount::rename`]).
    ///
    /// # Example
    ///
    /// Move a file into another directory, replacing what is there (`m` is a read-write `Arc<Mount>` of a new filesystem):
    ///
    /// ```
    /// # struct Scratch(std::path::PathBuf);
    /// # impl Drop for Scratch {
    /// #     fn drop(&mut self) {
    /// #         let _ = std::fs::remove_dir_all(&self.0);
    /// #     }
    /// # }
    /// # let scratch = Scratch(std::env::temp_dir().join(format!("pfs-doc-rename-path-{}", std::process::id())));
    /// # std::fs::create_dir_all(&scratch.0)?;
    /// # let dir = scratch.0.clone();
    /// # let img = scratch.0.join("disk");
    /// # std::fs::File::create(&img)?.set_len(10 << 30)?;
    /// # let dev = std::sync::Arc::new(pfs_core::FileDevice::open("disk", &img, true)?);
    /// # pfs_core::mkfs(dev.as_ref(), &pfs_core::MkfsOptions::default())?;
    /// # let opts = pfs_core::MountOptions { hostid: 1, ..pfs_core::MountOptions::default() };
    /// # let m = std::sync::Arc::new(pfs_core::Mount::open_with(dev, pfs_core::Mode::ReadWrite, &opts)?);
    /// use pfs_core::{FileType, OpenOptions};
    /// use std::io::Read;
    ///
    /// m.mkdir_path("/tmp")?;
    /// m.mkdir_path("/data")?;
    /// let new = m.open_file("/tmp/conf", OpenOptions { create: true, write: true, ..OpenOptions::default() })?;
    /// new.write_at(b"new", 0)?;
    /// new.sync_all()?;
    /// m.create_path("/data/conf", FileType::File)?;
    ///
    /// m.rename_path("/tmp/conf", "/data/conf")?;
    /// let mut s = String::new();
    /// m.open_file("/data/conf", OpenOptions::default())?.read_to_string(&mut s)?;
    /// assert_eq!(s, "new");
    /// assert_eq!(m.readdir_path("/tmp")?.len(), 0);
    /// assert_eq!(m.rename_path("/tmp/conf", "/x").unwrap_err().errno(), libc::ENOENT);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rename_path(&self, from: impl AsRef<[u8]>, to: impl AsRef<[u8]>) -> Result<()> {
        let (from, to) = (from.as_ref(), to.as_ref());
        let (odir, oname) = self.resolve_parent(from)?;
        // The source is looked for first (checked again under the
        // transaction), so a missing source is reported as such.
        self.lookup(odir, oname)
            .map_err(|e| with_path(e, &lossy(from)))?;
        let (ndir, nname) = self.resolve_parent(to)?;
        self.rename(odir, oname, ndir, nname).map_err(|e| match e {
            CoreError::NotFound { .. } => CoreError::NotFound { path: lossy(from) },
            CoreError::SystemFile { op, path } => CoreError::SystemFile {
                path: if path.as_bytes() == oname {
                    lossy(from)
                } else {
                    lossy(to)
                },
                op,
            },
            CoreError::IsDir { .. } => CoreError::IsDir { path: lossy(to) },
            CoreError::NotDir { .. } => CoreError::NotDir { path: lossy(to) },
            CoreError::NotEmpty { .. } => CoreError::NotEmpty { path: lossy(to) },
            CoreError::Exists { .. } => CoreError::Exists { path: lossy(to) },
            other => other,
        })
    }

    /// Sets the size of file `path` (see [`Mount::truncate`]).
    ///
    /// # Example
    ///
    /// Shrink and grow a file (`m` is a read-write `Arc<Mount>` of a new filesystem):
    ///
    /// ```
    /// # struct Scratch(std::path::PathBuf);
    /// # impl Drop for Scratch {
    /// #     fn drop(&mut self) {
    /// #         let _ = std::fs::remove_dir_all(&self.0);
    /// #     }
    /// # }
    /// # let scratch = Scratch(std::env::temp_dir().join(format!("pfs-doc-truncate-path-{}", std::process::id())));
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
    /// f.write_at(b"0123456789", 0)?;
    /// m.truncate_path("/f", 4)?;
    /// let mut buf = [0u8; 10];
    /// assert_eq!(f.read_at(&mut buf, 0)?, 4);
    /// assert_eq!(&buf[..4], b"0123");
    ///
    /// // Growing leaves a hole that reads as zeros and owns no block.
    /// m.truncate_path("/f", 10 << 20)?;
    /// let a = m.stat_path("/f")?;
    /// assert_eq!((a.size, a.nblock), (10 << 20, 1));
    /// assert_eq!(f.read_at(&mut buf, 8 << 20)?, 10);
    /// assert_eq!(buf, [0; 10]);
    /// assert!(m.truncate_path("/", 0).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn truncate_path(&self, path: impl AsRef<[u8]>, len: u64) -> Result<()> {
        let path = path.as_ref();
        let ino = self.resolve(path)?;
        self.truncate(ino, len).map_err(|e| match e {
            CoreError::IsDir { .. } => CoreError::IsDir { path: lossy(path) },
            CoreError::SystemFile { op, .. } => CoreError::SystemFile {
                path: lossy(path),
                op,
            },
            other => other,
        })
    }
}
