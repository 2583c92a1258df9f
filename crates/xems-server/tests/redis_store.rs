//! `xems serve --store redis://...` for real: two `xems serve` processes on
//! one `redis-server` (started here; `apt-get install redis-server`, which
//! scripts/test.sh does), driven through `xems-client` over their Unix
//! sockets. A session created through one server resolves, rotates, updates
//! and is deleted through the other; the Cluster form starts too; and the
//! combinations the configuration refuses exit with a clear message.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use xems_client::Client;
use xems_core::{CreateOptions, ResolveOptions, ResolveOutcome, SessionStore, UpdateOutcome};
use xems_redis::testing::{RedisCluster, RedisServer};

const SECRET: &str = xems_testkit::secrets::SERVER_REDIS;

/// A running `xems serve`, killed on drop.
struct Serve {
    child: Child,
    client: Client,
    _dir: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve(store_url: &str) -> Serve {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("xems.sock");
    let mut child = common::spawn_serve(|c| {
        c.args(["--store", store_url, "--listen"]).arg(format!("unix://{}", sock.display())).env("XEMS_SECRET", SECRET)
    });
    let url = format!("unix://{}", sock.display());
    let start = Instant::now();
    let client = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("xems serve --store {store_url} exited at start: {status}");
        }
        match Client::builder(&url).pool_size(2).connect().await {
            Ok(c) => break c,
            Err(_) if start.elapsed() < Duration::from_secs(20) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => panic!("xems serve --store {store_url} did not come up: {e}"),
        }
    };
    Serve { child, client, _dir: dir }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_sessions_through_one_redis() {
    let redis = RedisServer::start().expect("redis-server (apt-get install redis-server)");
    let a = serve(&redis.url()).await;
    let b = serve(&redis.url()).await;

    let value = xems_testkit::logs::marked("marker-value");
    let created = a.client.create("web", value.as_bytes(), CreateOptions::new().with_subject("u1")).await.unwrap();
    let r = b.client.resolve("web", created.token.expose(), ResolveOptions::rotating()).await.unwrap().unwrap();
    assert_eq!(r.outcome, ResolveOutcome::Rotated);
    assert_eq!(r.value.as_bytes(), value.as_bytes());
    let next = r.token.expect("rotated");
    // The old token is in its grace window on the other server too, and
    // leads to the same successor.
    let g = a.client.resolve("web", created.token.expose(), ResolveOptions::rotating()).await.unwrap().unwrap();
    assert_eq!(g.outcome, ResolveOutcome::Grace);
    assert_eq!(g.token.unwrap().expose(), next.expose());

    let v = r.meta.version;
    assert!(matches!(a.client.update_if("web", next.expose(), v, b"second").await.unwrap(), UpdateOutcome::Updated(_)));
    let r = b.client.resolve("web", next.expose(), ResolveOptions::new()).await.unwrap().unwrap();
    assert_eq!(r.value.as_bytes(), b"second");
    assert_eq!(b.client.list_subject("web", "u1").await.unwrap().len(), 1);

    // Caller keys work through the server as well.
    a.client.set("otp", "user:1", b"123456", CreateOptions::new()).await.unwrap();
    assert!(b.client.exists("otp", "user:1").await.unwrap());

    assert!(b.client.del("web", next.expose()).await.unwrap());
    assert!(a.client.resolve("web", next.expose(), ResolveOptions::new()).await.unwrap().is_none());
    // Nothing readable went to Redis: the value is sealed.
    let keys: Vec<String> = redis::from_redis_value(redis.query(redis::cmd("KEYS").arg("*")).unwrap()).unwrap();
    assert!(!keys.is_empty());
    for k in keys {
        let dump = redis.query(redis::cmd("DUMP").arg(&k)).unwrap();
        let bytes: Vec<u8> = redis::from_redis_value(dump).unwrap_or_default();
        assert!(!bytes.windows(6).any(|w| w == b"marker"), "plaintext in {k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_a_cluster() {
    let cluster = RedisCluster::start(3).expect("a 3-master redis cluster (apt-get install redis-server)");
    let url = cluster.url();
    assert!(url.starts_with("redis+cluster://"), "{url}");
    let s = serve(&url).await;
    let mut tokens = Vec::new();
    for i in 0..16u8 {
        tokens.push(s.client.create("web", &[i; 8], CreateOptions::new()).await.unwrap().token);
    }
    for (i, t) in tokens.iter().enumerate() {
        let r = s.client.resolve("web", t.expose(), ResolveOptions::rotating()).await.unwrap().unwrap();
        assert_eq!(r.value.as_bytes(), &[i as u8; 8]);
        assert_eq!(r.outcome, ResolveOutcome::Rotated);
    }
}

#[test]
fn refused_combinations_exit_2_with_a_message() {
    let run = |args: &[&str], secret: bool| {
        let mut cmd = Command::new(common::BIN);
        cmd.args(args).env_remove("XEMS_SECRET").env_remove("XEMS_SECRET_FILE").stdin(Stdio::null());
        if secret {
            cmd.env("XEMS_SECRET", SECRET);
        }
        let out = xems_testkit::logs::output(&mut cmd, "xems").expect("run xems");
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let listen = "unix:///tmp/xems-redis-store-never-bound.sock";
    let (code, err) = run(&["serve", "--listen", listen, "--store", "redis://127.0.0.1:1"], false);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("needs the master secret"), "{err}");
    let (code, err) =
        run(&["serve", "--listen", listen, "--store", "redis://127.0.0.1:1", "--persist", "/tmp/v"], true);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("drop --persist"), "{err}");
    let password = xems_testkit::secrets::REDIS_PASSWORD;
    let (code, err) =
        run(&["serve", "--listen", listen, "--store", &format!("redis://u:{password}@127.0.0.1:1")], true);
    assert_eq!(code, Some(2), "an unreachable Redis fails at start: {err}");
    assert!(err.contains("--store redis://<redacted>@127.0.0.1:1") && !err.contains(password), "{err}");
}
