//! File data locks. A write holds its file's lock shared while it puts
//! bytes into the file's blocks; a truncate holds it alone. The blocks a
//! truncate frees go to the next file that grows, so no write may still be
//! on its way to them: without the lock, a write that looked up a block
//! just before a truncate freed it would land in another file's data.
//!
//! Threads of one process meet in a reader-writer lock per stripe of inode
//! numbers; on a shared mount the processes of the machine meet in a
//! byte-range lock per inode in the shared file ([`crate::share`]). The
//! order is always this lock, then the host's transaction lock.

use crate::error::Result;
use crate::share::Share;
use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Number of in-process lock stripes.
const STRIPES: usize = 64;

/// The in-process half: one reader-writer lock per stripe of inodes.
pub(crate) struct Stripes(Box<[RwLock<()>]>);

impl Default for Stripes {
    fn default() -> Self {
        Stripes((0..STRIPES).map(|_| RwLock::new(())).collect())
    }
}

impl std::fmt::Debug for Stripes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stripes")
    }
}

impl Stripes {
    fn of(&self, ino: u64) -> &RwLock<()> {
        &self.0[(ino % STRIPES as u64) as usize]
    }
}

/// The in-process part of a held data lock.
enum Local<'a> {
    Shared { _held: RwLockReadGuard<'a, ()> },
    Exclusive { _held: RwLockWriteGuard<'a, ()> },
}

/// A file's data lock, held until dropped.
pub(crate) struct DataGuard<'a> {
    share: Option<&'a Share>,
    ino: u64,
    local: Local<'a>,
}

impl<'a> DataGuard<'a> {
    /// Takes inode `ino`'s data lock, shared (a write) or alone (a
    /// truncate), in this process through `stripes` and, with `share`, among
    /// the processes of the machine.
    pub(crate) fn take(
        stripes: &'a Stripes,
        share: Option<&'a Share>,
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
            s.lock_data(ino, exclusive)?;
        }
        Ok(DataGuard { share, ino, local })
    }
}

impl Drop for DataGuard<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.share {
            s.unlock_data(self.ino, matches!(self.local, Local::Exclusive { .. }));
        }
    }
}
