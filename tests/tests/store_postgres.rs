//! The conformance suite on a real PostgreSQL server, plus the checks only
//! a multi-writer database needs: gap safety under concurrent and
//! rolled-back transactions, and data surviving a reconnect.

use allframe_tests::postgres_store;

allframe::store_conformance_tests!(optional: postgres_store());

use std::time::Duration;

use allframe::{EventFilter, EventStore, ExpectedVersion, NewEvent};
use allframe_tests::{fresh_schema, postgres_options, postgres_store_in};
use futures_util::StreamExt;
use serde_json::json;
use sqlx::Connection;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_reconnecting() {
    let schema = fresh_schema();
    let Some(first) = postgres_store_in(&schema, 256).await else {
        return;
    };
    first
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
    drop(first);
    let store = postgres_store_in(&schema, 256).await.unwrap();
    assert_eq!(store.head_position().await.unwrap(), 2);
    assert_eq!(store.stream_version("account-1").await.unwrap(), 2);
    let next = store
        .append(
            "account-1",
            ExpectedVersion::Exact(2),
            vec![NewEvent::new("Closed", &json!({}))],
        )
        .await
        .unwrap();
    assert_eq!((next.version, next.position), (3, 3));
}

/// Two stores on one schema (two nodes), eight writers, and transactions
/// that take the head lock, insert, wait, and roll back. A subscriber must
/// see every committed event exactly once, in order, with no hole left by
/// the rolled-back transactions, and must not hang on them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_back_and_concurrent_writers_never_make_a_subscriber_skip_or_hang() {
    const WRITERS: usize = 8;
    const EACH: usize = 40;
    const ROLLBACKS: usize = 15;
    let schema = fresh_schema();
    let Some(node_a) = postgres_store_in(&schema, 256).await else {
        return;
    };
    let node_b = postgres_store_in(&schema, 256).await.unwrap();
    let subscription = node_a.subscribe(0, EventFilter::all());

    let write = |w: usize| {
        let store = if w.is_multiple_of(2) {
            node_a.clone()
        } else {
            node_b.clone()
        };
        async move {
            for n in 0..EACH {
                let event = NewEvent::new("Wrote", &json!({"writer": w, "n": n}));
                store
                    .append(&format!("w-{w}"), ExpectedVersion::Any, vec![event])
                    .await
                    .unwrap();
            }
        }
    };
    let options = postgres_options().await.unwrap();
    let options = options.options([("search_path", format!("\"{schema}\""))]);
    let roll_back = async {
        let mut connection = sqlx::PgConnection::connect_with(&options).await.unwrap();
        for i in 0..ROLLBACKS {
            let mut tx = connection.begin().await.unwrap();
            let head: i64 = sqlx::query_scalar("SELECT position FROM allframe_head FOR UPDATE")
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            sqlx::query(
                "INSERT INTO allframe_events (position, stream_id, category, version, event_type, \
                 schema_version, data, event_id, recorded_at) \
                 VALUES ($1, $2, 'doomed', 1, 'Doomed', 1, '{}', gen_random_uuid(), now())",
            )
            .bind(head + 1)
            .bind(format!("doomed-{i}"))
            .execute(&mut *tx)
            .await
            .unwrap();
            sqlx::query("UPDATE allframe_head SET position = $1")
                .bind(head + 1)
                .execute(&mut *tx)
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
            tx.rollback().await.unwrap();
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    };
    let writers = futures_util::future::join_all((0..WRITERS).map(write));
    tokio::join!(writers, roll_back);

    let total = WRITERS * EACH;
    let seen: Vec<_> = tokio::time::timeout(
        Duration::from_secs(60),
        subscription
            .take(total)
            .map(|e| e.unwrap())
            .collect::<Vec<_>>(),
    )
    .await
    .expect("the subscriber must not hang");
    let positions: Vec<u64> = seen.iter().map(|e| e.position).collect();
    assert_eq!(positions, (1..=total as u64).collect::<Vec<_>>());
    assert!(seen.iter().all(|e| e.event_type == "Wrote"));
    assert_eq!(node_b.head_position().await.unwrap(), total as u64);
}
