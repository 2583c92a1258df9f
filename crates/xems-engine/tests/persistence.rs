//! The persistence interface: a journal that replays changes into images
//! restores an engine exactly (tokens, grace windows, retired tokens,
//! subjects, versions), and snapshots agree with replay.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use xems_core::{BoxFuture, Clock, CreateOptions, MockClock, ResolveOptions, ResolveOutcome, Timestamp};
use xems_engine::{Change, Engine, Image, Journal, JournalError, Ticket};
use zeroize::Zeroizing;

/// Replays changes into images, as a vault does on start-up.
#[derive(Default)]
struct Replay {
    images: Mutex<BTreeMap<(String, u64), Image>>,
    seq: Mutex<u64>,
}

impl Journal for Replay {
    fn append(&self, change: &Change<'_>) -> Ticket {
        let mut images = self.images.lock().unwrap();
        match change {
            Change::Put(p) => {
                images.insert((p.sandbox.to_owned(), p.family), Image::from_put(p));
            }
            Change::Remove { sandbox, family } => {
                images.remove(&(sandbox.to_string(), *family));
            }
            Change::Replace { sandbox, family, .. }
            | Change::Touch { sandbox, family, .. }
            | Change::Rotate { sandbox, family, .. } => {
                if let Some(img) = images.get_mut(&(sandbox.to_string(), *family)) {
                    img.apply(change);
                }
            }
            _ => panic!("unknown change"),
        }
        let mut seq = self.seq.lock().unwrap();
        *seq += 1;
        *seq
    }

    fn wait_blocking(&self, _: Ticket) -> Result<(), JournalError> {
        Ok(())
    }

    fn wait(&self, _: Ticket) -> BoxFuture<'_, Result<(), JournalError>> {
        Box::pin(async { Ok(()) })
    }
}

fn engine(clock: &MockClock, root: [u8; 32], journal: Option<Arc<dyn Journal>>) -> Engine {
    xems_testkit::logs::capture();
    let mut b = Engine::builder().clock(clock.clone()).sweep_interval(None).key_root(Zeroizing::new(root));
    if let Some(j) = journal {
        b = b.journal(j);
    }
    b.build().unwrap()
}

#[test]
fn replayed_journal_restores_every_state() {
    let clock = MockClock::new(Timestamp::from_millis(1_800_000_000_000));
    let root = [7u8; 32];
    let replay = Arc::new(Replay::default());
    let e1 = engine(&clock, root, Some(replay.clone()));
    let active = e1.sandbox("active").unwrap();
    let pending = e1.sandbox("otp-pending").unwrap();

    // A rotated session with a token in grace and one past grace.
    let a0 = active.create(b"alpha", CreateOptions::new().with_subject("u1")).unwrap().token;
    let a1 = active
        .resolve(a0.expose(), ResolveOptions::rotating().with_grace(Duration::from_millis(100)))
        .unwrap()
        .unwrap()
        .token
        .unwrap();
    clock.advance(Duration::from_millis(500));
    let a2 = active
        .resolve(a1.expose(), ResolveOptions::rotating().with_grace(Duration::from_secs(55)))
        .unwrap()
        .unwrap()
        .token
        .unwrap();
    // A caller key, replaced twice.
    active.set("user:1:profile", b"v1", CreateOptions::new()).unwrap();
    active.set("user:1:profile", b"v3", CreateOptions::new().with_ttl(Duration::from_secs(3600))).unwrap();
    // A touched session, a deleted one, a migrated one.
    let t = active.create(b"touched", CreateOptions::new().with_ttl(Duration::from_secs(60))).unwrap().token;
    clock.advance(Duration::from_secs(30));
    active.touch(t.expose(), None).unwrap().unwrap();
    let gone = active.create(b"gone", CreateOptions::new()).unwrap().token;
    assert!(active.del(gone.expose()).unwrap());
    let temp = pending.create(b"temp", CreateOptions::new()).unwrap().token;
    let moved =
        pending.migrate(temp.expose(), &active, None, CreateOptions::new().with_subject("u1")).unwrap().unwrap().token;

    // Snapshot images agree with the replayed journal.
    let snapshot: BTreeMap<(String, u64), Image> =
        e1.images().into_iter().map(|i| ((i.sandbox.clone(), i.family), i)).collect();
    let replayed = replay.images.lock().unwrap().clone();
    assert_eq!(snapshot.keys().collect::<Vec<_>>(), replayed.keys().collect::<Vec<_>>());
    for (k, s) in &snapshot {
        let r = &replayed[k];
        assert_eq!(
            (s.key, s.version, &s.value[..], s.idle_deadline, s.abs_deadline, s.subject),
            (r.key, r.version, &r.value[..], r.idle_deadline, r.abs_deadline, r.subject),
            "{k:?}"
        );
        assert_eq!(s.retired, r.retired, "{k:?}");
        // A current token whose grace windows are over may linger in the
        // replay (it does not know the time); restore ignores it.
        let now = clock.now().as_millis();
        let live = |c: &Option<(xems_core::Token, u64)>| c.as_ref().filter(|c| c.1 > now).map(|c| c.1);
        assert_eq!(live(&s.current), live(&r.current), "{k:?}");
    }

    // A new process: same key root, images restored.
    drop(e1);
    let e2 = engine(&clock, root, None);
    assert_eq!(e2.restore(replayed.into_values()).unwrap(), 4);
    let active = e2.sandbox("active").unwrap();
    let r = active.resolve(a2.expose(), ResolveOptions::new()).unwrap().expect("current token resolves");
    assert_eq!(r.value.as_bytes(), b"alpha");
    let g = active.resolve(a1.expose(), ResolveOptions::new()).unwrap().expect("in grace after restart");
    assert_eq!(g.outcome, ResolveOutcome::Grace);
    assert_eq!(g.token.unwrap(), a2, "a grace hit still names the current token");
    assert_eq!(active.get("user:1:profile").unwrap().unwrap().value.as_bytes(), b"v3");
    assert_eq!(active.get("user:1:profile").unwrap().unwrap().meta.version, 2);
    assert_eq!(
        active.get(t.expose()).unwrap().unwrap().meta.expires_at.as_millis(),
        1_800_000_000_000 + 500 + 30_000 + 60_000
    );
    assert!(active.get(gone.expose()).unwrap().is_none());
    assert!(e2.sandbox("otp-pending").unwrap().get(temp.expose()).unwrap().is_none());
    assert_eq!(active.get(moved.expose()).unwrap().unwrap().value.as_bytes(), b"temp");
    assert_eq!(active.list_subject("u1").unwrap().len(), 2);
    // The token past its grace is still remembered: replaying it revokes.
    assert!(active.resolve(a0.expose(), ResolveOptions::new()).unwrap().is_none());
    assert!(active.get(a2.expose()).unwrap().is_none(), "reuse after restart revokes the session");
    // New sessions never reuse a restored family id.
    let fresh = active.create(b"fresh", CreateOptions::new()).unwrap();
    assert!(active.list_subject("u1").unwrap().iter().all(|m| m.id != fresh.meta.id));
}

#[test]
fn expired_images_are_not_restored() {
    let clock = MockClock::new(Timestamp::from_millis(1_800_000_000_000));
    let replay = Arc::new(Replay::default());
    let e1 = engine(&clock, [1; 32], Some(replay.clone()));
    e1.sandbox("s").unwrap().create(b"short", CreateOptions::new().with_ttl(Duration::from_secs(1))).unwrap();
    e1.sandbox("s").unwrap().create(b"long", CreateOptions::new()).unwrap();
    clock.advance(Duration::from_secs(2));
    let e2 = engine(&clock, [1; 32], None);
    assert_eq!(e2.restore(replay.images.lock().unwrap().clone().into_values()).unwrap(), 1);
}

#[test]
fn another_key_root_resolves_nothing() {
    let clock = MockClock::new(Timestamp::from_millis(1_800_000_000_000));
    let replay = Arc::new(Replay::default());
    let e1 = engine(&clock, [1; 32], Some(replay.clone()));
    let t = e1.sandbox("s").unwrap().create(b"v", CreateOptions::new()).unwrap().token;
    let e2 = engine(&clock, [2; 32], None);
    e2.restore(replay.images.lock().unwrap().clone().into_values()).unwrap();
    assert!(e2.sandbox("s").unwrap().get(t.expose()).unwrap().is_none());
}
