//! The one checked walk over chains of on-disk objects: a file's block
//! tags and a directory's entries (linked by `mo_next`), a long name's
//! extension direntries (linked by `de_extdeno`).
//!
//! Disk contents decide where a chain goes, so a damaged (or hostile) image
//! can make one loop or run on. Every walk goes through [`Chain`], which
//! ends with [`CoreError::Corrupt`] on a cycle (found with Brent's
//! algorithm, in constant memory) or on a chain longer than the objects of
//! its type that exist; so no walk hangs, and whatever a caller collects
//! from one stays bounded by the device's object count.

use crate::error::{CoreError, Result};
use crate::meta::MetaImage;
use pfs_format::{MetaObjPhy, MetaType, ObjectId};
use std::borrow::Borrow;

/// Which field links an object to the next one of its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// `mo_next`: block tags of a file, entries of a directory.
    Next,
    /// `de_extdeno`: extension direntries of a long name.
    Ext,
}

impl Link {
    fn follow(self, mo: &MetaObjPhy) -> u64 {
        match self {
            Link::Next => mo.mo_next.get(),
            Link::Ext => mo.direntry().de_extdeno.get(),
        }
    }

    fn what(self, t: MetaType) -> &'static str {
        match (self, t) {
            (Link::Ext, _) => "name extension chain",
            (Link::Next, MetaType::BlkTag) => "block-tag chain",
            (Link::Next, MetaType::DirEntry) => "directory entry chain",
            (Link::Next, MetaType::Inode) => "inode chain",
        }
    }
}

/// Where a chain starts and what heads it, for error messages.
#[derive(Debug, Clone, Copy)]
pub struct ChainStart {
    /// Type of the objects in the chain.
    pub t: MetaType,
    /// Link followed.
    pub link: Link,
    /// Number of the first object (0: empty chain).
    pub first: u64,
    /// Type of the object heading the chain (the inode of a file or
    /// directory, the head direntry of a name).
    pub owner_type: MetaType,
    /// Number of the heading object.
    pub owner: u64,
}

/// Where a [`Chain`] reads its objects: metadata as loaded, or anything
/// else through [`FromFn`] (a transaction's view).
pub trait Fetch {
    /// What a fetch yields.
    type Obj: Borrow<MetaObjPhy>;
    /// The object of type `t` numbered `n`.
    fn fetch(&mut self, t: MetaType, n: u64) -> Result<(ObjectId, Self::Obj)>;
}

impl Fetch for &MetaImage {
    type Obj = MetaObjPhy;
    fn fetch(&mut self, t: MetaType, n: u64) -> Result<(ObjectId, MetaObjPhy)> {
        self.lookup(t, n)
    }
}

/// A [`Fetch`] made of a closure.
pub struct FromFn<F>(pub F);

impl<F, T> Fetch for FromFn<F>
where
    F: FnMut(MetaType, u64) -> Result<(ObjectId, T)>,
    T: Borrow<MetaObjPhy>,
{
    type Obj = T;
    fn fetch(&mut self, t: MetaType, n: u64) -> Result<(ObjectId, T)> {
        (self.0)(t, n)
    }
}

/// A walk over one chain; yields each object with its id, then ends, or
/// yields one error and ends.
pub struct Chain<'a, F> {
    fetch: F,
    start: ChainStart,
    device: &'a str,
    next: u64,
    limit: u64,
    steps: u64,
    // Brent's cycle finding: the "tortoise" is re-placed at the current
    // object whenever `lam` reaches `power`, which then doubles.
    tortoise: u64,
    power: u64,
    lam: u64,
    done: bool,
}

impl<'a, F: Fetch> Chain<'a, F> {
    /// A walk of `start` on a device named `device` with `nchunk` chunks,
    /// reading objects through `fetch`.
    pub fn new(device: &'a str, nchunk: u32, start: ChainStart, fetch: F) -> Chain<'a, F> {
        Chain {
            fetch,
            start,
            device,
            next: start.first,
            limit: u64::from(nchunk) * u64::from(start.t.per_chunk()),
            steps: 0,
            tortoise: 0,
            power: 1,
            lam: 0,
            done: false,
        }
    }

    /// Lowers the longest chain accepted (never raises it).
    pub fn at_most(mut self, n: u64) -> Self {
        self.limit = self.limit.min(n);
        self
    }

    fn corrupt(&self, problem: String) -> CoreError {
        CoreError::Corrupt {
            device: self.device.to_owned(),
            object: self.start.owner_type,
            number: self.start.owner,
            problem,
        }
    }

    /// Checks that visiting `n` neither closes a cycle nor runs past the
    /// limit.
    fn check(&mut self, n: u64) -> Result<()> {
        let what = self.start.link.what(self.start.t);
        if n == self.tortoise {
            return Err(self.corrupt(format!(
                "its {what} has a cycle: it loops back to {} {n}",
                self.start.t
            )));
        }
        self.steps += 1;
        if self.steps > self.limit {
            return Err(self.corrupt(format!(
                "its {what} runs on past {} {}s, more than it can hold",
                self.limit, self.start.t
            )));
        }
        self.lam += 1;
        if self.lam == self.power {
            self.tortoise = n;
            self.power = self.power.saturating_mul(2);
            self.lam = 0;
        }
        Ok(())
    }
}

impl<F: Fetch> Iterator for Chain<'_, F> {
    type Item = Result<(ObjectId, F::Obj)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.next == 0 {
            return None;
        }
        let n = self.next;
        let step = self
            .check(n)
            .and_then(|()| self.fetch.fetch(self.start.t, n));
        match step {
            Ok((id, mo)) => {
                self.next = self.start.link.follow(mo.borrow());
                Some(Ok((id, mo)))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// A chain read from a [`MetaImage`].
pub type MetaChain<'a> = Chain<'a, &'a MetaImage>;

impl MetaImage {
    /// Walks the chain `start` over this metadata (see `Chain`).
    pub fn chain(&self, start: ChainStart) -> MetaChain<'_> {
        Chain::new(self.device(), self.nchunk, start, self)
    }

    /// The block tags of inode `ino`'s chain, in chain order.
    pub fn blktag_chain(&self, ino: u64, first: u64) -> MetaChain<'_> {
        self.chain(ChainStart {
            t: MetaType::BlkTag,
            link: Link::Next,
            first,
            owner_type: MetaType::Inode,
            owner: ino,
        })
    }

    /// The entries (head direntries) of directory `dir`'s chain.
    pub fn entry_chain(&self, dir: u64, first: u64) -> MetaChain<'_> {
        self.chain(ChainStart {
            t: MetaType::DirEntry,
            link: Link::Next,
            first,
            owner_type: MetaType::Inode,
            owner: dir,
        })
    }

    /// The extension direntries of the name headed by direntry `deno`.
    pub fn ext_chain(&self, deno: u64, first: u64) -> MetaChain<'_> {
        self.chain(ChainStart {
            t: MetaType::DirEntry,
            link: Link::Ext,
            first,
            owner_type: MetaType::DirEntry,
            owner: deno,
        })
    }
}

/// Deepest a directory can lie below the root: every level takes at least
/// two bytes (`/x`) of a path of at most 4095.
pub const MAX_DEPTH: u64 = pfs_format::layout::MAX_PATH_LEN as u64 / 2;

/// Keeps a walk down a directory tree finite: each directory is entered
/// once (a directory entry pointing back to an ancestor, or a directory
/// with two names, is corruption), never deeper than [`MAX_DEPTH`], and
/// every name met is one PFS can make (`..` would lead a walk out of its
/// tree). Memory grows with the directories visited, which the device
/// bounds.
#[derive(Debug)]
pub struct TreeGuard {
    device: String,
    seen: std::collections::HashSet<u64>,
}

impl TreeGuard {
    /// A guard for walks on device `device`.
    pub fn new(device: &str) -> TreeGuard {
        TreeGuard {
            device: device.to_owned(),
            seen: std::collections::HashSet::new(),
        }
    }

    fn corrupt(&self, object: MetaType, number: u64, problem: String) -> CoreError {
        CoreError::Corrupt {
            device: self.device.clone(),
            object,
            number,
            problem,
        }
    }

    /// Records entering directory `dir` at `depth` below the walk's start.
    pub fn enter(&mut self, dir: u64, depth: u64) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(self.corrupt(
                MetaType::Inode,
                dir,
                format!("directory lies deeper than {MAX_DEPTH} levels, which no path can reach"),
            ));
        }
        if !self.seen.insert(dir) {
            return Err(self.corrupt(
                MetaType::Inode,
                dir,
                "directory is reached a second time in the tree walk: an entry loops back to \
                 an ancestor, or a directory has two names"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Checks a name found in directory `dir` (see `impossible_name`).
    pub fn check_name(&self, dir: u64, name: &[u8]) -> Result<()> {
        match impossible_name(name) {
            Some(why) => Err(self.corrupt(
                MetaType::Inode,
                dir,
                format!(
                    "directory holds an entry with the impossible name {:?}: {why}",
                    String::from_utf8_lossy(name)
                ),
            )),
            None => Ok(()),
        }
    }
}

/// Why `name` cannot be the name of a directory entry, if it cannot: `.`,
/// `..`, empty, holding `/` or NUL, longer than 255 bytes (the rule of
/// [`crate::check_name`], which every operation that makes a name applies).
pub fn impossible_name(name: &[u8]) -> Option<&'static str> {
    match crate::names::check_name(name) {
        Ok(()) => None,
        Err(CoreError::InvalidName { reason, .. }) => Some(reason),
        Err(_) => Some("longer than 255 bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn walk(links: &[(u64, u64)], first: u64, nchunk: u32) -> Result<Vec<u64>> {
        let map: HashMap<u64, u64> = links.iter().copied().collect();
        let start = ChainStart {
            t: MetaType::BlkTag,
            link: Link::Next,
            first,
            owner_type: MetaType::Inode,
            owner: 9,
        };
        Chain::new(
            "dev",
            nchunk,
            start,
            FromFn(|t, n| {
                let id = ObjectId::from_number(t, n, nchunk)?;
                let mut mo = MetaObjPhy::new_free(id);
                mo.mo_next.set(map.get(&n).copied().unwrap_or(0));
                Ok((id, mo))
            }),
        )
        .map(|r| r.map(|(id, _)| id.number()))
        .collect()
    }

    #[test]
    fn straight_chain_is_walked_in_order() {
        let got = walk(&[(5, 7), (7, 3), (3, 0)], 5, 1).unwrap();
        assert_eq!(got, vec![5, 7, 3]);
        assert!(walk(&[], 0, 1).unwrap().is_empty());
    }

    #[test]
    fn cycles_of_every_shape_end_with_corruption() {
        // Self loop, loop back to the start, loop into the middle after a
        // long tail.
        let mut long: Vec<(u64, u64)> = (1..2000).map(|i| (i, i + 1)).collect();
        long.push((2000, 1500));
        for (links, first) in [
            (vec![(4, 4)], 4),
            (vec![(1, 2), (2, 3), (3, 1)], 1),
            (long, 1),
        ] {
            let e = walk(&links, first, 1).unwrap_err();
            match e {
                CoreError::Corrupt {
                    object,
                    number,
                    ref problem,
                    ..
                } => {
                    assert_eq!((object, number), (MetaType::Inode, 9));
                    assert!(problem.contains("loops back"), "{problem}");
                }
                other => panic!("{other}"),
            }
            assert!(e.to_string().contains("device dev"), "{e}");
        }
    }

    #[test]
    fn tree_guard_refuses_loops_depth_and_bad_names() {
        let mut g = TreeGuard::new("dev");
        g.enter(0, 0).unwrap();
        g.enter(5, 1).unwrap();
        assert!(g
            .enter(0, 2)
            .unwrap_err()
            .to_string()
            .contains("second time"));
        assert!(g.enter(6, MAX_DEPTH + 1).is_err());
        for bad in [&b".."[..], b".", b"", b"a/b", b"a\0b", &[b'x'; 256]] {
            assert!(impossible_name(bad).is_some(), "{bad:?}");
        }
        assert!(impossible_name(b"...").is_none());
        assert!(impossible_name(&[b'x'; 255]).is_none());
    }

    #[test]
    fn over_long_chain_ends_with_corruption() {
        let links: Vec<(u64, u64)> = (1..100).map(|i| (i, i + 1)).collect();
        let start = ChainStart {
            t: MetaType::BlkTag,
            link: Link::Next,
            first: 1,
            owner_type: MetaType::Inode,
            owner: 9,
        };
        let map: HashMap<u64, u64> = links.into_iter().collect();
        let r: Result<Vec<_>> = Chain::new(
            "dev",
            1,
            start,
            FromFn(|t, n| {
                let id = ObjectId::from_number(t, n, 1)?;
                let mut mo = MetaObjPhy::new_free(id);
                mo.mo_next.set(map.get(&n).copied().unwrap_or(0));
                Ok((id, mo))
            }),
        )
        .at_most(10)
        .collect();
        let e = r.unwrap_err().to_string();
        assert!(e.contains("runs on past 10"), "{e}");
    }
}
