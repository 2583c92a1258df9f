//! The conformance suite against the embedded engine, with a mock clock.

use std::time::Duration;

use xems_core::{MockClock, Timestamp};
use xems_engine::{Engine, LimitPolicy, ReusePolicy, SandboxLimits};
use xems_testkit::{Backend, Harness, Setup};

struct EngineBackend;

struct EngineHarness {
    engine: Engine,
    clock: MockClock,
}

impl Harness for EngineHarness {
    type Store = Engine;

    fn store(&self) -> &Engine {
        &self.engine
    }

    async fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    async fn sweep(&self) {
        self.engine.sweep_expired();
    }
}

impl Backend for EngineBackend {
    type Harness = EngineHarness;

    async fn start(setup: Setup) -> EngineHarness {
        let clock = MockClock::new(Timestamp::from_millis(1_800_000_000_000));
        let mut builder = Engine::builder()
            .clock(clock.clone())
            .sweep_interval(None)
            .reuse_policy(if setup.revoke_on_reuse { ReusePolicy::RevokeSession } else { ReusePolicy::RefuseToken });
        for spec in &setup.sandboxes {
            let policy = if spec.evict_soonest { LimitPolicy::EvictSoonestExpiring } else { LimitPolicy::Refuse };
            builder = builder.sandbox_limits(
                spec.name,
                SandboxLimits::default()
                    .with_max_records(spec.max_records)
                    .with_max_value_bytes(spec.max_value_bytes)
                    .with_policy(policy),
            );
        }
        EngineHarness { engine: builder.build().expect("valid setup"), clock }
    }
}

xems_testkit::conformance_suite!(EngineBackend);
