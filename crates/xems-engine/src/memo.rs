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
//! the records hold anyway) and tags, never key material. A thread keeps at
//! most [`CAPACITY`] of them; each prefetch clears them first, and each is
//! removed when taken.

use std::cell::RefCell;
use std::hash::Hasher as _;

use siphasher::sip128::{Hasher128 as _, SipHasher13};
use smallvec::SmallVec;
use xems_core::IndexDigest;

/// Entries one thread keeps (one window of pipelined requests).
pub(crate) const CAPACITY: usize = 32;

thread_local! {
    static MEMO: RefCell<SmallVec<[(u128, IndexDigest); CAPACITY]>> = RefCell::new(SmallVec::new());
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

/// Forgets every entry of this thread (a new batch begins).
pub(crate) fn clear() {
    MEMO.with_borrow_mut(SmallVec::clear);
}

/// Keeps `digest` for `key`, if there is room.
pub(crate) fn put(memo: MemoKey, key: &[u8], digest: IndexDigest) {
    MEMO.with_borrow_mut(|m| {
        if m.len() < CAPACITY {
            m.push((memo.tag(key), digest));
        }
    });
}

/// Takes the digest kept for `key`, if any. Costs nothing when this thread
/// keeps none (no batch in progress).
pub(crate) fn take(memo: MemoKey, key: &[u8]) -> Option<IndexDigest> {
    MEMO.with_borrow_mut(|m| {
        if m.is_empty() {
            return None;
        }
        let tag = memo.tag(key);
        let i = m.iter().position(|(t, _)| *t == tag)?;
        Some(m.swap_remove(i).1)
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
        clear();
        put(a, b"key:1", index.digest(b"key:1"));
        assert!(take(a, b"key:2").is_none(), "another key");
        assert!(take(b, b"key:1").is_none(), "another sandbox's tag key");
        let got = take(a, b"key:1").expect("kept");
        assert_eq!(got.index(), index.digest(b"key:1").index());
        assert!(take(a, b"key:1").is_none(), "taken once");
        put(a, b"key:1", index.digest(b"key:1"));
        clear();
        assert!(take(a, b"key:1").is_none(), "cleared");
    }
}
