//! `GET /metrics` on the bank over a real socket, parsed with a Prometheus
//! text parser (`prometheus-parse`): commands by name and outcome with
//! their latency, idempotent replays, group-commit batches, the head, the
//! projection's and the saga's checkpoints, sagas by status, live streams
//! open and closed, snapshot loads and writes — each moving with the
//! traffic that should move it. With an authenticator the route is
//! admin-only.
//!
//! The recorder is the process's, so this file holds one test per concern,
//! compares scrapes before and after, and runs its tests one at a time
//! (`cargo test` runs a file's tests on threads of one process; each takes
//! [`ONE_AT_A_TIME`] first) so no test's traffic lands in another's
//! difference.

use std::net::SocketAddr;
use std::time::Duration;

use allframe::{EventStore, EventStreamConfig};
use allframe_tests::http_request;
use allframe_tests::server::{OnSqlite, serve_bank, serve_on_sqlite};
use allframe_tests::tokens::{SECRET, bearer, token};
use futures_util::{SinkExt, StreamExt};
use prometheus_parse::{Sample, Scrape, Value};
use serde_json::{Value as Json, json};
use tokio_tungstenite::tungstenite;

/// One scrape, parsed.
struct Metrics(Scrape);

impl Metrics {
    /// The samples named `name` whose labels include every one of `labels`.
    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.0.samples.iter().filter(move |sample| {
            sample.metric == name
                && labels
                    .iter()
                    .all(|(label, value)| sample.labels.get(label) == Some(value))
        })
    }

    /// The value of the counter or gauge `name` with `labels`; 0 when the
    /// series is not there yet.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let values: Vec<f64> = self
            .matching(name, labels)
            .map(|sample| match sample.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
                ref other => panic!("{name} is not a single number: {other:?}"),
            })
            .collect();
        assert!(values.len() <= 1, "{name} {labels:?} names one series");
        values.first().copied().unwrap_or(0.0)
    }

    /// How many observations the histogram `name` with `labels` holds (its
    /// `+Inf` bucket); 0 when it is not there yet.
    fn observations(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels)
            .map(|sample| match &sample.value {
                Value::Histogram(buckets) => buckets
                    .iter()
                    .find(|bucket| bucket.less_than.is_infinite())
                    .map_or(0.0, |bucket| bucket.count),
                other => panic!("{name} is not a histogram: {other:?}"),
            })
            .sum()
    }

    /// Whether `name` has a `# HELP` line.
    fn described(&self, name: &str) -> bool {
        self.0.docs.contains_key(name)
    }
}

/// Scrapes `addr` as `who` and parses the answer.
async fn scrape(addr: SocketAddr, who: Option<&str>) -> Metrics {
    let mut headers = Vec::new();
    if let Some(who) = who {
        headers.push(("authorization", who));
    }
    let response = http_request(addr, "GET", "/metrics", &headers, b"").await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = String::from_utf8(response.body).expect("the text format is UTF-8");
    let lines = text.lines().map(|line| Ok(line.to_owned()));
    Metrics(Scrape::parse(lines).expect("a well-formed exposition"))
}

async fn post(addr: SocketAddr, command: &str, body: Json, key: Option<&str>) -> (u16, Json) {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(key) = key {
        headers.push(("idempotency-key", key));
    }
    let path = format!("/commands/{command}");
    let response = http_request(addr, "POST", &path, &headers, body.to_string().as_bytes()).await;
    let body = serde_json::from_slice(&response.body).unwrap_or(Json::Null);
    (response.status, body)
}

async fn open(addr: SocketAddr, owner: &str) -> String {
    let body = json!({"owner": owner, "email": format!("{owner}@example.com")});
    let (status, answer) = post(addr, "open-account", body, None).await;
    assert_eq!(status, 201, "{answer}");
    answer["aggregate_id"].as_str().unwrap().to_owned()
}

/// Scrapes until `done` holds (a value read from the app's parts a moment
/// after the traffic that moves it), for at most 30 s.
async fn scrape_until(addr: SocketAddr, done: impl Fn(&Metrics) -> bool) -> Metrics {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = scrape(addr, None).await;
        if done(&metrics) {
            return metrics;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the metrics did not get there in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Held by each test for its whole run: the counters are the process's.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn bank() -> OnSqlite {
    serve_on_sqlite(|store| bank::app(store)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_numbers_move_with_the_traffic() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let bank = bank().await;
    let addr = bank.server.addr;
    let before = scrape(addr, None).await;

    // Commands: two opened, three deposits, one replayed, one refused.
    let ada = open(addr, "ada").await;
    let bob = open(addr, "bob").await;
    for amount in [10, 20, 30] {
        let body = json!({"account_id": ada, "amount": amount});
        assert_eq!(post(addr, "deposit", body, None).await.0, 200);
    }
    let keyed = json!({"account_id": ada, "amount": 5});
    assert_eq!(
        post(addr, "deposit", keyed.clone(), Some("m-1")).await.0,
        200
    );
    assert_eq!(post(addr, "deposit", keyed, Some("m-1")).await.0, 200);
    let overdrawn = json!({"account_id": bob, "amount": 1});
    let (status, problem) = post(addr, "withdraw", overdrawn, None).await;
    assert_eq!(status, 422);
    let refusal = problem["type"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap();

    // A transfer: a saga and its three commands.
    let transfer = json!({"from_account_id": ada, "to_account_id": bob, "amount": 15});
    let (status, started) = post(addr, "transfer-money", transfer, None).await;
    assert_eq!(status, 202, "{started}");

    let head = bank.store.head_position().await.unwrap();
    let after = scrape_until(addr, |metrics| {
        metrics.value(
            "allframe_sagas",
            &[("saga", "transfer-money"), ("status", "completed")],
        ) >= 1.0
            && metrics.value(
                "allframe_projection_checkpoint",
                &[("projection", "accounts")],
            ) >= head as f64
    })
    .await;

    for name in [
        "allframe_commands_total",
        "allframe_command_duration_seconds",
        "allframe_idempotent_replays_total",
        "allframe_append_batch_size",
        "allframe_head_position",
        "allframe_projection_checkpoint",
        "allframe_sagas",
        "allframe_live_streams",
    ] {
        assert!(after.described(name), "{name} has its # HELP line");
    }
    let moved = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    let commands = "allframe_commands_total";
    assert_eq!(
        moved(commands, &[("command", "open-account"), ("outcome", "ok")]),
        2.0
    );
    // Three plain deposits, the keyed one, and (as the saga's credit) one.
    let deposits = moved(commands, &[("command", "deposit"), ("outcome", "ok")]);
    assert!(deposits >= 5.0, "{deposits} deposits");
    assert_eq!(
        moved(commands, &[("command", "withdraw"), ("outcome", refusal)]),
        1.0,
        "the refusal is counted by its code"
    );
    assert_eq!(
        moved(
            "allframe_idempotent_replays_total",
            &[("command", "deposit")]
        ),
        1.0
    );
    let latency = |metrics: &Metrics| {
        metrics.observations(
            "allframe_command_duration_seconds",
            &[("command", "deposit")],
        )
    };
    assert_eq!(
        latency(&after) - latency(&before),
        deposits,
        "one latency observation per deposit counted"
    );
    let batches = |metrics: &Metrics| metrics.observations("allframe_append_batch_size", &[]);
    assert!(
        batches(&after) > batches(&before),
        "the SQLite appends went through group commit"
    );
    assert!(after.observations("allframe_append_duration_seconds", &[]) >= batches(&after));

    // Read when scraped: the head, the projection, the saga.
    let now_head = bank.store.head_position().await.unwrap() as f64;
    let gauge_head = after.value("allframe_head_position", &[]);
    assert!(gauge_head >= head as f64 && gauge_head <= now_head);
    let lag = after.value(
        "allframe_projection_lag_events",
        &[("projection", "accounts")],
    );
    assert_eq!(
        lag,
        gauge_head
            - after.value(
                "allframe_projection_checkpoint",
                &[("projection", "accounts")]
            )
    );
    assert!(after.value("allframe_saga_checkpoint", &[("saga", "transfer-money")]) > 0.0);
    assert!(after.described("allframe_saga_lag_events"));

    // Live streams: one open, then closed by its client.
    let (mut client, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/events/ws?after=0"))
            .await
            .unwrap();
    client.next().await.unwrap().unwrap();
    let open_streams = scrape(addr, None).await.value("allframe_live_streams", &[]);
    assert!(open_streams >= 1.0);
    let closed = |metrics: &Metrics| {
        metrics.value(
            "allframe_live_streams_closed_total",
            &[("kind", "ws"), ("reason", "client-closed")],
        )
    };
    let closed_before = closed(&after);
    client
        .send(tungstenite::Message::Close(None))
        .await
        .unwrap();
    while client.next().await.is_some() {}
    let gone = scrape_until(addr, |metrics| closed(metrics) > closed_before).await;
    assert_eq!(gone.value("allframe_live_streams", &[]), open_streams - 1.0);

    bank.server.app.close().await;
}

/// Snapshots are written every 100 events of an account; an app with a
/// cold cache loads from one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_loads_and_writes_are_counted() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let bank = bank().await;
    let addr = bank.server.addr;
    let ada = open(addr, "ada").await;
    for _ in 0..100 {
        let body = json!({"account_id": ada, "amount": 1});
        assert_eq!(post(addr, "deposit", body, None).await.0, 200);
    }
    let written = scrape_until(addr, |metrics| {
        metrics.value("allframe_snapshot_writes_total", &[("result", "written")]) >= 1.0
    })
    .await;
    assert_eq!(
        written.value("allframe_snapshot_writes_total", &[("result", "failed")]),
        0.0
    );
    // Stops serving, not the store the second app opens.
    bank.server.app.shutdown().await;

    // A second app over the same file: its first load of the account
    // starts from the snapshot.
    let server = serve_bank(&bank.store, EventStreamConfig::default()).await;
    let body = json!({"account_id": ada, "amount": 1});
    assert_eq!(post(server.addr, "deposit", body, None).await.0, 200);
    let metrics = scrape(server.addr, None).await;
    assert_eq!(
        metrics.value("allframe_snapshot_loads_total", &[("result", "hit")]),
        1.0
    );
    let stats = server.app.dispatcher().snapshot_stats();
    assert_eq!(
        metrics.value("allframe_snapshot_loads_total", &[("result", "miss")]),
        stats.missing as f64
    );
    server.app.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_authenticator_only_admins_scrape() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let secured =
        serve_on_sqlite(|store| bank::rules::secured(bank::app(store), store, SECRET)).await;
    let server = secured.server;
    let addr = server.addr;

    let anonymous = http_request(addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(anonymous.status, 401);
    assert!(anonymous.header("www-authenticate").is_some());
    let ada = bearer(&token("ada", &[]));
    let customer = http_request(addr, "GET", "/metrics", &[("authorization", &ada)], b"").await;
    assert_eq!(customer.status, 403);
    assert_eq!(
        customer.header("content-type"),
        Some("application/problem+json")
    );
    let root = bearer(&token("root", &["admin"]));
    let metrics = scrape(addr, Some(&root)).await;
    assert!(metrics.described("allframe_head_position"));
    server.app.close().await;
}
