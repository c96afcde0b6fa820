//! Shared by the crate's unit tests: transactions of free inode objects and
//! a guard that lets every write through.

use crate::JournalError;
use pfs_format::{LeaderRecord, MetaObjPhy, MetaType, ObjectId};

/// `n` free inode objects of chunk 0, from a window that `seed` moves (a
/// seed of 0 gives inodes 3, 4, ...).
pub(crate) fn objs(n: usize, seed: u32) -> Vec<(ObjectId, MetaObjPhy)> {
    (0..n)
        .map(|k| {
            let oid = (seed * 7 + k as u32) % 2000 + 3;
            let id = ObjectId::new(MetaType::Inode, 0, oid).expect("an inode of chunk 0");
            (id, MetaObjPhy::new_free(id))
        })
        .collect()
}

/// A write guard that allows every write.
pub(crate) fn allow(_: &LeaderRecord) -> Result<(), JournalError> {
    Ok(())
}
