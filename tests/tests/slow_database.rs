//! A slow or hung database: a command answers `503` (`command-timed-out`)
//! within the app's command timeout instead of hanging, and once the
//! database answers again the same command, sent with the same
//! `Idempotency-Key`, answers its outcome, applied once. The database is
//! held up for real: PostgreSQL by another session holding the head row's
//! lock, SQLite by another connection holding the write lock.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use allframe::EventStore;
use allframe::store::{MemoryStore, SqliteStore};
use allframe_tests::{
    RawResponse, fresh_schema, http_request, postgres_options, postgres_store_in,
};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_millis(500);

async fn serve(store: &dyn EventStore) -> allframe_tests::server::Server {
    // A short lease: an attempt cut short before its append holds its
    // key in flight until the lease runs out.
    let config = allframe::DispatchConfig::default().idempotency_lease(Duration::from_secs(2));
    let app = bank::app(store)
        .config(config)
        .command_timeout(TIMEOUT)
        .build()
        .await
        .unwrap();
    allframe_tests::server::serve(app).await
}

async fn post(addr: SocketAddr, name: &str, key: &str, body: Value) -> RawResponse {
    http_request(
        addr,
        "POST",
        &format!("/commands/{name}"),
        &[
            ("content-type", "application/json"),
            ("idempotency-key", key),
        ],
        body.to_string().as_bytes(),
    )
    .await
}

fn json_of(response: &RawResponse) -> Value {
    serde_json::from_slice(&response.body).unwrap()
}

/// Runs the scenario on `store`; `hold` holds the database up until the
/// returned guard is released with `release`.
async fn times_out_then_answers<G>(
    store: &dyn EventStore,
    hold: impl std::future::Future<Output = G>,
    release: impl AsyncFnOnce(G),
) {
    let server = serve(store).await;
    let addr = server.addr;
    let opened = post(
        addr,
        "open-account",
        "open-1",
        json!({"owner": "Ada", "email": "ada@example.com", "initial_deposit": 10}),
    )
    .await;
    assert_eq!(opened.status, 201);
    let id = json_of(&opened)["aggregate_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deposit = json!({"account_id": id, "amount": 5});

    let guard = hold.await;
    let started = Instant::now();
    let answer = post(addr, "deposit", "deposit-1", deposit.clone()).await;
    let took = started.elapsed();
    assert_eq!(
        answer.status,
        503,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(json_of(&answer)["type"], "/problems/command-timed-out");
    assert_eq!(answer.header("retry-after"), Some("1"));
    // Within the bound (and its scheduling), not hanging.
    assert!(
        took < TIMEOUT + Duration::from_secs(5),
        "answered after {took:?}"
    );
    release(guard).await;

    // The database answers again: the same command, with the same key,
    // answers its outcome; the deposit is applied once.
    let mut outcome = post(addr, "deposit", "deposit-1", deposit.clone()).await;
    for _ in 0..100 {
        if outcome.status == 200 {
            break;
        }
        // Still in flight (the first attempt holds the key until it
        // commits or its lease runs out).
        assert_eq!(
            outcome.status,
            409,
            "{}",
            String::from_utf8_lossy(&outcome.body)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        outcome = post(addr, "deposit", "deposit-1", deposit.clone()).await;
    }
    assert_eq!(
        outcome.status,
        200,
        "{}",
        String::from_utf8_lossy(&outcome.body)
    );
    let withdrawn = post(
        addr,
        "withdraw",
        "withdraw-1",
        json!({"account_id": id, "amount": 15}),
    )
    .await;
    assert_eq!(
        withdrawn.status,
        200,
        "10 + 5 deposited once: {}",
        String::from_utf8_lossy(&withdrawn.body)
    );
    let overdrawn = post(
        addr,
        "withdraw",
        "withdraw-2",
        json!({"account_id": id, "amount": 1}),
    )
    .await;
    assert_eq!(overdrawn.status, 422, "the deposit was applied once");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_held_up_by_a_lock() {
    let Some(options) = postgres_options().await else {
        return;
    };
    let schema = fresh_schema();
    let store = postgres_store_in(&schema, 16).await.unwrap();
    let admin = sqlx::PgPool::connect_with(options).await.unwrap();
    let hold = async {
        let mut lock = admin.begin().await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT position FROM \"{schema}\".allframe_head FOR UPDATE"
        )))
        .execute(&mut *lock)
        .await
        .unwrap();
        lock
    };
    times_out_then_answers(
        &store,
        hold,
        async |lock: sqlx::Transaction<'_, sqlx::Postgres>| {
            lock.rollback().await.unwrap();
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_held_up_by_another_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bank.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let hold = async {
        use sqlx::Connection;
        let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .unwrap();
        other
    };
    times_out_then_answers(&store, hold, async |mut other: sqlx::SqliteConnection| {
        sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_quick_command_is_not_cut_short() {
    let store = MemoryStore::new();
    let server = serve(&store).await;
    let addr = server.addr;
    let opened = post(
        addr,
        "open-account",
        "k",
        json!({"owner": "Ada", "email": "ada@example.com", "initial_deposit": 1}),
    )
    .await;
    assert_eq!(opened.status, 201);
    drop(server);
}
