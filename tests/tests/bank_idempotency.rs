//! Idempotency keys through dispatch, on every backend: a repeat replays
//! the first result without running the handler, a reused key with another
//! command is refused, concurrent duplicates run once, failures give the
//! key back, records expire, a key taken over after its lease ran out
//! still runs once, and maps in commands fingerprint in any order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use allframe::store::{MemoryStore, SqliteStore};
use allframe::{
    CommandError, CommandOutcome, DispatchConfig, DispatchOptions, Dispatcher, EventStore,
    ExpectedVersion, IfMatch, NewEvent,
};
use bank::domain::{Deposit, OpenAccount, Withdraw};
use serde::{Deserialize, Serialize};

/// A slow domain: a jar that coins are added to by a handler that takes
/// as long as the command says, refusing to fill the jar past its limit
/// (adding no coins decides on no events).
#[derive(allframe::Event, Debug, PartialEq)]
enum JarEvent {
    JarPlaced {},
    CoinsAdded { coins: u64 },
}

#[derive(Default)]
struct Jar {
    coins: u64,
}

impl allframe::Aggregate for Jar {
    type Event = JarEvent;
    const CATEGORY: &'static str = "jar";
    fn apply(&mut self, event: &JarEvent) {
        if let JarEvent::CoinsAdded { coins } = event {
            self.coins += coins;
        }
    }
}

#[derive(Debug, thiserror::Error, allframe::DomainError)]
enum JarError {
    #[error("the jar is full")]
    Full,
}

#[allframe::command(aggregate = Jar, id = jar, name = "add-coins-slowly")]
#[derive(Clone, Serialize, Deserialize, garde::Validate)]
struct AddCoinsSlowly {
    #[garde(skip)]
    jar: String,
    #[garde(skip)]
    coins: u64,
    /// The most coins the jar may hold.
    #[garde(skip)]
    limit: u64,
    /// How long the handler takes.
    #[garde(skip)]
    millis: u64,
    /// Labels whose iteration order differs from map to map.
    #[garde(skip)]
    labels: HashMap<String, u32>,
}

#[allframe::command_handler]
async fn add_coins_slowly(command: AddCoinsSlowly, jar: &Jar) -> Result<Vec<JarEvent>, JarError> {
    tokio::time::sleep(Duration::from_millis(command.millis)).await;
    if jar.coins + command.coins > command.limit {
        return Err(JarError::Full);
    }
    if command.coins == 0 {
        return Ok(Vec::new());
    }
    Ok(vec![JarEvent::CoinsAdded {
        coins: command.coins,
    }])
}

/// Labels in a map of its own, iterated in an order of its own.
fn labels() -> HashMap<String, u32> {
    (0..32).map(|i| (format!("label-{i}"), i)).collect()
}

async fn place_jar(store: &dyn EventStore, jar: &str) {
    store
        .append(
            &format!("jar-{jar}"),
            ExpectedVersion::NoStream,
            vec![NewEvent::from_event(&JarEvent::JarPlaced {}).unwrap()],
        )
        .await
        .unwrap();
}

fn keyed(key: &str) -> DispatchOptions {
    DispatchOptions::default().idempotency_key(key)
}

fn open_command() -> OpenAccount {
    OpenAccount {
        owner: "Ada".into(),
        email: "ada@example.com".into(),
        initial_deposit: 10,
        currency: None,
    }
}

async fn replays_and_mismatches(store: &dyn EventStore) {
    let dispatcher = Dispatcher::builder(store).build().unwrap();
    let opened = dispatcher
        .dispatch(open_command(), keyed("open-1"))
        .await
        .unwrap();
    assert!(!opened.replayed);
    let again = dispatcher
        .dispatch(open_command(), keyed("open-1"))
        .await
        .unwrap();
    assert!(again.replayed, "the repeat is a replay");
    assert_eq!(again.aggregate_id, opened.aggregate_id, "no second account");
    assert_eq!(
        serde_json::to_string(&again).unwrap(),
        serde_json::to_string(&opened).unwrap(),
        "the replayed outcome is the first one, byte for byte"
    );
    let id = opened.aggregate_id.clone();
    let deposit = |amount| Deposit {
        account_id: id.clone(),
        amount,
    };
    let first = dispatcher
        .dispatch(deposit(5), keyed("dep-1"))
        .await
        .unwrap();
    let repeat = dispatcher
        .dispatch(deposit(5), keyed("dep-1"))
        .await
        .unwrap();
    assert!(repeat.replayed);
    assert_eq!(
        (repeat.version, repeat.position),
        (first.version, first.position)
    );
    assert_eq!(
        store.stream_version(&opened.stream_id).await.unwrap(),
        3,
        "the handler ran once"
    );
    let error = dispatcher
        .dispatch(deposit(6), keyed("dep-1"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, CommandError::IdempotencyMismatch(_)),
        "{error:?}"
    );
    assert_eq!(
        (error.status(), error.code()),
        (422, "idempotency-key-reused")
    );
    let error = dispatcher
        .dispatch(
            Withdraw {
                account_id: id.clone(),
                amount: 5,
            },
            keyed("dep-1"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, CommandError::IdempotencyMismatch(_)),
        "another command: {error:?}"
    );
    // `If-Match` changes the outcome, so it is part of the request: the same
    // command with another (or a new) precondition is another request.
    for if_match in [
        IfMatch::OneOf(vec![first.version]),
        IfMatch::OneOf(vec![2, 3]),
        IfMatch::Exists,
    ] {
        let error = dispatcher
            .dispatch(deposit(5), keyed("dep-1").if_match(if_match))
            .await
            .unwrap_err();
        assert!(
            matches!(error, CommandError::IdempotencyMismatch(_)),
            "another precondition: {error:?}"
        );
    }
    let guarded = || keyed("dep-2").expected_version(first.version);
    let once = dispatcher.dispatch(deposit(5), guarded()).await.unwrap();
    let again = dispatcher.dispatch(deposit(5), guarded()).await.unwrap();
    assert!(again.replayed, "the same precondition replays");
    assert_eq!(again.version, once.version);
    let plain = dispatcher
        .dispatch(deposit(5), DispatchOptions::default())
        .await
        .unwrap();
    assert_eq!(plain.version, 5, "without a key, a repeat runs again");
}

async fn failures_release_the_key(store: &dyn EventStore) {
    let dispatcher = Dispatcher::builder(store).build().unwrap();
    let opened = dispatcher
        .dispatch(open_command(), DispatchOptions::default())
        .await
        .unwrap();
    let withdraw = || Withdraw {
        account_id: opened.aggregate_id.clone(),
        amount: 15,
    };
    for _ in 0..2 {
        let error = dispatcher
            .dispatch(withdraw(), keyed("w-1"))
            .await
            .unwrap_err();
        assert_eq!(
            error.code(),
            "insufficient-funds",
            "the refusal is not stored: it runs again"
        );
    }
    let deposit = Deposit {
        account_id: opened.aggregate_id.clone(),
        amount: 5,
    };
    dispatcher
        .dispatch(deposit, DispatchOptions::default())
        .await
        .unwrap();
    let now_enough = dispatcher.dispatch(withdraw(), keyed("w-1")).await.unwrap();
    assert!(!now_enough.replayed);
    assert_eq!(now_enough.version, 4);
}

async fn concurrent_duplicates_run_once(store: &dyn EventStore) {
    let dispatcher = std::sync::Arc::new(Dispatcher::builder(store).build().unwrap());
    let opened = dispatcher
        .dispatch(open_command(), DispatchOptions::default())
        .await
        .unwrap();
    let racers = (0..16).map(|_| {
        let dispatcher = dispatcher.clone();
        let account_id = opened.aggregate_id.clone();
        tokio::spawn(async move {
            dispatcher
                .dispatch(
                    Deposit {
                        account_id,
                        amount: 7,
                    },
                    keyed("race-1"),
                )
                .await
        })
    });
    let mut ran = 0;
    for outcome in futures_util::future::join_all(racers).await {
        match outcome.unwrap() {
            Ok(outcome) if !outcome.replayed => ran += 1,
            Ok(_) => {}
            Err(CommandError::IdempotencyInFlight(key)) => assert_eq!(key, "race-1"),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(ran, 1, "exactly one duplicate ran the handler");
    assert_eq!(store.stream_version(&opened.stream_id).await.unwrap(), 3);
    let late = dispatcher
        .dispatch(
            Deposit {
                account_id: opened.aggregate_id.clone(),
                amount: 7,
            },
            keyed("race-1"),
        )
        .await
        .unwrap();
    assert!(
        late.replayed,
        "once the first finished, duplicates get its result"
    );
}

async fn records_expire(store: &dyn EventStore) {
    let config = DispatchConfig::default().idempotency_retention(Duration::from_millis(300));
    let dispatcher = Dispatcher::builder(store).config(config).build().unwrap();
    let opened = dispatcher
        .dispatch(open_command(), DispatchOptions::default())
        .await
        .unwrap();
    let deposit = || Deposit {
        account_id: opened.aggregate_id.clone(),
        amount: 1,
    };
    dispatcher
        .dispatch(deposit(), keyed("exp-1"))
        .await
        .unwrap();
    assert!(
        dispatcher
            .dispatch(deposit(), keyed("exp-1"))
            .await
            .unwrap()
            .replayed
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let after = dispatcher
        .dispatch(deposit(), keyed("exp-1"))
        .await
        .unwrap();
    assert!(!after.replayed, "an expired key runs the command again");
    assert_eq!(after.version, 4);
    tokio::time::sleep(Duration::from_millis(600)).await;
    dispatcher
        .dispatch(deposit(), keyed("exp-2"))
        .await
        .unwrap();
    let left = store
        .idempotency()
        .expect("idempotency records")
        .purge_idempotency_keys(Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(
        left, 0,
        "the dispatcher already purged the expired record of exp-1"
    );
}

/// The reviewer's scenario: a lease of 100 ms, a handler that takes 300 ms,
/// and a retry with the same key after 150 ms, which takes the key over.
/// Exactly one set of events is written, and both callers answer with it
/// (one fresh, one replayed) — or the retry is told the key is in flight.
/// With `limit` = 5 the retry's own run would be refused (the jar is full
/// after the first): it still answers with the key's outcome.
async fn taken_over_key_runs_once(store: &dyn EventStore, limit: u64) {
    let config = DispatchConfig::default().idempotency_lease(Duration::from_millis(100));
    let dispatcher = Arc::new(Dispatcher::builder(store).config(config).build().unwrap());
    place_jar(store, "j1").await;
    let command = || AddCoinsSlowly {
        jar: "j1".into(),
        coins: 5,
        limit,
        millis: 300,
        labels: labels(),
    };
    let first = tokio::spawn({
        let (dispatcher, command) = (dispatcher.clone(), command());
        async move { dispatcher.dispatch(command, keyed("slow-1")).await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let second = dispatcher.dispatch(command(), keyed("slow-1")).await;
    let first = first.await.unwrap();

    let log = store.read_stream("jar-j1", 0, 100).await.unwrap();
    let types: Vec<&str> = log.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        ["JarPlaced", "CoinsAdded"],
        "exactly one set of events: {first:?} / {second:?}"
    );
    let outcomes: Vec<&CommandOutcome> = [&first, &second]
        .into_iter()
        .filter_map(|outcome| outcome.as_ref().ok())
        .collect();
    for outcome in [&first, &second] {
        if let Err(error) = outcome {
            assert!(
                matches!(error, CommandError::IdempotencyInFlight(key) if key == "slow-1"),
                "{error:?}"
            );
        }
    }
    assert_eq!(
        outcomes.iter().filter(|o| !o.replayed).count(),
        1,
        "one caller ran the command: {first:?} / {second:?}"
    );
    for outcome in &outcomes {
        assert_eq!(
            (outcome.version, outcome.position),
            (2, Some(log[1].position))
        );
        assert_eq!(outcome.events.len(), 1);
        assert_eq!(
            outcome.events[0].metadata.event_id,
            log[1].metadata.event_id
        );
    }
    let later = dispatcher
        .dispatch(command(), keyed("slow-1"))
        .await
        .unwrap();
    assert!(later.replayed);
    assert_eq!(later.events[0].metadata.event_id, log[1].metadata.event_id);
    assert_eq!(store.stream_version("jar-j1").await.unwrap(), 2);
}

async fn taken_over_key_runs_once_unlimited(store: &dyn EventStore) {
    taken_over_key_runs_once(store, u64::MAX).await;
}

async fn taken_over_key_runs_once_when_the_retry_would_be_refused(store: &dyn EventStore) {
    taken_over_key_runs_once(store, 5).await;
}

/// A command with a `HashMap` field fingerprints the same whatever order
/// its map iterates in: repeats replay instead of being refused as reused.
async fn maps_fingerprint_in_any_order(store: &dyn EventStore) {
    let dispatcher = Dispatcher::builder(store).build().unwrap();
    place_jar(store, "j2").await;
    let command = || AddCoinsSlowly {
        jar: "j2".into(),
        coins: 1,
        limit: u64::MAX,
        millis: 0,
        labels: labels(),
    };
    let (a, b) = (command(), command());
    assert_ne!(
        a.labels.keys().collect::<Vec<_>>(),
        b.labels.keys().collect::<Vec<_>>(),
        "the maps iterate in different orders"
    );
    let first = dispatcher.dispatch(a, keyed("map-1")).await.unwrap();
    assert!(!first.replayed);
    for _ in 0..4 {
        let again = dispatcher
            .dispatch(command(), keyed("map-1"))
            .await
            .unwrap();
        assert!(again.replayed);
        assert_eq!(again.version, first.version);
    }
    let mut other = command();
    other.labels.insert("label-0".into(), 99);
    let error = dispatcher
        .dispatch(other, keyed("map-1"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, CommandError::IdempotencyMismatch(_)),
        "a different value is still a different request: {error:?}"
    );
    assert_eq!(store.stream_version("jar-j2").await.unwrap(), 2);
}

fn unclaimed(key: &str) -> DispatchOptions {
    DispatchOptions::default().unclaimed_idempotency_key(key)
}

/// A key recorded with the command's events instead of claimed first:
/// the effect still happens once — a repeat replays even where running the
/// handler again would now be refused (the money is gone), a command
/// without events and a refused one consult the record, a reused key with
/// another command is refused, a key another caller holds is in flight,
/// and concurrent duplicates write once.
async fn unclaimed_keys_take_effect_once(store: &dyn EventStore) {
    let dispatcher = Arc::new(Dispatcher::builder(store).build().unwrap());
    let opened = dispatcher
        .dispatch(open_command(), DispatchOptions::default())
        .await
        .unwrap();
    let account_id = opened.aggregate_id.clone();
    let everything = || Withdraw {
        account_id: account_id.clone(),
        amount: 10,
    };
    let first = dispatcher
        .dispatch(everything(), unclaimed("u-1"))
        .await
        .unwrap();
    assert!(!first.replayed);
    let again = dispatcher
        .dispatch(everything(), unclaimed("u-1"))
        .await
        .expect("the repeat replays instead of being refused for lack of money");
    assert!(again.replayed);
    assert_eq!(again.position, first.position);
    let claimed_again = dispatcher
        .dispatch(everything(), keyed("u-1"))
        .await
        .unwrap();
    assert!(claimed_again.replayed, "a claim finds the record too");
    assert_eq!(first.version, opened.version + 1);
    assert_eq!(
        store.stream_version(&opened.stream_id).await.unwrap(),
        first.version
    );

    let other = dispatcher
        .dispatch(
            Deposit {
                account_id: account_id.clone(),
                amount: 1,
            },
            unclaimed("u-1"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(other, CommandError::IdempotencyMismatch(ref key) if key == "u-1"),
        "{other:?}"
    );

    // Refused with nothing to replay: the refusal stands, and the key is
    // free afterwards.
    let refused = dispatcher
        .dispatch(everything(), unclaimed("u-2"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "insufficient-funds", "{refused:?}");
    dispatcher
        .dispatch(
            Deposit {
                account_id: account_id.clone(),
                amount: 10,
            },
            DispatchOptions::default(),
        )
        .await
        .unwrap();
    let now_enough = dispatcher
        .dispatch(everything(), unclaimed("u-2"))
        .await
        .unwrap();
    assert!(!now_enough.replayed);

    // A command deciding on no events stores its answer too.
    place_jar(store, "u").await;
    let none = AddCoinsSlowly {
        jar: "u".into(),
        coins: 0,
        limit: 10,
        millis: 0,
        labels: HashMap::new(),
    };
    let nothing = dispatcher
        .dispatch(none.clone(), unclaimed("u-3"))
        .await
        .unwrap();
    assert!(nothing.events.is_empty() && !nothing.replayed);
    assert!(
        dispatcher
            .dispatch(none, unclaimed("u-3"))
            .await
            .unwrap()
            .replayed
    );

    // A key claimed by a caller that died before finishing (its task
    // dropped mid-handler): in flight until its lease runs out.
    let slow = AddCoinsSlowly {
        jar: "u".into(),
        coins: 1,
        limit: 10,
        millis: 300,
        labels: HashMap::new(),
    };
    let holder = {
        let (dispatcher, slow) = (dispatcher.clone(), slow.clone());
        tokio::spawn(async move { dispatcher.dispatch(slow, keyed("u-4")).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    holder.abort();
    assert!(holder.await.unwrap_err().is_cancelled());
    let busy = dispatcher
        .dispatch(slow, unclaimed("u-4"))
        .await
        .unwrap_err();
    assert!(
        matches!(busy, CommandError::IdempotencyInFlight(_)),
        "{busy:?}"
    );
    assert_eq!(store.stream_version("jar-u").await.unwrap(), 1);

    // Concurrent duplicates may each run the handler; one writes.
    let racers = (0..16).map(|_| {
        let dispatcher = dispatcher.clone();
        let account_id = account_id.clone();
        tokio::spawn(async move {
            dispatcher
                .dispatch(
                    Deposit {
                        account_id,
                        amount: 7,
                    },
                    unclaimed("u-5"),
                )
                .await
        })
    });
    let outcomes: Vec<CommandOutcome> = futures_util::future::join_all(racers)
        .await
        .into_iter()
        .map(|outcome| outcome.unwrap().unwrap())
        .collect();
    assert_eq!(outcomes.iter().filter(|o| !o.replayed).count(), 1);
    assert!(outcomes.iter().all(|o| o.position == outcomes[0].position));
    // The first withdrawal, a deposit, the second withdrawal, the race.
    assert_eq!(
        store.stream_version(&opened.stream_id).await.unwrap(),
        first.version + 3
    );
}

macro_rules! on_every_backend {
    ($($check:ident),*) => {
        mod memory {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                super::$check(&MemoryStore::new()).await;
            })*
        }
        mod sqlite {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let dir = tempfile::tempdir().unwrap();
                super::$check(&SqliteStore::open(dir.path().join("bank.db")).await.unwrap()).await;
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let Some(store) = allframe_tests::postgres_store().await else { return };
                super::$check(&store).await;
            })*
        }
        mod allsource {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let dir = tempfile::tempdir().unwrap();
                let store = allframe_allsource::AllSourceStore::open(dir.path()).await.unwrap();
                super::$check(&store).await;
            })*
        }
    };
}

on_every_backend!(
    replays_and_mismatches,
    failures_release_the_key,
    concurrent_duplicates_run_once,
    records_expire,
    taken_over_key_runs_once_unlimited,
    taken_over_key_runs_once_when_the_retry_would_be_refused,
    maps_fingerprint_in_any_order,
    unclaimed_keys_take_effect_once
);
