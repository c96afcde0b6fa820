//! What every command that overwrites a whole formatted filesystem (mkfs
//! -f, growfs, a chunk restore, a filesystem copy onto it) checks first:
//! that no host, this one or another, holds or is taking its writer lease,
//! and then cuts off at the storage any writer that might still be stalled.

use crate::device::Device;
use crate::error::{CoreError, Result};

/// What mkfs and growfs check before writing to a formatted device: no
/// host holds or is taking the writer lease (see
/// [`crate::Lease`]).
/// A device whose metadata cannot be read has no lease to respect; a
/// device read error is returned.
///
/// Once no lease is live, every writer the storage knows of is cut off
/// ([`Device::fence_every_writer`]: an RBD image blocklists the clients
/// registered in it): a writer stalled after its lease check, whose lease
/// ran out while it stalled, must not land its write in the filesystem
/// that replaces its own. A fence that fails refuses the command.
pub fn refuse_live_writer(dev: &dyn Device) -> Result<()> {
    let found = crate::meta::MetaImage::load(dev).and_then(|meta| {
        let j = crate::meta::Journal::locate(dev, &meta)?;
        Ok(crate::lease::Slots::of(&j.leader, j.leader_bda))
    });
    match found {
        Ok(slots) => crate::lease::ensure_no_writer(dev, slots)?,
        Err(e @ CoreError::Io { .. }) => return Err(e),
        Err(_) => {}
    }
    dev.fence_every_writer()?;
    // The machine's copy of the metasets is of the filesystem about to be
    // overwritten.
    crate::metacache::forget(dev);
    Ok(())
}
