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
