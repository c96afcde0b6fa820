//! PFS devices, formatting, and (in later layers) mount, namespace and file IO.
//!
//! - [`device`]: the [`Device`] trait, block-device/file and memory devices;
//! - [`pbd`]: PBD names and the device paths they resolve to;
//! - [`mkfs`], [`growfs`]: formatting exactly as the reference does;
//! - [`meta`]: every chunk header and meta object of a device, read and
//!   validated, with the journal's committed entries applied.
//!
//! All `unsafe` code lives in the private `sys` module.

pub mod alloc;
pub mod chain;
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
pub mod ns;
pub mod path;
pub mod pbd;
pub mod sim;
mod sys;
mod tx;

pub use device::{Device, FileDevice, MemDevice};
pub use error::{CoreError, Result};
