//! What the Redis test files share: one server (or cluster) per test binary,
//! and the conformance harness. Each store gets a key prefix of its own, so
//! tests running at once never see each other's keys.

#![allow(dead_code, unreachable_pub)]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use xems_core::{MasterSecret, MockClock};
use xems_redis::testing::{RedisCluster, RedisServer};
use xems_redis::{LimitPolicy, RedisStore, RedisStoreBuilder, ReusePolicy, SandboxLimits};
use xems_testkit::{Backend, Harness, Setup};

static STANDALONE: OnceLock<RedisServer> = OnceLock::new();
static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();

/// The standalone server of this test binary.
pub fn standalone() -> &'static RedisServer {
    xems_testkit::logs::capture();
    STANDALONE.get_or_init(|| RedisServer::start().expect("start redis-server"))
}

/// The 3-master cluster of this test binary.
pub fn cluster() -> &'static RedisCluster {
    xems_testkit::logs::capture();
    CLUSTER.get_or_init(|| RedisCluster::start(3).expect("start a 3-master Redis Cluster"))
}

/// A key prefix no other store of this run uses.
pub fn fresh_prefix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let mut r = [0u8; 4];
    xems_core::random_bytes(&mut r);
    format!("t{}-{:08x}", N.fetch_add(1, Ordering::Relaxed), u32::from_be_bytes(r))
}

/// The test secret (`xems_testkit::secrets::REDIS`, which the log scan
/// looks for).
pub fn secret() -> MasterSecret {
    xems_testkit::logs::capture();
    MasterSecret::parse(xems_testkit::secrets::REDIS).expect("32 bytes")
}

/// A builder for `url` configured as the conformance suite asks (the
/// audit log on: the whole-suite log capture checks its lines).
pub fn builder(url: &str, setup: &Setup, clock: &MockClock) -> RedisStoreBuilder {
    xems_testkit::logs::capture();
    let mut b = RedisStore::builder(url)
        .secret(secret())
        .prefix(fresh_prefix())
        .clock(clock.clone())
        .sweep_interval(None)
        .audit_log(true)
        .reuse_policy(if setup.revoke_on_reuse { ReusePolicy::RevokeSession } else { ReusePolicy::RefuseToken });
    for spec in &setup.sandboxes {
        let policy = if spec.evict_soonest { LimitPolicy::EvictSoonestExpiring } else { LimitPolicy::Refuse };
        b = b.sandbox_limits(
            spec.name,
            SandboxLimits::default()
                .with_max_records(spec.max_records)
                .with_max_value_bytes(spec.max_value_bytes)
                .with_policy(policy),
        );
    }
    b
}

/// A store under test and its clock.
pub struct RedisHarness {
    pub store: RedisStore,
    pub clock: MockClock,
}

impl Harness for RedisHarness {
    type Store = RedisStore;

    fn store(&self) -> &RedisStore {
        &self.store
    }

    async fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    async fn sweep(&self) {
        self.store.sweep_expired().await.expect("sweep");
    }
}

async fn start(url: String, setup: Setup) -> RedisHarness {
    // Real time so Redis's own expiry (set later than the logical one) stays
    // consistent; the tests then move this clock forward.
    let clock = MockClock::starting_now();
    let store = builder(&url, &setup, &clock).connect().await.expect("connect to the test Redis");
    RedisHarness { store, clock }
}

/// The conformance backend on the standalone server.
pub struct Standalone;

impl Backend for Standalone {
    type Harness = RedisHarness;

    async fn start(setup: Setup) -> RedisHarness {
        start(standalone().url(), setup).await
    }
}

/// The conformance backend on the 3-master cluster.
pub struct Cluster;

impl Backend for Cluster {
    type Harness = RedisHarness;

    async fn start(setup: Setup) -> RedisHarness {
        start(cluster().url(), setup).await
    }
}
