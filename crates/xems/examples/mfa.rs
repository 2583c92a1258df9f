//! The MFA flow of the XyPriss XEMS tutorial, end to end, against the
//! embedded store:
//!
//! password ok -> temporary session in `otp-pending` -> resolve with rotation
//! -> OTP ok -> atomic migration to `active` -> a dashboard's concurrent
//! bursts with rotation on every request -> "log out everywhere else" ->
//! logout.
//!
//! Run it with `cargo run --release --example mfa`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use xems::{CreateOptions, Engine, ResolveOptions, ResolveOutcome, SessionStore, Token};

/// Tokens are credentials: the demo shows only their first characters.
fn short(t: &Token) -> String {
    format!("{}…", &t.expose()[..8])
}

fn step(n: u32, title: &str) {
    println!("\n[{n}] {title}");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = Engine::new();
    println!("xems MFA walkthrough (embedded engine, ephemeral key)");

    step(1, "password accepted: temporary session in sandbox `otp-pending` (TTL 2m)");
    let pending = store
        .create(
            "otp-pending",
            br#"{"email":"user@example.com","mfa_verified":false}"#,
            CreateOptions::new().with_ttl(Duration::from_secs(120)),
        )
        .await?;
    println!("    temp token {}  ttl {}", short(&pending.token), xems::format_duration(pending.meta.ttl));

    step(2, "resolve the temporary session with rotation (grace 2 s)");
    let grace = ResolveOptions::rotating().with_grace(Duration::from_secs(2));
    let r = store.resolve("otp-pending", pending.token.expose(), grace).await?.ok_or("temporary session missing")?;
    let rotated = r.token.clone().ok_or("rotation returned no token")?;
    println!("    data {}", r.value.as_str()?);
    println!("    rotated: {} -> {}", short(&pending.token), short(&rotated));
    let again = store.resolve("otp-pending", pending.token.expose(), grace).await?.ok_or("grace hit failed")?;
    assert_eq!(again.outcome, ResolveOutcome::Grace);
    assert_eq!(again.token.as_ref(), Some(&rotated));
    println!("    a concurrent request with the old token, within grace: accepted, told to use {}", short(&rotated));

    step(3, "OTP accepted: migrate atomically to sandbox `active` (xLink)");
    let session = store
        .migrate(
            "otp-pending",
            rotated.expose(),
            "active",
            Some(br#"{"userId":42,"email":"user@example.com","role":"admin"}"#),
            CreateOptions::new().with_subject("user-42"),
        )
        .await?
        .ok_or("migration found no session")?;
    println!("    active token {}  session id {}", short(&session.token), session.meta.id);
    let dead = store.resolve("otp-pending", rotated.expose(), ResolveOptions::new()).await?;
    assert!(dead.is_none());
    println!("    the temporary token is dead at once: {}", if dead.is_none() { "yes" } else { "NO" });

    step(4, "dashboard: 20 bursts of 12 concurrent requests, rotating on every request");
    let store = Arc::new(store);
    let mut cookie = session.token.expose().to_owned();
    let (mut ok, mut failed, mut rotations) = (0, 0, 0);
    let started = Instant::now();
    for _ in 0..20 {
        let tasks: Vec<_> = (0..12)
            .map(|_| {
                let (store, token) = (store.clone(), cookie.clone());
                tokio::spawn(async move { store.resolve("active", &token, ResolveOptions::rotating()).await })
            })
            .collect();
        for task in tasks {
            match task.await? {
                Ok(Some(r)) => {
                    ok += 1;
                    if r.outcome == ResolveOutcome::Rotated {
                        rotations += 1;
                    }
                    if let Some(t) = r.token {
                        cookie = t.expose().to_owned();
                    }
                }
                _ => failed += 1,
            }
        }
    }
    println!(
        "    {ok} requests answered, {failed} failed, {rotations} rotations (one per burst), {:.1} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(failed, 0);

    step(5, "a second device logs in; \"log out everywhere else\" from the first");
    let other = store.create("active", br#"{"userId":42}"#, CreateOptions::new().with_subject("user-42")).await?;
    let listed = store.list_subject("active", "user-42").await?;
    println!("    sessions of user-42: {}", listed.iter().map(|m| m.id.to_string()).collect::<Vec<_>>().join(", "));
    let revoked = store.revoke_subject("active", "user-42", Some(&cookie)).await?;
    println!(
        "    revoked {revoked}; the other device's token now resolves: {}",
        store.exists("active", other.token.expose()).await?
    );

    step(6, "logout (xUnlink)");
    let deleted = store.del("active", &cookie).await?;
    let after = store.resolve("active", &cookie, ResolveOptions::new()).await?;
    println!("    deleted: {deleted}; the token resolves afterwards: {}", after.is_some());
    assert!(after.is_none());

    let stats = store.stats().await?;
    let c = stats.counters;
    println!(
        "\ncounters: created {} resolved {} rotated {} grace hits {} migrated {} deleted {} reuse detected {}",
        c.created, c.resolved, c.rotated, c.grace_hits, c.migrated, c.deleted, c.reuse_detected
    );
    println!("MFA flow complete.");
    Ok(())
}
