//! POSIX in one place for every front end (the C SDK, FUSE): open flags to
//! [`OpenOptions`], `fallocate` modes to [`FallocMode`], `lseek`'s whence
//! to [`SeekFrom`], and the `struct stat` view of an [`Attr`] ([`Stat`],
//! what the SDK's `stat` and FUSE's attributes both report). A front end
//! converts its C types and calls these; it decides none of it itself.

use crate::error::{CoreError, Result};
use crate::file::OpenOptions;
use crate::fsops::FallocMode;
use crate::namespace::{Attr, FileType};
use pfs_format::layout::BLOCK_SIZE;
use std::io::SeekFrom;

/// `FALLOC_FL_KEEP_SIZE`: allocate without changing the file size.
pub const FALLOC_FL_KEEP_SIZE: i32 = 0x01;
/// `FALLOC_FL_NO_HIDE_STALE`: new blocks are not zeroed; what they held
/// before shows (Linux reserves the bit; PolarDB uses it for files it
/// fills itself, and PFS implements it).
pub const FALLOC_FL_NO_HIDE_STALE: i32 = 0x04;

impl OpenOptions {
    /// The options POSIX `open(2)` flags ask for:
    ///
    /// - `O_ACCMODE`: `O_RDONLY` reads, `O_WRONLY` writes (a read is
    ///   `BadHandle`, EBADF), `O_RDWR` (and the unused value 3) both;
    /// - `O_CREAT`, `O_EXCL` (only with `O_CREAT`, as POSIX leaves it
    ///   otherwise), `O_APPEND`, `O_DIRECTORY`;
    /// - `O_TRUNC` only when opened for writing (POSIX leaves it unspecified
    ///   with `O_RDONLY`; PFS does not truncate then).
    ///
    /// Every other flag (`O_CLOEXEC`, `O_DIRECT`, `O_SYNC`, `O_NOATIME` ...)
    /// changes nothing: PFS writes are committed when they return.
    ///
    /// # Example
    ///
    /// The flags of a WAL writer:
    ///
    /// ```
    /// use pfs_core::OpenOptions;
    ///
    /// let o = OpenOptions::from_flags(libc::O_CREAT | libc::O_WRONLY | libc::O_APPEND | libc::O_CLOEXEC);
    /// let want = OpenOptions { create: true, write: true, write_only: true, append: true, ..OpenOptions::default() };
    /// assert_eq!(o, want);
    /// // O_TRUNC of a read-only open truncates nothing.
    /// assert!(!OpenOptions::from_flags(libc::O_RDONLY | libc::O_TRUNC).truncate);
    /// ```
    pub fn from_flags(flags: i32) -> OpenOptions {
        let access = flags & libc::O_ACCMODE;
        let write = access != libc::O_RDONLY;
        let create = flags & libc::O_CREAT != 0;
        OpenOptions {
            create,
            exclusive: create && flags & libc::O_EXCL != 0,
            truncate: write && flags & libc::O_TRUNC != 0,
            append: flags & libc::O_APPEND != 0,
            write,
            write_only: access == libc::O_WRONLY,
            directory: flags & libc::O_DIRECTORY != 0,
            write_behind: false,
        }
    }
}

impl FallocMode {
    /// The `fallocate(2)` modes PFS has: 0 (allocate, and grow the size to
    /// cover the range), [`FALLOC_FL_KEEP_SIZE`], [`FALLOC_FL_NO_HIDE_STALE`]
    /// and both together. Any other bit (`FALLOC_FL_PUNCH_HOLE`,
    /// `FALLOC_FL_ZERO_RANGE`, `FALLOC_FL_COLLAPSE_RANGE`,
    /// `FALLOC_FL_INSERT_RANGE`, `FALLOC_FL_UNSHARE_RANGE` ...) is
    /// `Unsupported` (EOPNOTSUPP): the reference ignores such bits and
    /// allocates, which for a punch or a zeroing is the opposite of what
    /// was asked.
    pub fn from_posix(mode: i32) -> Result<FallocMode> {
        if mode & !(FALLOC_FL_KEEP_SIZE | FALLOC_FL_NO_HIDE_STALE) != 0 {
            return Err(CoreError::Unsupported(format!("fallocate mode {mode:#x}")));
        }
        Ok(FallocMode {
            keep_size: mode & FALLOC_FL_KEEP_SIZE != 0,
            no_hide_stale: mode & FALLOC_FL_NO_HIDE_STALE != 0,
        })
    }
}

/// The position `lseek(fd, off, whence)` asks for: `SEEK_SET` (a negative
/// `off` is `InvalidArgument`, EINVAL), `SEEK_CUR`, `SEEK_END`. Any other
/// whence, `SEEK_DATA` and `SEEK_HOLE` included, is `InvalidArgument`.
/// [`crate::File::seek_to`] then refuses a negative result (EINVAL) and
/// one past [`crate::MAX_FILE_SIZE`] (EOVERFLOW).
pub fn seek_from(off: i64, whence: i32) -> Result<SeekFrom> {
    match whence {
        libc::SEEK_SET => u64::try_from(off).map(SeekFrom::Start).map_err(|_| {
            CoreError::InvalidArgument(format!("lseek: negative offset {off} from the start"))
        }),
        libc::SEEK_CUR => Ok(SeekFrom::Current(off)),
        libc::SEEK_END => Ok(SeekFrom::End(off)),
        _ => Err(CoreError::InvalidArgument(format!(
            "lseek: whence {whence}"
        ))),
    }
}

/// The `struct stat` of a file or directory: the one conversion of an
/// [`Attr`] every front end reports, in POSIX units, for it to copy into
/// its own type (the C SDK into `struct stat`, FUSE into the kernel's
/// attributes), so a file shows the same values through both. It is the
/// reference's `pfs_inodephy_stat` (which its `pfsd_stat` and its FUSE
/// both report), but for the access time (see [`Stat::st_atime`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// The inode number.
    pub st_ino: u64,
    /// `S_IFDIR` or `S_IFREG`, and permissions `0777`: PFS has none (any
    /// existing file is readable and, on the writer, writable).
    pub st_mode: u32,
    /// `in_nlink` (1 for any named file or directory, 0 for a file
    /// unlinked while open).
    pub st_nlink: u64,
    /// Size in bytes (a directory: 128 per entry).
    pub st_size: u64,
    /// 512-byte units of the 4 MiB blocks the file owns (allocated, not
    /// written: a block is owned whole).
    pub st_blocks: u64,
    /// The block size, 4 MiB (`mnt_blksize`, the chunk's `ck_blksize`):
    /// the unit PFS allocates in, and the IO size worth issuing.
    pub st_blksize: u64,
    /// The modification time: PFS keeps no access time. The reference
    /// reports `in_atime` here, which is not a time at all (0 when an
    /// inode is made, then a count of the commits that would otherwise
    /// leave the inode unchanged; [`Attr::atime`] has it, and `pfs stat`
    /// shows it as the reference's does), so programs that look at access
    /// times (`find -atime`, cleaners of old files, backups) would see
    /// every file as last read in 1970.
    pub st_atime: u64,
    /// Last modification, seconds since the epoch.
    pub st_mtime: u64,
    /// Last change, seconds since the epoch.
    pub st_ctime: u64,
}

impl Stat {
    /// `S_IFDIR` or `S_IFREG` with all permissions, as the reference sets.
    fn mode(kind: FileType) -> u32 {
        let ifmt = match kind {
            FileType::Dir => libc::S_IFDIR,
            FileType::File => libc::S_IFREG,
        };
        ifmt | 0o777
    }
}

impl From<&Attr> for Stat {
    fn from(a: &Attr) -> Stat {
        Stat {
            st_ino: a.ino,
            st_mode: Stat::mode(a.kind),
            st_nlink: a.nlink,
            st_size: a.size,
            st_blocks: a.nblock.saturating_mul(BLOCK_SIZE / 512),
            st_blksize: BLOCK_SIZE,
            st_atime: a.mtime,
            st_mtime: a.mtime,
            st_ctime: a.ctime,
        }
    }
}

impl Attr {
    /// The POSIX view of these attributes (see [`Stat`]).
    pub fn stat(&self) -> Stat {
        Stat::from(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_flags_map_as_posix_says() {
        let o = OpenOptions::from_flags(libc::O_RDONLY);
        assert_eq!(o, OpenOptions::default());
        let o = OpenOptions::from_flags(libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC);
        assert!(o.write && o.write_only && o.create && o.truncate && !o.exclusive);
        let o = OpenOptions::from_flags(libc::O_RDWR | libc::O_APPEND | libc::O_EXCL);
        assert!(o.write && !o.write_only && o.append);
        assert!(!o.exclusive, "O_EXCL without O_CREAT means nothing");
        let o = OpenOptions::from_flags(libc::O_RDONLY | libc::O_TRUNC | libc::O_DIRECTORY);
        assert!(!o.truncate && !o.write && o.directory);
        let o = OpenOptions::from_flags(libc::O_CREAT | libc::O_EXCL | libc::O_RDWR);
        assert!(o.create && o.exclusive);
        let o = OpenOptions::from_flags(libc::O_RDWR | libc::O_CLOEXEC | libc::O_DIRECT);
        assert_eq!(
            o,
            OpenOptions {
                write: true,
                ..OpenOptions::default()
            }
        );
    }

    #[test]
    fn fallocate_modes_pfs_has() {
        assert_eq!(FallocMode::from_posix(0).unwrap(), FallocMode::default());
        let m = FallocMode::from_posix(FALLOC_FL_KEEP_SIZE | FALLOC_FL_NO_HIDE_STALE).unwrap();
        assert!(m.keep_size && m.no_hide_stale);
        assert_eq!(FALLOC_FL_KEEP_SIZE, libc::FALLOC_FL_KEEP_SIZE);
        for bad in [
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            libc::FALLOC_FL_ZERO_RANGE,
            libc::FALLOC_FL_COLLAPSE_RANGE,
            libc::FALLOC_FL_INSERT_RANGE,
            libc::FALLOC_FL_UNSHARE_RANGE,
        ] {
            let e = FallocMode::from_posix(bad).unwrap_err();
            assert_eq!(e.errno(), libc::EOPNOTSUPP, "{bad:#x}");
        }
    }

    #[test]
    fn whence_maps_to_a_seek() {
        assert_eq!(seek_from(5, libc::SEEK_SET).unwrap(), SeekFrom::Start(5));
        assert_eq!(
            seek_from(-5, libc::SEEK_CUR).unwrap(),
            SeekFrom::Current(-5)
        );
        assert_eq!(seek_from(-5, libc::SEEK_END).unwrap(), SeekFrom::End(-5));
        for (off, whence) in [(-1, libc::SEEK_SET), (0, 99), (0, libc::SEEK_DATA)] {
            let e = seek_from(off, whence).unwrap_err();
            assert_eq!(e.errno(), libc::EINVAL, "{off} {whence}");
        }
    }

    #[test]
    fn stat_is_the_references() {
        let a = Attr {
            ino: 7,
            kind: FileType::File,
            size: 5 << 20,
            nblock: 2,
            nlink: 1,
            atime: 3,
            mtime: 1_700_000_000,
            ctime: 1_700_000_001,
            btime: 1_600_000_000_000_000,
        };
        let s = a.stat();
        assert_eq!(s.st_mode, libc::S_IFREG | 0o777);
        assert_eq!(s.st_blocks, 2 * 8192);
        assert_eq!(s.st_blksize, 4 << 20);
        assert_eq!(
            (s.st_atime, s.st_mtime, s.st_ctime),
            (1_700_000_000, 1_700_000_000, 1_700_000_001),
            "no access time: the modification time, not the counter in_atime"
        );
        assert_eq!((s.st_ino, s.st_nlink, s.st_size), (7, 1, 5 << 20));
        let d = Attr {
            kind: FileType::Dir,
            ..a
        };
        assert_eq!(d.stat().st_mode, libc::S_IFDIR | 0o777);
    }
}
