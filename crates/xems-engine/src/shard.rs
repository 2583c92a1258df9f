//! One shard of a sandbox: the records, the index of caller keys, the
//! subject index and the expiry wheel, all under one lock.
//!
//! Every token of a session routes to the same shard (the routing byte is
//! carried from token to successor), so a rotation, a grace hit and a reuse
//! revocation each take exactly one lock.
//!
//! **Minted tokens find their record without an index.** A token carries an
//! encrypted *selector* naming its record's slot, and a 256-bit *verifier*;
//! the record stores only the keyed digest of the whole token, compared in
//! constant time (the selector/verifier pattern). A rotation mints the
//! successor for the same slot: no index entry is added or removed, and a
//! lookup is one memory access instead of a hash-table probe chain. Caller
//! keys (chosen by the application, e.g. the XyPriss host's first token)
//! carry no selector and are found through `keys`, a hash table of digests.
//!
//! Layout (per live record, about 72 bytes here plus the sealed value):
//!
//! ```text
//! records: Slab<Record>   key digest(16) sealed-box(16) deadlines(24)
//!                         version, ttl|flag, wheel bucket, extra slot (16)
//! sealed:  family id (8, LE) || AES-256-GCM ciphertext || tag (16)
//! keys:    KeyIndex (digest, slot)     caller keys only, current or retired
//! ```
//!
//! Sessions that have rotated or carry a subject also have an [`Extra`]
//! (creation time, subject, retired tokens, the sealed current token while a
//! grace window is open) in one contiguous block; plain records pay nothing
//! for it.

use hashbrown::HashMap;
use smallvec::SmallVec;
use xems_core::{
    Counters, EventKind, Fingerprint, Refresh, ResolveOptions, ResolveOutcome, Rotation, Token, ValueForm,
};

use crate::keyindex::{KeyIndex, digests_equal};
use crate::persist::{Change, Image, Journal, Put, RetiredKey, Ticket};
use crate::retired::{Retired, RetiredList};
use crate::sandbox::{SandboxCore, SealedTokenBytes};
use crate::slab::Slab;
use crate::wheel::{BucketId, Wheel};
use xems_core::ReusePolicy;

/// No extra (in `Record::extra`).
const NO_EXTRA: u32 = u32::MAX;
/// Retired tokens a session keeps in any case, while in their grace window.
const MAX_RETIRED: usize = 1024;
/// In `Record::ttl_flags`: the current address is a caller key (it has an
/// entry in `keys`). TTLs are at most five days, far below 2^31 ms.
const CALLER_KEY: u32 = 1 << 31;
/// In `Record::ttl_flags`: the value is kept in its JSON form
/// ([`ValueForm::Json`]). Never set when the engine journals (the journal
/// and snapshots take raw bytes; the sandbox converts before a write).
const JSON_FORM: u32 = 1 << 30;
/// The flag bits of `Record::ttl_flags`.
const FLAGS: u32 = CALLER_KEY | JSON_FORM;

/// Bytes of the family id prefix in a sealed value.
pub(crate) const FAMILY_PREFIX: usize = 8;

/// An address as the shard sees it: the index part of its keyed digest, its
/// fingerprint, its routing byte, and the slot its selector names (minted
/// tokens only).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Address {
    pub(crate) digest: [u8; 16],
    pub(crate) fp: Fingerprint,
    pub(crate) route: u8,
    pub(crate) slot: Option<u32>,
}

struct Record {
    /// Index digest (first 16 bytes) of the current token or key.
    key: [u8; 16],
    /// Family id (8 bytes, LE) then the sealed value.
    sealed: Box<[u8]>,
    idle_deadline: u64,
    abs_deadline: u64,
    /// When the current token was minted (creation time until a rotation).
    token_born: u64,
    version: u32,
    /// Idle TTL in ms, and the `CALLER_KEY` and `JSON_FORM` flags in the
    /// top bits.
    ttl_flags: u32,
    /// The one wheel bucket this record is validly registered in.
    wheel: BucketId,
    /// Slot of this record's [`Extra`], or `NO_EXTRA`.
    extra: u32,
}

impl Record {
    fn family(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.sealed[..FAMILY_PREFIX]);
        u64::from_le_bytes(b)
    }

    fn ttl_ms(&self) -> u32 {
        self.ttl_flags & !FLAGS
    }

    fn set_ttl_ms(&mut self, ms: u32) {
        self.ttl_flags = (self.ttl_flags & FLAGS) | (ms & !FLAGS);
    }

    fn form(&self) -> ValueForm {
        if self.ttl_flags & JSON_FORM != 0 { ValueForm::Json } else { ValueForm::Raw }
    }

    fn set_form(&mut self, form: ValueForm) {
        self.ttl_flags = (self.ttl_flags & !JSON_FORM) | form_flag(form);
    }

    fn caller_key(&self) -> bool {
        self.ttl_flags & CALLER_KEY != 0
    }
}

/// A value being written: its plaintext, in the form it is given in.
#[derive(Clone, Copy)]
pub(crate) struct NewValue<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) form: ValueForm,
}

fn form_flag(form: ValueForm) -> u32 {
    if form == ValueForm::Json { JSON_FORM } else { 0 }
}

/// What a session has beyond a plain record.
struct Extra {
    created_at: u64,
    subject: Option<[u8; 16]>,
    /// Retired addresses, oldest first: at most `retired_window` past their
    /// grace, plus every one still in grace (up to `MAX_RETIRED`).
    retired: RetiredList,
    /// The current token, sealed, while any retired token is in grace.
    current: Option<SealedToken>,
    /// Rotations so far: the nonce counter of the token seal.
    rotations: u32,
}

struct SealedToken {
    sealed: SealedTokenBytes,
    until: u64,
}

/// Where a batch prefetch looks for an address's record.
#[derive(Clone, Copy)]
pub(crate) enum HintTarget {
    /// The slot a minted token's selector names.
    Slot(u32),
    /// A caller key's index digest, looked up in `keys`.
    Key([u8; 16]),
}

/// Where an address leads.
enum Addr {
    Missing,
    Live(u32),
    /// A retired address within its grace window; its session's record.
    Grace(u32),
    /// A retired address past its grace window; its session's record.
    Retired(u32),
}

/// The metadata of a record, as numbers (the sandbox turns it into a
/// `SessionMeta`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct MetaParts {
    pub(crate) family: u64,
    pub(crate) version: u32,
    pub(crate) created_at: u64,
    pub(crate) expires_at: u64,
    pub(crate) abs_deadline: u64,
    pub(crate) ttl_ms: u32,
    pub(crate) capped: bool,
}

/// A record read under the lock, to be opened after it is released (its
/// ciphertext || tag was appended to the caller's buffer).
pub(crate) struct Found {
    /// The form of the value sealed.
    pub(crate) form: ValueForm,
    pub(crate) meta: MetaParts,
    pub(crate) token: Option<Token>,
    pub(crate) outcome: ResolveOutcome,
}

/// A record taken out of a shard (for migration).
pub(crate) struct Taken {
    pub(crate) sealed: Vec<u8>,
    pub(crate) form: ValueForm,
    pub(crate) family: u64,
    pub(crate) version: u32,
    pub(crate) subject: Option<[u8; 16]>,
}

/// Lifetimes of a new record.
#[derive(Clone, Copy)]
pub(crate) struct Lifetimes {
    pub(crate) ttl_ms: u32,
    pub(crate) abs_deadline: u64,
    pub(crate) capped: bool,
}

/// Events raised under the lock, delivered after it is released.
pub(crate) type Raised = SmallVec<[(EventKind, Option<Fingerprint>, &'static str); 2]>;

/// Per-operation context.
pub(crate) struct Cx<'a> {
    pub(crate) now: u64,
    pub(crate) sb: &'a SandboxCore,
    /// Whether anyone listens to events (otherwise only counters move).
    pub(crate) listening: bool,
    pub(crate) raised: Raised,
    /// Where changes go, if the engine persists.
    pub(crate) journal: Option<&'a dyn Journal>,
    /// The ticket of the last change this operation journaled.
    pub(crate) ticket: Option<Ticket>,
}

impl Cx<'_> {
    fn raise(&mut self, kind: EventKind, fp: Option<Fingerprint>, detail: &'static str) {
        if self.listening {
            self.raised.push((kind, fp, detail));
        }
    }

    fn log(&mut self, change: Change<'_>) {
        if let Some(journal) = self.journal {
            self.ticket = Some(journal.append(&change));
        }
    }
}

/// Outcome of a write that may meet a retired token.
pub(crate) enum WriteOutcome {
    /// Wrote the record (replaced or created).
    Written(MetaParts),
    /// The key is a retired token past its grace.
    Retired,
    /// The sandbox has no room (the caller may evict and retry).
    Full,
}

/// Outcome of a compare-and-set.
pub(crate) enum CasOutcome {
    Updated(MetaParts),
    Conflict(u32),
    NotFound,
    Retired,
    Full,
}

pub(crate) struct Shard {
    keys: KeyIndex,
    records: Slab<Record>,
    extras: Slab<Extra>,
    subjects: HashMap<[u8; 16], Vec<u32>>,
    wheel: Wheel,
    pub(crate) counters: Counters,
}

impl Shard {
    pub(crate) fn new(epoch_ms: u64) -> Self {
        Shard {
            keys: KeyIndex::default(),
            records: Slab::new(),
            extras: Slab::new(),
            subjects: HashMap::new(),
            wheel: Wheel::new(epoch_ms),
            counters: Counters::default(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    pub(crate) fn retired_len(&self) -> usize {
        self.extras.iter().map(|(_, x)| x.retired.len()).sum()
    }

    pub(crate) fn wheel_entries(&self) -> usize {
        self.wheel.entries()
    }

    /// The slot the next new record will take (a new token's selector must
    /// name it before the record exists).
    pub(crate) fn next_slot(&mut self) -> u32 {
        self.records.vacant()
    }

    // ----- the caller-key index --------------------------------------------

    fn key_slot(&self, key: &[u8; 16]) -> Option<u32> {
        self.keys.get(key)
    }

    fn key_insert(&mut self, key: [u8; 16], slot: u32) {
        self.keys.insert(key, slot);
    }

    fn key_remove(&mut self, key: &[u8; 16]) {
        self.keys.remove(key);
    }

    /// Whether a caller key is taken.
    fn contains_key(&self, key: &[u8; 16]) -> bool {
        self.key_slot(key).is_some()
    }

    fn locate(&mut self, cx: &mut Cx<'_>, addr: &Address) -> Addr {
        let slot = match addr.slot {
            Some(slot) => slot,
            None => match self.key_slot(&addr.digest) {
                Some(slot) => slot,
                None => return Addr::Missing,
            },
        };
        let Some(record) = self.records.get(slot) else { return Addr::Missing };
        if digests_equal(&record.key, &addr.digest) {
            if cx.now >= record.idle_deadline {
                self.remove_family(cx, slot, EventKind::Expired, "expired");
                return Addr::Missing;
            }
            self.prefetch_parts(record);
            return Addr::Live(slot);
        }
        let Some(until) = self
            .extras
            .get(record.extra)
            .and_then(|x| x.retired.iter().find(|r| digests_equal(&r.key, &addr.digest)))
            .map(Retired::grace_until)
        else {
            return Addr::Missing;
        };
        if cx.now >= record.idle_deadline {
            self.remove_family(cx, slot, EventKind::Expired, "expired");
            return Addr::Missing;
        }
        if cx.now < until {
            self.prefetch_parts(record);
            Addr::Grace(slot)
        } else {
            Addr::Retired(slot)
        }
    }

    /// Starts fetching the record in `slot` (see [`crate::prefetch`]): the
    /// caller computes a token's digest meanwhile.
    pub(crate) fn prefetch_record(&self, slot: u32) {
        self.records.prefetch(slot);
    }

    /// The second step of a batch prefetch ([`crate::prefetch`]): starts
    /// fetching where `target` leads (the record a selector names, or the
    /// bucket where a caller key's lookup begins). Only hints, no loads: a
    /// pass over a whole batch issues every fetch before any completes.
    pub(crate) fn hint_fetch(&self, target: &HintTarget) {
        match target {
            HintTarget::Slot(slot) => self.records.prefetch(*slot),
            HintTarget::Key(digest) => self.keys.prefetch(digest),
        }
    }

    /// The third step, for a caller key: its slot (the lookup finds its
    /// bucket fetched by now), its record being fetched.
    pub(crate) fn hint_slot(&self, digest: &[u8; 16]) -> Option<u32> {
        let slot = self.key_slot(digest)?;
        self.records.prefetch(slot);
        Some(slot)
    }

    /// The fourth step: starts fetching the sealed value
    /// and side record of the record in `slot`, if there is one.
    pub(crate) fn hint_parts(&self, slot: u32) {
        if let Some(record) = self.records.get(slot) {
            self.prefetch_parts(record);
        }
    }

    /// Starts fetching what an operation on a located record reads next: its
    /// sealed value and its extra. They overlap the work that follows
    /// (minting a successor, sealing a value) instead of following it.
    fn prefetch_parts(&self, record: &Record) {
        crate::prefetch::prefetch_bytes(&record.sealed);
        self.extras.prefetch(record.extra);
    }

    // ----- records ---------------------------------------------------------

    fn meta(&self, slot: u32, capped: bool) -> MetaParts {
        let r = self.records.get(slot).expect("meta of a live record");
        MetaParts {
            family: r.family(),
            version: r.version,
            created_at: self.extras.get(r.extra).map_or(r.token_born, |x| x.created_at),
            expires_at: r.idle_deadline,
            abs_deadline: r.abs_deadline,
            ttl_ms: r.ttl_ms(),
            capped,
        }
    }

    /// The record at `slot`, its ciphertext || tag appended to `into`.
    fn found(
        &self,
        slot: u32,
        token: Option<Token>,
        outcome: ResolveOutcome,
        capped: bool,
        into: &mut Vec<u8>,
    ) -> Found {
        let r = self.records.get(slot).expect("found a live record");
        into.extend_from_slice(&r.sealed[FAMILY_PREFIX..]);
        Found { form: r.form(), meta: self.meta(slot, capped), token, outcome }
    }

    fn extra_mut(&mut self, slot: u32) -> &mut Extra {
        let r = self.records.get_mut(slot).expect("extra of a live record");
        if r.extra == NO_EXTRA {
            r.extra = self.extras.insert(Extra {
                created_at: r.token_born,
                subject: None,
                retired: RetiredList::default(),
                current: None,
                rotations: 0,
            });
        }
        self.extras.get_mut(r.extra).expect("record's extra is live")
    }

    fn extra(&self, slot: u32) -> Option<&Extra> {
        self.extras.get(self.records.get(slot)?.extra)
    }

    fn register(&mut self, slot: u32, now: u64) {
        let r = self.records.get_mut(slot).expect("register a live record");
        let id = self.wheel.bucket_for(r.idle_deadline, now);
        r.wheel = id;
        self.wheel.insert(id, slot);
    }

    /// Moves the idle deadline; registers the record again if the deadline
    /// moved before its bucket.
    fn set_deadline(&mut self, slot: u32, now: u64, deadline: u64) {
        let r = self.records.get_mut(slot).expect("deadline of a live record");
        r.idle_deadline = deadline.min(r.abs_deadline);
        if self.wheel.starts_after(r.wheel, r.idle_deadline) {
            let id = self.wheel.bucket_for(r.idle_deadline, now);
            r.wheel = id;
            self.wheel.insert(id, slot);
        }
    }

    /// Applies a refresh; returns whether the TTL asked for was capped.
    fn refresh(&mut self, cx: &mut Cx<'_>, slot: u32, refresh: Refresh) -> bool {
        let now = cx.now;
        let capped = match refresh {
            Refresh::No => return false,
            Refresh::Idle => {
                let ttl = u64::from(self.records.get(slot).expect("refresh a live record").ttl_ms());
                self.set_deadline(slot, now, now + ttl);
                false
            }
            Refresh::To(d) => {
                let capped = xems_core::cap_ttl(d);
                let ms = ms_u32(capped.effective);
                self.records.get_mut(slot).expect("refresh a live record").set_ttl_ms(ms);
                self.set_deadline(slot, now, now + u64::from(ms));
                capped.capped
            }
        };
        let r = self.records.get(slot).expect("refreshed a live record");
        cx.log(Change::Touch {
            sandbox: &cx.sb.name,
            family: r.family(),
            idle_deadline: r.idle_deadline,
            idle_ttl_ms: r.ttl_ms(),
        });
        capped
    }

    /// Inserts a new record under `addr`: a caller key (entered in the key
    /// index), or a minted token whose selector names `next_slot()`. `value`
    /// is the plaintext of `sealed`, for the journal.
    pub(crate) fn insert(
        &mut self,
        cx: &mut Cx<'_>,
        addr: &Address,
        sealed: Box<[u8]>,
        value: NewValue<'_>,
        life: Lifetimes,
        subject: Option<[u8; 16]>,
    ) -> MetaParts {
        debug_assert!(cx.journal.is_none() || value.form == ValueForm::Raw, "the journal takes raw values");
        let now = cx.now;
        let caller = addr.slot.is_none();
        let record = Record {
            key: addr.digest,
            sealed,
            idle_deadline: (now + u64::from(life.ttl_ms)).min(life.abs_deadline),
            abs_deadline: life.abs_deadline,
            token_born: now,
            version: 1,
            ttl_flags: (life.ttl_ms & !FLAGS) | if caller { CALLER_KEY } else { 0 } | form_flag(value.form),
            wheel: 0,
            extra: NO_EXTRA,
        };
        let slot = self.records.insert(record);
        debug_assert!(addr.slot.is_none_or(|s| s == slot), "a minted token names the slot it gets");
        if caller {
            self.key_insert(addr.digest, slot);
        }
        self.register(slot, now);
        if let Some(subject) = subject {
            self.extra_mut(slot).subject = Some(subject);
            self.subjects.entry(subject).or_default().push(slot);
        }
        self.counters.add(EventKind::Created, 1);
        cx.raise(EventKind::Created, Some(addr.fp), "");
        let meta = self.meta(slot, life.capped);
        cx.log(Change::Put(Put {
            sandbox: &cx.sb.name,
            family: meta.family,
            route: addr.route,
            slot,
            key: addr.digest,
            caller_key: caller,
            version: 1,
            value: value.bytes,
            created_at: now,
            idle_deadline: meta.expires_at,
            abs_deadline: meta.abs_deadline,
            idle_ttl_ms: meta.ttl_ms,
            subject,
        }));
        meta
    }

    /// Removes a session: its record, its caller keys, its subject entry.
    fn remove_family(&mut self, cx: &mut Cx<'_>, slot: u32, kind: EventKind, detail: &'static str) {
        let Some(record) = self.records.remove(slot) else { return };
        if record.caller_key() {
            self.key_remove(&record.key);
        }
        if let Some(extra) = self.extras.remove(record.extra) {
            for r in extra.retired.iter().filter(|r| r.caller()) {
                self.key_remove(&r.key);
            }
            if let Some(subject) = extra.subject
                && let Some(list) = self.subjects.get_mut(&subject)
            {
                list.retain(|&s| s != slot);
                if list.is_empty() {
                    self.subjects.remove(&subject);
                }
            }
        }
        cx.sb.release(1, record.sealed.len() as u64);
        self.counters.add(kind, 1);
        cx.raise(kind, None, detail);
        // Expiry needs no record: the deadline is in the record's image.
        if kind != EventKind::Expired {
            cx.log(Change::Remove { sandbox: &cx.sb.name, family: record.family() });
        }
    }

    fn reuse(&mut self, cx: &mut Cx<'_>, slot: u32, fp: Fingerprint) {
        self.counters.add(EventKind::ReuseDetected, 1);
        cx.raise(EventKind::ReuseDetected, Some(fp), "");
        if cx.sb.engine.reuse_policy == ReusePolicy::RevokeSession {
            self.remove_family(cx, slot, EventKind::Deleted, "session revoked after token reuse");
        }
    }

    // ----- rotation --------------------------------------------------------

    /// Mints the successor of a live record's token, retiring the old
    /// address with a grace window. The successor names the same slot: no
    /// index entry moves.
    fn rotate(&mut self, cx: &mut Cx<'_>, slot: u32, route: u8, grace_ms: u64) -> Token {
        let now = cx.now;
        let (token, digest) = cx.sb.keys.mint(route, slot);
        let new_key = digest.index();
        let window = cx.sb.engine.retired_window;
        // Create the extra first: it records the creation time before
        // `token_born` moves.
        self.extra_mut(slot);
        let record = self.records.get_mut(slot).expect("rotate a live record");
        let old_key = std::mem::replace(&mut record.key, new_key);
        let old_caller = record.caller_key();
        record.ttl_flags &= !CALLER_KEY;
        record.token_born = now;
        let family = record.family();
        let extra = self.extras.get_mut(record.extra).expect("extra was just ensured");
        // Forget the oldest retired addresses beyond the window, but never
        // one still in its grace window (a burst of rotations must not push
        // out a token a concurrent request still carries), up to a hard cap.
        // Pruned before the push, so a list at its window does not outgrow
        // its inline room for a moment.
        let mut dropped: SmallVec<[[u8; 16]; 2]> = SmallVec::new();
        while extra.retired.len() >= window {
            if extra.retired.front().is_some_and(|r| r.grace_until() > now) && extra.retired.len() < MAX_RETIRED {
                break;
            }
            let Some(gone) = extra.retired.pop_front() else { break };
            if gone.caller() {
                dropped.push(gone.key);
            }
        }
        extra.retired.push_back(Retired::new(old_key, now + grace_ms, old_caller));
        extra.rotations = extra.rotations.wrapping_add(1);
        let until = extra.current.as_ref().map_or(0, |c| c.until).max(now + grace_ms);
        extra.current = (until > now)
            .then(|| SealedToken { sealed: cx.sb.keys.seal_token(family, extra.rotations, &token), until });
        for key in dropped {
            self.key_remove(&key);
        }
        self.counters.add(EventKind::Rotated, 1);
        cx.raise(EventKind::Rotated, None, "");
        cx.log(Change::Rotate {
            sandbox: &cx.sb.name,
            family,
            old_key,
            old_caller_key: old_caller,
            grace_until: now + grace_ms,
            new_key,
            token_born: now,
            current: (until > now).then_some((&token, until)),
        });
        token
    }

    /// The current token of a session whose retired token is in grace.
    fn current_token(&self, cx: &Cx<'_>, slot: u32) -> Option<Token> {
        let extra = self.extra(slot)?;
        let current = extra.current.as_ref()?;
        let family = self.records.get(slot)?.family();
        cx.sb.keys.open_token(family, extra.rotations, &current.sealed).ok()
    }

    // ----- operations ------------------------------------------------------

    /// Resolves `addr`; a record found has its ciphertext || tag appended
    /// to `into`.
    pub(crate) fn resolve(
        &mut self,
        cx: &mut Cx<'_>,
        addr: &Address,
        opts: &ResolveOptions,
        into: &mut Vec<u8>,
    ) -> Option<Found> {
        let now = cx.now;
        match self.locate(cx, addr) {
            Addr::Missing => None,
            Addr::Retired(slot) => {
                self.reuse(cx, slot, addr.fp);
                None
            }
            Addr::Grace(slot) => {
                // Never mint here: the session's current token is the answer.
                let token = self.current_token(cx, slot);
                let capped = self.refresh(cx, slot, opts.refresh);
                self.counters.add(EventKind::Resolved, 1);
                self.counters.add(EventKind::GraceHit, 1);
                cx.raise(EventKind::GraceHit, Some(addr.fp), "");
                Some(self.found(slot, token, ResolveOutcome::Grace, capped, into))
            }
            Addr::Live(slot) => {
                let born = self.records.get(slot).expect("live").token_born;
                let rotate = match opts.rotate {
                    Rotation::Never => false,
                    Rotation::Always => true,
                    Rotation::OlderThan(age) => now.saturating_sub(born) >= ms_u64(age),
                };
                let (token, outcome) = if rotate {
                    (Some(self.rotate(cx, slot, addr.route, ms_u64(opts.grace))), ResolveOutcome::Rotated)
                } else {
                    // Drop a sealed current token once no grace window needs it.
                    let extra_slot = self.records.get(slot).expect("live").extra;
                    if let Some(extra) = self.extras.get_mut(extra_slot)
                        && extra.current.as_ref().is_some_and(|c| c.until <= now)
                    {
                        extra.current = None;
                    }
                    (None, ResolveOutcome::Current)
                };
                let capped = self.refresh(cx, slot, opts.refresh);
                self.counters.add(EventKind::Resolved, 1);
                cx.raise(EventKind::Resolved, Some(addr.fp), "");
                Some(self.found(slot, token, outcome, capped, into))
            }
        }
    }

    pub(crate) fn exists(&mut self, cx: &mut Cx<'_>, addr: &Address) -> bool {
        matches!(self.locate(cx, addr), Addr::Live(_) | Addr::Grace(_))
    }

    pub(crate) fn touch(&mut self, cx: &mut Cx<'_>, addr: &Address, refresh: Refresh) -> Option<MetaParts> {
        let slot = self.use_addr(cx, addr)?;
        let capped = self.refresh(cx, slot, refresh);
        Some(self.meta(slot, capped))
    }

    pub(crate) fn del(&mut self, cx: &mut Cx<'_>, addr: &Address) -> bool {
        match self.locate(cx, addr) {
            Addr::Missing => false,
            Addr::Live(slot) | Addr::Grace(slot) | Addr::Retired(slot) => {
                self.remove_family(cx, slot, EventKind::Deleted, "");
                true
            }
        }
    }

    /// Replaces the value of the record at `slot`, bumping its version.
    /// `None` if the sandbox has no room for the growth.
    fn replace(&mut self, cx: &Cx<'_>, slot: u32, value: NewValue<'_>) -> Result<Option<()>, xems_core::Error> {
        debug_assert!(cx.journal.is_none() || value.form == ValueForm::Raw, "the journal takes raw values");
        let r = self.records.get_mut(slot).expect("replace a live record");
        let version = r
            .version
            .checked_add(1)
            .ok_or_else(|| xems_core::Error::InvalidArgument("record version counter exhausted".into()))?;
        let old_len = r.sealed.len();
        let new_len = FAMILY_PREFIX + value.bytes.len() + xems_core::SealKey::TAG_LEN;
        if new_len > old_len && !cx.sb.try_take(0, (new_len - old_len) as u64) {
            return Ok(None);
        }
        r.sealed = cx.sb.keys.seal_value(r.family(), version, value.bytes);
        r.version = version;
        r.set_form(value.form);
        if new_len < old_len {
            cx.sb.release(0, (old_len - new_len) as u64);
        }
        Ok(Some(()))
    }

    /// Journals the state of a record after its value was replaced.
    fn log_replace(&self, cx: &mut Cx<'_>, slot: u32, value: &[u8]) {
        if cx.journal.is_none() {
            return;
        }
        let r = self.records.get(slot).expect("replaced a live record");
        let subject = self.extra(slot).and_then(|x| x.subject);
        cx.log(Change::Replace {
            sandbox: &cx.sb.name,
            family: r.family(),
            version: r.version,
            value,
            idle_deadline: r.idle_deadline,
            abs_deadline: r.abs_deadline,
            idle_ttl_ms: r.ttl_ms(),
            subject,
        });
    }

    /// `set`: replace the value of an existing record (keeping its absolute
    /// deadline, restarting its idle TTL) or create a new one under a caller
    /// key (a minted token that leads nowhere is never recreated).
    pub(crate) fn set(
        &mut self,
        cx: &mut Cx<'_>,
        addr: &Address,
        life: Lifetimes,
        subject: Option<[u8; 16]>,
        value: NewValue<'_>,
        new_family: u64,
    ) -> Result<WriteOutcome, xems_core::Error> {
        match self.locate(cx, addr) {
            Addr::Retired(slot) => {
                self.reuse(cx, slot, addr.fp);
                Ok(WriteOutcome::Retired)
            }
            Addr::Live(slot) | Addr::Grace(slot) => {
                if self.replace(cx, slot, value)?.is_none() {
                    return Ok(WriteOutcome::Full);
                }
                let now = cx.now;
                let r = self.records.get_mut(slot).expect("live");
                r.set_ttl_ms(life.ttl_ms);
                r.abs_deadline = r.abs_deadline.min(life.abs_deadline);
                self.set_deadline(slot, now, now + u64::from(life.ttl_ms));
                if let Some(subject) = subject {
                    self.set_subject(slot, subject);
                }
                self.log_replace(cx, slot, value.bytes);
                Ok(WriteOutcome::Written(self.meta(slot, life.capped)))
            }
            Addr::Missing => {
                let new_len = FAMILY_PREFIX + value.bytes.len() + xems_core::SealKey::TAG_LEN;
                if !cx.sb.try_take(1, new_len as u64) {
                    return Ok(WriteOutcome::Full);
                }
                // A token-shaped address that leads nowhere is stored as a
                // caller key: the application chose it.
                let key = Address { slot: None, ..*addr };
                let sealed = cx.sb.keys.seal_value(new_family, 1, value.bytes);
                Ok(WriteOutcome::Written(self.insert(cx, &key, sealed, value, life, subject)))
            }
        }
    }

    fn set_subject(&mut self, slot: u32, subject: [u8; 16]) {
        let extra = self.extra_mut(slot);
        let old = extra.subject.replace(subject);
        if old == Some(subject) {
            return;
        }
        if let Some(old) = old
            && let Some(list) = self.subjects.get_mut(&old)
        {
            list.retain(|&s| s != slot);
            if list.is_empty() {
                self.subjects.remove(&old);
            }
        }
        self.subjects.entry(subject).or_default().push(slot);
    }

    pub(crate) fn update_if(
        &mut self,
        cx: &mut Cx<'_>,
        addr: &Address,
        expected: u64,
        value: &[u8],
    ) -> Result<CasOutcome, xems_core::Error> {
        match self.locate(cx, addr) {
            Addr::Missing => Ok(CasOutcome::NotFound),
            Addr::Retired(slot) => {
                self.reuse(cx, slot, addr.fp);
                Ok(CasOutcome::Retired)
            }
            Addr::Live(slot) | Addr::Grace(slot) => {
                let current = self.records.get(slot).expect("live").version;
                if u64::from(current) != expected {
                    return Ok(CasOutcome::Conflict(current));
                }
                if self.replace(cx, slot, NewValue { bytes: value, form: ValueForm::Raw })?.is_none() {
                    return Ok(CasOutcome::Full);
                }
                self.log_replace(cx, slot, value);
                Ok(CasOutcome::Updated(self.meta(slot, false)))
            }
        }
    }

    /// Takes a session out of this shard (migration). Its tokens die here.
    pub(crate) fn take(&mut self, cx: &mut Cx<'_>, addr: &Address) -> Option<Taken> {
        let slot = self.use_addr(cx, addr)?;
        let r = self.records.get(slot).expect("live");
        let taken = Taken {
            sealed: r.sealed[FAMILY_PREFIX..].to_vec(),
            form: r.form(),
            family: r.family(),
            version: r.version,
            subject: self.extra(slot).and_then(|x| x.subject),
        };
        self.remove_family(cx, slot, EventKind::Migrated, "");
        Some(taken)
    }

    /// The record an address leads to, for an operation that uses it: a
    /// retired token past its grace is a replay and is handled as one.
    fn use_addr(&mut self, cx: &mut Cx<'_>, addr: &Address) -> Option<u32> {
        match self.locate(cx, addr) {
            Addr::Missing => None,
            Addr::Retired(slot) => {
                self.reuse(cx, slot, addr.fp);
                None
            }
            Addr::Live(slot) | Addr::Grace(slot) => Some(slot),
        }
    }

    /// The sealed size of the record an address resolves to.
    pub(crate) fn sealed_len(&mut self, cx: &mut Cx<'_>, addr: &Address) -> Option<usize> {
        let slot = self.use_addr(cx, addr)?;
        self.records.get(slot).map(|r| r.sealed.len())
    }

    /// The family record slot an address resolves to (live or in grace).
    pub(crate) fn family_slot(&mut self, cx: &mut Cx<'_>, addr: &Address) -> Option<u32> {
        match self.locate(cx, addr) {
            Addr::Live(slot) | Addr::Grace(slot) => Some(slot),
            Addr::Missing | Addr::Retired(_) => None,
        }
    }

    /// The live sessions of a subject.
    pub(crate) fn subject_sessions(&self, now: u64, subject: &[u8; 16]) -> Vec<MetaParts> {
        let Some(list) = self.subjects.get(subject) else { return Vec::new() };
        list.iter()
            .filter(|&&slot| self.records.get(slot).is_some_and(|r| now < r.idle_deadline))
            .map(|&slot| self.meta(slot, false))
            .collect()
    }

    /// Revokes the sessions of a subject for which `pick(slot, family)`
    /// holds.
    pub(crate) fn revoke_subject(
        &mut self,
        cx: &mut Cx<'_>,
        subject: &[u8; 16],
        mut pick: impl FnMut(u32, u64) -> bool,
    ) -> usize {
        let Some(list) = self.subjects.get(subject) else { return 0 };
        let doomed: Vec<u32> = list
            .iter()
            .copied()
            .filter(|&slot| self.records.get(slot).is_some_and(|r| pick(slot, r.family())))
            .collect();
        for &slot in &doomed {
            self.remove_family(cx, slot, EventKind::Deleted, "subject revoked");
        }
        doomed.len()
    }

    // ----- expiry and eviction ---------------------------------------------

    /// Reclaims expired records, visiting at most `budget` wheel entries.
    /// Returns whether due entries remain.
    pub(crate) fn sweep(&mut self, cx: &mut Cx<'_>, budget: usize) -> bool {
        let now = cx.now;
        for _ in 0..budget {
            let Some((id, slot)) = self.wheel.pop_due(now) else {
                self.maybe_shrink();
                return false;
            };
            let Some(r) = self.records.get_mut(slot) else { continue };
            if r.wheel != id {
                continue;
            }
            if now >= r.idle_deadline {
                self.remove_family(cx, slot, EventKind::Expired, "expired");
            } else {
                let next = self.wheel.bucket_for(r.idle_deadline, now);
                r.wheel = next;
                self.wheel.insert(next, slot);
            }
        }
        true
    }

    /// Gives memory back after mass expiry.
    fn maybe_shrink(&mut self) {
        self.keys.shrink_if_sparse();
    }

    /// The order key of this shard's soonest-expiring bucket.
    pub(crate) fn soonest(&self) -> Option<u64> {
        self.wheel.first_key()
    }

    /// Evicts the record that expires soonest (to within a second). Returns
    /// whether a record was evicted.
    pub(crate) fn evict_soonest(&mut self, cx: &mut Cx<'_>) -> bool {
        loop {
            let Some(first) = self.wheel.first() else { return false };
            if Wheel::is_coarse(first) {
                // Split the coarse bucket so the earliest one is 1 s wide.
                for slot in self.wheel.take(first) {
                    if let Some(r) = self.records.get_mut(slot)
                        && r.wheel == first
                    {
                        let finer = self.wheel.finer_bucket(first, r.idle_deadline);
                        r.wheel = finer;
                        self.wheel.insert(finer, slot);
                    }
                }
                continue;
            }
            let Some((id, slot)) = self.wheel.pop_first() else { return false };
            let Some(r) = self.records.get_mut(slot) else { continue };
            if r.wheel != id {
                continue;
            }
            let here = self.wheel.finer_bucket(id, r.idle_deadline);
            if here != id {
                // The deadline slid past this bucket: file it where it is now.
                r.wheel = here;
                self.wheel.insert(here, slot);
                continue;
            }
            self.remove_family(cx, slot, EventKind::Evicted, "sandbox full");
            return true;
        }
    }

    // ----- snapshots and restore -------------------------------------------

    /// Images of every live record (snapshots). Values and the current
    /// tokens are opened with this process's keys.
    pub(crate) fn images(&self, sb: &SandboxCore, now: u64, route: u8) -> Vec<Image> {
        let mut out = Vec::with_capacity(self.records.len());
        for (slot, r) in self.records.iter() {
            if now >= r.idle_deadline {
                continue;
            }
            let family = r.family();
            let mut value = zeroize::Zeroizing::new(r.sealed[FAMILY_PREFIX..].to_vec());
            if sb.keys.open_value(family, r.version, &mut value).is_err() {
                tracing::error!(sandbox = %sb.name, "a record failed to open while snapshotting; skipped");
                continue;
            }
            // Images hold raw bytes. (A journaling engine keeps no record in
            // the JSON form; an image of one without a journal is a test's.)
            let value = match r.form() {
                ValueForm::Raw => value,
                ValueForm::Json => match xems_core::json_text::unescape(&value) {
                    Some(raw) => raw,
                    None => {
                        tracing::error!(sandbox = %sb.name, "a record's JSON form did not read back while snapshotting; skipped");
                        continue;
                    }
                },
            };
            let extra = self.extras.get(r.extra);
            let retired = extra.map_or_else(Vec::new, |x| {
                x.retired
                    .iter()
                    .map(|t| RetiredKey { key: t.key, grace_until: t.grace_until(), caller_key: t.caller() })
                    .collect()
            });
            let current = extra
                .and_then(|x| x.current.as_ref().filter(|c| c.until > now).map(|c| (x.rotations, c)))
                .and_then(|(n, c)| sb.keys.open_token(family, n, &c.sealed).ok().map(|t| (t, c.until)));
            out.push(Image {
                sandbox: sb.name.to_string(),
                family,
                route,
                slot,
                key: r.key,
                caller_key: r.caller_key(),
                version: r.version,
                value,
                created_at: extra.map_or(r.token_born, |x| x.created_at),
                token_born: r.token_born,
                idle_deadline: r.idle_deadline,
                abs_deadline: r.abs_deadline,
                idle_ttl_ms: r.ttl_ms(),
                subject: extra.and_then(|x| x.subject),
                retired,
                current,
            });
        }
        out
    }

    /// Puts a record back as it was, in the slot its tokens name (restore).
    /// Returns its sealed size, or `None` if its slot or one of its caller
    /// keys is already taken (a duplicate is dropped).
    pub(crate) fn restore(&mut self, cx: &Cx<'_>, img: &Image) -> Option<usize> {
        let now = cx.now;
        let caller_keys = || {
            std::iter::once(&img.key)
                .filter(|_| img.caller_key)
                .chain(img.retired.iter().filter(|r| r.caller_key).map(|r| &r.key))
        };
        if self.records.get(img.slot).is_some() || caller_keys().any(|k| self.contains_key(k)) {
            return None;
        }
        let sealed = cx.sb.keys.seal_value(img.family, img.version, &img.value);
        let len = sealed.len();
        let ttl = img.idle_ttl_ms & !FLAGS;
        let record = Record {
            key: img.key,
            sealed,
            idle_deadline: img.idle_deadline.min(img.abs_deadline),
            abs_deadline: img.abs_deadline,
            token_born: img.token_born,
            version: img.version,
            ttl_flags: ttl | if img.caller_key { CALLER_KEY } else { 0 },
            wheel: 0,
            extra: NO_EXTRA,
        };
        if !self.records.place(img.slot, record) {
            return None;
        }
        let slot = img.slot;
        let keys: Vec<[u8; 16]> = caller_keys().copied().collect();
        for key in keys {
            self.key_insert(key, slot);
        }
        self.register(slot, now);
        let needs_extra = img.created_at != img.token_born
            || img.subject.is_some()
            || !img.retired.is_empty()
            || img.current.is_some();
        if !needs_extra {
            return Some(len);
        }
        let extra = self.extra_mut(slot);
        extra.created_at = img.created_at;
        extra.subject = img.subject;
        extra.retired = img.retired.iter().map(|r| Retired::new(r.key, r.grace_until, r.caller_key)).collect();
        if let Some((token, until)) = img.current.as_ref().filter(|(_, until)| *until > now) {
            // Rotation 0 is never used by a live rotation (they count from
            // 1), so this nonce is fresh under this process's key.
            extra.current = Some(SealedToken { sealed: cx.sb.keys.seal_token(img.family, 0, token), until: *until });
        }
        if let Some(subject) = img.subject {
            self.subjects.entry(subject).or_default().push(slot);
        }
        Some(len)
    }
}

pub(crate) fn ms_u64(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds of a TTL already capped at five days (fits in u32).
pub(crate) fn ms_u32(d: std::time::Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}
