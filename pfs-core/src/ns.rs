//! Reading the namespace out of loaded metadata: directories, names, files
//! and their blocks.
//!
//! A directory inode's `mo_head`/`mo_tail` name the first and last head
//! direntry of its entries, chained through `mo_next` in the order they were
//! added. A file inode's chain is its block tags, each saying which block of
//! the file (`bt_blkid`) it holds and where written data ends in it.

use crate::error::{CoreError, Result};
use crate::meta::MetaImage;
use pfs_format::blktag::NO_HOLE;
use pfs_format::direntry::assemble_name;
use pfs_format::layout::{BLOCK_SIZE, ROOT_INO};
use pfs_format::{
    CorruptKind, DirEntryPhy, Expected, FormatError, InodePhy, Location, MetaObjPhy, MetaType,
    ObjectId,
};
use std::collections::BTreeMap;

/// One entry of a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Number of the entry's head direntry.
    pub deno: u64,
    /// The name.
    pub name: Vec<u8>,
    /// The inode it names.
    pub ino: u64,
}

/// One allocated block of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileBlock {
    /// The block tag describing it.
    pub btno: ObjectId,
    /// Device block number.
    pub blkno: u64,
    /// Bytes of the block holding data; the rest reads as zeros.
    pub data_end: u64,
    /// `bt_holeoff` as the reference reports it (`INT_MAX` when no hole).
    pub holeoff: i32,
}

pub(crate) fn broken(t: MetaType, number: u64, what: &'static str, found: u64) -> CoreError {
    FormatError::Corrupt {
        kind: CorruptKind::DanglingObject,
        at: Box::new(Location::object(t, number)),
        expected: Expected::Desc(what),
        found,
    }
    .into()
}

/// Largest file size PFS can address: `off_t`'s maximum, as the
/// reference's API checks offsets against it.
pub const MAX_FILE_SIZE: u64 = i64::MAX as u64;

/// Largest block index a file can have.
pub const MAX_BLKID: u64 = MAX_FILE_SIZE / BLOCK_SIZE;

impl MetaImage {
    /// The full name of the entry headed by direntry `deno`, its extension
    /// chain walked through the checked `crate::chain::Chain`.
    pub fn entry_name(&self, deno: u64, de: &DirEntryPhy) -> Result<Vec<u8>> {
        let exts: Vec<(ObjectId, MetaObjPhy)> = self
            .ext_chain(deno, de.de_extdeno.get())
            .at_most(pfs_format::direntry::MAX_NAME_PIECES as u64 - 1)
            .collect::<Result<_>>()?;
        Ok(assemble_name(deno, de, |n| {
            exts.iter()
                .find(|(id, _)| id.number() == n)
                .map(|(_, mo)| *mo.direntry())
                .ok_or(FormatError::InvalidName {
                    reason: "extension direntry missing",
                })
        })?)
    }

    /// The used inode `ino`.
    pub fn inode(&self, ino: u64) -> Result<(MetaObjPhy, InodePhy)> {
        let (_, mo) = self.lookup(MetaType::Inode, ino)?;
        if !mo.is_used() {
            return Err(broken(MetaType::Inode, ino, "an inode in use", 0));
        }
        Ok((mo, *mo.inode()))
    }

    /// Checks what every use of an inode's attributes relies on: a known
    /// type, and for files a size PFS can address.
    pub fn check_attrs(&self, ino: u64, i: impl std::borrow::Borrow<InodePhy>) -> Result<()> {
        let i = i.borrow();
        if !i.is_dir() && !i.is_file() {
            return Err(self.corrupt(
                MetaType::Inode,
                ino,
                format!("unknown inode type {}", i.in_type),
            ));
        }
        if i.is_file() && i.in_size.get() > MAX_FILE_SIZE {
            return Err(self.corrupt(
                MetaType::Inode,
                ino,
                format!(
                    "size {} is beyond the largest file size PFS can address ({MAX_FILE_SIZE})",
                    i.in_size.get()
                ),
            ));
        }
        Ok(())
    }

    /// The entries of directory `dir`, in the order they were added.
    pub fn read_dir(&self, dir: u64) -> Result<Vec<Entry>> {
        let (mo, inode) = self.inode(dir)?;
        if !inode.is_dir() {
            return Err(CoreError::NotDir {
                path: format!("inode {dir}"),
            });
        }
        let mut out = Vec::new();
        let mut prev = 0u64;
        for r in self.entry_chain(dir, mo.mo_next.get()) {
            let (id, de_mo) = r?;
            let next = id.number();
            let de = de_mo.direntry();
            if !de_mo.is_used() || de.de_dirino.get() != dir as i64 || de_mo.mo_prev.get() != prev {
                return Err(broken(
                    MetaType::DirEntry,
                    next,
                    "an entry of its directory's chain",
                    dir,
                ));
            }
            let name = self.entry_name(next, de)?;
            out.push(Entry {
                deno: next,
                name,
                ino: de.de_ino.get() as u64,
            });
            prev = next;
        }
        Ok(out)
    }

    /// Looks `name` up in directory `dir` through the directory's name
    /// index (built on first use, kept in step with every change).
    pub fn find(&self, dir: u64, name: &[u8]) -> Result<Option<Entry>> {
        let (_, inode) = self.inode(dir)?;
        if !inode.is_dir() {
            return Err(CoreError::NotDir {
                path: format!("inode {dir}"),
            });
        }
        self.names.lock().find(self, dir, name)
    }

    /// The full name of head direntry `deno`.
    pub(crate) fn head_name(&self, deno: u64) -> Result<Vec<u8>> {
        let (_, mo) = self.lookup(MetaType::DirEntry, deno)?;
        self.entry_name(deno, mo.direntry())
    }

    /// The directory holding directory `dir` (the root's parent is the
    /// root).
    pub fn parent(&self, dir: u64) -> Result<u64> {
        if dir == ROOT_INO {
            return Ok(ROOT_INO);
        }
        let (_, i) = self.inode(dir)?;
        let (_, de) = self.lookup(MetaType::DirEntry, i.in_deno.get())?;
        let parent = de.direntry().de_dirino.get();
        if !de.is_used() || de.direntry().de_ino.get() != dir as i64 || parent < 0 {
            return Err(broken(
                MetaType::Inode,
                dir,
                "a directory with an entry in its parent",
                i.in_deno.get(),
            ));
        }
        Ok(parent as u64)
    }

    /// The blocks of file `ino` by block index inside the file.
    pub fn blocks(&self, ino: u64) -> Result<BTreeMap<u64, FileBlock>> {
        let (mo, _) = self.inode(ino)?;
        let mut out = BTreeMap::new();
        for r in self.blktag_chain(ino, mo.mo_next.get()) {
            let (id, bt_mo) = r?;
            let next = id.number();
            let bt = bt_mo.blktag();
            let blkid = bt.bt_blkid.get();
            if !bt_mo.is_used() || bt.bt_ino.get() != ino as i64 || blkid < 0 {
                return Err(broken(MetaType::BlkTag, next, "a block of this file", ino));
            }
            if blkid as u64 > MAX_BLKID {
                return Err(self.corrupt(
                    MetaType::BlkTag,
                    next,
                    format!("block index {blkid} of inode {ino} lies past the largest file offset PFS allows"),
                ));
            }
            let holeoff = bt.data_end();
            let data_end = if holeoff == NO_HOLE {
                BLOCK_SIZE
            } else {
                u64::try_from(holeoff).unwrap_or(0).min(BLOCK_SIZE)
            };
            let blkno = id.block_number().unwrap_or(0);
            if out
                .insert(
                    blkid as u64,
                    FileBlock {
                        btno: id,
                        blkno,
                        data_end,
                        holeoff,
                    },
                )
                .is_some()
            {
                return Err(broken(
                    MetaType::BlkTag,
                    next,
                    "one block tag per file block",
                    blkid as u64,
                ));
            }
        }
        Ok(out)
    }
}
