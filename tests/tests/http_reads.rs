//! The read side over HTTP: `GET /projections/...`, `GET /queries/...` and
//! `/admin/projections`, through the real router (`oneshot`) and a real
//! socket, with the bank's `accounts` projection and `accounts-over` query.

use std::time::Duration;

use allframe::store::{MemoryStore, SqliteStore};
use allframe::{App, EventStore, ExpectedVersion, NewEvent};
use allframe_tests::faulty::Faulty;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

async fn app(store: &dyn EventStore) -> App {
    bank::app(store).build().await.expect("the bank builds")
}

/// One request through the router: status, headers and JSON body.
async fn call(
    app: &App,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, HeaderMap, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let body = body.map_or_else(Body::empty, |body| Body::from(body.to_string()));
    let response = app
        .router()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (parts.status, parts.headers, json)
}

/// Opens an account; returns its id and the position of its last event.
async fn open(app: &App, owner: &str, deposit: u64) -> (String, u64) {
    let body = json!({"owner": owner, "email": "x@example.com", "initial_deposit": deposit});
    let (status, _, outcome) = call(app, "POST", "/commands/open-account", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{outcome}");
    (
        outcome["aggregate_id"].as_str().unwrap().to_owned(),
        outcome["position"].as_u64().unwrap(),
    )
}

fn position(headers: &HeaderMap) -> u64 {
    headers["allframe-position"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn problem_type(body: &Value) -> &str {
    body["type"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn rows_by_key_pages_and_their_failures() {
    let store = MemoryStore::new();
    let app = app(&store).await;
    let (ada, _) = open(&app, "Ada", 100).await;
    open(&app, "Bob", 5).await;
    let (_, last) = open(&app, "Ada", 7).await;

    let (status, headers, row) = call(
        &app,
        "GET",
        &format!("/projections/accounts/{ada}?min_position={last}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(position(&headers) >= last);
    assert_eq!(
        row,
        json!({"account_id": ada, "owner": "Ada", "email": "x@example.com", "balance": 100, "open": true, "currency": "EUR"})
    );

    let (status, headers, body) = call(&app, "GET", "/projections/accounts/nobody", None).await;
    assert_eq!(
        (status, problem_type(&body)),
        (StatusCode::NOT_FOUND, "/problems/row-not-found")
    );
    assert_eq!(position(&headers), last, "a miss says how fresh it is");
    let (status, _, body) = call(&app, "GET", "/projections/nothing/x", None).await;
    assert_eq!(
        (status, problem_type(&body)),
        (StatusCode::NOT_FOUND, "/problems/unknown-projection")
    );
    let (status, _, body) = call(&app, "GET", "/projections/nothing", None).await;
    assert_eq!(
        (status, problem_type(&body)),
        (StatusCode::NOT_FOUND, "/problems/unknown-projection")
    );

    // Pagination: two pages of 2 and 1, in key order, each row once.
    let (status, headers, page) = call(&app, "GET", "/projections/accounts?limit=2", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(position(&headers), last);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let (_, _, rest) = call(
        &app,
        "GET",
        &format!("/projections/accounts?limit=2&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_eq!(rest["next_cursor"], Value::Null);
    let mut keys: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["items"].as_array().unwrap())
        .map(|row| row["account_id"].as_str().unwrap())
        .collect();
    let listed = keys.clone();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!((keys.len(), listed), (3, keys.clone()));

    // Filtered by the indexed field.
    let (status, _, owned) = call(&app, "GET", "/projections/accounts?owner=Ada", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(owned["items"].as_array().unwrap().len(), 2);
    assert!(
        owned["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|row| row["owner"] == "Ada")
    );

    for (uri, code) in [
        ("/projections/accounts?limit=0", "invalid-limit"),
        ("/projections/accounts?limit=1001", "invalid-limit"),
        ("/projections/accounts?limit=ten", "invalid-limit"),
        ("/projections/accounts?cursor=forged", "invalid-cursor"),
        ("/projections/accounts?balance=5", "unknown-parameter"),
        (
            "/projections/accounts?min_position=soon",
            "invalid-min-position",
        ),
        (
            "/projections/accounts?limit=1&limit=2",
            "duplicate-parameter",
        ),
        (
            "/projections/accounts/x?min_position=-1",
            "invalid-min-position",
        ),
        ("/projections/accounts/x?owner=Ada", "unknown-parameter"),
    ] {
        let (status, _, body) = call(&app, "GET", uri, None).await;
        assert_eq!(
            (status, problem_type(&body)),
            (
                StatusCode::BAD_REQUEST,
                format!("/problems/{code}").as_str()
            ),
            "{uri}"
        );
    }
}

/// Deposits 100 times; after each, a read with the command's position as
/// `min_position` must see that deposit.
async fn read_your_writes(store: &dyn EventStore) {
    let app = app(store).await;
    let (id, _) = open(&app, "Ada", 0).await;
    for i in 1..=100u64 {
        let body = json!({"account_id": id, "amount": i});
        let (status, _, outcome) = call(&app, "POST", "/commands/deposit", Some(body)).await;
        assert_eq!(status, StatusCode::OK);
        let written = outcome["position"].as_u64().unwrap();
        let uri = format!("/projections/accounts/{id}?min_position={written}");
        let (status, headers, row) = call(&app, "GET", &uri, None).await;
        assert_eq!(status, StatusCode::OK, "round {i}: {row}");
        assert!(position(&headers) >= written, "round {i}");
        assert_eq!(
            row["balance"],
            i * (i + 1) / 2,
            "round {i}: the read misses the write"
        );
    }
}

#[tokio::test]
async fn a_read_with_min_position_sees_the_write_100_times_in_a_row() {
    read_your_writes(&SqliteStore::in_memory().await.unwrap()).await;
    read_your_writes(&MemoryStore::new()).await;
}

#[tokio::test]
async fn read_your_writes_on_postgres() {
    // Skipped, loudly, when PostgreSQL is unreachable (outside CI).
    let Some(store) = allframe_tests::postgres_store().await else {
        return;
    };
    read_your_writes(&store).await;
}

/// NUL and other control characters in a row key, a list filter or a
/// decoded cursor: PostgreSQL refuses the NUL byte, so each backend must
/// answer the same 400 before the store is asked.
async fn control_characters_are_refused(store: &dyn EventStore) {
    let app = app(store).await;
    let (ada, written) = open(&app, "Ada", 100).await;
    let uri = format!("/projections/accounts/{ada}?min_position={written}");
    let (status, _, row) = call(&app, "GET", &uri, None).await;
    assert_eq!(status, StatusCode::OK, "{row}");
    // The cursor a key "a\0b" would give: `k` and the key's bytes in hex.
    let nul_cursor = "k610062";
    for (uri, what) in [
        ("/projections/accounts/a%00b".to_owned(), "key"),
        ("/projections/accounts/%1B%5B2J".to_owned(), "key"),
        ("/projections/accounts/x%C2%85".to_owned(), "key"),
        (
            "/projections/accounts?owner=Ada%00".to_owned(),
            "filter `owner`",
        ),
        (
            "/projections/accounts?owner=%07".to_owned(),
            "filter `owner`",
        ),
        (
            format!("/projections/accounts?cursor={nul_cursor}"),
            "cursor",
        ),
        (
            format!("/projections/accounts?cursor={nul_cursor}&owner=Ada"),
            "cursor",
        ),
    ] {
        let (status, headers, body) = call(&app, "GET", &uri, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(headers["content-type"], "application/problem+json", "{uri}");
        assert_eq!(
            problem_type(&body),
            "/problems/control-character",
            "{uri}: {body}"
        );
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains(what), "{uri}: {detail}");
    }
    // Text around the refused characters still reads as before.
    let (status, _, page) = call(&app, "GET", "/projections/accounts?owner=Ada", None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    let (status, _, body) = call(&app, "GET", "/projections/accounts/caf%C3%A9", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(problem_type(&body), "/problems/row-not-found");
}

#[tokio::test]
async fn control_characters_in_keys_filters_and_cursors_are_400_on_every_backend() {
    control_characters_are_refused(&MemoryStore::new()).await;
    control_characters_are_refused(&SqliteStore::in_memory().await.unwrap()).await;
    // Skipped, loudly, when PostgreSQL is unreachable (outside CI).
    if let Some(store) = allframe_tests::postgres_store().await {
        control_characters_are_refused(&store).await;
    }
}

const WAITING_READS: [&str; 3] = [
    "/projections/accounts?min_position={}",
    "/projections/accounts/x?min_position={}",
    "/queries/accounts-over?min_balance=0&min_position={}",
];

fn waiting_reads(position: u64) -> Vec<String> {
    WAITING_READS
        .iter()
        .map(|uri| uri.replace("{}", &position.to_string()))
        .collect()
}

/// Appends an `account` event no version of the bank can decode.
async fn poison(store: &dyn EventStore) -> u64 {
    let bogus = NewEvent::new("MoneyDeposited", &json!({"bogus": true}));
    store
        .append("account-poison", ExpectedVersion::Any, vec![bogus])
        .await
        .unwrap()
        .position
}

/// The bank on a [`Faulty`] store with `read_wait`, Ada's account opened
/// and the `accounts` projection caught up: the store, the app, Ada's id
/// and the position of her opening.
async fn caught_up_with_ada(read_wait: Duration) -> (Faulty, App, String, u64) {
    let store = Faulty::new();
    let app = bank::app(&store)
        .read_wait(read_wait)
        .build()
        .await
        .unwrap();
    let (ada, last) = open(&app, "Ada", 5).await;
    app.projections()
        .wait_for("accounts", last, Duration::from_secs(30))
        .await
        .unwrap();
    (store, app, ada, last)
}

#[tokio::test]
async fn a_min_position_not_reached_in_time_is_503_with_retry_after() {
    let (store, app, _, _) = caught_up_with_ada(Duration::from_millis(100)).await;
    // The projection is idle and caught up; from now on it cannot read.
    store.hold_history_below(u64::MAX);
    let (_, behind) = open(&app, "Bob", 5).await;
    for uri in waiting_reads(behind) {
        let started = std::time::Instant::now();
        let (status, headers, body) = call(&app, "GET", &uri, None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{uri}");
        assert_eq!(headers["retry-after"], "1");
        assert_eq!(problem_type(&body), "/problems/position-not-reached");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the wait is bounded"
        );
    }
    store.release_history();
}

#[tokio::test]
async fn a_min_position_beyond_the_head_is_400_at_once() {
    let store = MemoryStore::new();
    let app = bank::app(&store)
        .read_wait(Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    let (_, last) = open(&app, "Ada", 5).await;
    for uri in waiting_reads(last + 1) {
        let started = std::time::Instant::now();
        let (status, headers, body) = call(&app, "GET", &uri, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(problem_type(&body), "/problems/min-position-beyond-head");
        assert!(!headers.contains_key("retry-after"));
        assert!(started.elapsed() < Duration::from_secs(30), "not held");
    }
    for uri in waiting_reads(last) {
        let (status, _, body) = call(&app, "GET", &uri, None).await;
        assert_ne!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_projection_answers_waiting_reads_at_once() {
    // Far longer than the test may take: an answer means it did not wait.
    let (store, app, ada, _) = caught_up_with_ada(Duration::from_secs(600)).await;
    store.hold_history_below(u64::MAX);
    let poisoned = poison(&store).await;
    // Reads already waiting when the projection fails are answered then.
    let waiting: Vec<_> = waiting_reads(poisoned)
        .into_iter()
        .map(|uri| {
            let app = app.clone();
            tokio::spawn(async move { call(&app, "GET", &uri, None).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    store.release_history();
    let mut answers = Vec::new();
    for read in waiting {
        answers.push(
            tokio::time::timeout(allframe_tests::server::PATIENCE, read)
                .await
                .expect("answered once the projection failed")
                .unwrap(),
        );
    }
    // And so are reads that come after.
    for uri in waiting_reads(poisoned) {
        answers.push(call(&app, "GET", &uri, None).await);
    }
    for (status, headers, body) in answers {
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["position"], poisoned);
        // With the extension members `projection`, `position` and `reason`;
        // the position depends on what ran before, wherever it shows.
        let at_position = format!("position {poisoned}");
        let position = move || {
            let at_position = at_position.clone();
            insta::dynamic_redaction(move |value, _| {
                let text = value.as_str().unwrap_or_default();
                text.replace(&at_position, "position [position]")
            })
        };
        insta::assert_json_snapshot!("projection_failed", body, {
            ".position" => "[position]",
            ".detail" => position(),
            ".reason" => position(),
        });
        assert!(
            !headers.contains_key("retry-after"),
            "waiting does not help"
        );
    }
    // Plain reads keep serving the last rows, labelled with their position.
    let (status, headers, row) =
        call(&app, "GET", &format!("/projections/accounts/{ada}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(row["balance"], 5);
    assert_eq!(position(&headers), poisoned - 1);
    let (status, _, health) = call(&app, "GET", "/health", None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a failed projection is not an outage"
    );
    assert_eq!(health["status"], "ok");
    assert_eq!(health["head_position"], poisoned);
    assert_eq!(health["projections"][0]["name"], "accounts");
    assert_eq!(health["projections"][0]["state"], "failed");
    assert_eq!(health["projections"][0]["failed_position"], poisoned);
}

#[tokio::test]
async fn queries_answer_validate_and_wait() {
    let store = MemoryStore::new();
    let app = app(&store).await;
    open(&app, "Ada", 500).await;
    open(&app, "Bob", 20).await;
    let (_, last) = open(&app, "Cy", 900).await;

    let uri = format!("/queries/accounts-over?min_balance=100&min_position={last}");
    let (status, headers, answer) = call(&app, "GET", &uri, None).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(position(&headers) >= last);
    let mut owners: Vec<&str> = answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["owner"].as_str().unwrap())
        .collect();
    owners.sort_unstable();
    assert_eq!(owners, ["Ada", "Cy"]);
    let (_, _, one) = call(
        &app,
        "GET",
        "/queries/accounts-over?min_balance=0&limit=1",
        None,
    )
    .await;
    assert_eq!(one["items"].as_array().unwrap().len(), 1);

    let (status, _, body) =
        call(&app, "GET", "/queries/accounts-over?min_balance=lots", None).await;
    assert_eq!(
        (status, problem_type(&body)),
        (
            StatusCode::BAD_REQUEST,
            "/problems/invalid-query-parameters"
        )
    );
    let (status, _, body) = call(&app, "GET", "/queries/accounts-over", None).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "min_balance is required: {body}"
    );
    // Past the largest balance (the schema's int64) is refused too.
    let (status, _, body) = call(
        &app,
        "GET",
        "/queries/accounts-over?min_balance=9223372036854775808",
        None,
    )
    .await;
    assert_eq!(
        (status, problem_type(&body)),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "/problems/validation-failed"
        ),
        "{body}"
    );
    // A misspelt parameter is refused, as on projection lists, rather than
    // ignored (which would answer 50 rows for `limt=1`).
    for uri in [
        "/queries/accounts-over?min_balance=0&limt=1",
        "/queries/accounts-over?limit=1&min_balance=0&min_position=0&cursor=k00",
    ] {
        let (status, _, body) = call(&app, "GET", uri, None).await;
        assert_eq!(
            (status, problem_type(&body)),
            (StatusCode::BAD_REQUEST, "/problems/unknown-parameter"),
            "{uri}: {body}"
        );
        let detail = body["detail"].as_str().unwrap();
        assert!(
            detail.contains("limit") && detail.contains("min_balance"),
            "names the parameters there are: {detail}"
        );
    }
    let (status, _, body) = call(
        &app,
        "GET",
        "/queries/accounts-over?min_balance=1&limit=0",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    insta::assert_json_snapshot!("query_validation_failed", body);
    let (status, _, body) = call(&app, "GET", "/queries/nothing", None).await;
    assert_eq!(
        (status, problem_type(&body)),
        (StatusCode::NOT_FOUND, "/problems/unknown-query")
    );
}

#[tokio::test]
async fn admin_lists_rebuilds_and_restarts() {
    let store = MemoryStore::new();
    let app = app(&store).await;
    let (_, last) = open(&app, "Ada", 5).await;
    let (status, _, _) = call(
        &app,
        "GET",
        &format!("/projections/accounts?min_position={last}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let (status, _, list) = call(&app, "GET", "/admin/projections", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list[0]["name"], "accounts");
    assert_eq!(list[0]["state"], "running");
    assert_eq!(
        (list[0]["checkpoint"].as_u64(), list[0]["head"].as_u64()),
        (Some(last), Some(last))
    );
    assert_eq!(list[0]["lag"], 0);

    let (status, _, started) =
        call(&app, "POST", "/admin/projections/accounts/rebuild", None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        (started["name"].as_str(), started["state"].as_str()),
        (Some("accounts"), Some("rebuilding"))
    );
    // The rebuild finishes in the background and the projection runs again.
    let mut state = Value::Null;
    for _ in 0..100 {
        let (_, _, list) = call(&app, "GET", "/admin/projections", None).await;
        state = list[0]["state"].clone();
        if state == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(state, "running");
    let (_, _, rows) = call(&app, "GET", "/projections/accounts", None).await;
    assert_eq!(
        rows["items"][0]["balance"], 5,
        "the rebuilt rows are complete"
    );

    let (status, _, body) = call(&app, "POST", "/admin/projections/nothing/rebuild", None).await;
    assert_eq!(
        (status, problem_type(&body)),
        (StatusCode::NOT_FOUND, "/problems/unknown-projection")
    );
    let (status, _, restarted) =
        call(&app, "POST", "/admin/projections/accounts/restart", None).await;
    assert_eq!(
        (status, restarted["name"].as_str()),
        (StatusCode::ACCEPTED, Some("accounts"))
    );
    let (status, _, _) = call(&app, "POST", "/admin/projections/nothing/restart", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn reads_over_a_real_socket() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bank.db").display());
    let store = SqliteStore::connect(&url).await.unwrap();
    let app = app(&store).await;
    let (id, written) = open(&app, "Ada", 42).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, app.router()).into_future());

    let path = format!("/projections/accounts/{id}?min_position={written}");
    let response = allframe_tests::http_request(addr, "GET", &path, &[], b"").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert!(
        response
            .header("allframe-position")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= written
    );
    let row: Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(row["balance"], 42);
    let response = allframe_tests::http_request(
        addr,
        "GET",
        "/queries/accounts-over?min_balance=1",
        &[],
        b"",
    )
    .await;
    assert_eq!(response.status, 200);
    assert!(response.header("allframe-position").is_some());
    server.abort();
}
