//! Network listeners: TCP and Unix sockets, a connection limit, and
//! graceful shutdown.

use std::fmt;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use xems_core::SessionStore;
use xems_protocol::{Response, encode_response};

use crate::conn::{ConnConfig, serve_connection};

/// Where to listen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    /// `tcp://host:port`.
    Tcp(String),
    /// `unix:///path/to.sock`.
    Unix(PathBuf),
}

impl ListenAddr {
    /// Parses `tcp://host:port` or `unix:///path`.
    ///
    /// # Errors
    ///
    /// Any other form, with the accepted ones in the message.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(rest) = s.strip_prefix("tcp://") {
            if rest.is_empty() || !rest.contains(':') {
                return Err(format!("listen address {s:?} needs a port, as in tcp://127.0.0.1:7379"));
            }
            Ok(ListenAddr::Tcp(rest.to_owned()))
        } else if let Some(rest) = s.strip_prefix("unix://") {
            if rest.is_empty() {
                return Err(format!("listen address {s:?} needs a path, as in unix:///run/xems/xems.sock"));
            }
            Ok(ListenAddr::Unix(PathBuf::from(rest)))
        } else {
            Err(format!("listen address {s:?} must start with tcp:// or unix://"))
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "tcp://{a}"),
            ListenAddr::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

/// Settings of `xems serve`.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Listeners.
    pub listen: Vec<ListenAddr>,
    /// Most connections open at once, over all listeners.
    pub max_connections: usize,
    /// How long in-flight connections get to finish on shutdown.
    pub shutdown_grace: Duration,
    /// Per-connection settings.
    pub conn: ConnConfig,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The listener.
        addr: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A path given for a Unix socket holds something else, or a live server.
    #[error("cannot listen on {addr}: {reason}")]
    SocketPath {
        /// The listener.
        addr: String,
        /// Why.
        reason: String,
    },
}

enum Bound {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

/// Binds every listener, serves until `shutdown` is cancelled, then stops
/// accepting, lets open connections finish what they have read (up to
/// `shutdown_grace`), removes the Unix socket files and returns.
///
/// # Errors
///
/// A listener could not be bound (nothing is served then).
pub async fn serve<S: SessionStore + Clone>(
    store: S,
    cfg: ServeConfig,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let mut bound = Vec::new();
    for addr in &cfg.listen {
        bound.push(bind(addr).await?);
    }
    let limit = Arc::new(Semaphore::new(cfg.max_connections));
    let tracker = TaskTracker::new();
    let mut sockets = Vec::new();
    for b in bound {
        let (store, conn, limit, shutdown, tracker2) =
            (store.clone(), cfg.conn.clone(), limit.clone(), shutdown.clone(), tracker.clone());
        match b {
            Bound::Tcp(l) => {
                tracker.spawn(accept_tcp(l, store, conn, limit, shutdown, tracker2));
            }
            Bound::Unix(l, path) => {
                sockets.push(path);
                tracker.spawn(accept_unix(l, store, conn, limit, shutdown, tracker2));
            }
        }
    }
    shutdown.cancelled().await;
    tracing::info!("shutting down: no new connections; finishing in-flight requests");
    tracker.close();
    if tokio::time::timeout(cfg.shutdown_grace, tracker.wait()).await.is_err() {
        tracing::warn!("some connections did not finish within {:?}", cfg.shutdown_grace);
    }
    for path in sockets {
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!(path = %path.display(), "cannot remove socket file: {e}");
        }
    }
    tracing::info!("stopped");
    Ok(())
}

async fn bind(addr: &ListenAddr) -> Result<Bound, ServeError> {
    match addr {
        ListenAddr::Tcp(a) => {
            let l = TcpListener::bind(a).await.map_err(|source| ServeError::Bind { addr: addr.to_string(), source })?;
            let local = l.local_addr().map_err(|source| ServeError::Bind { addr: addr.to_string(), source })?;
            tracing::info!(listener = %format!("tcp://{local}"), "listening");
            Ok(Bound::Tcp(l))
        }
        ListenAddr::Unix(path) => {
            remove_stale_socket(addr, path)?;
            let l = bind_private_unix(path).map_err(|source| ServeError::Bind { addr: addr.to_string(), source })?;
            tracing::info!(listener = %addr, "listening");
            Ok(Bound::Unix(l, path.clone()))
        }
    }
}

/// Removes a socket file left by a dead server; refuses to touch anything
/// that is not a socket, or a socket a live server still answers on.
fn remove_stale_socket(addr: &ListenAddr, path: &Path) -> Result<(), ServeError> {
    let err = |reason: String| ServeError::SocketPath { addr: addr.to_string(), reason };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(err(e.to_string())),
    };
    if !meta.file_type().is_socket() {
        return Err(err("the path exists and is not a socket; refusing to remove it".into()));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(err("another server is listening on this socket".into())),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "removing stale socket file");
            std::fs::remove_file(path).map_err(|e| err(format!("cannot remove stale socket: {e}")))
        }
        Err(e) => Err(err(format!("cannot check the existing socket: {e}"))),
    }
}

/// Binds a Unix socket that only its owner can connect to: the umask is
/// tightened around `bind` so the file never exists with wider permissions.
fn bind_private_unix(path: &Path) -> io::Result<UnixListener> {
    use rustix::fs::Mode;
    let old = rustix::process::umask(Mode::from_raw_mode(0o177));
    let result = UnixListener::bind(path);
    rustix::process::umask(old);
    let l = result?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

async fn refuse_full<W: tokio::io::AsyncWrite + Unpin>(mut w: W) {
    let mut out = Vec::new();
    encode_response(&Response::error("too_many_connections", "too many connections; try again later"), &mut out);
    let _ = tokio::time::timeout(Duration::from_secs(1), w.write_all(&out)).await;
    let _ = w.shutdown().await;
}

async fn accept_tcp<S: SessionStore + Clone>(
    l: TcpListener,
    store: S,
    conn: ConnConfig,
    limit: Arc<Semaphore>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            r = l.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection refused: limit reached");
            tracker.spawn(refuse_full(stream));
            continue;
        };
        let (store, conn, shutdown) = (store.clone(), conn.clone(), shutdown.clone());
        tracker.spawn(async move {
            tracing::debug!(%peer, "connection opened");
            let (r, w) = stream.into_split();
            if let Err(e) = serve_connection(&store, &conn, true, r, w, shutdown).await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
            drop(permit);
        });
    }
}

async fn accept_unix<S: SessionStore + Clone>(
    l: UnixListener,
    store: S,
    conn: ConnConfig,
    limit: Arc<Semaphore>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => return,
            r = l.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!("unix connection refused: limit reached");
            tracker.spawn(refuse_full(stream));
            continue;
        };
        let (store, conn, shutdown) = (store.clone(), conn.clone(), shutdown.clone());
        tracker.spawn(async move {
            let (r, w) = stream.into_split();
            // The socket is mode 0600: only its owner can connect, so auth is
            // optional here (a client may still send it).
            if let Err(e) = serve_connection(&store, &conn, false, r, w, shutdown).await {
                tracing::debug!("unix connection ended: {e}");
            }
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        xems_testkit::logs::capture();
        assert_eq!(ListenAddr::parse("tcp://127.0.0.1:7379").unwrap(), ListenAddr::Tcp("127.0.0.1:7379".into()));
        assert_eq!(ListenAddr::parse("unix:///tmp/x.sock").unwrap(), ListenAddr::Unix("/tmp/x.sock".into()));
        assert!(ListenAddr::parse("127.0.0.1:7379").unwrap_err().contains("tcp://"));
        assert!(ListenAddr::parse("tcp://localhost").is_err());
        assert!(ListenAddr::parse("unix://").is_err());
    }
}
