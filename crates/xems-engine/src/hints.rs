//! A lone address's prefetch, taken one step per call.
//!
//! A lookup is a chain of dependent cache misses: a caller key's index
//! bucket (or, for a minted token, the record its selector names), then the
//! record, then its sealed value. A batch of several addresses overlaps its
//! own chains ([`crate::Engine::prefetch`] starts one step of every address
//! before any completes). A lone address has nothing in its batch to overlap
//! with, and taking its steps at once would wait for each miss in turn. But
//! a server that hints each connection's request and lets the other ready
//! connections read and hint theirs before answering (as `xems serve` does
//! for a lone request) makes many such calls in a row, microseconds apart.
//! So a lone address is queued on its thread after its first fetch starts,
//! and each later prefetch on the thread moves every queued address one step
//! on: reading what the step before fetched (arrived by now) to start the
//! next fetch. Two calls later its record and value are on their way, while
//! the requests in between were being read; its own operation then finds
//! them cached.
//!
//! Only hints: a step reads under its shard's lock and changes nothing, and
//! a stale entry (the record since moved or removed) fetches a line for
//! nothing. Entries name the engine and the sandbox by number, so the queue
//! holds no reference and keeps nothing alive; an engine moves only its own
//! entries and drops the others'. The queue is a few entries long: each
//! leaves after two steps.

use std::cell::RefCell;

use smallvec::SmallVec;

use crate::sandbox::SandboxCore;
use crate::shard::HintTarget;

/// An address whose first fetch has started.
struct Staged {
    engine: u64,
    sandbox: u32,
    route: u8,
    next: Step,
}

/// What an address's next prefetch step reads (its first, the fetch of its
/// bucket or record, has started).
#[derive(Clone, Copy)]
pub(crate) enum Step {
    /// The bucket (or the record, for a minted token) fetched by the first
    /// step: find the slot and fetch the record.
    Slot(HintTarget),
    /// The record fetched by the step before: fetch its sealed value and
    /// side record.
    Parts(u32),
}

impl Step {
    /// Takes this step for an address of `core` on shard `route`: the step
    /// after it, or `None` when the chain is done (its value being fetched)
    /// or ends early (no such record).
    pub(crate) fn take(self, core: &SandboxCore, route: u8) -> Option<Step> {
        match self {
            Step::Slot(target) => core.hint_slot(route, &target).map(Step::Parts),
            Step::Parts(slot) => {
                core.hint_parts(route, slot);
                None
            }
        }
    }
}

/// Entries a thread keeps; the oldest goes first when one more arrives. Each
/// leaves after two later calls, so this is only a bound.
const CAPACITY: usize = 8;

thread_local! {
    static QUEUE: RefCell<SmallVec<[Staged; CAPACITY]>> = RefCell::new(SmallVec::new());
}

/// Queues an address of `engine`'s sandbox at `sandbox` (its position) whose
/// first fetch ([`SandboxCore::hint_fetch`]) has just started.
pub(crate) fn stage(engine: u64, sandbox: u32, route: u8, target: HintTarget) {
    QUEUE.with_borrow_mut(|q| {
        if q.len() == CAPACITY {
            q.remove(0);
        }
        q.push(Staged { engine, sandbox, route, next: Step::Slot(target) });
    });
}

/// Moves each of `engine`'s queued addresses one step on (`core_at` finds a
/// sandbox by position); drops finished entries and other engines'.
pub(crate) fn advance<'a>(engine: u64, core_at: impl Fn(u32) -> Option<&'a SandboxCore>) {
    QUEUE.with_borrow_mut(|q| {
        q.retain_mut(|e| {
            if e.engine != engine {
                return false;
            }
            let Some(core) = core_at(e.sandbox) else { return false };
            match e.next.take(core, e.route) {
                Some(next) => {
                    e.next = next;
                    true
                }
                None => false,
            }
        });
    });
}

/// How many entries this thread has queued (tests).
#[cfg(test)]
pub(crate) fn queued() -> usize {
    QUEUE.with_borrow(SmallVec::len)
}

#[cfg(test)]
mod tests {
    use xems_core::CreateOptions;

    use super::queued;
    use crate::Engine;

    #[test]
    fn a_lone_address_is_queued_for_two_later_calls() {
        xems_testkit::logs::capture();
        let e = Engine::builder().sweep_interval(None).build().unwrap();
        let s = e.sandbox("s").unwrap();
        s.set("k", b"v", CreateOptions::new()).unwrap();
        e.prefetch(&[("s", "k")]);
        assert_eq!(queued(), 1, "its first fetch started, the rest queued");
        e.prefetch(&[]);
        assert_eq!(queued(), 1, "the record's fetch started");
        e.prefetch(&[]);
        assert_eq!(queued(), 0, "the value's fetch started: done");
        assert_eq!(s.get("k").unwrap().unwrap().value.as_bytes(), b"v", "a hint changes no result");

        e.prefetch(&[("s", "absent")]);
        e.prefetch(&[]);
        assert_eq!(queued(), 0, "a key with no record leaves at its lookup");
        e.prefetch(&[("s", "k"), ("s", "k2")]);
        assert_eq!(queued(), 0, "a batch takes its own steps at once");
        e.prefetch(&[("nowhere", "k")]);
        assert_eq!(queued(), 0, "an unknown sandbox is skipped");
    }

    #[test]
    fn an_engine_drops_other_engines_entries() {
        xems_testkit::logs::capture();
        let (a, b) = (Engine::builder().sweep_interval(None).build().unwrap(), Engine::new());
        a.sandbox("s").unwrap().set("k", b"v", CreateOptions::new()).unwrap();
        a.prefetch(&[("s", "k")]);
        assert_eq!(queued(), 1);
        b.prefetch(&[]);
        assert_eq!(queued(), 0, "not b's to advance");
        let s = a.sandbox("s").unwrap();
        let keys: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
        for k in &keys {
            s.set(k, b"v", CreateOptions::new()).unwrap();
        }
        for k in &keys {
            a.prefetch(&[("s", k)]);
            // This call's entry and the one before's (its record being
            // fetched); the one before that left at this call.
            assert!(queued() <= 2, "each entry leaves after two later calls");
        }
        assert_eq!(queued(), 2, "the last two are still on their way");
    }
}
