//! Configuration: limits, policies, the connection target and the errors of
//! building a store.

use std::fmt;

/// Why a store could not be built or connected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No master secret was given. Every application node must derive the
    /// same keys, so a random per-process secret would make sessions
    /// unreadable by the other nodes.
    #[error(
        "the Redis store needs a master secret shared by every application node (set one with .secret(...) or \
         .keyring(...), e.g. from XEMS_SECRET)"
    )]
    MissingSecret,
    /// The URL is not one of the accepted forms.
    #[error("invalid Redis URL: {0}")]
    Url(String),
    /// A setting out of range.
    #[error("invalid Redis store configuration: {0}")]
    Invalid(String),
    /// The server could not be reached or refused the connection.
    #[error("cannot connect to Redis: {0}")]
    Connect(#[source] redis::RedisError),
}

/// Where the store connects.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// One server (or a proxy): `redis://` or `rediss://`.
    Single(String),
    /// A Cluster, given by one or more seed nodes.
    Cluster(Vec<String>),
}

impl fmt::Debug for Target {
    // URLs may carry a password: show hosts only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Single(u) => write!(f, "Single({})", redact(u)),
            Target::Cluster(nodes) => {
                f.debug_list().entries(nodes.iter().map(|u| redact(u))).finish()?;
                Ok(())
            }
        }
    }
}

/// Whether `url` names a Redis or Valkey store for
/// [`RedisStore::builder`](crate::RedisStore::builder): `redis://`,
/// `rediss://`, `redis+cluster://` or `rediss+cluster://`. Command lines
/// that accept several kinds of store (`xems serve --store`, the portal's
/// `--store`) use it to pick this backend, so they agree on the syntax;
/// the URL itself is checked when the store is built.
pub fn is_store_url(url: &str) -> bool {
    url.split_once("://")
        .is_some_and(|(scheme, _)| matches!(scheme, "redis" | "rediss" | "redis+cluster" | "rediss+cluster"))
}

/// A store URL with its user information (user and password) removed, for
/// logs, error messages and status pages:
/// `redis://user:pw@h:1` becomes `redis://<redacted>@h:1`.
pub fn redact_url(url: &str) -> String {
    redact(url)
}

/// A URL with its user information removed.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://<redacted>@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

impl Target {
    /// Parses `redis://[user:pass@]host:port[/db]`, `rediss://...`, and the
    /// Cluster forms `redis+cluster://[user:pass@]host1:port1,host2:port2`
    /// and `rediss+cluster://...`.
    pub(crate) fn parse(url: &str) -> Result<Self, ConfigError> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(ConfigError::Url(format!(
                "{:?} has no scheme: expected redis://, rediss://, redis+cluster:// or rediss+cluster://",
                redact(url)
            )));
        };
        let tls = match scheme {
            "redis" | "redis+cluster" => false,
            "rediss" | "rediss+cluster" => true,
            other => {
                return Err(ConfigError::Url(format!(
                    "unknown scheme {other:?}: expected redis://, rediss://, redis+cluster:// or rediss+cluster://"
                )));
            }
        };
        if tls && !cfg!(feature = "tls") {
            return Err(ConfigError::Url("rediss:// needs xems-redis built with its `tls` feature".into()));
        }
        let base = if tls { "rediss" } else { "redis" };
        if !scheme.ends_with("+cluster") {
            if rest.is_empty() {
                return Err(ConfigError::Url("no host".into()));
            }
            return Ok(Target::Single(url.to_owned()));
        }
        let (auth, hosts) = match rest.rfind('@') {
            Some(at) => (&rest[..=at], &rest[at + 1..]),
            None => ("", rest),
        };
        let hosts = hosts.trim_end_matches('/');
        if hosts.contains('/') {
            return Err(ConfigError::Url("a Cluster has no databases: drop the /db part".into()));
        }
        let nodes: Vec<String> =
            hosts.split(',').map(str::trim).filter(|h| !h.is_empty()).map(|h| format!("{base}://{auth}{h}")).collect();
        if nodes.is_empty() {
            return Err(ConfigError::Url("a cluster URL names at least one host:port".into()));
        }
        Ok(Target::Cluster(nodes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_forms() {
        xems_testkit::logs::capture();
        assert_eq!(Target::parse("redis://127.0.0.1:6379").unwrap(), Target::Single("redis://127.0.0.1:6379".into()));
        assert_eq!(
            Target::parse("redis+cluster://a:1,b:2").unwrap(),
            Target::Cluster(vec!["redis://a:1".into(), "redis://b:2".into()])
        );
        assert_eq!(
            Target::parse("redis+cluster://u:p@a:1,b:2/").unwrap(),
            Target::Cluster(vec!["redis://u:p@a:1".into(), "redis://u:p@b:2".into()])
        );
        assert!(Target::parse("http://x").is_err());
        assert!(Target::parse("localhost:6379").is_err());
        assert!(Target::parse("redis+cluster://").is_err());
        let shown = format!("{:?}", Target::parse("redis://user:hunter2@h:1").unwrap());
        assert!(!shown.contains("hunter2"), "{shown}");
        for url in ["redis://h:1", "rediss://h:1", "redis+cluster://a:1,b:2", "rediss+cluster://a:1"] {
            assert!(is_store_url(url), "{url}");
        }
        for url in ["memory", "xems://h:1", "unix:///x", "redisx://h:1", "redis:h:1"] {
            assert!(!is_store_url(url), "{url}");
        }
        assert_eq!(redact_url("redis+cluster://:pw@a:1,b:2"), "redis+cluster://<redacted>@a:1,b:2");
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
    }
}
