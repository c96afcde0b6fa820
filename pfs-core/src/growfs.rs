//! `growfs`: format the chunks a grown device gained and raise `ck_nchunk`.
//!
//! As the reference does: new chunks `[old, new)` get fresh headers and
//! metasets, then every old chunk's header is rewritten with the new count,
//! highest chunk first, so chunk 0 (the authoritative count) changes last.
//! We flush between the two phases.

use crate::device::{AlignedBuf, Device};
use crate::error::{CoreError, Result};
use crate::mkfs::{chunk_is_formatted, chunks_of, write_chunk_header, write_metasets};
use pfs_format::layout::{CHUNK_SIZE, SECTOR_SIZE};
use pfs_format::ChunkPhy;
use std::collections::BTreeMap;

/// What `growfs` was asked to do.
#[derive(Debug, Clone, Copy)]
pub struct GrowfsOptions {
    /// Chunks the filesystem has now (`-o`).
    pub old_nchunk: u64,
    /// Chunks it should have (`-n`); must equal the device's whole chunks.
    pub new_nchunk: u64,
    /// Format chunk `old_nchunk` even if it looks formatted (`-f`).
    pub force: bool,
}

/// Grows the filesystem on `dev`. Checks everything before writing.
///
/// # Example
///
/// Grow a one-chunk filesystem on a sparse file (in `dir`, a scratch
/// directory) to two chunks after the file grew:
///
/// ```
/// # struct Scratch(std::path::PathBuf);
/// # impl Drop for Scratch {
/// #     fn drop(&mut self) {
/// #         let _ = std::fs::remove_dir_all(&self.0);
/// #     }
/// # }
/// # let scratch = Scratch(std::env::temp_dir().join(format!("pfs-doc-growfs-{}", std::process::id())));
/// # std::fs::create_dir_all(&scratch.0)?;
/// # let dir = scratch.0.clone();
/// use pfs_core::{growfs, mkfs, FileDevice, GrowfsOptions, MkfsOptions, Mode, Mount, MountOptions};
/// use std::sync::Arc;
///
/// let img = dir.join("disk");
/// std::fs::File::create(&img)?.set_len(10 << 30)?;
/// mkfs(&FileDevice::open("disk", &img, true)?, &MkfsOptions::default())?;
///
/// std::fs::OpenOptions::new().write(true).open(&img)?.set_len(20 << 30)?;
/// let dev = FileDevice::open("disk", &img, true)?;
/// let opts = GrowfsOptions { old_nchunk: 1, new_nchunk: 2, force: false };
/// growfs(&dev, opts)?;
/// // Done once: chunk 1 is formatted now.
/// assert!(growfs(&dev, opts).is_err());
///
/// let m = Mount::open_with(Arc::new(dev), Mode::ReadOnly, &MountOptions::default())?;
/// assert_eq!(m.nchunk()?, 2);
/// assert_eq!(m.statfs()?.blocks, 2 * 2560);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn growfs(dev: &dyn Device, opts: GrowfsOptions) -> Result<()> {
    let name = dev.name();
    let GrowfsOptions {
        old_nchunk: old,
        new_nchunk: new,
        force,
    } = opts;
    if old == 0 || old >= new {
        return Err(CoreError::InvalidArgument(format!(
            "invalid chunk counts: old {old}, new {new} (need 0 < old < new)"
        )));
    }
    let have = u64::from(chunks_of(name, dev.len())?);
    if have != new {
        return Err(CoreError::InvalidArgument(format!(
            "new chunk count {new} does not match device {name}: {} bytes hold {have} chunk(s)",
            dev.len()
        )));
    }
    let mut sect = AlignedBuf::new(SECTOR_SIZE as usize);
    dev.read_at(sect.as_mut_slice(), 0)?;
    let ck0 = ChunkPhy::decode(sect.as_slice(), 0).map_err(|e| CoreError::NotFormatted {
        device: name.to_owned(),
        reason: e.on_device(name),
    })?;
    if u64::from(ck0.ck_nchunk.get()) != old {
        return Err(CoreError::InvalidArgument(format!(
            "device {name} has {} chunk(s), not {old}",
            ck0.ck_nchunk.get()
        )));
    }
    if !force && chunk_is_formatted(dev, old)? {
        return Err(CoreError::AlreadyFormatted {
            device: name.to_owned(),
            chunk: old,
        });
    }
    crate::overwrite::refuse_live_writer(dev)?;
    // Validate every old header before changing any.
    let mut olds = Vec::new();
    for chunk in 0..old {
        dev.read_at(sect.as_mut_slice(), chunk * CHUNK_SIZE)?;
        let ck = ChunkPhy::decode(sect.as_slice(), chunk).map_err(|e| e.on_device(name))?;
        olds.push(ck);
    }
    let new32 = new as u32;
    for chunk in old..new {
        write_metasets(dev, chunk as u32, &BTreeMap::new(), 0)?;
        write_chunk_header(dev, chunk, new32)?;
    }
    dev.sync()?;
    for (chunk, mut ck) in olds.into_iter().enumerate().rev() {
        ck.ck_nchunk.set(new32);
        ck.seal();
        let mut buf = AlignedBuf::new(SECTOR_SIZE as usize);
        dev.read_at(buf.as_mut_slice(), chunk as u64 * CHUNK_SIZE)?;
        buf.as_mut_slice()[..ck.to_bytes().len()].copy_from_slice(&ck.to_bytes());
        dev.write_at(buf.as_slice(), chunk as u64 * CHUNK_SIZE)?;
    }
    dev.sync()?;
    // A copy of the metasets made while this ran is of the smaller device.
    crate::metacache::forget(dev);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MemDevice;
    use crate::mkfs::{mkfs, MkfsOptions};

    #[test]
    fn grow_and_refusals() {
        let dev = MemDevice::new("g", 2 * CHUNK_SIZE);
        // Format one chunk's worth by formatting a 1-chunk view first.
        let small = MemDevice::new("g", CHUNK_SIZE);
        mkfs(&small, &MkfsOptions::default()).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        small.read_at(&mut buf, 0).unwrap();
        dev.write_at(&buf, 0).unwrap();
        let bad = |o, n| {
            growfs(
                &dev,
                GrowfsOptions {
                    old_nchunk: o,
                    new_nchunk: n,
                    force: false,
                },
            )
        };
        assert!(bad(0, 2).is_err());
        assert!(bad(2, 2).is_err());
        assert!(bad(1, 3).is_err());
        assert!(bad(2, 3).is_err());
        growfs(
            &dev,
            GrowfsOptions {
                old_nchunk: 1,
                new_nchunk: 2,
                force: false,
            },
        )
        .unwrap();
        assert!(chunk_is_formatted(&dev, 1).unwrap());
        let mut s = [0u8; 4096];
        dev.read_at(&mut s, 0).unwrap();
        assert_eq!(ChunkPhy::decode(&s, 0).unwrap().ck_nchunk.get(), 2);
    }
}
