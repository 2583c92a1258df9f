//! `engine`: the embedded store against the in-memory stores a user could
//! pick instead, with one 256-byte JSON session value for every store.
//!
//! Peers (single-thread and two-thread, ~100k live entries each):
//! - tower-sessions' `MemoryStore`: `load` + `save` of a `Record` whose data
//!   is the JSON value's fields (what its `Session` does on a request that
//!   reads and modifies the session);
//! - a `moka::sync::Cache`: `get` + `insert` of the plaintext bytes;
//! - a plain sharded `HashMap` (64 `parking_lot::Mutex<HashMap>` shards,
//!   std's default hasher): `get` + `insert`, the floor for any in-memory
//!   store.
//!
//! Every read copies the value out (a store hands back owned bytes) and every
//! write stores a fresh buffer, as a real request would.
//!
//! The xems engine's own cases plug in at `xems_engine_cases` and
//! `memory_case` (search for `XEMS ENGINE`).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{Map, Value};
use xems_core::{CreateOptions, ResolveOptions, SessionStore};

use crate::measure::{FastRng, Measurement, RunConfig, run_async_threads, run_threads};
use crate::memory::{self, FillFn, Filled, MemoryFigure};
use crate::report::{self, Report};

/// Bytes in the session value.
pub const VALUE_LEN: usize = 256;

/// Live entries preloaded in each store before measuring.
pub const PRELOAD: usize = 100_000;

/// The sandbox the xems cases use.
pub const SANDBOX: &str = "bench";

/// The 256-byte JSON session value every store holds (the same bytes
/// everywhere).
pub fn session_value() -> Vec<u8> {
    let head = r#"{"user_id":"u_0000004242","email":"ada.lovelace@example.com","roles":["admin","billing"],"mfa":true,"csrf":"Yk3vQ9pX2LwZ8nR4tS7uV1aB","locale":"en-GB","created_at":1760000000,"pad":""#;
    let tail = r#""}"#;
    let mut s = String::from(head);
    while s.len() + tail.len() < VALUE_LEN {
        s.push('x');
    }
    s.push_str(tail);
    assert_eq!(s.len(), VALUE_LEN, "the session value must be exactly {VALUE_LEN} bytes");
    s.into_bytes()
}

/// Random 32-byte keys.
fn random_keys(n: usize, seed: u64) -> Vec<[u8; 32]> {
    let mut rng = FastRng::new(seed);
    (0..n)
        .map(|_| {
            let mut k = [0u8; 32];
            for chunk in k.chunks_exact_mut(8) {
                chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
            }
            k
        })
        .collect()
}

/// A token or caller key held inline, as the peers hold their keys
/// (`[u8; 32]`, tower-sessions' 16-byte `Id`): picking one at random costs
/// the harness one cache miss on every side. A `Vec<String>` would add a
/// second (the heap text behind the pointer) and an allocation per
/// rotation, both charged to xems though no server pays them (a request's
/// token arrives in its own, hot, buffer).
#[derive(Clone, Copy)]
pub struct InlineKey {
    len: u8,
    bytes: [u8; Self::CAP],
}

impl std::fmt::Debug for InlineKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InlineKey(<{} bytes>)", self.len)
    }
}

impl InlineKey {
    /// The longest key it holds (xems tokens are 44 or 66 characters).
    pub const CAP: usize = 95;

    /// Holds `text`.
    ///
    /// # Panics
    ///
    /// `text` is longer than [`Self::CAP`] (a harness bug).
    pub fn new(text: &str) -> Self {
        assert!(text.len() <= Self::CAP, "a {}-byte key does not fit", text.len());
        let mut bytes = [0u8; Self::CAP];
        bytes[..text.len()].copy_from_slice(text.as_bytes());
        InlineKey { len: text.len() as u8, bytes }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).expect("built from a str")
    }
}

/// The floor: 64 mutex-protected std `HashMap`s, sharded by the key's first
/// byte.
#[derive(Debug)]
pub struct ShardedMap {
    shards: Vec<Mutex<HashMap<[u8; 32], Vec<u8>>>>,
}

impl ShardedMap {
    const SHARDS: usize = 64;

    /// An empty map.
    pub fn new() -> Self {
        ShardedMap { shards: (0..Self::SHARDS).map(|_| Mutex::new(HashMap::new())).collect() }
    }

    fn shard(&self, key: &[u8; 32]) -> &Mutex<HashMap<[u8; 32], Vec<u8>>> {
        &self.shards[usize::from(key[0]) % Self::SHARDS]
    }

    /// A copy of the value under `key`.
    pub fn get(&self, key: &[u8; 32]) -> Option<Vec<u8>> {
        self.shard(key).lock().get(key).cloned()
    }

    /// Stores `value` under `key`.
    pub fn insert(&self, key: [u8; 32], value: Vec<u8>) {
        self.shard(&key).lock().insert(key, value);
    }
}

impl Default for ShardedMap {
    fn default() -> Self {
        Self::new()
    }
}

/// The tower-sessions record holding the session value's fields.
fn tower_record(value: &[u8]) -> tower_sessions::session::Record {
    let data: HashMap<String, Value> = serde_json::from_slice(value).expect("the session value is a JSON object");
    tower_sessions::session::Record {
        id: tower_sessions::session::Id::default(),
        data,
        expiry_date: time::OffsetDateTime::now_utc() + time::Duration::days(1),
    }
}

fn peer_cases(cfg: &RunConfig, value: &[u8]) -> Vec<Measurement> {
    let mut rows = Vec::new();
    let keys = Arc::new(random_keys(PRELOAD, 1));

    // The plain sharded HashMap.
    let map = ShardedMap::new();
    for k in keys.iter() {
        map.insert(*k, value.to_vec());
    }
    for threads in [1, 2] {
        rows.push(run_threads("hashmap get+insert", &cfg.with_threads(threads), |i| {
            let (map, keys) = (&map, &keys);
            let mut rng = FastRng::new(100 + i as u64);
            move || {
                let k = keys[rng.below(keys.len())];
                let v = map.get(&k).expect("preloaded");
                map.insert(k, v);
            }
        }));
    }
    drop(map);

    // moka.
    let cache: moka::sync::Cache<[u8; 32], Vec<u8>> = moka::sync::Cache::new(4 * PRELOAD as u64);
    for k in keys.iter() {
        cache.insert(*k, value.to_vec());
    }
    for threads in [1, 2] {
        rows.push(run_threads("moka get+insert", &cfg.with_threads(threads), |i| {
            let (cache, keys) = (&cache, &keys);
            let mut rng = FastRng::new(200 + i as u64);
            move || {
                let k = keys[rng.below(keys.len())];
                let v = cache.get(&k).expect("preloaded");
                cache.insert(k, v);
            }
        }));
    }
    drop(cache);

    // tower-sessions' MemoryStore.
    use tower_sessions::SessionStore as _;
    let store = tower_sessions::MemoryStore::default();
    let ids: Vec<tower_sessions::session::Id> = {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("tokio runtime");
        rt.block_on(async {
            let mut ids = Vec::with_capacity(PRELOAD);
            let template = tower_record(value);
            for _ in 0..PRELOAD {
                let mut r = template.clone();
                store.create(&mut r).await.expect("memory store create");
                ids.push(r.id);
            }
            ids
        })
    };
    for threads in [1, 2] {
        rows.push(run_async_threads("tower-sessions load+save", &cfg.with_threads(threads), |i| {
            let (store, ids) = (&store, &ids);
            let mut rng = FastRng::new(300 + i as u64);
            move || {
                let id = ids[rng.below(ids.len())];
                async move {
                    let record = store.load(&id).await.expect("load").expect("preloaded");
                    store.save(&record).await.expect("save");
                }
            }
        }));
    }
    rows
}

/// Figures of the xems engine, when it is wired in.
#[derive(Clone, Debug, Default, Serialize)]
pub struct XemsFigures {
    /// The cases: names `xems create`, `xems resolve`, `xems resolve+rotate`,
    /// `xems set`, `xems get`, for 1 and 2 threads.
    pub rows: Vec<Measurement>,
}

// ---------------------------------------------------------------------------
// XEMS ENGINE: the plug-in point.
//
// `xems_engine_cases` builds the default engine (`Engine::new()`, minus the
// record cap for the create case: random
// ephemeral key, system clock, sweeper thread, audit log on) and runs
// create / resolve / resolve+rotate / set / get through the `SessionStore`
// trait with `store_cases`, plus resolve+rotate through the engine's sync
// fast path (`Sandbox::resolve`), rows named `xems resolve+rotate (sync)`.
// The headline ratios use the trait rows (tower-sessions is measured
// through its trait too). `memory_case("xems-engine")` fills an engine for
// `bytes_per_session`.
// ---------------------------------------------------------------------------

/// The default engine (`Engine::new()`'s configuration) without the
/// default 10-million-record cap: the `create` case keeps every session it
/// makes, and on a fast machine two threads make more than ten million in
/// a full run (about 5.5 GB, freed after the case).
fn bench_engine() -> xems_engine::Engine {
    xems_engine::Engine::builder()
        .default_limits(xems_core::SandboxLimits::default().with_max_records(u64::MAX).with_max_bytes(u64::MAX))
        .build()
        .expect("a valid engine configuration")
}

/// XEMS ENGINE: the engine's cases.
fn xems_engine_cases(cfg: &RunConfig, value: &[u8]) -> Option<XemsFigures> {
    let mut figures = store_cases(bench_engine, cfg, value, PRELOAD);
    for threads in [1, 2] {
        let engine = xems_engine::Engine::new();
        let sandbox = engine.sandbox(SANDBOX).expect("a valid sandbox name");
        let tokens: Vec<InlineKey> = (0..PRELOAD)
            .map(|_| InlineKey::new(sandbox.create(value, CreateOptions::new()).expect("create").token.expose()))
            .collect();
        let shares: Vec<Mutex<Vec<InlineKey>>> =
            (0..threads).map(|t| Mutex::new(tokens.iter().skip(t).step_by(threads).cloned().collect())).collect();
        figures.rows.push(run_threads("xems resolve+rotate (sync)", &cfg.with_threads(threads), |i| {
            let sandbox = &sandbox;
            let mut mine = std::mem::take(&mut *shares[i].lock());
            let mut rng = FastRng::new(800 + i as u64);
            move || {
                let idx = rng.below(mine.len());
                let slot = &mut mine[idx];
                let r = sandbox.resolve(slot.as_str(), ResolveOptions::rotating()).expect("resolve").expect("live");
                if let Some(next) = r.token {
                    *slot = InlineKey::new(next.expose());
                }
            }
        }));
    }
    Some(figures)
}

/// Names of the memory cases [`memory_case`] knows.
pub const MEMORY_CASES: &[&str] = &["hashmap", "moka", "tower-sessions", "xems-engine"];

/// XEMS ENGINE: the memory cases, by name (`None` for an unknown case).
pub fn memory_case(name: &str) -> Option<FillFn> {
    match name {
        "hashmap" => Some(fill_hashmap),
        "moka" => Some(fill_moka),
        "tower-sessions" => Some(fill_tower_sessions),
        // XEMS ENGINE: `n` sessions created through the trait.
        "xems-engine" => Some(|n| fill_store(xems_engine::Engine::new(), n)),
        _ => None,
    }
}

fn fill_hashmap(n: usize) -> anyhow::Result<Filled> {
    let value = session_value();
    let map = ShardedMap::new();
    let mut rng = FastRng::new(7);
    for _ in 0..n {
        let mut k = [0u8; 32];
        for chunk in k.chunks_exact_mut(8) {
            chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
        }
        map.insert(k, value.clone());
    }
    Ok(Box::new(map))
}

fn fill_moka(n: usize) -> anyhow::Result<Filled> {
    let value = session_value();
    let cache: moka::sync::Cache<[u8; 32], Vec<u8>> = moka::sync::Cache::new(2 * n as u64);
    for k in random_keys(n, 7) {
        cache.insert(k, value.clone());
    }
    cache.run_pending_tasks();
    Ok(Box::new(cache))
}

fn fill_tower_sessions(n: usize) -> anyhow::Result<Filled> {
    use tower_sessions::SessionStore as _;
    let value = session_value();
    let store = tower_sessions::MemoryStore::default();
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    rt.block_on(async {
        let template = tower_record(&value);
        for _ in 0..n {
            let mut r = template.clone();
            store.create(&mut r).await?;
        }
        anyhow::Ok(())
    })?;
    Ok(Box::new(store))
}

/// Fills any [`SessionStore`] with `n` sessions of the session value (for
/// the engine's memory case).
pub fn fill_store<S: SessionStore>(store: S, n: usize) -> anyhow::Result<Filled> {
    let value = session_value();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        for _ in 0..n {
            // The tokens are the clients' memory, not the store's: each is
            // dropped at once. (Holding a million of them and freeing them
            // at the end leaves their heap pages resident, which counted
            // about 65 bytes per session against the store.)
            drop(store.create(SANDBOX, &value, CreateOptions::new()).await?.token);
        }
        anyhow::Ok(())
    })?;
    Ok(Box::new(store))
}

/// The create / resolve / resolve+rotate / set / get cases of any
/// [`SessionStore`], through the async trait, on 1 and 2 threads, with
/// `preload` live sessions and `preload` caller keys.
/// `make_store` builds a fresh store (the create case gets its own, so the
/// sessions it piles up do not slow the other cases).
pub fn store_cases<S, M>(make_store: M, cfg: &RunConfig, value: &[u8], preload: usize) -> XemsFigures
where
    S: SessionStore,
    M: Fn() -> S,
{
    let mut rows = Vec::new();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");

    for threads in [1, 2] {
        let store = make_store();
        rows.push(run_async_threads("xems create", &cfg.with_threads(threads), |_| {
            let store = &store;
            move || async move {
                store.create(SANDBOX, value, CreateOptions::new()).await.expect("create");
            }
        }));
    }

    // `preload` live sessions in a fresh store; their tokens.
    let preloaded = |rt: &tokio::runtime::Runtime| {
        let store = make_store();
        let tokens: Vec<InlineKey> = rt.block_on(async {
            let mut tokens = Vec::with_capacity(preload);
            for _ in 0..preload {
                let created = store.create(SANDBOX, value, CreateOptions::new()).await.expect("create");
                tokens.push(InlineKey::new(created.token.expose()));
            }
            tokens
        });
        (store, tokens)
    };
    let (store, tokens) = preloaded(&rt);
    let caller_keys: Vec<InlineKey> = (0..preload).map(|i| InlineKey::new(&format!("user:{i}:session"))).collect();
    rt.block_on(async {
        for k in &caller_keys {
            store.set(SANDBOX, k.as_str(), value, CreateOptions::new()).await.expect("set");
        }
    });

    for threads in [1, 2] {
        rows.push(run_async_threads("xems resolve", &cfg.with_threads(threads), |i| {
            let (store, tokens) = (&store, &tokens);
            let mut rng = FastRng::new(400 + i as u64);
            move || {
                let t = tokens[rng.below(tokens.len())];
                async move {
                    store.resolve(SANDBOX, t.as_str(), ResolveOptions::new()).await.expect("resolve").expect("live");
                }
            }
        }));
    }

    for threads in [1, 2] {
        // A fresh store each time: the previous run's tokens were rotated
        // away. Each thread rotates its own share of the sessions, always
        // presenting the current token (a well-behaved client).
        let (store, tokens) = preloaded(&rt);
        let shares: Vec<Mutex<Vec<InlineKey>>> =
            (0..threads).map(|t| Mutex::new(tokens.iter().skip(t).step_by(threads).copied().collect())).collect();
        rows.push(run_async_threads("xems resolve+rotate", &cfg.with_threads(threads), |i| {
            let store = &store;
            // Rc<RefCell>: the future must write the successor back, and the
            // op closure cannot lend itself to the future it returns.
            let mine = std::rc::Rc::new(std::cell::RefCell::new(std::mem::take(&mut *shares[i].lock())));
            let mut rng = FastRng::new(500 + i as u64);
            move || {
                let slot = rng.below(mine.borrow().len());
                let presented = mine.borrow()[slot];
                let mine = std::rc::Rc::clone(&mine);
                async move {
                    let r = store
                        .resolve(SANDBOX, presented.as_str(), ResolveOptions::rotating())
                        .await
                        .expect("resolve")
                        .expect("live");
                    if let Some(next) = r.token {
                        mine.borrow_mut()[slot] = InlineKey::new(next.expose());
                    }
                }
            }
        }));
    }

    for threads in [1, 2] {
        rows.push(run_async_threads("xems set", &cfg.with_threads(threads), |i| {
            let (store, keys) = (&store, &caller_keys);
            let mut rng = FastRng::new(600 + i as u64);
            move || {
                let k = keys[rng.below(keys.len())];
                async move {
                    store.set(SANDBOX, k.as_str(), value, CreateOptions::new()).await.expect("set");
                }
            }
        }));
        rows.push(run_async_threads("xems get", &cfg.with_threads(threads), |i| {
            let (store, keys) = (&store, &caller_keys);
            let mut rng = FastRng::new(700 + i as u64);
            move || {
                let k = keys[rng.below(keys.len())];
                async move {
                    store.get(SANDBOX, k.as_str()).await.expect("get").expect("live");
                }
            }
        }));
    }
    XemsFigures { rows }
}

/// Runs the engine bench and fills its report.
pub fn run(quick: bool, report: &mut Report) -> anyhow::Result<()> {
    let cfg = RunConfig::for_mode(quick, 1);
    let value = session_value();
    // What a cache miss costs here: every store below is bound by it once
    // its working set outgrows the caches.
    let mut miss = Map::new();
    let sizes: &[usize] = if quick { &[8] } else { &[1, 8, 32, 128] };
    for &mib in sizes {
        miss.insert(format!("{mib}MiB"), Value::from(report::round3(crate::measure::dependent_load_ns(mib << 20))));
    }
    println!("\ndependent random load latency by working set: {}", serde_json::to_string(&miss)?);
    let mut rows = peer_cases(&cfg, &value);
    let xems = xems_engine_cases(&cfg, &value);
    if let Some(x) = &xems {
        rows.extend(x.rows.iter().cloned());
    } else {
        println!("\nnote: the xems engine is not wired into xems-bench yet; only the peers are measured");
    }
    report::print_table(&format!("engine: 256-byte JSON value, {PRELOAD} live entries"), &rows);

    // Memory, each case in a fresh child process.
    let entries = if quick { 100_000 } else { 1_000_000 };
    let mut mem_cases: Vec<&str> = if quick { vec!["hashmap"] } else { vec!["hashmap", "moka", "tower-sessions"] };
    if xems.is_some() {
        mem_cases.push("xems-engine");
    }
    let mut figures: Vec<MemoryFigure> = Vec::new();
    println!("\nmemory: resident bytes per entry, {entries} entries of {VALUE_LEN} bytes, fresh process per case");
    for case in mem_cases {
        let fig = memory::measure_in_child(case, entries)?;
        println!(
            "  {:<20} {:>8.1} B/entry  ({:.1} B over the payload)",
            fig.case,
            fig.bytes_per_entry,
            fig.bytes_per_entry - VALUE_LEN as f64
        );
        figures.push(fig);
    }

    let ops =
        |name: &str, threads: usize| rows.iter().find(|m| m.name == name && m.threads == threads).map(|m| m.ops_per_s);
    let bpe = |case: &str| figures.iter().find(|f| f.case == case).map(|f| report::round3(f.bytes_per_entry));
    let mut ratios = Map::new();
    let mut put = |k: &str, v: Option<f64>| {
        ratios.insert(k.to_owned(), v.map_or(Value::Null, Value::from));
    };
    // The same on CPU time per operation, one thread: steadier on a shared
    // machine (time stolen by other work does not count).
    let cpu = |name: &str| {
        rows.iter().find(|m| m.name == name && m.threads == 1).map(|m| m.cpu_ns_per_op).filter(|&n| n > 0.0)
    };
    for (k, x, y) in [
        ("rotate_vs_tower_sessions_cpu", "xems resolve+rotate", "tower-sessions load+save"),
        ("rotate_vs_hashmap_cpu", "xems resolve+rotate", "hashmap get+insert"),
        ("rotate_sync_vs_tower_sessions_cpu", "xems resolve+rotate (sync)", "tower-sessions load+save"),
    ] {
        put(k, report::ratio(cpu(y), cpu(x)));
    }
    for (suffix, t) in [("", 1), ("_2t", 2)] {
        let rotate = ops("xems resolve+rotate", t);
        put(&format!("rotate_vs_tower_sessions{suffix}"), report::ratio(rotate, ops("tower-sessions load+save", t)));
        put(
            &format!("rotate_sync_vs_tower_sessions{suffix}"),
            report::ratio(ops("xems resolve+rotate (sync)", t), ops("tower-sessions load+save", t)),
        );
        put(&format!("rotate_vs_hashmap{suffix}"), report::ratio(rotate, ops("hashmap get+insert", t)));
        put(&format!("rotate_vs_moka{suffix}"), report::ratio(rotate, ops("moka get+insert", t)));
        put(
            &format!("moka_vs_hashmap{suffix}"),
            report::ratio(ops("moka get+insert", t), ops("hashmap get+insert", t)),
        );
        put(
            &format!("tower_sessions_vs_hashmap{suffix}"),
            report::ratio(ops("tower-sessions load+save", t), ops("hashmap get+insert", t)),
        );
    }
    report::print_ratios(&ratios);

    report.set("xems_engine", xems.is_some());
    report.set("load_latency_ns", &miss);
    report.set("value_bytes", VALUE_LEN);
    report.set("preloaded", PRELOAD);
    report.set_ratios(&ratios);
    report.set("bytes_per_session", bpe("xems-engine"));
    report.set("hashmap_bytes_per_entry", bpe("hashmap"));
    report.set("moka_bytes_per_entry", bpe("moka"));
    report.set("tower_sessions_bytes_per_entry", bpe("tower-sessions"));
    report.set("memory", &figures);
    report.set("cases", &rows);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_value_is_256_bytes_of_json_object() {
        let v = session_value();
        assert_eq!(v.len(), VALUE_LEN);
        let parsed: Value = serde_json::from_slice(&v).unwrap();
        assert!(parsed.is_object());
        assert_eq!(tower_record(&v).data.len(), parsed.as_object().unwrap().len());
    }

    #[test]
    fn sharded_map_round_trip() {
        let m = ShardedMap::new();
        let k = random_keys(1, 3)[0];
        assert_eq!(m.get(&k), None);
        m.insert(k, b"v".to_vec());
        assert_eq!(m.get(&k).as_deref(), Some(&b"v"[..]));
    }

    /// A plaintext, non-rotating-safe stand-in store: just enough of the
    /// trait to check that `store_cases` drives a store correctly.
    #[derive(Default)]
    struct PlainStore(Mutex<HashMap<String, Vec<u8>>>);

    fn meta() -> xems_core::SessionMeta {
        use xems_core::{SessionId, SessionMeta, Timestamp};
        let d = std::time::Duration::from_secs(900);
        SessionMeta::new(SessionId::from_u64(1), 1, Timestamp::ZERO, Timestamp::ZERO, Timestamp::ZERO, d, false)
    }

    impl SessionStore for PlainStore {
        async fn create(&self, _: &str, value: &[u8], _: CreateOptions) -> xems_core::Result<xems_core::Created> {
            let t = xems_core::Token::mint(0);
            self.0.lock().insert(t.expose().to_owned(), value.to_vec());
            Ok(xems_core::Created::new(t, meta()))
        }
        async fn resolve(
            &self,
            _: &str,
            token: &str,
            opts: ResolveOptions,
        ) -> xems_core::Result<Option<xems_core::Resolved>> {
            use xems_core::{ResolveOutcome, Resolved, Rotation, Token, Value};
            let mut map = self.0.lock();
            if opts.rotate == Rotation::Always {
                let Some(v) = map.remove(token) else { return Ok(None) };
                let next = Token::mint(0);
                map.insert(next.expose().to_owned(), v.clone());
                return Ok(Some(Resolved::new(Value::from(v), Some(next), ResolveOutcome::Rotated, meta())));
            }
            Ok(map.get(token).map(|v| Resolved::new(Value::from(v.clone()), None, ResolveOutcome::Current, meta())))
        }
        async fn set(
            &self,
            _: &str,
            key: &str,
            value: &[u8],
            _: CreateOptions,
        ) -> xems_core::Result<xems_core::SessionMeta> {
            self.0.lock().insert(key.to_owned(), value.to_vec());
            Ok(meta())
        }
        async fn del(&self, _: &str, key: &str) -> xems_core::Result<bool> {
            Ok(self.0.lock().remove(key).is_some())
        }
        async fn exists(&self, _: &str, key: &str) -> xems_core::Result<bool> {
            Ok(self.0.lock().contains_key(key))
        }
        async fn touch(
            &self,
            _: &str,
            _: &str,
            _: Option<std::time::Duration>,
        ) -> xems_core::Result<Option<xems_core::SessionMeta>> {
            Ok(None)
        }
        async fn update_if(&self, _: &str, _: &str, _: u64, _: &[u8]) -> xems_core::Result<xems_core::UpdateOutcome> {
            Ok(xems_core::UpdateOutcome::NotFound)
        }
        async fn migrate(
            &self,
            _: &str,
            _: &str,
            _: &str,
            _: Option<&[u8]>,
            _: CreateOptions,
        ) -> xems_core::Result<Option<xems_core::Created>> {
            Ok(None)
        }
        async fn list_subject(&self, _: &str, _: &str) -> xems_core::Result<Vec<xems_core::SessionMeta>> {
            Ok(Vec::new())
        }
        async fn revoke_subject(&self, _: &str, _: &str, _: Option<&str>) -> xems_core::Result<usize> {
            Ok(0)
        }
        async fn revoke_session(&self, _: &str, _: &str, _: &xems_core::SessionId) -> xems_core::Result<bool> {
            Ok(false)
        }
        async fn stats(&self) -> xems_core::Result<xems_core::Stats> {
            Ok(xems_core::Stats::default())
        }
    }

    #[test]
    fn store_cases_drive_a_store() {
        let cfg = RunConfig {
            threads: 1,
            warmup: std::time::Duration::from_millis(5),
            duration: std::time::Duration::from_millis(20),
            sample_every: 4,
        };
        let figures = store_cases(PlainStore::default, &cfg, &session_value(), 500);
        let names: Vec<(&str, usize)> = figures.rows.iter().map(|m| (m.name.as_str(), m.threads)).collect();
        for op in ["create", "resolve", "resolve+rotate", "set", "get"] {
            for t in [1, 2] {
                assert!(names.contains(&(&*format!("xems {op}"), t)), "missing xems {op} on {t} threads: {names:?}");
            }
        }
        assert!(figures.rows.iter().all(|m| m.ops > 0), "{:?}", figures.rows);
        let filled = fill_store(PlainStore::default(), 100).unwrap();
        assert_eq!(filled.downcast_ref::<PlainStore>().unwrap().0.lock().len(), 100);
    }

    #[test]
    fn memory_cases_are_known() {
        for c in MEMORY_CASES {
            assert!(memory_case(c).is_some(), "{c}");
        }
        assert!(memory_case("nope").is_none());
        let filled = memory_case("hashmap").unwrap()(1000).unwrap();
        assert!(filled.downcast_ref::<ShardedMap>().is_some());
    }
}
