//! Group commit on the SQL backends: when one append makes the shared
//! transaction fail inside the database, the other appends of the batch
//! still commit, and only the failing one gets an error.

use allframe::{EventFilter, EventStore, ExpectedVersion, NewEvent};
use serde_json::json;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_batch_failure_is_retried_per_append() {
    let store = allframe::store::SqliteStore::in_memory().await.unwrap();
    sqlx::query(
        "CREATE TRIGGER poison BEFORE INSERT ON allframe_events \
         WHEN NEW.event_type = 'Poison' BEGIN SELECT RAISE(ABORT, 'poisoned'); END",
    )
    .execute(store.pool())
    .await
    .unwrap();
    poison_does_not_spread(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_batch_failure_is_retried_per_append() {
    let Some(store) = allframe_tests::postgres_store().await else {
        return;
    };
    sqlx::query(
        "ALTER TABLE allframe_events ADD CONSTRAINT no_poison CHECK (event_type <> 'Poison')",
    )
    .execute(store.pool())
    .await
    .unwrap();
    poison_does_not_spread(&store).await;
}
