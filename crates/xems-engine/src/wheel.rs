//! A hierarchical timing wheel of expiry deadlines, one per shard.
//!
//! Records register in a bucket by deadline; levels have 1 s, 64 s, 4096 s
//! and 262144 s granularity, and a record goes into the finest level that
//! covers its distance from now. A coarse bucket is split into finer ones
//! when it comes due; a 1 s bucket is due once its second is over, so every
//! correctly registered entry in it has expired. That makes the sweep's work
//! proportional to what expires, in bounded steps, with at most a few hundred
//! buckets whatever the number of records.
//!
//! Registration is lazy: a record whose idle deadline slides later keeps its
//! entry and is moved when that bucket comes due. A record remembers the one
//! bucket it is validly registered in; entries of removed or re-registered
//! records are stale and skipped.

use std::collections::BTreeMap;

/// Identifies a bucket: level in the top 2 bits, index in the low 30.
pub(crate) type BucketId = u32;

const BITS: u32 = 6;
const INDEX_MASK: u32 = (1 << 30) - 1;

fn level(id: BucketId) -> u32 {
    id >> 30
}

fn start_s(id: BucketId) -> u64 {
    u64::from(id & INDEX_MASK) << (BITS * level(id))
}

/// Orders buckets by start, coarser first at equal starts (so that a coarse
/// bucket is split before a finer bucket of the same start is trusted).
fn order_key(id: BucketId) -> u64 {
    (start_s(id) << 2) | u64::from(3 - level(id))
}

fn id_of(key: u64) -> BucketId {
    let level = 3 - (key & 3) as u32;
    let start = key >> 2;
    (level << 30) | ((start >> (BITS * level)) as u32 & INDEX_MASK)
}

pub(crate) struct Wheel {
    /// Seconds since the UNIX epoch that bucket times are relative to.
    epoch_s: u64,
    buckets: BTreeMap<u64, Vec<u32>>,
}

impl Wheel {
    pub(crate) fn new(epoch_ms: u64) -> Self {
        Wheel { epoch_s: epoch_ms / 1000, buckets: BTreeMap::new() }
    }

    fn rel_s(&self, ms: u64) -> u64 {
        (ms / 1000).saturating_sub(self.epoch_s)
    }

    /// The bucket a deadline belongs in, seen from `now_ms`.
    pub(crate) fn bucket_for(&self, deadline_ms: u64, now_ms: u64) -> BucketId {
        let d = self.rel_s(deadline_ms);
        let delta = d.saturating_sub(self.rel_s(now_ms));
        let level = match delta {
            0..64 => 0,
            64..4096 => 1,
            4096..262_144 => 2,
            _ => 3,
        };
        Self::bucket_at(level, d)
    }

    fn bucket_at(level: u32, rel_s: u64) -> BucketId {
        let index = (rel_s >> (BITS * level)).min(u64::from(INDEX_MASK)) as u32;
        (level << 30) | index
    }

    /// The next finer bucket for a deadline in coarse bucket `id`.
    pub(crate) fn finer_bucket(&self, id: BucketId, deadline_ms: u64) -> BucketId {
        Self::bucket_at(level(id).saturating_sub(1), self.rel_s(deadline_ms))
    }

    pub(crate) fn is_coarse(id: BucketId) -> bool {
        level(id) > 0
    }

    /// Whether `deadline_ms` falls before the start of bucket `id` (a record
    /// whose deadline moved earlier must be registered again).
    pub(crate) fn starts_after(&self, id: BucketId, deadline_ms: u64) -> bool {
        self.rel_s(deadline_ms) < start_s(id)
    }

    /// Whether a 1 s bucket's second is over, or a coarse bucket has begun.
    fn is_due(now_rel_s: u64, id: BucketId) -> bool {
        if level(id) == 0 { now_rel_s > start_s(id) } else { now_rel_s >= start_s(id) }
    }

    pub(crate) fn insert(&mut self, id: BucketId, slot: u32) {
        self.buckets.entry(order_key(id)).or_default().push(slot);
    }

    /// Takes one entry from the earliest bucket if that bucket is due.
    pub(crate) fn pop_due(&mut self, now_ms: u64) -> Option<(BucketId, u32)> {
        let now = self.rel_s(now_ms);
        self.pop_first_if(|id| Self::is_due(now, id))
    }

    /// Takes one entry from the earliest bucket if `ok(bucket)`. Buckets are
    /// never left empty, so the first bucket always has an entry.
    fn pop_first_if(&mut self, ok: impl FnOnce(BucketId) -> bool) -> Option<(BucketId, u32)> {
        let mut first = self.buckets.first_entry()?;
        let id = id_of(*first.key());
        if !ok(id) {
            return None;
        }
        let slot = first.get_mut().pop().expect("buckets are never empty");
        if first.get().is_empty() {
            first.remove();
        }
        Some((id, slot))
    }

    /// The earliest bucket, due or not.
    pub(crate) fn first(&self) -> Option<BucketId> {
        self.buckets.first_key_value().map(|(k, _)| id_of(*k))
    }

    /// The order key of the earliest bucket, to compare shards.
    pub(crate) fn first_key(&self) -> Option<u64> {
        self.buckets.first_key_value().map(|(k, _)| *k)
    }

    /// Takes one entry from the earliest bucket.
    pub(crate) fn pop_first(&mut self) -> Option<(BucketId, u32)> {
        self.pop_first_if(|_| true)
    }

    /// Removes and returns a whole bucket.
    pub(crate) fn take(&mut self, id: BucketId) -> Vec<u32> {
        self.buckets.remove(&order_key(id)).unwrap_or_default()
    }

    /// Entries held (stale ones included).
    pub(crate) fn entries(&self) -> usize {
        self.buckets.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPOCH: u64 = 1_700_000_000_000;

    #[test]
    fn ids_round_trip_through_keys() {
        xems_testkit::logs::capture();
        for level in 0..4 {
            for rel in [0u64, 1, 63, 64, 4095, 4096, 262_143, 262_144, 5 * 86_400, 1 << 29] {
                let id = Wheel::bucket_at(level, rel);
                assert_eq!(id_of(order_key(id)), id);
            }
        }
    }

    #[test]
    fn levels_follow_distance() {
        xems_testkit::logs::capture();
        let w = Wheel::new(EPOCH);
        let now = EPOCH + 10_000;
        assert_eq!(level(w.bucket_for(now + 5_000, now)), 0);
        assert_eq!(level(w.bucket_for(now + 900_000, now)), 1);
        assert_eq!(level(w.bucket_for(now + 86_400_000, now)), 2);
        assert_eq!(level(w.bucket_for(now + 5 * 86_400_000, now)), 3);
    }

    #[test]
    fn one_second_bucket_is_due_after_its_second() {
        xems_testkit::logs::capture();
        let mut w = Wheel::new(EPOCH);
        let deadline = EPOCH + 5_500;
        let id = w.bucket_for(deadline, EPOCH);
        w.insert(id, 7);
        assert_eq!(w.pop_due(EPOCH + 5_999), None);
        assert_eq!(w.pop_due(EPOCH + 6_000), Some((id, 7)));
        assert_eq!(w.pop_due(EPOCH + 6_000), None);
    }

    #[test]
    fn coarse_bucket_is_due_at_its_start_and_splits_finer() {
        xems_testkit::logs::capture();
        let mut w = Wheel::new(EPOCH);
        let deadline = EPOCH + 1_000_000;
        let id = w.bucket_for(deadline, EPOCH);
        assert!(Wheel::is_coarse(id));
        w.insert(id, 1);
        let start_ms = EPOCH + start_s(id) * 1000;
        assert_eq!(w.pop_due(start_ms - 1000), None);
        let (got, slot) = w.pop_due(start_ms).unwrap();
        assert_eq!((got, slot), (id, 1));
        let finer = w.finer_bucket(id, deadline);
        assert_eq!(level(finer), level(id) - 1);
        assert!(start_s(finer) >= start_s(id));
    }

    #[test]
    fn earliest_first_and_coarse_before_fine_at_equal_start() {
        xems_testkit::logs::capture();
        let mut w = Wheel::new(EPOCH);
        let fine = Wheel::bucket_at(0, 128);
        let coarse = Wheel::bucket_at(1, 128);
        let later = Wheel::bucket_at(0, 200);
        w.insert(later, 3);
        w.insert(fine, 1);
        w.insert(coarse, 2);
        assert_eq!(w.first(), Some(coarse));
        assert_eq!(w.pop_first(), Some((coarse, 2)));
        assert_eq!(w.pop_first(), Some((fine, 1)));
        assert_eq!(w.pop_first(), Some((later, 3)));
        assert_eq!(w.entries(), 0);
    }
}
