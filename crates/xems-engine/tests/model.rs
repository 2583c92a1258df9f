//! Property test: random sequences of operations and clock moves give the
//! same answers from the engine as from a simple reference model.

use std::collections::VecDeque;
use std::time::Duration;

use proptest::prelude::*;
use xems_core::{CreateOptions, MockClock, Refresh, ResolveOptions, ResolveOutcome, Timestamp, UpdateOutcome};
use xems_engine::{Engine, Sandbox};

const SANDBOXES: [&str; 2] = ["a", "b"];
const KEYS: [&str; 5] = [
    "k0",
    "k1",
    "user:2:otp",
    "9f0c1d2e3f405162738495a6b7c8d9eaf0b1c2d3e4f50617",
    // Shaped like a minted token (66 URL-safe characters) but chosen by the caller.
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
];
const TTLS_MS: [u64; 4] = [1_000, 5_000, 60_000, 900_000];
const GRACES_MS: [u64; 3] = [0, 500, 1_000];
const WINDOW: usize = 4;
const MAX_TTL_MS: u64 = 5 * 86_400_000;

#[derive(Clone, Debug)]
enum Op {
    Create {
        sb: usize,
        val: u8,
        ttl: usize,
    },
    Set {
        sb: usize,
        key: usize,
        val: u8,
        ttl: usize,
    },
    Get {
        sb: usize,
        addr: usize,
    },
    Resolve {
        sb: usize,
        addr: usize,
        rotate: bool,
        grace: usize,
        refresh: bool,
    },
    Del {
        sb: usize,
        addr: usize,
    },
    Exists {
        sb: usize,
        addr: usize,
    },
    Touch {
        sb: usize,
        addr: usize,
    },
    UpdateIf {
        sb: usize,
        addr: usize,
        stale: bool,
        val: u8,
    },
    Migrate {
        sb: usize,
        addr: usize,
    },
    Advance {
        ms: u64,
    },
    Sweep,
    /// A batch prefetch hint (a third sandbox, never created, included):
    /// it must change no answer that follows.
    Prefetch {
        addrs: Vec<(usize, usize)>,
    },
    /// Rotates a session `n` times in a row (exercises the retired window).
    RotateChain {
        sb: usize,
        addr: usize,
        n: usize,
        grace: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let sb = 0..SANDBOXES.len();
    prop_oneof![
        1 => (sb.clone(), any::<u8>(), 0..TTLS_MS.len()).prop_map(|(sb, val, ttl)| Op::Create { sb, val, ttl }),
        1 => (sb.clone(), 0..KEYS.len(), any::<u8>(), 0..TTLS_MS.len())
            .prop_map(|(sb, key, val, ttl)| Op::Set { sb, key, val, ttl }),
        1 => (sb.clone(), any::<usize>()).prop_map(|(sb, addr)| Op::Get { sb, addr }),
        3 => (sb.clone(), any::<usize>(), any::<bool>(), 0..GRACES_MS.len(), any::<bool>())
            .prop_map(|(sb, addr, rotate, grace, refresh)| Op::Resolve { sb, addr, rotate, grace, refresh }),
        1 => (sb.clone(), any::<usize>()).prop_map(|(sb, addr)| Op::Del { sb, addr }),
        1 => (sb.clone(), any::<usize>()).prop_map(|(sb, addr)| Op::Exists { sb, addr }),
        1 => (sb.clone(), any::<usize>()).prop_map(|(sb, addr)| Op::Touch { sb, addr }),
        1 => (sb.clone(), any::<usize>(), any::<bool>(), any::<u8>())
            .prop_map(|(sb, addr, stale, val)| Op::UpdateIf { sb, addr, stale, val }),
        1 => (sb.clone(), any::<usize>()).prop_map(|(sb, addr)| Op::Migrate { sb, addr }),
        2 => prop_oneof![0u64..1_200, 0u64..70_000].prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::Sweep),
        2 => proptest::collection::vec((0..SANDBOXES.len() + 1, any::<usize>()), 0..40)
            .prop_map(|addrs| Op::Prefetch { addrs }),
        1 => (sb.clone(), any::<usize>(), 1..40usize, 0..GRACES_MS.len())
            .prop_map(|(sb, addr, n, grace)| Op::RotateChain { sb, addr, n, grace }),
    ]
}

#[derive(Clone, Debug)]
struct Family {
    sandbox: usize,
    value: Vec<u8>,
    version: u64,
    idle_deadline: u64,
    abs_deadline: u64,
    ttl: u64,
    current: String,
    retired: VecDeque<(String, u64)>,
}

#[derive(Debug)]
enum Addr {
    Missing,
    Live(usize),
    Grace(usize),
    Retired(usize),
}

/// The reference model. A family is `None` once the engine has dropped it:
/// deleted, revoked, migrated, reclaimed by a sweep, or found expired by a
/// lookup of one of its addresses (expired families are never returned).
#[derive(Default)]
struct Model {
    now: u64,
    families: Vec<Option<Family>>,
}

impl Model {
    fn locate(&mut self, sb: usize, addr: &str) -> Addr {
        let now = self.now;
        for (i, slot) in self.families.iter_mut().enumerate() {
            let Some(f) = slot else { continue };
            if f.sandbox != sb {
                continue;
            }
            let found = if f.current == addr {
                Addr::Live(i)
            } else if let Some((_, until)) = f.retired.iter().find(|(t, _)| t == addr) {
                if now < *until { Addr::Grace(i) } else { Addr::Retired(i) }
            } else {
                continue;
            };
            if now >= f.idle_deadline {
                *slot = None;
                return Addr::Missing;
            }
            return found;
        }
        Addr::Missing
    }

    /// What a sweep surely reclaims: every record whose deadline falls before
    /// the current second (the finest wheel bucket is one second wide).
    fn sweep(&mut self) {
        let second = self.now / 1000 * 1000;
        for slot in &mut self.families {
            if slot.as_ref().is_some_and(|f| f.idle_deadline < second) {
                *slot = None;
            }
        }
    }

    fn fam(&mut self, i: usize) -> &mut Family {
        self.families[i].as_mut().expect("located family")
    }

    fn insert(&mut self, sb: usize, token: String, value: Vec<u8>, ttl: u64) {
        let now = self.now;
        self.families.push(Some(Family {
            sandbox: sb,
            value,
            version: 1,
            idle_deadline: now + ttl,
            abs_deadline: now + MAX_TTL_MS,
            ttl,
            current: token,
            retired: VecDeque::new(),
        }));
    }

    fn refresh(&mut self, i: usize) {
        let now = self.now;
        let f = self.fam(i);
        f.idle_deadline = (now + f.ttl).min(f.abs_deadline);
    }

    fn rotate(&mut self, i: usize, successor: String, grace: u64) {
        let now = self.now;
        let f = self.fam(i);
        let old = std::mem::replace(&mut f.current, successor);
        f.retired.push_back((old, now + grace));
        while f.retired.len() > WINDOW {
            if f.retired.front().is_some_and(|(_, until)| *until > now) {
                break;
            }
            f.retired.pop_front();
        }
    }

    /// After a sweep the engine holds at least the live records and at
    /// most those the sweep may leave (deadline within the current second).
    fn held_bounds(&self, sb: usize) -> (u64, u64) {
        let held = self.families.iter().flatten().filter(|f| f.sandbox == sb);
        let live = held.clone().filter(|f| self.now < f.idle_deadline).count() as u64;
        (live, held.count() as u64)
    }
}

struct World {
    engine: Engine,
    clock: MockClock,
    sandboxes: Vec<Sandbox>,
    model: Model,
    /// Every address ever seen: caller keys and minted tokens.
    addresses: Vec<String>,
}

impl World {
    fn new() -> Self {
        xems_testkit::logs::capture();
        let clock = MockClock::new(Timestamp::from_millis(1_800_000_000_000));
        let engine = Engine::builder().clock(clock.clone()).sweep_interval(None).build().unwrap();
        let sandboxes = SANDBOXES.iter().map(|s| engine.sandbox(s).unwrap()).collect();
        World {
            engine,
            clock,
            sandboxes,
            model: Model { now: 1_800_000_000_000, families: Vec::new() },
            addresses: KEYS.iter().map(|k| k.to_string()).collect(),
        }
    }

    fn addr(&self, i: usize) -> String {
        self.addresses[i % self.addresses.len()].clone()
    }

    fn learn(&mut self, token: &str) {
        self.addresses.push(token.to_owned());
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::RotateChain { sb, addr, n, grace } => {
                let mut addr = addr;
                for _ in 0..n {
                    let before = self.addresses.len();
                    self.apply(&Op::Resolve { sb, addr, rotate: true, grace, refresh: false })?;
                    if self.addresses.len() == before {
                        break; // nothing rotated: the address did not lead to a live session
                    }
                    addr = self.addresses.len() - 1;
                    self.apply(&Op::Advance { ms: 100 })?;
                }
            }
            Op::Advance { ms } => {
                self.clock.advance(Duration::from_millis(ms));
                self.model.now += ms;
            }
            Op::Prefetch { ref addrs } => {
                let named: Vec<(&str, String)> = addrs
                    .iter()
                    .map(|&(sb, addr)| (SANDBOXES.get(sb).copied().unwrap_or("never-created"), self.addr(addr)))
                    .collect();
                let refs: Vec<(&str, &str)> = named.iter().map(|(sb, a)| (*sb, a.as_str())).collect();
                self.engine.prefetch(&refs);
                let stats = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap()
                    .block_on(xems_core::SessionStore::stats(&self.engine))
                    .unwrap();
                prop_assert!(stats.sandbox("never-created").is_none(), "a hint created a sandbox");
            }
            Op::Sweep => {
                self.engine.sweep_expired();
                self.model.sweep();
                for (i, s) in self.sandboxes.iter().enumerate() {
                    let (low, high) = self.model.held_bounds(i);
                    let records = s.census().records as u64;
                    prop_assert!(
                        low <= records && records <= high,
                        "{records} records held after a sweep, expected {low}..={high}"
                    );
                }
            }
            Op::Create { sb, val, ttl } => {
                let c = self.sandboxes[sb]
                    .create(&[val], CreateOptions::new().with_ttl(Duration::from_millis(TTLS_MS[ttl])))
                    .unwrap();
                prop_assert_eq!(c.meta.version, 1);
                let token = c.token.expose().to_owned();
                self.learn(&token);
                self.model.insert(sb, token, vec![val], TTLS_MS[ttl]);
            }
            Op::Set { sb, key, val, ttl } => {
                let key = KEYS[key];
                let ttl_ms = TTLS_MS[ttl];
                let got =
                    self.sandboxes[sb].set(key, &[val], CreateOptions::new().with_ttl(Duration::from_millis(ttl_ms)));
                match self.model.locate(sb, key) {
                    Addr::Missing => {
                        prop_assert_eq!(got.unwrap().version, 1);
                        self.model.insert(sb, key.to_owned(), vec![val], ttl_ms);
                    }
                    Addr::Live(i) | Addr::Grace(i) => {
                        let now = self.model.now;
                        let f = self.model.fam(i);
                        f.value = vec![val];
                        f.version += 1;
                        f.ttl = ttl_ms;
                        f.idle_deadline = (now + ttl_ms).min(f.abs_deadline);
                        prop_assert_eq!(got.unwrap().version, f.version);
                    }
                    Addr::Retired(i) => {
                        prop_assert_eq!(got.unwrap_err().code().to_owned(), "token_retired");
                        self.model.families[i] = None;
                    }
                }
            }
            Op::Get { sb, addr } => {
                let addr = self.addr(addr);
                let got = self.sandboxes[sb].get(&addr).unwrap();
                match self.model.locate(sb, &addr) {
                    Addr::Missing => prop_assert!(got.is_none()),
                    Addr::Retired(i) => {
                        prop_assert!(got.is_none());
                        self.model.families[i] = None;
                    }
                    Addr::Live(i) => {
                        let r = got.expect("model says live");
                        let f = self.model.fam(i);
                        prop_assert_eq!(r.value.as_bytes(), &f.value[..]);
                        prop_assert_eq!(r.meta.version, f.version);
                        prop_assert_eq!(r.outcome, ResolveOutcome::Current);
                        prop_assert!(r.token.is_none());
                    }
                    Addr::Grace(i) => {
                        let r = got.expect("model says in grace");
                        let f = self.model.fam(i);
                        prop_assert_eq!(r.outcome, ResolveOutcome::Grace);
                        prop_assert_eq!(r.token.as_ref().map(|t| t.expose().to_owned()), Some(f.current.clone()));
                        prop_assert_eq!(r.value.as_bytes(), &f.value[..]);
                    }
                }
            }
            Op::Resolve { sb, addr, rotate, grace, refresh } => {
                let addr = self.addr(addr);
                let grace_ms = GRACES_MS[grace];
                let mut opts = ResolveOptions::new().with_grace(Duration::from_millis(grace_ms));
                if rotate {
                    opts = opts.with_rotation(xems_core::Rotation::Always);
                }
                if refresh {
                    opts = opts.with_refresh(Refresh::Idle);
                }
                let got = self.sandboxes[sb].resolve(&addr, opts).unwrap();
                match self.model.locate(sb, &addr) {
                    Addr::Missing => prop_assert!(got.is_none()),
                    Addr::Retired(i) => {
                        prop_assert!(got.is_none(), "replay after grace must be refused");
                        self.model.families[i] = None;
                    }
                    Addr::Live(i) => {
                        let r = got.expect("model says live");
                        prop_assert_eq!(r.value.as_bytes(), &self.model.fam(i).value[..]);
                        if rotate {
                            prop_assert_eq!(r.outcome, ResolveOutcome::Rotated);
                            let t = r.token.expect("rotation names a successor").expose().to_owned();
                            prop_assert_ne!(&t, &addr);
                            self.learn(&t);
                            self.model.rotate(i, t, grace_ms);
                        } else {
                            prop_assert_eq!(r.outcome, ResolveOutcome::Current);
                            prop_assert!(r.token.is_none());
                        }
                        if refresh {
                            self.model.refresh(i);
                        }
                        prop_assert_eq!(r.meta.expires_at.as_millis(), self.model.fam(i).idle_deadline);
                    }
                    Addr::Grace(i) => {
                        let r = got.expect("model says in grace");
                        prop_assert_eq!(r.outcome, ResolveOutcome::Grace);
                        let current = self.model.fam(i).current.clone();
                        prop_assert_eq!(r.token.map(|t| t.expose().to_owned()), Some(current));
                        if refresh {
                            self.model.refresh(i);
                        }
                    }
                }
            }
            Op::Del { sb, addr } => {
                let addr = self.addr(addr);
                let got = self.sandboxes[sb].del(&addr).unwrap();
                match self.model.locate(sb, &addr) {
                    Addr::Missing => prop_assert!(!got),
                    Addr::Live(i) | Addr::Grace(i) | Addr::Retired(i) => {
                        prop_assert!(got);
                        self.model.families[i] = None;
                    }
                }
            }
            Op::Exists { sb, addr } => {
                let addr = self.addr(addr);
                let got = self.sandboxes[sb].exists(&addr).unwrap();
                let expected = matches!(self.model.locate(sb, &addr), Addr::Live(_) | Addr::Grace(_));
                prop_assert_eq!(got, expected);
            }
            Op::Touch { sb, addr } => {
                let addr = self.addr(addr);
                let got = self.sandboxes[sb].touch(&addr, None).unwrap();
                match self.model.locate(sb, &addr) {
                    Addr::Missing => prop_assert!(got.is_none()),
                    Addr::Retired(i) => {
                        prop_assert!(got.is_none());
                        self.model.families[i] = None;
                    }
                    Addr::Live(i) | Addr::Grace(i) => {
                        self.model.refresh(i);
                        prop_assert_eq!(got.unwrap().expires_at.as_millis(), self.model.fam(i).idle_deadline);
                    }
                }
            }
            Op::UpdateIf { sb, addr, stale, val } => {
                let addr = self.addr(addr);
                let located = self.model.locate(sb, &addr);
                let expected_version = match located {
                    Addr::Live(i) | Addr::Grace(i) => self.model.fam(i).version - u64::from(stale),
                    _ => 1,
                };
                let got = self.sandboxes[sb].update_if(&addr, expected_version, &[val]);
                match located {
                    Addr::Missing => prop_assert_eq!(got.unwrap(), UpdateOutcome::NotFound),
                    Addr::Retired(i) => {
                        prop_assert_eq!(got.unwrap_err().code().to_owned(), "token_retired");
                        self.model.families[i] = None;
                    }
                    Addr::Live(i) | Addr::Grace(i) => {
                        let f = self.model.fam(i);
                        if stale {
                            prop_assert_eq!(got.unwrap(), UpdateOutcome::Conflict { current_version: f.version });
                        } else {
                            f.version += 1;
                            f.value = vec![val];
                            let UpdateOutcome::Updated(m) = got.unwrap() else {
                                return Err(TestCaseError::fail("expected an update"));
                            };
                            prop_assert_eq!(m.version, f.version);
                        }
                    }
                }
            }
            Op::Migrate { sb, addr } => {
                let addr = self.addr(addr);
                let to = 1 - sb;
                let got = self.sandboxes[sb].migrate(&addr, &self.sandboxes[to], None, CreateOptions::new()).unwrap();
                match self.model.locate(sb, &addr) {
                    Addr::Missing => prop_assert!(got.is_none()),
                    Addr::Retired(i) => {
                        prop_assert!(got.is_none());
                        self.model.families[i] = None;
                    }
                    Addr::Live(i) | Addr::Grace(i) => {
                        let c = got.expect("model says it migrates");
                        let value = self.model.fam(i).value.clone();
                        self.model.families[i] = None;
                        let token = c.token.expose().to_owned();
                        self.learn(&token);
                        self.model.insert(to, token, value, 900_000);
                    }
                }
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        let mut world = World::new();
        for op in &ops {
            world.apply(op)?;
        }
        // Finally every address agrees on existence.
        for i in 0..world.addresses.len() {
            for sb in 0..SANDBOXES.len() {
                world.apply(&Op::Exists { sb, addr: i })?;
            }
        }
    }
}
