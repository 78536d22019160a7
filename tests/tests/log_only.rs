//! A third-party backend that implements the log alone (no idempotency
//! records, no projection storage): commands run, projections are served
//! from memory, and an `Idempotency-Key` is refused with a clear problem.

use std::sync::Arc;

use allframe::store::MemoryStore;
use allframe::{Appended, EventFilter, EventStore, ExpectedVersion, NewEvent, RecordedEvent};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures_util::future::BoxFuture;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::watch;
use tower::ServiceExt;

// The bank's handlers register themselves; link them.
#[allow(unused_extern_crates)]
extern crate bank;

/// The log of a [`MemoryStore`], and nothing else.
#[derive(Clone)]
struct LogOnly(MemoryStore);

impl EventStore for LogOnly {
    fn append<'a>(
        &'a self,
        stream_id: &'a str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, allframe::store::Result<Appended>> {
        self.0.append(stream_id, expected, events)
    }

    fn read_stream<'a>(
        &'a self,
        stream_id: &'a str,
        from_version: u64,
        limit: usize,
    ) -> BoxFuture<'a, allframe::store::Result<Vec<RecordedEvent>>> {
        self.0.read_stream(stream_id, from_version, limit)
    }

    fn read_all<'a>(
        &'a self,
        after: u64,
        limit: usize,
        filter: &'a EventFilter,
    ) -> BoxFuture<'a, allframe::store::Result<Vec<RecordedEvent>>> {
        self.0.read_all(after, limit, filter)
    }

    fn stream_version<'a>(
        &'a self,
        stream_id: &'a str,
    ) -> BoxFuture<'a, allframe::store::Result<u64>> {
        self.0.stream_version(stream_id)
    }

    fn head_position(&self) -> BoxFuture<'_, allframe::store::Result<u64>> {
        self.0.head_position()
    }

    fn watch_head(&self) -> watch::Receiver<u64> {
        self.0.watch_head()
    }

    fn shared(&self) -> Arc<dyn EventStore> {
        Arc::new(self.clone())
    }
}

async fn call(router: &axum::Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn open(key: Option<&str>) -> Request<Body> {
    let mut request =
        Request::post("/commands/open-account").header("content-type", "application/json");
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let body = json!({"owner": "Ada", "email": "ada@example.com", "initial_deposit": 5});
    request.body(Body::from(body.to_string())).unwrap()
}

#[tokio::test]
async fn a_log_only_backend_serves_commands_and_projections() {
    let store = LogOnly(MemoryStore::new());
    assert!(store.idempotency().is_none() && store.projection_store().is_none());
    let app = bank::app(&store)
        .build()
        .await
        .expect("the bank builds on the log alone");
    let router = app.router();

    let (status, opened) = call(&router, open(None)).await;
    assert_eq!(status, StatusCode::CREATED, "{opened}");
    let id = opened["aggregate_id"].as_str().unwrap();
    let position = opened["position"].as_u64().unwrap();
    let uri = format!("/projections/accounts/{id}?min_position={position}");
    let (status, row) = call(&router, Request::get(uri).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "projections run from memory: {row}");
    assert_eq!(row["balance"], 5);

    let (status, problem) = call(&router, open(Some("key-1"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(problem["type"], "/problems/idempotency-unsupported");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("without an idempotency key"),
        "{problem}"
    );
    // Nothing was written by the refused command.
    assert_eq!(store.head_position().await.unwrap(), position);
}
