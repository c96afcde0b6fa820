//! Transactions: the set of meta objects one operation changes.
//!
//! As in the reference, an operation takes each object it changes through the
//! transaction, which keeps a private copy; each distinct object becomes one
//! log entry holding its final image, in the order the operation first took
//! it. Nothing reaches the in-memory metadata or the device until commit.

use crate::alloc::Allocator;
use crate::error::{CoreError, Result};
use crate::meta::MetaImage;
use pfs_format::blktag::dstatus;
use pfs_format::direntry::DirEntryPhy;
use pfs_format::inode::InodePhy;
use pfs_format::{MetaObjPhy, MetaType, ObjectId};
use std::collections::HashMap;

/// What to undo in the allocator if the transaction is dropped.
#[derive(Debug, Clone, Copy)]
enum Undo {
    /// Allocated (and whether it came from the READY list).
    Alloc(ObjectId, bool),
    Free(ObjectId),
}

/// An open transaction.
pub(crate) struct Tx<'a> {
    meta: &'a MetaImage,
    alloc: &'a mut Allocator,
    order: Vec<ObjectId>,
    objs: HashMap<ObjectId, MetaObjPhy>,
    undo: Vec<Undo>,
    /// Cuts a file short (see [`Tx::cuts`]).
    cuts: bool,
    /// Seconds to stamp as "now" (one clock reading per transaction).
    pub(crate) now: u64,
    /// Microseconds for birth times.
    pub(crate) now_us: u64,
}

impl<'a> Tx<'a> {
    pub(crate) fn new(meta: &'a MetaImage, alloc: &'a mut Allocator) -> Tx<'a> {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Tx {
            meta,
            alloc,
            order: Vec::new(),
            objs: HashMap::new(),
            undo: Vec::new(),
            cuts: false,
            now: d.as_secs(),
            now_us: d.as_micros() as u64,
        }
    }

    /// The metadata this transaction started from.
    pub(crate) fn meta(&self) -> &'a MetaImage {
        self.meta
    }

    /// Walks chain `start` as this transaction sees it (see
    /// [`crate::chain::Chain`]) and returns its objects.
    pub(crate) fn chain(
        &self,
        start: crate::chain::ChainStart,
        at_most: u64,
    ) -> Result<Vec<(ObjectId, MetaObjPhy)>> {
        let fetch = crate::chain::FromFn(|t, n| self.view_no(t, n));
        crate::chain::Chain::new(self.meta.device(), self.meta.nchunk, start, fetch)
            .at_most(at_most)
            .collect()
    }

    /// The object as this transaction sees it, without taking it.
    pub(crate) fn view(&self, id: ObjectId) -> MetaObjPhy {
        self.objs
            .get(&id)
            .copied()
            .unwrap_or_else(|| self.meta.get(id))
    }

    /// Looks up a number of type `t` and returns its current view.
    pub(crate) fn view_no(&self, t: MetaType, number: u64) -> Result<(ObjectId, MetaObjPhy)> {
        let id = ObjectId::from_number(t, number, self.meta.nchunk)?;
        Ok((id, self.view(id)))
    }

    /// Takes object `id` for changing (its first take fixes its place in
    /// the log).
    pub(crate) fn take(&mut self, id: ObjectId) -> &mut MetaObjPhy {
        let meta = self.meta;
        let order = &mut self.order;
        self.objs.entry(id).or_insert_with(|| {
            order.push(id);
            meta.get(id)
        })
    }

    /// Takes object number `number` of type `t`.
    pub(crate) fn take_no(
        &mut self,
        t: MetaType,
        number: u64,
    ) -> Result<(ObjectId, &mut MetaObjPhy)> {
        let id = ObjectId::from_number(t, number, self.meta.nchunk)?;
        Ok((id, self.take(id)))
    }

    /// Allocates a new object of type `t`, marks it used and takes it.
    pub(crate) fn alloc(&mut self, t: MetaType) -> Result<ObjectId> {
        let (id, from_ready) = self
            .alloc
            .alloc(t)
            .ok_or(CoreError::NoSpace { what: t.name() })?;
        self.undo.push(Undo::Alloc(id, from_ready));
        let mo = self.take(id);
        mo.mo_used = 1;
        mo.mo_next.set(0);
        mo.mo_prev.set(0);
        if t == MetaType::BlkTag {
            let bt = mo.blktag_mut();
            bt.bt_dstatus.set(dstatus::NONE);
            bt.bt_ndiscard.set(0);
            bt.bt_holeoff.set(0);
            bt.bt_holelen.set(pfs_format::layout::BLOCK_SIZE as i32);
        }
        Ok(id)
    }

    /// Frees object `id` (already taken and unlinked): clears its payload as
    /// the reference does and returns it to the allocator.
    pub(crate) fn free(&mut self, id: ObjectId) {
        let mo = self.take(id);
        mo.mo_used = 0;
        mo.mo_next.set(0);
        mo.mo_prev.set(0);
        match id.mtype {
            MetaType::BlkTag => {
                let bt = mo.blktag_mut();
                bt.bt_dstatus.set(dstatus::READY);
                bt.bt_holeoff.set(0);
                bt.bt_holelen.set(0);
            }
            MetaType::DirEntry => *mo.direntry_mut() = DirEntryPhy::free(),
            MetaType::Inode => {
                let btime = mo.inode().in_btime.get();
                let pad = mo.inode()._pad;
                let i: &mut InodePhy = mo.inode_mut();
                *i = InodePhy::free();
                i.in_btime.set(btime);
                i._pad = pad;
            }
        }
        self.alloc.free(id);
        self.undo.push(Undo::Free(id));
    }

    /// Notes that it cuts a file short (a truncate).
    pub(crate) fn cut(&mut self) {
        self.cuts = true;
    }

    /// Whether it cuts a file short or frees a block: bytes that a
    /// follower, and the state a crash leaves, still have as a file's
    /// until the transaction is durable.
    pub(crate) fn cuts(&self) -> bool {
        self.cuts
            || self
                .undo
                .iter()
                .any(|u| matches!(u, Undo::Free(id) if id.mtype == MetaType::BlkTag))
    }

    /// The changed objects in log order, sealed.
    pub(crate) fn entries(&self) -> Vec<(ObjectId, MetaObjPhy)> {
        self.order
            .iter()
            .filter_map(|id| {
                let mut mo = *self.objs.get(id)?;
                mo.seal();
                Some((*id, mo))
            })
            .collect()
    }

    /// Marks the transaction committed: the allocator keeps its changes.
    pub(crate) fn finish(mut self) {
        self.undo.clear();
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        // An abandoned transaction gives back what it allocated and takes
        // back what it freed.
        for u in self.undo.drain(..).rev() {
            match u {
                Undo::Alloc(id, from_ready) => self.alloc.unalloc(id, from_ready),
                Undo::Free(id) => self.alloc.take_back(id),
            }
        }
    }
}
