//! Directory entry names: what a name may be, and the per-directory index
//! that finds a name without walking the directory's chain.
//!
//! The index lives beside the metadata it describes ([`MetaImage`]). It is
//! built for a directory the first time a name is looked up in it, by one
//! walk of the directory's chain. Afterwards every changed direntry object
//! (from a commit, a replay or a follower's refresh, all of which go through
//! [`MetaImage::set`]) is noted, and the notes are applied before the next
//! lookup, when all objects of the change are in place (a long name's
//! extension pieces may be set after its head).

use crate::error::{CoreError, Result};
use crate::meta::MetaImage;
use crate::ns::Entry;
use pfs_format::layout::MAX_NAME_LEN;
use pfs_format::{MetaObjPhy, MetaType, ObjectId};
use std::collections::HashMap;

/// Checks a name a new directory entry would get: 1 to 255 bytes, not `.`
/// or `..`, no `/` or NUL. Any other bytes are allowed (names need not be
/// UTF-8).
///
/// # Example
///
/// Names are bytes:
///
/// ```
/// use pfs_core::check_name;
///
/// assert!(check_name(b"000000010000000000000001").is_ok());
/// assert!(check_name(b"\xff not UTF-8").is_ok());
/// for bad in [&b""[..], b".", b"..", b"a/b", b"nul\0"] {
///     assert_eq!(check_name(bad).unwrap_err().errno(), libc::EINVAL);
/// }
/// assert_eq!(check_name(&[b'x'; 256]).unwrap_err().errno(), libc::ENAMETOOLONG);
/// assert!(check_name(&[b'x'; 255]).is_ok());
/// ```
pub fn check_name(name: &[u8]) -> Result<()> {
    let bad = |reason| {
        Err(CoreError::InvalidName {
            name: String::from_utf8_lossy(name).into_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty name");
    }
    if name == b"." || name == b".." {
        return bad("'.' and '..' are not names an entry can have");
    }
    if name.contains(&b'/') {
        return bad("a name cannot contain '/'");
    }
    if name.contains(&0) {
        return bad("a name cannot contain a NUL byte");
    }
    if name.len() > MAX_NAME_LEN {
        return Err(CoreError::NameTooLong {
            path: String::from_utf8_lossy(name).into_owned(),
        });
    }
    Ok(())
}

/// Changes noted without a lookup in between before the index is dropped.
const MAX_TOUCHED: usize = 1 << 20;

/// Name → head direntry number, per directory, for the directories looked
/// up so far.
#[derive(Default)]
pub(crate) struct NameIndex {
    dirs: HashMap<u64, HashMap<Vec<u8>, u64>>,
    /// Where each indexed head direntry sits: direntry → (directory, name).
    at: HashMap<u64, (u64, Vec<u8>)>,
    /// Direntries changed since the index was last brought up to date.
    touched: Vec<u64>,
}

impl NameIndex {
    /// Notes that object `id` becomes `new` (it was `old`).
    pub(crate) fn note(&mut self, id: ObjectId, old: &MetaObjPhy, new: &MetaObjPhy) {
        match id.mtype {
            MetaType::DirEntry => {
                if self.dirs.is_empty() {
                    return;
                }
                if self.touched.len() >= MAX_TOUCHED {
                    // Nobody looked anything up for a long stretch of
                    // changes (a follower only replaying): start over
                    // rather than keep a growing list.
                    *self = NameIndex::default();
                    return;
                }
                self.touched.push(id.number());
                // A changed extension piece changes its head's name.
                for mo in [old, new] {
                    if mo.is_used() && mo.direntry().is_ext() {
                        self.touched.push(mo.direntry().de_headdeno());
                    }
                }
            }
            MetaType::Inode => {
                if !(new.is_used() && new.inode().is_dir()) {
                    self.forget_dir(id.number());
                }
            }
            MetaType::BlkTag => {}
        }
    }

    fn forget_dir(&mut self, dir: u64) {
        if let Some(names) = self.dirs.remove(&dir) {
            for deno in names.values() {
                self.at.remove(deno);
            }
        }
    }

    /// Applies the noted changes.
    fn settle(&mut self, meta: &MetaImage) {
        if self.touched.is_empty() {
            return;
        }
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        touched.dedup();
        // Removals first: a rename may give one entry the name another
        // entry of the same change gives up.
        for deno in &touched {
            if let Some((dir, name)) = self.at.remove(deno) {
                if let Some(names) = self.dirs.get_mut(&dir) {
                    if names.get(&name) == Some(deno) {
                        names.remove(&name);
                    }
                }
            }
        }
        for deno in touched {
            let Ok((_, mo)) = meta.lookup(MetaType::DirEntry, deno) else {
                continue;
            };
            let de = mo.direntry();
            if !mo.is_used() || de.is_ext() || de.de_dirino.get() < 0 {
                continue;
            }
            let dir = de.de_dirino.get() as u64;
            if !self.dirs.contains_key(&dir) {
                continue;
            }
            match meta.head_name(deno) {
                Ok(name) => {
                    let names = self.dirs.entry(dir).or_default();
                    // The first entry of a name wins, as a walk would find.
                    if !names.contains_key(&name) {
                        names.insert(name.clone(), deno);
                        self.at.insert(deno, (dir, name));
                    }
                }
                // Rebuilt (and the damage reported) at the next lookup.
                Err(_) => self.forget_dir(dir),
            }
        }
    }

    /// Looks `name` up in directory `dir` (known to be a directory),
    /// indexing the directory first if needed.
    pub(crate) fn find(
        &mut self,
        meta: &MetaImage,
        dir: u64,
        name: &[u8],
    ) -> Result<Option<Entry>> {
        self.settle(meta);
        if !self.dirs.contains_key(&dir) {
            let mut names = HashMap::new();
            for e in meta.read_dir(dir)? {
                names.entry(e.name.clone()).or_insert(e.deno);
            }
            for (name, deno) in &names {
                self.at.insert(*deno, (dir, name.clone()));
            }
            self.dirs.insert(dir, names);
        }
        let Some(&deno) = self.dirs.get(&dir).and_then(|d| d.get(name)) else {
            return Ok(None);
        };
        let (_, mo) = meta.lookup(MetaType::DirEntry, deno)?;
        let de = mo.direntry();
        if !mo.is_used() || de.is_ext() || de.de_dirino.get() != dir as i64 {
            // Cannot happen while every change goes through `set`: the next
            // lookup starts this directory over.
            self.forget_dir(dir);
            return Err(crate::ns::broken(
                MetaType::DirEntry,
                deno,
                "an entry of its directory's chain",
                dir,
            ));
        }
        Ok(Some(Entry {
            deno,
            name: name.to_vec(),
            ino: de.de_ino.get() as u64,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_refused() {
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b"] {
            let e = check_name(bad).unwrap_err();
            assert_eq!(e.errno(), libc::EINVAL, "{bad:?}");
        }
        let long = vec![b'x'; 256];
        assert_eq!(check_name(&long).unwrap_err().errno(), libc::ENAMETOOLONG);
        check_name(&long[..255]).unwrap();
        check_name(b"\xff\xfe not utf-8").unwrap();
        check_name(b"...").unwrap();
    }
}
