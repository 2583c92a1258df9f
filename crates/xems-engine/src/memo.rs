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
//! when taken; a thread keeps at most [`CAPACITY`], the first in line
//! leaving when one more arrives (a digest hinted and never asked for, as
//! for a request that failed before its lookup, is pushed out). Entries outlive the prefetch call that
//! made them: a server hints one request per connection and answers them
//! after the other ready connections have hinted theirs
//! ([`crate::hints`]).

use std::cell::RefCell;
use std::hash::Hasher as _;

use siphasher::sip128::{Hasher128 as _, SipHasher13};
use smallvec::SmallVec;
use xems_core::IndexDigest;

/// Entries one thread keeps: more than one round of a busy server hints
/// before it answers the first (tokio runs at most 61 tasks between two
/// polls of its I/O driver, after which the yielded ones run again; one
/// window of 32 pipelined requests). Past it, a digest is computed again,
/// never wrong.
pub(crate) const CAPACITY: usize = 128;

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

/// Keeps `digest` for `key`, pushing out the oldest entry when full.
pub(crate) fn put(memo: MemoKey, key: &[u8], digest: IndexDigest) {
    MEMO.with_borrow_mut(|m| {
        if m.len() == CAPACITY {
            m.remove(0);
        }
        m.push((memo.tag(key), digest));
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
        put(a, b"key:1", index.digest(b"key:1"));
        assert!(take(a, b"key:2").is_none(), "another key");
        assert!(take(b, b"key:1").is_none(), "another sandbox's tag key");
        let got = take(a, b"key:1").expect("kept");
        assert_eq!(got.index(), index.digest(b"key:1").index());
        assert!(take(a, b"key:1").is_none(), "taken once");
    }

    #[test]
    fn a_full_memo_pushes_out_its_first_entry() {
        xems_testkit::logs::capture();
        let index = xems_core::IndexKey::new(&[7; 32]);
        let m = MemoKey([3; 16]);
        let keys: Vec<String> = (0..=CAPACITY).map(|i| format!("key:{i}")).collect();
        for k in &keys {
            put(m, k.as_bytes(), index.digest(k.as_bytes()));
        }
        assert!(take(m, keys[0].as_bytes()).is_none(), "the first entry left for the last");
        for k in &keys[1..] {
            let got = take(m, k.as_bytes()).expect("kept");
            assert_eq!(got.index(), index.digest(k.as_bytes()).index());
        }
        MEMO.with_borrow(|e| assert!(e.is_empty(), "every entry taken"));
    }
}
