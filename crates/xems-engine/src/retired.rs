//! The rotated-away addresses of one session, oldest first.
//!
//! Two shapes behind one small API: up to [`INLINE`] addresses live inline
//! in the session's side record (the common case: a few in grace and the
//! `retired_window` past it, no heap buffer and no extra cache miss per
//! rotation), and beyond that a ring buffer, so that a session rotated
//! hundreds of times within one grace period (a load test, a busy
//! single-page app) still retires its oldest address in O(1) instead of
//! shifting the whole list on every rotation.

use std::collections::VecDeque;

use smallvec::SmallVec;

/// A rotated-away address of a session: 24 bytes.
#[derive(Clone, Copy)]
pub(crate) struct Retired {
    pub(crate) key: [u8; 16],
    /// End of the grace window in ms, and [`CALLER`] when the address is a
    /// caller key (it has an entry in the key table to remove with it).
    until_flags: u64,
}

/// The caller-key flag of [`Retired::until_flags`] (times stay far below
/// 2^63 ms).
const CALLER: u64 = 1 << 63;

impl Retired {
    pub(crate) fn new(key: [u8; 16], grace_until: u64, caller: bool) -> Self {
        Retired { key, until_flags: (grace_until & !CALLER) | if caller { CALLER } else { 0 } }
    }

    pub(crate) fn grace_until(&self) -> u64 {
        self.until_flags & !CALLER
    }

    pub(crate) fn caller(&self) -> bool {
        self.until_flags & CALLER != 0
    }
}

/// Addresses held without a heap buffer.
pub(crate) const INLINE: usize = 8;

/// A session's retired addresses, oldest first.
pub(crate) enum RetiredList {
    /// At most [`INLINE`] addresses (never spilled: a push beyond moves the
    /// list to `Ring`).
    Inline(SmallVec<[Retired; INLINE]>),
    /// More than fit inline.
    Ring(VecDeque<Retired>),
}

impl Default for RetiredList {
    fn default() -> Self {
        RetiredList::Inline(SmallVec::new())
    }
}

impl RetiredList {
    pub(crate) fn len(&self) -> usize {
        match self {
            RetiredList::Inline(v) => v.len(),
            RetiredList::Ring(r) => r.len(),
        }
    }

    pub(crate) fn front(&self) -> Option<&Retired> {
        match self {
            RetiredList::Inline(v) => v.first(),
            RetiredList::Ring(r) => r.front(),
        }
    }

    pub(crate) fn pop_front(&mut self) -> Option<Retired> {
        match self {
            // At most INLINE entries to shift.
            RetiredList::Inline(v) => (!v.is_empty()).then(|| v.remove(0)),
            RetiredList::Ring(r) => {
                let first = r.pop_front();
                // Back inline once the burst is over (at half the inline
                // room, so a list hovering at the boundary does not flip
                // on every rotation): a session keeps no heap buffer for
                // life because it once had one busy second.
                if r.len() <= INLINE / 2 {
                    *self = RetiredList::Inline(r.drain(..).collect());
                }
                first
            }
        }
    }

    pub(crate) fn push_back(&mut self, item: Retired) {
        match self {
            RetiredList::Inline(v) if v.len() < INLINE => v.push(item),
            RetiredList::Inline(v) => {
                let mut ring = VecDeque::with_capacity(4 * INLINE);
                ring.extend(v.drain(..));
                ring.push_back(item);
                *self = RetiredList::Ring(ring);
            }
            RetiredList::Ring(r) => r.push_back(item),
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Retired> {
        let (first, second): (&[Retired], &[Retired]) = match self {
            RetiredList::Inline(v) => (v, &[]),
            RetiredList::Ring(r) => r.as_slices(),
        };
        first.iter().chain(second)
    }
}

impl FromIterator<Retired> for RetiredList {
    fn from_iter<I: IntoIterator<Item = Retired>>(iter: I) -> Self {
        let mut list = RetiredList::default();
        for r in iter {
            list.push_back(r);
        }
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(n: u8) -> Retired {
        Retired::new([n; 16], u64::from(n), n.is_multiple_of(2))
    }

    #[test]
    fn keeps_order_across_the_move_to_the_ring() {
        xems_testkit::logs::capture();
        let mut list = RetiredList::default();
        for n in 0..20 {
            list.push_back(r(n));
            assert_eq!(list.len(), usize::from(n) + 1);
        }
        assert!(matches!(list, RetiredList::Ring(_)), "20 entries do not fit inline");
        let keys: Vec<u8> = list.iter().map(|x| x.key[0]).collect();
        assert_eq!(keys, (0..20).collect::<Vec<u8>>());
        for n in 0..20 {
            assert_eq!(list.front().map(|x| x.key[0]), Some(n));
            let x = list.pop_front().unwrap();
            assert_eq!((x.key[0], x.grace_until(), x.caller()), (n, u64::from(n), n.is_multiple_of(2)));
        }
        assert!(list.pop_front().is_none() && list.front().is_none());
    }

    #[test]
    fn a_drained_ring_goes_back_inline() {
        xems_testkit::logs::capture();
        let mut list: RetiredList = (0..20).map(r).collect();
        while list.len() > INLINE / 2 + 1 {
            list.pop_front();
            assert!(matches!(list, RetiredList::Ring(_)), "still a ring at {}", list.len());
        }
        list.pop_front();
        assert!(matches!(list, RetiredList::Inline(_)), "inline again at {}", list.len());
        let keys: Vec<u8> = list.iter().map(|x| x.key[0]).collect();
        assert_eq!(keys, (16..20).collect::<Vec<u8>>(), "order kept across the move back");
    }

    #[test]
    fn a_short_list_stays_inline() {
        xems_testkit::logs::capture();
        let mut list: RetiredList = (0..INLINE as u8).map(r).collect();
        assert!(matches!(list, RetiredList::Inline(_)));
        list.pop_front();
        list.push_back(r(99));
        assert!(matches!(list, RetiredList::Inline(_)), "a window-sized list never spills");
        assert_eq!(list.iter().last().map(|x| x.key[0]), Some(99));
    }

    #[test]
    fn flags_survive_large_times() {
        xems_testkit::logs::capture();
        let x = Retired::new([1; 16], (1 << 62) + 5, true);
        assert_eq!((x.grace_until(), x.caller()), ((1 << 62) + 5, true));
        let y = Retired::new([1; 16], 7, false);
        assert_eq!((y.grace_until(), y.caller()), (7, false));
    }
}
