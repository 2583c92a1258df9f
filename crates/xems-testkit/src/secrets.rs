//! Every fixed secret the workspace's tests hand to a store, a server or a
//! portal, in one place, so that the log scan ([`crate::logscan`]) looks
//! for each of them in every captured log line. A test that needs a new
//! fixed secret adds it here (and to [`ALL`]).
//!
//! Secrets drawn at random by a test (the memory canary's, the log proof's)
//! are not listed: the scan finds them by shape (64 hex digits) when they
//! are written as `hex:` text, and those tests check their own logs for
//! the rest.

/// `xems` sidecar and vault tools (xems-server `stdio_lifecycle.rs`,
/// `vault.rs`): 32 plain bytes, as the XyPriss host passes it.
pub const SIDECAR: &str = "0123456789abcdef0123456789abcdef";
/// The secret `vault.rs` rotates to.
pub const SIDECAR_NEXT: &str = "hex:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
/// The secret `stdio_lifecycle.rs` reads from a file.
pub const SIDECAR_FILE: &str = "hex:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
/// xems-server `crash_consistency.rs`.
pub const CRASH: &str = "crash-test-secret-0123456789abcd";
/// xems-server `redis_store.rs`.
pub const SERVER_REDIS: &str = "redis-store-test-secret-01234567";
/// xems-redis tests.
pub const REDIS: &str = "test-secret-of-exactly-32-bytes!";
/// xems-redis `multi_node.rs`: the secret rotated to.
pub const REDIS_NEXT: &str = "another-secret-of-exactly-32-by!";
/// xems-portal `redis_nodes.rs`.
pub const PORTAL_NODES: &str = "portal-nodes-test-secret-0123456";
/// The golden vault of xems-vault `backward_compatibility.rs` (its files
/// are sealed under it: never change it).
pub const GOLDEN_VAULT: &str = "xems-golden-vault-v1-test-secret";

/// The `xems serve` auth token of the xems-server tests.
pub const AUTH_TOKEN: &str = "integration-test-token-0123456789";
/// A Redis password in a `--store` URL (xems-server `redis_store.rs`):
/// redacted from every message.
pub const REDIS_PASSWORD: &str = "hunter2";
/// The portal's demo password (`xems_portal::DEMO_PASSWORD`), which the
/// portal tests submit.
pub const DEMO_PASSWORD: &str = "correct-horse-battery";

/// How many [`vault`] secrets there are.
pub const VAULT_SECRETS: u8 = 6;

/// The xems-vault tests' secrets: `n` repeated 32 times, `n` from 1 to
/// [`VAULT_SECRETS`].
///
/// # Panics
///
/// For any other `n` (add to [`VAULT_SECRETS`] first, so the scan knows it).
pub fn vault(n: u8) -> [u8; 32] {
    assert!((1..=VAULT_SECRETS).contains(&n), "vault secret {n}: the scan knows 1 to {VAULT_SECRETS}");
    [n; 32]
}

/// The master secrets above, as `MasterSecret::parse` takes them, with a
/// name for the scan's report.
pub const ALL: &[(&str, &str)] = &[
    ("SIDECAR", SIDECAR),
    ("SIDECAR_NEXT", SIDECAR_NEXT),
    ("SIDECAR_FILE", SIDECAR_FILE),
    ("CRASH", CRASH),
    ("SERVER_REDIS", SERVER_REDIS),
    ("REDIS", REDIS),
    ("REDIS_NEXT", REDIS_NEXT),
    ("PORTAL_NODES", PORTAL_NODES),
    ("GOLDEN_VAULT", GOLDEN_VAULT),
];

/// The other credentials above, looked for as they are written.
pub const CREDENTIALS: &[(&str, &str)] =
    &[("AUTH_TOKEN", AUTH_TOKEN), ("REDIS_PASSWORD", REDIS_PASSWORD), ("DEMO_PASSWORD", DEMO_PASSWORD)];
