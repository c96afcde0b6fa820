//! `fstrim`: discarding free blocks, by the single writer.
//!
//! As the reference does it (`pfs_mount_fstrim` with the force flag of its
//! `fstrim` command), per chunk: select the free block tags whose discard
//! status is READY or IN_PROGRESS (every free tag with `all`), commit a
//! transaction that takes each selected tag ("mark discarding"), discard the
//! blocks, commit a second transaction that takes them again ("mark
//! discarded"). A READY tag keeps its status (the reference only marks tags
//! missing from its in-memory READY index, and after mount every READY tag
//! is in it), so both transactions journal the selected tags unchanged and
//! the journal matches the reference's entry for entry.
//!
//! Safety: the discards run inside the second transaction, under the
//! mount's write lock, and each tag is checked to be free right before its
//! block is discarded; block 0 of a chunk (chunk header and metasets) is
//! never selected, and the journal and `.pfs-paxos` blocks are used blocks.

use crate::error::{CoreError, Result};
use crate::mount::Mount;
use pfs_format::blktag::dstatus;
use pfs_format::layout::{BLKTAGS_PER_CHUNK, BLOCK_SIZE};
use pfs_format::{MetaType, ObjectId};

/// What [`Mount::fstrim`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrimReport {
    /// Chunks looked at: `[begin, end)`.
    pub chunks: (u32, u32),
    /// Free blocks selected (and journaled twice each).
    pub selected: u64,
    /// Blocks actually discarded on the device.
    pub discarded: u64,
    /// Whether the device accepted discards (false when it cannot discard;
    /// true when nothing was tried).
    pub device_supports: bool,
}

impl Mount {
    /// Discards the free blocks of chunks `[begin, end)` (`None`: from the
    /// first / to the last chunk). With `all`, every free block is
    /// selected, else only those with discard status READY or IN_PROGRESS.
    /// With `discard` false the blocks are selected and journaled as the
    /// reference does when its `diskdev_trim_enable` option is off, but the
    /// device is not touched. Read-write mounts only.
    pub fn fstrim(
        &self,
        begin: Option<u32>,
        end: Option<u32>,
        all: bool,
        discard: bool,
    ) -> Result<TrimReport> {
        let nchunk = self.with_meta(|m| m.nchunk)?;
        let b = begin.unwrap_or(0);
        let e = end.unwrap_or(nchunk);
        if e > nchunk || b >= e {
            return Err(CoreError::InvalidArgument(format!(
                "invalid chunk range [{b}, {e}): {} has {nchunk} chunk(s)",
                self.device().name()
            )));
        }
        let mut report = TrimReport {
            chunks: (b, e),
            device_supports: true,
            ..TrimReport::default()
        };
        for c in b..e {
            let selected = self.write_tx(|tx| {
                let mut sel = Vec::new();
                for oid in 1..BLKTAGS_PER_CHUNK {
                    let id = ObjectId {
                        mtype: MetaType::BlkTag,
                        chunk: c,
                        oid,
                    };
                    let mo = tx.view(id);
                    if mo.is_used() {
                        continue;
                    }
                    if !all && mo.blktag().bt_dstatus.get() == dstatus::NONE {
                        continue;
                    }
                    sel.push(id);
                }
                for &id in &sel {
                    tx.take(id);
                }
                Ok(sel)
            })?;
            if selected.is_empty() {
                continue;
            }
            report.selected += selected.len() as u64;
            let dev = self.device();
            let (done, supported) = self.write_tx(|tx| {
                let mut done = 0u64;
                let mut supported = true;
                for &id in &selected {
                    tx.take(id);
                    if !discard || !supported || tx.view(id).is_used() {
                        continue;
                    }
                    let blkno =
                        u64::from(id.chunk) * u64::from(BLKTAGS_PER_CHUNK) + u64::from(id.oid);
                    if dev.discard(blkno * BLOCK_SIZE, BLOCK_SIZE)? {
                        done += 1;
                    } else {
                        supported = false;
                    }
                }
                Ok((done, supported))
            })?;
            report.discarded += done;
            report.device_supports &= supported;
        }
        Ok(report)
    }
}
