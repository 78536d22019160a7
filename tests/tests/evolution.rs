//! Events that changed shape, read by every kind of reader: commands fold
//! old events, and the event streams send them in today's shape (today's
//! `type`, `schema_version` and `data`), over a real socket to a real
//! WebSocket client. The streams' frames are built in one place for both
//! WebSocket and SSE. A command on a stream holding an event of a newer
//! release (a rolling deploy) answers 503 `waiting-for-upgrade` with
//! `Retry-After`; a projection meeting such an event pauses there with
//! state `waiting-for-upgrade`, never skipping it.

use std::convert::Infallible;
use std::time::Duration;

use allframe::store::{MemoryStore, SqliteStore};
use allframe::{
    Aggregate, App, ApplyError, Change, Event, EventStore, ExpectedVersion, NewEvent, Projection,
    RecordedEvent, UpcastError, command, command_handler,
};
use allframe_tests::{RawResponse, http_request, postgres_store};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Today a reading carries its unit; version 1 (stored as `Measured`) was
/// always in kWh and called the value `reading`.
#[derive(Event, Debug, Clone, PartialEq)]
enum MeterEvent {
    #[event(version = 2, alias = "Measured", upcast(1 = with_unit))]
    Read { value: u64, unit: String },
}

fn with_unit(data: Value) -> Result<Value, UpcastError> {
    let value = data
        .get("reading")
        .and_then(Value::as_u64)
        .ok_or_else(|| UpcastError::new("no `reading`"))?;
    Ok(json!({ "value": value, "unit": "kWh" }))
}

#[derive(Debug, Default)]
struct Meter {
    total: u64,
}

impl Aggregate for Meter {
    type Event = MeterEvent;
    const CATEGORY: &'static str = "meter";

    fn apply(&mut self, event: &MeterEvent) {
        let MeterEvent::Read { value, .. } = event;
        self.total += value;
    }
}

/// Records a reading; answers with the meter's new total in the event's
/// unit field, so the test sees what the old events folded to.
#[command(aggregate = Meter, id = meter_id)]
#[derive(Debug, Clone, Serialize, Deserialize, garde::Validate)]
struct ReadMeter {
    #[garde(skip)]
    meter_id: String,
    #[garde(skip)]
    value: u64,
}

#[command_handler]
async fn read_meter(command: ReadMeter, meter: &Meter) -> Result<Vec<MeterEvent>, Infallible> {
    Ok(vec![MeterEvent::Read {
        value: command.value,
        unit: format!("total {}", meter.total + command.value),
    }])
}

/// Each meter's total and the unit of its last reading.
#[allframe::projection(name = "meters", key = meter_id)]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MeterRow {
    meter_id: String,
    total: u64,
    unit: String,
}

impl Projection for MeterRow {
    type Source = Meter;

    fn apply(
        row: Option<&Self>,
        event: &MeterEvent,
        recorded: &RecordedEvent,
    ) -> Result<Change<Self>, ApplyError> {
        let MeterEvent::Read { value, unit } = event;
        Ok(Change::Upsert(MeterRow {
            meter_id: recorded.aggregate_id().to_owned(),
            total: row.map_or(0, |row| row.total) + value,
            unit: unit.clone(),
        }))
    }
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, Option<String>, Value) {
    let response = http_request(addr, "GET", path, &[], b"").await;
    let body = serde_json::from_slice(&response.body).unwrap();
    (
        response.status,
        response.header("retry-after").map(str::to_owned),
        body,
    )
}

/// Records a reading of `value` on meter `meter_id` over HTTP.
async fn post_reading(addr: std::net::SocketAddr, meter_id: &str, value: u64) -> RawResponse {
    let body = json!({ "meter_id": meter_id, "value": value }).to_string();
    http_request(
        addr,
        "POST",
        "/commands/read-meter",
        &[("content-type", "application/json")],
        body.as_bytes(),
    )
    .await
}

async fn append(store: &dyn EventStore, stream: &str, event: NewEvent) {
    store
        .append(stream, ExpectedVersion::Any, vec![event])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_events_reach_readers_in_todays_shape() {
    let store = MemoryStore::new();
    // As an earlier release wrote them: `Measured` at version 1.
    let old = |reading: u64| {
        NewEvent::new("Measured", &json!({ "reading": reading })).with_schema_version(1)
    };
    append(&store, "meter-1", old(3)).await;
    append(&store, "meter-1", old(4)).await;
    // An event of a category the app has no aggregate for, as stored.
    append(
        &store,
        "audit-1",
        NewEvent::new("Checked", &json!({"by": "x"})).with_schema_version(7),
    )
    .await;
    // One written by a newer release: sent as stored.
    append(
        &store,
        "meter-2",
        NewEvent::new("Read", &json!({"value": 1, "unit": "kWh", "phase": 3}))
            .with_schema_version(3),
    )
    .await;

    let app = App::builder(&store).build().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app.router();
    let server = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    // A command folds the old events (3 + 4) before deciding.
    let answer = post_reading(addr, "1", 5).await;
    assert_eq!(answer.status, 200);
    let answer: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(answer["events"][0]["data"]["unit"], "total 12", "{answer}");

    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/events/ws?after=0"))
            .await
            .unwrap();
    let mut frames = Vec::new();
    while frames.len() < 5 {
        let message = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .expect("a frame in time")
            .unwrap()
            .unwrap();
        if let Message::Text(text) = message {
            frames.push(serde_json::from_str::<Value>(&text).unwrap());
        }
    }
    let shape = |frame: &Value| {
        (
            frame["type"].clone(),
            frame["schema_version"].clone(),
            frame["data"].clone(),
        )
    };
    assert_eq!(
        shape(&frames[0]),
        (json!("Read"), json!(2), json!({"value": 3, "unit": "kWh"})),
        "an old event in today's shape"
    );
    assert_eq!(frames[0]["position"], 1, "position and stream as stored");
    assert_eq!(frames[0]["stream_id"], "meter-1");
    assert_eq!(
        shape(&frames[1]),
        (json!("Read"), json!(2), json!({"value": 4, "unit": "kWh"}))
    );
    assert_eq!(
        shape(&frames[2]),
        (json!("Checked"), json!(7), json!({"by": "x"})),
        "another category as stored"
    );
    assert_eq!(
        shape(&frames[3]),
        (
            json!("Read"),
            json!(3),
            json!({"value": 1, "unit": "kWh", "phase": 3})
        ),
        "a newer version as stored"
    );
    assert_eq!(
        shape(&frames[4]),
        (
            json!("Read"),
            json!(2),
            json!({"value": 5, "unit": "total 12"})
        ),
        "today's event as written"
    );
    // A command on the stream a newer release wrote to waits for the
    // upgrade rather than deciding on a state it cannot build.
    let waiting = post_reading(addr, "2", 1).await;
    assert_eq!(waiting.status, 503);
    assert_eq!(waiting.header("retry-after"), Some("10"));
    assert_eq!(
        waiting.header("content-type"),
        Some("application/problem+json")
    );
    let problem: Value = serde_json::from_slice(&waiting.body).unwrap();
    assert_eq!(
        problem["type"], "/problems/waiting-for-upgrade",
        "{problem}"
    );
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("meter-2") && detail.contains("schema version 3"),
        "{detail}"
    );
    assert_eq!(
        store.stream_version("meter-2").await.unwrap(),
        1,
        "nothing written"
    );
    // The projection applied the old events in today's shape, then paused
    // at the newer release's event (position 4) instead of skipping it.
    let (status, _, row) = get(addr, "/projections/meters/1").await;
    assert_eq!(status, 200);
    assert_eq!(
        (row["total"].clone(), row["unit"].clone()),
        (json!(7), json!("kWh"))
    );
    let (status, retry, problem) = get(addr, "/projections/meters/1?min_position=5").await;
    assert_eq!((status, retry.as_deref()), (503, Some("1")), "{problem}");
    assert_eq!(problem["type"], "/problems/waiting-for-upgrade");
    assert_eq!(
        (problem["projection"].clone(), problem["position"].clone()),
        (json!("meters"), json!(4))
    );
    let (_, _, admin) = get(addr, "/admin/projections").await;
    let meters = admin
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "meters")
        .unwrap_or_else(|| panic!("{admin}"));
    assert_eq!(meters["state"], "waiting-for-upgrade", "{meters}");
    // Its last event before the pause (position 3 is another category's).
    assert_eq!(meters["checkpoint"], 2, "{meters}");
    assert_eq!(meters["failed_position"], 4, "{meters}");
    // The stored originals are untouched.
    let stored = store.read_stream("meter-1", 0, 10).await.unwrap();
    assert_eq!(
        (stored[0].event_type.as_str(), stored[0].schema_version),
        ("Measured", 1)
    );
    server.abort();
}

/// The app refuses to start on a store holding events it cannot decode,
/// naming each kind and how many there are; old versions, aliases, newer
/// versions (a rolling deploy) and categories of no aggregate of its are
/// fine.
async fn start_up_check(store: &dyn EventStore) {
    let old = NewEvent::new("Measured", &json!({ "reading": 1 })).with_schema_version(1);
    append(store, "meter-1", old).await;
    let newer = NewEvent::new("Read", &json!({ "value": 1 })).with_schema_version(5);
    append(store, "meter-1", newer).await;
    append(store, "audit-1", NewEvent::new("Whatever", &json!({}))).await;
    App::builder(store)
        .build()
        .await
        .expect("every kind of event decodes");

    for _ in 0..2 {
        append(store, "meter-3", NewEvent::new("Exploded", &json!({}))).await;
    }
    // Today's name at an older version is decodable through the chain.
    let older = NewEvent::new("Read", &json!({ "reading": 2 })).with_schema_version(1);
    append(store, "meter-4", older).await;
    let Err(error) = App::builder(store).build().await else {
        panic!("an unknown event type must stop the start");
    };
    let allframe::AppError::UndecodableEvents(found) = &error else {
        panic!("{error}");
    };
    assert_eq!(found.len(), 1, "{error}");
    assert_eq!(
        (
            found[0].kind.category.as_str(),
            found[0].kind.event_type.as_str(),
            found[0].kind.schema_version,
            found[0].events
        ),
        ("meter", "Exploded", 1, 2)
    );
    let message = error.to_string();
    assert!(
        message.contains("`Exploded` schema version 1 in category `meter` (2 events)"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_check_memory() {
    start_up_check(&MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_check_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("check.db"))
        .await
        .unwrap();
    start_up_check(&store).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_check_postgres() {
    let Some(store) = postgres_store().await else {
        return;
    };
    start_up_check(&store).await;
    store.close().await;
}

/// A database written before the kinds of events were kept: the migration
/// fills the table from the events already stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kinds_of_events_already_stored_are_filled_in_on_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let store = SqliteStore::open(&path).await.unwrap();
    append(
        &store,
        "meter-1",
        NewEvent::new("Measured", &json!({"reading": 1})).with_schema_version(1),
    )
    .await;
    append(&store, "audit-1", NewEvent::new("Checked", &json!({}))).await;
    // As the previous release left the database: no table, no migration.
    for statement in [
        "DROP TABLE allframe_event_types",
        "DELETE FROM _sqlx_migrations WHERE version = 5",
    ] {
        sqlx::query(statement).execute(store.pool()).await.unwrap();
    }
    store.close().await;
    let store = SqliteStore::open(&path).await.unwrap();
    let kinds: Vec<(String, String, u32)> = store
        .stored_types()
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.category, k.event_type, k.schema_version))
        .collect();
    assert_eq!(
        kinds,
        [
            ("audit".to_owned(), "Checked".to_owned(), 1),
            ("meter".to_owned(), "Measured".to_owned(), 1)
        ]
    );
    store.close().await;
}
