//! INTERIM: a minimal, unencrypted in-memory `SessionStore`, used only until
//! `xems_engine::Engine` lands on main. It exists so the binary and its
//! integration tests can run; it is not sharded, not sealed and not meant
//! to ship. Delete this module when the engine is merged.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use xems_core::{
    Clock, Counters, CreateOptions, Created, DEFAULT_TTL, Error, EventKind, MAX_GRACE, MAX_TTL, Refresh,
    ResolveOptions, ResolveOutcome, Resolved, Result, Rotation, SandboxStats, SessionId, SessionMeta, SessionStore,
    Stats, Timestamp, Token, UpdateOutcome, Value, cap_ttl, route_of, validate_key, validate_sandbox,
};

#[derive(Clone)]
struct Rec {
    value: Vec<u8>,
    version: u64,
    id: String,
    created: Timestamp,
    rotated_at: Timestamp,
    expires: Timestamp,
    deadline: Timestamp,
    ttl: Duration,
    subject: Option<String>,
}

#[derive(Default)]
struct Inner {
    live: HashMap<(String, String), Rec>,
    /// Rotated-away token -> (current key, grace deadline).
    retired: HashMap<(String, String), (String, Timestamp)>,
    counters: Counters,
}

/// The interim store (see the module docs).
#[derive(Clone)]
pub struct StandIn {
    inner: Arc<Mutex<Inner>>,
    clock: Arc<dyn Clock>,
    next_id: Arc<AtomicU64>,
}

impl std::fmt::Debug for StandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StandIn")
    }
}

impl StandIn {
    /// An empty store on `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        StandIn { inner: Arc::default(), clock, next_id: Arc::new(AtomicU64::new(1)) }
    }

    fn meta(r: &Rec, capped: bool) -> SessionMeta {
        SessionMeta::new(SessionId::new(r.id.clone()), r.version, r.created, r.expires, r.deadline, r.ttl, capped)
    }

    fn new_rec(&self, value: &[u8], opts: &CreateOptions, now: Timestamp) -> Result<(Rec, bool)> {
        let ttl = cap_ttl(opts.ttl.unwrap_or(DEFAULT_TTL));
        let abs = cap_ttl(opts.absolute_ttl.unwrap_or(MAX_TTL)).effective;
        if value.len() > 10 * 1024 * 1024 {
            return Err(Error::ValueTooLarge { size: value.len(), max: 10 * 1024 * 1024 });
        }
        let deadline = now.saturating_add(abs);
        Ok((
            Rec {
                value: value.to_vec(),
                version: 1,
                id: format!("s{}", self.next_id.fetch_add(1, Ordering::Relaxed)),
                created: now,
                rotated_at: now,
                expires: now.saturating_add(ttl.effective).min(deadline),
                deadline,
                ttl: ttl.effective,
                subject: opts.subject.clone(),
            },
            ttl.capped,
        ))
    }
}

impl Inner {
    /// The live key an address stands for: itself, or the current token of
    /// a rotated-away one within grace (`Err(())` past grace).
    fn locate(&mut self, sb: &str, key: &str, now: Timestamp) -> Option<(String, bool)> {
        let k = (sb.to_owned(), key.to_owned());
        if let Some(r) = self.live.get(&k) {
            if r.expires > now {
                return Some((key.to_owned(), false));
            }
            self.live.remove(&k);
            self.counters.add(EventKind::Expired, 1);
            return None;
        }
        let (cur, until) = self.retired.get(&k)?.clone();
        if until > now && self.live.get(&(sb.to_owned(), cur.clone())).is_some_and(|r| r.expires > now) {
            return Some((cur, true));
        }
        // Replay after grace: revoke the family.
        self.retired.remove(&k);
        if self.live.remove(&(sb.to_owned(), cur)).is_some() {
            self.counters.add(EventKind::ReuseDetected, 1);
        }
        None
    }
}

fn check(sb: &str, key: &str) -> Result<()> {
    validate_sandbox(sb)?;
    validate_key(key)
}

impl SessionStore for StandIn {
    async fn create(&self, sandbox: &str, value: &[u8], opts: CreateOptions) -> Result<Created> {
        validate_sandbox(sandbox)?;
        let now = self.clock.now();
        let (rec, capped) = self.new_rec(value, &opts, now)?;
        let token = Token::mint(0);
        let meta = Self::meta(&rec, capped);
        let mut g = self.inner.lock();
        g.live.insert((sandbox.to_owned(), token.expose().to_owned()), rec);
        g.counters.add(EventKind::Created, 1);
        Ok(Created::new(token, meta))
    }

    async fn resolve(&self, sandbox: &str, token: &str, opts: ResolveOptions) -> Result<Option<Resolved>> {
        check(sandbox, token)?;
        if opts.grace > MAX_GRACE {
            return Err(Error::InvalidArgument(format!("grace period above {} ms", MAX_GRACE.as_millis())));
        }
        let now = self.clock.now();
        let mut g = self.inner.lock();
        let Some((cur, grace_hit)) = g.locate(sandbox, token, now) else { return Ok(None) };
        let k = (sandbox.to_owned(), cur.clone());
        let mut rec = g.live.get(&k).cloned().ok_or_else(|| Error::InvalidArgument("vanished".into()))?;
        let mut capped = false;
        match opts.refresh {
            Refresh::No => {}
            Refresh::Idle => rec.expires = now.saturating_add(rec.ttl).min(rec.deadline),
            Refresh::To(t) => {
                let c = cap_ttl(t);
                capped = c.capped;
                rec.ttl = c.effective;
                rec.expires = now.saturating_add(rec.ttl).min(rec.deadline);
            }
        }
        g.counters.add(EventKind::Resolved, 1);
        if grace_hit {
            g.counters.add(EventKind::GraceHit, 1);
            g.live.insert(k, rec.clone());
            let meta = Self::meta(&rec, capped);
            return Ok(Some(Resolved::new(
                Value::from(rec.value),
                Some(Token::from_string(cur)),
                ResolveOutcome::Grace,
                meta,
            )));
        }
        let rotate = match opts.rotate {
            Rotation::Never => false,
            Rotation::Always => true,
            Rotation::OlderThan(d) => now.saturating_since(rec.rotated_at) >= d,
        };
        if !rotate {
            g.live.insert(k, rec.clone());
            let meta = Self::meta(&rec, capped);
            return Ok(Some(Resolved::new(Value::from(rec.value), None, ResolveOutcome::Current, meta)));
        }
        let next = Token::mint(route_of(&cur));
        g.live.remove(&k);
        rec.rotated_at = now;
        g.live.insert((sandbox.to_owned(), next.expose().to_owned()), rec.clone());
        // Earlier retired tokens of the family now point at the new current one.
        for (key, (target, _)) in g.retired.iter_mut() {
            if key.0 == sandbox && *target == cur {
                *target = next.expose().to_owned();
            }
        }
        g.retired.insert(k, (next.expose().to_owned(), now.saturating_add(opts.grace)));
        g.counters.add(EventKind::Rotated, 1);
        let meta = Self::meta(&rec, capped);
        Ok(Some(Resolved::new(Value::from(rec.value), Some(next), ResolveOutcome::Rotated, meta)))
    }

    async fn set(&self, sandbox: &str, key: &str, value: &[u8], opts: CreateOptions) -> Result<SessionMeta> {
        check(sandbox, key)?;
        let now = self.clock.now();
        let mut g = self.inner.lock();
        if g.retired.contains_key(&(sandbox.to_owned(), key.to_owned())) {
            return Err(Error::TokenRetired);
        }
        let (mut rec, capped) = self.new_rec(value, &opts, now)?;
        let k = (sandbox.to_owned(), key.to_owned());
        if let Some(old) = g.live.get(&k).filter(|r| r.expires > now) {
            rec.version = old.version + 1;
            rec.id = old.id.clone();
        } else {
            g.counters.add(EventKind::Created, 1);
        }
        let meta = Self::meta(&rec, capped);
        g.live.insert(k, rec);
        Ok(meta)
    }

    async fn del(&self, sandbox: &str, key: &str) -> Result<bool> {
        check(sandbox, key)?;
        let now = self.clock.now();
        let mut g = self.inner.lock();
        let Some((cur, _)) = g.locate(sandbox, key, now) else { return Ok(false) };
        g.live.remove(&(sandbox.to_owned(), cur.clone()));
        g.retired.retain(|k, (target, _)| !(k.0 == sandbox && *target == cur));
        g.counters.add(EventKind::Deleted, 1);
        Ok(true)
    }

    async fn exists(&self, sandbox: &str, key: &str) -> Result<bool> {
        check(sandbox, key)?;
        let now = self.clock.now();
        Ok(self.inner.lock().locate(sandbox, key, now).is_some())
    }

    async fn touch(&self, sandbox: &str, key: &str, ttl: Option<Duration>) -> Result<Option<SessionMeta>> {
        let refresh = ttl.map_or(Refresh::Idle, Refresh::To);
        Ok(self.resolve(sandbox, key, ResolveOptions::new().with_refresh(refresh)).await?.map(|r| r.meta))
    }

    async fn update_if(&self, sandbox: &str, key: &str, expected: u64, value: &[u8]) -> Result<UpdateOutcome> {
        check(sandbox, key)?;
        let now = self.clock.now();
        let mut g = self.inner.lock();
        let Some((cur, grace)) = g.locate(sandbox, key, now) else { return Ok(UpdateOutcome::NotFound) };
        if grace {
            return Err(Error::TokenRetired);
        }
        let rec =
            g.live.get_mut(&(sandbox.to_owned(), cur)).ok_or_else(|| Error::InvalidArgument("vanished".into()))?;
        if rec.version != expected {
            return Ok(UpdateOutcome::Conflict { current_version: rec.version });
        }
        rec.value = value.to_vec();
        rec.version += 1;
        Ok(UpdateOutcome::Updated(Self::meta(rec, false)))
    }

    async fn migrate(
        &self,
        from: &str,
        token: &str,
        to: &str,
        value: Option<&[u8]>,
        opts: CreateOptions,
    ) -> Result<Option<Created>> {
        check(from, token)?;
        validate_sandbox(to)?;
        let now = self.clock.now();
        let mut g = self.inner.lock();
        let Some((cur, _)) = g.locate(from, token, now) else { return Ok(None) };
        let Some(old) = g.live.remove(&(from.to_owned(), cur.clone())) else { return Ok(None) };
        g.retired.retain(|k, (target, _)| !(k.0 == from && *target == cur));
        let mut opts = opts;
        if opts.subject.is_none() {
            opts.subject = old.subject.clone();
        }
        let (rec, capped) = self.new_rec(value.unwrap_or(&old.value), &opts, now)?;
        let t = Token::mint(0);
        let meta = Self::meta(&rec, capped);
        g.live.insert((to.to_owned(), t.expose().to_owned()), rec);
        g.counters.add(EventKind::Migrated, 1);
        Ok(Some(Created::new(t, meta)))
    }

    async fn list_subject(&self, sandbox: &str, subject: &str) -> Result<Vec<SessionMeta>> {
        validate_sandbox(sandbox)?;
        let now = self.clock.now();
        let g = self.inner.lock();
        let mut v: Vec<SessionMeta> = g
            .live
            .iter()
            .filter(|(k, r)| k.0 == sandbox && r.expires > now && r.subject.as_deref() == Some(subject))
            .map(|(_, r)| Self::meta(r, false))
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(v)
    }

    async fn revoke_subject(&self, sandbox: &str, subject: &str, except: Option<&str>) -> Result<usize> {
        validate_sandbox(sandbox)?;
        let now = self.clock.now();
        let mut g = self.inner.lock();
        let spare = except.and_then(|e| g.locate(sandbox, e, now)).map(|(k, _)| k);
        let before = g.live.len();
        g.live
            .retain(|k, r| !(k.0 == sandbox && r.subject.as_deref() == Some(subject) && Some(&k.1) != spare.as_ref()));
        Ok(before - g.live.len())
    }

    async fn revoke_session(&self, sandbox: &str, subject: &str, id: &SessionId) -> Result<bool> {
        validate_sandbox(sandbox)?;
        let mut g = self.inner.lock();
        let before = g.live.len();
        g.live.retain(|k, r| !(k.0 == sandbox && r.subject.as_deref() == Some(subject) && r.id == id.as_str()));
        Ok(before != g.live.len())
    }

    async fn stats(&self) -> Result<Stats> {
        let g = self.inner.lock();
        let mut per: HashMap<&str, (u64, u64)> = HashMap::new();
        for (k, r) in &g.live {
            let e = per.entry(k.0.as_str()).or_default();
            e.0 += 1;
            e.1 += r.value.len() as u64;
        }
        let mut sandboxes: Vec<SandboxStats> =
            per.into_iter().map(|(n, (r, b))| SandboxStats::new(n.to_owned(), r, b, 0)).collect();
        sandboxes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Stats::new(sandboxes, g.counters))
    }
}
