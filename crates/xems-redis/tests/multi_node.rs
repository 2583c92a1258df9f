//! Several application nodes (stores) sharing one Redis, standalone and
//! Cluster: a session made on one node resolves and rotates on another, a
//! burst split across nodes converges on one successor, and a secret
//! rotation keeps old sessions readable.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use xems_core::{CreateOptions, Keyring, MasterSecret, MockClock, ResolveOptions, ResolveOutcome, SessionStore};
use xems_redis::RedisStore;
use xems_testkit::logs::marked;

async fn node(url: &str, prefix: &str, keyring: Keyring, clock: &MockClock) -> RedisStore {
    RedisStore::builder(url)
        .keyring(keyring)
        .prefix(prefix)
        .clock(clock.clone())
        .sweep_interval(None)
        .audit_log(true)
        .connect()
        .await
        .unwrap()
}

async fn two_nodes_share_sessions(url: String) {
    let prefix = common::fresh_prefix();
    let clock = MockClock::starting_now();
    let a = node(&url, &prefix, Keyring::new(common::secret()), &clock).await;
    let b = node(&url, &prefix, Keyring::new(common::secret()), &clock).await;
    let c = a.create("active", marked("shared").as_bytes(), CreateOptions::new().with_subject("u1")).await.unwrap();
    let r = b.resolve("active", c.token.expose(), ResolveOptions::rotating()).await.unwrap().unwrap();
    assert_eq!(r.outcome, ResolveOutcome::Rotated);
    let t1 = r.token.unwrap();
    let g = a.resolve("active", c.token.expose(), ResolveOptions::rotating()).await.unwrap().unwrap();
    assert_eq!(g.outcome, ResolveOutcome::Grace);
    assert_eq!(g.token.as_ref(), Some(&t1), "node A hands out the successor node B minted");
    assert_eq!(b.list_subject("active", "u1").await.unwrap().len(), 1);

    // A burst of 64 rotating resolves of one token, split across the nodes.
    let t = t1.expose().to_owned();
    let nodes = [a.clone(), b.clone()];
    let barrier = Arc::new(tokio::sync::Barrier::new(64));
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let (s, t, barrier) = (nodes[i % 2].clone(), t.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                s.resolve("active", &t, ResolveOptions::rotating()).await
            })
        })
        .collect();
    let mut successors = HashSet::new();
    let mut rotated = 0;
    for task in tasks {
        let r = task.await.unwrap().expect("no error").expect("no failure in the burst");
        rotated += usize::from(r.outcome == ResolveOutcome::Rotated);
        successors.insert(r.token.unwrap().expose().to_owned());
    }
    assert_eq!(rotated, 1, "exactly one node rotates");
    assert_eq!(successors.len(), 1, "every request of both nodes gets the same successor");
    let counted = a.stats().await.unwrap().counters.rotated + b.stats().await.unwrap().counters.rotated;
    assert_eq!(counted, 2, "one rotation before the burst, one in it");
    assert_eq!(a.stats().await.unwrap().sandbox("active").unwrap().records, 1, "records are counted in Redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_sessions_standalone() {
    two_nodes_share_sessions(common::standalone().url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_sessions_cluster() {
    two_nodes_share_sessions(common::cluster().url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_rotation_keeps_old_sessions_readable() {
    let url = common::standalone().url();
    let prefix = common::fresh_prefix();
    let clock = MockClock::starting_now();
    let old = common::secret();
    let new = MasterSecret::parse(xems_testkit::secrets::REDIS_NEXT).unwrap();
    let before = node(&url, &prefix, Keyring::new(old.clone()), &clock).await;
    let session =
        before.create("active", marked("old value").as_bytes(), CreateOptions::new().with_subject("u")).await.unwrap();
    before.set("active", "caller-key", b"old key", CreateOptions::new()).await.unwrap();

    let after = node(&url, &prefix, Keyring::new(new.clone()).with_previous(old).unwrap(), &clock).await;
    let r = after.resolve("active", session.token.expose(), ResolveOptions::rotating()).await.unwrap().unwrap();
    assert_eq!(r.value.as_bytes(), marked("old value").as_bytes(), "sealed under the previous secret, still readable");
    let next = r.token.unwrap();
    assert!(after.resolve("active", next.expose(), ResolveOptions::new()).await.unwrap().is_some());
    assert_eq!(after.get("active", "caller-key").await.unwrap().unwrap().value.as_bytes(), b"old key");
    assert_eq!(after.list_subject("active", "u").await.unwrap().len(), 1, "subjects indexed under the old secret");
    // A rewrite seals under the new secret: a node with only the new one reads it.
    after.set("active", "caller-key", b"new key", CreateOptions::new()).await.unwrap();
    let only_new = node(&url, &prefix, Keyring::new(new), &clock).await;
    let e = only_new.get("active", "caller-key").await;
    // The key's pointer is indexed under the old secret: unknown to a node without it.
    assert!(matches!(e, Ok(None)), "a node without the old secret does not find old addresses");
    let fresh = after.create("active", b"fresh", CreateOptions::new()).await.unwrap();
    let got = only_new.get("active", fresh.token.expose()).await.unwrap().unwrap();
    assert_eq!(got.value.as_bytes(), b"fresh");
    let _ = Duration::ZERO;
}
