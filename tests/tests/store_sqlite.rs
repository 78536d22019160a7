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

#[tokio::test]
async fn closing_checkpoints_the_wal_and_refuses_later_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("closing.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let queued: Vec<_> = (0..20)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                let event = NewEvent::new("Ticked", &json!({ "n": n }));
                store
                    .append("tick-1", ExpectedVersion::Any, vec![event])
                    .await
            })
        })
        .collect();
    // Reads and writes put pages in the WAL and keep connections open.
    store.read_all(0, 10, &EventFilter::all()).await.unwrap();
    let wal = dir.path().join("closing.db-wal");
    assert!(wal.exists(), "WAL mode keeps a -wal file while open");
    let written = store
        .append(
            "account-1",
            ExpectedVersion::Any,
            vec![NewEvent::new("Opened", &json!({}))],
        )
        .await
        .unwrap();
    store.close().await;
    assert!(!wal.exists(), "the last connection folded the WAL back");
    let after = store
        .append(
            "account-1",
            ExpectedVersion::Any,
            vec![NewEvent::new("Deposited", &json!({}))],
        )
        .await;
    assert!(after.is_err(), "a closed store writes nothing: {after:?}");
    // Appends queued before the close were written; none was half-done.
    let mut accepted = 1;
    for append in queued {
        if append.await.unwrap().is_ok() {
            accepted += 1;
        }
    }
    let reopened = SqliteStore::open(&path).await.unwrap();
    assert_eq!(reopened.head_position().await.unwrap(), accepted);
    assert!(reopened.head_position().await.unwrap() >= written.position);
    reopened.close().await;
}

#[tokio::test]
async fn connecting_by_url_opens_the_file_with_the_pool_asked_for() {
    use allframe::store::{ConnectError, ConnectOptions, connect};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("by-url.db");
    let store = connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    store
        .append(
            "account-1",
            ExpectedVersion::NoStream,
            vec![NewEvent::new("Opened", &json!({}))],
        )
        .await
        .unwrap();
    let wal = dir.path().join("by-url.db-wal");
    assert!(wal.exists(), "the file is in WAL mode");
    store.close().await;
    assert!(!wal.exists(), "closing folded the WAL back");

    let reopened = ConnectOptions::new(format!("sqlite:{}", path.display()))
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(30))
        .connect()
        .await
        .unwrap();
    // Concurrent reads take turns on the one reading connection.
    let all = EventFilter::all();
    let reads = (0..8).map(|_| reopened.read_all(0, 10, &all));
    for read in futures_util::future::join_all(reads).await {
        assert_eq!(read.unwrap().len(), 1);
    }
    reopened.close().await;

    let memory = connect("sqlite::memory:").await.unwrap();
    let appended = memory
        .append(
            "account-1",
            ExpectedVersion::NoStream,
            vec![NewEvent::new("Opened", &json!({}))],
        )
        .await
        .unwrap();
    assert_eq!(appended.position, 1);

    let junk = dir.path().join("not-a-db.db");
    std::fs::write(
        &junk,
        b"this is not an sqlite database, just text padding it out",
    )
    .unwrap();
    let error = connect(&format!("sqlite://{}", junk.display()))
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(
            error,
            ConnectError::Store {
                source: allframe::StoreError::Backend(_),
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("not-a-db.db"),
        "the message names the URL: {error}"
    );
}

/// Projection batches queue with the appends on the store's one writer, so
/// no write of the process waits for another's lock: with SQLite's busy
/// handler turned off (`busy_timeout` 0, so any wait for the write lock is
/// an immediate "database is locked" error), appends from many tasks and a
/// projection committing small batches all succeed.
#[tokio::test]
async fn projection_batches_and_appends_never_wait_for_the_write_lock() {
    use allframe::Projections;
    use allframe_tests::crash::{CrashEvent, CrashRow};
    use sqlx::sqlite::SqliteConnectOptions;
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let options = SqliteConnectOptions::new()
        .filename(dir.path().join("busy.db"))
        .create_if_missing(true)
        .busy_timeout(Duration::ZERO);
    let store = SqliteStore::connect_with(options, allframe::store::DEFAULT_MAX_BATCH)
        .await
        .unwrap();
    let projections = Projections::builder(&store)
        .projection::<CrashRow>()
        .batch_size(4)
        .start()
        .await
        .unwrap();
    let writers = (0..16).map(|task| {
        let store = store.clone();
        tokio::spawn(async move {
            let stream = format!("crash-{task}");
            let opened = NewEvent::from_event(&CrashEvent::Opened {}).unwrap();
            store
                .append(&stream, ExpectedVersion::NoStream, vec![opened])
                .await?;
            for _ in 0..100 {
                let deposit = NewEvent::from_event(&CrashEvent::Deposited { amount: 1 }).unwrap();
                store
                    .append(&stream, ExpectedVersion::Any, vec![deposit])
                    .await?;
            }
            Ok::<_, allframe::StoreError>(())
        })
    });
    for written in futures_util::future::join_all(writers).await {
        written
            .unwrap()
            .expect("no append waited for the write lock");
    }
    let head = store.head_position().await.unwrap();
    assert_eq!(head, 16 * 101);
    projections
        .wait_for("crash-ledger", head, Duration::from_secs(60))
        .await
        .expect("the projection committed every batch");
    let row: CrashRow = projections.get("7").await.unwrap().unwrap();
    assert_eq!((row.deposits, row.balance), (100, 100));
    projections.stop().await;
}
