//! Limits and policies shared by every backend.

use std::fmt;
use std::str::FromStr;

/// What a full sandbox does with a new record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LimitPolicy {
    /// Refuse the write with [`crate::Error::SandboxFull`] (the default).
    #[default]
    Refuse,
    /// Evict the records of this sandbox that expire soonest (to within one
    /// second), never records of another sandbox.
    EvictSoonestExpiring,
}

impl FromStr for LimitPolicy {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "refuse" => Ok(LimitPolicy::Refuse),
            "evict-soonest-expiring" => Ok(LimitPolicy::EvictSoonestExpiring),
            other => {
                Err(PolicyError(format!("unknown limit policy {other:?}: expected refuse or evict-soonest-expiring")))
            }
        }
    }
}

impl fmt::Display for LimitPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LimitPolicy::Refuse => "refuse",
            LimitPolicy::EvictSoonestExpiring => "evict-soonest-expiring",
        })
    }
}

/// Limits of one sandbox.
///
/// ```
/// use xems_core::{LimitPolicy, SandboxLimits};
///
/// let limits = SandboxLimits::default()
///     .with_max_records(10_000)
///     .with_policy(LimitPolicy::EvictSoonestExpiring);
/// assert_eq!(limits.max_value_bytes, 10 * 1024 * 1024);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SandboxLimits {
    /// Most live records (default 10,000,000).
    pub max_records: u64,
    /// Most sealed bytes held (default 8 GiB). The Redis backend does not
    /// count bytes: Redis's own `maxmemory` bounds them.
    pub max_bytes: u64,
    /// Largest value in bytes (default 10 MiB, as in XyPriss).
    pub max_value_bytes: usize,
    /// What happens when a limit is reached.
    pub policy: LimitPolicy,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        SandboxLimits {
            max_records: 10_000_000,
            max_bytes: 8 << 30,
            max_value_bytes: 10 << 20,
            policy: LimitPolicy::Refuse,
        }
    }
}

impl SandboxLimits {
    /// Sets the record limit.
    pub fn with_max_records(mut self, n: u64) -> Self {
        self.max_records = n;
        self
    }

    /// Sets the byte limit.
    pub fn with_max_bytes(mut self, n: u64) -> Self {
        self.max_bytes = n;
        self
    }

    /// Sets the per-value limit.
    pub fn with_max_value_bytes(mut self, n: usize) -> Self {
        self.max_value_bytes = n;
        self
    }

    /// Sets the policy.
    pub fn with_policy(mut self, policy: LimitPolicy) -> Self {
        self.policy = policy;
        self
    }
}

/// What happens when a rotated-away token is presented after its grace
/// period.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReusePolicy {
    /// Refuse it and revoke its whole session: every token of the family dies
    /// (the default; what OAuth refresh-token rotation does).
    #[default]
    RevokeSession,
    /// Refuse only that token; the session lives on.
    RefuseToken,
}

impl FromStr for ReusePolicy {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "revoke-session" => Ok(ReusePolicy::RevokeSession),
            "refuse-token" => Ok(ReusePolicy::RefuseToken),
            other => {
                Err(PolicyError(format!("unknown reuse policy {other:?}: expected revoke-session or refuse-token")))
            }
        }
    }
}

/// A policy name that is not one of the accepted ones.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(String);
