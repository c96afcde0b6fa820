//! The free object ids of one metaset, as a bitmap: 832 bytes for the
//! largest metaset instead of a tree node per free object, which on a large
//! device (millions of free objects) is what a writer's mount would
//! otherwise hold.

/// A set of oids below a metaset's object count.
#[derive(Debug, Clone)]
pub(super) struct FreeSet {
    /// Bit `oid % 64` of word `oid / 64` is set when `oid` is free.
    words: Vec<u64>,
    len: u32,
    /// Objects in the metaset.
    cap: u32,
}

impl FreeSet {
    /// Every oid below `n` free.
    pub(super) fn full(n: u32) -> FreeSet {
        let mut words = vec![u64::MAX; n.div_ceil(64) as usize];
        if n % 64 != 0 {
            if let Some(last) = words.last_mut() {
                *last = (1u64 << (n % 64)) - 1;
            }
        }
        FreeSet {
            words,
            len: n,
            cap: n,
        }
    }

    fn at(oid: u32) -> (usize, u64) {
        ((oid / 64) as usize, 1u64 << (oid % 64))
    }

    /// Number of free oids.
    pub(super) fn len(&self) -> u32 {
        self.len
    }

    /// Whether no oid is free.
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Marks `oid` free (an oid past the metaset is ignored).
    pub(super) fn insert(&mut self, oid: u32) {
        if oid >= self.cap {
            return;
        }
        let (w, bit) = FreeSet::at(oid);
        if let Some(word) = self.words.get_mut(w) {
            if *word & bit == 0 {
                *word |= bit;
                self.len += 1;
            }
        }
    }

    /// Marks `oid` taken.
    pub(super) fn remove(&mut self, oid: u32) {
        let (w, bit) = FreeSet::at(oid);
        if let Some(word) = self.words.get_mut(w) {
            if *word & bit != 0 {
                *word &= !bit;
                self.len -= 1;
            }
        }
    }

    /// The free oids, ascending.
    pub(super) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0u32..).zip(&self.words).flat_map(|(w, &word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                (rest != 0).then(|| {
                    let b = rest.trailing_zeros();
                    rest &= rest - 1;
                    w * 64 + b
                })
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn behaves_as_an_ordered_set() {
        for n in [1u32, 63, 64, 65, 2048, 2560] {
            let mut s = FreeSet::full(n);
            let mut model: BTreeSet<u32> = (0..n).collect();
            assert!(s.iter().eq(model.iter().copied()));
            let mut x = 7u32;
            for step in 0..5000u32 {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let oid = (x >> 8) % (n + 3);
                if step % 3 == 0 {
                    s.insert(oid);
                    if oid < n {
                        model.insert(oid);
                    }
                } else {
                    s.remove(oid);
                    model.remove(&oid);
                }
                assert_eq!(s.len() as usize, model.len());
                assert_eq!(s.is_empty(), model.is_empty());
            }
            assert!(s.iter().eq(model.iter().copied()), "n={n}");
        }
    }
}
