//! A consistency check of a filesystem's metadata (the reference has none):
//! every used object reachable, block tags matching their files, no block
//! owned twice, sizes and counts right, names and types possible, no chain
//! or directory loop. Every problem is listed; none stops the check.
//!
//! What is legitimately allowed and so not reported: a size beyond the
//! file's last block (holes; `truncate` up), blocks past the end of file
//! (`fallocate` with `FALLOC_FL_KEEP_SIZE`, the reference's default).

use crate::chain::impossible_name;
use crate::device::Device;
use crate::meta::{Journal, MetaImage};
use crate::ns::MAX_FILE_SIZE;
use pfs_format::inode::NO_DIRENTRY;
use pfs_format::layout::{JOURNAL_FILE_INO, OBJ_SIZE, PAXOS_FILE_INO, ROOT_INO};
use pfs_format::{MetaType, ObjectId};
use std::collections::{BTreeSet, HashMap, HashSet};

/// What the check found.
///
/// # Example
///
/// Check a mounted filesystem, then the device as the tool's `fsck` does
/// (`m` is a read-write `Arc<Mount>` of a new filesystem):
///
/// ```
/// # struct Scratch(std::path::PathBuf);
/// # impl Drop for Scratch {
/// #     fn drop(&mut self) {
/// #         let _ = std::fs::remove_dir_all(&self.0);
/// #     }
/// # }
/// # let scratch = Scratch(std::env::temp_dir().join(format!("pfs-doc-fsck-{}", std::process::id())));
/// # std::fs::create_dir_all(&scratch.0)?;
/// # let dir = scratch.0.clone();
/// # let img = scratch.0.join("disk");
/// # std::fs::File::create(&img)?.set_len(10 << 30)?;
/// # let dev = std::sync::Arc::new(pfs_core::FileDevice::open("disk", &img, true)?);
/// # pfs_core::mkfs(dev.as_ref(), &pfs_core::MkfsOptions::default())?;
/// # let opts = pfs_core::MountOptions { hostid: 1, ..pfs_core::MountOptions::default() };
/// # let m = std::sync::Arc::new(pfs_core::Mount::open_with(dev, pfs_core::Mode::ReadWrite, &opts)?);
/// use pfs_core::inspect::fsck_device;
///
/// m.create_dir_all("/a/b")?;
/// m.create_path("/a/b/f", pfs_core::FileType::File)?;
/// let report = m.fsck()?;
/// assert!(report.is_clean(), "{:?}", report.problems);
/// assert_eq!((report.dirs, report.files), (3, 3)); // with .pfs-paxos and .pfs-journal
///
/// let report = fsck_device(m.device().as_ref())?;
/// assert!(report.is_clean());
/// assert!(report.orphans.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsckReport {
    /// Directories reached from the root (the root included).
    pub dirs: u64,
    /// Files reached from the root.
    pub files: u64,
    /// Blocks owned by reached files.
    pub blocks: u64,
    /// Inodes unlinked but still allocated (freed by the next writer).
    pub orphans: Vec<u64>,
    /// Inconsistencies, one line each; empty when the filesystem is sound.
    pub problems: Vec<String>,
}

impl FsckReport {
    /// Whether no inconsistency was found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the device: loads every metaset without stopping at a damaged
/// object (each one is a problem of the report), replays the committed
/// journal, then runs [`check`].
pub fn check_device(dev: &dyn Device) -> crate::error::Result<FsckReport> {
    let (mut meta, load_problems) = MetaImage::load_lenient(dev)?;
    let journal = Journal::locate(dev, &meta)?;
    let entries = journal.committed(meta.nchunk)?;
    meta.apply(&entries);
    let mut r = check(&meta);
    let mut problems = load_problems;
    problems.append(&mut r.problems);
    r.problems = problems;
    Ok(r)
}

/// Checks one inode's own fields.
fn check_inode(ino: u64, i: &pfs_format::InodePhy, at: &str, problems: &mut Vec<String>) {
    if !i.is_dir() && !i.is_file() {
        problems.push(format!(
            "{at}: inode {ino} has unknown inode type {}",
            i.in_type
        ));
    }
    if i.in_nlink.get() == 0 {
        problems.push(format!("{at}: inode {ino} is linked but has nlink 0"));
    }
    if i.is_file() && i.in_size.get() > MAX_FILE_SIZE {
        problems.push(format!(
            "{at}: inode {ino} has size {}, beyond the largest file size PFS can address",
            i.in_size.get()
        ));
    }
}

/// Checks `meta` (as replayed from the journal).
pub fn check(meta: &MetaImage) -> FsckReport {
    let mut r = FsckReport::default();
    let mut seen_inodes: BTreeSet<u64> = BTreeSet::new();
    let mut seen_dentries: BTreeSet<u64> = BTreeSet::new();
    let mut block_owner: HashMap<ObjectId, u64> = HashMap::new();
    // Directories to visit; each inode is pushed once at most (a second
    // name is reported, not followed), so the walk ends on any tree.
    let mut stack = vec![(ROOT_INO, "/".to_owned())];
    seen_inodes.insert(ROOT_INO);
    seen_dentries.insert(0);
    while let Some((dir, path)) = stack.pop() {
        r.dirs += 1;
        let entries = match meta.read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                r.problems
                    .push(format!("directory {path} (inode {dir}): {e}"));
                continue;
            }
        };
        let counted = entries
            .iter()
            .filter(|e| {
                !(dir == ROOT_INO && (e.ino == PAXOS_FILE_INO || e.ino == JOURNAL_FILE_INO))
            })
            .count() as u64;
        if let Ok((_, i)) = meta.inode(dir) {
            if i.in_size.get() != counted * OBJ_SIZE as u64 {
                r.problems.push(format!(
                    "directory {path}: size {} but {counted} entries",
                    i.in_size.get()
                ));
            }
        }
        let mut names: HashSet<&[u8]> = HashSet::new();
        for e in &entries {
            let name = String::from_utf8_lossy(&e.name).into_owned();
            let child = format!(
                "{}{}{name}",
                path,
                if path.ends_with('/') { "" } else { "/" }
            );
            if let Err(bad) = crate::names::check_name(&e.name) {
                r.problems.push(format!(
                    "directory {path}: entry {name:?} (direntry {}): {bad}",
                    e.deno
                ));
            }
            seen_dentries.insert(e.deno);
            if let Some(why) = impossible_name(&e.name) {
                r.problems.push(format!(
                    "directory {path}: direntry {} has an impossible name {name:?}: {why}",
                    e.deno
                ));
            }
            if !names.insert(&e.name) {
                r.problems.push(format!(
                    "directory {path}: duplicate name {name:?} (direntry {})",
                    e.deno
                ));
            }
            // Extension direntries of long names (read_dir walked them).
            if let Ok((_, mo)) = meta.lookup(MetaType::DirEntry, e.deno) {
                for ext in meta.ext_chain(e.deno, mo.direntry().de_extdeno.get()) {
                    match ext {
                        Ok((id, _)) => {
                            seen_dentries.insert(id.number());
                        }
                        Err(err) => {
                            r.problems.push(format!("{child}: {err}"));
                            break;
                        }
                    }
                }
            }
            if !seen_inodes.insert(e.ino) {
                r.problems.push(format!(
                    "{child}: inode {} has a second name (a directory cycle if it is an ancestor)",
                    e.ino
                ));
                continue;
            }
            let (_, inode) = match meta.inode(e.ino) {
                Ok(x) => x,
                Err(err) => {
                    r.problems.push(format!("{child}: {err}"));
                    continue;
                }
            };
            check_inode(e.ino, &inode, &child, &mut r.problems);
            if inode.in_deno.get() != e.deno {
                r.problems.push(format!(
                    "{child}: inode {} names direntry {} but is named by {}",
                    e.ino,
                    inode.in_deno.get(),
                    e.deno
                ));
            }
            if inode.is_dir() {
                stack.push((e.ino, child));
                continue;
            }
            r.files += 1;
            match meta.blocks(e.ino) {
                Ok(blocks) => {
                    if blocks.len() as u64 != inode.in_nblock.get() {
                        r.problems.push(format!(
                            "{child}: {} blocks in its chain, in_nblock says {}",
                            blocks.len(),
                            inode.in_nblock.get()
                        ));
                    }
                    for b in blocks.values() {
                        if let Some(other) = block_owner.insert(b.btno, e.ino) {
                            r.problems.push(format!(
                                "block {} owned by inodes {other} and {}",
                                b.blkno, e.ino
                            ));
                        }
                        r.blocks += 1;
                    }
                }
                Err(err) => r.problems.push(format!("{child}: {err}")),
            }
        }
    }
    // Everything used must have been reached.
    for c in 0..meta.nchunk {
        for t in MetaType::ALL {
            for (oid, mo) in meta.objects(c, t).iter().enumerate() {
                if !mo.is_used() {
                    continue;
                }
                let Ok(id) = ObjectId::new(t, c, oid as u32) else {
                    continue;
                };
                let n = id.number();
                match t {
                    MetaType::Inode if !seen_inodes.contains(&n) => {
                        if mo.inode().in_deno.get() == NO_DIRENTRY {
                            r.orphans.push(n);
                            // Its blocks are accounted to it.
                            match meta.blocks(n) {
                                Ok(blocks) => {
                                    for b in blocks.values() {
                                        block_owner.insert(b.btno, n);
                                    }
                                }
                                Err(err) => r.problems.push(format!("orphaned inode {n}: {err}")),
                            }
                        } else {
                            r.problems
                                .push(format!("inode {n} is used but has no name"));
                        }
                    }
                    MetaType::DirEntry if !seen_dentries.contains(&n) => {
                        r.problems
                            .push(format!("direntry {n} is used but in no directory"));
                    }
                    _ => {}
                }
            }
        }
    }
    for c in 0..meta.nchunk {
        for (oid, mo) in meta.objects(c, MetaType::BlkTag).iter().enumerate() {
            if oid == 0 || !mo.is_used() {
                continue;
            }
            let Ok(id) = ObjectId::new(MetaType::BlkTag, c, oid as u32) else {
                continue;
            };
            if !block_owner.contains_key(&id) {
                r.problems.push(format!(
                    "block {} is used but belongs to no file (bt_ino {})",
                    id.block_number().unwrap_or(0),
                    mo.blktag().bt_ino.get()
                ));
            }
        }
    }
    r
}

impl crate::mount::Mount {
    /// Checks the metadata as of the latest commit.
    pub fn fsck(&self) -> crate::error::Result<FsckReport> {
        self.refresh()?;
        Ok(check(&self.state.read().meta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MemDevice;
    use crate::mkfs::{mkfs, MkfsOptions};
    use pfs_format::layout::CHUNK_SIZE;

    #[test]
    fn fresh_is_clean_and_damage_is_found() {
        let dev = MemDevice::new("f", CHUNK_SIZE);
        mkfs(&dev, &MkfsOptions::default()).unwrap();
        let mut meta = MetaImage::load(&dev).unwrap();
        let r = check(&meta);
        assert!(r.is_clean(), "{:?}", r.problems);
        assert_eq!((r.dirs, r.files, r.blocks), (1, 2, 257));
        // A used block nobody owns.
        let id = ObjectId::new(MetaType::BlkTag, 0, 2000).unwrap();
        let mut mo = meta.get(id);
        mo.mo_used = 1;
        meta.set(id, mo);
        // The root's size claims an entry it does not have.
        let root = ObjectId::new(MetaType::Inode, 0, 0).unwrap();
        let mut mo = meta.get(root);
        mo.inode_mut().in_size.set(128);
        meta.set(root, mo);
        let r = check(&meta);
        assert_eq!(r.problems.len(), 2, "{:?}", r.problems);
    }
}
