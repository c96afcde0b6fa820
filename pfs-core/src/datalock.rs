//! File data locks. A write holds its file's lock shared while it puts
//! bytes into the file's blocks; a truncate holds it alone. The blocks a
//! truncate frees go to the next file that grows, so no write may still be
//! on its way to them: without the lock, a write that looked up a block
//! just before a truncate freed it would land in another file's data.
//!
//! Threads of one process meet in a reader-writer lock per stripe of inode
//! numbers; on a shared mount the processes of the machine mounted with
//! one host id meet in a byte-range lock per inode in the shared file
//! ([`crate::share`]). The
//! order is always this lock, then the host's transaction lock.

use crate::error::Result;
use crate::share::Share;
use crate::stripes::Stripes;
use parking_lot::{RwLockReadGuard, RwLockWriteGuard};

/// The in-process part of a held data lock.
enum Local<'a> {
    Shared { _held: RwLockReadGuard<'a, ()> },
    Exclusive { _held: RwLockWriteGuard<'a, ()> },
}

/// A file's data lock, held until dropped.
pub(crate) struct DataGuard<'a> {
    share: Option<&'a Share>,
    hostid: u64,
    ino: u64,
    local: Local<'a>,
}

impl<'a> DataGuard<'a> {
    /// Takes inode `ino`'s data lock, shared (a write) or alone (a
    /// truncate), in this process through `stripes` and, with `share`, among
    /// the processes of the machine mounted with host id `hostid`.
    pub(crate) fn take(
        stripes: &'a Stripes,
        share: Option<&'a Share>,
        hostid: u64,
        ino: u64,
        exclusive: bool,
    ) -> Result<DataGuard<'a>> {
        let lock = stripes.of(ino);
        let local = if exclusive {
            Local::Exclusive {
                _held: lock.write(),
            }
        } else {
            // Recursive: a thread holding a stripe for one file may write
            // another of the same stripe while a truncate waits.
            Local::Shared {
                _held: lock.read_recursive(),
            }
        };
        if let Some(s) = share {
            s.lock_data(hostid, ino, exclusive)?;
        }
        Ok(DataGuard {
            share,
            hostid,
            ino,
            local,
        })
    }
}

impl Drop for DataGuard<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.share {
            s.unlock_data(
                self.hostid,
                self.ino,
                matches!(self.local, Local::Exclusive { .. }),
            );
        }
    }
}
