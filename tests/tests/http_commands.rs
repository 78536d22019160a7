//! `POST /commands/{name}` and `GET /health` through the real router
//! (`oneshot`) and a real socket: every row of the HTTP contract.

// The bank's handlers register themselves; a crate whose items are never
// named is not linked, so link it explicitly.
#[allow(unused_extern_crates)]
extern crate bank;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use allframe::store::MemoryStore;
use allframe::{App, Command, Dep, EventStore, ExpectedVersion, NewEvent};
use allframe_tests::faulty::{Fault, Faulty};
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tower::ServiceExt;

/// A gate the `slow-ping` handler waits on, to hold an idempotency key in
/// flight; and a store handle `hot-ping` writes behind its own back.
struct Gate {
    entered: tokio::sync::Notify,
    open: tokio::sync::Semaphore,
}
struct Interferer(Arc<dyn EventStore>, AtomicU32);

#[derive(allframe::Event, Debug, PartialEq)]
enum PingEvent {
    Pinged {},
}

#[derive(Default)]
struct Pinger;

impl allframe::Aggregate for Pinger {
    type Event = PingEvent;
    const CATEGORY: &'static str = "pinger";
    fn apply(&mut self, _: &PingEvent) {}
}

#[allframe::command(aggregate = Pinger, id = id, name = "slow-ping")]
#[derive(Clone, Serialize, Deserialize, garde::Validate)]
struct SlowPing {
    #[garde(skip)]
    id: String,
}

#[allframe::command(aggregate = Pinger, id = id, name = "hot-ping")]
#[derive(Clone, Serialize, Deserialize, garde::Validate)]
struct HotPing {
    #[garde(skip)]
    id: String,
}

#[allframe::command_handler]
async fn slow_ping(
    _: SlowPing,
    _: &Pinger,
    gate: Dep<Gate>,
) -> Result<Vec<PingEvent>, std::convert::Infallible> {
    gate.entered.notify_one();
    let _permit = gate.open.acquire().await;
    Ok(vec![PingEvent::Pinged {}])
}

#[allframe::command_handler]
async fn hot_ping(
    command: HotPing,
    _: &Pinger,
    store: Dep<Interferer>,
) -> Result<Vec<PingEvent>, std::convert::Infallible> {
    store.1.fetch_add(1, Ordering::SeqCst);
    let noise = NewEvent::from_event(&PingEvent::Pinged {}).unwrap();
    store
        .0
        .append(
            &format!("pinger-{}", command.id),
            ExpectedVersion::Any,
            vec![noise],
        )
        .await
        .unwrap();
    Ok(vec![PingEvent::Pinged {}])
}

struct Fixture {
    store: MemoryStore,
    router: axum::Router,
    gate: Arc<Gate>,
    /// The OpenAPI document it serves.
    document: Value,
}

async fn fixture(body_limit: usize) -> Fixture {
    let store = MemoryStore::new();
    let gate = Arc::new(Gate {
        entered: tokio::sync::Notify::new(),
        open: tokio::sync::Semaphore::new(0),
    });
    let about = axum::Router::new().route(
        "/about",
        axum::routing::get(
            |version: Dep<&'static str>| async move { format!("bank {}", *version) },
        ),
    );
    let app = App::builder(&store)
        .provide("1.0")
        .provide_shared(gate.clone())
        .provide(Interferer(store.shared(), AtomicU32::new(0)))
        .body_limit(body_limit)
        .routes(about)
        .build()
        .await
        .unwrap();
    Fixture {
        store,
        router: app.router(),
        gate,
        document: app.openapi().clone(),
    }
}

async fn send(router: &axum::Router, request: Request<Body>) -> (Response<()>, Vec<u8>) {
    let response = router.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes().to_vec();
    (Response::from_parts(parts, ()), bytes)
}

fn post(path: &str) -> axum::http::request::Builder {
    Request::post(path).header("content-type", "application/json")
}

async fn command(router: &axum::Router, name: &str, body: Value) -> (Response<()>, Value) {
    let request = post(&format!("/commands/{name}"))
        .body(Body::from(body.to_string()))
        .unwrap();
    let (response, bytes) = send(router, request).await;
    (
        response,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn open_body() -> Value {
    json!({"owner": "Ada", "email": "ada@example.com", "initial_deposit": 100})
}

async fn open(router: &axum::Router) -> String {
    let (response, body) = command(router, "open-account", open_body()).await;
    assert_eq!(response.status(), StatusCode::CREATED, "{body}");
    body["aggregate_id"].as_str().unwrap().to_owned()
}

fn assert_problem(response: &Response<()>, body: &Value, status: u16, code: &str) {
    assert_problem_response(response, body, status);
    assert_eq!(body["type"], format!("/problems/{code}"), "{body}");
    assert_eq!(body["status"], status);
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
}

/// The status and media type of a problem; the body itself is compared
/// with its snapshot.
fn assert_problem_response(response: &Response<()>, body: &Value, status: u16) {
    assert_eq!(response.status().as_u16(), status, "{body}");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "every error is a problem"
    );
}

#[tokio::test]
async fn create_returns_201_with_the_outcome_and_an_etag() {
    let f = fixture(allframe::DEFAULT_BODY_LIMIT).await;
    let (response, body) = command(&f.router, "open-account", open_body()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["etag"], "\"2\"");
    let id = body["aggregate_id"].as_str().unwrap();
    assert_eq!(body["stream_id"], format!("account-{id}"));
    assert_eq!(
        (body["version"].as_u64(), body["position"].as_u64()),
        (Some(2), Some(2))
    );
    let events = body["events"].as_array().unwrap();
    assert_eq!(events[0]["type"], "AccountOpened");
    assert_eq!(
        events[0]["data"],
        json!({"owner": "Ada", "email": "ada@example.com", "currency": "EUR"})
    );
    assert_eq!(events[0]["schema_version"], 2);
    assert_eq!(events[1]["data"], json!({"amount": 100}));
    assert_eq!(events[0]["metadata"]["command"], "open-account");
    let correlation = response.headers()["x-correlation-id"].to_str().unwrap();
    assert_eq!(
        events[0]["metadata"]["correlation_id"], correlation,
        "a generated correlation id is echoed"
    );
    assert_eq!(f.store.head_position().await.unwrap(), 2);
}

#[tokio::test]
async fn accounts_open_in_the_currency_asked_for_or_euros() {
    let f = fixture(allframe::DEFAULT_BODY_LIMIT).await;
    let mut body = open_body();
    body["currency"] = json!("NOK");
    let (response, outcome) = command(&f.router, "open-account", body.clone()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(outcome["events"][0]["data"]["currency"], "NOK");
    for bad in [json!("nok"), json!("EURO"), json!("E1R"), json!(978)] {
        body["currency"] = bad.clone();
        let (response, problem) = command(&f.router, "open-account", body.clone()).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        if bad.is_string() {
            assert_eq!(problem["errors"][0]["pointer"], "/currency", "{problem}");
        }
    }
}

#[tokio::test]
async fn commands_return_200_and_carry_the_correlation_id() {
    let f = fixture(allframe::DEFAULT_BODY_LIMIT).await;
    let id = open(&f.router).await;
    let request = post("/commands/deposit")
        .header("x-correlation-id", "req-42")
        .body(Body::from(
            json!({"account_id": id, "amount": 5}).to_string(),
        ))
        .unwrap();
    let (response, bytes) = send(&f.router, request).await;
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["etag"], "\"3\"");
    assert_eq!(response.headers()["x-correlation-id"], "req-42");
    assert_eq!(body["events"][0]["metadata"]["correlation_id"], "req-42");
}

#[tokio::test]
async fn malformed_bodies_and_wrong_content_types_are_400() {
    let f = fixture(allframe::DEFAULT_BODY_LIMIT).await;
    let request = post("/commands/deposit").body(Body::from("{nope")).unwrap();
    let (response, bytes) = send(&f.router, request).await;
    assert_problem(
        &response,
        &serde_json::from_slice(&bytes).unwrap(),
        400,
        "malformed-json",
    );
    for content_type in [Some("text/plain"), None] {
        let mut request = Request::post("/commands/deposit");
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let (response, bytes) = send(&f.router, request.body(Body::from("{}")).unwrap()).await;
        assert_problem(
            &response,
            &serde_json::from_slice(&bytes).unwrap(),
            400,
            "unsupported-content-type",
        );
    }
    let request = post("/commands/deposit")
        .header("content-type", "application/vnd.bank+json; charset=utf-8")
        .body(Body::from("{nope"))
        .unwrap();
    let (response, _) = send(&f.router, request).await;
    assert_eq!(
        response.status(),
        400,
        "+json types are JSON too; this one is malformed"
    );
    let (response, body) = command(&f.router, "deposit", json!({"account_id": 7})).await;
    assert_problem(&response, &body, 422, "invalid-command");
}

#[tokio::test]
async fn unknown_commands_and_missing_aggregates_are_404() {
    let f = fixture(allframe::DEFAULT_BODY_LIMIT).await;
    let (response, body) = command(&f.router, "transfer", json!({})).await;
    assert_problem_response(&response, &body, 404);
    insta::assert_json_snapshot!("unknown_command", body);
    let (response, body) = command(
        &f.router,
        "deposit",
        json!({"account_id": "ghost", "amount": 1}),
    )
    .await;
    assert_problem_response(&response, &body, 404);
    insta::assert_json_snapshot!("aggregate_not_found", body);
}

#[tokio::test]
async fn validation_and_domain_refusals_are_422() {
    let f = fixture(allframe::DEFAULT_BODY_LIMIT).await;
    let (response, body) = command(
        &f.router,
        "open-account",
        json!({"owner": "", "email": "nope"}),
    )
    .await;
    assert_problem_response(&response, &body, 422);
    insta::assert_json_snapshot!("validation_failed", body);
    let id = open(&f.router).await;
    let (response, body) = command(
        &f.router,
        "withdraw",
        json!({"account_id": id, "amount": 500}),
    )
    .await;
    assert_problem_response(&response, &body, 422);
    insta::assert_json_snapshot!("insufficient_funds", body);
    let (response, body) = command(&f.router, "close-account", json!({"account_id": id})).await;
    assert_problem_response(&response, &body, 422);
    insta::assert_json_snapshot!("balance_not_zero", body);
    command(
        &f.router,
        "withdraw",
        json!({"account_id": id, "amount": 100}),
    )
    .await;
    let (response, _) = command(&f.router, "close-account", json!({"account_id": id})).await;
    assert_eq!(response.status(), 200);
    let (response, body) =
        command(&f.router, "deposit", json!({"account_id": id, "amount": 1})).await;
    assert_problem_response(&response, &body, 422);
    insta::assert_json_snapshot!("account_closed", body);
}

#[tokio::test]
async fn json_that_does_not_fit_the_schema_is_422_invalid_command() {
    let f = fixture(allframe::DEFAULT_BODY_LIMIT).await;
    // A misspelt optional field would otherwise open an empty account.
    let misspelt = json!({"owner": "Ada", "email": "ada@example.com", "initial_deposti": 500});
    let wrong_type = json!({"owner": "Ada", "email": "ada@example.com", "initial_deposit": "500"});
    for (body, says) in [
        (misspelt, "unknown field `initial_deposti`"),
        (wrong_type, "expected u64"),
        (json!([1, 2]), "invalid"),
    ] {
        let (response, problem) = command(&f.router, "open-account", body).await;
        assert_problem(&response, &problem, 422, "invalid-command");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{detail}");
    }
    // As the document says.
    let responses = &f.document["paths"]["/commands/open-account"]["post"]["responses"];
    assert!(
        responses["422"]["description"]
            .as_str()
            .unwrap()
            .contains("does not fit"),
        "{responses}"
    );
    assert!(
        !responses["400"]["description"]
            .as_str()
            .unwrap()
            .contains("does not fit"),
        "{responses}"
    );
}

#[tokio::test]
async fn if_match_sets_the_expected_version() {
    let f = fixture(allframe::DEFAULT_BODY_LIMIT).await;
    let id = open(&f.router).await;
    let deposit = |if_match: &str| {
        post("/commands/deposit")
            .header("if-match", if_match)
            .body(Body::from(
                json!({"account_id": id, "amount": 1}).to_string(),
            ))
            .unwrap()
    };
    let (response, bytes) = send(&f.router, deposit("\"1\"")).await;
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_problem_response(&response, &body, 412);
    insta::assert_json_snapshot!("precondition_failed", body);
    let (response, _) = send(&f.router, deposit("\"2\"")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["etag"], "\"3\"");
    let (response, _) = send(&f.router, deposit("*")).await;
    assert_eq!(response.status(), 200);
    // The aggregate is at version 4 now. Entity tags compare exactly, weak
    // tags never match, and a list matches when any of its tags does.
    for never in ["W/\"4\"", "\"+4\"", "\"04\"", "\"1\", \"3\"", "\"x\""] {
        let (response, bytes) = send(&f.router, deposit(never)).await;
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_problem(&response, &body, 412, "precondition-failed");
    }
    let (response, _) = send(&f.router, deposit("\"1\", W/\"3\", \"4\"")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["etag"], "\"5\"");
    for malformed in ["5", "\"5", "\"5 \"", "\"5\" \"6\"", "*, \"5\""] {
        let (response, bytes) = send(&f.router, deposit(malformed)).await;
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_problem(&response, &body, 400, "invalid-if-match");
    }
}

#[tokio::test]
async fn if_match_on_a_create_command_asks_for_an_existing_aggregate() {
    let f = fixture(allframe::DEFAULT_BODY_LIMIT).await;
    let request = post("/commands/open-account")
        .header("if-match", "*")
        .body(Body::from(
            json!({"owner": "Ada", "email": "ada@example.com"}).to_string(),
        ))
        .unwrap();
    let (response, bytes) = send(&f.router, request).await;
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_problem(&response, &body, 412, "precondition-failed");
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let f = fixture(64).await;
    let big = json!({"owner": "A".repeat(100), "email": "ada@example.com"}).to_string();
    let request = post("/commands/open-account")
        .body(Body::from(big.clone()))
        .unwrap();
    let (response, bytes) = send(&f.router, request).await;
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_problem_response(&response, &body, 413);
    insta::assert_json_snapshot!("body_too_large", body);
    // Without a Content-Length the limit still holds while streaming.
    let stream = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(big.into_bytes())]);
    let request = post("/commands/open-account")
        .body(Body::from_stream(stream))
        .unwrap();
    let (response, _) = send(&f.router, request).await;
    assert_eq!(response.status(), 413);
    let f = fixture(allframe::DEFAULT_BODY_LIMIT).await;
    let huge = format!("{{\"owner\":\"{}\"}}", "a".repeat(1024 * 1024));
    let (response, _) = send(
        &f.router,
        post("/commands/open-account")
            .body(Body::from(huge))
            .unwrap(),
    )
    .await;
    assert_eq!(response.status(), 413, "the default limit is 1 MiB");
}

#[tokio::test]
async fn idempotency_keys_replay_byte_for_byte() {
    let f = fixture(allframe::DEFAULT_BODY_LIMIT).await;
    let keyed = |key: &str, body: Value| {
        post("/commands/open-account")
            .header("idempotency-key", key)
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let (first, first_bytes) = send(&f.router, keyed("k-1", open_body())).await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotency-replayed").is_none());
    let (again, again_bytes) = send(&f.router, keyed("k-1", open_body())).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotency-replayed"], "true");
    assert_eq!(again.headers()["etag"], first.headers()["etag"]);
    assert_eq!(again_bytes, first_bytes, "byte for byte");
    assert_eq!(
        f.store.head_position().await.unwrap(),
        2,
        "the handler ran once"
    );
    let mut other = open_body();
    other["owner"] = json!("Bob");
    let (response, bytes) = send(&f.router, keyed("k-1", other)).await;
    assert_problem(
        &response,
        &serde_json::from_slice(&bytes).unwrap(),
        422,
        "idempotency-key-reused",
    );
}

#[tokio::test]
async fn a_key_still_in_flight_is_409() {
    let f = fixture(allframe::DEFAULT_BODY_LIMIT).await;
    let slow = || {
        post("/commands/slow-ping")
            .header("idempotency-key", "slow-1")
            .body(Body::from(json!({"id": "p1"}).to_string()))
            .unwrap()
    };
    // Create the pinger first (slow-ping is not a create-command).
    f.store
        .append(
            "pinger-p1",
            ExpectedVersion::NoStream,
            vec![NewEvent::from_event(&PingEvent::Pinged {}).unwrap()],
        )
        .await
        .unwrap();
    let router = f.router.clone();
    let first = tokio::spawn(async move { send(&router, slow()).await });
    // Once the handler runs, the first request holds the key.
    f.gate.entered.notified().await;
    let (response, bytes) = send(&f.router, slow()).await;
    assert_problem(
        &response,
        &serde_json::from_slice(&bytes).unwrap(),
        409,
        "idempotency-key-in-flight",
    );
    f.gate.open.add_permits(100);
    let (response, _) = first.await.unwrap();
    assert_eq!(response.status(), 200);
    let (response, _) = send(&f.router, slow()).await;
    assert_eq!(response.headers()["idempotency-replayed"], "true");
}

#[tokio::test]
async fn conflicts_after_retries_are_409() {
    let f = fixture(allframe::DEFAULT_BODY_LIMIT).await;
    f.store
        .append(
            "pinger-h1",
            ExpectedVersion::NoStream,
            vec![NewEvent::from_event(&PingEvent::Pinged {}).unwrap()],
        )
        .await
        .unwrap();
    let (response, body) = command(&f.router, "hot-ping", json!({"id": "h1"})).await;
    assert_problem_response(&response, &body, 409);
    insta::assert_json_snapshot!("conflict", body);
}

#[tokio::test]
async fn health_reports_the_head() {
    let f = fixture(allframe::DEFAULT_BODY_LIMIT).await;
    open(&f.router).await;
    let (response, bytes) = send(
        &f.router,
        Request::get("/health").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        (&body["status"], &body["head_position"]),
        (&json!("ok"), &json!(2))
    );
    let accounts = body["projections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|status| status["name"] == "accounts")
        .unwrap_or_else(|| panic!("the bank's projection is listed: {body}"));
    assert_eq!(accounts["state"], "running");
}

#[tokio::test]
async fn plain_axum_routes_share_the_container_and_the_router_nests() {
    let f = fixture(allframe::DEFAULT_BODY_LIMIT).await;
    let (response, bytes) = send(
        &f.router,
        Request::get("/about").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(bytes, b"bank 1.0");
    let nested = axum::Router::new()
        .nest("/api", f.router.clone())
        .layer(tower_http::trace::TraceLayer::new_for_http());
    let request = post("/api/commands/open-account")
        .body(Body::from(open_body().to_string()))
        .unwrap();
    let (response, _) = send(&nested, request).await;
    assert_eq!(response.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_socket() {
    let f = fixture(allframe::DEFAULT_BODY_LIMIT).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, f.router.clone()).into_future());
    let response = allframe_tests::http_request(
        addr,
        "POST",
        "/commands/open-account",
        &[
            ("content-type", "application/json"),
            ("x-correlation-id", "sock-1"),
        ],
        open_body().to_string().as_bytes(),
    )
    .await;
    assert_eq!(response.status, 201);
    assert_eq!(response.header("x-correlation-id"), Some("sock-1"));
    let body: Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(body["version"], 2);
    let health = allframe_tests::http_request(addr, "GET", "/health", &[], b"").await;
    assert_eq!(health.status, 200);
    server.abort();
}

#[test]
fn command_names_are_kebab_case() {
    assert_eq!(<SlowPing as Command>::NAME, "slow-ping");
}

#[tokio::test]
async fn a_failing_store_gives_503_health_and_opaque_500s() {
    let gate = Gate {
        entered: tokio::sync::Notify::new(),
        open: tokio::sync::Semaphore::new(0),
    };
    let store = Faulty::new();
    // The store goes away once the app has started (it checks the stored
    // events at start-up, so it cannot start without one); unreachable, it
    // cannot open projections either: this app runs none.
    let app = App::builder(&store)
        .projections(allframe::Projections::builder(&store).projections(vec![]))
        .provide(gate)
        .provide(Interferer(store.shared(), AtomicU32::new(0)))
        .build()
        .await
        .unwrap();
    store.set(Some(Fault::Unreachable));
    let router = app.router();
    let (response, bytes) = send(
        &router,
        Request::get("/health").body(Body::empty()).unwrap(),
    )
    .await;
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_problem_response(&response, &body, 503);
    insta::assert_json_snapshot!("store_unavailable", body);
    let (response, body) =
        command(&router, "deposit", json!({"account_id": "a", "amount": 1})).await;
    assert_problem_response(&response, &body, 500);
    insta::assert_json_snapshot!("internal_error", body);
    let text = body.to_string();
    assert!(
        !text.contains("db.internal") && !text.contains("admin"),
        "5xx bodies reveal nothing: {text}"
    );
}

#[tokio::test]
async fn every_route_gets_and_echoes_a_correlation_id() {
    let store = MemoryStore::new();
    let echo = axum::Router::new().route(
        "/whoami",
        axum::routing::get(|id: allframe::http::CorrelationId| async move { id.0 }),
    );
    let gate = Gate {
        entered: tokio::sync::Notify::new(),
        open: tokio::sync::Semaphore::new(0),
    };
    let router = App::builder(&store)
        .provide(gate)
        .provide(Interferer(store.shared(), AtomicU32::new(0)))
        .routes(echo)
        .build()
        .await
        .unwrap()
        .router();
    let (response, bytes) = send(
        &router,
        Request::get("/whoami").body(Body::empty()).unwrap(),
    )
    .await;
    let echoed = response.headers()["x-correlation-id"].to_str().unwrap();
    assert_eq!(
        bytes,
        echoed.as_bytes(),
        "the handler sees the id the response echoes"
    );
    assert!(
        uuid::Uuid::parse_str(echoed).is_ok(),
        "a generated id is a UUID"
    );
    let request = Request::get("/health")
        .header("x-correlation-id", "given-1")
        .body(Body::empty())
        .unwrap();
    let (response, _) = send(&router, request).await;
    assert_eq!(response.headers()["x-correlation-id"], "given-1");
    let request = post("/commands/deposit")
        .header("x-correlation-id", "x".repeat(300))
        .body(Body::from("{}"))
        .unwrap();
    let (response, bytes) = send(&router, request).await;
    assert_problem(
        &response,
        &serde_json::from_slice(&bytes).unwrap(),
        400,
        "invalid-header",
    );
}
