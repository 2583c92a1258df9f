//! One shard of a sandbox: the keyed-hash index, the records, the retired
//! tokens of rotated sessions, the subject index and the expiry wheel, all
//! under one lock.
//!
//! Every token of a session routes to the same shard (the routing byte is
//! carried from token to successor), so a rotation, a grace hit and a reuse
//! revocation each take exactly one lock.
//!
//! Layout (per live record, about 72 bytes here plus the sealed value):
//!
//! ```text
//! table:   HashTable<u32>  entry = record slot, or alias slot | ALIAS
//! records: Slab<Record>    key(16) sealed-box(16) deadlines(24) version,
//!                          ttl, wheel bucket, extra slot (16)
//! sealed:  family id (8, LE) || AES-256-GCM ciphertext || tag (16)
//! ```
//!
//! Sessions that have rotated or carry a subject also have an [`Extra`]
//! (creation time, subject, retired tokens, the sealed current token while a
//! grace window is open); plain records pay nothing for it.

use hashbrown::{HashMap, HashTable};
use smallvec::SmallVec;
use subtle::ConstantTimeEq;
use xems_core::{Counters, EventKind, Fingerprint, Refresh, ResolveOptions, ResolveOutcome, Rotation, Token};

use crate::persist::{Change, Image, Journal, Put, Ticket};
use crate::sandbox::{SandboxCore, SealedTokenBytes};
use crate::slab::Slab;
use crate::wheel::{BucketId, Wheel};
use xems_core::ReusePolicy;

/// Tags an index entry that points at a retired token (alias) slot.
const ALIAS: u32 = 1 << 31;
/// No extra (in `Record::extra`).
const NO_EXTRA: u32 = u32::MAX;
/// Retired tokens a session keeps in any case, while in their grace window.
const MAX_RETIRED: usize = 1024;

/// Bytes of the family id prefix in a sealed value.
pub(crate) const FAMILY_PREFIX: usize = 8;

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
    idle_ttl_ms: u32,
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
}

/// A rotated-away token of a live session. Aliases leave with their
/// session (see `remove_family`), so `record` always names a live record.
/// A session's aliases form a list from oldest to newest through `newer`
/// (no separate allocation per session).
struct Alias {
    key: [u8; 16],
    record: u32,
    newer: u32,
    grace_until: u64,
}

/// The end of an alias list.
const NONE: u32 = u32::MAX;

/// What a session has beyond a plain record.
struct Extra {
    created_at: u64,
    subject: Option<[u8; 16]>,
    /// The oldest and newest alias slots (`NONE` when there are none) and
    /// how many there are: at most `retired_window`, plus those in grace.
    oldest: u32,
    newest: u32,
    retired: u32,
    /// The current token, sealed, while any retired token is in grace.
    current: Option<SealedToken>,
    /// Rotations so far: the nonce counter of the token seal.
    rotations: u32,
}

struct SealedToken {
    sealed: SealedTokenBytes,
    until: u64,
}

/// Where an address leads.
enum Addr {
    Missing,
    Live(u32),
    /// A retired token within its grace window; its session's record.
    Grace(u32),
    /// A retired token past its grace window; its session's record.
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

/// A record read under the lock, to be opened after it is released.
pub(crate) struct Found {
    /// Copy of ciphertext || tag.
    pub(crate) sealed: Vec<u8>,
    pub(crate) meta: MetaParts,
    pub(crate) token: Option<Token>,
    pub(crate) outcome: ResolveOutcome,
}

/// A record taken out of a shard (for migration).
pub(crate) struct Taken {
    pub(crate) sealed: Vec<u8>,
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

fn hash16(key: &[u8; 16]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[..8]);
    u64::from_le_bytes(b)
}

fn key_of<'a>(records: &'a Slab<Record>, aliases: &'a Slab<Alias>, e: u32) -> &'a [u8; 16] {
    if e & ALIAS != 0 {
        &aliases.get(e & !ALIAS).expect("index entry points at a live alias").key
    } else {
        &records.get(e).expect("index entry points at a live record").key
    }
}

pub(crate) struct Shard {
    table: HashTable<u32>,
    records: Slab<Record>,
    aliases: Slab<Alias>,
    extras: Slab<Extra>,
    subjects: HashMap<[u8; 16], Vec<u32>>,
    wheel: Wheel,
    pub(crate) counters: Counters,
}

impl Shard {
    pub(crate) fn new(epoch_ms: u64) -> Self {
        Shard {
            table: HashTable::new(),
            records: Slab::new(),
            aliases: Slab::new(),
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
        self.aliases.len()
    }

    pub(crate) fn wheel_entries(&self) -> usize {
        self.wheel.entries()
    }

    // ----- the index -------------------------------------------------------

    fn find(&self, key: &[u8; 16]) -> Option<u32> {
        let (records, aliases) = (&self.records, &self.aliases);
        self.table.find(hash16(key), |&e| bool::from(key_of(records, aliases, e).ct_eq(key))).copied()
    }

    fn index_insert(&mut self, key: &[u8; 16], entry: u32) {
        let Shard { table, records, aliases, .. } = self;
        table.insert_unique(hash16(key), entry, |&e| hash16(key_of(records, aliases, e)));
    }

    fn index_remove(&mut self, key: &[u8; 16], entry: u32) {
        if let Ok(found) = self.table.find_entry(hash16(key), |&e| e == entry) {
            found.remove();
        }
    }

    /// Whether `key` is taken (a freshly minted token colliding is a 2^-128
    /// event, but a caller key may legitimately exist).
    pub(crate) fn contains(&self, key: &[u8; 16]) -> bool {
        self.find(key).is_some()
    }

    fn locate(&mut self, cx: &mut Cx<'_>, key: &[u8; 16]) -> Addr {
        let Some(entry) = self.find(key) else { return Addr::Missing };
        let (slot, grace_until) = if entry & ALIAS != 0 {
            let alias = self.aliases.get(entry & !ALIAS).expect("index entry points at a live alias");
            (alias.record, Some(alias.grace_until))
        } else {
            (entry, None)
        };
        let record = self.records.get(slot).expect("located record is live");
        if cx.now >= record.idle_deadline {
            self.remove_family(cx, slot, EventKind::Expired, "expired");
            return Addr::Missing;
        }
        match grace_until {
            None => Addr::Live(slot),
            Some(until) if cx.now < until => Addr::Grace(slot),
            Some(_) => Addr::Retired(slot),
        }
    }

    // ----- records ---------------------------------------------------------

    fn meta(&self, slot: u32, capped: bool) -> MetaParts {
        let r = self.records.get(slot).expect("meta of a live record");
        let created_at = self.extras.get(r.extra).map_or(r.token_born, |x| x.created_at);
        MetaParts {
            family: r.family(),
            version: r.version,
            created_at,
            expires_at: r.idle_deadline,
            abs_deadline: r.abs_deadline,
            ttl_ms: r.idle_ttl_ms,
            capped,
        }
    }

    fn found(&self, slot: u32, token: Option<Token>, outcome: ResolveOutcome, capped: bool) -> Found {
        let r = self.records.get(slot).expect("found a live record");
        Found { sealed: r.sealed[FAMILY_PREFIX..].to_vec(), meta: self.meta(slot, capped), token, outcome }
    }

    fn extra_mut(&mut self, slot: u32) -> &mut Extra {
        let r = self.records.get_mut(slot).expect("extra of a live record");
        if r.extra == NO_EXTRA {
            r.extra = self.extras.insert(Extra {
                created_at: r.token_born,
                subject: None,
                oldest: NONE,
                newest: NONE,
                retired: 0,
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
                let ttl = u64::from(self.records.get(slot).expect("refresh a live record").idle_ttl_ms);
                self.set_deadline(slot, now, now + ttl);
                false
            }
            Refresh::To(d) => {
                let capped = xems_core::cap_ttl(d);
                let ms = ms_u32(capped.effective);
                self.records.get_mut(slot).expect("refresh a live record").idle_ttl_ms = ms;
                self.set_deadline(slot, now, now + u64::from(ms));
                capped.capped
            }
        };
        let r = self.records.get(slot).expect("refreshed a live record");
        cx.log(Change::Touch {
            sandbox: &cx.sb.name,
            family: r.family(),
            idle_deadline: r.idle_deadline,
            idle_ttl_ms: r.idle_ttl_ms,
        });
        capped
    }

    /// Inserts a new record under `key`, which must not be in the index.
    /// `value` is the plaintext of `sealed`, for the journal.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert(
        &mut self,
        cx: &mut Cx<'_>,
        key: [u8; 16],
        route: u8,
        sealed: Box<[u8]>,
        value: &[u8],
        life: Lifetimes,
        subject: Option<[u8; 16]>,
        fp: Fingerprint,
    ) -> MetaParts {
        let now = cx.now;
        let record = Record {
            key,
            sealed,
            idle_deadline: (now + u64::from(life.ttl_ms)).min(life.abs_deadline),
            abs_deadline: life.abs_deadline,
            token_born: now,
            version: 1,
            idle_ttl_ms: life.ttl_ms,
            wheel: 0,
            extra: NO_EXTRA,
        };
        let slot = self.records.insert(record);
        self.index_insert(&key, slot);
        self.register(slot, now);
        if let Some(subject) = subject {
            self.extra_mut(slot).subject = Some(subject);
            self.subjects.entry(subject).or_default().push(slot);
        }
        self.counters.add(EventKind::Created, 1);
        cx.raise(EventKind::Created, Some(fp), "");
        let meta = self.meta(slot, life.capped);
        cx.log(Change::Put(Put {
            sandbox: &cx.sb.name,
            family: meta.family,
            route,
            key,
            version: 1,
            value,
            created_at: now,
            idle_deadline: meta.expires_at,
            abs_deadline: meta.abs_deadline,
            idle_ttl_ms: meta.ttl_ms,
            subject,
        }));
        meta
    }

    /// Removes a session: its record, every retired token, its subject entry.
    fn remove_family(&mut self, cx: &mut Cx<'_>, slot: u32, kind: EventKind, detail: &'static str) {
        let Some(record) = self.records.remove(slot) else { return };
        self.index_remove(&record.key, slot);
        if let Some(extra) = self.extras.remove(record.extra) {
            let mut a = extra.oldest;
            while let Some(alias) = self.aliases.remove(a) {
                self.index_remove(&alias.key, a | ALIAS);
                a = alias.newer;
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

    /// Mints the successor of a live record's token, retiring the old one
    /// with a grace window.
    fn rotate(&mut self, cx: &mut Cx<'_>, slot: u32, route: u8, grace_ms: u64) -> Token {
        let now = cx.now;
        let keys = &cx.sb.keys;
        let (token, new_key) = loop {
            let t = Token::mint(route);
            let k = keys.index.digest(t.expose().as_bytes()).index();
            if !self.contains(&k) {
                break (t, k);
            }
        };
        // Create the extra first: it records the creation time before
        // `token_born` moves.
        let window = cx.sb.engine.retired_window;
        self.extra_mut(slot);
        let record = self.records.get_mut(slot).expect("rotate a live record");
        let old_key = std::mem::replace(&mut record.key, new_key);
        record.token_born = now;
        let family = record.family();
        let extra_slot = record.extra;
        let alias = self.aliases.insert(Alias { key: old_key, record: slot, newer: NONE, grace_until: now + grace_ms });
        // The old key's index entry now points at the alias; the new key at
        // the record.
        if let Some(e) = self.table.find_mut(hash16(&old_key), |&e| e == slot) {
            *e = alias | ALIAS;
        }
        self.index_insert(&new_key, slot);

        let Shard { extras, aliases, .. } = self;
        let extra = extras.get_mut(extra_slot).expect("extra was just ensured");
        match aliases.get_mut(extra.newest) {
            Some(newest) => newest.newer = alias,
            None => extra.oldest = alias,
        }
        extra.newest = alias;
        extra.retired += 1;
        // Forget the oldest retired tokens beyond the window, but never one
        // still in its grace window (a burst of rotations must not push out
        // a token a concurrent request still carries), up to a hard cap.
        let mut dropped: SmallVec<[([u8; 16], u32); 2]> = SmallVec::new();
        while extra.retired as usize > window {
            let oldest = extra.oldest;
            let front = aliases.get(oldest).expect("the list is as long as its count");
            if front.grace_until > now && extra.retired as usize <= MAX_RETIRED {
                break;
            }
            let front = aliases.remove(oldest).expect("just read");
            extra.oldest = front.newer;
            extra.retired -= 1;
            dropped.push((front.key, oldest));
        }
        extra.rotations = extra.rotations.wrapping_add(1);
        let until = extra.current.as_ref().map_or(0, |c| c.until).max(now + grace_ms);
        extra.current =
            (until > now).then(|| SealedToken { sealed: keys.seal_token(family, extra.rotations, &token), until });
        cx.log(Change::Rotate {
            sandbox: &cx.sb.name,
            family,
            old_key,
            grace_until: now + grace_ms,
            new_key,
            token_born: now,
            current: (until > now).then_some((&token, until)),
        });
        for (key, slot) in dropped {
            self.index_remove(&key, slot | ALIAS);
        }
        self.counters.add(EventKind::Rotated, 1);
        cx.raise(EventKind::Rotated, None, "");
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

    pub(crate) fn resolve(
        &mut self,
        cx: &mut Cx<'_>,
        key: &[u8; 16],
        fp: Fingerprint,
        route: u8,
        opts: &ResolveOptions,
    ) -> Option<Found> {
        let now = cx.now;
        match self.locate(cx, key) {
            Addr::Missing => None,
            Addr::Retired(slot) => {
                self.reuse(cx, slot, fp);
                None
            }
            Addr::Grace(slot) => {
                // Never mint here: the session's current token is the answer.
                let token = self.current_token(cx, slot);
                let capped = self.refresh(cx, slot, opts.refresh);
                self.counters.add(EventKind::Resolved, 1);
                self.counters.add(EventKind::GraceHit, 1);
                cx.raise(EventKind::GraceHit, Some(fp), "");
                Some(self.found(slot, token, ResolveOutcome::Grace, capped))
            }
            Addr::Live(slot) => {
                let born = self.records.get(slot).expect("live").token_born;
                let rotate = match opts.rotate {
                    Rotation::Never => false,
                    Rotation::Always => true,
                    Rotation::OlderThan(age) => now.saturating_sub(born) >= ms_u64(age),
                };
                let (token, outcome) = if rotate {
                    (Some(self.rotate(cx, slot, route, ms_u64(opts.grace))), ResolveOutcome::Rotated)
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
                cx.raise(EventKind::Resolved, Some(fp), "");
                Some(self.found(slot, token, outcome, capped))
            }
        }
    }

    pub(crate) fn exists(&mut self, cx: &mut Cx<'_>, key: &[u8; 16]) -> bool {
        matches!(self.locate(cx, key), Addr::Live(_) | Addr::Grace(_))
    }

    pub(crate) fn touch(
        &mut self,
        cx: &mut Cx<'_>,
        key: &[u8; 16],
        fp: Fingerprint,
        refresh: Refresh,
    ) -> Option<MetaParts> {
        let slot = self.use_addr(cx, key, fp)?;
        let capped = self.refresh(cx, slot, refresh);
        Some(self.meta(slot, capped))
    }

    pub(crate) fn del(&mut self, cx: &mut Cx<'_>, key: &[u8; 16]) -> bool {
        match self.locate(cx, key) {
            Addr::Missing => false,
            Addr::Live(slot) | Addr::Grace(slot) | Addr::Retired(slot) => {
                self.remove_family(cx, slot, EventKind::Deleted, "");
                true
            }
        }
    }

    /// Replaces the value of the record at `slot`, bumping its version.
    /// `None` if the sandbox has no room for the growth.
    fn replace(&mut self, cx: &Cx<'_>, slot: u32, value: &[u8]) -> Result<Option<()>, xems_core::Error> {
        let r = self.records.get_mut(slot).expect("replace a live record");
        let version = r
            .version
            .checked_add(1)
            .ok_or_else(|| xems_core::Error::InvalidArgument("record version counter exhausted".into()))?;
        let old_len = r.sealed.len();
        let new_len = FAMILY_PREFIX + value.len() + xems_core::SealKey::TAG_LEN;
        if new_len > old_len && !cx.sb.try_take(0, (new_len - old_len) as u64) {
            return Ok(None);
        }
        r.sealed = cx.sb.keys.seal_value(r.family(), version, value);
        r.version = version;
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
            idle_ttl_ms: r.idle_ttl_ms,
            subject,
        });
    }

    /// `set`: replace the value of an existing record (keeping its absolute
    /// deadline, restarting its idle TTL) or create a new one.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn set(
        &mut self,
        cx: &mut Cx<'_>,
        key: [u8; 16],
        route: u8,
        fp: Fingerprint,
        life: Lifetimes,
        subject: Option<[u8; 16]>,
        value: &[u8],
        new_family: u64,
    ) -> Result<WriteOutcome, xems_core::Error> {
        match self.locate(cx, &key) {
            Addr::Retired(slot) => {
                self.reuse(cx, slot, fp);
                Ok(WriteOutcome::Retired)
            }
            Addr::Live(slot) | Addr::Grace(slot) => {
                if self.replace(cx, slot, value)?.is_none() {
                    return Ok(WriteOutcome::Full);
                }
                let now = cx.now;
                let r = self.records.get_mut(slot).expect("live");
                r.idle_ttl_ms = life.ttl_ms;
                r.abs_deadline = r.abs_deadline.min(life.abs_deadline);
                self.set_deadline(slot, now, now + u64::from(life.ttl_ms));
                if let Some(subject) = subject {
                    self.set_subject(slot, subject);
                }
                self.log_replace(cx, slot, value);
                Ok(WriteOutcome::Written(self.meta(slot, life.capped)))
            }
            Addr::Missing => {
                let new_len = FAMILY_PREFIX + value.len() + xems_core::SealKey::TAG_LEN;
                if !cx.sb.try_take(1, new_len as u64) {
                    return Ok(WriteOutcome::Full);
                }
                let sealed = cx.sb.keys.seal_value(new_family, 1, value);
                Ok(WriteOutcome::Written(self.insert(cx, key, route, sealed, value, life, subject, fp)))
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
        key: &[u8; 16],
        fp: Fingerprint,
        expected: u64,
        value: &[u8],
    ) -> Result<CasOutcome, xems_core::Error> {
        match self.locate(cx, key) {
            Addr::Missing => Ok(CasOutcome::NotFound),
            Addr::Retired(slot) => {
                self.reuse(cx, slot, fp);
                Ok(CasOutcome::Retired)
            }
            Addr::Live(slot) | Addr::Grace(slot) => {
                let current = self.records.get(slot).expect("live").version;
                if u64::from(current) != expected {
                    return Ok(CasOutcome::Conflict(current));
                }
                if self.replace(cx, slot, value)?.is_none() {
                    return Ok(CasOutcome::Full);
                }
                self.log_replace(cx, slot, value);
                Ok(CasOutcome::Updated(self.meta(slot, false)))
            }
        }
    }

    /// Takes a session out of this shard (migration). Its tokens die here.
    pub(crate) fn take(&mut self, cx: &mut Cx<'_>, key: &[u8; 16], fp: Fingerprint) -> Option<Taken> {
        let slot = self.use_addr(cx, key, fp)?;
        let r = self.records.get(slot).expect("live");
        let taken = Taken {
            sealed: r.sealed[FAMILY_PREFIX..].to_vec(),
            family: r.family(),
            version: r.version,
            subject: self.extra(slot).and_then(|x| x.subject),
        };
        self.remove_family(cx, slot, EventKind::Migrated, "");
        Some(taken)
    }

    /// The record an address leads to, for an operation that uses it: a
    /// retired token past its grace is a replay and is handled as one.
    fn use_addr(&mut self, cx: &mut Cx<'_>, key: &[u8; 16], fp: Fingerprint) -> Option<u32> {
        match self.locate(cx, key) {
            Addr::Missing => None,
            Addr::Retired(slot) => {
                self.reuse(cx, slot, fp);
                None
            }
            Addr::Live(slot) | Addr::Grace(slot) => Some(slot),
        }
    }

    /// The sealed size of the record an address resolves to.
    pub(crate) fn sealed_len(&mut self, cx: &mut Cx<'_>, key: &[u8; 16], fp: Fingerprint) -> Option<usize> {
        let slot = self.use_addr(cx, key, fp)?;
        self.records.get(slot).map(|r| r.sealed.len())
    }

    /// The family record slot an address resolves to (live or in grace).
    pub(crate) fn family_slot(&mut self, cx: &mut Cx<'_>, key: &[u8; 16]) -> Option<u32> {
        match self.locate(cx, key) {
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

    /// Revokes the sessions of a subject for which `pick(family)` holds.
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
        let len = self.table.len();
        if self.table.capacity() > 1024 && len * 4 < self.table.capacity() {
            let Shard { table, records, aliases, .. } = self;
            table.shrink_to(len * 2, |&e| hash16(key_of(records, aliases, e)));
        }
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
}

impl Shard {
    /// Images of every live record (snapshots). Values and the current
    /// tokens are opened with this process's keys.
    pub(crate) fn images(&self, sb: &SandboxCore, now: u64, route: u8) -> Vec<Image> {
        let mut out = Vec::with_capacity(self.records.len());
        for (_, r) in self.records.iter() {
            if now >= r.idle_deadline {
                continue;
            }
            let family = r.family();
            let mut value = zeroize::Zeroizing::new(r.sealed[FAMILY_PREFIX..].to_vec());
            if sb.keys.open_value(family, r.version, &mut value).is_err() {
                tracing::error!(sandbox = %sb.name, "a record failed to open while snapshotting; skipped");
                continue;
            }
            let extra = self.extras.get(r.extra);
            let mut retired = Vec::new();
            let mut current = None;
            if let Some(x) = extra {
                let mut a = x.oldest;
                while let Some(alias) = self.aliases.get(a) {
                    retired.push((alias.key, alias.grace_until));
                    a = alias.newer;
                }
                if let Some(c) = x.current.as_ref().filter(|c| c.until > now) {
                    current = sb.keys.open_token(family, x.rotations, &c.sealed).ok().map(|t| (t, c.until));
                }
            }
            out.push(Image {
                sandbox: sb.name.to_string(),
                family,
                route,
                key: r.key,
                version: r.version,
                value,
                created_at: extra.map_or(r.token_born, |x| x.created_at),
                token_born: r.token_born,
                idle_deadline: r.idle_deadline,
                abs_deadline: r.abs_deadline,
                idle_ttl_ms: r.idle_ttl_ms,
                subject: extra.and_then(|x| x.subject),
                retired,
                current,
            });
        }
        out
    }

    /// Puts a record back as it was (restore). Returns its sealed size, or
    /// `None` if its key is already taken (a duplicate is dropped).
    pub(crate) fn restore(&mut self, cx: &Cx<'_>, img: &Image) -> Option<usize> {
        let now = cx.now;
        if self.contains(&img.key) || img.retired.iter().any(|(k, _)| self.contains(k)) {
            return None;
        }
        let sealed = cx.sb.keys.seal_value(img.family, img.version, &img.value);
        let len = sealed.len();
        let record = Record {
            key: img.key,
            sealed,
            idle_deadline: img.idle_deadline.min(img.abs_deadline),
            abs_deadline: img.abs_deadline,
            token_born: img.token_born,
            version: img.version,
            idle_ttl_ms: img.idle_ttl_ms,
            wheel: 0,
            extra: NO_EXTRA,
        };
        let slot = self.records.insert(record);
        self.index_insert(&img.key, slot);
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
        if let Some((token, until)) =
            img.current.as_ref().filter(|(t, until)| *until > now && t.expose().len() == xems_core::TOKEN_LEN)
        {
            // Rotation 0 is never used by a live rotation (they count from
            // 1), so this nonce is fresh under this process's key.
            extra.current = Some(SealedToken { sealed: cx.sb.keys.seal_token(img.family, 0, token), until: *until });
        }
        if let Some(subject) = img.subject {
            self.subjects.entry(subject).or_default().push(slot);
        }
        for (key, grace_until) in &img.retired {
            let alias = self.aliases.insert(Alias { key: *key, record: slot, newer: NONE, grace_until: *grace_until });
            self.index_insert(key, alias | ALIAS);
            let extra_slot = self.records.get(slot).expect("restored").extra;
            let Shard { extras, aliases, .. } = self;
            let extra = extras.get_mut(extra_slot).expect("restored extra");
            match aliases.get_mut(extra.newest) {
                Some(newest) => newest.newer = alias,
                None => extra.oldest = alias,
            }
            extra.newest = alias;
            extra.retired += 1;
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
