//! A sandbox: its keys, limits, counters and shards, and the public
//! [`Sandbox`] handle with the synchronous API.

use std::fmt;
use std::hash::Hasher as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use siphasher::sip::SipHasher13;
use xems_core::json_text::{self, RawBytes};
use xems_core::{
    AtomicCounters, Clock, Counters, CreateOptions, Created, DEFAULT_TTL, Error, Event, EventKind, EventSink,
    IndexDigest, IndexKey, KeyDeriver, MAX_GRACE, MAX_SUBJECT_LEN, MAX_TTL, OpenError, Refresh, ResolveOptions,
    Resolved, Result, SealKey, SessionId, SessionMeta, Timestamp, Token, UpdateOutcome, Value, ValueForm, cap_ttl,
    route_of, validate_key,
};
use xems_locked::Locked;
use zeroize::{Zeroize, Zeroizing};

use crate::persist::{Image, Journal, Ticket};
use aes::Aes256;
use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use base64::Engine as _;

use crate::memo::{self, MemoKey};
use crate::shard::{
    Address, CasOutcome, Cx, FAMILY_PREFIX, Found, HintTarget, Lifetimes, MetaParts, NewValue, Shard, WriteOutcome,
    ms_u32,
};
use xems_core::{LimitPolicy, ReusePolicy, SandboxLimits};

/// Bytes of a minted token: routing byte, selector, 256-bit verifier.
const TOKEN_BYTES: usize = 1 + 16 + 32;
/// Characters of a minted token.
pub(crate) const ENGINE_TOKEN_LEN: usize = 66;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
/// A minted token sealed with its tag.
pub(crate) const SEALED_TOKEN_LEN: usize = ENGINE_TOKEN_LEN + SealKey::TAG_LEN;
pub(crate) type SealedTokenBytes = [u8; SEALED_TOKEN_LEN];

thread_local! {
    /// The last journal ticket of the operation running on this thread.
    /// Engine operations are synchronous from start to end, so the public
    /// layer clears it before an operation and takes it after, then waits
    /// for durability outside any lock.
    static TICKET: std::cell::Cell<Option<Ticket>> = const { std::cell::Cell::new(None) };
}

fn note_ticket(ticket: Ticket) {
    TICKET.with(|t| t.set(Some(t.get().map_or(ticket, |old| old.max(ticket)))));
}

/// Runs a synchronous engine operation and returns the journal ticket it
/// must wait on before answering, if any.
pub(crate) fn with_ticket<T>(op: impl FnOnce() -> T) -> (T, Option<Ticket>) {
    TICKET.with(|t| t.set(None));
    let out = op();
    (out, TICKET.with(|t| t.take()))
}

/// Engine-wide settings every sandbox reads.
pub(crate) struct Shared {
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) sinks: Vec<Arc<dyn EventSink>>,
    pub(crate) reuse_policy: ReusePolicy,
    pub(crate) retired_window: usize,
    /// Where changes are recorded when the engine persists.
    pub(crate) journal: Option<Arc<dyn Journal>>,
    /// Subjects hash under one engine-wide key so a subject survives
    /// migration between sandboxes.
    pub(crate) subject_key: Locked<IndexKey>,
}

impl Shared {
    pub(crate) fn now(&self) -> u64 {
        self.clock.now().as_millis()
    }
}

/// How a minted token's index digest is computed: the format byte of its
/// selector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TokenFormat {
    /// Tokens minted by earlier versions: over the token's 66 characters
    /// (still accepted: a restored vault holds such digests).
    Text = 0,
    /// Tokens minted now: over the raw bytes ([`SandboxKeys::raw_digest`]),
    /// one SHA-256 block instead of two.
    Raw = 1,
}

impl TokenFormat {
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(TokenFormat::Text),
            1 => Some(TokenFormat::Raw),
            _ => None,
        }
    }
}

/// What the selector of a minted token says.
struct Selected {
    slot: u32,
    format: TokenFormat,
    /// The token's decoded bytes.
    raw: Zeroizing<[u8; TOKEN_BYTES]>,
}

/// The keys of one sandbox.
pub(crate) struct SandboxKeys {
    /// Keyed-hash index of tokens and caller keys (stable across restarts
    /// for a given secret).
    pub(crate) index: IndexKey,
    /// Seals values; derived with a per-process salt, so that the
    /// (family, version) nonces of this process can never meet a ciphertext
    /// of another process under the same key.
    value: SealKey,
    /// Seals the current token of a session while a grace window is open.
    token: SealKey,
    /// Keys the public session id.
    sid: [u8; 16],
    /// Binds the sandbox into every value's associated data.
    tag: [u8; 8],
    /// Encrypts the selector of minted tokens (the slot they name), so a
    /// token reveals nothing about where or how many sessions are stored.
    selector: Aes256,
    /// Tags this sandbox's entries in the digest memo ([`crate::memo`]).
    memo: MemoKey,
}

impl SandboxKeys {
    pub(crate) fn derive(name: &str, stable: &KeyDeriver, process: &KeyDeriver) -> Self {
        // SipHash keys: the first 16 bytes of a derived key.
        let siphash_key = |k: &[u8; 32]| -> [u8; 16] { k[..16].try_into().expect("16 of 32 bytes") };
        let tag = stable.derive("tag", name);
        let mut t = [0u8; 8];
        t.copy_from_slice(&tag[..8]);
        SandboxKeys {
            index: stable.index_key("index", name),
            value: process.seal_key("value", name),
            token: process.seal_key("token", name),
            sid: siphash_key(&stable.derive("session-id", name)),
            tag: t,
            selector: Aes256::new(GenericArray::from_slice(&stable.derive("selector", name)[..])),
            memo: MemoKey(siphash_key(&process.derive("memo", name))),
        }
    }

    /// Mints a token for the record in `slot` of the shard `route` selects:
    /// `route (1) || AES-256(slot || route || format || 0^10) (16) ||
    /// verifier (32)`, 49 bytes as 66 URL-safe base64 characters. Returns it
    /// with the index part of its keyed digest.
    pub(crate) fn mint(&self, route: u8, slot: u32) -> (Token, IndexDigest) {
        self.mint_as(route, slot, TokenFormat::Raw)
    }

    /// [`mint`](Self::mint) in a given format (tests mint the old one).
    fn mint_as(&self, route: u8, slot: u32, format: TokenFormat) -> (Token, IndexDigest) {
        let mut block = GenericArray::from([0u8; 16]);
        block[..4].copy_from_slice(&slot.to_le_bytes());
        block[4] = route;
        block[5] = format as u8;
        self.selector.encrypt_block(&mut block);
        let mut raw = Zeroizing::new([0u8; TOKEN_BYTES]);
        raw[0] = route;
        raw[1..17].copy_from_slice(&block);
        xems_core::random_bytes(&mut raw[17..]);
        let mut text = Zeroizing::new([0u8; ENGINE_TOKEN_LEN]);
        B64.encode_slice(&raw[..], &mut text[..]).expect("49 bytes encode to 66 characters");
        let text = std::str::from_utf8(&text[..]).expect("base64 is ASCII");
        let digest = match format {
            TokenFormat::Raw => self.raw_digest(&raw),
            TokenFormat::Text => self.index.digest(text.as_bytes()),
        };
        (Token::from_string(text.to_owned()), digest)
    }

    /// The keyed digest of a minted token of format [`TokenFormat::Raw`]: over a
    /// marker byte and its 49 raw bytes, which fit one SHA-256 block (its 66
    /// characters take two). The marker 0xFF never occurs in UTF-8, so no
    /// caller key's digest input can equal a token's.
    fn raw_digest(&self, raw: &[u8; TOKEN_BYTES]) -> IndexDigest {
        let mut input = Zeroizing::new([0u8; TOKEN_BYTES + 1]);
        input[0] = 0xFF;
        input[1..].copy_from_slice(raw);
        self.index.digest(&input[..])
    }

    /// What a minted token's selector says, if `text` is one: the selector
    /// decrypts to the slot, the token's own routing byte, a known format
    /// and ten zero bytes (anything else is a caller key, or a forgery that
    /// never touches memory).
    fn selected(&self, text: &str) -> Option<Selected> {
        if text.len() != ENGINE_TOKEN_LEN {
            return None;
        }
        let mut raw = Zeroizing::new([0u8; TOKEN_BYTES]);
        B64.decode_slice(text.as_bytes(), &mut raw[..]).ok()?;
        let mut block = GenericArray::clone_from_slice(&raw[1..17]);
        self.selector.decrypt_block(&mut block);
        let format = TokenFormat::from_byte(block[5])?;
        if block[4] != raw[0] || block[6..].iter().any(|&b| b != 0) {
            return None;
        }
        Some(Selected { slot: u32::from_le_bytes([block[0], block[1], block[2], block[3]]), format, raw })
    }

    /// How the shards see `text`, whose selector (if it is a minted token)
    /// was read by [`selected`](Self::selected).
    fn address_at(&self, text: &str, selected: Option<&Selected>) -> Address {
        match selected {
            Some(s) => {
                let digest = match s.format {
                    TokenFormat::Raw => self.raw_digest(&s.raw),
                    TokenFormat::Text => self.index.digest(text.as_bytes()),
                };
                Address { digest: digest.index(), fp: digest.fingerprint(), route: route_of(text), slot: Some(s.slot) }
            }
            None => caller_address(text, &self.index.digest(text.as_bytes())),
        }
    }

    fn value_nonce_aad(&self, family: u64, version: u32) -> ([u8; 12], [u8; 20]) {
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&family.to_be_bytes());
        nonce[8..].copy_from_slice(&version.to_be_bytes());
        let mut aad = [0u8; 20];
        aad[..8].copy_from_slice(&self.tag);
        aad[8..].copy_from_slice(&nonce);
        (nonce, aad)
    }

    /// `family (LE) || AES-256-GCM(value) || tag`, with nonce
    /// `family || version` and associated data `sandbox tag || family ||
    /// version`: a sealed value moved to another record, version or sandbox
    /// fails to open.
    pub(crate) fn seal_value(&self, family: u64, version: u32, plaintext: &[u8]) -> Box<[u8]> {
        let (nonce, aad) = self.value_nonce_aad(family, version);
        self.value.seal(nonce, &aad, &family.to_le_bytes(), plaintext).into_boxed_slice()
    }

    /// Opens `ciphertext || tag` (the sealed value without its family prefix)
    /// in place, leaving the plaintext.
    pub(crate) fn open_value(&self, family: u64, version: u32, buf: &mut Vec<u8>) -> Result<(), OpenError> {
        self.open_value_at(family, version, buf, 0)
    }

    /// [`open_value`](Self::open_value) on `buf[start..]`.
    pub(crate) fn open_value_at(
        &self,
        family: u64,
        version: u32,
        buf: &mut Vec<u8>,
        start: usize,
    ) -> Result<(), OpenError> {
        let (nonce, aad) = self.value_nonce_aad(family, version);
        let len = start + self.value.open_in_place(nonce, &aad, &mut buf[start..])?.len();
        buf.truncate(len);
        Ok(())
    }

    fn token_nonce_aad(&self, family: u64, n: u32) -> ([u8; 12], [u8; 20]) {
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&family.to_be_bytes());
        nonce[8..].copy_from_slice(&n.to_be_bytes());
        let mut aad = [0u8; 20];
        aad[..8].copy_from_slice(&self.tag);
        aad[8..].copy_from_slice(&nonce);
        (nonce, aad)
    }

    /// The current token of a session, sealed in a fixed-size buffer (no
    /// allocation per rotation).
    pub(crate) fn seal_token(&self, family: u64, n: u32, token: &Token) -> SealedTokenBytes {
        let (nonce, aad) = self.token_nonce_aad(family, n);
        let mut out = [0u8; SEALED_TOKEN_LEN];
        let text = token.expose().as_bytes();
        debug_assert_eq!(text.len(), ENGINE_TOKEN_LEN, "successors are minted tokens");
        out[..ENGINE_TOKEN_LEN].copy_from_slice(&text[..ENGINE_TOKEN_LEN.min(text.len())]);
        let tag = self.token.seal_detached(nonce, &aad, &mut out[..ENGINE_TOKEN_LEN]);
        out[ENGINE_TOKEN_LEN..].copy_from_slice(&tag);
        out
    }

    pub(crate) fn open_token(&self, family: u64, n: u32, sealed: &SealedTokenBytes) -> Result<Token, OpenError> {
        let (nonce, aad) = self.token_nonce_aad(family, n);
        let mut buf = Zeroizing::new(*sealed);
        let text = self.token.open_in_place(nonce, &aad, &mut buf[..])?;
        let text = std::str::from_utf8(text).map_err(|_| OpenError)?;
        Ok(Token::from_string(text.to_owned()))
    }

    /// The public id of a session: a keyed SipHash of its family id, so ids
    /// reveal neither the family counter nor anything about tokens.
    pub(crate) fn session_id(&self, family: u64) -> SessionId {
        let mut h = SipHasher13::new_with_key(&self.sid);
        h.write_u64(family);
        SessionId::from_u64(h.finish())
    }
}

/// Pads a shard lock to its own cache line so two cores working on
/// neighbouring shards do not bounce one line between them.
#[repr(align(128))]
struct Padded(Mutex<Shard>);

pub(crate) struct SandboxCore {
    pub(crate) name: Box<str>,
    /// In locked, non-dumpable pages.
    pub(crate) keys: Locked<SandboxKeys>,
    pub(crate) limits: SandboxLimits,
    pub(crate) engine: Arc<Shared>,
    shards: Box<[Padded]>,
    records: AtomicU64,
    bytes: AtomicU64,
    next_family: AtomicU64,
    /// Events counted outside any shard lock (refusals).
    outside: AtomicCounters,
}

/// Room taken in a sandbox for one record; given back unless committed.
struct Reservation<'a> {
    sb: &'a SandboxCore,
    bytes: u64,
    armed: bool,
}

impl Reservation<'_> {
    fn commit(mut self) {
        self.armed = false;
    }

    /// Adjusts the reserved bytes to the real size once it is known.
    fn resize(&mut self, bytes: u64) {
        if bytes > self.bytes {
            self.sb.bytes.fetch_add(bytes - self.bytes, Ordering::AcqRel);
        } else {
            self.sb.bytes.fetch_sub(self.bytes - bytes, Ordering::AcqRel);
        }
        self.bytes = bytes;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.sb.release(1, self.bytes);
        }
    }
}

/// The address of the caller key `text`, whose keyed digest is `digest`.
fn caller_address(text: &str, digest: &IndexDigest) -> Address {
    Address { digest: digest.index(), fp: digest.fingerprint(), route: route_of(text), slot: None }
}

/// How many times a write evicts and retries before giving up.
const EVICTION_ROUNDS: usize = 64;

fn sealed_len(plaintext: usize) -> u64 {
    (FAMILY_PREFIX + plaintext + SealKey::TAG_LEN) as u64
}

impl SandboxCore {
    pub(crate) fn new(
        name: &str,
        keys: SandboxKeys,
        limits: SandboxLimits,
        engine: Arc<Shared>,
        shards: usize,
    ) -> Self {
        let epoch = engine.now();
        SandboxCore {
            name: name.into(),
            keys: Locked::new(keys),
            limits,
            engine,
            shards: (0..shards).map(|_| Padded(Mutex::new(Shard::new(epoch)))).collect(),
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            next_family: AtomicU64::new(1),
            outside: AtomicCounters::default(),
        }
    }

    fn shard(&self, route: u8) -> &Mutex<Shard> {
        &self.shards[usize::from(route) & (self.shards.len() - 1)].0
    }

    /// How the shards see `text`. A minted token names its record's slot:
    /// the record is fetched into the cache while the token's keyed digest
    /// is computed (a miss that would otherwise follow the digest), at the
    /// price of a brief uncontended lock.
    ///
    /// A caller key hinted by a batch prefetch on this thread takes the
    /// digest the prefetch computed ([`crate::memo`]).
    fn address(&self, text: &str) -> Address {
        let selected = self.keys.selected(text);
        match &selected {
            Some(s) => self.shard(route_of(text)).lock().prefetch_record(s.slot),
            None => {
                if let Some(digest) = memo::take(self.keys.memo, text.as_bytes()) {
                    return caller_address(text, &digest);
                }
            }
        }
        self.keys.address_at(text, selected.as_ref())
    }

    /// The first step of a batch prefetch ([`crate::prefetch`]): the shard
    /// of `key` and where its record is to be found there (the slot a minted
    /// token's selector names, or a caller key's index digest). Computed
    /// from the key alone, touching none of the store's memory.
    pub(crate) fn hint(&self, key: &str) -> Option<(u8, HintTarget)> {
        validate_key(key).ok()?;
        let target = match self.keys.selected(key) {
            Some(s) => HintTarget::Slot(s.slot),
            None => {
                let digest = self.keys.index.digest(key.as_bytes());
                memo::put(self.keys.memo, key.as_bytes(), digest);
                HintTarget::Key(digest.index())
            }
        };
        Some((route_of(key), target))
    }

    /// The later steps, each under the shard's lock: see
    /// [`Shard::hint_fetch`], [`Shard::hint_slot`] and [`Shard::hint_parts`].
    pub(crate) fn hint_fetch(&self, route: u8, target: &HintTarget) {
        self.shard(route).lock().hint_fetch(target);
    }

    pub(crate) fn hint_slot(&self, route: u8, target: &HintTarget) -> Option<u32> {
        match target {
            // Known already: no lock to take.
            HintTarget::Slot(slot) => Some(*slot),
            HintTarget::Key(digest) => self.shard(route).lock().hint_slot(digest),
        }
    }

    pub(crate) fn hint_parts(&self, route: u8, slot: u32) {
        self.shard(route).lock().hint_parts(slot);
    }

    fn cx(&self) -> Cx<'_> {
        self.cx_at(self.engine.now())
    }

    /// An operation's context at `now`, read once by an operation that also
    /// needs it beforehand (a clock read costs ~20 ns here).
    fn cx_at(&self, now: u64) -> Cx<'_> {
        Cx {
            now,
            sb: self,
            listening: !self.engine.sinks.is_empty(),
            raised: Default::default(),
            journal: self.engine.journal.as_deref(),
            ticket: None,
        }
    }

    /// Delivers the events raised under a lock, and notes the journal
    /// ticket the operation must wait on.
    fn emit(&self, cx: Cx<'_>) {
        if let Some(ticket) = cx.ticket {
            note_ticket(ticket);
        }
        for (kind, fp, detail) in cx.raised {
            let event = Event::new(kind, &self.name, fp, Timestamp::from_millis(cx.now)).with_detail(detail);
            for sink in &self.engine.sinks {
                sink.on_event(&event);
            }
        }
    }

    /// Takes room for `records` records and `bytes` sealed bytes if it fits
    /// the limits, without evicting.
    pub(crate) fn try_take(&self, records: u64, bytes: u64) -> bool {
        let r = self.records.fetch_add(records, Ordering::AcqRel) + records;
        let b = self.bytes.fetch_add(bytes, Ordering::AcqRel) + bytes;
        if r <= self.limits.max_records && b <= self.limits.max_bytes {
            return true;
        }
        self.release(records, bytes);
        false
    }

    /// The error for a write that found no room.
    fn full(&self) -> Error {
        let limits = &self.limits;
        let limit = if self.records.load(Ordering::Acquire) >= limits.max_records {
            format!("{} records (policy: {})", limits.max_records, limits.policy)
        } else {
            format!("{} bytes (policy: {})", limits.max_bytes, limits.policy)
        };
        self.refuse(Error::SandboxFull { sandbox: self.name.to_string(), limit })
    }

    /// Whether a write that found no room may evict and try again.
    fn may_evict(&self, bytes: u64) -> bool {
        self.limits.policy == LimitPolicy::EvictSoonestExpiring && bytes <= self.limits.max_bytes && self.evict_one()
    }

    pub(crate) fn release(&self, records: u64, bytes: u64) {
        self.records.fetch_sub(records, Ordering::AcqRel);
        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    fn refuse(&self, error: Error) -> Error {
        self.outside.add(EventKind::Refused, 1);
        if !self.engine.sinks.is_empty() {
            let detail = match &error {
                Error::ValueTooLarge { .. } => "value too large",
                _ => "sandbox full",
            };
            let event = Event::new(EventKind::Refused, &self.name, None, Timestamp::from_millis(self.engine.now()))
                .with_detail(detail);
            for sink in &self.engine.sinks {
                sink.on_event(&event);
            }
        }
        error
    }

    /// The size limit is on the bytes a value stands for: its JSON form may
    /// be longer (and is measured only when it is).
    fn check_value(&self, value: &[u8], form: ValueForm) -> Result<()> {
        let max = self.limits.max_value_bytes;
        if value.len() <= max {
            return Ok(());
        }
        let size = match form {
            ValueForm::Json => json_text::raw_len(value).ok_or_else(|| {
                Error::InvalidArgument("a value given in its JSON form is not the inside of a JSON string".into())
            })?,
            ValueForm::Raw => value.len(),
        };
        if size > max {
            return Err(self.refuse(Error::ValueTooLarge { size, max }));
        }
        Ok(())
    }

    /// What a write stores of `value` (given in `form`), and in which form:
    /// as given, except that an engine that journals keeps raw bytes only
    /// (its journal and snapshots take raw bytes; converting here, once per
    /// write, is what the journal would cost anyway).
    fn stored<'v>(&self, value: &'v [u8], form: ValueForm) -> Result<(RawBytes<'v>, ValueForm)> {
        self.check_value(value, form)?;
        debug_assert!(form == ValueForm::Raw || json_text::raw_len(value).is_some(), "JSON-form text as promised");
        if form == ValueForm::Json && self.engine.journal.is_some() {
            return Ok((json_text::raw_bytes(value, form)?, ValueForm::Raw));
        }
        Ok((RawBytes::Borrowed(value), form))
    }

    /// Takes room for one record of `bytes` sealed bytes, evicting if the
    /// policy says so.
    fn reserve(&self, bytes: u64) -> Result<Reservation<'_>> {
        // A bounded number of eviction rounds: concurrent writers may take
        // the room an eviction frees.
        for _ in 0..EVICTION_ROUNDS {
            if self.try_take(1, bytes) {
                return Ok(Reservation { sb: self, bytes, armed: true });
            }
            if !self.may_evict(bytes) {
                break;
            }
        }
        Err(self.full())
    }

    /// Evicts the sandbox's soonest-expiring record. Shards are tried in
    /// order of their earliest bucket: a shard whose wheel holds only stale
    /// entries gives way to the next.
    fn evict_one(&self) -> bool {
        let mut candidates: Vec<(u64, usize)> =
            (0..self.shards.len()).filter_map(|i| self.shards[i].0.lock().soonest().map(|k| (k, i))).collect();
        candidates.sort_unstable();
        for (_, i) in candidates {
            let mut cx = self.cx();
            let evicted = self.shards[i].0.lock().evict_soonest(&mut cx);
            self.emit(cx);
            if evicted {
                return true;
            }
        }
        false
    }

    fn lifetimes(&self, now: u64, ttl: Option<Duration>, abs: Option<Duration>) -> Result<Lifetimes> {
        let ttl = ttl.unwrap_or(DEFAULT_TTL);
        let abs = abs.unwrap_or(MAX_TTL);
        if ttl.is_zero() || abs.is_zero() {
            return Err(Error::InvalidArgument("a TTL must be greater than zero".into()));
        }
        let (ttl, abs) = (cap_ttl(ttl), cap_ttl(abs));
        let capped = ttl.capped || abs.capped;
        if capped {
            tracing::info!(sandbox = %self.name, "TTL capped at the 5-day retention limit");
        }
        Ok(Lifetimes { ttl_ms: ms_u32(ttl.effective), abs_deadline: now + u64::from(ms_u32(abs.effective)), capped })
    }

    fn subject_hash(&self, subject: &str) -> Result<[u8; 16]> {
        if subject.is_empty() || subject.len() > MAX_SUBJECT_LEN {
            return Err(Error::InvalidKey("a subject must be 1 to 256 bytes"));
        }
        Ok(self.engine.subject_key.digest(subject.as_bytes()).index())
    }

    fn meta(&self, m: MetaParts) -> SessionMeta {
        SessionMeta::new(
            self.keys.session_id(m.family),
            u64::from(m.version),
            Timestamp::from_millis(m.created_at),
            Timestamp::from_millis(m.expires_at),
            Timestamp::from_millis(m.abs_deadline),
            Duration::from_millis(u64::from(m.ttl_ms)),
            m.capped,
        )
    }

    /// Opens a record read under the lock, whose ciphertext || tag is
    /// `out[start..]`, in place: `out[start..]` becomes the value, in the
    /// form the caller can take, and the result's `value` is empty, in that
    /// form. On an error `out` is cut back to `start`.
    fn open_at(&self, found: Found, want: ValueForm, out: &mut Vec<u8>, start: usize) -> Result<Resolved> {
        let opened = self.keys.open_value_at(found.meta.family, found.meta.version, out, start);
        let form = match (opened, found.form) {
            (Err(_), _) => {
                out.truncate(start);
                return Err(Error::Integrity);
            }
            (Ok(()), ValueForm::Json) if want == ValueForm::Json => ValueForm::Json,
            (Ok(()), ValueForm::Json) => {
                let raw = json_text::unescape(&out[start..]);
                out[start..].zeroize();
                out.truncate(start);
                out.extend_from_slice(&raw.ok_or(Error::Integrity)?);
                ValueForm::Raw
            }
            (Ok(()), ValueForm::Raw) => ValueForm::Raw,
        };
        Ok(Resolved::new(Value::in_form(Vec::new(), form), found.token, found.outcome, self.meta(found.meta)))
    }

    // ----- operations ------------------------------------------------------

    pub(crate) fn create(&self, value: &[u8], opts: &CreateOptions) -> Result<Created> {
        let (value, form) = self.stored(value, opts.value_form)?;
        let subject = opts.subject.as_deref().map(|s| self.subject_hash(s)).transpose()?;
        let life = self.lifetimes(self.engine.now(), opts.ttl, opts.absolute_ttl)?;
        let reservation = self.reserve(sealed_len(value.len()))?;
        Ok(self.insert_new(&value, form, life, subject, reservation))
    }

    /// Seals `value` as a new session under a fresh token, in room already
    /// reserved.
    fn insert_new(
        &self,
        value: &[u8],
        form: ValueForm,
        life: Lifetimes,
        subject: Option<[u8; 16]>,
        reservation: Reservation<'_>,
    ) -> Created {
        let family = self.next_family.fetch_add(1, Ordering::Relaxed);
        let sealed = self.keys.seal_value(family, 1, value);
        let mut route = [0u8; 1];
        xems_core::random_bytes(&mut route);
        let route = route[0];
        let mut cx = self.cx();
        let (token, meta) = {
            let mut shard = self.shard(route).lock();
            let slot = shard.next_slot();
            let (token, digest) = self.keys.mint(route, slot);
            let addr = Address { digest: digest.index(), fp: digest.fingerprint(), route, slot: Some(slot) };
            let meta = shard.insert(&mut cx, &addr, sealed, NewValue { bytes: value, form }, life, subject);
            (token, meta)
        };
        reservation.commit();
        self.emit(cx);
        Created::new(token, self.meta(meta))
    }

    /// [`resolve`](Self::resolve), the value appended to `out`.
    pub(crate) fn resolve_into(
        &self,
        token: &str,
        opts: &ResolveOptions,
        out: &mut Vec<u8>,
    ) -> Result<Option<Resolved>> {
        validate_key(token)?;
        if opts.grace > MAX_GRACE {
            return Err(Error::InvalidArgument(format!(
                "grace period of {} ms is above the maximum of 55000 ms",
                opts.grace.as_millis()
            )));
        }
        if let Refresh::To(d) = opts.refresh
            && d.is_zero()
        {
            return Err(Error::InvalidArgument("a TTL must be greater than zero".into()));
        }
        let addr = self.address(token);
        let mut cx = self.cx();
        let start = out.len();
        let found = self.shard(addr.route).lock().resolve(&mut cx, &addr, opts, out);
        self.emit(cx);
        found.map(|f| self.open_at(f, opts.value_form, out, start)).transpose()
    }

    pub(crate) fn resolve(&self, token: &str, opts: &ResolveOptions) -> Result<Option<Resolved>> {
        let mut buf = Vec::new();
        let Some(mut r) = self.resolve_into(token, opts, &mut buf)? else { return Ok(None) };
        r.value = Value::in_form(buf, r.value.form());
        Ok(Some(r))
    }

    pub(crate) fn set(&self, key: &str, value: &[u8], opts: &CreateOptions) -> Result<SessionMeta> {
        validate_key(key)?;
        let (value, form) = self.stored(value, opts.value_form)?;
        let subject = opts.subject.as_deref().map(|s| self.subject_hash(s)).transpose()?;
        let now = self.engine.now();
        let life = self.lifetimes(now, opts.ttl, opts.absolute_ttl)?;
        let addr = self.address(key);
        let new_len = sealed_len(value.len());
        for _ in 0..EVICTION_ROUNDS {
            let mut cx = self.cx_at(now);
            let new_family = self.next_family.fetch_add(1, Ordering::Relaxed);
            let value = NewValue { bytes: &value, form };
            let outcome = self.shard(addr.route).lock().set(&mut cx, &addr, life, subject, value, new_family);
            self.emit(cx);
            match outcome? {
                WriteOutcome::Written(meta) => return Ok(self.meta(meta)),
                WriteOutcome::Retired => return Err(Error::TokenRetired),
                WriteOutcome::Full if self.may_evict(new_len) => continue,
                WriteOutcome::Full => break,
            }
        }
        Err(self.full())
    }

    pub(crate) fn update_if(&self, key: &str, expected: u64, value: &[u8]) -> Result<UpdateOutcome> {
        validate_key(key)?;
        self.check_value(value, ValueForm::Raw)?;
        let addr = self.address(key);
        let new_len = sealed_len(value.len());
        for _ in 0..EVICTION_ROUNDS {
            let mut cx = self.cx();
            let outcome = self.shard(addr.route).lock().update_if(&mut cx, &addr, expected, value);
            self.emit(cx);
            return match outcome? {
                CasOutcome::Updated(meta) => Ok(UpdateOutcome::Updated(self.meta(meta))),
                CasOutcome::Conflict(v) => Ok(UpdateOutcome::Conflict { current_version: u64::from(v) }),
                CasOutcome::NotFound => Ok(UpdateOutcome::NotFound),
                CasOutcome::Retired => Err(Error::TokenRetired),
                CasOutcome::Full if self.may_evict(new_len) => continue,
                CasOutcome::Full => break,
            };
        }
        Err(self.full())
    }

    pub(crate) fn del(&self, key: &str) -> Result<bool> {
        validate_key(key)?;
        let addr = self.address(key);
        let mut cx = self.cx();
        let deleted = self.shard(addr.route).lock().del(&mut cx, &addr);
        self.emit(cx);
        Ok(deleted)
    }

    pub(crate) fn exists(&self, key: &str) -> Result<bool> {
        validate_key(key)?;
        let addr = self.address(key);
        let mut cx = self.cx();
        let exists = self.shard(addr.route).lock().exists(&mut cx, &addr);
        self.emit(cx);
        Ok(exists)
    }

    pub(crate) fn touch(&self, key: &str, ttl: Option<Duration>) -> Result<Option<SessionMeta>> {
        validate_key(key)?;
        let refresh = match ttl {
            Some(d) if d.is_zero() => return Err(Error::InvalidArgument("a TTL must be greater than zero".into())),
            Some(d) => Refresh::To(d),
            None => Refresh::Idle,
        };
        let addr = self.address(key);
        let mut cx = self.cx();
        let meta = self.shard(addr.route).lock().touch(&mut cx, &addr, refresh);
        self.emit(cx);
        Ok(meta.map(|m| self.meta(m)))
    }

    /// Moves the session `token` resolves to into `to`: it is removed here
    /// first, then created there, so at no moment do both exist.
    pub(crate) fn migrate(
        &self,
        token: &str,
        to: &SandboxCore,
        value: Option<&[u8]>,
        opts: &CreateOptions,
    ) -> Result<Option<Created>> {
        validate_key(token)?;
        let value = value.map(|v| to.stored(v, opts.value_form)).transpose()?;
        let subject = opts.subject.as_deref().map(|s| to.subject_hash(s)).transpose()?;
        let life = to.lifetimes(to.engine.now(), opts.ttl, opts.absolute_ttl)?;
        let addr = self.address(token);
        // Room in the target is taken before the source is touched, so a full
        // target refuses the migration without losing the session.
        let size = match &value {
            Some((v, _)) => sealed_len(v.len()),
            None => {
                let mut cx = self.cx();
                let len = self.shard(addr.route).lock().sealed_len(&mut cx, &addr);
                self.emit(cx);
                match len {
                    Some(len) => len as u64,
                    None => return Ok(None),
                }
            }
        };
        let mut reservation = to.reserve(size)?;
        let mut cx = self.cx();
        let taken = self.shard(addr.route).lock().take(&mut cx, &addr);
        self.emit(cx);
        let Some(taken) = taken else { return Ok(None) };
        let (plaintext, form): (Zeroizing<Vec<u8>>, ValueForm) = match value {
            Some((v, form)) => (Zeroizing::new(v.to_vec()), form),
            None => {
                let mut buf = Zeroizing::new(taken.sealed);
                self.keys.open_value(taken.family, taken.version, &mut buf).map_err(|_| Error::Integrity)?;
                (buf, taken.form)
            }
        };
        // A concurrent write may have changed the size since it was reserved.
        reservation.resize(sealed_len(plaintext.len()));
        Ok(Some(to.insert_new(&plaintext, form, life, subject.or(taken.subject), reservation)))
    }

    pub(crate) fn list_subject(&self, subject: &str) -> Result<Vec<SessionMeta>> {
        let h = self.subject_hash(subject)?;
        let now = self.engine.now();
        let mut out: Vec<SessionMeta> =
            self.shards.iter().flat_map(|s| s.0.lock().subject_sessions(now, &h)).map(|m| self.meta(m)).collect();
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    pub(crate) fn revoke_subject(&self, subject: &str, except: Option<&str>) -> Result<usize> {
        let h = self.subject_hash(subject)?;
        let keep = match except {
            Some(token) => {
                validate_key(token)?;
                let addr = self.address(token);
                let mut cx = self.cx();
                let slot = self.shard(addr.route).lock().family_slot(&mut cx, &addr);
                self.emit(cx);
                slot.map(|slot| (usize::from(addr.route) & (self.shards.len() - 1), slot))
            }
            None => None,
        };
        let mut revoked = 0;
        for (i, shard) in self.shards.iter().enumerate() {
            let mut cx = self.cx();
            revoked += shard.0.lock().revoke_subject(&mut cx, &h, |slot, _| keep != Some((i, slot)));
            self.emit(cx);
        }
        Ok(revoked)
    }

    pub(crate) fn revoke_session(&self, subject: &str, id: &SessionId) -> Result<bool> {
        let h = self.subject_hash(subject)?;
        let mut revoked = 0;
        for shard in self.shards.iter() {
            let mut cx = self.cx();
            revoked += shard.0.lock().revoke_subject(&mut cx, &h, |_, family| self.keys.session_id(family) == *id);
            self.emit(cx);
        }
        Ok(revoked > 0)
    }

    /// One budgeted sweep pass over every shard; returns whether any shard
    /// still has due entries.
    pub(crate) fn sweep(&self, budget: usize) -> bool {
        let mut more = false;
        for shard in self.shards.iter() {
            let mut cx = self.cx();
            more |= shard.0.lock().sweep(&mut cx, budget);
            self.emit(cx);
        }
        more
    }

    pub(crate) fn stats(&self) -> (xems_core::SandboxStats, Counters) {
        let mut counters = self.outside.snapshot();
        let mut retired = 0;
        for shard in self.shards.iter() {
            let s = shard.0.lock();
            counters.merge(&s.counters);
            retired += s.retired_len() as u64;
        }
        let stats = xems_core::SandboxStats::new(
            self.name.to_string(),
            self.records.load(Ordering::Acquire),
            self.bytes.load(Ordering::Acquire),
            retired,
        );
        (stats, counters)
    }

    /// Images of every live record of this sandbox (snapshots).
    pub(crate) fn images(&self) -> Vec<Image> {
        let now = self.engine.now();
        self.shards.iter().enumerate().flat_map(|(i, s)| s.0.lock().images(self, now, i as u8)).collect()
    }

    /// Puts a record back (restore). Expired images and duplicates are
    /// dropped; returns whether the record was restored.
    pub(crate) fn restore(&self, img: &Image) -> bool {
        let cx = self.cx();
        if cx.now >= img.idle_deadline.min(img.abs_deadline) {
            return false;
        }
        let restored = self.shard(img.route).lock().restore(&cx, img);
        let Some(len) = restored else {
            tracing::warn!(sandbox = %self.name, "a restored record's key is already taken; dropped the duplicate");
            return false;
        };
        self.records.fetch_add(1, Ordering::AcqRel);
        self.bytes.fetch_add(len as u64, Ordering::AcqRel);
        self.next_family.fetch_max(img.family + 1, Ordering::AcqRel);
        true
    }

    /// Records, retired tokens and wheel entries actually held by the
    /// shards (for tests and diagnostics).
    pub(crate) fn census(&self) -> Census {
        let mut c = Census::default();
        for shard in self.shards.iter() {
            let s = shard.0.lock();
            c.records += s.len();
            c.retired += s.retired_len();
            c.wheel_entries += s.wheel_entries();
        }
        c
    }
}

/// What the shards of a sandbox hold, counted directly (diagnostics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Census {
    /// Live records.
    pub records: usize,
    /// Retired tokens remembered.
    pub retired: usize,
    /// Expiry wheel entries (stale ones included).
    pub wheel_entries: usize,
}

/// A handle on one sandbox of an [`Engine`](crate::Engine), with the
/// synchronous API (no `await`, no allocation of a future): XyPriss's
/// `from(sandbox)`.
///
/// ```
/// use xems_core::{CreateOptions, ResolveOptions, ResolveOutcome};
///
/// let engine = xems_engine::Engine::new();
/// let active = engine.sandbox("active")?;
/// let created = active.create(br#"{"user":42}"#, CreateOptions::new())?;
/// let r = active.resolve(created.token.expose(), ResolveOptions::rotating())?.expect("live");
/// assert_eq!(r.outcome, ResolveOutcome::Rotated);
/// assert_eq!(r.value.as_bytes(), br#"{"user":42}"#);
/// # Ok::<(), xems_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Sandbox {
    pub(crate) core: Arc<SandboxCore>,
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox").field("name", &self.core.name).finish_non_exhaustive()
    }
}

impl Sandbox {
    /// The sandbox's name.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// Runs an operation, then waits until what it journaled is durable.
    fn durable<T>(&self, op: impl FnOnce() -> Result<T>) -> Result<T> {
        let (out, ticket) = with_ticket(op);
        if let (Some(ticket), Some(journal)) = (ticket, self.core.engine.journal.as_ref()) {
            journal.wait_blocking(ticket).map_err(Error::unavailable)?;
        }
        out
    }

    /// Creates a session and mints its token.
    ///
    /// # Errors
    ///
    /// An oversized value, a full sandbox, a bad TTL or subject.
    pub fn create(&self, value: &[u8], opts: CreateOptions) -> Result<Created> {
        self.durable(|| self.core.create(value, &opts))
    }

    /// Resolves a token; see [`xems_core::SessionStore::resolve`].
    ///
    /// # Errors
    ///
    /// A malformed token, a grace period above 55 s, a value that fails
    /// authentication.
    pub fn resolve(&self, token: &str, opts: ResolveOptions) -> Result<Option<Resolved>> {
        self.durable(|| self.core.resolve(token, &opts))
    }

    /// Reads without rotating or refreshing.
    ///
    /// # Errors
    ///
    /// As [`resolve`](Self::resolve).
    pub fn get(&self, key: &str) -> Result<Option<Resolved>> {
        self.durable(|| self.core.resolve(key, &ResolveOptions::new()))
    }

    /// Writes under a caller key; see [`xems_core::SessionStore::set`].
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create), plus [`Error::TokenRetired`].
    pub fn set(&self, key: &str, value: &[u8], opts: CreateOptions) -> Result<SessionMeta> {
        self.durable(|| self.core.set(key, value, &opts))
    }

    /// Deletes a session and all its tokens.
    ///
    /// # Errors
    ///
    /// A malformed key.
    pub fn del(&self, key: &str) -> Result<bool> {
        self.durable(|| self.core.del(key))
    }

    /// Whether a key or token resolves.
    ///
    /// # Errors
    ///
    /// A malformed key.
    pub fn exists(&self, key: &str) -> Result<bool> {
        self.durable(|| self.core.exists(key))
    }

    /// Slides the idle expiry.
    ///
    /// # Errors
    ///
    /// A malformed key or a zero TTL.
    pub fn touch(&self, key: &str, ttl: Option<Duration>) -> Result<Option<SessionMeta>> {
        self.durable(|| self.core.touch(key, ttl))
    }

    /// Compare-and-set on the version.
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set).
    pub fn update_if(&self, key: &str, expected_version: u64, value: &[u8]) -> Result<UpdateOutcome> {
        self.durable(|| self.core.update_if(key, expected_version, value))
    }

    /// Moves a session into sandbox `to`; see
    /// [`xems_core::SessionStore::migrate`].
    ///
    /// # Errors
    ///
    /// A full target, an oversized value, a bad TTL or subject.
    pub fn migrate(
        &self,
        token: &str,
        to: &Sandbox,
        value: Option<&[u8]>,
        opts: CreateOptions,
    ) -> Result<Option<Created>> {
        self.durable(|| self.core.migrate(token, &to.core, value, &opts))
    }

    /// The live sessions of a subject.
    ///
    /// # Errors
    ///
    /// A bad subject.
    pub fn list_subject(&self, subject: &str) -> Result<Vec<SessionMeta>> {
        self.durable(|| self.core.list_subject(subject))
    }

    /// Revokes a subject's sessions except the one `except` resolves to.
    ///
    /// # Errors
    ///
    /// A bad subject or token.
    pub fn revoke_subject(&self, subject: &str, except: Option<&str>) -> Result<usize> {
        self.durable(|| self.core.revoke_subject(subject, except))
    }

    /// Revokes one session of a subject by its public id.
    ///
    /// # Errors
    ///
    /// A bad subject.
    pub fn revoke_session(&self, subject: &str, id: &SessionId) -> Result<bool> {
        self.durable(|| self.core.revoke_session(subject, id))
    }

    /// What the shards hold, counted directly.
    pub fn census(&self) -> Census {
        self.core.census()
    }
}

#[cfg(test)]
mod tests {
    use xems_core::{KeyDeriver, MasterSecret};

    use super::*;

    fn keys(sandbox: &str, secret: &MasterSecret) -> SandboxKeys {
        SandboxKeys::derive(sandbox, &KeyDeriver::new(secret, b"stable"), &KeyDeriver::new(secret, b"process"))
    }

    fn open(keys: &SandboxKeys, family: u64, version: u32, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        let mut buf = sealed[FAMILY_PREFIX..].to_vec();
        keys.open_value(family, version, &mut buf)?;
        Ok(buf)
    }

    #[test]
    fn a_sealed_value_opens_only_for_its_record_version_and_sandbox() {
        xems_testkit::logs::capture();
        let secret = MasterSecret::generate();
        let a = keys("a", &secret);
        let b = keys("b", &secret);
        let sealed = a.seal_value(7, 3, b"marker-plaintext");
        assert_eq!(u64::from_le_bytes(sealed[..8].try_into().unwrap()), 7, "family prefix");
        assert!(!sealed.windows(6).any(|w| w == b"marker"), "no plaintext in the sealed bytes");
        assert_eq!(open(&a, 7, 3, &sealed).unwrap(), b"marker-plaintext");
        assert_eq!(open(&a, 8, 3, &sealed), Err(OpenError), "moved onto another record");
        assert_eq!(open(&a, 7, 2, &sealed), Err(OpenError), "rolled back to another version");
        assert_eq!(open(&b, 7, 3, &sealed), Err(OpenError), "moved to another sandbox");
        let other_process = SandboxKeys::derive(
            "a",
            &KeyDeriver::new(&secret, b"stable"),
            &KeyDeriver::new(&secret, b"another process"),
        );
        assert_eq!(open(&other_process, 7, 3, &sealed), Err(OpenError), "another process's key");
        for i in FAMILY_PREFIX..sealed.len() {
            let mut tampered = sealed.to_vec();
            tampered[i] ^= 0x01;
            assert_eq!(open(&a, 7, 3, &tampered), Err(OpenError), "byte {i} flipped");
        }
    }

    #[test]
    fn sealed_tokens_bind_family_and_rotation() {
        xems_testkit::logs::capture();
        let secret = MasterSecret::generate();
        let a = keys("a", &secret);
        let (token, _) = a.mint(1, 0);
        let sealed = a.seal_token(5, 2, &token);
        assert_eq!(a.open_token(5, 2, &sealed).unwrap(), token);
        assert!(a.open_token(5, 3, &sealed).is_err());
        assert!(a.open_token(6, 2, &sealed).is_err());
        assert!(!sealed.windows(10).any(|w| token.expose().as_bytes().windows(10).any(|t| t == w)));
    }

    /// How the shards see `text` (as `SandboxCore::address`, without the
    /// prefetch).
    fn address(keys: &SandboxKeys, text: &str) -> Address {
        keys.address_at(text, keys.selected(text).as_ref())
    }

    #[test]
    fn both_token_formats_address_their_record() {
        xems_testkit::logs::capture();
        let a = keys("a", &MasterSecret::generate());
        for format in [TokenFormat::Text, TokenFormat::Raw] {
            let (token, digest) = a.mint_as(9, 77, format);
            let addr = address(&a, token.expose());
            assert_eq!((addr.slot, addr.digest), (Some(77), digest.index()), "{format:?}");
            let text_digest = a.index.digest(token.expose().as_bytes()).index();
            assert_eq!(addr.digest == text_digest, format == TokenFormat::Text, "{format:?}");
        }
    }

    #[test]
    fn selectors_name_their_slot_and_nothing_else() {
        xems_testkit::logs::capture();
        let secret = MasterSecret::generate();
        let a = keys("a", &secret);
        for (route, slot) in [(0u8, 0u32), (7, 1), (255, 123_456), (64, u32::MAX >> 1)] {
            let (token, digest) = a.mint(route, slot);
            assert_eq!(token.expose().len(), ENGINE_TOKEN_LEN);
            let addr = address(&a, token.expose());
            assert_eq!((addr.route, addr.slot), (route, Some(slot)));
            assert_eq!(addr.digest, digest.index());
        }
        let (token, _) = a.mint(3, 42);
        // Another sandbox's key decrypts the selector to garbage: no slot.
        assert_eq!(address(&keys("b", &secret), token.expose()).slot, None);
        // A forged selector, or a changed routing byte, names no slot.
        let mut forged = token.expose().to_owned().into_bytes();
        forged[5] = if forged[5] == b'A' { b'B' } else { b'A' };
        assert_eq!(address(&a, std::str::from_utf8(&forged).unwrap()).slot, None);
        let mut rerouted = token.expose().to_owned().into_bytes();
        rerouted[0] = if rerouted[0] == b'A' { b'B' } else { b'A' };
        assert_eq!(address(&a, std::str::from_utf8(&rerouted).unwrap()).slot, None);
        // Caller keys have none either.
        assert_eq!(address(&a, "user:42:otp").slot, None);
        assert_eq!(address(&a, &"x".repeat(ENGINE_TOKEN_LEN)).slot, None);
    }

    #[test]
    fn session_ids_are_stable_per_family_and_distinct() {
        xems_testkit::logs::capture();
        let secret = MasterSecret::generate();
        let a = keys("a", &secret);
        assert_eq!(a.session_id(1), a.session_id(1));
        assert_ne!(a.session_id(1), a.session_id(2));
        assert_ne!(a.session_id(1), keys("b", &secret).session_id(1));
    }
}

#[cfg(test)]
mod json_form_tests {
    use xems_core::{CreateOptions, ValueForm};

    use crate::Engine;

    /// Snapshots hold raw bytes: a record kept in the JSON form (an engine
    /// without a journal) is read back into bytes in its image.
    #[test]
    fn images_hold_the_raw_bytes_of_json_form_records() {
        xems_testkit::logs::capture();
        let e = Engine::builder().sweep_interval(None).build().unwrap();
        let s = e.sandbox("s").unwrap();
        s.set("k", br#"{\"a\":\"b\\c\n\u0001\"}"#, CreateOptions::new().with_value_form(ValueForm::Json)).unwrap();
        let images = e.images();
        assert_eq!(images.len(), 1);
        assert_eq!(&images[0].value[..], b"{\"a\":\"b\\c\n\x01\"}");
        assert_eq!(s.get("k").unwrap().unwrap().value.as_bytes(), b"{\"a\":\"b\\c\n\x01\"}");
    }
}
