//! Keyed digests computed by a batch prefetch, kept for the operations that
//! follow it on the same thread.
//!
//! A caller key's keyed digest (HMAC-SHA-256, about 90 ns) is the costliest
//! step of finding its record. A batch prefetch ([`crate::prefetch`]) must
//! compute it to know where to look; the operation that follows takes it
//! from here instead of computing it a second time.
//!
//! Entries are found by a 128-bit SipHash-1-3 tag of the key under a random
//! per-sandbox key (`SandboxKeys::memo`). A tag match means the same key of
//! the same sandbox: a collision takes about 2^64 tries even for someone who
//! knew the tag key, which never leaves the process. So a digest taken from
//! here is always the one the key would give. Entries hold digests (which
//! the records hold anyway) and tags, never key material. Each is removed
//! when taken; a thread keeps a small set-associative table of them (see
//! [`WAYS`]), an entry leaving when its bucket is full and one more
//! arrives (so a digest hinted and never asked for, as for a request that
//! failed before its lookup, is pushed out in time). Entries outlive the prefetch call that
//! made them: a server hints one request per connection and answers them
//! after the other ready connections have hinted theirs
//! ([`crate::hints`]).

use std::cell::RefCell;
use std::hash::Hasher as _;

use siphasher::sip128::{Hasher128 as _, SipHasher13};
use xems_core::IndexDigest;

/// Buckets of a thread's table; an entry's bucket is its tag's low bits.
const BUCKETS: usize = 64;
/// Entries a bucket holds. 256 in all: more than one round of a busy server
/// hints before it answers the first (tokio runs at most 61 tasks between
/// two polls of its I/O driver, after which the yielded ones run again),
/// plus a window of 32 pipelined requests. A bucket overflows (its oldest
/// entry pushed out, the digest computed again later, never wrong) rarely
/// at that load, and a put or a take touches one bucket: no scan, no
/// shifting, however many entries were hinted and never taken.
const WAYS: usize = 4;

/// Entries one thread can keep.
#[cfg(test)]
pub(crate) const CAPACITY: usize = BUCKETS * WAYS;

type Entry = Option<(u128, IndexDigest)>;

struct Table {
    buckets: [[Entry; WAYS]; BUCKETS],
    /// Entries held, so that a thread that never prefetches computes no tag.
    live: usize,
}

thread_local! {
    static MEMO: RefCell<Table> = const { RefCell::new(Table { buckets: [[None; WAYS]; BUCKETS], live: 0 }) };
}

/// The key of a sandbox's tags.
#[derive(Clone, Copy)]
pub(crate) struct MemoKey(pub(crate) [u8; 16]);

impl MemoKey {
    fn tag(self, key: &[u8]) -> u128 {
        let mut h = SipHasher13::new_with_key(&self.0);
        h.write(key);
        h.finish128().as_u128()
    }
}

fn bucket(tag: u128) -> usize {
    // Low bits of a keyed SipHash output: uniform.
    (tag as usize) % BUCKETS
}

/// Keeps `digest` for `key`; when its bucket is full, the bucket's first
/// entry (among its oldest) leaves.
pub(crate) fn put(memo: MemoKey, key: &[u8], digest: IndexDigest) {
    let tag = memo.tag(key);
    MEMO.with_borrow_mut(|m| {
        let b = &mut m.buckets[bucket(tag)];
        if let Some(free) = b.iter_mut().find(|e| e.is_none()) {
            *free = Some((tag, digest));
            m.live += 1;
        } else {
            b.rotate_left(1);
            b[WAYS - 1] = Some((tag, digest));
        }
    });
}

/// Takes the digest kept for `key`, if any. Costs nothing when this thread
/// keeps none (nothing hinted, or all taken).
pub(crate) fn take(memo: MemoKey, key: &[u8]) -> Option<IndexDigest> {
    MEMO.with_borrow_mut(|m| {
        if m.live == 0 {
            return None;
        }
        let tag = memo.tag(key);
        let e = m.buckets[bucket(tag)].iter_mut().find(|e| e.is_some_and(|(t, _)| t == tag))?;
        m.live -= 1;
        e.take().map(|(_, d)| d)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_is_taken_once_by_its_own_key_and_sandbox() {
        xems_testkit::logs::capture();
        let index = xems_core::IndexKey::new(&[7; 32]);
        let (a, b) = (MemoKey([1; 16]), MemoKey([2; 16]));
        put(a, b"key:1", index.digest(b"key:1"));
        assert!(take(a, b"key:2").is_none(), "another key");
        assert!(take(b, b"key:1").is_none(), "another sandbox's tag key");
        let got = take(a, b"key:1").expect("kept");
        assert_eq!(got.index(), index.digest(b"key:1").index());
        assert!(take(a, b"key:1").is_none(), "taken once");
    }

    #[test]
    fn a_full_bucket_pushes_out_its_oldest_entry() {
        xems_testkit::logs::capture();
        let index = xems_core::IndexKey::new(&[7; 32]);
        let m = MemoKey([3; 16]);
        // WAYS + 1 keys of one bucket.
        let target = bucket(m.tag(b"key:0"));
        let keys: Vec<String> = (0..)
            .map(|i| format!("key:{i}"))
            .filter(|k| bucket(m.tag(k.as_bytes())) == target)
            .take(WAYS + 1)
            .collect();
        for k in &keys {
            put(m, k.as_bytes(), index.digest(k.as_bytes()));
        }
        assert!(take(m, keys[0].as_bytes()).is_none(), "the oldest left for the last");
        for k in &keys[1..] {
            let got = take(m, k.as_bytes()).expect("kept");
            assert_eq!(got.index(), index.digest(k.as_bytes()).index());
        }
        MEMO.with_borrow(|t| assert_eq!(t.live, 0, "every entry taken"));
    }

    #[test]
    fn a_round_of_hints_is_kept() {
        xems_testkit::logs::capture();
        let index = xems_core::IndexKey::new(&[7; 32]);
        let m = MemoKey([4; 16]);
        // One scheduler round of lone requests plus a pipelined window.
        let keys: Vec<String> = (0..61 + 32).map(|i| format!("session:{i}")).collect();
        for k in &keys {
            put(m, k.as_bytes(), index.digest(k.as_bytes()));
        }
        let kept = keys.iter().filter(|k| take(m, k.as_bytes()).is_some()).count();
        assert!(kept * 100 >= keys.len() * 95, "{kept} of {} kept", keys.len());
        const { assert!(CAPACITY >= 61 + 32, "room for the round in the table at all") };
    }
}
