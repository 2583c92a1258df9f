//! The xems conformance suite: one set of tests that every
//! [`SessionStore`] implementation must pass, written against the trait
//! alone.
//!
//! A backend provides a [`Backend`]: a way to start a store with a given
//! [`Setup`] (sandbox limits and reuse policy) behind a [`Harness`] that can
//! move the store's clock. Then one line generates every test:
//!
//! ```text
//! xems_testkit::conformance_suite!(MyBackend);
//! ```
//!
//! Time never comes from sleeping: every TTL and grace case moves the store's
//! clock through [`Harness::advance`].
//!
//! The crate also holds what lets the whole test suite run under TRACE
//! logging and be checked for leaks: [`logs`] (capture, in every test
//! binary and child process), [`secrets`] (every fixed test secret) and
//! [`logscan`] (the check, run as `xems-logscan`).

use std::future::Future;
use std::time::Duration;

use xems_core::{SessionStore, Stats};

/// The leak marker as a literal (for `concat!`); [`logs::MARKER`] is the
/// same string.
macro_rules! marker {
    () => {
        "xems-leak-marker-5c7e9a"
    };
}

pub mod cases;
pub mod logs;
pub mod logscan;
pub mod secrets;

/// Limits of one sandbox in a [`Setup`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxSpec {
    /// The sandbox.
    pub name: &'static str,
    /// Most live records.
    pub max_records: u64,
    /// Largest value in bytes.
    pub max_value_bytes: usize,
    /// `true`: evict the soonest-expiring records when full; `false`: refuse.
    pub evict_soonest: bool,
}

/// How to configure the store under test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setup {
    /// Sandboxes with limits of their own; every other sandbox uses the
    /// backend's defaults (10 MiB per value, no small record limit).
    pub sandboxes: Vec<SandboxSpec>,
    /// `true` (the default): a replayed rotated token revokes its session;
    /// `false`: only that token is refused.
    pub revoke_on_reuse: bool,
}

impl Setup {
    /// The sandboxes the suite uses: `tiny` (5 records, refuse), `evict` (3
    /// records, evict soonest), `capped` (values up to 1024 bytes).
    pub fn standard() -> Self {
        Setup {
            sandboxes: vec![
                SandboxSpec { name: "tiny", max_records: 5, max_value_bytes: 10 << 20, evict_soonest: false },
                SandboxSpec { name: "evict", max_records: 3, max_value_bytes: 10 << 20, evict_soonest: true },
                SandboxSpec { name: "capped", max_records: 1_000_000, max_value_bytes: 1024, evict_soonest: false },
            ],
            revoke_on_reuse: true,
        }
    }

    /// The standard setup with reuse refusing only the replayed token.
    pub fn refuse_token_on_reuse() -> Self {
        Setup { revoke_on_reuse: false, ..Self::standard() }
    }
}

/// A running store under test.
pub trait Harness: Send + Sync + 'static {
    /// The store.
    type Store: SessionStore + Clone;

    /// The store.
    fn store(&self) -> &Self::Store;

    /// Moves the store's clock forward.
    fn advance(&self, by: Duration) -> impl Future<Output = ()> + Send;

    /// Reclaims expired records now, as the store's background expiry would
    /// eventually do.
    fn sweep(&self) -> impl Future<Output = ()> + Send;
}

/// A kind of store the suite can start.
pub trait Backend: 'static {
    /// Its harness.
    type Harness: Harness;

    /// Starts a fresh, empty store.
    fn start(setup: Setup) -> impl Future<Output = Self::Harness> + Send;
}

/// Reads the stats of a store, panicking with the error if it fails.
pub async fn stats<S: SessionStore>(store: &S) -> Stats {
    store.stats().await.expect("stats")
}

/// Generates one `#[tokio::test]` per conformance case for `$backend`.
#[macro_export]
///
/// `conformance_suite!(@run_all Backend)` is an expression instead: it runs
/// every case in turn (in one async context) and evaluates to their names,
/// for a harness that must observe the whole suite at once (the log proof
/// of `xems-server`). The list of cases is written once, here.
macro_rules! conformance_suite {
    ($backend:ty) => {
        $crate::conformance_suite!(@list tests $backend);
    };
    (@run_all $backend:ty) => {
        $crate::conformance_suite!(@list run $backend)
    };
    (@list $mode:ident $backend:ty) => {
        $crate::conformance_suite!(@ $mode $backend;
            create_then_resolve,
            caller_keys_set_get_del_exists,
            unknown_addresses,
            sandboxes_are_isolated,
            bad_input_is_a_clear_error,
            rotation_mints_one_successor_and_grace_returns_it,
            reuse_after_grace_revokes_the_session,
            reuse_policy_can_refuse_only_the_token,
            zero_grace_retires_at_once,
            concurrent_resolves_converge_on_one_successor,
            dashboard_burst_never_fails,
            interval_rotation_follows_the_store_clock,
            rotation_keeps_identity_and_lifetime,
            ttl_exact_expiry_instant,
            ttl_is_capped_at_five_days,
            idle_versus_absolute_lifetime,
            refresh_and_touch,
            migrate_is_atomic,
            update_if_is_compare_and_set,
            concurrent_update_if_loses_nothing,
            subjects_list_and_revoke,
            limit_refuses_when_full,
            limit_evicts_soonest_expiring,
            flooding_one_sandbox_spares_the_others,
            oversized_values_are_refused,
            values_in_their_json_form,
            resolve_into_appends_the_value,
            expired_records_are_reclaimed,
        );
    };
    (@run $backend:ty; $($case:ident),* $(,)?) => {{
        $crate::logs::capture();
        $( $crate::cases::$case::<$backend>().await; )*
        &[$(stringify!($case)),*] as &'static [&'static str]
    }};
    (@tests $backend:ty; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::logs::capture();
                $crate::cases::$case::<$backend>().await;
            }
        )*
    };
}
