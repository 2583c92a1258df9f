//! The conformance suite, unchanged, against a 3-master Redis Cluster.

mod common;

xems_testkit::conformance_suite!(common::Cluster);

/// The suite above is only meaningful if the store really talks to a
/// Cluster whose masters each hold part of the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_spread_over_every_master() {
    use xems_core::{CreateOptions, SessionStore};
    use xems_testkit::{Backend, Setup};
    let h = common::Cluster::start(Setup::standard()).await;
    assert!(h.store.is_cluster());
    for i in 0..64 {
        h.store.create("spread", format!("{i}").as_bytes(), CreateOptions::new()).await.unwrap();
    }
    for node in common::cluster().nodes() {
        let keys = node.query(&redis::cmd("DBSIZE")).expect("DBSIZE");
        let n: i64 = redis::from_redis_value(keys).unwrap();
        assert!(n > 0, "every master holds some keys (node {} holds none)", node.port());
    }
}
