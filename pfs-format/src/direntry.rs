//! The direntry payload (`pfs_direntry_phy_t`) and long names.
//!
//! A direntry holds 64 bytes of name. A name is stored with its terminating
//! NUL, cut into 64-byte pieces: the head direntry holds the first piece and
//! `de_extdeno` chains extension direntries holding the rest, each pointing
//! back to its head through `de_headdeno` (the `de_ino` field of an extension)
//! and having `de_dirino = -1`. So a name of `n` bytes takes
//! `(n + 1).div_ceil(64)` direntries: a 63-byte name takes one, a 64-byte
//! name two (the second holding only the NUL), a 255-byte name four.

use crate::endian::{I64Le, U64Le};
use crate::error::{corrupt, CorruptKind, Expected, FormatError, Location, Result};
use crate::layout::{DE_NAME_SIZE, MAX_NAME_LEN};
use crate::objno::MetaType;
use crate::record::pin_offsets;
use bytemuck::{Pod, Zeroable};
use core::mem::size_of;

/// `de_ino`/`de_dirino` of a free direntry (`INVALID_INO`).
pub const NO_INODE: i64 = -1;
/// `de_extdeno` when there is no extension (`INVALID_EXTDENO`; direntry 0 is
/// the root's, which is never an extension).
pub const NO_EXTENSION: u64 = 0;
/// Most direntries one name can take.
pub const MAX_NAME_PIECES: usize = (MAX_NAME_LEN + 1).div_ceil(DE_NAME_SIZE);

/// A directory entry: the payload of an `MT_DIRENTRY` meta object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct DirEntryPhy {
    /// A 64-byte piece of the name, NUL-padded (`strncpy`).
    pub de_name: [u8; DE_NAME_SIZE],
    /// Head direntry: the named inode. Extension: the head direntry's number
    /// (`de_headdeno`). Free: -1.
    pub de_ino: I64Le,
    /// Head direntry: the parent directory's inode. Extension and free: -1.
    pub de_dirino: I64Le,
    /// Next extension direntry, or [`NO_EXTENSION`].
    pub de_extdeno: U64Le,
}

const _: () = assert!(size_of::<DirEntryPhy>() == crate::layout::OBJ_DATA_SIZE);
pin_offsets!(DirEntryPhy; de_ino: 64, de_dirino: 72, de_extdeno: 80);

impl DirEntryPhy {
    /// A free direntry as mkfs writes it.
    pub fn free() -> DirEntryPhy {
        let mut d = DirEntryPhy::zeroed();
        d.de_ino.set(NO_INODE);
        d.de_dirino.set(NO_INODE);
        d.de_extdeno.set(NO_EXTENSION);
        d
    }

    /// Whether this is an extension direntry (`DE_ISEXT`).
    pub fn is_ext(&self) -> bool {
        self.de_ino.get() != NO_INODE && self.de_dirino.get() == NO_INODE
    }

    /// The head direntry number of an extension (`de_headdeno`).
    pub fn de_headdeno(&self) -> u64 {
        self.de_ino.get() as u64
    }

    /// The bytes of this piece up to its first NUL, and whether a NUL ended
    /// it (a piece without NUL continues in the next extension).
    pub fn name_piece(&self) -> (&[u8], bool) {
        match self.de_name.iter().position(|&b| b == 0) {
            Some(n) => (&self.de_name[..n], true),
            None => (&self.de_name[..], false),
        }
    }
}

/// Checks a single path component for PFS: 1..=255 bytes, no `/`, no NUL.
pub fn check_name(name: &[u8]) -> Result<()> {
    if name.is_empty() {
        return Err(FormatError::InvalidName {
            reason: "empty name",
        });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(FormatError::NameTooLong {
            len: name.len(),
            max: MAX_NAME_LEN,
        });
    }
    if name.contains(&0) {
        return Err(FormatError::InvalidName {
            reason: "name contains a NUL byte",
        });
    }
    if name.contains(&b'/') {
        return Err(FormatError::InvalidName {
            reason: "name contains '/'",
        });
    }
    Ok(())
}

/// Cuts a name into the 64-byte pieces its direntries hold, first piece for
/// the head direntry.
pub fn split_name(name: &[u8]) -> Result<Vec<[u8; DE_NAME_SIZE]>> {
    check_name(name)?;
    let npieces = (name.len() + 1).div_ceil(DE_NAME_SIZE);
    let mut pieces = vec![[0u8; DE_NAME_SIZE]; npieces];
    for (piece, src) in pieces.iter_mut().zip(name.chunks(DE_NAME_SIZE)) {
        piece[..src.len()].copy_from_slice(src);
    }
    Ok(pieces)
}

/// Reassembles the name starting at head direntry `head` (object number
/// `head_no`), fetching extensions through `fetch`, which returns the
/// direntry payload of an object number.
///
/// Fails on a chain longer than a 255-byte name allows, an extension that
/// does not point back to its head, or a name that is empty or never ends.
pub fn assemble_name<F>(head_no: u64, head: &DirEntryPhy, mut fetch: F) -> Result<Vec<u8>>
where
    F: FnMut(u64) -> Result<DirEntryPhy>,
{
    let bad = |no: u64, why: &'static str, found: u64| {
        corrupt(
            CorruptKind::DirentryName,
            Location::object(MetaType::DirEntry, no),
            Expected::Desc(why),
            found,
        )
    };
    let mut name = Vec::with_capacity(DE_NAME_SIZE);
    let mut de = *head;
    let mut de_no = head_no;
    let mut ended = false;
    for piece_no in 0..MAX_NAME_PIECES {
        if piece_no > 0 && de.de_headdeno() != head_no {
            return Err(bad(
                de_no,
                "an extension pointing back to its head",
                de.de_headdeno(),
            ));
        }
        if !ended {
            let (bytes, nul) = de.name_piece();
            name.extend_from_slice(bytes);
            ended = nul;
        }
        let next = de.de_extdeno.get();
        if next == NO_EXTENSION {
            if !ended {
                return Err(bad(de_no, "a NUL-terminated name", name.len() as u64));
            }
            if name.is_empty() || name.len() > MAX_NAME_LEN {
                return Err(bad(head_no, "a name of 1..=255 bytes", name.len() as u64));
            }
            return Ok(name);
        }
        de_no = next;
        de = fetch(next)?;
    }
    Err(bad(
        head_no,
        "at most 4 direntries per name",
        MAX_NAME_PIECES as u64 + 1,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Lays `name` out as head direntry 10 plus extensions 11, 12, ...
    fn layout(name: &[u8]) -> HashMap<u64, DirEntryPhy> {
        let pieces = split_name(name).unwrap();
        let mut map = HashMap::new();
        for (i, p) in pieces.iter().enumerate() {
            let mut de = DirEntryPhy::free();
            de.de_name = *p;
            if i == 0 {
                de.de_ino.set(5);
                de.de_dirino.set(0);
            } else {
                de.de_ino.set(10);
            }
            if i + 1 < pieces.len() {
                de.de_extdeno.set(11 + i as u64);
            }
            map.insert(10 + i as u64, de);
        }
        map
    }

    fn read_back(map: &HashMap<u64, DirEntryPhy>) -> Result<Vec<u8>> {
        assemble_name(10, &map[&10], |n| {
            map.get(&n)
                .copied()
                .ok_or(FormatError::InvalidName { reason: "missing" })
        })
    }

    #[test]
    fn piece_counts_match_reference() {
        assert_eq!(split_name(&[b'a'; 63]).unwrap().len(), 1);
        assert_eq!(split_name(&[b'a'; 64]).unwrap().len(), 2);
        assert_eq!(split_name(&[b'a'; 150]).unwrap().len(), 3);
        assert_eq!(split_name(&[b'a'; 255]).unwrap().len(), 4);
        assert!(matches!(
            split_name(&[b'a'; 256]),
            Err(FormatError::NameTooLong { len: 256, max: 255 })
        ));
        assert!(split_name(b"").is_err());
        assert!(split_name(b"a/b").is_err());
        assert!(split_name(b"a\0b").is_err());
    }

    #[test]
    fn broken_chains_are_errors() {
        let mut map = layout(&[b'x'; 200]);
        map.get_mut(&11).unwrap().de_ino.set(99);
        assert_eq!(
            read_back(&map).unwrap_err().corrupt_kind(),
            Some(CorruptKind::DirentryName)
        );

        let mut map = layout(&[b'x'; 40]);
        map.get_mut(&10).unwrap().de_name = [b'y'; 64];
        assert_eq!(
            read_back(&map).unwrap_err().corrupt_kind(),
            Some(CorruptKind::DirentryName)
        );

        // A cycle is cut off by the piece limit.
        let mut map = layout(&[b'x'; 200]);
        map.get_mut(&13).unwrap().de_extdeno.set(11);
        map.get_mut(&13).unwrap().de_name = [b'z'; 64];
        assert!(read_back(&map).is_err());
    }

    proptest::proptest! {
        #[test]
        fn names_round_trip(name in proptest::collection::vec(1u8..=255, 1..=255)) {
            let name: Vec<u8> = name.into_iter().map(|b| if b == b'/' { b'_' } else { b }).collect();
            let map = layout(&name);
            proptest::prop_assert_eq!(read_back(&map).unwrap(), name);
        }
    }
}
