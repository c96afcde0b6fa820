//! Choosing new object numbers the way the reference does.
//!
//! For each type, the chunk with the most free objects wins (ties go to the
//! lower chunk; when it has nothing it may hand out, the next chunks in
//! turn), and inside it the lowest free object id. Freed numbers are free
//! again at once. Block tags freed by this or an earlier mount carry
//! discard status READY and are reused first: the one at the root of the
//! reference's search tree of READY tags, which [`ready::ReadyTree`] keeps
//! in the same shape.

mod freeset;
mod ready;

use crate::meta::MetaImage;
use freeset::FreeSet;
use pfs_format::blktag::dstatus;
use pfs_format::{MetaType, ObjectId};
use ready::ReadyTree;
use std::collections::BTreeSet;

/// Free objects of one type.
#[derive(Debug, Clone)]
struct TypeAlloc {
    mtype: MetaType,
    /// Free oids per chunk.
    free: Vec<FreeSet>,
}

impl TypeAlloc {
    fn alloc(&mut self, skip: &dyn Fn(ObjectId) -> bool) -> Option<ObjectId> {
        // The chunk with the most free objects (the first of equals), then
        // the chunks after it in turn, wrapping round.
        let n = self.free.len();
        let mut best: Option<usize> = None;
        for c in 0..n {
            if !self.free[c].is_empty()
                && best.map_or(true, |b| self.free[c].len() > self.free[b].len())
            {
                best = Some(c);
            }
        }
        let best = best?;
        for c in (best..n).chain(0..best) {
            if self.free[c].is_empty() {
                continue;
            }
            let found = self.free[c].iter().find(|&oid| {
                !skip(ObjectId {
                    mtype: self.mtype,
                    chunk: c as u32,
                    oid,
                })
            });
            if let Some(oid) = found {
                self.free[c].remove(oid);
                return Some(ObjectId {
                    mtype: self.mtype,
                    chunk: c as u32,
                    oid,
                });
            }
        }
        None
    }
}

/// The free-object index of a mount.
#[derive(Debug, Clone)]
pub struct Allocator {
    types: [TypeAlloc; 3],
    /// Free block tags with discard status READY, by `mo_number`.
    ready: ReadyTree,
    /// Free block tags whose discard is in progress (never allocated).
    in_progress: BTreeSet<ObjectId>,
}

fn idx(t: MetaType) -> usize {
    usize::from(t.raw()) - 1
}

impl Allocator {
    /// Builds the index from loaded (replayed) metadata. Only the objects
    /// that differ from the free object mkfs writes are looked at: that
    /// one is free and has no discard status.
    pub fn build(meta: &MetaImage) -> Allocator {
        let types = MetaType::ALL.map(|t| TypeAlloc {
            mtype: t,
            free: (0..meta.nchunk)
                .map(|c| {
                    let mut free = FreeSet::full(t.per_chunk());
                    for (oid, _) in meta.changed_objects(c, t).filter(|(_, m)| m.is_used()) {
                        free.remove(oid);
                    }
                    free
                })
                .collect(),
        });
        // Inserted in the reference's order: chunk by chunk, ascending.
        let mut ready = ReadyTree::default();
        let mut in_progress = BTreeSet::new();
        for c in 0..meta.nchunk {
            for (oid, mo) in meta.changed_objects(c, MetaType::BlkTag) {
                if mo.is_used() {
                    continue;
                }
                let id = ObjectId {
                    mtype: MetaType::BlkTag,
                    chunk: c,
                    oid,
                };
                match mo.blktag().bt_dstatus.get() {
                    dstatus::READY => {
                        ready.insert(id.number());
                    }
                    dstatus::IN_PROGRESS => {
                        in_progress.insert(id);
                    }
                    _ => {}
                }
            }
        }
        Allocator {
            types,
            ready,
            in_progress,
        }
    }

    /// Takes a new object of type `t`, and says whether it was a READY
    /// block tag; `None` when every chunk is full.
    pub fn alloc(&mut self, t: MetaType) -> Option<(ObjectId, bool)> {
        if t == MetaType::BlkTag {
            if let Some(number) = self.ready.first() {
                self.ready.remove(number);
                let id = ObjectId {
                    mtype: t,
                    chunk: (number >> t.shift()) as u32,
                    oid: (number & ((1 << t.shift()) - 1)) as u32,
                };
                self.types[idx(t)].free[id.chunk as usize].remove(id.oid);
                return Some((id, true));
            }
        }
        let inp = &self.in_progress;
        self.types[idx(t)]
            .alloc(&|id| inp.contains(&id))
            .map(|id| (id, false))
    }

    /// Undoes [`Self::alloc`]: the tag's READY status comes back with its
    /// old image, and it joins the tree again as the reference's rollback
    /// does.
    pub fn unalloc(&mut self, id: ObjectId, from_ready: bool) {
        if let Some(set) = self.types[idx(id.mtype)].free.get_mut(id.chunk as usize) {
            set.insert(id.oid);
        }
        if from_ready {
            self.ready.insert(id.number());
        }
    }

    /// Undoes [`Self::free`].
    pub fn take_back(&mut self, id: ObjectId) {
        if let Some(set) = self.types[idx(id.mtype)].free.get_mut(id.chunk as usize) {
            set.remove(id.oid);
        }
        if id.mtype == MetaType::BlkTag {
            self.ready.remove(id.number());
        }
    }

    /// Takes in object `id` as another process of this host committed it
    /// (`mo` is its new content): used objects leave the free pool, free
    /// ones join it, block tags by their discard status.
    pub fn observe(&mut self, id: ObjectId, mo: &pfs_format::MetaObjPhy) {
        let Some(set) = self.types[idx(id.mtype)].free.get_mut(id.chunk as usize) else {
            return;
        };
        if mo.is_used() {
            set.remove(id.oid);
            if id.mtype == MetaType::BlkTag {
                self.ready.remove(id.number());
                self.in_progress.remove(&id);
            }
            return;
        }
        set.insert(id.oid);
        if id.mtype != MetaType::BlkTag {
            return;
        }
        match mo.blktag().bt_dstatus.get() {
            dstatus::READY => {
                self.ready.insert(id.number());
                self.in_progress.remove(&id);
            }
            dstatus::IN_PROGRESS => {
                self.in_progress.insert(id);
                self.ready.remove(id.number());
            }
            _ => {
                self.ready.remove(id.number());
                self.in_progress.remove(&id);
            }
        }
    }

    /// Returns `id` to the free pool; block tags become READY.
    pub fn free(&mut self, id: ObjectId) {
        if let Some(set) = self.types[idx(id.mtype)].free.get_mut(id.chunk as usize) {
            set.insert(id.oid);
        }
        if id.mtype == MetaType::BlkTag {
            self.ready.insert(id.number());
        }
    }
}
