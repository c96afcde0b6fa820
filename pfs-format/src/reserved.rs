//! The objects mkfs writes into fresh metasets (`metaobj_init` in the
//! reference's `cmd_mkfs.cc`).
//!
//! Every object is written, used or not. Reserved ones:
//! - block tag 0 of every chunk: used (the chunk's metadata block), no owner;
//! - direntry 0 of chunk 0: the root's, `de_ino = 0`;
//! - direntries 1 and 2: `.pfs-paxos` and `.pfs-journal` in the root, linked
//!   to each other;
//! - inode 0: the root directory, its entry chain running 1 → 2;
//! - inodes 1 and 2: `.pfs-paxos` and `.pfs-journal`, empty files (mkfs then
//!   gives them blocks through the file layer).

use crate::direntry::DirEntryPhy;
use crate::inode::{InodePhy, INODE_TYPE_DIR, INODE_TYPE_FILE};
use crate::layout::{
    INNER_FILE_BTIME, JOURNAL_FILE_INO, JOURNAL_FILE_NAME, PAXOS_FILE_INO, PAXOS_FILE_NAME,
    ROOT_INO,
};
use crate::metaobj::MetaObjPhy;
use crate::objno::{MetaType, ObjectId};

/// The object mkfs writes at `id`. `root_btime` (microseconds) is stamped on
/// the root inode; it is the only clock value in a fresh metaset.
pub fn mkfs_object(id: ObjectId, root_btime: u64) -> MetaObjPhy {
    let mut mo = MetaObjPhy::new_free(id);
    let number = id.number();
    match id.mtype {
        MetaType::BlkTag => {
            if id.oid == 0 {
                mo.mo_used = 1;
            }
        }
        MetaType::DirEntry => {
            let named = |mo: &mut MetaObjPhy, name: &str, ino: u64| {
                mo.mo_used = 1;
                let de: &mut DirEntryPhy = mo.direntry_mut();
                de.de_name[..name.len()].copy_from_slice(name.as_bytes());
                de.de_ino.set(ino as i64);
                de.de_dirino.set(ROOT_INO as i64);
            };
            match number {
                ROOT_INO => {
                    mo.mo_used = 1;
                    mo.direntry_mut().de_ino.set(ROOT_INO as i64);
                }
                PAXOS_FILE_INO => {
                    named(&mut mo, PAXOS_FILE_NAME, PAXOS_FILE_INO);
                    mo.mo_next.set(JOURNAL_FILE_INO);
                }
                JOURNAL_FILE_INO => {
                    named(&mut mo, JOURNAL_FILE_NAME, JOURNAL_FILE_INO);
                    mo.mo_prev.set(PAXOS_FILE_INO);
                }
                _ => {}
            }
        }
        MetaType::Inode => {
            let init = |mo: &mut MetaObjPhy, ty: u8, btime: u64| {
                mo.mo_used = 1;
                let i: &mut InodePhy = mo.inode_mut();
                i.in_type = ty;
                i.in_nlink.set(1);
                i.in_deno.set(number);
                i.in_btime.set(btime);
            };
            match number {
                ROOT_INO => {
                    init(&mut mo, INODE_TYPE_DIR, root_btime);
                    mo.mo_next.set(PAXOS_FILE_INO);
                    mo.mo_prev.set(JOURNAL_FILE_INO);
                }
                PAXOS_FILE_INO | JOURNAL_FILE_INO => {
                    init(&mut mo, INODE_TYPE_FILE, INNER_FILE_BTIME)
                }
                _ => {}
            }
        }
    }
    mo.seal();
    mo
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(t: MetaType, chunk: u32, oid: u32) -> MetaObjPhy {
        mkfs_object(ObjectId::new(t, chunk, oid).unwrap(), 0)
    }

    #[test]
    fn reserved_objects_match_reference_checksums() {
        // `dumpfs -m` of the golden fresh-1chunk image printed these
        // checksums for objects mkfs wrote and nothing changed since.
        assert_eq!(
            obj(MetaType::DirEntry, 0, 0).mo_checksum.get(),
            1_885_630_745
        );
        assert!(obj(MetaType::BlkTag, 1, 0).is_used());
        assert!(!obj(MetaType::BlkTag, 0, 1).is_used());
        assert!(!obj(MetaType::Inode, 1, 0).is_used());
        let paxos = obj(MetaType::DirEntry, 0, 1);
        assert_eq!(
            paxos.direntry().name_piece(),
            (PAXOS_FILE_NAME.as_bytes(), true)
        );
        assert_eq!(paxos.mo_next.get(), 2);
        let root = obj(MetaType::Inode, 0, 0);
        assert!(root.inode().is_dir());
        assert_eq!((root.mo_next.get(), root.mo_prev.get()), (1, 2));
        for t in MetaType::ALL {
            for oid in 0..4 {
                obj(t, 0, oid).validate_links(1).unwrap();
            }
        }
    }
}
