//! The objects of one metaset (one type in one chunk), held compactly.
//!
//! mkfs writes every object of a device as the same free object (zeroed,
//! with the type's "no object" markers, its own number and checksum: see
//! [`MetaObjPhy::new_free`]), and most of a large device stays that way.
//! A metaset therefore keeps only the objects that differ from that free
//! object, and a load recognises the free ones by comparing their bytes
//! with what mkfs writes, without a checksum of each: their checksum
//! follows from their number (see [`Pristine`]). Every object still reads
//! back exactly as it is on the device.

use pfs_format::layout::OBJ_SIZE;
use pfs_format::{MetaObjPhy, MetaType, ObjectId};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// Offset of `mo_number` in a meta object.
const NUMBER_AT: usize = std::mem::offset_of!(MetaObjPhy, mo_number);
/// Offset of `mo_checksum` in a meta object.
const CHECKSUM_AT: usize = std::mem::offset_of!(MetaObjPhy, mo_checksum);

fn type_index(t: MetaType) -> usize {
    usize::from(t.raw()) - 1
}

/// The free objects mkfs writes, per type, and their checksums.
///
/// The checksum is a CRC, which is affine over GF(2) for inputs of one
/// length: two free objects of a type differ only in `mo_number`, so the
/// checksum of the one numbered `n` is the checksum of the one numbered 0
/// XOR the contribution of each set bit of `n`. The contributions are
/// worked out once from the real checksum function; a test compares the
/// result with [`MetaObjPhy::new_free`].
pub(crate) struct Pristine {
    /// The free object numbered 0 of each type, checksum field zero.
    templates: [MetaObjPhy; 3],
    /// Their bytes.
    template_bytes: [[u8; OBJ_SIZE]; 3],
    /// Checksum of each template.
    base: [u32; 3],
    /// What bit `i` of `mo_number` adds to a type's checksum.
    bits: [[u32; 64]; 3],
    /// What an oid adds to a type's checksum, by oid (the oid is the low
    /// part of `mo_number`, the chunk the high part).
    by_oid: [Vec<u32>; 3],
}

impl Pristine {
    /// The tables of this process, made at the first use.
    pub(crate) fn get() -> &'static Pristine {
        static TABLES: OnceLock<Pristine> = OnceLock::new();
        TABLES.get_or_init(Pristine::new)
    }

    fn new() -> Pristine {
        let crc = |mo: &MetaObjPhy| mo.compute_checksum();
        let templates = MetaType::ALL.map(|t| {
            let mut mo = MetaObjPhy::new_free(ObjectId {
                mtype: t,
                chunk: 0,
                oid: 0,
            });
            mo.mo_checksum.set(0);
            mo
        });
        let base = templates.each_ref().map(crc);
        let mut bits = [[0u32; 64]; 3];
        for (ti, t) in templates.iter().enumerate() {
            for (i, b) in bits[ti].iter_mut().enumerate() {
                let mut mo = *t;
                mo.mo_number.set(1 << i);
                *b = crc(&mo) ^ base[ti];
            }
        }
        let by_oid = MetaType::ALL.map(|t| {
            let ti = type_index(t);
            (0..t.per_chunk())
                .map(|oid| linear(&bits[ti], u64::from(oid)))
                .collect()
        });
        Pristine {
            templates,
            template_bytes: templates.map(|mo| mo.to_bytes()),
            base,
            bits,
            by_oid,
        }
    }

    /// What the chunk part of the numbers of `chunk`'s objects of type `t`
    /// adds to their checksums.
    fn chunk_part(&self, t: MetaType, chunk: u32) -> u32 {
        linear(&self.bits[type_index(t)], u64::from(chunk) << t.shift())
    }

    /// The checksum of free object `oid` of a type, given its chunk part.
    fn checksum(&self, t: MetaType, chunk_part: u32, oid: u32) -> u32 {
        let ti = type_index(t);
        self.base[ti] ^ chunk_part ^ self.by_oid[ti][oid as usize]
    }

    /// The free object mkfs writes at `id` (equal to
    /// [`MetaObjPhy::new_free`]).
    pub(crate) fn object(&self, id: ObjectId) -> MetaObjPhy {
        let mut mo = self.templates[type_index(id.mtype)];
        mo.mo_number.set(id.number());
        let sum = self.checksum(id.mtype, self.chunk_part(id.mtype, id.chunk), id.oid);
        mo.mo_checksum.set(sum);
        mo
    }

    /// A reader of the free objects of `chunk`'s metaset of type `t`.
    pub(crate) fn metaset(&self, t: MetaType, chunk: u32) -> PristineSet<'_> {
        PristineSet {
            tables: self,
            t,
            chunk,
            chunk_part: self.chunk_part(t, chunk),
        }
    }
}

/// XOR of `bits[i]` over the set bits `i` of `n`.
fn linear(bits: &[u32; 64], mut n: u64) -> u32 {
    let mut acc = 0;
    while n != 0 {
        acc ^= bits[n.trailing_zeros() as usize];
        n &= n - 1;
    }
    acc
}

/// [`Pristine`] for one metaset.
pub(crate) struct PristineSet<'a> {
    tables: &'a Pristine,
    t: MetaType,
    chunk: u32,
    chunk_part: u32,
}

impl PristineSet<'_> {
    /// Whether `raw` (one object's bytes) is exactly the free object mkfs
    /// writes at `oid`. Such an object is valid there by construction.
    pub(crate) fn matches(&self, raw: &[u8], oid: u32) -> bool {
        let Some(raw) = raw.get(..OBJ_SIZE) else {
            return false;
        };
        let tmpl = &self.tables.template_bytes[type_index(self.t)];
        let number = (u64::from(self.chunk) << self.t.shift()) | u64::from(oid);
        let sum = self.tables.checksum(self.t, self.chunk_part, oid);
        raw[NUMBER_AT..NUMBER_AT + 8] == number.to_le_bytes()
            && raw[CHECKSUM_AT..CHECKSUM_AT + 4] == sum.to_le_bytes()
            && raw[NUMBER_AT + 8..CHECKSUM_AT] == tmpl[NUMBER_AT + 8..CHECKSUM_AT]
            && raw[CHECKSUM_AT + 4..] == tmpl[CHECKSUM_AT + 4..]
    }
}

const _: () = assert!(NUMBER_AT == 0 && CHECKSUM_AT > NUMBER_AT + 8);

/// The objects of one metaset: those that differ from the free object
/// mkfs writes, by oid; every other oid holds that free object.
#[derive(Debug, Clone, Default)]
pub(crate) struct ObjSet {
    kept: BTreeMap<u32, MetaObjPhy>,
    /// Objects in use.
    used: u32,
}

impl ObjSet {
    /// Object `id` (of this set).
    pub(crate) fn get(&self, id: ObjectId) -> MetaObjPhy {
        match self.kept.get(&id.oid) {
            Some(mo) => *mo,
            None => Pristine::get().object(id),
        }
    }

    /// Sets object `id` (of this set) to `mo`; returns what it was.
    pub(crate) fn set(&mut self, id: ObjectId, mo: MetaObjPhy) -> MetaObjPhy {
        let old = self.get(id);
        self.used = self.used - u32::from(old.is_used()) + u32::from(mo.is_used());
        if !mo.is_used() && mo == Pristine::get().object(id) {
            self.kept.remove(&id.oid);
        } else {
            self.kept.insert(id.oid, mo);
        }
        old
    }

    /// Adds object `oid` as loaded (each oid once, any order); a free
    /// object as mkfs writes it need not be added.
    pub(crate) fn load(&mut self, oid: u32, mo: MetaObjPhy) {
        self.used += u32::from(mo.is_used());
        self.kept.insert(oid, mo);
    }

    /// Objects in use.
    pub(crate) fn used(&self) -> u32 {
        self.used
    }

    /// The objects that differ from the free object mkfs writes, by oid
    /// (ascending).
    pub(crate) fn kept(&self) -> impl Iterator<Item = (u32, &MetaObjPhy)> {
        self.kept.iter().map(|(oid, mo)| (*oid, mo))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pfs_format::layout::MAX_CHUNKS;

    #[test]
    fn free_objects_are_those_mkfs_writes() {
        let p = Pristine::get();
        for t in MetaType::ALL {
            for chunk in [0, 1, 2, 999, 12345, (MAX_CHUNKS - 1) as u32] {
                let set = p.metaset(t, chunk);
                for oid in [0, 1, 31, 32, 1000, t.per_chunk() - 1] {
                    let id = ObjectId {
                        mtype: t,
                        chunk,
                        oid,
                    };
                    let want = MetaObjPhy::new_free(id);
                    assert_eq!(p.object(id), want, "{id:?}");
                    assert!(set.matches(&want.to_bytes(), oid));
                    assert!(!set.matches(&want.to_bytes(), oid ^ 1));
                }
            }
        }
    }

    #[test]
    fn any_other_byte_is_not_free_as_mkfs_writes_it() {
        let p = Pristine::get();
        let id = ObjectId {
            mtype: MetaType::Inode,
            chunk: 7,
            oid: 9,
        };
        let want = MetaObjPhy::new_free(id).to_bytes().to_vec();
        let set = p.metaset(id.mtype, id.chunk);
        for i in 0..OBJ_SIZE {
            let mut raw = want.clone();
            raw[i] ^= 0x10;
            assert!(!set.matches(&raw, id.oid), "byte {i}");
        }
        assert!(!set.matches(&want[..OBJ_SIZE - 1], id.oid));
    }

    #[test]
    fn a_set_keeps_only_what_differs() {
        let id = ObjectId {
            mtype: MetaType::DirEntry,
            chunk: 3,
            oid: 5,
        };
        let mut s = ObjSet::default();
        let free = MetaObjPhy::new_free(id);
        assert_eq!(s.get(id), free);
        let mut used = free;
        used.mo_used = 1;
        used.seal();
        assert_eq!(s.set(id, used), free);
        assert_eq!((s.get(id), s.used(), s.kept().count()), (used, 1, 1));
        assert_eq!(s.set(id, free), used);
        assert_eq!((s.get(id), s.used(), s.kept().count()), (free, 0, 0));
        // A free object with other contents is kept as it is.
        let mut stale = free;
        stale.mo_next.set(9);
        stale.seal();
        s.set(id, stale);
        assert_eq!((s.get(id), s.used(), s.kept().count()), (stale, 0, 1));
    }
}
