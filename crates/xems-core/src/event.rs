//! Lifecycle events and the plugin trait that receives them.
//!
//! Events name the sandbox and carry a short keyed [`Fingerprint`] of the
//! token, never the token itself nor any value. Two subscribers are built
//! in: [`TracingAudit`] writes an audit log through `tracing`, and every store
//! keeps [`Counters`].

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::crypto::Fingerprint;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// A record was created (by `create`, `set` on a new key, or `migrate`).
    Created,
    /// A token or key was resolved.
    Resolved,
    /// A token was rotated: a successor was minted.
    Rotated,
    /// A rotated-away token was presented within its grace period.
    GraceHit,
    /// A rotated-away token was presented after its grace period.
    ReuseDetected,
    /// A record moved to another sandbox.
    Migrated,
    /// A record was deleted or revoked.
    Deleted,
    /// A record expired.
    Expired,
    /// A record was evicted to make room (`evict-soonest-expiring`).
    Evicted,
    /// A write was refused (sandbox full, value too large).
    Refused,
}

impl EventKind {
    /// Every kind, in declaration order.
    pub const ALL: [EventKind; 10] = [
        EventKind::Created,
        EventKind::Resolved,
        EventKind::Rotated,
        EventKind::GraceHit,
        EventKind::ReuseDetected,
        EventKind::Migrated,
        EventKind::Deleted,
        EventKind::Expired,
        EventKind::Evicted,
        EventKind::Refused,
    ];

    /// The snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::Resolved => "resolved",
            EventKind::Rotated => "rotated",
            EventKind::GraceHit => "grace_hit",
            EventKind::ReuseDetected => "reuse_detected",
            EventKind::Migrated => "migrated",
            EventKind::Deleted => "deleted",
            EventKind::Expired => "expired",
            EventKind::Evicted => "evicted",
            EventKind::Refused => "refused",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One lifecycle event.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Event<'a> {
    /// What happened.
    pub kind: EventKind,
    /// In which sandbox.
    pub sandbox: &'a str,
    /// A keyed fingerprint of the token or key involved, when there is one.
    pub fingerprint: Option<Fingerprint>,
    /// When.
    pub at: Timestamp,
    /// A short, fixed explanation (`"sandbox full"`, `"family revoked"`, ...).
    pub detail: &'static str,
}

impl<'a> Event<'a> {
    /// Assembles an event (for store implementations).
    pub fn new(kind: EventKind, sandbox: &'a str, fingerprint: Option<Fingerprint>, at: Timestamp) -> Self {
        Event { kind, sandbox, fingerprint, at, detail: "" }
    }

    /// Adds a detail.
    pub fn with_detail(mut self, detail: &'static str) -> Self {
        self.detail = detail;
        self
    }
}

/// A plugin receiving lifecycle events.
///
/// Called synchronously after the operation has taken effect and outside
/// any store lock; keep it quick (hand work to a channel if it is slow).
pub trait EventSink: Send + Sync + 'static {
    /// Receives one event.
    fn on_event(&self, event: &Event<'_>);
}

/// The built-in audit log: each event as a `tracing` event with target
/// `xems::audit`. Reuse detection logs at WARN, refusals and evictions at
/// INFO, the rest at DEBUG (resolutions at TRACE).
#[derive(Clone, Copy, Debug, Default)]
pub struct TracingAudit;

/// Formats an optional fingerprint only if a log line is actually written.
struct MaybeFingerprint(Option<Fingerprint>);

impl fmt::Display for MaybeFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(fp) => fp.fmt(f),
            None => Ok(()),
        }
    }
}

impl EventSink for TracingAudit {
    fn on_event(&self, e: &Event<'_>) {
        let fp = MaybeFingerprint(e.fingerprint);
        let kind = e.kind.as_str();
        match e.kind {
            EventKind::ReuseDetected => tracing::warn!(
                target: "xems::audit", event = kind, sandbox = e.sandbox, fingerprint = %fp, detail = e.detail,
                "rotated token replayed after its grace period"
            ),
            EventKind::Refused | EventKind::Evicted => {
                tracing::info!(target: "xems::audit", event = kind, sandbox = e.sandbox, fingerprint = %fp, detail = e.detail)
            }
            EventKind::Resolved | EventKind::GraceHit => {
                tracing::trace!(target: "xems::audit", event = kind, sandbox = e.sandbox, fingerprint = %fp, detail = e.detail)
            }
            _ => {
                tracing::debug!(target: "xems::audit", event = kind, sandbox = e.sandbox, fingerprint = %fp, detail = e.detail)
            }
        }
    }
}

/// Event counters since a store started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Counters {
    /// Records created.
    pub created: u64,
    /// Successful resolutions (rotating or not, grace hits included).
    pub resolved: u64,
    /// Successor tokens minted.
    pub rotated: u64,
    /// Rotated-away tokens accepted within their grace period.
    pub grace_hits: u64,
    /// Rotated-away tokens presented after their grace period.
    pub reuse_detected: u64,
    /// Records migrated to another sandbox.
    pub migrated: u64,
    /// Records deleted or revoked.
    pub deleted: u64,
    /// Records expired.
    pub expired: u64,
    /// Records evicted.
    pub evicted: u64,
    /// Writes refused.
    pub refused: u64,
}

impl Counters {
    /// Counts one event of `kind`.
    pub fn add(&mut self, kind: EventKind, n: u64) {
        *self.slot(kind) += n;
    }

    /// The count for `kind`.
    pub fn get(&self, kind: EventKind) -> u64 {
        let mut copy = *self;
        *copy.slot(kind)
    }

    /// Adds every counter of `other`.
    pub fn merge(&mut self, other: &Counters) {
        for kind in EventKind::ALL {
            self.add(kind, other.get(kind));
        }
    }

    fn slot(&mut self, kind: EventKind) -> &mut u64 {
        match kind {
            EventKind::Created => &mut self.created,
            EventKind::Resolved => &mut self.resolved,
            EventKind::Rotated => &mut self.rotated,
            EventKind::GraceHit => &mut self.grace_hits,
            EventKind::ReuseDetected => &mut self.reuse_detected,
            EventKind::Migrated => &mut self.migrated,
            EventKind::Deleted => &mut self.deleted,
            EventKind::Expired => &mut self.expired,
            EventKind::Evicted => &mut self.evicted,
            EventKind::Refused => &mut self.refused,
        }
    }
}

/// Thread-safe counters, for stores that do not keep their own per-shard
/// counts (the network client and the Redis backend).
#[derive(Debug, Default)]
pub struct AtomicCounters([AtomicU64; 10]);

impl AtomicCounters {
    /// Counts `n` events of `kind`.
    pub fn add(&self, kind: EventKind, n: u64) {
        let i = EventKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        self.0[i].fetch_add(n, Ordering::Relaxed);
    }

    /// A snapshot.
    pub fn snapshot(&self) -> Counters {
        let mut c = Counters::default();
        for (i, kind) in EventKind::ALL.iter().enumerate() {
            c.add(*kind, self.0[i].load(Ordering::Relaxed));
        }
        c
    }
}

impl EventSink for AtomicCounters {
    fn on_event(&self, event: &Event<'_>) {
        self.add(event.kind, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_cover_every_kind() {
        xems_testkit::logs::capture();
        let mut c = Counters::default();
        for (i, kind) in EventKind::ALL.into_iter().enumerate() {
            c.add(kind, i as u64 + 1);
        }
        for (i, kind) in EventKind::ALL.into_iter().enumerate() {
            assert_eq!(c.get(kind), i as u64 + 1, "{kind}");
        }
        let a = AtomicCounters::default();
        a.on_event(&Event::new(EventKind::ReuseDetected, "s", None, Timestamp::ZERO));
        assert_eq!(a.snapshot().reuse_detected, 1);
        assert_eq!(a.snapshot().created, 0);
    }
}
