//! Data written by the previous release keeps working: a SQLite file and a
//! PostgreSQL database the release before event versions wrote
//! (`tests/fixtures/release-1`, made by its `make` script with that
//! release's bank, built from git) open with today's bank. Its migrations
//! apply to the existing database, the app starts (its v1 events decode),
//! the `accounts` projection is rebuilt for its new version while serving,
//! old accounts read back in euros, old streams replay in today's shape,
//! an old idempotency record still replays, and commands on old accounts
//! work.

// The bank's handlers and projection register themselves; link them.
#[allow(unused_extern_crates)]
extern crate bank;

use std::path::Path;
use std::time::Duration;

use allframe::store::{PostgresStore, SqliteStore};
use allframe::{DispatchConfig, EventFilter, EventStore, ProjectionState};
use allframe_tests::server::serve;
use allframe_tests::{http_request, postgres_options};
use bank::domain::AccountEvent;
use serde_json::{Value, json};
use sqlx::Connection;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/release-1");

/// How many migrations today's release has for `database`.
fn todays_migrations(database: &str) -> i64 {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../allframe/migrations")
        .join(database);
    std::fs::read_dir(dir).unwrap().count() as i64
}

/// The ids of the fixture's accounts: Ada's (open, 120 after a deposit of
/// 100, one of 50 under `Idempotency-Key: fixture-deposit-1` and a
/// withdrawal of 30) and Bob's (closed, empty).
async fn accounts(store: &dyn EventStore) -> (String, String) {
    let opened = store
        .read_all(0, 100, &EventFilter::all().event_types(["AccountOpened"]))
        .await
        .unwrap();
    assert_eq!(opened.len(), 2, "the fixture opened two accounts");
    assert!(
        opened.iter().all(|e| e.schema_version == 1),
        "stored as the old release wrote them"
    );
    let id = |owner: &str| {
        let event = opened
            .iter()
            .find(|e| e.data.get().contains(owner))
            .unwrap_or_else(|| panic!("{owner}'s account"));
        event.aggregate_id().to_owned()
    };
    (id("Ada"), id("Bob"))
}

async fn get(addr: std::net::SocketAddr, path: &str) -> Value {
    let response = http_request(addr, "GET", path, &[], b"").await;
    assert_eq!(response.status, 200, "{path}");
    serde_json::from_slice(&response.body).unwrap()
}

/// Today's bank over `store`, which holds the old release's data.
async fn works_after_the_upgrade(store: &dyn EventStore) {
    let (ada, bob) = accounts(store).await;
    // The fixture was written on the day it was made, so its idempotency
    // record is older than the default retention of a day; a retention of
    // ten years keeps it, as an upgrade within the retention would.
    let retention = Duration::from_secs(10 * 365 * 24 * 60 * 60);
    let app = bank::app(store)
        .config(DispatchConfig::default().idempotency_retention(retention))
        .build()
        .await
        .unwrap();
    let server = serve(app).await;
    let addr = server.addr;

    // The projection is rebuilt for version 2 beside the old rows, which
    // read as euros meanwhile; either way the rows say EUR.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = server
            .app
            .projections()
            .status_of("accounts")
            .await
            .unwrap();
        if status.state == ProjectionState::Running && status.rebuild_checkpoint.is_none() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let storage = store.projection_store().unwrap();
    let live = storage.open("accounts", 2).await.unwrap().live;
    assert_eq!(live.version, 2, "rebuilt by today's projection");
    let row = get(addr, &format!("/projections/accounts/{ada}")).await;
    assert_eq!(
        row,
        json!({"account_id": ada, "owner": "Ada", "email": "ada@example.com",
               "balance": 120, "open": true, "currency": "EUR"})
    );
    let row = get(addr, &format!("/projections/accounts/{bob}")).await;
    assert_eq!(
        (row["open"].clone(), row["currency"].clone()),
        (json!(false), json!("EUR"))
    );

    // The old stream replays in today's shape.
    let history = store
        .read_stream(&format!("account-{ada}"), 0, 100)
        .await
        .unwrap();
    let first = history[0].decode::<AccountEvent>().unwrap();
    assert_eq!(
        first,
        AccountEvent::AccountOpened {
            owner: "Ada".into(),
            email: "ada@example.com".into(),
            currency: "EUR".into()
        }
    );

    // The old release's idempotency record replays its answer.
    let deposit = |amount: u64| json!({"account_id": ada, "amount": amount}).to_string();
    let json_body = ("content-type", "application/json");
    let replayed = http_request(
        addr,
        "POST",
        "/commands/deposit",
        &[json_body, ("idempotency-key", "fixture-deposit-1")],
        deposit(50).as_bytes(),
    )
    .await;
    assert_eq!(replayed.status, 200);
    assert_eq!(replayed.header("idempotency-replayed"), Some("true"));

    // Commands on old accounts work.
    let answer = http_request(
        addr,
        "POST",
        "/commands/deposit",
        &[json_body],
        deposit(5).as_bytes(),
    )
    .await;
    assert_eq!(answer.status, 200);
    let answer: Value = serde_json::from_slice(&answer.body).unwrap();
    let position = answer["position"].as_u64().unwrap();
    let row = get(
        addr,
        &format!("/projections/accounts/{ada}?min_position={position}"),
    )
    .await;
    assert_eq!(row["balance"], 125);
    let closed = http_request(
        addr,
        "POST",
        "/commands/deposit",
        &[json_body],
        json!({"account_id": bob, "amount": 5})
            .to_string()
            .as_bytes(),
    )
    .await;
    assert_eq!(closed.status, 422, "the closed account stays closed");
    server.app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_file_of_the_previous_release_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bank.db");
    std::fs::copy(Path::new(FIXTURES).join("bank.db"), &path).unwrap();
    let store = SqliteStore::open(&path).await.unwrap();
    let migrations: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(
        migrations,
        todays_migrations("sqlite"),
        "today's migrations applied to the old file"
    );
    works_after_the_upgrade(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_database_of_the_previous_release_keeps_working() {
    let Some(options) = postgres_options().await else {
        return;
    };
    let database = format!("allframe_upgrade_{}", uuid::Uuid::now_v7().simple());
    let mut admin = sqlx::PgConnection::connect_with(&options).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let old = options.clone().database(&database);
    let dump = std::fs::read_to_string(Path::new(FIXTURES).join("postgres.sql")).unwrap();
    let mut loader = sqlx::PgConnection::connect_with(&old).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(dump))
        .execute(&mut loader)
        .await
        .expect("load the old release's database");
    loader.close().await.unwrap();

    let store = PostgresStore::connect_with(old, None, 256).await.unwrap();
    let migrations: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(
        migrations,
        todays_migrations("postgres"),
        "today's migrations applied to the old database"
    );
    works_after_the_upgrade(&store).await;
    store.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {database} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
}
