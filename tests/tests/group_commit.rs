//! Group commit on the SQL backends: when one append makes the shared
//! transaction fail inside the database, the other appends of the batch
//! still commit, only the failing one gets an error, and idempotency
//! completions follow the appends that really committed.

use std::time::Duration;

use allframe::store::{Claim, Completion, PostgresStore, SqliteStore};
use allframe::{EventFilter, EventStore, ExpectedVersion, NewEvent};
use serde_json::json;

const HOUR: Duration = Duration::from_secs(3600);

/// An in-memory SQLite store that refuses events of type `Poison` inside
/// the database, failing the transaction they are in.
async fn poisoned_sqlite() -> SqliteStore {
    let store = SqliteStore::in_memory().await.unwrap();
    sqlx::query(
        "CREATE TRIGGER poison BEFORE INSERT ON allframe_events \
         WHEN NEW.event_type = 'Poison' BEGIN SELECT RAISE(ABORT, 'poisoned'); END",
    )
    .execute(store.pool())
    .await
    .unwrap();
    store
}

/// An in-memory SQLite store where an event of type `Poison` breaks a
/// constraint: a trigger inserts a `NULL` into a `NOT NULL` column, under
/// the conflict policy of the statement inserting the event (the store's
/// `OR ROLLBACK`), so SQLite ends the whole transaction mid-batch rather
/// than failing one statement.
async fn sqlite_with_a_poison_constraint() -> SqliteStore {
    let store = SqliteStore::in_memory().await.unwrap();
    for statement in [
        "CREATE TABLE poisoned (never INTEGER NOT NULL)",
        "CREATE TRIGGER poison BEFORE INSERT ON allframe_events \
         WHEN NEW.event_type = 'Poison' BEGIN INSERT INTO poisoned VALUES (NULL); END",
    ] {
        sqlx::query(statement).execute(store.pool()).await.unwrap();
    }
    store
}

/// The same on PostgreSQL, or `None` when it is unreachable (skipped).
async fn poisoned_postgres() -> Option<PostgresStore> {
    let store = allframe_tests::postgres_store().await?;
    sqlx::query(
        "ALTER TABLE allframe_events ADD CONSTRAINT no_poison CHECK (event_type <> 'Poison')",
    )
    .execute(store.pool())
    .await
    .unwrap();
    Some(store)
}

async fn poison_does_not_spread(store: &dyn EventStore) {
    let appends = (0..64).map(|i| async move {
        let event_type = if i % 16 == 5 { "Poison" } else { "Fine" };
        let event = NewEvent::new(event_type, &json!({"i": i}));
        (
            i,
            store
                .append(&format!("s-{i}"), ExpectedVersion::NoStream, vec![event])
                .await,
        )
    });
    let outcomes = futures_util::future::join_all(appends).await;
    for (i, outcome) in &outcomes {
        if i % 16 == 5 {
            let error = outcome.as_ref().expect_err("the poisoned append fails");
            assert!(
                matches!(error, allframe::StoreError::Backend(_)),
                "{error:?}"
            );
        } else {
            assert!(outcome.is_ok(), "append {i} failed: {outcome:?}");
        }
    }
    let stored = store.read_all(0, 1000, &EventFilter::all()).await.unwrap();
    assert_eq!(stored.len(), 60);
    assert!(stored.iter().all(|e| e.event_type == "Fine"));
    let positions: Vec<u64> = stored.iter().map(|e| e.position).collect();
    assert_eq!(positions, (1..=60).collect::<Vec<_>>(), "no holes");
}

/// A batch whose transaction fails is retried one append at a time, with
/// new positions: each completion must store the response built from the
/// append that committed, and the failing appends must store none.
async fn completions_follow_retried_appends(store: &dyn EventStore) {
    let log = store;
    let store = store.idempotency().expect("idempotency records");
    const APPENDS: usize = 48;
    let describe = |a: &allframe::Appended| format!("{}@{}", a.stream_id, a.position);
    let append = |i: usize| async move {
        let key = format!("key-{i}");
        let claim = store.claim_idempotency_key(&key, "fp", HOUR, HOUR).await;
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
                vec![Completion::new(key, token, describe)],
            )
            .await;
        (i, outcome)
    };
    let outcomes = futures_util::future::join_all((0..APPENDS).map(append)).await;
    let log = log.read_all(0, 1000, &EventFilter::all()).await.unwrap();
    assert_eq!(log.len(), APPENDS - APPENDS / 8);
    for (i, outcome) in outcomes {
        let key = format!("key-{i}");
        let claim = store
            .claim_idempotency_key(&key, "fp", HOUR, HOUR)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_batch_failure_is_retried_per_append() {
    poison_does_not_spread(&poisoned_sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_batch_rolled_back_by_a_constraint_is_retried_per_append() {
    poison_does_not_spread(&sqlite_with_a_poison_constraint().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_batch_failure_is_retried_per_append() {
    let Some(store) = poisoned_postgres().await else {
        return;
    };
    poison_does_not_spread(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_completions_follow_the_appends_retried_after_a_failed_batch() {
    completions_follow_retried_appends(&poisoned_sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_completions_follow_the_appends_retried_after_a_rolled_back_batch() {
    completions_follow_retried_appends(&sqlite_with_a_poison_constraint().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_completions_follow_the_appends_retried_after_a_failed_batch() {
    let Some(store) = poisoned_postgres().await else {
        return;
    };
    completions_follow_retried_appends(&store).await;
}
