//! The live journal: what the engine calls under its shard locks, the
//! writer thread that hands sealed frames to the OS, and the fsync policy.
//!
//! `append` encodes a change, seals it in place (the plaintext never outlives
//! the call) and queues the frame; it does no I/O. Under `always`, a writer
//! thread takes everything queued, writes it with one `write(2)` and calls
//! `fdatasync` once for the whole batch: group commit. Under `everysec` and
//! `no`, the request that waits writes everything queued itself (one
//! `write(2)`, no thread switch); a ticker thread calls `fdatasync` once a
//! second (`everysec` only) and writes anything left queued.
//!
//! A ticket is *acknowledged* (its `wait` returns) once its frame has been
//! written to the file with `write(2)` (`everysec`, `no`), and also synced
//! (`always`). A written frame is in the kernel's page cache: it survives the
//! death of the process, not a power cut.

use std::fmt;
use std::fs::File;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use xems_core::{BoxFuture, SealKey};
use xems_engine::{Change, Journal, JournalError, Ticket};

use crate::codec;
use crate::format::{FRAME_HEADER_LEN, FileKind, TAG_LEN, frame_header, record_aad, record_nonce};

/// When the journal calls `fdatasync`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FsyncPolicy {
    /// After every batch of writes, before acknowledging them (group commit):
    /// an acknowledged write survives a power cut.
    Always,
    /// Once a second, in the background: a process crash loses nothing
    /// acknowledged; a power cut loses at most about the last second.
    #[default]
    EverySec,
    /// Never (the OS writes back when it likes): a process crash loses
    /// nothing acknowledged; a power cut may lose more than a second.
    No,
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(FsyncPolicy::Always),
            "everysec" => Ok(FsyncPolicy::EverySec),
            "no" => Ok(FsyncPolicy::No),
            other => Err(format!("unknown fsync policy {other:?}: expected always, everysec or no")),
        }
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FsyncPolicy::Always => "always",
            FsyncPolicy::EverySec => "everysec",
            FsyncPolicy::No => "no",
        })
    }
}

/// The ticket of a change appended after the vault closed: never written.
const CLOSED: Ticket = Ticket::MAX;

/// An open journal segment file.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) file: File,
    pub(crate) path: PathBuf,
    pub(crate) generation: u64,
    pub(crate) file_id: [u8; 16],
}

/// Seals frames of one segment.
pub(crate) struct Sealer {
    pub(crate) key: SealKey,
    pub(crate) vault_id: [u8; 16],
    pub(crate) file_id: [u8; 16],
    /// The next frame's sequence number (= frames sealed so far).
    pub(crate) seq: u64,
}

impl Sealer {
    /// Appends one frame whose plaintext `encode` writes, in at most
    /// `size_hint` bytes.
    fn frame(&mut self, buf: &mut Vec<u8>, size_hint: usize, encode: impl FnOnce(&mut Vec<u8>) -> bool) -> bool {
        // Grow first: `buf` holds only ciphertext now, so a reallocation
        // copies nothing secret; the plaintext below never moves.
        buf.reserve(FRAME_HEADER_LEN + size_hint + TAG_LEN);
        let start = buf.len();
        buf.extend_from_slice(&[0; FRAME_HEADER_LEN]);
        let body = buf.len();
        if !encode(buf) {
            buf.truncate(start);
            return false;
        }
        let aad = record_aad(&self.vault_id, &self.file_id, FileKind::Journal, self.seq);
        self.key.seal_in_place(record_nonce(self.seq), &aad, buf, body);
        let n = u32::try_from(buf.len() - body).expect("a frame is smaller than 4 GiB");
        buf[start..body].copy_from_slice(&frame_header(n));
        self.seq += 1;
        true
    }

    /// Appends the link frame (always frame 0 of a segment).
    pub(crate) fn link(&mut self, buf: &mut Vec<u8>, prev_frames: u64) {
        debug_assert_eq!(self.seq, 0);
        self.frame(buf, 16, |b| {
            codec::encode_link(b, prev_frames);
            true
        });
    }
}

/// Frames of the previous segment not yet written when a switch happened.
struct OldChunk {
    bytes: Vec<u8>,
}

struct State {
    sealer: Sealer,
    /// Sealed frames of the current segment, not yet handed to the writer.
    buf: Vec<u8>,
    last_ticket: Ticket,
    /// After a switch: the previous segment's last frames, and the segment
    /// the writer must move to.
    switch: Option<(OldChunk, Arc<Segment>)>,
    writer_idle: bool,
    /// While the writer gathers a group commit: the ticket to wake it at.
    gather_until: Ticket,
    closing: bool,
}

/// What the writing side owns: the segment being written and a spare
/// buffer to swap with the queue.
struct Io {
    current: Arc<Segment>,
    spare: Vec<u8>,
}

/// The journal shared by the engine (through [`Journal`]) and the vault.
pub(crate) struct Core {
    io: Mutex<Io>,
    policy: FsyncPolicy,
    state: Mutex<State>,
    work: Condvar,
    written: AtomicU64,
    synced: AtomicU64,
    failed: AtomicBool,
    failure: Mutex<Option<String>>,
    waiters: Mutex<Vec<(Ticket, Waker)>>,
    progress: Condvar,
    /// What the syncer thread syncs: the segment being written and the last
    /// ticket written to it.
    sync_target: Mutex<(Arc<Segment>, Ticket)>,
    sync_lock: Mutex<()>,
    /// Bytes written to journal segments since the last snapshot.
    pub(crate) journal_bytes: AtomicU64,
    tick: Condvar,
    tick_lock: Mutex<bool>,
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal")
            .field("policy", &self.policy)
            .field("written", &self.written.load(Ordering::Relaxed))
            .field("synced", &self.synced.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Core {
    /// A journal that will write to `segment` (whose header and link frame
    /// are already on disk, `sealer.seq` frames in).
    pub(crate) fn new(policy: FsyncPolicy, segment: Arc<Segment>, sealer: Sealer, journal_bytes: u64) -> Arc<Self> {
        Arc::new(Core {
            io: Mutex::new(Io { current: segment.clone(), spare: Vec::with_capacity(64 * 1024) }),
            policy,
            state: Mutex::new(State {
                sealer,
                buf: Vec::with_capacity(64 * 1024),
                last_ticket: 0,
                switch: None,
                writer_idle: false,
                gather_until: 0,
                closing: false,
            }),
            work: Condvar::new(),
            written: AtomicU64::new(0),
            synced: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            failure: Mutex::new(None),
            waiters: Mutex::new(Vec::new()),
            progress: Condvar::new(),
            sync_target: Mutex::new((segment, 0)),
            sync_lock: Mutex::new(()),
            journal_bytes: AtomicU64::new(journal_bytes),
            tick: Condvar::new(),
            tick_lock: Mutex::new(false),
        })
    }

    /// Starts the writer (and, for `everysec`, the syncer) threads.
    pub(crate) fn start(self: &Arc<Self>) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
        let mut threads = Vec::new();
        let core = self.clone();
        if self.policy == FsyncPolicy::Always {
            threads.push(std::thread::Builder::new().name("xems-vault-writer".into()).spawn(move || core.writer())?);
        } else {
            threads.push(std::thread::Builder::new().name("xems-vault-tick".into()).spawn(move || core.ticker())?);
        }
        Ok(threads)
    }

    fn closed() -> JournalError {
        JournalError("the vault is closed".into())
    }

    fn done(&self, ticket: Ticket) -> bool {
        let reached = match self.policy {
            FsyncPolicy::Always => self.synced.load(Ordering::Acquire),
            _ => self.written.load(Ordering::Acquire),
        };
        reached >= ticket
    }

    fn failure(&self) -> JournalError {
        JournalError(self.failure.lock().clone().unwrap_or_else(|| "the vault failed".into()))
    }

    fn fail(&self, why: String) {
        tracing::error!("vault: {why}; no further writes are accepted (restart the process to reopen the vault)");
        self.failure.lock().get_or_insert(why);
        self.failed.store(true, Ordering::Release);
        self.wake();
    }

    /// Wakes every waiter whose ticket is done (and all of them on failure).
    fn wake(&self) {
        let failed = self.failed.load(Ordering::Acquire);
        let mut waiters = self.waiters.lock();
        waiters.retain(|(t, w)| {
            if failed || self.done(*t) {
                w.wake_by_ref();
                false
            } else {
                true
            }
        });
        self.progress.notify_all();
    }

    /// Blocks until `ticket` is acknowledged.
    pub(crate) fn wait_blocking(&self, ticket: Ticket) -> Result<(), JournalError> {
        if ticket == CLOSED {
            return Err(Self::closed());
        }
        if self.done(ticket) {
            return Ok(());
        }
        if self.policy != FsyncPolicy::Always {
            self.write_inline(ticket);
        }
        let mut waiters = self.waiters.lock();
        loop {
            if self.failed.load(Ordering::Acquire) {
                drop(waiters);
                return Err(self.failure());
            }
            if self.done(ticket) {
                return Ok(());
            }
            self.progress.wait(&mut waiters);
        }
    }

    /// Appends the frames of a segment switch: everything queued so far goes
    /// to the old segment, then `segment` starts with its link frame.
    /// Returns the link frame's ticket.
    pub(crate) fn switch(&self, segment: Arc<Segment>, mut sealer: Sealer) -> Ticket {
        let mut st = self.state.lock();
        let prev_frames = st.sealer.seq;
        let old = std::mem::take(&mut st.buf);
        debug_assert!(st.switch.is_none(), "one switch at a time");
        st.switch = Some((OldChunk { bytes: old }, segment));
        sealer.link(&mut st.buf, prev_frames);
        st.sealer = sealer;
        st.last_ticket += 1;
        let t = st.last_ticket;
        if st.writer_idle {
            st.writer_idle = false;
            self.work.notify_one();
        }
        t
    }

    /// Waits until `ticket` is written, then syncs the current segment.
    pub(crate) fn sync_through(&self, ticket: Ticket) -> Result<(), JournalError> {
        if self.policy != FsyncPolicy::Always {
            self.write_inline(ticket);
        }
        {
            let mut waiters = self.waiters.lock();
            while self.written.load(Ordering::Acquire) < ticket {
                if self.failed.load(Ordering::Acquire) {
                    drop(waiters);
                    return Err(self.failure());
                }
                self.progress.wait(&mut waiters);
            }
        }
        self.sync_now()
    }

    /// Syncs what has been written so far.
    pub(crate) fn sync_now(&self) -> Result<(), JournalError> {
        let _one = self.sync_lock.lock();
        let (segment, upto) = {
            let t = self.sync_target.lock();
            (t.0.clone(), t.1)
        };
        if let Err(e) = segment.file.sync_data() {
            self.fail(format!("fdatasync of {} failed: {e}", segment.path.display()));
            return Err(self.failure());
        }
        self.synced.fetch_max(upto, Ordering::AcqRel);
        self.wake();
        Ok(())
    }

    /// Stops accepting work, writes and syncs everything queued, and ends
    /// the threads (the caller joins them).
    pub(crate) fn close(&self) {
        self.state.lock().closing = true;
        self.work.notify_all();
        *self.tick_lock.lock() = true;
        self.tick.notify_all();
        if self.policy != FsyncPolicy::Always {
            self.write_queued(&mut self.io.lock(), true);
        }
    }

    /// Whether the journal failed.
    pub(crate) fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// The current segment's generation.
    pub(crate) fn current_generation(&self) -> u64 {
        self.sync_target.lock().0.generation
    }

    /// Takes everything queued and writes it (and, on a switch, finishes
    /// and syncs the old segment first); with `sync`, syncs it too. Returns
    /// the last ticket taken and whether the journal is closing.
    fn write_queued(&self, io: &mut Io, sync: bool) -> (Ticket, bool) {
        let (switch, bytes, last, closing) = {
            let mut st = self.state.lock();
            let bytes = std::mem::replace(&mut st.buf, std::mem::take(&mut io.spare));
            (st.switch.take(), bytes, st.last_ticket, st.closing)
        };
        let done = |io: &mut Io, mut bytes: Vec<u8>| {
            bytes.clear();
            io.spare = bytes;
        };
        if self.failed.load(Ordering::Acquire) {
            done(io, bytes);
            return (last, closing);
        }
        if let Some((old, next)) = switch {
            let r = (&io.current.file).write_all(&old.bytes).and_then(|()| io.current.file.sync_data());
            if let Err(e) = r {
                self.fail(format!("cannot write {}: {e}", io.current.path.display()));
                done(io, bytes);
                return (last, closing);
            }
            self.journal_bytes.fetch_add(old.bytes.len() as u64, Ordering::Relaxed);
            io.current = next;
            *self.sync_target.lock() = (io.current.clone(), self.written.load(Ordering::Acquire));
        }
        if !bytes.is_empty() {
            if let Err(e) = (&io.current.file).write_all(&bytes) {
                self.fail(format!("cannot write {}: {e}", io.current.path.display()));
                done(io, bytes);
                return (last, closing);
            }
            self.journal_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        if sync || closing {
            if let Err(e) = io.current.file.sync_data() {
                self.fail(format!("fdatasync of {} failed: {e}", io.current.path.display()));
                done(io, bytes);
                return (last, closing);
            }
            self.synced.fetch_max(last, Ordering::AcqRel);
        }
        {
            let mut t = self.sync_target.lock();
            t.1 = t.1.max(last);
        }
        self.written.fetch_max(last, Ordering::AcqRel);
        self.wake();
        done(io, bytes);
        (last, closing)
    }

    /// `everysec` and `no`: the waiting request writes what is queued itself
    /// (one `write(2)` for everything queued), which costs no thread switch.
    fn write_inline(&self, ticket: Ticket) {
        let mut io = self.io.lock();
        if !self.done(ticket) && !self.failed.load(Ordering::Acquire) {
            self.write_queued(&mut io, false);
        }
    }

    /// The writer thread of `always`: group commit.
    fn writer(&self) {
        let mut io = self.io.lock();
        // The requests a sync acknowledges come back with their next change
        // a moment later. Waiting for most of them (at most half a sync's
        // time, at most 2 ms) makes the next sync cover them all instead of
        // only the first few.
        let (mut taken, mut last_batch, mut last_sync) = (0, 0, Duration::ZERO);
        loop {
            {
                let mut st = self.state.lock();
                while st.buf.is_empty() && st.switch.is_none() && !st.closing {
                    st.writer_idle = true;
                    self.work.wait(&mut st);
                }
                st.writer_idle = false;
                if last_batch > 1 && st.switch.is_none() {
                    let target = taken + last_batch * 3 / 4;
                    let deadline = Instant::now() + (last_sync / 2).min(Duration::from_millis(2));
                    while st.last_ticket < target && !st.closing {
                        st.gather_until = target;
                        if self.work.wait_until(&mut st, deadline).timed_out() {
                            break;
                        }
                    }
                    st.gather_until = 0;
                }
            }
            let t = Instant::now();
            let (last, closing) = self.write_queued(&mut io, true);
            last_sync = t.elapsed();
            last_batch = last - taken;
            taken = last;
            if closing {
                let st = self.state.lock();
                if st.buf.is_empty() && st.switch.is_none() {
                    return;
                }
            }
        }
    }

    /// `everysec` and `no`: once a second, writes anything still queued (a
    /// change whose request went away before waiting) and, for `everysec`,
    /// syncs.
    fn ticker(&self) {
        let mut stop = self.tick_lock.lock();
        let mut next = Instant::now() + Duration::from_secs(1);
        while !*stop {
            if self.tick.wait_until(&mut stop, next).timed_out() {
                next += Duration::from_secs(1);
                let now = Instant::now();
                if next < now {
                    next = now + Duration::from_secs(1);
                }
                if self.failed.load(Ordering::Acquire) {
                    continue;
                }
                parking_lot::MutexGuard::unlocked(&mut stop, || {
                    self.write_queued(&mut self.io.lock(), false);
                    let lagging = self.sync_target.lock().1 > self.synced.load(Ordering::Acquire);
                    if self.policy == FsyncPolicy::EverySec && lagging {
                        let _ = self.sync_now();
                    }
                });
            }
        }
    }
}

impl Journal for Core {
    fn append(&self, change: &Change<'_>) -> Ticket {
        let mut st = self.state.lock();
        if st.closing {
            // Nothing is written any more: the ticket's wait reports it.
            return CLOSED;
        }
        st.last_ticket += 1;
        let ticket = st.last_ticket;
        if self.failed.load(Ordering::Relaxed) {
            return ticket;
        }
        let State { sealer, buf, .. } = &mut *st;
        if !sealer.frame(buf, codec::change_size_hint(change), |b| codec::encode_change(b, change)) {
            tracing::error!(?change, "vault: a change of a kind this vault cannot record");
        }
        if st.writer_idle || (st.gather_until != 0 && ticket >= st.gather_until) {
            // Only the `always` writer thread waits here.
            st.writer_idle = false;
            st.gather_until = 0;
            self.work.notify_one();
        }
        ticket
    }

    fn wait_blocking(&self, ticket: Ticket) -> Result<(), JournalError> {
        Core::wait_blocking(self, ticket)
    }

    fn wait(&self, ticket: Ticket) -> BoxFuture<'_, Result<(), JournalError>> {
        Box::pin(async move {
            if ticket != CLOSED && !self.done(ticket) && self.policy != FsyncPolicy::Always {
                // Let the other requests ready on this runtime append their
                // changes first: one write(2) then covers them all. (Outside
                // a tokio runtime this is a plain yield.)
                tokio::task::yield_now().await;
            }
            WaitFuture { core: self, ticket }.await
        })
    }
}

/// Resolves when a ticket is acknowledged.
struct WaitFuture<'a> {
    core: &'a Core,
    ticket: Ticket,
}

impl Future for WaitFuture<'_> {
    type Output = Result<(), JournalError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let core = self.core;
        if self.ticket == CLOSED {
            return Poll::Ready(Err(Core::closed()));
        }
        if core.done(self.ticket) {
            return Poll::Ready(Ok(()));
        }
        if core.policy != FsyncPolicy::Always {
            // A write(2) of what is queued: microseconds, like a lock.
            core.write_inline(self.ticket);
            if core.done(self.ticket) {
                return Poll::Ready(Ok(()));
            }
        }
        let mut waiters = core.waiters.lock();
        if core.failed.load(Ordering::Acquire) {
            drop(waiters);
            return Poll::Ready(Err(core.failure()));
        }
        if core.done(self.ticket) {
            return Poll::Ready(Ok(()));
        }
        match waiters.iter_mut().find(|(t, w)| *t == self.ticket && w.will_wake(cx.waker())) {
            Some(_) => {}
            None => waiters.push((self.ticket, cx.waker().clone())),
        }
        Poll::Pending
    }
}

/// A handle on the journal for the engine (`EngineBuilder::journal`).
#[derive(Clone, Debug)]
pub(crate) struct Handle(pub(crate) Arc<Core>);

impl Journal for Handle {
    fn append(&self, change: &Change<'_>) -> Ticket {
        self.0.append(change)
    }

    fn wait_blocking(&self, ticket: Ticket) -> Result<(), JournalError> {
        self.0.wait_blocking(ticket)
    }

    fn wait(&self, ticket: Ticket) -> BoxFuture<'_, Result<(), JournalError>> {
        self.0.wait(ticket)
    }
}
