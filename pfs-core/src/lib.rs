//! PFS devices, formatting, and (in later layers) mount, namespace and file IO.
//!
//! - [`device`]: the [`Device`] trait, block-device/file and memory devices;
//! - [`pbd`]: PBD names and the device paths they resolve to;
//! - [`mkfs`], [`growfs`]: formatting exactly as the reference does;
//! - [`meta`]: every chunk header and meta object of a device, read and
//!   validated, with the journal's committed entries applied;
//! - [`Mount`]: a mounted filesystem. Its namespace API speaks in inodes
//!   and (directory inode, name) as front ends do (`lookup`, `create`,
//!   `unlink`, `rmdir`, `rename`, `getattr`, `readdir`), with a thin path
//!   layer over one resolver (`resolve`, `stat_path`, `create_dir_all` ...);
//!   [`File`] is an owned open file with `Read`, `Write` and `Seek`.
//!
//! All `unsafe` code lives in the private `sys` module.

pub mod alloc;
pub mod clock;
pub mod device;
pub mod error;
pub mod file;
pub mod fsck;
pub mod fsops;
pub mod growfs;
pub mod hostlock;
pub mod lease;
pub mod meta;
pub mod mkfs;
pub mod mount;
mod names;
mod namespace;
pub mod ns;
pub mod path;
pub mod pbd;
pub mod sim;
mod sys;
pub mod trim;
mod tx;

pub use device::{Device, FileDevice, MemDevice};
pub use error::{CoreError, Result};
pub use file::{File, OpenOptions};
pub use fsops::{FallocMode, MAX_FILE_SIZE};
pub use mount::{Mode, Mount, MountOptions};
pub use names::check_name;
pub use namespace::{Attr, DirEntry, FileType, ReadDir};
