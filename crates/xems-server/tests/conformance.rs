//! The xems conformance suite, unchanged, against a real `xems serve`
//! process through `xems-client`. The server runs with the hidden
//! `--unsafe-test-clock` flag so the suite can move its clock and sweep it.

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use xems_client::Client;
use xems_testkit::{Backend, Harness, Setup};

struct ServerBackend;

struct ServerHarness {
    client: Client,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for ServerHarness {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Harness for ServerHarness {
    type Store = Client;

    fn store(&self) -> &Client {
        &self.client
    }

    async fn advance(&self, by: Duration) {
        self.client.debug_advance_clock(by).await.expect("debug_advance_clock");
    }

    async fn sweep(&self) {
        self.client.debug_sweep().await.expect("debug_sweep");
    }
}

impl Backend for ServerBackend {
    type Harness = ServerHarness;

    async fn start(setup: Setup) -> ServerHarness {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("xems.sock");
        let mut args = vec![
            "--unsafe-test-clock".to_owned(),
            "--listen".to_owned(),
            format!("unix://{}", sock.display()),
            "--reuse-policy".to_owned(),
            if setup.revoke_on_reuse { "revoke-session" } else { "refuse-token" }.to_owned(),
        ];
        for s in &setup.sandboxes {
            args.push("--sandbox-limit".to_owned());
            args.push(format!(
                "{}:max_records={},max_value_bytes={},policy={}",
                s.name,
                s.max_records,
                s.max_value_bytes,
                if s.evict_soonest { "evict-soonest-expiring" } else { "refuse" }
            ));
        }
        let child = common::spawn_serve(|c| c.args(&args));
        let url = format!("unix://{}", sock.display());
        let start = Instant::now();
        let client = loop {
            match Client::builder(&url).pool_size(4).connect().await {
                Ok(c) => break c,
                Err(e) if start.elapsed() < Duration::from_secs(20) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("xems serve did not come up: {e}"),
            }
        };
        ServerHarness { client, child, _dir: dir }
    }
}

xems_testkit::conformance_suite!(ServerBackend);
