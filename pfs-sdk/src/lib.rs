#![deny(unsafe_code)]
//! `libpfsd`: the C API of PolarDB's file-system SDK (`pfsd_sdk.h`) on
//! `pfs-core`, built as `libpfsd.so` and `libpfsd.a`.
//!
//! The reference SDK talks to a per-host daemon that holds the mount; this
//! one has no daemon: each process mounts the PBD itself (one mount per
//! process), and a process forked by one that mounted mounts again on its
//! first call (see [`sdk`] for fork and remount). The header is
//! `include/pfsd_sdk.h`; `install.sh` installs both.
//!
//! - [`sdk`]: the state and every call, in safe Rust;
//! - the private `sys` module: the exported C functions, the only `unsafe`
//!   code;
//! - [`SdkError`]: why a call failed, and the errno it reports.

mod error;
pub mod sdk;
#[allow(unsafe_code)]
mod sys;

pub use error::{Result, SdkError};
