//! Small valid images built with `pfs-core` on sparse files, and damage
//! applied to their meta objects with correct checksums: what a hostile or
//! unlucky disk could hand every command.
//!
//! The base image holds:
//!
//! ```text
//! /d1/d2/f        100 bytes
//! /d1/g           10 bytes
//! /d1/h           10 bytes
//! /d1/<100 x 'L'> 10 bytes (a name with an extension direntry)
//! /d3/top         5 MiB (two blocks)
//! /d4/a, /d4/b    10 bytes each
//! ```
//!
//! Everything is checkpointed, so the metasets on the device hold the whole
//! state and the journal has nothing to replay: damage written into a
//! metaset sector is what every mount sees.

use pfs_core::inspect::MetaImage;
use pfs_core::{mkfs, MkfsOptions};
use pfs_core::{Device, FileDevice, FileType};
use pfs_core::{Mode, Mount, MountOptions};
use pfs_format::layout::{CHUNK_SIZE, MIN_LOG_SIZE, OBJS_PER_SECTOR, SECTOR_SIZE};
use pfs_format::metaset::{decode_sector, encode_sector};
use pfs_format::{MetaObjPhy, MetaType, ObjectId};
use std::path::Path;
use std::sync::Arc;

/// The long name in the base image.
pub fn long_name() -> String {
    "L".repeat(100)
}

/// Creates the base image at `path` (a sparse 10 GiB file).
///
/// Panics on any failure: a test cannot go on without its image.
pub fn build_base(path: &Path) {
    let f = std::fs::File::create(path).expect("create image file");
    f.set_len(CHUNK_SIZE).expect("size image file");
    drop(f);
    let dev = FileDevice::open("img", path, true).expect("open image");
    let opts = MkfsOptions {
        log_size: MIN_LOG_SIZE,
        ..MkfsOptions::default()
    };
    mkfs(&dev, &opts).expect("mkfs");
    let dev: Arc<dyn Device> = Arc::new(dev);
    let m = Mount::open_with(dev, Mode::ReadWrite, &MountOptions::default()).expect("mount");
    for d in ["/d1", "/d1/d2", "/d3", "/d4"] {
        m.mkdir_path(d).expect("mkdir");
    }
    let long = format!("/d1/{}", long_name());
    let files: [(&str, usize); 7] = [
        ("/d1/d2/f", 100),
        ("/d1/g", 10),
        ("/d1/h", 10),
        (long.as_str(), 10),
        ("/d3/top", 5 << 20),
        ("/d4/a", 10),
        ("/d4/b", 10),
    ];
    for (p, n) in files {
        let ino = m.create_path(p, FileType::File).expect("create");
        let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        m.write_at(ino, &data, 0).expect("write");
    }
    m.checkpoint().expect("checkpoint");
}

/// Inode number, direntry number and block-tag numbers (file order) of
/// `path` in the image at `img`.
pub fn lookup(img: &Path, path: &str) -> (u64, u64, Vec<u64>) {
    let dev = FileDevice::open("img", img, false).expect("open image");
    let meta = MetaImage::load(&dev).expect("load image");
    let dev: Arc<dyn Device> = Arc::new(dev);
    let ino = Mount::open(dev, Mode::ReadOnly)
        .expect("mount")
        .resolve(path)
        .expect("resolve");
    let (_, inode) = meta.inode(ino).expect("inode");
    let deno = inode.in_deno.get();
    let bts = meta
        .blocks(ino)
        .map(|b| b.values().map(|fb| fb.btno.number()).collect())
        .unwrap_or_default();
    (ino, deno, bts)
}

/// Rewrites object `number` of type `t` on the device at `img` through
/// `edit`, sealing it with a correct checksum (or, with `seal` false,
/// leaving whatever checksum `edit` left).
pub fn edit_object(
    img: &Path,
    t: MetaType,
    number: u64,
    seal: bool,
    edit: impl FnOnce(&mut MetaObjPhy),
) {
    let dev = FileDevice::open("img", img, true).expect("open image");
    let nchunk = (dev.len() / CHUNK_SIZE) as u32;
    let id = ObjectId::from_number(t, number, nchunk).expect("object number");
    let bda = id.sector_bda();
    let mut buf = pfs_core::AlignedBuf::new(SECTOR_SIZE as usize);
    dev.read_at(buf.as_mut_slice(), bda).expect("read sector");
    let sect = id.oid / OBJS_PER_SECTOR;
    let mut objs = decode_sector(buf.as_slice(), t, id.chunk, sect).expect("decode sector");
    let mo = &mut objs[id.index_in_sector() as usize];
    edit(mo);
    if seal {
        mo.seal();
    }
    buf.as_mut_slice().copy_from_slice(&encode_sector(&objs));
    dev.write_at(buf.as_slice(), bda).expect("write sector");
    dev.sync().expect("sync");
}

/// Sets the first name piece of direntry `deno` (names of up to 63 bytes).
pub fn rename_entry(img: &Path, deno: u64, name: &[u8]) {
    assert!(name.len() < 64, "short names only");
    edit_object(img, MetaType::DirEntry, deno, true, |mo| {
        let d = mo.direntry_mut();
        d.de_name = [0; 64];
        d.de_name[..name.len()].copy_from_slice(name);
    });
}

/// One kind of damage, applied to a copy of the base image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// `/d1/d2/f`'s direntry names `/d1`'s inode: a directory cycle.
    EntryToParent,
    /// `/d3/top`'s second block tag links back to its first.
    BlockTagCycle,
    /// `/d1`'s last entry links back to its first.
    DirEntryCycle,
    /// `/d3/top` claims 2^64 - 3 bytes.
    HugeSize,
    /// `/d1/g` is renamed `h`, beside the real `h`.
    DuplicateName,
    /// `/d1/g` is renamed `..`.
    DotDotName,
    /// `/d1/g`'s link count is 0.
    NlinkZero,
    /// `/d1/g` has inode type 7.
    UnknownType,
}

impl Damage {
    /// Every kind.
    pub const ALL: [Damage; 8] = [
        Damage::EntryToParent,
        Damage::BlockTagCycle,
        Damage::DirEntryCycle,
        Damage::HugeSize,
        Damage::DuplicateName,
        Damage::DotDotName,
        Damage::NlinkZero,
        Damage::UnknownType,
    ];

    /// Applies the damage to the base image at `img`.
    pub fn apply(self, img: &Path) {
        match self {
            Damage::EntryToParent => {
                let (d1, _, _) = lookup(img, "/d1");
                let (_, f_de, _) = lookup(img, "/d1/d2/f");
                edit_object(img, MetaType::DirEntry, f_de, true, |mo| {
                    mo.direntry_mut().de_ino.set(d1 as i64);
                });
            }
            Damage::BlockTagCycle => {
                let (_, _, bts) = lookup(img, "/d3/top");
                assert_eq!(bts.len(), 2, "top has two blocks");
                let (first, second) = (bts[0], bts[1]);
                edit_object(img, MetaType::BlkTag, second, true, |mo| {
                    mo.mo_next.set(first);
                });
            }
            Damage::DirEntryCycle => {
                let (_, first, _) = lookup(img, "/d1/d2");
                let (_, last, _) = lookup(img, &format!("/d1/{}", long_name()));
                edit_object(img, MetaType::DirEntry, last, true, |mo| {
                    mo.mo_next.set(first);
                });
            }
            Damage::HugeSize => {
                let (ino, _, _) = lookup(img, "/d3/top");
                edit_object(img, MetaType::Inode, ino, true, |mo| {
                    mo.inode_mut().in_size.set(u64::MAX - 2);
                });
            }
            Damage::DuplicateName => {
                let (_, de, _) = lookup(img, "/d1/g");
                rename_entry(img, de, b"h");
            }
            Damage::DotDotName => {
                let (_, de, _) = lookup(img, "/d1/g");
                rename_entry(img, de, b"..");
            }
            Damage::NlinkZero => {
                let (ino, _, _) = lookup(img, "/d1/g");
                edit_object(img, MetaType::Inode, ino, true, |mo| {
                    mo.inode_mut().in_nlink.set(0);
                });
            }
            Damage::UnknownType => {
                let (ino, _, _) = lookup(img, "/d1/g");
                edit_object(img, MetaType::Inode, ino, true, |mo| {
                    mo.inode_mut().in_type = 7;
                });
            }
        }
    }
}
