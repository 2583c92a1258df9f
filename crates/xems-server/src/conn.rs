//! One connection (or the stdio pipe): split lines, answer each in order,
//! write the answers in batches.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use smallvec::SmallVec;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use xems_core::SessionStore;
use xems_protocol::{
    Command, DecodeError, Frame, LineBuffer, Request, RequestError, Response, decode_request, encode_response,
};
use zeroize::{Zeroize, Zeroizing};

use crate::handler::{handle, write};

/// What every connection of a server shares.
#[derive(Clone)]
pub struct ConnConfig {
    /// The longest accepted line.
    pub max_line: usize,
    /// The shared token of the `auth` handshake, if one is configured.
    pub auth_token: Option<Arc<Zeroizing<Vec<u8>>>>,
    /// How long a connection that must authenticate may take to do so
    /// before it is closed (so idle unauthenticated sockets cannot hold
    /// connection slots).
    pub auth_timeout: Duration,
    /// The hooks behind `debug_advance_clock` and `debug_sweep` (servers
    /// started with `--unsafe-test-clock` only).
    pub test_hooks: Option<Arc<dyn TestHooks>>,
}

/// What the test-only actions do: move the store's mock clock, and reclaim
/// expired records now.
pub trait TestHooks: Send + Sync + 'static {
    /// Moves the store's clock forward.
    fn advance(&self, by: Duration);
    /// Reclaims expired records; returns how many.
    fn sweep(&self) -> usize;
}

impl std::fmt::Debug for ConnConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnConfig")
            .field("max_line", &self.max_line)
            .field("auth_timeout", &self.auth_timeout)
            .field("auth_token", &self.auth_token.as_ref().map(|_| "<redacted>"))
            .field("test_hooks", &self.test_hooks.is_some())
            .finish()
    }
}

/// Per-connection state.
struct Session<'a, S> {
    store: &'a S,
    cfg: &'a ConnConfig,
    authenticated: bool,
    /// Set after a failed `auth`: answer, then hang up.
    close: bool,
}

/// A line of a batch, decoded: a request to run (borrowing its text from
/// the line), or the answer already known (a line that is too long or not
/// a valid request).
enum Pending<'a> {
    Request(Request<'a>),
    Answered(Response),
}

/// The room made for each read: many pipelined lines. Half the 64 KiB the
/// line buffer shrinks back to after an over-long line, so a buffer of that
/// size serves every read without growing (with a partial line up to 32 KiB
/// pending).
const READ_SIZE: usize = 32 * 1024;

/// Lines decoded, hinted to the store and answered together (see
/// [`serve_connection`]): enough to overlap the store's memory misses, few
/// enough that what is fetched for the first is still cached when the last
/// runs.
const WINDOW: usize = 32;

impl<S: SessionStore> Session<'_, S> {
    fn decode<'a>(&self, frame: Frame<'a>) -> Pending<'a> {
        match frame {
            Frame::TooLong { len } => {
                tracing::warn!(len, max = self.cfg.max_line, "line too long");
                Pending::Answered(
                    RequestError::from(DecodeError::LineTooLong { len, max: self.cfg.max_line }).to_response(),
                )
            }
            Frame::Line(line) => match decode_request(line) {
                Ok(req) => Pending::Request(req),
                Err(e) => {
                    tracing::debug!(code = e.kind.code(), "bad request line ({} bytes)", line.len());
                    Pending::Answered(e.to_response())
                }
            },
        }
    }

    /// Tells the store which records the requests of `batch` address, so it
    /// can start loading them all before the first is answered (a lone
    /// request's, while the other connections read theirs: see
    /// [`serve_connection`]). Not before authentication: an unauthenticated
    /// client makes the store do nothing. Returns whether it hinted any
    /// address (`auth`, `ping` and `stats` have none).
    fn hint(&self, batch: &[Pending<'_>]) -> bool {
        if !self.authenticated {
            return false;
        }
        let addresses: SmallVec<[(&str, &str); WINDOW]> = batch
            .iter()
            .filter_map(|p| match p {
                Pending::Request(req) => req.command.address(),
                Pending::Answered(_) => None,
            })
            .collect();
        if addresses.is_empty() {
            return false;
        }
        self.store.prefetch(&addresses);
        true
    }

    /// Appends the answer to one line to `out`. The line stays in the batch
    /// (borrowed, not moved through the nested futures) until the batch is
    /// done.
    async fn answer(&mut self, pending: &mut Pending<'_>, out: &mut Vec<u8>) {
        let req = match pending {
            Pending::Answered(resp) => return write(std::mem::take(resp), out),
            Pending::Request(req) => req,
        };
        if let Some(resp) = self.connection_answer(req) {
            return write(resp, out);
        }
        handle(self.store, req, out).await;
    }

    /// The answer to a request the connection answers itself (`auth`, any
    /// request before it, the test hooks), if it is one.
    fn connection_answer(&mut self, req: &mut Request<'_>) -> Option<Response> {
        match &req.command {
            Command::Auth { token } => {
                let id = req.id.take();
                return Some(match &self.cfg.auth_token {
                    None => Response::ok().with_id(id),
                    Some(expected) if bool::from(expected.as_slice().ct_eq(token.expose().as_bytes())) => {
                        self.authenticated = true;
                        Response::ok().with_id(id)
                    }
                    Some(_) => {
                        tracing::warn!("auth failed: wrong token; closing the connection");
                        self.close = true;
                        Response::error("unauthorized", "wrong auth token").with_id(id)
                    }
                });
            }
            _ if !self.authenticated => {
                return Some(
                    Response::error("unauthorized", "authenticate first: send {\"action\":\"auth\",\"token\":\"...\"}")
                        .with_id(req.id.take()),
                );
            }
            Command::DebugAdvanceClock { by } => {
                if let Some(hooks) = &self.cfg.test_hooks {
                    hooks.advance(*by);
                    return Some(Response::ok().with_id(req.id.take()));
                }
            }
            Command::DebugSweep => {
                if let Some(hooks) = &self.cfg.test_hooks {
                    let n = hooks.sweep();
                    tracing::debug!(swept = n, "debug_sweep");
                    return Some(Response::ok().with_id(req.id.take()));
                }
            }
            _ => {}
        }
        None
    }
}

/// Serves one connection until end of input, a failed `auth`, an I/O error
/// or `shutdown`. Lines are answered one by one in order (so a pipelined
/// `set` then `get` sees its own write); the answers to everything read in
/// one go are written and flushed together. Pipelined lines are decoded a
/// window at a time and their addresses hinted to the store first
/// ([`SessionStore::prefetch`]), so the cache misses of their lookups
/// overlap. A lone request (a client waiting for each answer) is hinted and
/// then answered only after the other ready connections have read and
/// hinted theirs, so its misses overlap their work instead.
///
/// # Errors
///
/// Reading or writing failed.
pub async fn serve_connection<S, R, W>(
    store: &S,
    cfg: &ConnConfig,
    require_auth: bool,
    mut reader: R,
    mut writer: W,
    shutdown: CancellationToken,
) -> io::Result<()>
where
    S: SessionStore,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut session = Session { store, cfg, authenticated: !(require_auth && cfg.auth_token.is_some()), close: false };
    // Request lines and answers hold tokens and values in plaintext: every
    // buffer is wiped after use (the used part, so the cost follows the
    // traffic) and in full when the connection ends, so freed memory keeps
    // no copies. `LineBuffer` wipes its own.
    // Input is read straight into the line buffer's spare capacity
    // (`LineBuffer::input`), never zero-filled up front: a new connection
    // does not write 64 KiB it may never use, and an idle one holds only
    // the pages its traffic touched.
    let mut lines = LineBuffer::new(cfg.max_line);
    let mut out = Zeroizing::new(Vec::with_capacity(64 * 1024));
    let auth_deadline = tokio::time::sleep(cfg.auth_timeout);
    tokio::pin!(auth_deadline);
    // One wait for shutdown for the whole connection: a new one per read
    // joined (and on drop left) the token's waiter list every time.
    let shutdown = shutdown.cancelled();
    tokio::pin!(shutdown);
    loop {
        let n = tokio::select! {
            biased;
            () = &mut shutdown => break,
            () = &mut auth_deadline, if !session.authenticated => {
                tracing::info!("closing a connection that did not authenticate in time");
                wipe(&mut out);
                encode_response(&Response::error("unauthorized", "no auth within the time limit; closing"), &mut out);
                writer.write_all(&out).await?;
                writer.flush().await?;
                break;
            }
            r = reader.read_buf(lines.input(READ_SIZE)) => r?,
        };
        if n == 0 {
            // End of input: answer an unterminated last line too, so no
            // request is silently dropped.
            if let Some(frame) = lines.finish() {
                let mut pending = session.decode(frame);
                session.answer(&mut pending, &mut out).await;
            }
            writer.write_all(&out).await?;
            writer.flush().await?;
            break;
        }
        // Whether this read's one yield to the other connections was taken
        // before answering (a lone request) rather than before writing.
        let mut yielded = false;
        // The requests borrow their text from the lines, until the lines
        // are dropped (and wiped) at the next read.
        let mut frames = lines.frames();
        // A lone request (a client waiting for each answer) is held in
        // place; a pipelined batch gets room for a window at its second
        // line, freed when the read is done, so an idle connection holds
        // none (a window in place made every connection ~4 KiB larger).
        let mut batch: SmallVec<[Pending<'_>; 1]> = SmallVec::new();
        while !session.close {
            while batch.len() < WINDOW
                && let Some(frame) = frames.next()
            {
                if batch.len() == 1 {
                    batch.reserve_exact(WINDOW - 1);
                }
                batch.push(session.decode(frame));
            }
            if batch.is_empty() {
                break;
            }
            let hinted = session.hint(&batch);
            if hinted && batch.len() == 1 && !yielded {
                // A lone request's record, hinted above, is fetched while
                // the other ready connections read and hint theirs (the
                // store moves each hinted fetch a step on per hint); then
                // it is answered from the cache (a request with nothing
                // to fetch, as `auth` or `ping`, does not wait). The yield
                // before the write below is not needed then: this
                // connection already let the others go first in this round.
                tokio::task::yield_now().await;
                yielded = true;
            }
            for pending in &mut batch {
                if session.close {
                    // A failed `auth`: nothing after it is answered (the
                    // rest of the batch is dropped, its secrets wiped).
                    break;
                }
                session.answer(pending, &mut out).await;
                if out.len() >= 1024 * 1024 {
                    writer.write_all(&out).await?;
                    wipe(&mut out);
                }
            }
            batch.clear();
        }
        if !out.is_empty() {
            // Let every other ready connection answer its batch first, so
            // the writes of one scheduler round go out together (as Redis
            // writes all replies before it sleeps). A client woken by the
            // first then finds the others already queued; writing each
            // batch at once woke it once per batch, and on loopback that
            // wakeup runs inside our send: -12 to -18% CPU per request at
            // pipeline depth 16 in the server bench, unchanged at depth 1.
            if !yielded {
                tokio::task::yield_now().await;
            }
            writer.write_all(&out).await?;
            wipe(&mut out);
        }
        crate::harden::scrub_after_batch();
        writer.flush().await?;
        if session.close {
            break;
        }
    }
    Ok(())
}

/// Empties a buffer that held plaintext, zeroing the bytes it held (not its
/// whole capacity: the cost follows the traffic).
fn wipe(buf: &mut Vec<u8>) {
    buf.as_mut_slice().zeroize();
    buf.clear();
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncBufReadExt, BufReader};
    use xems_engine::Engine;

    use super::*;

    fn cfg(timeout: Duration) -> ConnConfig {
        ConnConfig {
            max_line: 1024,
            auth_token: Some(Arc::new(Zeroizing::new(b"0123456789abcdef".to_vec()))),
            auth_timeout: timeout,
            test_hooks: None,
        }
    }

    #[tokio::test]
    async fn unauthenticated_connections_are_closed_after_the_timeout() {
        xems_testkit::logs::capture();
        let (client, server) = tokio::io::duplex(4096);
        let (sr, sw) = tokio::io::split(server);
        let task = tokio::spawn(async move {
            let cfg = cfg(Duration::from_millis(50));
            serve_connection(&Engine::new(), &cfg, true, sr, sw, CancellationToken::new()).await
        });
        let mut lines = BufReader::new(client).lines();
        let line = lines.next_line().await.unwrap().unwrap();
        assert!(line.contains("\"code\":\"unauthorized\"") && line.contains("time limit"), "{line}");
        assert!(lines.next_line().await.unwrap().is_none(), "then the connection closes");
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn authenticated_connections_have_no_deadline() {
        xems_testkit::logs::capture();
        let (client, server) = tokio::io::duplex(4096);
        let (sr, sw) = tokio::io::split(server);
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            let cfg = cfg(Duration::from_millis(50));
            serve_connection(&Engine::new(), &cfg, true, sr, sw, shutdown).await
        });
        let (cr, mut cw) = tokio::io::split(client);
        cw.write_all(b"{\"action\":\"auth\",\"token\":\"0123456789abcdef\"}\n").await.unwrap();
        let mut lines = BufReader::new(cr).lines();
        assert_eq!(lines.next_line().await.unwrap().unwrap(), "{\"status\":\"ok\"}");
        tokio::time::sleep(Duration::from_millis(120)).await;
        cw.write_all(b"{\"action\":\"ping\"}\n").await.unwrap();
        assert_eq!(lines.next_line().await.unwrap().unwrap(), "{\"status\":\"ok\",\"data\":\"pong\"}");
        stop.cancel();
        task.await.unwrap().unwrap();
    }
}
