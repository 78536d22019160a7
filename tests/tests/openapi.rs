//! The bank's OpenAPI document: committed, regenerated and compared, and
//! every status it lists produced by a real request (and no other).

// The bank's handlers register themselves; link them.
#[allow(unused_extern_crates)]
extern crate bank;

use std::collections::BTreeSet;
use std::future::IntoFuture;

use allframe::EventStore;
use allframe::store::MemoryStore;
use allframe_tests::faulty::{Fault, Faulty};
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/bank.json");

async fn document() -> String {
    let store = MemoryStore::new();
    let app = bank::app(&store).build().await.unwrap();
    serde_json::to_string_pretty(app.openapi()).unwrap() + "\n"
}

/// `openapi/bank.json` is the committed document (DESIGN.md's layout; the
/// typed client is generated from it), a plain JSON file: an insta snapshot
/// would wrap it in a header no OpenAPI tool reads.
#[tokio::test]
async fn the_committed_document_is_current() {
    let current = document().await;
    if std::env::var_os("ALLFRAME_UPDATE_OPENAPI").is_some() {
        std::fs::write(COMMITTED, &current).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed == current,
        "openapi/bank.json is out of date with the code; regenerate it with\n\n    \
         ALLFRAME_UPDATE_OPENAPI=1 cargo test -p allframe-tests --test openapi\n\n\
         and commit the result"
    );
    let _: Value = serde_json::from_str(&committed).unwrap();
}

/// `(path, method, status)` for every response the document lists.
fn documented(document: &Value) -> BTreeSet<(String, String, u16)> {
    let mut statuses = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for status in operation["responses"].as_object().unwrap().keys() {
                statuses.insert((path.clone(), method.clone(), status.parse().unwrap()));
            }
        }
    }
    statuses
}

/// Every status the bank's document lists is produced by a real request
/// below, and every response below is one the document lists.
/// The properties of the request body schema of `POST {path}`.
fn body_fields(document: &Value, path: &str) -> Vec<String> {
    let schema =
        &document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"];
    let name = schema["$ref"].as_str().unwrap().rsplit('/').next().unwrap();
    document["components"]["schemas"][name]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

#[tokio::test]
async fn every_documented_status_is_produced_and_no_other() {
    let store = Faulty::new();
    // A short wait, so the unreachable `min_position`s answer 503 quickly.
    let app = bank::app(&store)
        .read_wait(std::time::Duration::from_millis(50))
        .build()
        .await
        .unwrap();
    let router = app.router();
    let mut seen = Seen::default();

    for name in [
        "open-account",
        "deposit",
        "withdraw",
        "close-account",
        "transfer-money",
    ] {
        let path = format!("/commands/{name}");
        // Close needs an empty account; withdraw needs money.
        let initial_deposit = if name == "close-account" { 0 } else { 5 };
        let id = open(&router, initial_deposit).await;
        // The bank's commands refuse unknown fields: each body keeps the
        // fields its schema lists.
        let fields = body_fields(app.openapi(), &path);
        let fit = |body: Value| {
            let mut body = body.as_object().unwrap().clone();
            body.retain(|field, _| fields.contains(field));
            Value::Object(body).to_string()
        };
        let ok = fit(json!({
            "account_id": id, "owner": "Ada", "email": "ada@example.com", "amount": 1,
            "from_account_id": id, "to_account_id": "someone-else",
        }));
        // 200, 201 or (starting a saga) 202.
        seen.send(
            &router,
            &path,
            post(&path).body(Body::from(ok.clone())).unwrap(),
        )
        .await;
        // 400: not JSON.
        seen.send(&router, &path, post(&path).body(Body::from("{")).unwrap())
            .await;
        // 404: no such account (create-commands cannot miss one).
        let missing = json!({"account_id": "nope", "amount": 1, "owner": "A", "email": "a@b.c",
                             "from_account_id": "nope", "to_account_id": "nope-2"});
        seen.send(
            &router,
            &path,
            post(&path).body(Body::from(fit(missing))).unwrap(),
        )
        .await;
        // 409: a conflict on every attempt.
        let fresh = open(&router, initial_deposit).await;
        let conflicting = json!({"account_id": fresh, "amount": 1, "owner": "A", "email": "a@b.c",
                                 "from_account_id": fresh, "to_account_id": "someone-else"});
        store.set(Some(Fault::Conflict));
        seen.send(
            &router,
            &path,
            post(&path).body(Body::from(fit(conflicting))).unwrap(),
        )
        .await;
        store.set(None);
        // 412: the wrong expected version.
        seen.send(
            &router,
            &path,
            post(&path)
                .header("if-match", "\"77\"")
                .body(Body::from(ok.clone()))
                .unwrap(),
        )
        .await;
        // 413: over the body limit.
        let huge = "x".repeat(allframe::DEFAULT_BODY_LIMIT + 1);
        seen.send(&router, &path, post(&path).body(Body::from(huge)).unwrap())
            .await;
        // 422: invalid fields, or (closing an account with money in it) a
        // refusal.
        let rich = open(&router, 5).await;
        let invalid = json!({"account_id": rich, "amount": 0, "owner": "", "email": "no",
                             "from_account_id": rich, "to_account_id": "someone-else"});
        seen.send(
            &router,
            &path,
            post(&path).body(Body::from(fit(invalid))).unwrap(),
        )
        .await;
        // 503: the stream holds an event of a newer release (in a store of
        // its own, whose projection that event stops).
        if !["open-account", "transfer-money"].contains(&name) {
            let upgrading = Faulty::new();
            let router = bank::app(&upgrading).build().await.unwrap().router();
            let upgraded = open(&router, initial_deposit).await;
            let newer = allframe::NewEvent::new("MoneyDeposited", &json!({"amount": 1}))
                .with_schema_version(99);
            upgrading
                .append(
                    &format!("account-{upgraded}"),
                    allframe::ExpectedVersion::Any,
                    vec![newer],
                )
                .await
                .unwrap();
            let body = json!({"account_id": upgraded, "amount": 1});
            seen.send(
                &router,
                &path,
                post(&path).body(Body::from(fit(body))).unwrap(),
            )
            .await;
        }
        // 503: the command outlasts the command timeout (a store holding
        // its appends back).
        let slow = Faulty::new();
        let slow_router = bank::app(&slow)
            .command_timeout(std::time::Duration::from_millis(100))
            .build()
            .await
            .unwrap()
            .router();
        let target = open(&slow_router, initial_deposit).await;
        slow.hold_appends();
        let body = json!({"account_id": target, "amount": 1, "owner": "Ada", "email": "ada@example.com",
                          "from_account_id": target, "to_account_id": "someone-else"});
        seen.send(
            &slow_router,
            &path,
            post(&path).body(Body::from(fit(body))).unwrap(),
        )
        .await;
        slow.release_appends();
        // 500: the store is gone.
        store.set(Some(Fault::Unreachable));
        seen.send(&router, &path, post(&path).body(Body::from(ok)).unwrap())
            .await;
        store.set(None);
    }

    let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();
    sagas(&store, &router, &mut seen).await;
    seen.send(&router, "/health", get("/health")).await;
    seen.send(&router, "/about", get("/about")).await;
    seen.send(&router, "/metrics", get("/metrics")).await;
    store.set(Some(Fault::Unreachable));
    seen.send(&router, "/health", get("/health")).await;
    store.set(None);

    // The event streams, over a real socket.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, router.clone()).into_future());
    seen.websocket(addr, "/events/ws?after=0").await;
    seen.websocket(addr, "/events/ws?after=minus-one").await;
    seen.send(&router, "/events/sse", get("/events/sse?after=0"))
        .await;
    seen.send(&router, "/events/sse", get("/events/sse?nope=1"))
        .await;
    app.shutdown().await;
    seen.websocket(addr, "/events/ws").await;
    seen.send(&router, "/events/sse", get("/events/sse")).await;

    reads(&store, &app, &mut seen).await;

    let documented = documented(app.openapi());
    let only_documented: Vec<_> = documented.difference(&seen.0).collect();
    let only_seen: Vec<_> = seen.0.difference(&documented).collect();
    assert!(
        only_documented.is_empty() && only_seen.is_empty(),
        "documented but never produced: {only_documented:?}\nproduced but not documented: {only_seen:?}"
    );
}

/// Every status of `GET /sagas/{name}/{id}`.
async fn sagas(store: &Faulty, router: &axum::Router, seen: &mut Seen) {
    let path = "/sagas/{name}/{id}";
    let get = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();
    let (a, b) = (open(router, 5).await, open(router, 0).await);
    let transfer = json!({"from_account_id": a, "to_account_id": b, "amount": 1});
    let started = router
        .clone()
        .oneshot(
            post("/commands/transfer-money")
                .body(Body::from(transfer.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    let location = started.headers()["location"].to_str().unwrap().to_owned();
    seen.send(router, path, get(&location)).await;
    seen.send(router, path, get("/sagas/transfer-money/nope"))
        .await;
    seen.send(router, path, get("/sagas/nope/nope")).await;
    seen.send(router, "/admin/sagas", get("/admin/sagas")).await;
    store.set(Some(Fault::Unreachable));
    seen.send(router, path, get(&location)).await;
    seen.send(router, "/admin/sagas", get("/admin/sagas")).await;
    store.set(None);
}

/// Every status of the projection, query and admin routes.
async fn reads(store: &Faulty, app: &allframe::App, seen: &mut Seen) {
    let router = app.router();
    let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();
    let admin = |path: &str| Request::post(path).body(Body::empty()).unwrap();
    let id = open(&router, 5).await;
    let head = store.head_position().await.unwrap();
    let never = head + 1_000_000;
    let row = "/projections/accounts/{account_id}";
    let list = "/projections/accounts";
    let query = "/queries/accounts-over";
    let rebuild = "/admin/projections/{name}/rebuild";
    let restart = "/admin/projections/{name}/restart";
    // 200, 400, 404, 503; then 500 with the store gone.
    let requests = [
        (
            row,
            format!("/projections/accounts/{id}?min_position={head}"),
        ),
        (row, format!("/projections/accounts/{id}?limit=1")),
        (row, "/projections/accounts/nope".to_owned()),
        (
            row,
            format!("/projections/accounts/{id}?min_position={never}"),
        ),
        (list, "/projections/accounts?limit=2".to_owned()),
        (list, "/projections/accounts?limit=0".to_owned()),
        (list, format!("/projections/accounts?min_position={never}")),
        (query, "/queries/accounts-over?min_balance=1".to_owned()),
        (query, "/queries/accounts-over?min_balance=x".to_owned()),
        (
            query,
            "/queries/accounts-over?min_balance=1&limit=0".to_owned(),
        ),
        (
            query,
            format!("/queries/accounts-over?min_balance=1&min_position={never}"),
        ),
        ("/admin/projections", "/admin/projections".to_owned()),
    ];
    for (path, uri) in &requests {
        seen.send(&router, path, get(uri)).await;
    }
    for (path, action) in [(rebuild, "rebuild"), (restart, "restart")] {
        let uri = format!("/admin/projections/accounts/{action}");
        seen.send(&router, path, admin(&uri)).await;
        let uri = format!("/admin/projections/nope/{action}");
        seen.send(&router, path, admin(&uri)).await;
    }
    store.set(Some(Fault::Unreachable));
    for (path, uri) in &requests[..1] {
        seen.send(&router, path, get(uri)).await;
    }
    seen.send(&router, list, get(list)).await;
    seen.send(&router, query, get("/queries/accounts-over?min_balance=1"))
        .await;
    seen.send(&router, "/admin/projections", get("/admin/projections"))
        .await;
    for (path, action) in [(rebuild, "rebuild"), (restart, "restart")] {
        let uri = format!("/admin/projections/accounts/{action}");
        seen.send(&router, path, admin(&uri)).await;
    }
    store.set(None);
    // 503: waiting for a position the failed projection cannot reach.
    let bogus = allframe::NewEvent::new("MoneyDeposited", &json!({"bogus": true}));
    let poisoned = store
        .append(
            "account-poison",
            allframe::ExpectedVersion::Any,
            vec![bogus],
        )
        .await
        .unwrap()
        .position;
    let failed = app
        .projections()
        .wait_for("accounts", poisoned, std::time::Duration::from_secs(30))
        .await;
    assert!(
        matches!(failed, Err(allframe::ProjectionError::Failed { .. })),
        "{failed:?}"
    );
    for (path, uri) in [
        (
            row,
            format!("/projections/accounts/{id}?min_position={poisoned}"),
        ),
        (
            list,
            format!("/projections/accounts?min_position={poisoned}"),
        ),
        (
            query,
            format!("/queries/accounts-over?min_balance=1&min_position={poisoned}"),
        ),
    ] {
        seen.send(&router, path, get(&uri)).await;
    }
}

/// The `(path, method, status)` of every response received.
#[derive(Default)]
struct Seen(BTreeSet<(String, String, u16)>);

impl Seen {
    async fn send(&mut self, router: &axum::Router, path: &str, request: Request<Body>) {
        let method = request.method().as_str().to_ascii_lowercase();
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        if status >= 400 {
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json",
                "{method} {path} answered {status}"
            );
        }
        self.0.insert((path.to_owned(), method, status));
    }

    async fn websocket(&mut self, addr: std::net::SocketAddr, path_and_query: &str) {
        let url = format!("ws://{addr}{path_and_query}");
        let status = match tokio_tungstenite::connect_async(&url).await {
            Ok((_, response)) => response.status().as_u16(),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                response.status().as_u16()
            }
            Err(error) => panic!("{url}: {error}"),
        };
        let path = path_and_query.split('?').next().unwrap();
        self.0.insert((path.to_owned(), "get".to_owned(), status));
    }
}

fn post(path: &str) -> axum::http::request::Builder {
    Request::post(path).header("content-type", "application/json")
}

async fn open(router: &axum::Router, initial_deposit: u64) -> String {
    let body =
        json!({"owner": "Ada", "email": "ada@example.com", "initial_deposit": initial_deposit});
    let response = router
        .clone()
        .oneshot(
            post("/commands/open-account")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let outcome: Value = serde_json::from_slice(&bytes).unwrap();
    outcome["aggregate_id"].as_str().unwrap().to_owned()
}

/// Swagger UI comes from the binary, finds the document by a relative URL
/// (so it works under a prefix) and never calls the online validator.
#[tokio::test]
async fn swagger_ui_is_served_offline_and_the_document_as_built() {
    let store = MemoryStore::new();
    let app = bank::app(&store).build().await.unwrap();
    let router = axum::Router::new().nest("/api", app.router());
    let get = |path: &str| {
        router
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
    };
    let response = get("/api/docs").await.unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "docs/");
    let response = get("/api/docs/").await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let response = get("/api/docs/swagger-initializer.js").await.unwrap();
    let script = response.into_body().collect().await.unwrap().to_bytes();
    let script = String::from_utf8(script.to_vec()).unwrap();
    assert!(script.contains(r#""url": "../openapi.json""#), "{script}");
    assert!(script.contains(r#""validatorUrl": "none""#), "{script}");
    let response = get("/api/docs/swagger-ui-bundle.js").await.unwrap();
    assert_eq!(response.status(), 200);

    let response = get("/api/openapi.json").await.unwrap();
    assert_eq!(response.headers()["content-type"], "application/json");
    let served = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(served, document().await.as_bytes());
}
