//! The conformance suite on SQLite: an in-memory database, and a real file
//! that must survive reopening.

use allframe::store::SqliteStore;
use allframe::{EventFilter, EventStore, ExpectedVersion, NewEvent};
use serde_json::json;

mod in_memory {
    use super::*;
    allframe::store_conformance_tests!(async { SqliteStore::in_memory().await.unwrap() });
}

mod file {
    use super::*;
    allframe::store_conformance_tests!(async {
        // The directory lives as long as the test process; each test gets
        // its own file.
        let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
        SqliteStore::open(dir.path().join("events.db"))
            .await
            .unwrap()
    });
}

#[tokio::test]
async fn data_survives_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bank.db");
    let written = {
        let store = SqliteStore::open(&path).await.unwrap();
        store
            .append(
                "account-1",
                ExpectedVersion::NoStream,
                vec![
                    NewEvent::new("Opened", &json!({"owner": "ada"})),
                    NewEvent::new("Deposited", &json!({"amount": 5})),
                ],
            )
            .await
            .unwrap();
        store
            .append(
                "account-2",
                ExpectedVersion::NoStream,
                vec![NewEvent::new("Opened", &json!({}))],
            )
            .await
            .unwrap()
    };
    let store = SqliteStore::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert_eq!(store.head_position().await.unwrap(), 3);
    assert_eq!(store.stream_version("account-1").await.unwrap(), 2);
    let all = store.read_all(0, 10, &EventFilter::all()).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[2].metadata, written.events[0].metadata);
    let data: serde_json::Value = serde_json::from_str(all[1].data.get()).unwrap();
    assert_eq!(data, json!({"amount": 5}));
    let next = store
        .append(
            "account-1",
            ExpectedVersion::Exact(2),
            vec![NewEvent::new("Closed", &json!({}))],
        )
        .await
        .unwrap();
    assert_eq!((next.version, next.position), (3, 4));
}

#[tokio::test]
async fn unreadable_database_is_a_backend_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-db.db");
    std::fs::write(
        &path,
        b"this is not an sqlite database, just text padding it out",
    )
    .unwrap();
    let error = SqliteStore::open(&path).await.unwrap_err();
    assert!(
        matches!(error, allframe::StoreError::Backend(_)),
        "{error:?}"
    );
}

/// A batch whose transaction fails is retried one append at a time, with
/// new positions: each completion must store the response built from the
/// append that committed, and the failing appends must store none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_follow_the_appends_retried_after_a_failed_batch() {
    let store = SqliteStore::in_memory().await.unwrap();
    sqlx::query(
        "CREATE TRIGGER poison BEFORE INSERT ON allframe_events \
         WHEN NEW.event_type = 'Poison' BEGIN SELECT RAISE(ABORT, 'poisoned'); END",
    )
    .execute(store.pool())
    .await
    .unwrap();
    completions_follow_retried_appends(&store).await;
}

async fn completions_follow_retried_appends(store: &dyn EventStore) {
    use allframe::store::{Claim, Completion};
    use std::time::Duration;

    const APPENDS: usize = 48;
    let hour = Duration::from_secs(3600);
    let describe = |a: &allframe::Appended| format!("{}@{}", a.stream_id, a.position);
    let append = |i: usize| async move {
        let key = format!("key-{i}");
        let claim = store.claim_idempotency_key(&key, "fp", hour, hour).await;
        let token = claim
            .unwrap()
            .token()
            .expect("a new key is acquired")
            .to_owned();
        let event_type = if i % 8 == 3 { "Poison" } else { "Fine" };
        let outcome = store
            .append_with(
                &format!("s-{i}"),
                ExpectedVersion::NoStream,
                vec![NewEvent::new(event_type, &json!({"i": i}))],
                Some(Completion::new(key, token, describe)),
            )
            .await;
        (i, outcome)
    };
    let outcomes = futures_util::future::join_all((0..APPENDS).map(append)).await;
    let log = store.read_all(0, 1000, &EventFilter::all()).await.unwrap();
    assert_eq!(log.len(), APPENDS - APPENDS / 8);
    for (i, outcome) in outcomes {
        let key = format!("key-{i}");
        let claim = store
            .claim_idempotency_key(&key, "fp", hour, hour)
            .await
            .unwrap();
        if i % 8 == 3 {
            assert!(outcome.is_err(), "{key} was poisoned");
            assert_eq!(claim, Claim::InFlight, "{key}: no completion stored");
        } else {
            let appended = outcome.unwrap();
            let stored = &log[appended.position as usize - 1];
            assert_eq!(stored.stream_id, appended.stream_id, "{key}");
            assert_eq!(claim, Claim::Completed(describe(&appended)), "{key}");
        }
    }
}
