//! Idempotency keys through dispatch, on every backend: a repeat replays
//! the first result without running the handler, a reused key with another
//! command is refused, concurrent duplicates run once, failures give the
//! key back, and records expire.

use std::time::Duration;

use allframe::store::{MemoryStore, SqliteStore};
use allframe::{CommandError, DispatchConfig, DispatchOptions, Dispatcher, EventStore};
use bank::domain::{Deposit, OpenAccount, Withdraw};

fn keyed(key: &str) -> DispatchOptions {
    DispatchOptions::default().idempotency_key(key)
}

fn open_command() -> OpenAccount {
    OpenAccount {
        owner: "Ada".into(),
        email: "ada@example.com".into(),
        initial_deposit: 10,
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
    let plain = dispatcher
        .dispatch(deposit(5), DispatchOptions::default())
        .await
        .unwrap();
    assert_eq!(plain.version, 4, "without a key, a repeat runs again");
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
        .purge_idempotency_keys(Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(
        left, 0,
        "the dispatcher already purged the expired record of exp-1"
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
    };
}

on_every_backend!(
    replays_and_mismatches,
    failures_release_the_key,
    concurrent_duplicates_run_once,
    records_expire
);
