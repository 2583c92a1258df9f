//! The index of caller keys: their keyed digests and their records' slots,
//! in an open-addressing table with linear probing.
//!
//! Why not `hashbrown`: a batch prefetch ([`crate::prefetch`]) must start
//! fetching a key's bucket *before* looking it up, so that the lookups of a
//! batch of requests miss the cache together instead of one after another.
//! Here the bucket is a function of the digest alone
//! ([`prefetch`](KeyIndex::prefetch)); `hashbrown` computes it inside
//! `find`. The keys are keyed digests (uniform, and not chosen by whoever
//! sends them), so linear probing at a load of at most one half stays short:
//! about 1.5 entries read per hit, nearly always in one cache line.

use subtle::ConstantTimeEq;

/// One bucket: a digest and its slot, or empty ([`EMPTY`]).
#[derive(Clone, Copy)]
struct Entry {
    key: [u8; 16],
    slot: u32,
}

/// The slot of an empty bucket. Record slots are far below it (a shard
/// would need hundreds of gigabytes of records to reach it).
const EMPTY: u32 = u32::MAX;

const VACANT: Entry = Entry { key: [0; 16], slot: EMPTY };

/// The smallest table allocated.
const MIN_BUCKETS: usize = 16;

/// Caller-key digests to slots.
#[derive(Default)]
pub(crate) struct KeyIndex {
    /// A power of two long, or empty before the first insert.
    buckets: Vec<Entry>,
    len: usize,
}

/// Whether two digests are equal, in constant time: as one 128-bit word
/// (comparing byte by byte behind `subtle`'s optimization barrier cost
/// more than the rest of a lookup).
pub(crate) fn digests_equal(a: &[u8; 16], b: &[u8; 16]) -> bool {
    u128::from_le_bytes(*a).ct_eq(&u128::from_le_bytes(*b)).into()
}

fn hash(key: &[u8; 16]) -> usize {
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[..8]);
    u64::from_le_bytes(b) as usize
}

impl KeyIndex {
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Buckets allocated.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.buckets.len()
    }

    fn mask(&self) -> usize {
        self.buckets.len() - 1
    }

    /// The bucket where the probe for `key` starts.
    fn home(&self, key: &[u8; 16]) -> usize {
        hash(key) & self.mask()
    }

    /// Where `key` is, if present.
    fn position(&self, key: &[u8; 16]) -> Option<usize> {
        if self.buckets.is_empty() {
            return None;
        }
        let mut i = self.home(key);
        loop {
            let e = &self.buckets[i];
            if e.slot == EMPTY {
                return None;
            }
            if digests_equal(&e.key, key) {
                return Some(i);
            }
            i = (i + 1) & self.mask();
        }
    }

    /// The slot of `key`'s record.
    pub(crate) fn get(&self, key: &[u8; 16]) -> Option<u32> {
        self.position(key).map(|i| self.buckets[i].slot)
    }

    /// Starts fetching the bucket where a lookup of `key` begins.
    pub(crate) fn prefetch(&self, key: &[u8; 16]) {
        if !self.buckets.is_empty() {
            crate::prefetch::prefetch(&self.buckets[self.home(key)]);
        }
    }

    /// Adds `key`, which must not be present.
    pub(crate) fn insert(&mut self, key: [u8; 16], slot: u32) {
        debug_assert!(slot != EMPTY && self.position(&key).is_none());
        if (self.len + 1) * 2 > self.buckets.len() {
            self.rebuild((self.buckets.len() * 2).max(MIN_BUCKETS));
        }
        self.place(Entry { key, slot });
        self.len += 1;
    }

    fn place(&mut self, entry: Entry) {
        let mut i = self.home(&entry.key);
        while self.buckets[i].slot != EMPTY {
            i = (i + 1) & self.mask();
        }
        self.buckets[i] = entry;
    }

    /// Removes `key`; `false` if it was absent.
    ///
    /// Backward-shift deletion: the entries after the hole that may move
    /// into it do, so no tombstones accumulate and every probe still ends
    /// at its first empty bucket.
    pub(crate) fn remove(&mut self, key: &[u8; 16]) -> bool {
        let Some(mut hole) = self.position(key) else { return false };
        let mask = self.mask();
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let e = self.buckets[j];
            if e.slot == EMPTY {
                break;
            }
            // `e` may fill the hole unless its home lies cyclically after
            // the hole (then it would end up before its home).
            let home = self.home(&e.key);
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.buckets[hole] = e;
                hole = j;
            }
        }
        self.buckets[hole] = VACANT;
        self.len -= 1;
        true
    }

    /// Gives memory back once the table is under an eighth full (after a
    /// wave of sessions has expired), keeping it at most a quarter full.
    pub(crate) fn shrink_if_sparse(&mut self) {
        if self.buckets.len() > 1024 && self.len * 8 < self.buckets.len() {
            self.rebuild((self.len * 4).next_power_of_two().max(MIN_BUCKETS));
        }
    }

    fn rebuild(&mut self, buckets: usize) {
        let old = std::mem::replace(&mut self.buckets, vec![VACANT; buckets]);
        for e in old.into_iter().filter(|e| e.slot != EMPTY) {
            self.place(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    /// Digests whose first byte is `b` and whose home is therefore chosen
    /// (the table is small): forces collisions and wrap-around.
    fn key(home: u8, n: u8) -> [u8; 16] {
        let mut k = [0u8; 16];
        k[0] = home;
        k[15] = n;
        k
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u8, u32),
        Remove(u8, u8),
        Shrink,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..20, 0u8..8, 0u32..1000).prop_map(|(h, n, s)| Op::Insert(h, n, s)),
            3 => (0u8..20, 0u8..8).prop_map(|(h, n)| Op::Remove(h, n)),
            1 => Just(Op::Shrink),
        ]
    }

    proptest! {
        /// Any sequence of inserts and removes (clustered homes, wrapping
        /// probes) agrees with a `HashMap` on every key afterwards.
        #[test]
        fn behaves_like_a_map(ops in proptest::collection::vec(op(), 0..400)) {
            xems_testkit::logs::capture();
            let mut index = KeyIndex::default();
            let mut model = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(h, n, s) => {
                        let k = key(h, n);
                        if let std::collections::hash_map::Entry::Vacant(v) = model.entry(k) {
                            v.insert(s);
                            index.insert(k, s);
                        }
                    }
                    Op::Remove(h, n) => {
                        let k = key(h, n);
                        prop_assert_eq!(index.remove(&k), model.remove(&k).is_some());
                    }
                    Op::Shrink => index.shrink_if_sparse(),
                }
                prop_assert_eq!(index.len(), model.len());
                prop_assert!(index.len() * 2 <= index.capacity().max(1));
            }
            for h in 0..20 {
                for n in 0..8 {
                    let k = key(h, n);
                    prop_assert_eq!(index.get(&k), model.get(&k).copied());
                }
            }
        }
    }

    #[test]
    fn shrinks_after_most_keys_leave() {
        xems_testkit::logs::capture();
        let mut index = KeyIndex::default();
        // Spread like digests (splitmix64 of the index).
        let keys: Vec<[u8; 16]> = (0u64..5000)
            .map(|i| {
                let mut z = i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                let mut k = [0u8; 16];
                k[..8].copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
                k[8..].copy_from_slice(&i.to_le_bytes());
                k
            })
            .collect();
        for (i, k) in keys.iter().enumerate() {
            index.insert(*k, i as u32);
        }
        let full = index.capacity();
        assert!(full >= 10_000);
        for k in &keys[100..] {
            assert!(index.remove(k));
        }
        index.shrink_if_sparse();
        assert!(index.capacity() < full / 8, "{} buckets left", index.capacity());
        for (i, k) in keys[..100].iter().enumerate() {
            assert_eq!(index.get(k), Some(i as u32));
        }
        assert_eq!(index.get(&keys[100]), None);
    }
}
