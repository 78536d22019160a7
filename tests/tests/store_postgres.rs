//! The conformance suite on a real PostgreSQL server, plus the checks only
//! a multi-writer database needs: gap safety under concurrent and
//! rolled-back transactions, and data surviving a reconnect.

use allframe_tests::postgres_store;

allframe::store_conformance_tests!(optional: postgres_store());

use std::time::Duration;

use allframe::store::{Claim, Completion, IdempotencyStore};
use allframe::{EventFilter, EventStore, ExpectedVersion, NewEvent, StoreError};
use allframe_tests::{fresh_schema, postgres_options, postgres_store_in};
use futures_util::StreamExt;
use serde_json::json;
use sqlx::Connection;
use sqlx::postgres::PgConnectOptions;

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

const HOUR: Duration = Duration::from_secs(3600);

/// Two nodes on one database agree on idempotency keys: concurrent claims
/// from both acquire each key exactly once, a lease that ran out is taken
/// over by exactly one of them, a completion written through one node
/// replays on the other, and only the token of the latest holder completes
/// or releases a key, whichever node it comes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_sharing_a_database_agree_on_idempotency_keys() {
    const CLAIMS: usize = 16;
    let schema = fresh_schema();
    let Some(node_a) = postgres_store_in(&schema, 256).await else {
        return;
    };
    let node_b = postgres_store_in(&schema, 256).await.unwrap();
    let race = |key: &'static str, lease: Duration| {
        let (a, b) = (&node_a, &node_b);
        async move {
            let claims = (0..CLAIMS).map(|i| async move {
                let node = if i % 2 == 0 { a } else { b };
                node.claim_idempotency_key(key, "fp", lease, HOUR)
                    .await
                    .unwrap()
            });
            let answers = futures_util::future::join_all(claims).await;
            let tokens: Vec<&str> = answers.iter().filter_map(Claim::token).collect();
            assert_eq!(tokens.len(), 1, "{key}: {answers:?}");
            assert!(
                answers
                    .iter()
                    .all(|c| matches!(c, Claim::Acquired { .. } | Claim::InFlight)),
                "{key}: {answers:?}"
            );
            tokens[0].to_owned()
        }
    };
    let mut first = Vec::new();
    for key in ["k-1", "k-2", "k-3", "k-4"] {
        first.push(race(key, Duration::from_millis(200)).await);
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut second = Vec::new();
    for key in ["k-1", "k-2", "k-3", "k-4"] {
        second.push(race(key, HOUR).await);
    }
    let stale = node_b
        .append_with(
            "account-1",
            ExpectedVersion::NoStream,
            vec![NewEvent::new("Opened", &json!({}))],
            vec![Completion::new("k-1", first[0].clone(), |a| {
                format!("v{}", a.version)
            })],
        )
        .await;
    assert!(
        matches!(stale, Err(StoreError::IdempotencyKeyLost { .. })),
        "{stale:?}"
    );
    let appended = node_a
        .append_with(
            "account-1",
            ExpectedVersion::NoStream,
            vec![NewEvent::new("Opened", &json!({}))],
            vec![Completion::new("k-1", second[0].clone(), |a| {
                format!("v{}", a.version)
            })],
        )
        .await
        .unwrap();
    assert_eq!(appended.version, 1);
    assert_eq!(
        node_b
            .claim_idempotency_key("k-1", "fp", HOUR, HOUR)
            .await
            .unwrap(),
        Claim::Completed("v1".into())
    );
    assert_eq!(
        node_b
            .claim_idempotency_key("k-1", "other", HOUR, HOUR)
            .await
            .unwrap(),
        Claim::Mismatch
    );
    node_a
        .release_idempotency_key("k-2", &first[1])
        .await
        .unwrap();
    assert_eq!(
        node_b
            .claim_idempotency_key("k-2", "fp", HOUR, HOUR)
            .await
            .unwrap(),
        Claim::InFlight,
        "a stale release keeps the holder's claim"
    );
    node_b
        .release_idempotency_key("k-2", &second[1])
        .await
        .unwrap();
    assert!(matches!(
        node_a
            .claim_idempotency_key("k-2", "fp", HOUR, HOUR)
            .await
            .unwrap(),
        Claim::Acquired { .. }
    ));
}

/// The store pins its writing transactions to READ COMMITTED (what its gap
/// safety and its claims rely on), so two nodes on a database whose
/// default isolation is SERIALIZABLE still append and claim concurrently
/// without serialization failures, and positions stay dense.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_read_committed_whatever_the_database_default() {
    const WRITERS: usize = 6;
    const EACH: usize = 25;
    let Some(options) = postgres_options().await else {
        return;
    };
    let options = options.options([("default_transaction_isolation", "serializable")]);
    let schema = fresh_schema();
    let node = || allframe::store::PostgresStore::connect_with(options.clone(), Some(&schema), 256);
    let (node_a, node_b) = (node().await.unwrap(), node().await.unwrap());
    let isolation: String = sqlx::query_scalar("SHOW transaction_isolation")
        .fetch_one(node_a.pool())
        .await
        .unwrap();
    assert_eq!(isolation, "serializable", "the default applies to the pool");
    let write = |w: usize| {
        let store = if w.is_multiple_of(2) {
            &node_a
        } else {
            &node_b
        };
        async move {
            for n in 0..EACH {
                let key = format!("w-{w}-{n}");
                let token = store
                    .claim_idempotency_key(&key, "fp", HOUR, HOUR)
                    .await
                    .unwrap()
                    .token()
                    .expect("a new key is acquired")
                    .to_owned();
                // Every writer appends to the same stream: versions and
                // positions are decided under the head lock of both nodes.
                store
                    .append_with(
                        "shared",
                        ExpectedVersion::Any,
                        vec![NewEvent::new("Wrote", &json!({"writer": w, "n": n}))],
                        vec![Completion::new(key, token, |a| a.position.to_string())],
                    )
                    .await
                    .unwrap();
            }
        }
    };
    futures_util::future::join_all((0..WRITERS).map(write)).await;
    let log = node_b
        .read_all(0, 10_000, &EventFilter::all())
        .await
        .unwrap();
    let total = (WRITERS * EACH) as u64;
    assert_eq!(
        log.iter().map(|e| e.position).collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
    assert_eq!(
        log.iter().map(|e| e.version).collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
    for event in &log {
        let data: serde_json::Value = serde_json::from_str(event.data.get()).unwrap();
        let key = format!("w-{}-{}", data["writer"], data["n"]);
        assert_eq!(
            node_a
                .claim_idempotency_key(&key, "fp", HOUR, HOUR)
                .await
                .unwrap(),
            Claim::Completed(event.position.to_string()),
            "{key}"
        );
    }
}

/// A store in a fresh schema whose sessions carry an `application_name`
/// of their own (returned), so a test can find them in `pg_stat_activity`.
async fn named_store(options: &PgConnectOptions) -> (allframe::store::PostgresStore, String) {
    let name = format!("allframe-test-{}", uuid::Uuid::now_v7().simple());
    let store = allframe::store::PostgresStore::connect_with(
        options.clone().application_name(&name),
        Some(&fresh_schema()),
        256,
    )
    .await
    .unwrap();
    (store, name)
}

/// The server kills the writer's connection (a restart, a failover, an
/// idle timeout): the store reconnects, and later appends succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_reconnects_after_its_connection_is_killed() {
    let Some(options) = postgres_options().await else {
        return;
    };
    let (store, name) = named_store(&options).await;
    let append = |n: u64| {
        let store = store.clone();
        async move {
            let event = NewEvent::new("Wrote", &json!({ "n": n }));
            store.append("r-1", ExpectedVersion::Any, vec![event]).await
        }
    };
    append(1).await.unwrap();
    let mut killer = sqlx::PgConnection::connect_with(&options).await.unwrap();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(&name)
    .fetch_all(&mut killer)
    .await
    .unwrap();
    assert!(
        !killed.is_empty(),
        "the store's connections were found and killed"
    );
    // The first append after the kill may fail with the broken connection;
    // the writer then reconnects and the next one goes through.
    let mut stored = 1;
    for n in 2..=4 {
        if append(n).await.is_ok() {
            stored += 1;
        }
    }
    assert!(
        stored >= 3,
        "at most one append fails after the kill (stored {stored})"
    );
    let events = store.read_stream("r-1", 0, 10).await.unwrap();
    assert_eq!(
        events.len(),
        stored,
        "every acknowledged append is stored once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_ends_every_session() {
    let Some(options) = postgres_options().await else {
        return;
    };
    let (store, name) = named_store(&options).await;
    store
        .append(
            "account-1",
            ExpectedVersion::Any,
            vec![NewEvent::new("Opened", &json!({}))],
        )
        .await
        .unwrap();
    let mut observer = sqlx::PgConnection::connect_with(&options).await.unwrap();
    assert!(
        sessions(&mut observer, &name).await >= 2,
        "the writer and a reader"
    );
    store.close().await;
    // A session that said goodbye is gone at once; poll briefly in case
    // the statistics lag behind.
    let mut left = sessions(&mut observer, &name).await;
    for _ in 0..50 {
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        left = sessions(&mut observer, &name).await;
    }
    assert_eq!(left, 0, "every session ended");
    let after = store
        .append(
            "account-1",
            ExpectedVersion::Any,
            vec![NewEvent::new("Deposited", &json!({}))],
        )
        .await;
    assert!(matches!(after, Err(StoreError::Closed)), "{after:?}");
}

/// How many sessions named `name` the server has.
async fn sessions(observer: &mut sqlx::PgConnection, name: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
        .bind(name)
        .fetch_one(observer)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_by_url_caps_the_pool_and_uses_the_url_settings() {
    let Some(options) = postgres_options().await else {
        return;
    };
    let mut observer = sqlx::PgConnection::connect_with(&options).await.unwrap();
    let schema = fresh_schema();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
        .execute(&mut observer)
        .await
        .unwrap();
    let name = format!("allframe-url-{}", uuid::Uuid::now_v7().simple());
    let url = allframe_tests::postgres_url();
    let separator = if url.contains('?') { '&' } else { '?' };
    let url =
        format!("{url}{separator}application_name={name}&options=-c%20search_path%3D{schema}");
    let store = allframe::store::ConnectOptions::new(url)
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(30))
        .connect()
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
    // More concurrent reads than the pool may open connections for.
    let all = EventFilter::all();
    let reads = (0..16).map(|_| store.read_all(0, 10, &all));
    for read in futures_util::future::join_all(reads).await {
        assert_eq!(read.unwrap().len(), 1);
    }
    let open = sessions(&mut observer, &name).await;
    assert!(
        (2..=3).contains(&open),
        "the writer and at most two pooled connections: {open}"
    );
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables \
         WHERE table_schema = $1 AND table_name = 'allframe_events'",
    )
    .bind(&schema)
    .fetch_one(&mut observer)
    .await
    .unwrap();
    assert_eq!(tables, 1, "the tables are in the schema the URL named");
    store.close().await;
}

#[tokio::test]
async fn an_unreachable_server_is_a_store_error_without_the_password() {
    // Refused connections are retried until the acquire timeout (30 s by
    // default) runs out.
    let started = std::time::Instant::now();
    let error = allframe::store::ConnectOptions::new("postgres://ada:s3cret@127.0.0.1:1/test")
        .acquire_timeout(Duration::from_secs(1))
        .connect()
        .await
        .err()
        .expect("refused");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "gave up after the acquire timeout: {:?}",
        started.elapsed()
    );
    assert!(
        matches!(error, allframe::store::ConnectError::Store { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("postgres://ada:***@127.0.0.1:1/test"),
        "{message}"
    );
    assert!(!message.contains("s3cret"), "{message}");
}
