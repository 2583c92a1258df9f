//! What Redis holds: only ciphertext and keyed digests. Every key and every
//! value in the server is read back (by type, and as DUMP) and searched for
//! the plaintext marker and for every raw token and caller key issued.

mod common;

use std::time::Duration;

use redis::AsyncCommands;
use xems_core::{CreateOptions, MockClock, ResolveOptions, SessionStore, UpdateOutcome};
use xems_testkit::Setup;

const MARKER: &str = "PLAINTEXT-MARKER-5f3c9a";

/// Every (key, what) whose name or content contains one of `needles`.
async fn scan_for(url: &str, needles: &[Vec<u8>]) -> Vec<(String, String)> {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<Vec<u8>>) =
            redis::cmd("SCAN").arg(cursor).arg("COUNT").arg(1000).query_async(&mut conn).await.unwrap();
        keys.extend(batch);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    assert!(!keys.is_empty(), "the scan sees the keys");
    let mut hits = Vec::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut conn).await.unwrap();
        let mut parts: Vec<(&str, Vec<u8>)> = vec![("name", key.clone())];
        match kind.as_str() {
            "string" => parts.push(("value", conn.get::<_, Option<Vec<u8>>>(&key).await.unwrap().unwrap_or_default())),
            "hash" => {
                let fields: Vec<Vec<u8>> = redis::cmd("HGETALL").arg(&key).query_async(&mut conn).await.unwrap();
                parts.extend(fields.into_iter().map(|f| ("hash field or value", f)));
            }
            "zset" => {
                let members: Vec<Vec<u8>> = redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                parts.extend(members.into_iter().map(|m| ("zset member", m)));
            }
            "set" => {
                let members: Vec<Vec<u8>> = conn.smembers(&key).await.unwrap();
                parts.extend(members.into_iter().map(|m| ("set member", m)));
            }
            "none" => continue, // expired or deleted meanwhile
            other => panic!("unexpected key type {other}"),
        }
        let dump: Option<Vec<u8>> = redis::cmd("DUMP").arg(&key).query_async(&mut conn).await.unwrap();
        parts.push(("DUMP", dump.unwrap_or_default()));
        for (what, bytes) in parts {
            if needles.iter().any(|n| bytes.windows(n.len()).any(|w| w == n.as_slice())) {
                hits.push((String::from_utf8_lossy(&key).into_owned(), what.to_owned()));
            }
        }
    }
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_holds_no_plaintext_and_no_token() {
    xems_testkit::logs::capture();
    let server = xems_redis::testing::RedisServer::start().expect("start redis-server");
    let clock = MockClock::starting_now();
    let store = common::builder(&server.url(), &Setup::standard(), &clock).connect().await.unwrap();
    let value = format!(r#"{{"note":"{MARKER}","log_marker":"{}","user":42}}"#, xems_testkit::logs::MARKER);
    let mut secrets: Vec<String> = Vec::new();

    // Sessions with subjects, rotated (a grace window stays open, so the
    // current token is stored sealed), grace hits, replays.
    for i in 0..20 {
        let subject = format!("{MARKER}-user-{i}");
        let c = store.create("active", value.as_bytes(), CreateOptions::new().with_subject(subject)).await.unwrap();
        let t0 = c.token.expose().to_owned();
        let r = store.resolve("active", &t0, ResolveOptions::rotating().with_grace(Duration::from_secs(30))).await;
        let t1 = r.unwrap().unwrap().token.unwrap().expose().to_owned();
        let g = store.resolve("active", &t0, ResolveOptions::rotating()).await.unwrap().unwrap();
        assert_eq!(g.token.as_ref().unwrap().expose(), t1);
        secrets.extend([t0, t1]);
    }
    // Caller keys (the XyPriss host's own 48-hex-digit tokens), written,
    // replaced, compare-and-set, rotated.
    for i in 0..10 {
        let key = format!("{MARKER}{i:031x}");
        let m = store.set("otp-pending", &key, value.as_bytes(), CreateOptions::new()).await.unwrap();
        store.set("otp-pending", &key, value.as_bytes(), CreateOptions::new()).await.unwrap();
        let UpdateOutcome::Updated(_) =
            store.update_if("otp-pending", &key, m.version + 1, value.as_bytes()).await.unwrap()
        else {
            panic!("update_if")
        };
        if i % 2 == 0 {
            let r = store.resolve("otp-pending", &key, ResolveOptions::rotating()).await.unwrap().unwrap();
            secrets.push(r.token.unwrap().expose().to_owned());
        }
        secrets.push(key);
    }
    // Migrations (the MFA step), with and without a new value.
    for i in 0..5 {
        let temp = store.create("otp-pending", value.as_bytes(), CreateOptions::new()).await.unwrap();
        let new_value = (i % 2 == 0).then(|| format!("{MARKER}-migrated"));
        let moved = store
            .migrate(
                "otp-pending",
                temp.token.expose(),
                "active",
                new_value.as_deref().map(str::as_bytes),
                CreateOptions::new(),
            )
            .await
            .unwrap()
            .unwrap();
        secrets.extend([temp.token.expose().to_owned(), moved.token.expose().to_owned()]);
    }

    let mut needles: Vec<Vec<u8>> = vec![MARKER.as_bytes().to_vec()];
    needles.extend(secrets.iter().map(|s| s.as_bytes().to_vec()));

    // Negative control first: the scan does find what is stored in clear.
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = conn.set("control:marker", format!("left in clear: {MARKER}")).await.unwrap();
    let _: () = conn.hset("control:token", "t", &secrets[0]).await.unwrap();
    let mut hits = scan_for(&server.url(), &needles).await;
    hits.sort();
    let control: Vec<_> = hits.iter().filter(|(k, _)| k.starts_with("control:")).cloned().collect();
    assert!(
        control.iter().any(|(k, w)| k == "control:marker" && w == "value"),
        "the scan finds a plain marker: {hits:?}"
    );
    assert!(control.iter().any(|(k, _)| k == "control:token"), "the scan finds a plain token: {hits:?}");

    // Then the store's own keys: zero hits.
    let leaks: Vec<_> = hits.into_iter().filter(|(k, _)| !k.starts_with("control:")).collect();
    assert!(leaks.is_empty(), "plaintext or raw tokens found in Redis: {leaks:?}");
}
