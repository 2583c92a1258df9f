//! Engine configuration: the builder's error type. Limits and policies are
//! shared by every backend and live in `xems-core`.

/// A configuration the engine cannot run with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid engine configuration: {0}")]
pub struct ConfigError(pub(crate) String);
