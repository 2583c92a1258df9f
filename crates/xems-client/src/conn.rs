//! One pipelined connection: a writer task that batches queued requests and
//! a reader task that hands each response line to the oldest waiting
//! request (the server answers in request order).

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use xems_core::Error;
use xems_protocol::{Frame, LineBuffer, Response};

/// The longest response line accepted (a 10 MiB value in base64, and then
/// some).
const MAX_RESPONSE_LINE: usize = 64 * 1024 * 1024;

pub(crate) type Reply = oneshot::Sender<Result<Response, Error>>;

struct Job {
    line: Vec<u8>,
    reply: Reply,
}

struct Shared {
    /// Waiting requests, oldest first. Pushed before the bytes are written,
    /// so a response can never arrive before its waiter.
    pending: Mutex<VecDeque<Reply>>,
    dead: AtomicBool,
}

impl Shared {
    fn fail_all(&self, why: &str) {
        let mut pending = self.pending.lock();
        self.dead.store(true, Ordering::SeqCst);
        for reply in pending.drain(..) {
            let _ = reply.send(Err(unavailable(why)));
        }
    }
}

pub(crate) fn unavailable(why: &str) -> Error {
    Error::unavailable(io::Error::new(io::ErrorKind::ConnectionAborted, why.to_owned()))
}

/// A handle on a live connection; cheap to clone.
#[derive(Clone)]
pub(crate) struct Conn {
    tx: mpsc::UnboundedSender<Job>,
    shared: Arc<Shared>,
}

impl Conn {
    /// Starts the reader and writer tasks on a connected stream.
    pub(crate) fn start<R, W>(reader: R, writer: W) -> Conn
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let shared = Arc::new(Shared { pending: Mutex::new(VecDeque::new()), dead: AtomicBool::new(false) });
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(writer, rx, shared.clone()));
        tokio::spawn(read_loop(reader, shared.clone()));
        Conn { tx, shared }
    }

    /// Whether the connection is still usable.
    pub(crate) fn is_alive(&self) -> bool {
        !self.shared.dead.load(Ordering::SeqCst) && !self.tx.is_closed()
    }

    /// Queues one encoded request line (with its newline); the receiver
    /// yields its response.
    pub(crate) fn send(&self, line: Vec<u8>) -> oneshot::Receiver<Result<Response, Error>> {
        let (reply, rx) = oneshot::channel();
        if let Err(mpsc::error::SendError(job)) = self.tx.send(Job { line, reply }) {
            let _ = job.reply.send(Err(unavailable("connection closed")));
        }
        rx
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(mut w: W, mut rx: mpsc::UnboundedReceiver<Job>, shared: Arc<Shared>) {
    let mut buf = Vec::with_capacity(64 * 1024);
    while let Some(job) = rx.recv().await {
        let queue = |job: Job, buf: &mut Vec<u8>| {
            let mut pending = shared.pending.lock();
            if shared.dead.load(Ordering::SeqCst) {
                let _ = job.reply.send(Err(unavailable("connection closed")));
            } else {
                pending.push_back(job.reply);
                buf.extend_from_slice(&job.line);
            }
        };
        queue(job, &mut buf);
        // Everything already queued goes out in the same write.
        while buf.len() < 1024 * 1024 {
            match rx.try_recv() {
                Ok(job) => queue(job, &mut buf),
                Err(_) => break,
            }
        }
        if shared.dead.load(Ordering::SeqCst) {
            break;
        }
        if let Err(e) = async {
            w.write_all(&buf).await?;
            w.flush().await
        }
        .await
        {
            tracing::debug!("xems connection write failed: {e}");
            shared.fail_all("connection write failed");
            break;
        }
        buf.clear();
    }
    // Refuse whatever is still queued.
    rx.close();
    while let Ok(job) = rx.try_recv() {
        let _ = job.reply.send(Err(unavailable("connection closed")));
    }
    let _ = w.shutdown().await;
}

async fn read_loop<R: AsyncRead + Unpin>(mut r: R, shared: Arc<Shared>) {
    let mut lines = LineBuffer::new(MAX_RESPONSE_LINE);
    let mut chunk = vec![0u8; 64 * 1024];
    let why = loop {
        let n = match r.read(&mut chunk).await {
            Ok(0) => break "server closed the connection",
            Ok(n) => n,
            Err(e) => {
                tracing::debug!("xems connection read failed: {e}");
                break "connection read failed";
            }
        };
        lines.extend(&chunk[..n]);
        let mut broken = None;
        while let Some(frame) = lines.next_frame() {
            let parsed = match frame {
                Frame::Line(line) => serde_json::from_slice::<Response>(line)
                    .map_err(|e| unavailable(&format!("malformed response from server: {e}"))),
                Frame::TooLong { len } => Err(unavailable(&format!("response line of {len} bytes is too long"))),
            };
            let Some(reply) = shared.pending.lock().pop_front() else {
                broken = Some("server sent a response nobody asked for");
                break;
            };
            let failed = parsed.is_err();
            let _ = reply.send(parsed);
            if failed {
                // Framing can no longer be trusted: drop the connection.
                broken = Some("malformed response from server");
                break;
            }
        }
        if let Some(why) = broken {
            break why;
        }
    };
    shared.fail_all(why);
}
