//! A panic in a command handler, a query handler or a user route answers
//! an opaque 500 problem, gives back the idempotency key and the
//! aggregate's turn, and the server goes on serving the same aggregate and
//! key.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use allframe::store::MemoryStore;
use allframe::{App, Dep, Projections};
use allframe_tests::server::PATIENCE;
use axum::body::Body;
use axum::http::{Request, Response};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

/// Whether the handlers panic: they do until a test turns it off.
struct Fuse(AtomicBool);

#[derive(allframe::Event, Debug, PartialEq)]
enum BombEvent {
    Armed {},
    Ticked {},
}

#[derive(Default)]
struct Bomb;

impl allframe::Aggregate for Bomb {
    type Event = BombEvent;
    const CATEGORY: &'static str = "bomb";
    fn apply(&mut self, _: &BombEvent) {}
}

#[allframe::command(aggregate = Bomb, id = id, create, name = "arm")]
#[derive(Clone, Serialize, Deserialize, garde::Validate)]
struct Arm {
    #[garde(skip)]
    id: String,
}

#[allframe::command(aggregate = Bomb, id = id, name = "tick")]
#[derive(Clone, Serialize, Deserialize, garde::Validate)]
struct Tick {
    #[garde(skip)]
    id: String,
}

#[allframe::command_handler]
async fn arm(_: Arm, _: &Bomb) -> Result<Vec<BombEvent>, std::convert::Infallible> {
    Ok(vec![BombEvent::Armed {}])
}

#[allframe::command_handler]
async fn tick(
    _: Tick,
    _: &Bomb,
    fuse: Dep<Fuse>,
) -> Result<Vec<BombEvent>, std::convert::Infallible> {
    if fuse.0.load(Ordering::SeqCst) {
        panic!("the tick handler blew up");
    }
    Ok(vec![BombEvent::Ticked {}])
}

#[allframe::query(name = "detonate")]
#[derive(Debug, Deserialize, garde::Validate)]
struct Detonate {}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Debris {
    pieces: u32,
}

#[allframe::query_handler]
async fn detonate(
    _: Detonate,
    _: &Projections,
    fuse: Dep<Fuse>,
) -> Result<Debris, std::convert::Infallible> {
    if fuse.0.load(Ordering::SeqCst) {
        panic!("the query handler blew up");
    }
    Ok(Debris { pieces: 3 })
}

async fn app(store: &MemoryStore) -> App {
    let boom = axum::Router::new().route(
        "/boom",
        axum::routing::get(|fuse: Dep<Fuse>| async move {
            assert!(!fuse.0.load(Ordering::SeqCst), "the user route blew up");
            "fine"
        }),
    );
    App::builder(store)
        .projections(Projections::builder(store).projections(vec![]))
        .provide(Fuse(AtomicBool::new(true)))
        .routes(boom)
        .build()
        .await
        .unwrap()
}

fn defuse(app: &App) {
    app.dispatcher()
        .container()
        .get::<Fuse>()
        .expect("the fuse is provided")
        .0
        .store(false, Ordering::SeqCst);
}

async fn send(router: &axum::Router, request: Request<Body>) -> (Response<()>, Value) {
    let response = tokio::time::timeout(PATIENCE, router.clone().oneshot(request))
        .await
        .expect("an answer in time")
        .unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (Response::from_parts(parts, ()), body)
}

fn command(name: &str, body: Value, key: Option<&str>) -> Request<Body> {
    let mut request = Request::post(format!("/commands/{name}"))
        .header("content-type", "application/json")
        .header("x-correlation-id", "corr-panic-1");
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    request.body(Body::from(body.to_string())).unwrap()
}

/// An opaque 500 problem that names nothing of the panic.
fn assert_opaque_500(response: &Response<()>, body: &Value) {
    assert_eq!(response.status(), 500, "{body}");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(body["type"], "/problems/internal-error");
    assert!(
        !body.to_string().contains("blew up"),
        "the panic's message stays in the logs: {body}"
    );
}

#[tokio::test]
async fn a_panicking_command_handler_releases_its_key_and_its_turn() {
    let store = MemoryStore::new();
    let app = app(&store).await;
    let router = app.router();
    let (response, _) = send(&router, command("arm", json!({"id": "b1"}), None)).await;
    assert_eq!(response.status(), 201);

    let tick = || command("tick", json!({"id": "b1"}), Some("tick-key-1"));
    let (response, body) = send(&router, tick()).await;
    assert_opaque_500(&response, &body);
    assert_eq!(response.headers()["x-correlation-id"], "corr-panic-1");
    // The aggregate's turn was given back: another command on it does not
    // wait (it would hang here), and the key is free again, not in flight.
    let (response, body) = send(&router, tick()).await;
    assert_opaque_500(&response, &body);
    let (response, body) = send(&router, command("tick", json!({"id": "b1"}), None)).await;
    assert_opaque_500(&response, &body);

    defuse(&app);
    let (response, body) = send(&router, tick()).await;
    assert_eq!(response.status(), 200, "{body}");
    assert_eq!(body["version"], 2, "nothing of the failed runs was written");
    let (response, replayed) = send(&router, tick()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["idempotency-replayed"], "true");
    assert_eq!(replayed["version"], 2);
}

#[tokio::test]
async fn a_panicking_query_handler_answers_a_500_problem() {
    let store = MemoryStore::new();
    let app = app(&store).await;
    let router = app.router();
    let get = || {
        Request::get("/queries/detonate")
            .body(Body::empty())
            .unwrap()
    };
    let (response, body) = send(&router, get()).await;
    assert_opaque_500(&response, &body);
    defuse(&app);
    let (response, body) = send(&router, get()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(body, json!({"pieces": 3}));
}

/// One HTTP/1.1 request over a real socket; the raw answer.
async fn raw_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, socket.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .expect("the server answers rather than dropping the connection");
    String::from_utf8(answer).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_user_route_answers_a_500_problem_on_a_real_socket() {
    let store = MemoryStore::new();
    let app = app(&store).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app.router();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    let answer = raw_get(addr, "/boom").await;
    assert!(answer.starts_with("HTTP/1.1 500"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{answer}"
    );
    assert!(answer.contains("/problems/internal-error"), "{answer}");
    assert!(!answer.contains("blew up"), "{answer}");
    tokio::time::sleep(Duration::from_millis(10)).await;
    defuse(&app);
    let answer = raw_get(addr, "/boom").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("fine"), "{answer}");
    server.abort();
}
