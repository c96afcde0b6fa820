//! Namespace and file changes, each a transaction shaped as the reference
//! shapes it, so the journal gets the same entries in the same order.

use crate::chain::{ChainStart, Link};
use crate::error::{CoreError, Result};
use crate::mount::Mount;
use crate::ns::FileBlock;
use crate::tx::Tx;
use pfs_format::direntry::split_name;
use pfs_format::inode::{INODE_TYPE_DIR, INODE_TYPE_FILE, NO_DIRENTRY};
use pfs_format::layout::{BLOCK_SIZE, OBJ_SIZE};
use pfs_format::{FormatError, MetaType, ObjectId};
use std::collections::BTreeMap;

/// Largest size change one truncate transaction makes (`file_shrink_size`).
const SHRINK_STEP: u64 = 10 << 30;

fn name_error(e: FormatError, name: &[u8]) -> CoreError {
    let name = String::from_utf8_lossy(name).into_owned();
    match e {
        FormatError::NameTooLong { .. } => CoreError::NameTooLong { path: name },
        FormatError::InvalidName { reason } => CoreError::InvalidName { name, reason },
        other => other.into(),
    }
}

/// Most extension direntries a name can have.
const NAME_EXTS: u64 = pfs_format::direntry::MAX_NAME_PIECES as u64 - 1;

/// The extension chain of the name headed by direntry `de`.
fn ext_start(de: ObjectId, mo: &pfs_format::MetaObjPhy) -> ChainStart {
    ChainStart {
        t: MetaType::DirEntry,
        link: Link::Ext,
        first: mo.direntry().de_extdeno.get(),
        owner_type: MetaType::DirEntry,
        owner: de.number(),
    }
}

/// Unlinks `obj` (of type `t`) from the chain whose ends the inode `head`
/// holds (`pfs_meta_list_delete`): logs the previous object (or the head),
/// then the next one (or the head).
fn list_delete(tx: &mut Tx<'_>, head: ObjectId, t: MetaType, obj: ObjectId) -> Result<()> {
    let mo = tx.view(obj);
    let (prev, next) = (mo.mo_prev.get(), mo.mo_next.get());
    if prev != 0 {
        tx.take_no(t, prev)?.1.mo_next.set(next);
    } else {
        tx.take(head).mo_next.set(next);
    }
    if next != 0 {
        tx.take_no(t, next)?.1.mo_prev.set(prev);
    } else {
        tx.take(head).mo_prev.set(prev);
    }
    let o = tx.take(obj);
    o.mo_prev.set(0);
    o.mo_next.set(0);
    Ok(())
}

/// Appends `obj` (of type `t`) to the chain whose ends the inode `head`
/// holds (`pfs_meta_list_insert`): logs the old last object, if any.
fn list_append(tx: &mut Tx<'_>, head: ObjectId, t: MetaType, obj: ObjectId) -> Result<()> {
    let tail = tx.view(head).mo_prev.get();
    if tail == 0 {
        tx.take(head).mo_next.set(obj.number());
    } else {
        tx.take_no(t, tail)?.1.mo_next.set(obj.number());
    }
    tx.take(obj).mo_prev.set(tail);
    tx.take(head).mo_prev.set(obj.number());
    Ok(())
}

/// Chains a name's extension direntries in order through `de_extdeno`.
fn link_extensions(tx: &mut Tx<'_>, exts: &[ObjectId]) {
    for (k, ext) in exts.iter().enumerate() {
        let next = exts.get(k + 1).map(|n| n.number()).unwrap_or(0);
        tx.take(*ext).direntry_mut().de_extdeno.set(next);
    }
}

/// Adds entry `name` for a new inode to directory `dir` (`pfs_dir_add`):
/// logs the new direntry, the new inode, the directory inode, any
/// extension direntries of a long name, then the directory's old last entry.
pub(crate) fn dir_add(tx: &mut Tx<'_>, dir: u64, name: &[u8], is_dir: bool) -> Result<u64> {
    crate::names::check_name(name)?;
    let pieces = split_name(name).map_err(|e| name_error(e, name))?;
    let de_id = tx.alloc(MetaType::DirEntry)?;
    let in_id = tx.alloc(MetaType::Inode)?;
    let (dir_id, _) = tx.view_no(MetaType::Inode, dir)?;
    let (now, now_us) = (tx.now, tx.now_us);
    {
        let di = tx.take(dir_id).inode_mut();
        di.in_size.set(di.in_size.get() + OBJ_SIZE as u64);
        di.in_mtime.set(now);
        di.in_ctime.set(now);
    }
    let mut exts = Vec::new();
    for piece in &pieces[1..] {
        let ext = tx.alloc(MetaType::DirEntry)?;
        let e = tx.take(ext).direntry_mut();
        e.de_name = *piece;
        e.de_ino.set(de_id.number() as i64);
        exts.push(ext);
    }
    link_extensions(tx, &exts);
    list_append(tx, dir_id, MetaType::DirEntry, de_id)?;
    {
        let d = tx.take(de_id).direntry_mut();
        d.de_name = pieces[0];
        d.de_ino.set(in_id.number() as i64);
        d.de_dirino.set(dir as i64);
        d.de_extdeno
            .set(exts.first().map(|e| e.number()).unwrap_or(0));
    }
    {
        let i = tx.take(in_id).inode_mut();
        i.in_type = if is_dir {
            INODE_TYPE_DIR
        } else {
            INODE_TYPE_FILE
        };
        i.in_pvtid.set(0);
        i.in_deno.set(de_id.number());
        i.in_nlink.set(1);
        i.in_size.set(0);
        i.in_nblock.set(0);
        i.in_atime.set(0);
        i.in_mtime.set(now);
        i.in_ctime.set(now);
        i.in_btime.set(now_us);
    }
    Ok(in_id.number())
}

/// Removes inode `ino`'s entry from directory `dir` (`pfs_dir_del`): logs
/// the direntry, the inode (left orphaned), the directory inode, the
/// neighbouring entries, then the freed extension direntries.
pub(crate) fn dir_del(tx: &mut Tx<'_>, dir: u64, ino: u64) -> Result<()> {
    let (in_id, in_mo) = tx.view_no(MetaType::Inode, ino)?;
    let (de_id, de_mo) = tx.view_no(MetaType::DirEntry, in_mo.inode().in_deno.get())?;
    let (dir_id, _) = tx.view_no(MetaType::Inode, dir)?;
    tx.take(de_id);
    tx.take(in_id);
    tx.take(dir_id);
    list_delete(tx, dir_id, MetaType::DirEntry, de_id)?;
    {
        let d = tx.take(dir_id).inode_mut();
        d.in_size
            .set(d.in_size.get().saturating_sub(OBJ_SIZE as u64));
    }
    for (ext_id, _) in tx.chain(ext_start(de_id, &de_mo), NAME_EXTS)? {
        tx.take(ext_id);
        tx.free(ext_id);
    }
    tx.free(de_id);
    let i = tx.take(in_id).inode_mut();
    i.in_deno.set(NO_DIRENTRY);
    i.in_nlink.set(i.in_nlink.get().saturating_sub(1));
    Ok(())
}

/// Frees an orphaned inode and any blocks it still has
/// (`pfs_inodephy_release`).
pub(crate) fn release_inode(tx: &mut Tx<'_>, ino: u64) -> Result<()> {
    let (in_id, in_mo) = tx.view_no(MetaType::Inode, ino)?;
    tx.take(in_id);
    let start = ChainStart {
        t: MetaType::BlkTag,
        link: Link::Next,
        first: in_mo.mo_next.get(),
        owner_type: MetaType::Inode,
        owner: ino,
    };
    for (bt_id, _) in tx.chain(start, u64::MAX)? {
        tx.take(bt_id);
        tx.free(bt_id);
    }
    tx.free(in_id);
    Ok(())
}

/// Appends a new block for file block `blkid` (`pfs_inode_add`): logs the
/// new block tag, the inode, then the inode's previous last block tag.
fn add_block(tx: &mut Tx<'_>, ino: u64, blkid: u64) -> Result<ObjectId> {
    let bt_id = tx.alloc(MetaType::BlkTag)?;
    let (in_id, _) = tx.view_no(MetaType::Inode, ino)?;
    {
        let ip = tx.take(in_id).inode_mut();
        ip.in_nblock.set(ip.in_nblock.get() + 1);
    }
    list_append(tx, in_id, MetaType::BlkTag, bt_id)?;
    let b = tx.take(bt_id).blktag_mut();
    b.bt_ino.set(ino as i64);
    b.bt_blkid.set(blkid as i64);
    Ok(bt_id)
}

/// Removes block tag `bt` from file `ino` and frees it (`pfs_inode_del`).
fn del_block(tx: &mut Tx<'_>, ino: u64, bt: ObjectId) -> Result<()> {
    let (in_id, _) = tx.view_no(MetaType::Inode, ino)?;
    tx.take(bt);
    tx.take(in_id);
    list_delete(tx, in_id, MetaType::BlkTag, bt)?;
    tx.free(bt);
    let i = tx.take(in_id).inode_mut();
    i.in_nblock.set(i.in_nblock.get().saturating_sub(1));
    Ok(())
}

/// Sets a file's size and times (`pfs_inode_change`); `forced` is the
/// write-commit case, which bumps `in_atime` when nothing else would make
/// the inode image differ within the same second.
pub(crate) fn change_inode(tx: &mut Tx<'_>, ino: u64, new_size: u64, forced: bool) -> Result<()> {
    let now = tx.now;
    let (_, i) = tx.take_no(MetaType::Inode, ino)?;
    let ip = i.inode_mut();
    if forced && new_size == ip.in_size.get() && ip.in_ctime.get() == now {
        ip.in_atime.set(ip.in_atime.get() + 1);
    }
    ip.in_size.set(new_size);
    ip.in_ctime.set(now);
    ip.in_mtime.set(now);
    Ok(())
}

/// One truncate step: shrink the last kept block's data, drop the blocks
/// past `len`, set the size.
fn truncate_step(
    tx: &mut Tx<'_>,
    ino: u64,
    len: u64,
    blocks: &BTreeMap<u64, FileBlock>,
    size: u64,
) -> Result<()> {
    let keep = len.div_ceil(BLOCK_SIZE);
    if len < size {
        tx.cut();
    }
    if len > 0 && len < size {
        if let Some(b) = blocks.get(&((len - 1) / BLOCK_SIZE)) {
            let blkoff = len % BLOCK_SIZE;
            if blkoff > 0 && blkoff < b.data_end.min(i32::MAX as u64) {
                let bt = tx.take(b.btno).blktag_mut();
                bt.bt_holeoff.set(blkoff as i32);
                bt.bt_holelen.set((BLOCK_SIZE - blkoff) as i32);
            }
        }
    }
    for (_, b) in blocks.range(keep..) {
        del_block(tx, ino, b.btno)?;
    }
    if len != size {
        change_inode(tx, ino, len, false)?;
    }
    Ok(())
}

/// The largest size (and end of any write or allocation) a PFS file may
/// have: 2^63 − 1 bytes, as the reference's `off_t` allows.
pub const MAX_FILE_SIZE: u64 = i64::MAX as u64;

/// Refuses a range ending past [`MAX_FILE_SIZE`]; returns its end.
pub(crate) fn check_range(what: &'static str, off: u64, len: u64) -> Result<u64> {
    let end = u128::from(off) + u128::from(len);
    if end > u128::from(MAX_FILE_SIZE) {
        return Err(CoreError::FileTooBig {
            what,
            value: end,
            max: MAX_FILE_SIZE,
        });
    }
    Ok(end as u64)
}

fn refuse_system(ino: u64, op: &'static str) -> Result<()> {
    crate::system::refuse_system(ino, op, || format!("inode {ino}"))
}

impl Mount {
    /// Frees inode `ino` if it is an orphan (unlinked, no name left).
    pub(crate) fn release_if_orphan(&self, ino: u64) -> Result<()> {
        let orphan = || -> Result<bool> {
            let st = self.state.read();
            // Already freed by another process is no orphan, not an error.
            let (_, mo) = st.meta.lookup(MetaType::Inode, ino)?;
            Ok(mo.is_used() && mo.inode().in_type != 0 && mo.inode().in_deno.get() == NO_DIRENTRY)
        };
        // A file that still has its name as of now is no orphan: a process
        // that unlinks it later sees it closed here and frees it itself.
        if self.is_shared() {
            self.refresh()?;
        }
        if !orphan()? {
            return Ok(());
        }
        // Decided and done as one step among the processes of a shared
        // host (another may be freeing the same orphan).
        let _host = self.host_tx()?;
        if !orphan()? {
            return Ok(());
        }
        if !self.raw_attrs(ino)?.0 {
            self.shrink(ino, 0)?;
        }
        self.write_tx(|tx| release_inode(tx, ino))
    }

    /// Frees every orphaned inode (unlinked while open by a writer that
    /// then went away), as the reference does when a writer mounts.
    pub(crate) fn reclaim_orphans(&self) -> Result<()> {
        let orphans: Vec<u64> = {
            let st = self.state.read();
            let mut v = Vec::new();
            for c in 0..st.meta.nchunk {
                // A free inode as mkfs writes it is no orphan.
                for (oid, mo) in st.meta.changed_objects(c, MetaType::Inode) {
                    if mo.is_used()
                        && mo.inode().in_type != 0
                        && mo.inode().in_deno.get() == NO_DIRENTRY
                    {
                        v.push(ObjectId::new(MetaType::Inode, c, oid)?.number());
                    }
                }
            }
            v
        };
        for ino in orphans {
            // Still open in another process of this machine (a shared
            // mount): that process frees it when it closes it.
            if !self.is_open(ino) {
                self.release_if_orphan(ino)?;
            }
        }
        Ok(())
    }

    /// Gives file `ino` blocks for `[off, off + len)` (`fallocate`); unless
    /// `mode.keep_size`, grows the size to cover the range. New blocks read
    /// as zeros unless `mode.no_hide_stale`. A range needing more blocks
    /// than are free fails at once with `NoSpace`.
    pub fn fallocate(&self, ino: u64, off: u64, len: u64, mode: FallocMode) -> Result<()> {
        if len == 0 {
            return Err(CoreError::InvalidArgument(
                "fallocate: length must be positive".into(),
            ));
        }
        let end = check_range("fallocate", off, len)?;
        refuse_system(ino, "allocating space in it")?;
        let st = self.getattr(ino)?;
        if st.is_dir() {
            return Err(CoreError::IsDir {
                path: format!("inode {ino}"),
            });
        }
        let blocks = self.block_map(ino)?;
        let range = off / BLOCK_SIZE..end.div_ceil(BLOCK_SIZE);
        let have = blocks.range(range.clone()).count() as u64;
        let free = self.state.read().meta.counts(MetaType::BlkTag).0;
        if range.end - range.start - have > free {
            return Err(CoreError::NoSpace {
                what: MetaType::BlkTag.name(),
            });
        }
        self.write_tx(|tx| {
            // As of this transaction (a shared host's other processes may
            // have added blocks since we looked).
            let blocks = tx.meta().blocks(ino)?;
            let size = tx.meta().inode(ino)?.1.in_size.get();
            for blkid in range {
                if !blocks.contains_key(&blkid) {
                    let bt = add_block(tx, ino, blkid)?;
                    if mode.no_hide_stale {
                        let b = tx.take(bt).blktag_mut();
                        b.bt_holeoff.set(BLOCK_SIZE as i32);
                        b.bt_holelen.set(0);
                    }
                }
            }
            if !mode.keep_size && end > size {
                change_inode(tx, ino, end, false)?;
            }
            Ok(())
        })
    }

    /// Sets the size of file `ino`, freeing blocks past the new end. A
    /// shrink runs in steps of at most 10 GiB of file (one transaction
    /// each, as the reference's); address space without blocks is skipped,
    /// so the work follows the blocks the file has, and the size after any
    /// step is consistent with the blocks left.
    pub fn truncate(&self, ino: u64, len: u64) -> Result<()> {
        check_range("truncate", len, 0)?;
        refuse_system(ino, "truncating it")?;
        // No write may be on its way to a block this frees.
        let _locks = self.truncate_guard(ino)?;
        self.shrink(ino, len)
    }

    fn shrink(&self, ino: u64, len: u64) -> Result<()> {
        loop {
            // Raw attributes: a damaged size must still shrink (orphans
            // are freed this way), so no sanity check refuses it here.
            let (is_dir, size) = self.raw_attrs(ino)?;
            if is_dir {
                return Err(CoreError::IsDir {
                    path: format!("inode {ino}"),
                });
            }
            let blocks = self.block_map(ino)?;
            let mut step = if size > len && size - len > SHRINK_STEP {
                size - SHRINK_STEP
            } else {
                len
            };
            // Nothing to free above the last block: one step gets there,
            // so the work follows the blocks that exist, not the size.
            let top = blocks
                .keys()
                .next_back()
                .map_or(0, |b| (b + 1).saturating_mul(BLOCK_SIZE));
            step = step.min(top.max(len));
            // Decided again from the transaction's state: another process
            // of a shared host may have committed since we looked.
            self.write_tx(|tx| {
                let blocks = tx.meta().blocks(ino)?;
                let size = tx.meta().inode(ino)?.1.in_size.get();
                truncate_step(tx, ino, step, &blocks, size)
            })?;
            if step == len {
                return Ok(());
            }
        }
    }

    /// Whether inode `ino` is a directory, and its size, as stored.
    pub(crate) fn raw_attrs(&self, ino: u64) -> Result<(bool, u64)> {
        self.refresh()?;
        let st = self.state.read();
        let (_, i) = st.meta.inode(ino)?;
        Ok((i.is_dir(), i.in_size.get()))
    }
}

/// How `fallocate` treats new blocks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FallocMode {
    /// Do not change the file size (`FALLOC_FL_KEEP_SIZE`).
    pub keep_size: bool,
    /// Mark new blocks as written: their old bytes become visible
    /// instead of zeros (`FALLOC_FL_NO_HIDE_STALE`, used by PolarDB for
    /// files it initialises itself).
    pub no_hide_stale: bool,
}

/// Moves direntry `deno` from directory `odir` to the end of `ndir` under
/// `newname` (`pfs_dir_move`): logs the old and new directory inodes, the
/// entry (renamed in place), its inode, the old neighbours, the extension
/// direntries the names need, then the new directory's old last entry.
pub(crate) fn dir_move(
    tx: &mut Tx<'_>,
    odir: u64,
    deno: u64,
    ndir: u64,
    newname: &[u8],
) -> Result<()> {
    crate::names::check_name(newname)?;
    let pieces = split_name(newname).map_err(|e| name_error(e, newname))?;
    let (odir_id, _) = tx.view_no(MetaType::Inode, odir)?;
    let (ndir_id, _) = tx.view_no(MetaType::Inode, ndir)?;
    let (de_id, de_mo) = tx.view_no(MetaType::DirEntry, deno)?;
    let (in_id, _) = tx.view_no(MetaType::Inode, de_mo.direntry().de_ino.get() as u64)?;
    let now = tx.now;
    tx.take(odir_id);
    tx.take(ndir_id);
    tx.take(de_id);
    tx.take(in_id);
    list_delete(tx, odir_id, MetaType::DirEntry, de_id)?;
    {
        let o = tx.take(odir_id).inode_mut();
        o.in_size
            .set(o.in_size.get().saturating_sub(OBJ_SIZE as u64));
        o.in_mtime.set(now);
    }
    // Rename in place: reuse, extend or cut the extension chain.
    let old_exts: Vec<u64> = tx
        .chain(ext_start(de_id, &de_mo), NAME_EXTS)?
        .into_iter()
        .map(|(id, _)| id.number())
        .collect();
    let mut exts: Vec<ObjectId> = Vec::new();
    for (k, piece) in pieces[1..].iter().enumerate() {
        let id = match old_exts.get(k) {
            Some(&n) => tx.take_no(MetaType::DirEntry, n)?.0,
            None => {
                let id = tx.alloc(MetaType::DirEntry)?;
                tx.take(id).direntry_mut().de_ino.set(de_id.number() as i64);
                id
            }
        };
        tx.take(id).direntry_mut().de_name = *piece;
        exts.push(id);
    }
    for &n in old_exts.iter().skip(pieces.len() - 1) {
        let (id, _) = tx.take_no(MetaType::DirEntry, n)?;
        tx.free(id);
    }
    link_extensions(tx, &exts);
    list_append(tx, ndir_id, MetaType::DirEntry, de_id)?;
    {
        let ni = tx.take(ndir_id).inode_mut();
        ni.in_size.set(ni.in_size.get() + OBJ_SIZE as u64);
        ni.in_mtime.set(now);
    }
    {
        let d = tx.take(de_id).direntry_mut();
        d.de_name = pieces[0];
        d.de_dirino.set(ndir as i64);
        d.de_extdeno
            .set(exts.first().map(|e| e.number()).unwrap_or(0));
    }
    tx.take(in_id).inode_mut().in_ctime.set(now);
    Ok(())
}
