//! Hostile input, property-based (proptest): command bodies, paths, query
//! strings, stream parameters, headers, cursors and stored event data
//! chosen to break things. Nothing may panic, and every failure is a 4xx
//! `application/problem+json` whose `status` is the response's. The
//! request-head limits are checked over a real socket.
//!
//! Each property runs `PROPTEST_CASES` cases (default 256).

use std::sync::OnceLock;

use allframe::auth::JwtAuthenticator;
use allframe::store::MemoryStore;
use allframe::{RecordedEvent, RequestLimits};
use allframe_tests::http_request;
use allframe_tests::server::serve;
use allframe_tests::tokens::{SECRET, token};
use axum::Router;
use axum::body::Body;
use axum::http::Request;
use bank::domain::AccountEvent;
use bank::transfer::TransferEvent;
use http_body_util::BodyExt;
use proptest::prelude::*;
use serde_json::{Value, json};
use tower::ServiceExt;

/// One runtime and two bank apps over one store (open, and behind the JWT
/// authenticator with the bank's rules) for every case, with accounts to
/// aim at.
struct Target {
    runtime: tokio::runtime::Runtime,
    open: Router,
    secured: Router,
    account: String,
}

fn target() -> &'static Target {
    static TARGET: OnceLock<Target> = OnceLock::new();
    TARGET.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (open, secured, account) = runtime.block_on(async {
            let store = MemoryStore::new();
            let wait = std::time::Duration::from_millis(20);
            let open = bank::app(&store).read_wait(wait).build().await.unwrap();
            let secured = bank::rules::secured(bank::app(&store), &store, SECRET)
                .read_wait(wait)
                .build()
                .await
                .unwrap();
            let body = json!({"owner": "ada", "email": "ada@example.com", "initial_deposit": 50});
            let request = post("/commands/open-account", body.to_string().into_bytes());
            let (status, answer) = send(&open.router(), request).await;
            assert_eq!(status, 201, "{answer}");
            let account = answer["aggregate_id"].as_str().unwrap().to_owned();
            (open.router(), secured.router(), account)
        });
        Target {
            runtime,
            open,
            secured,
            account,
        }
    })
}

fn post(path: &str, body: Vec<u8>) -> Request<Body> {
    Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap()
}

fn get(path: &str) -> Option<Request<Body>> {
    Request::builder().uri(path).body(Body::empty()).ok()
}

/// Sends `request`; checks that a failure is a 4xx problem saying its own
/// status; returns the status and the JSON body (`Null` when not JSON).
async fn send(router: &Router, request: Request<Body>) -> (u16, Value) {
    let what = format!("{} {}", request.method(), request.uri());
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap().to_owned());
    // Streams (a valid SSE request) never end: their head is the answer.
    if content_type.as_deref() == Some("text/event-stream") {
        return (status, Value::Null);
    }
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    assert!(status < 500, "{what}: {status} {body}");
    if status >= 400 {
        assert_eq!(
            content_type.as_deref(),
            Some("application/problem+json"),
            "{what}: {status}"
        );
        assert_eq!(body["status"], status, "{what}: {body}");
        assert!(body["type"].as_str().is_some(), "{what}: {body}");
    }
    (status, body)
}

fn run(router: &Router, request: Request<Body>) -> (u16, Value) {
    target().runtime.block_on(send(router, request))
}

/// Any JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinities", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(field_name(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// The bank's field names and a few others.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "owner",
            "email",
            "initial_deposit",
            "currency",
            "account_id",
            "amount",
            "from_account_id",
            "to_account_id",
            "accountId",
            "",
        ])
        .prop_map(str::to_owned),
        "[a-z_]{1,12}",
    ]
}

/// Characters a URL's path or query may carry, percent escapes (valid or
/// not) and separators included.
fn url_text(max: usize) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-zA-Z0-9._~-]{1,8}",
        Just("%".to_owned()),
        "%[0-9A-Fa-f]{2}",
        "%[G-Zg-z]{2}",
        Just("%00".to_owned()),
        Just("%FF".to_owned()),
        Just("%C3%28".to_owned()),
        Just("&".to_owned()),
        Just("=".to_owned()),
        Just("+".to_owned()),
        Just("[".to_owned()),
        prop::sample::select(vec![
            "min_position",
            "limit",
            "cursor",
            "owner",
            "after",
            "stream",
            "category",
            "type",
            "types",
            "min_balance",
            "access_token",
        ])
        .prop_map(str::to_owned),
        "-?[0-9]{1,25}",
    ];
    prop::collection::vec(piece, 0..max).prop_map(|pieces| pieces.concat())
}

const COMMANDS: [&str; 6] = [
    "open-account",
    "deposit",
    "withdraw",
    "close-account",
    "transfer-money",
    "no-such-command",
];

proptest! {
    #[test]
    fn any_command_body_is_answered_without_a_server_error(
        command in prop::sample::select(COMMANDS.to_vec()),
        body in json_value(),
        aim in any::<bool>(),
    ) {
        // Half the objects aim at a real account, to get past lookups.
        let mut body = body;
        if let (true, Value::Object(fields)) = (aim, &mut body) {
            fields.insert("account_id".into(), target().account.clone().into());
        }
        let path = format!("/commands/{command}");
        run(&target().open, post(&path, body.to_string().into_bytes()));
    }

    #[test]
    fn any_command_bytes_are_answered_without_a_server_error(
        command in prop::sample::select(COMMANDS.to_vec()),
        bytes in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let path = format!("/commands/{command}");
        let (status, _) = run(&target().open, post(&path, bytes));
        prop_assert!(!(300..400).contains(&status), "{}", status);
    }

    #[test]
    fn any_query_string_is_answered_without_a_server_error(
        route in 0..5usize,
        query in url_text(12),
    ) {
        let account = &target().account;
        let path = match route {
            0 => format!("/projections/accounts?{query}"),
            1 => format!("/projections/accounts/{account}?{query}"),
            2 => format!("/queries/accounts-over?{query}"),
            3 => format!("/sagas/transfer-money/{query}"),
            _ => format!("/events/ws?{query}"),
        };
        if let Some(request) = get(&path) {
            run(&target().open, request);
        }
    }

    #[test]
    fn any_path_is_answered_without_a_server_error(
        first in url_text(4),
        second in url_text(4),
        prefix in prop::sample::select(vec!["/commands/", "/projections/", "/queries/", "/sagas/", "/admin/projections/", "/events/", "/"]),
        method in prop::sample::select(vec!["GET", "POST", "PUT", "DELETE"]),
    ) {
        let path = format!("{prefix}{first}/{second}");
        if let Ok(request) = Request::builder().method(method).uri(&path).body(Body::empty()) {
            run(&target().open, request);
        }
    }

    #[test]
    fn any_cursor_is_a_page_or_a_400(cursor in prop_oneof![
        ".{0,60}",
        "[A-Za-z0-9_-]{0,60}",
        "[A-Za-z0-9+/=]{0,60}",
    ]) {
        let query: String = serde_urlencoded::to_string([("cursor", cursor.as_str())]).unwrap();
        let path = format!("/projections/accounts?{query}");
        let (status, body) = run(&target().open, get(&path).unwrap());
        prop_assert!(status == 200 || (status == 400 && body["type"].as_str().unwrap().ends_with("/invalid-cursor")), "{} {}", status, body);
    }

    #[test]
    fn any_stream_parameters_are_checked_before_a_stream_starts(
        query in url_text(10),
        last_event_id in ".{0,30}",
    ) {
        if let Ok(request) = Request::builder()
            .uri(format!("/events/sse?{query}"))
            .header("last-event-id", last_event_id.as_str())
            .body(Body::empty())
        {
            let (status, _) = run(&target().open, request);
            prop_assert!(status == 200 || status == 400, "{}", status);
        }
    }

    #[test]
    fn any_headers_are_answered_without_a_server_error(
        idempotency_key in ".{0,300}",
        if_match in ".{0,40}",
        correlation in ".{0,300}",
        content_type in prop::sample::select(vec!["application/json", "application/json; charset=utf-8", "text/plain", "application/jsonx", "", "application/problem+json"]),
    ) {
        let body = json!({"account_id": target().account, "amount": 1}).to_string();
        let request = Request::builder()
            .method("POST")
            .uri("/commands/deposit")
            .header("content-type", content_type)
            .header("idempotency-key", idempotency_key.as_str())
            .header("if-match", if_match.as_str())
            .header("x-correlation-id", correlation.as_str())
            .body(Body::from(body));
        if let Ok(request) = request {
            run(&target().open, request);
        }
    }

    #[test]
    fn any_credentials_are_a_401_or_an_answer(
        token_text in prop_oneof![
            ".{0,80}",
            "[A-Za-z0-9_-]{1,20}\\.[A-Za-z0-9_-]{1,40}\\.[A-Za-z0-9_-]{0,40}",
            Just(token("ada", &[])),
        ],
        scheme in prop::sample::select(vec!["Bearer ", "bearer ", "Basic ", "", "Bearer  "]),
        in_query in any::<bool>(),
        path in prop::sample::select(vec!["/events/ws", "/events/sse", "/projections/accounts", "/admin/projections", "/queries/accounts-over"]),
    ) {
        let request = if in_query {
            let query = serde_urlencoded::to_string([("access_token", token_text.as_str())]).unwrap();
            Request::builder().uri(format!("{path}?{query}")).body(Body::empty())
        } else {
            Request::builder()
                .uri(path)
                .header("authorization", format!("{scheme}{token_text}"))
                .body(Body::empty())
        };
        if let Ok(request) = request {
            run(&target().secured, request);
        }
    }

    #[test]
    fn any_stored_event_data_decodes_or_says_why(
        event_type in prop_oneof![
            prop::sample::select(vec!["AccountOpened", "MoneyDeposited", "MoneyWithdrawn", "AccountClosed", "TransferRequested", "DepositRefused"]).prop_map(str::to_owned),
            ".{0,20}",
        ],
        schema_version in prop_oneof![0..4u32, any::<u32>()],
        data in json_value(),
    ) {
        let recorded = json!({
            "position": 1, "stream_id": "account-a1", "version": 1,
            "type": event_type, "schema_version": schema_version, "data": data,
            "metadata": {"event_id": "0193a4e0-0000-7000-8000-000000000000"},
            "recorded_at": "2026-11-26T12:00:00.123Z"
        });
        let recorded: RecordedEvent = serde_json::from_value(recorded).unwrap();
        // Either outcome is fine; a panic is not.
        let _ = recorded.decode::<AccountEvent>();
        let _ = recorded.decode::<TransferEvent>();
    }

    #[test]
    fn any_json_as_a_recorded_event_is_refused_or_read(value in json_value()) {
        let _ = serde_json::from_value::<RecordedEvent>(value);
    }
}

/// The head limits over a real socket: a long path or query string is a
/// 414 problem, large headers a 431 one, and heads past the HTTP server's
/// own buffer a bare 431.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_heads_over_the_limits_are_refused() {
    let store = MemoryStore::new();
    let app = bank::app(&store)
        .authenticator(JwtAuthenticator::hs256(SECRET))
        .build()
        .await
        .unwrap();
    let server = serve(app).await;
    let addr = server.addr;
    let limits = RequestLimits::default();
    let problem = |response: &allframe_tests::RawResponse| {
        assert_eq!(
            response.header("content-type"),
            Some("application/problem+json")
        );
        let body: Value = serde_json::from_slice(&response.body).unwrap();
        (response.status, body["type"].as_str().unwrap().to_owned())
    };

    // Refused before the authenticator: no credentials needed to hear it.
    let long_path = format!("/projections/{}", "a".repeat(limits.path_bytes));
    let response = http_request(addr, "GET", &long_path, &[], b"").await;
    assert_eq!(problem(&response), (414, "/problems/uri-too-long".into()));
    let long_query = format!("/health?x={}", "a".repeat(limits.query_bytes));
    let response = http_request(addr, "GET", &long_query, &[], b"").await;
    assert_eq!(problem(&response), (414, "/problems/uri-too-long".into()));
    let big = "b".repeat(limits.header_bytes);
    let response = http_request(addr, "GET", "/health", &[("x-big", &big)], b"").await;
    assert_eq!(
        problem(&response),
        (431, "/problems/headers-too-large".into())
    );
    // Just within: served.
    let within = "a".repeat(limits.query_bytes - 2);
    let response = http_request(addr, "GET", &format!("/health?{within}"), &[], b"").await;
    assert_eq!(response.status, 200);
    let response = http_request(
        addr,
        "GET",
        "/health",
        &[("x-big", &"b".repeat(8 * 1024))],
        b"",
    )
    .await;
    assert_eq!(response.status, 200);
    // Past the server's own buffer: refused by it.
    let huge = "h".repeat(600 * 1024);
    let response =
        allframe_tests::try_http_request(addr, "GET", "/health", &[("x-huge", &huge)], b"").await;
    // It answers 431 and closes, possibly before reading all of it (then
    // the write fails); either way the service goes on.
    if let Ok(response) = response {
        assert_eq!(response.status, 431);
    }
    let response = http_request(addr, "GET", "/health", &[], b"").await;
    assert_eq!(response.status, 200);
}
