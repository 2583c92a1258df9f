//! `xems-portal`: the MFA demo of xems as a web application.
//!
//! ```text
//! xems-portal [--listen 127.0.0.1:8080]
//!             [--store memory | xems://HOST:PORT | unix://PATH | redis://HOST:PORT | redis+cluster://H1:P1,H2:P2]
//!             [--auth-token-file FILE] [--secret-file FILE] [--insecure-cookies]
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use xems_core::DynSessionStore;
use xems_portal::PortalOptions;

/// The xems MFA portal: password, TOTP, rotating sessions, a concurrent
/// dashboard, "your sessions", logout.
#[derive(Debug, Parser)]
#[command(name = "xems-portal", version)]
struct Cli {
    /// Address to serve on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// Where sessions live: `memory` (the embedded engine), an `xems serve`
    /// server at `xems://HOST:PORT` or `unix://PATH`, or Redis / Valkey at
    /// `redis://HOST:PORT` or `redis+cluster://HOST1:PORT1,HOST2:PORT2`.
    #[arg(long, default_value = "memory")]
    store: String,

    /// File holding the 32-byte master secret, for a Redis store (else the
    /// XEMS_SECRET environment variable). Every portal sharing one Redis
    /// needs the same secret.
    #[arg(long, env = "XEMS_SECRET_FILE")]
    secret_file: Option<PathBuf>,

    /// File holding the shared auth token of the `xems serve` server (else
    /// the XEMS_AUTH_TOKEN environment variable is used, if set).
    #[arg(long, env = "XEMS_AUTH_TOKEN_FILE")]
    auth_token_file: Option<PathBuf>,

    /// Send the session cookie without `Secure` (named `xems_token` instead
    /// of `__Host-xems_token`), for a browser that refuses secure cookies
    /// from plain http:// even on localhost. Chromium and Firefox accept
    /// them on 127.0.0.1 and localhost; never use this on a public address.
    #[arg(long)]
    insecure_cookies: bool,
}

/// The store URL without a password, for logs and the page footer (the
/// same redaction as the Redis store's own messages).
fn redact(url: &str) -> String {
    xems_redis::redact_url(url)
}

async fn open_store(cli: &Cli) -> Result<Arc<dyn DynSessionStore>, String> {
    if cli.store == "memory" {
        return Ok(Arc::new(xems_engine::Engine::new()));
    }
    if xems_redis::is_store_url(&cli.store) {
        let secret = match &cli.secret_file {
            Some(path) => xems_core::MasterSecret::from_file(path).map_err(|e| format!("--secret-file: {e}"))?,
            None => {
                let text = zeroize::Zeroizing::new(std::env::var("XEMS_SECRET").map_err(|_| {
                    "a Redis store needs the master secret: --secret-file FILE or XEMS_SECRET".to_owned()
                })?);
                xems_core::MasterSecret::parse(&text).map_err(|e| format!("XEMS_SECRET: {e}"))?
            }
        };
        let store = xems_redis::RedisStore::connect(&cli.store, secret).await.map_err(|e| format!("--store: {e}"))?;
        return Ok(Arc::new(store));
    }
    if !(cli.store.starts_with("xems://") || cli.store.starts_with("unix://") || cli.store.starts_with("tcp://")) {
        return Err(format!(
            "--store {:?}: expected memory, xems://HOST:PORT, unix://PATH, redis://HOST:PORT or redis+cluster://...",
            redact(&cli.store)
        ));
    }
    let mut builder = xems_client::Client::builder(cli.store.clone());
    let token = match &cli.auth_token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("--auth-token-file {}: {e}", path.display()))?
                .trim()
                .to_owned(),
        ),
        None => std::env::var("XEMS_AUTH_TOKEN").ok(),
    };
    if let Some(token) = token {
        builder = builder.auth_token(token);
    }
    let client = builder.connect().await.map_err(|e| format!("--store {}: {e}", redact(&cli.store)))?;
    Ok(Arc::new(client))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,xems::audit=warn")),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log file or collector gets plain lines.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    if cli.insecure_cookies && !cli.listen.ip().is_loopback() {
        tracing::warn!(
            target: "xems::portal",
            "--insecure-cookies on a non-loopback address: session cookies travel in clear over plain HTTP"
        );
    }
    let store = match open_store(&cli).await {
        Ok(store) => store,
        Err(e) => {
            eprintln!("xems-portal: {e}");
            return ExitCode::from(2);
        }
    };
    let label = redact(&cli.store);
    let options = PortalOptions::new().with_insecure_cookies(cli.insecure_cookies).with_store_label(label.clone());
    let app = match xems_portal::app(store, options) {
        Ok(app) => app,
        Err(e) => {
            eprintln!("xems-portal: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(cli.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("xems-portal: cannot listen on {}: {e}", cli.listen);
            return ExitCode::from(1);
        }
    };
    let addr = listener.local_addr().map_or(cli.listen, |a| a);
    // The tests read this line to find the port.
    println!("xems-portal listening on http://{addr} (store: {label})");
    let shutdown = async {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("a SIGTERM handler can be installed");
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!(target: "xems::portal", "shutting down");
    };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
        eprintln!("xems-portal: {e}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    #[test]
    fn store_urls_are_shown_without_passwords() {
        xems_testkit::logs::capture();
        assert_eq!(super::redact("redis://user:hunter2@10.0.0.1:6379"), "redis://<redacted>@10.0.0.1:6379");
        assert_eq!(super::redact("redis+cluster://:pw@a:1,b:2"), "redis+cluster://<redacted>@a:1,b:2");
        assert_eq!(super::redact("xems://127.0.0.1:7379"), "xems://127.0.0.1:7379");
        assert_eq!(super::redact("memory"), "memory");
    }
}
