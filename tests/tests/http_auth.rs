//! Authentication over HTTP: the bank with `JwtAuthenticator` (HS256).
//! Tokens are signed here with `jsonwebtoken`; the refused ones are forged
//! by hand where the library will not make them (`alg: none`).

use allframe::auth::{JwtAuthenticator, Principal};
use allframe::store::MemoryStore;
use allframe::{App, EventStore};
use allframe_tests::tokens::{SECRET, bearer, now, token, token_with};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use bank::domain::Withdraw;
use http_body_util::BodyExt;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use tower::ServiceExt;

/// A route of the app's own that needs a principal, and one that takes
/// one if there is one.
fn own_routes() -> utoipa_axum::router::OpenApiRouter {
    utoipa_axum::router::OpenApiRouter::new()
        .route(
            "/me",
            get(|principal: Principal| async move { principal.subject }),
        )
        .route(
            "/maybe",
            get(|principal: Option<Principal>| async move {
                principal.map_or("nobody".to_owned(), |p| p.subject)
            }),
        )
}

async fn app(store: &MemoryStore) -> App {
    bank::app(store)
        .routes(own_routes())
        .authenticator(JwtAuthenticator::hs256(SECRET))
        .build()
        .await
        .unwrap()
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn problem(&self) -> (u16, String, String) {
        assert_eq!(
            self.headers["content-type"],
            "application/problem+json",
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        let body = self.json();
        (
            self.status.as_u16(),
            body["type"].as_str().unwrap().to_owned(),
            body["detail"].as_str().unwrap().to_owned(),
        )
    }
}

async fn call(
    app: &App,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: Value,
) -> Answer {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    let request = if method == "POST" {
        request
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
    } else {
        request.body(Body::empty())
    };
    send(app, request.unwrap()).await
}

async fn send(app: &App, request: Request<Body>) -> Answer {
    let response = app.router().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes().to_vec(),
    }
}

fn open_account(owner: &str) -> Value {
    json!({"owner": owner, "email": "x@example.com", "initial_deposit": 5})
}

#[tokio::test]
async fn public_routes_stay_open_and_the_rest_needs_a_valid_token() {
    let store = MemoryStore::new();
    let app = app(&store).await;
    for path in ["/health", "/openapi.json", "/docs/"] {
        let answer = call(&app, "GET", path, None, Value::Null).await;
        assert!(
            answer.status.is_success() || answer.status.is_redirection(),
            "{path}: {}",
            answer.status
        );
    }

    // No credentials: 401 with the challenge and the correlation id.
    for (method, path) in [
        ("POST", "/commands/open-account"),
        ("GET", "/projections/accounts"),
        ("GET", "/queries/accounts-over"),
        ("GET", "/admin/projections"),
        ("GET", "/sagas/transfer-money/x"),
        ("GET", "/events/sse"),
        ("GET", "/me"),
        ("GET", "/nowhere"),
    ] {
        let answer = call(&app, method, path, None, open_account("ada")).await;
        let (status, kind, _) = answer.problem();
        assert_eq!(
            (status, kind.as_str()),
            (401, "/problems/unauthenticated"),
            "{method} {path}"
        );
        assert_eq!(answer.headers["www-authenticate"], "Bearer");
        assert!(answer.headers.contains_key("x-correlation-id"));
    }

    // Refused credentials, each with a reason that gives nothing away.
    let other_secret = token_with(
        Algorithm::HS256,
        b"another secret entirely, also long enough",
        json!({"sub": "ada", "exp": now() + 600}),
    );
    let hs512 = token_with(
        Algorithm::HS512,
        SECRET,
        json!({"sub": "ada", "exp": now() + 600}),
    );
    let expired = token_with(
        Algorithm::HS256,
        SECRET,
        json!({"sub": "ada", "exp": now() - 120}),
    );
    let no_exp = token_with(Algorithm::HS256, SECRET, json!({"sub": "ada"}));
    let no_sub = token_with(Algorithm::HS256, SECRET, json!({"exp": now() + 600}));
    let not_yet = token_with(
        Algorithm::HS256,
        SECRET,
        json!({"sub": "ada", "exp": now() + 600, "nbf": now() + 300}),
    );
    let audience = token_with(
        Algorithm::HS256,
        SECRET,
        json!({"sub": "ada", "exp": now() + 600, "aud": "another-service"}),
    );
    // `alg: none`, unsigned: what a forger sends.
    let unsigned = {
        use base64_engine::encode;
        format!(
            "{}.{}.",
            encode(br#"{"alg":"none","typ":"JWT"}"#),
            encode(
                json!({"sub": "ada", "exp": now() + 600, "roles": ["admin"]})
                    .to_string()
                    .as_bytes()
            )
        )
    };
    for (authorization, reason) in [
        (bearer(&other_secret), "signature"),
        (bearer(&hs512), "HS256"),
        (bearer(&expired), "expired"),
        (bearer(&no_exp), "`exp`"),
        (bearer(&no_sub), "`sub`"),
        (bearer(&not_yet), "not valid yet"),
        (bearer(&audience), "another audience"),
        (bearer(&unsigned), ""),
        (bearer("not.a.token"), "malformed"),
        ("Basic YWRhOnNlY3JldA==".to_owned(), "Bearer"),
        ("Bearer ".to_owned(), "Bearer"),
    ] {
        let answer = call(
            &app,
            "POST",
            "/commands/open-account",
            Some(&authorization),
            open_account("ada"),
        )
        .await;
        let (status, kind, detail) = answer.problem();
        assert_eq!(
            (status, kind.as_str()),
            (401, "/problems/unauthenticated"),
            "{authorization}"
        );
        assert!(detail.contains(reason), "{authorization}: {detail}");
        assert_eq!(answer.headers["www-authenticate"], "Bearer");
    }
    assert_eq!(
        store.head_position().await.unwrap(),
        0,
        "nothing refused was written"
    );

    // Clock skew: a token that expired 10 s ago is still taken (30 s).
    let skewed = token_with(
        Algorithm::HS256,
        SECRET,
        json!({"sub": "ada", "exp": now() - 10}),
    );
    let answer = call(
        &app,
        "POST",
        "/commands/open-account",
        Some(&bearer(&skewed)),
        open_account("ada"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::CREATED);
}

#[tokio::test]
async fn the_principal_reaches_events_routes_and_admin_checks() {
    let store = MemoryStore::new();
    let app = app(&store).await;
    let ada = bearer(&token("ada", &[]));
    let root = bearer(&token("root", &["admin"]));

    let answer = call(
        &app,
        "POST",
        "/commands/open-account",
        Some(&ada),
        open_account("Ada"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::CREATED);
    let position = answer.json()["position"].as_u64().unwrap();
    let event = &store
        .read_all(position - 1, 1, &allframe::EventFilter::all())
        .await
        .unwrap()[0];
    assert_eq!(event.metadata.extra["principal"], "ada");

    assert_eq!(
        call(&app, "GET", "/me", Some(&ada), Value::Null).await.body,
        b"ada"
    );
    assert_eq!(
        call(&app, "GET", "/maybe", Some(&root), Value::Null)
            .await
            .body,
        b"root"
    );
    let reads = call(
        &app,
        "GET",
        "/projections/accounts",
        Some(&ada),
        Value::Null,
    )
    .await;
    assert_eq!(reads.status, StatusCode::OK);

    // The admin routes: an admin only.
    let refused = call(&app, "GET", "/admin/projections", Some(&ada), Value::Null).await;
    let (status, kind, detail) = refused.problem();
    assert_eq!((status, kind.as_str()), (403, "/problems/forbidden"));
    assert!(detail.contains("ada"), "{detail}");
    let refused = call(
        &app,
        "POST",
        "/admin/projections/accounts/rebuild",
        Some(&ada),
        Value::Null,
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let allowed = call(&app, "GET", "/admin/projections", Some(&root), Value::Null).await;
    assert_eq!(allowed.status, StatusCode::OK);
    let allowed = call(&app, "GET", "/admin/sagas", Some(&root), Value::Null).await;
    assert_eq!(allowed.status, StatusCode::OK);
}

#[tokio::test]
async fn without_an_authenticator_the_principal_extractor_refuses() {
    let store = MemoryStore::new();
    let app = bank::app(&store)
        .routes(own_routes())
        .build()
        .await
        .unwrap();
    let answer = call(
        &app,
        "GET",
        "/me",
        Some(&bearer(&token("ada", &[]))),
        Value::Null,
    )
    .await;
    let (status, kind, _) = answer.problem();
    assert_eq!((status, kind.as_str()), (401, "/problems/unauthenticated"));
    assert_eq!(
        call(&app, "GET", "/maybe", None, Value::Null).await.body,
        b"nobody"
    );
    // Everything else is open.
    let answer = call(
        &app,
        "POST",
        "/commands/open-account",
        None,
        open_account("Ada"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_take_the_token_in_the_query() {
    let store = MemoryStore::new();
    let app = app(&store).await;
    let server = allframe_tests::server::serve(app).await;
    let addr = server.addr;

    let refused = tokio_tungstenite::connect_async(format!("ws://{addr}/events/ws")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401);
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
        }
        other => panic!("the upgrade should be refused: {other:?}"),
    }
    let forged = token_with(
        Algorithm::HS256,
        b"another secret entirely, also long enough",
        json!({"sub": "ada", "exp": now() + 600}),
    );
    let refused =
        tokio_tungstenite::connect_async(format!("ws://{addr}/events/ws?access_token={forged}"))
            .await;
    assert!(
        matches!(refused, Err(tokio_tungstenite::tungstenite::Error::Http(ref r)) if r.status() == 401),
        "{refused:?}"
    );
    let (_, response) = tokio_tungstenite::connect_async(format!(
        "ws://{addr}/events/ws?after=0&access_token={}",
        token("root", &["admin"])
    ))
    .await
    .expect("the upgrade succeeds with a token in the query");
    assert_eq!(response.status(), 101);
    // Outside the event streams the query is not read for a token.
    let answer = allframe_tests::http_request(
        addr,
        "GET",
        &format!("/projections/accounts?access_token={}", token("ada", &[])),
        &[],
        b"",
    )
    .await;
    assert_eq!(answer.status, 401);
    drop(server);
}

/// Unpadded base64url, for the forged token.
mod base64_engine {
    pub(super) fn encode(bytes: &[u8]) -> String {
        const TABLE: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}

#[tokio::test]
async fn the_document_declares_who_may_call_what() {
    let store = MemoryStore::new();
    // The bank with its rules: hooks on every command, the rows, the
    // lists, the query and the event streams.
    let document = bank::rules::secured(bank::app(&store), &store, SECRET)
        .build()
        .await
        .unwrap()
        .openapi()
        .clone();
    // For the lint in CI (`.ci/run`): the secured document as served.
    if let Some(path) = std::env::var_os("ALLFRAME_SECURED_OPENAPI") {
        std::fs::write(path, serde_json::to_vec_pretty(&document).unwrap()).unwrap();
    }
    assert_eq!(
        document["components"]["securitySchemes"]["authenticated"]["scheme"],
        "bearer"
    );
    assert_eq!(document["security"], json!([{"authenticated": []}]));
    assert_eq!(document["servers"][0]["url"], "/");
    assert_eq!(document["paths"]["/health"]["get"]["security"], json!([]));
    let mut protected = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if path == "/health" || !operation.is_object() {
                continue;
            }
            protected += 1;
            let responses = &operation["responses"];
            assert!(responses.get("401").is_some(), "{method} {path}");
            let guarded = path.starts_with("/admin/")
                || path == "/metrics"
                || path.starts_with("/commands/")
                || path.starts_with("/projections/")
                || path.starts_with("/queries/")
                || path.starts_with("/events/")
                || path == "/sagas/{name}/{id}";
            assert_eq!(responses.get("403").is_some(), guarded, "{method} {path}");
        }
    }
    assert!(protected > 10, "{protected} operations");

    // Without an authenticator everything is open, and says so.
    let open = bank::app(&store).build().await.unwrap().openapi().clone();
    assert_eq!(open["security"], json!([]));
    assert!(open["components"].get("securitySchemes").is_none());
    assert!(!open.to_string().contains("\"401\""));
}

async fn call_with(app: &App, path: &str, headers: &[(&str, &str)], body: Value) -> Answer {
    let mut request = Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(app, request.body(Body::from(body.to_string())).unwrap()).await
}

/// Only an admin withdraws from an account holding 1,000 or more; the
/// service itself (no principal) may.
async fn guarded_app(store: &MemoryStore) -> App {
    bank::app(store)
        .authenticator(JwtAuthenticator::hs256(SECRET))
        .authorize::<Withdraw>(|principal, _, account| match principal {
            Some(p) if !p.is_admin() && account.balance >= 1_000 => Err(format!(
                "only an admin withdraws from a balance of {}",
                account.balance
            )),
            _ => Ok(()),
        })
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_command_hook_sees_the_principal_and_the_state() {
    let store = MemoryStore::new();
    let app = guarded_app(&store).await;
    let ada = bearer(&token("ada", &[]));
    let root = bearer(&token("root", &["admin"]));
    let opened = call(
        &app,
        "POST",
        "/commands/open-account",
        Some(&ada),
        json!({"owner": "Ada", "email": "x@example.com", "initial_deposit": 1_500}),
    )
    .await;
    let id = opened.json()["aggregate_id"].as_str().unwrap().to_owned();
    let withdraw = json!({"account_id": id, "amount": 600});
    let head = store.head_position().await.unwrap();

    // Refused on both paths a command takes: plain (decided in a round)
    // and with an idempotency key (decided alone).
    for headers in [
        vec![("authorization", ada.as_str())],
        vec![("authorization", ada.as_str()), ("idempotency-key", "w-1")],
    ] {
        let refused = call_with(&app, "/commands/withdraw", &headers, withdraw.clone()).await;
        let (status, kind, detail) = refused.problem();
        assert_eq!(
            (status, kind.as_str()),
            (403, "/problems/forbidden"),
            "{headers:?}"
        );
        assert_eq!(detail, "only an admin withdraws from a balance of 1500");
    }
    assert_eq!(
        store.head_position().await.unwrap(),
        head,
        "nothing was written"
    );

    // An admin may; then, below 1,000, anyone signed in may.
    let done = call_with(
        &app,
        "/commands/withdraw",
        &[("authorization", root.as_str())],
        withdraw.clone(),
    )
    .await;
    assert_eq!(done.status, StatusCode::OK);
    let done = call_with(
        &app,
        "/commands/withdraw",
        &[("authorization", ada.as_str()), ("idempotency-key", "w-2")],
        json!({"account_id": id, "amount": 100}),
    )
    .await;
    assert_eq!(
        done.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&done.body)
    );

    // The service itself has no principal.
    let raised = app
        .dispatcher()
        .dispatch(
            bank::domain::Deposit {
                account_id: id.clone(),
                amount: 5_000,
            },
            allframe::DispatchOptions::default(),
        )
        .await
        .unwrap();
    assert!(raised.position.is_some());
    app.dispatcher()
        .dispatch(
            Withdraw {
                account_id: id.clone(),
                amount: 1,
            },
            allframe::DispatchOptions::default(),
        )
        .await
        .expect("no principal: the hook lets the service through");

    // The document says which commands a hook guards.
    let document = app.openapi();
    assert!(
        document["paths"]["/commands/withdraw"]["post"]["responses"]
            .get("403")
            .is_some()
    );
    assert!(
        document["paths"]["/commands/deposit"]["post"]["responses"]
            .get("403")
            .is_none()
    );
}

#[tokio::test]
async fn idempotency_keys_belong_to_their_subject() {
    let store = MemoryStore::new();
    let app = app(&store).await;
    let (ada, bob) = (bearer(&token("ada", &[])), bearer(&token("bob", &[])));
    let opened = call(
        &app,
        "POST",
        "/commands/open-account",
        Some(&ada),
        open_account("Ada"),
    )
    .await;
    let id = opened.json()["aggregate_id"].as_str().unwrap().to_owned();
    let deposit = json!({"account_id": id, "amount": 7});
    let send = |who: &str| {
        let who = who.to_owned();
        let deposit = deposit.clone();
        let app = &app;
        async move {
            call_with(
                app,
                "/commands/deposit",
                &[
                    ("authorization", who.as_str()),
                    ("idempotency-key", "same-key"),
                ],
                deposit,
            )
            .await
        }
    };
    let first = send(&ada).await;
    assert_eq!(first.status, StatusCode::OK);
    assert!(first.headers.get("idempotency-replayed").is_none());
    // Bob's key is his own: his deposit runs, it does not replay Ada's.
    let theirs = send(&bob).await;
    assert_eq!(theirs.status, StatusCode::OK);
    assert!(theirs.headers.get("idempotency-replayed").is_none());
    assert_ne!(theirs.json()["position"], first.json()["position"]);
    // Ada's again is replayed.
    let again = send(&ada).await;
    assert_eq!(again.headers["idempotency-replayed"], "true");
    assert_eq!(again.json()["position"], first.json()["position"]);
    // A key reused with another body is named as the client sent it.
    let reused = call_with(
        &app,
        "/commands/deposit",
        &[
            ("authorization", ada.as_str()),
            ("idempotency-key", "same-key"),
        ],
        json!({"account_id": id, "amount": 8}),
    )
    .await;
    let (status, kind, detail) = reused.problem();
    assert_eq!(
        (status, kind.as_str()),
        (422, "/problems/idempotency-key-reused")
    );
    assert!(detail.contains("`same-key`"), "{detail}");
    // The longest key a client may send still works when scoped.
    let long = "k".repeat(255);
    let done = call_with(
        &app,
        "/commands/deposit",
        &[
            ("authorization", bob.as_str()),
            ("idempotency-key", long.as_str()),
        ],
        deposit.clone(),
    )
    .await;
    assert_eq!(
        done.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&done.body)
    );
    let too_long = "k".repeat(256);
    let refused = call_with(
        &app,
        "/commands/deposit",
        &[
            ("authorization", bob.as_str()),
            ("idempotency-key", too_long.as_str()),
        ],
        deposit,
    )
    .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
}
