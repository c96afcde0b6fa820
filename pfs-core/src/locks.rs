//! The locks a file operation takes, in the one order allowed:
//!
//! 1. the file's data lock ([`crate::datalock`]): shared by writes, alone
//!    for a truncate, so no write is on its way to a block a truncate
//!    frees;
//! 2. for a write that extends the file or a block's written part (and so
//!    commits a new extent, and may zero a gap), the lock that orders
//!    extends: the host's transaction lock on a shared mount, the mount's
//!    own extend lock of the file's stripe otherwise. That one is taken
//!    shared by a write that zeroes no gap (each of its blocks written
//!    from inside or right at the end of its written part, as a copy
//!    writing whole new blocks does), so such writes go to the device
//!    side by side; a write that zeroes a gap takes it alone, so no write
//!    lands in the gap it zeroes. Commits of extents only ever grow them
//!    (compared again in their transactions), whatever their order;
//! 3. inside every transaction, the host's transaction lock (taken again;
//!    it is re-entrant) and then the mount's state.
//!
//! The guards here hold 1 and 2 together, so a caller cannot take them the
//! wrong way round: a [`WriteGuard`] or [`TruncateGuard`] is the only way to
//! a data lock, and it is taken before any transaction starts.

use crate::datalock::DataGuard;
use crate::error::Result;
use crate::mount::Extend;
use crate::mount::Mount;
use crate::share::TxLock;

/// What orders a write that extends among the writers of a file.
enum ExtendLock<'m> {
    /// The host's transaction lock (a shared mount).
    Host(#[allow(dead_code)] Option<TxLock<'m>>),
    /// The mount's own extend lock of the file's stripe, alone: a write
    /// that zeroes a gap.
    Local(#[allow(dead_code)] parking_lot::RwLockWriteGuard<'m, ()>),
    /// The same lock shared: a write that zeroes nothing.
    LocalShared(#[allow(dead_code)] parking_lot::RwLockReadGuard<'m, ()>),
}

/// The locks a write to one file holds while its data goes to the device
/// and its new extents are committed.
pub(crate) struct WriteGuard<'m> {
    _extend: Option<ExtendLock<'m>>,
    // Declared last: dropped after the extend lock, the reverse of the
    // order it was taken in.
    _data: DataGuard<'m>,
}

/// The lock a truncate holds: the file's data lock, alone.
pub(crate) struct TruncateGuard<'m> {
    _data: DataGuard<'m>,
}

impl Mount {
    /// The locks for writing `len` bytes at `off` of file `ino`: its data
    /// lock shared, and the extend lock when the write grows the file or a
    /// block's written part (decided under the data lock): on a mount of
    /// its own, shared when the write zeroes no gap ([`Extend`]).
    pub(crate) fn write_guard(&self, ino: u64, off: u64, len: u64) -> Result<WriteGuard<'_>> {
        let data = self.data_lock(ino, false)?;
        let extend = match self.extends(ino, off, len)? {
            Extend::No => None,
            Extend::Contiguous if !self.is_shared() => Some(ExtendLock::LocalShared(
                self.extend_stripes().of(ino).read(),
            )),
            Extend::Contiguous | Extend::PastGap => Some(self.extend_lock(ino)?),
        };
        Ok(WriteGuard {
            _extend: extend,
            _data: data,
        })
    }

    /// The lock for a write whose order among the file's extending writes
    /// its caller keeps itself, as write-behind's writes in flight do
    /// (they zero no gap, and their extents are committed later): the
    /// file's data lock, shared.
    pub(crate) fn data_write_guard(&self, ino: u64) -> Result<WriteGuard<'_>> {
        Ok(WriteGuard {
            _extend: None,
            _data: self.data_lock(ino, false)?,
        })
    }

    /// The locks for appending to file `ino`: its data lock shared and,
    /// always, the extend lock (an append extends the file, and the end it
    /// writes at is only known under that lock).
    pub(crate) fn append_guard(&self, ino: u64) -> Result<WriteGuard<'_>> {
        let data = self.data_lock(ino, false)?;
        Ok(WriteGuard {
            _extend: Some(self.extend_lock(ino)?),
            _data: data,
        })
    }

    /// The lock that orders the writes extending file `ino`.
    fn extend_lock(&self, ino: u64) -> Result<ExtendLock<'_>> {
        Ok(match self.is_shared() {
            true => ExtendLock::Host(self.host_tx()?),
            false => ExtendLock::Local(self.extend_stripes().of(ino).write()),
        })
    }

    /// The lock for cutting file `ino` down: no write may be on its way to
    /// a block the truncate frees.
    pub(crate) fn truncate_guard(&self, ino: u64) -> Result<TruncateGuard<'_>> {
        Ok(TruncateGuard {
            _data: self.data_lock(ino, true)?,
        })
    }

    /// Inode `ino`'s data lock: shared around a write's data, `exclusive`
    /// around a truncate.
    fn data_lock(&self, ino: u64, exclusive: bool) -> Result<DataGuard<'_>> {
        let share = self.share();
        let stripes = share.map_or(self.local_stripes(), |s| &s.stripes);
        DataGuard::take(stripes, share, self.hostid(), ino, exclusive)
    }
}
