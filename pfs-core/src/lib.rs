//! PFS, the shared-disk filesystem of PolarDB, as a library: devices,
//! formatting, mounting (one writer, many following readers), the
//! namespace and file IO.
//!
//! - [`Device`]: block devices and files ([`FileDevice`], O_DIRECT on block
//!   devices), Ceph RBD images through librbd ([`rbd::RbdDevice`]) and
//!   memory ([`MemDevice`]); [`pbd`] maps PBD names to them;
//! - [`mkfs()`], [`growfs()`]: formatting exactly as the reference does;
//! - [`Mount`]: a mounted filesystem. A read-write mount is the single
//!   writer (it takes the writer lease at its first write, see [`Lease`]);
//!   read-only mounts follow it through the journal. Its namespace API
//!   speaks in inodes and (directory inode, name) as front ends do
//!   (`lookup`, `create_with`, `unlink`, `rmdir`, `rename_with`, `getattr`,
//!   `readdir`), with a thin path layer over one resolver (`resolve`,
//!   `stat_path`, `create_dir_all` ...); [`File`] is an owned open file
//!   with `Read`, `Write` and `Seek`;
//! - [`posix`]: POSIX for front ends in one place (open flags,
//!   `fallocate` modes, `lseek`'s whence, `struct stat`); [`PfsPath`] the
//!   one parser of `/<pbd>/...` paths;
//! - [`CoreError`]: every error, with the errno it maps to and a conversion
//!   into [`std::io::Error`];
//! - [`inspect`]: raw metadata for the tool's inspection commands.
//!
//! All `unsafe` code lives in the private `sys` module.
//!
//! # Example
//!
//! Format a (memory) device, mount it as the writer, make a directory and
//! a file, and read it back:
//!
//! ```
//! use pfs_core::{mkfs, Mode, MemDevice, Mount, MountOptions, MkfsOptions, OpenOptions};
//! use std::io::{Read, Write};
//! use std::sync::Arc;
//!
//! let dev = Arc::new(MemDevice::new("nvme1n1", 10 << 30));
//! mkfs(dev.as_ref(), &MkfsOptions::default())?;
//! let m = Arc::new(Mount::open_with(dev, Mode::ReadWrite, &MountOptions {
//!     hostid: 1,
//!     ..MountOptions::default()
//! })?);
//! m.mkdir_path("/wal")?;
//! let mut f = m.open_file("/wal/000000010000000000000001", OpenOptions {
//!     create: true,
//!     write: true,
//!     ..OpenOptions::default()
//! })?;
//! f.write_all(b"hello")?;
//! f.sync_all()?;
//! let mut back = String::new();
//! m.open_file("/wal/000000010000000000000001", OpenOptions::default())?
//!     .read_to_string(&mut back)?;
//! assert_eq!(back, "hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(unsafe_code)]

mod alloc;
mod chain;
mod clock;
mod datalock;
mod device;
mod error;
mod fence;
mod file;
mod flush;
mod forward;
mod freshread;
mod fsck;
mod fsops;
mod growfs;
mod hostlock;
mod lease;
mod live;
mod locks;
mod meta;
mod metacache;
mod mkfs;
mod mount;
mod names;
mod namespace;
mod ns;
mod objset;
mod overwrite;
mod path;
pub mod pbd;
pub mod posix;
pub mod rbd;
mod share;
#[cfg(feature = "testing")]
mod sim;
mod stripes;
#[allow(unsafe_code)]
mod sys;
mod system;
#[cfg(test)]
mod testutil;
mod threads;
mod trim;
mod tx;
mod writecache;

pub use chain::{TreeGuard, MAX_DEPTH};
pub use device::{write_zeros, AlignedBuf, Device, FileDevice, MemDevice, DIRECT_IO_ALIGN};
pub use error::{CoreError, Result};
pub use file::{File, OpenOptions};
pub use fsck::FsckReport;
pub use fsops::{FallocMode, MAX_FILE_SIZE};
pub use growfs::{growfs, GrowfsOptions};
pub use hostlock::HostLock;
pub use lease::{node_id, pid_alive, Lease, DEFAULT_LEASE_MS};

pub use metacache::{forget as forget_metaset_copy, META_CACHE_ENV};
pub use mkfs::{
    auto_log_size, chunk_is_formatted, chunks_of, mkfs, mkfs_with_clock, MkfsClock, MkfsOptions,
    MkfsSummary, DEFAULT_LOG_SIZE, DEFAULT_NUM_HOSTS,
};
pub use mount::{Committer, Mode, Mount, MountOptions, LEASE_MS_ENV, SIDE_BY_SIDE_ENV};
pub use names::check_name;
pub use namespace::{Attr, DirEntry, FileType, FsStats, ReadDir, Replace};
pub use system::is_system;

/// The format's sizes and fixed inode numbers a front end needs (block
/// size, longest name, the root directory's inode).
pub mod limits {
    pub use pfs_format::layout::{BLOCK_SIZE, MAX_NAME_LEN, ROOT_INO};
}
pub use ns::FileBlock;
/// Refuses ([`CoreError::Busy`]) to let a command overwrite a device while
/// any host, this one or another, holds or is taking its writer lease in
/// `.pfs-paxos`: what `mkfs -f` and `growfs` check, and what any other
/// command that rewrites a whole filesystem (a chunk restore, a
/// filesystem copy onto it) must check before it writes. The host-local
/// lock only keeps out writers of this machine; this reads the lease slots
/// every host writes. A claim whose heartbeat stays silent for its lease
/// plus a margin is waited out; a device without readable PFS metadata has
/// no lease and passes; a device read error is returned.
pub use overwrite::refuse_live_writer as ensure_no_live_writer;
pub use path::{BarePbd, PfsPath};
pub use trim::TrimReport;

/// The README's examples, compiled as doctests.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The SDK guide's examples (the Rust library's), compiled as doctests.
#[doc = include_str!("../../docs/sdk.md")]
#[cfg(doctest)]
pub struct SdkGuideDoctests;

/// Raw metadata as it is on disk, for the tool's inspection commands
/// (`dumpfs`, `dumple`, `info`, `usedinfo`) and for tests: not the API a
/// program should build on (that is [`Mount`]).
///
/// # Example
///
/// What the tool's `info` and `dumpfs` read (`m` is a read-write `Arc<Mount>` of a new filesystem):
///
/// ```
/// # struct Scratch(std::path::PathBuf);
/// # impl Drop for Scratch {
/// #     fn drop(&mut self) {
/// #         let _ = std::fs::remove_dir_all(&self.0);
/// #     }
/// # }
/// # let scratch = Scratch(std::env::temp_dir().join(format!("pfs-doc-inspect-{}", std::process::id())));
/// # std::fs::create_dir_all(&scratch.0)?;
/// # let dir = scratch.0.clone();
/// # let img = scratch.0.join("disk");
/// # std::fs::File::create(&img)?.set_len(10 << 30)?;
/// # let dev = std::sync::Arc::new(pfs_core::FileDevice::open("disk", &img, true)?);
/// # pfs_core::mkfs(dev.as_ref(), &pfs_core::MkfsOptions::default())?;
/// # let opts = pfs_core::MountOptions { hostid: 1, ..pfs_core::MountOptions::default() };
/// # let m = std::sync::Arc::new(pfs_core::Mount::open_with(dev, pfs_core::Mode::ReadWrite, &opts)?);
/// use pfs_core::inspect::{load_replayed, read_chunk0};
///
/// m.mkdir_path("/data")?;
/// let dev = m.device().as_ref();
/// let ck = read_chunk0(dev)?;
/// assert_eq!(ck.ck_nchunk.get(), 1);
/// assert_eq!(ck.ck_blksize.get(), 4 << 20);
///
/// // The metasets with the committed journal applied, as a mount sees them.
/// let (meta, leader) = load_replayed(dev)?;
/// assert_eq!(meta.nchunk, 1);
/// assert!(leader.head_txid.get() > 0); // the mkdir's transaction
/// assert_eq!(leader.num_hosts.get(), pfs_core::DEFAULT_NUM_HOSTS);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub mod inspect {
    pub use crate::clock::{ctime, now_secs};
    pub use crate::fsck::{check as fsck_image, check_device as fsck_device};
    pub use crate::meta::{load_replayed, read_chunk0, DeviceLog, Journal, MetaImage};
    pub use crate::ns::Entry;
}

/// Devices that simulate a crash at a chosen flush, fail chosen requests
/// or hold a write back, for crash, failure and race tests (feature
/// `testing`).
#[cfg(feature = "testing")]
pub mod testing {
    pub use crate::sim::{CrashDevice, FailingDevice, StallingDevice};
}
