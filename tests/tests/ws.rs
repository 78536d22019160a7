//! `GET /events/ws` over a real socket with a real WebSocket client
//! (tokio-tungstenite): history then live, resuming after a disconnect,
//! fan-out to 50 clients under 8 concurrent writers on every backend,
//! filters, bad parameters, the connection limit, pings, idle and stalled
//! clients, and graceful shutdown.
//!
//! Time bounds are generous on purpose: the machine is shared and noisy.

// The bank's handlers register themselves; link them like the service does.
#[allow(unused_extern_crates)]
extern crate bank;

use std::net::SocketAddr;
use std::time::Duration;

use allframe::store::{MemoryStore, SqliteStore};
use allframe::{EventFilter, EventStore, EventStreamConfig, ExpectedVersion, NewEvent};
use allframe_tests::faulty::Faulty;
use allframe_tests::server::{PATIENCE, serve_bank};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn connect(addr: SocketAddr, query: &str) -> Client {
    let url = format!("ws://{addr}/events/ws{query}");
    let (client, response) = tokio_tungstenite::connect_async(url)
        .await
        .expect("the upgrade succeeds");
    assert_eq!(response.status(), 101);
    client
}

/// A refused upgrade: its status, `Retry-After` and problem body.
async fn refused(addr: SocketAddr, query: &str) -> (u16, Option<String>, Value) {
    let url = format!("ws://{addr}/events/ws{query}");
    match tokio_tungstenite::connect_async(url).await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json"
            );
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|value| value.to_str().unwrap().to_owned());
            let body = response.body().clone().unwrap_or_default();
            let problem: Value = serde_json::from_slice(&body).expect("a problem body");
            (response.status().as_u16(), retry_after, problem)
        }
        Ok(_) => panic!("{query}: the upgrade should have been refused"),
        Err(error) => panic!("{query}: unexpected error {error}"),
    }
}

/// The next event, skipping pings; panics on anything else.
async fn next_event(client: &mut Client) -> Value {
    // One deadline for the event, however many pings come before it.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let message = tokio::time::timeout_at(deadline, client.next())
            .await
            .expect("an event in time")
            .expect("the connection is open")
            .expect("a frame");
        match message {
            Message::Text(text) => return serde_json::from_str(&text).expect("JSON"),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected an event, got {other:?}"),
        }
    }
}

/// The positions of the next `count` events.
async fn positions(client: &mut Client, count: usize) -> Vec<u64> {
    let mut positions = Vec::with_capacity(count);
    while positions.len() < count {
        positions.push(next_event(client).await["position"].as_u64().unwrap());
    }
    positions
}

/// Reads until the close frame, returning it and the positions before it.
async fn until_close(client: &mut Client) -> (Vec<u64>, CloseFrame) {
    let mut positions = Vec::new();
    loop {
        let message = timeout(PATIENCE, client.next())
            .await
            .expect("a frame in time")
            .expect("a close frame before the end")
            .expect("a frame");
        match message {
            Message::Text(text) => {
                let event: Value = serde_json::from_str(&text).unwrap();
                positions.push(event["position"].as_u64().unwrap());
            }
            Message::Close(Some(frame)) => return (positions, frame),
            Message::Close(None) => panic!("a close frame without a code"),
            _ => {}
        }
    }
}

/// Nothing but pings arrives for a while.
async fn quiet(client: &mut Client, wait: Duration) {
    let deadline = Instant::now() + wait;
    while let Ok(message) = tokio::time::timeout_at(deadline, client.next()).await {
        match message {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected silence, got {other:?}"),
        }
    }
}

async fn append(store: &dyn EventStore, stream: &str, event_type: &str, data: Value) -> u64 {
    let event = NewEvent::new(event_type, &data);
    store
        .append(stream, ExpectedVersion::Any, vec![event])
        .await
        .unwrap()
        .position
}

async fn ticks(store: &dyn EventStore, stream: &str, count: usize) {
    for n in 0..count {
        append(store, stream, "Ticked", json!({ "n": n })).await;
    }
}

fn config() -> EventStreamConfig {
    EventStreamConfig::default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_then_live_as_recorded_event_json() {
    let store = MemoryStore::new();
    let server = serve_bank(&store, config()).await;
    let open = json!({"owner": "Ada", "email": "ada@example.com", "initial_deposit": 100});
    let response = allframe_tests::http_request(
        server.addr,
        "POST",
        "/commands/open-account",
        &[("content-type", "application/json")],
        open.to_string().as_bytes(),
    )
    .await;
    assert_eq!(response.status, 201);
    let account: Value = serde_json::from_slice(&response.body).unwrap();
    ticks(&store, "tick-1", 2).await;

    let mut client = connect(server.addr, "?after=1").await;
    let stored = store.read_all(0, 100, &EventFilter::all()).await.unwrap();
    for expected in &stored[1..] {
        let event = next_event(&mut client).await;
        assert_eq!(
            event,
            serde_json::to_value(expected).unwrap(),
            "the wire shape"
        );
    }
    let deposit = json!({"account_id": account["aggregate_id"], "amount": 5});
    let response = allframe_tests::http_request(
        server.addr,
        "POST",
        "/commands/deposit",
        &[("content-type", "application/json")],
        deposit.to_string().as_bytes(),
    )
    .await;
    assert_eq!(response.status, 200);
    let live = next_event(&mut client).await;
    assert_eq!(
        (live["position"].as_u64(), live["type"].as_str()),
        (Some(5), Some("MoneyDeposited"))
    );
    assert_eq!(live["data"], json!({"amount": 5}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_after_only_new_events_arrive() {
    let store = MemoryStore::new();
    let server = serve_bank(&store, config()).await;
    ticks(&store, "tick-1", 3).await;
    let mut client = connect(server.addr, "").await;
    ticks(&store, "tick-1", 2).await;
    assert_eq!(positions(&mut client, 2).await, [4, 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_client_far_ahead_does_not_silence_later_clients() {
    let store = MemoryStore::new();
    let server = serve_bank(&store, config()).await;
    ticks(&store, "tick-1", 3).await;
    // The first connection of the app asks for a future position (a stale
    // `Last-Event-ID` from another database, say).
    let mut ahead = connect(server.addr, "?after=999999999").await;
    let mut live = connect(server.addr, "").await;
    ticks(&store, "tick-1", 1).await;
    assert_eq!(positions(&mut live, 1).await, [4]);
    quiet(&mut ahead, Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_catching_up_does_not_delay_live_clients() {
    let store = Faulty::new();
    ticks(&store, "tick-1", 2_000).await;
    let server = serve_bank(&store, config()).await;
    // Reads of the log from below 2,000 wait: the first client's catch-up
    // over "a large log" is still running while the live client is served.
    store.hold_history_below(2_000);
    let mut history = connect(server.addr, "?after=0").await;
    let mut live = connect(server.addr, "").await;
    ticks(&store, "tick-1", 1).await;
    assert_eq!(positions(&mut live, 1).await, [2_001]);
    quiet(&mut history, Duration::from_millis(200)).await;
    store.release_history();
    assert_eq!(
        positions(&mut history, 2_001).await,
        (1..=2_001).collect::<Vec<u64>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_close_is_echoed_before_the_socket_closes() {
    let store = MemoryStore::new();
    let server = serve_bank(&store, config()).await;
    let mut client = connect(server.addr, "").await;
    let goodbye = CloseFrame {
        code: tungstenite::protocol::frame::coding::CloseCode::Normal,
        reason: "done".into(),
    };
    client.send(Message::Close(Some(goodbye))).await.unwrap();
    // A server that drops the socket without answering makes this an
    // error (ResetWithoutClosingHandshake): what browsers call unclean.
    let echo = timeout(PATIENCE, client.next())
        .await
        .expect("an answer in time")
        .expect("the echo before the end")
        .expect("a clean close");
    match echo {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 1000),
        other => panic!("expected the close echo, got {other:?}"),
    }
    assert!(
        timeout(PATIENCE, client.next()).await.unwrap().is_none(),
        "then the connection ends"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_limit_is_closed_with_1009() {
    let store = MemoryStore::new();
    let server = serve_bank(&store, config()).await;
    let mut client = connect(server.addr, "").await;
    client
        .send(Message::text("x".repeat(100 * 1024)))
        .await
        .unwrap();
    let (_, frame) = until_close(&mut client).await;
    assert_eq!(u16::from(frame.code), 1009);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_after_a_disconnect_delivers_exactly_the_missed_events() {
    let store = MemoryStore::new();
    let server = serve_bank(&store, config()).await;
    let mut client = connect(server.addr, "?after=0").await;
    ticks(&store, "tick-1", 5).await;
    let seen = positions(&mut client, 3).await;
    assert_eq!(seen, [1, 2, 3]);
    client.close(None).await.unwrap();
    drop(client);
    ticks(&store, "tick-2", 4).await;
    let mut client = connect(server.addr, "?after=3").await;
    assert_eq!(positions(&mut client, 6).await, [4, 5, 6, 7, 8, 9]);
    quiet(&mut client, Duration::from_millis(300)).await;
    ticks(&store, "tick-1", 1).await;
    assert_eq!(positions(&mut client, 1).await, [10]);
}

/// 50 clients, half connected before the writers start and half while
/// they write (all from `after=0`), each get every event once, in order.
async fn fan_out(store: &dyn EventStore, config: EventStreamConfig) {
    const WRITERS: usize = 8;
    const PER_WRITER: usize = 40;
    const TOTAL: usize = WRITERS * PER_WRITER;
    let server = serve_bank(store, config).await;
    let start = store.head_position().await.unwrap();
    let query = format!("?after={start}");
    let mut readers = Vec::new();
    let read = |mut client: Client| {
        tokio::spawn(async move {
            let mut events = Vec::with_capacity(TOTAL);
            while events.len() < TOTAL {
                let event = next_event(&mut client).await;
                let at = (
                    event["position"].as_u64().unwrap(),
                    event["version"].as_u64(),
                );
                events.push((at, event["stream_id"].as_str().unwrap().to_owned()));
            }
            events
        })
    };
    for _ in 0..25 {
        readers.push(read(connect(server.addr, &query).await));
    }
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let store = store.shared();
            tokio::spawn(
                async move { ticks(&*store, &format!("writer-{writer}"), PER_WRITER).await },
            )
        })
        .collect();
    for _ in 0..25 {
        readers.push(read(connect(server.addr, &query).await));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let stored = store
        .read_all(start, TOTAL + 1, &EventFilter::all())
        .await
        .unwrap();
    assert_eq!(stored.len(), TOTAL);
    let expected: Vec<_> = stored
        .iter()
        .map(|event| {
            (
                (event.position, Some(event.version)),
                event.stream_id.clone(),
            )
        })
        .collect();
    for reader in readers {
        let received = timeout(PATIENCE * 2, reader)
            .await
            .expect("in time")
            .unwrap();
        assert_eq!(received, expected, "every event, once, in order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_eight_writers_memory() {
    fan_out(&MemoryStore::new(), config()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_eight_writers_memory_with_a_tiny_buffer() {
    // A buffer of 2 makes nearly every connection fall behind the shared
    // feed and catch up from the store.
    fan_out(&MemoryStore::new(), config().buffer(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_eight_writers_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("events.db").display());
    let store = SqliteStore::connect(&url).await.unwrap();
    ticks(&store, "before-1", 3).await;
    fan_out(&store, config().buffer(16)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_eight_writers_postgres() {
    let Some(store) = allframe_tests::postgres_store().await else {
        return;
    };
    fan_out(&store, config()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_by_stream_category_and_type() {
    let store = MemoryStore::new();
    let server = serve_bank(&store, config()).await;
    append(&store, "account-1", "Opened", json!({})).await; // 1
    append(&store, "account-2", "Opened", json!({})).await; // 2
    append(&store, "account-1", "Deposited", json!({})).await; // 3
    append(&store, "loan-1", "Opened", json!({})).await; // 4
    append(&store, "account-2", "Closed", json!({})).await; // 5
    append(&store, "account-1", "Closed", json!({})).await; // 6
    let cases: [(&str, &[u64]); 6] = [
        ("?after=0&stream=account-1", &[1, 3, 6]),
        ("?after=0&category=account", &[1, 2, 3, 5, 6]),
        ("?after=0&category=loan", &[4]),
        ("?after=0&type=Opened&type=Closed", &[1, 2, 4, 5, 6]),
        ("?after=0&type=Deposited,Closed", &[3, 5, 6]),
        (
            "?after=0&category=account&type=Closed,Opened&type=Nope",
            &[1, 2, 5, 6],
        ),
    ];
    let mut clients = Vec::new();
    for (query, expected) in cases {
        let mut client = connect(server.addr, query).await;
        assert_eq!(
            positions(&mut client, expected.len()).await,
            expected,
            "{query}"
        );
        clients.push((query, client));
    }
    // Live events go through the same filters.
    append(&store, "loan-1", "Closed", json!({})).await; // 7
    append(&store, "account-1", "Opened", json!({})).await; // 8
    let live: [&[u64]; 6] = [&[8], &[8], &[7], &[7, 8], &[7], &[8]];
    for ((query, mut client), expected) in clients.into_iter().zip(live) {
        assert_eq!(
            positions(&mut client, expected.len()).await,
            expected,
            "{query}"
        );
        quiet(&mut client, Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_are_400_problems_before_the_upgrade() {
    let store = MemoryStore::new();
    let server = serve_bank(&store, config()).await;
    let cases = [
        ("?after=abc", "`after`"),
        ("?after=-1", "`after`"),
        ("?after=1&after=2", "only once"),
        ("?stream=", "`stream`"),
        ("?category=account-1", "`category`"),
        ("?type=Opened,,Closed", "`type`"),
        ("?type=a%20b", "`type`"),
        ("?streams=account-1", "unknown parameter `streams`"),
    ];
    for (query, mentions) in cases {
        let (status, _, problem) = refused(server.addr, query).await;
        assert_eq!(status, 400, "{query}: {problem}");
        assert_eq!(problem["type"], "/problems/invalid-parameter", "{query}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(mentions), "{query}: {detail}");
    }
    // The parameters are checked even before it is known to be a
    // WebSocket request; a plain GET is a problem too.
    let plain =
        allframe_tests::http_request(server.addr, "GET", "/events/ws?after=x", &[], b"").await;
    assert_eq!(plain.status, 400);
    let plain = allframe_tests::http_request(server.addr, "GET", "/events/ws", &[], b"").await;
    assert_eq!(
        plain.header("content-type"),
        Some("application/problem+json")
    );
    let problem: Value = serde_json::from_slice(&plain.body).unwrap();
    assert_eq!(problem["type"], "/problems/not-a-websocket-request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_refuses_with_503_and_retry_after() {
    let store = MemoryStore::new();
    let server = serve_bank(&store, config().max_connections(2)).await;
    let first = connect(server.addr, "").await;
    let _second = connect(server.addr, "").await;
    let (status, retry_after, problem) = refused(server.addr, "").await;
    assert_eq!(status, 503);
    assert_eq!(problem["type"], "/problems/too-many-connections");
    assert_eq!(retry_after.as_deref(), Some("5"));
    drop(first);
    // The slot comes back once the server has noticed the client left.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let url = format!("ws://{}/events/ws", server.addr);
        match tokio_tungstenite::connect_async(url).await {
            Ok(_) => break,
            Err(tungstenite::Error::Http(response)) if response.status() == 503 => {
                assert!(Instant::now() < deadline, "the slot never came back");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("{error}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_with_1001_and_refuses_new_connections() {
    let store = MemoryStore::new();
    let server = serve_bank(&store, config()).await;
    let mut clients = vec![
        connect(server.addr, "?after=0").await,
        connect(server.addr, "").await,
    ];
    ticks(&store, "tick-1", 1).await;
    assert_eq!(positions(&mut clients[0], 1).await, [1]);
    timeout(PATIENCE, server.app.shutdown())
        .await
        .expect("shutdown completes once every stream has closed");
    for mut client in clients {
        let (_, frame) = until_close(&mut client).await;
        assert_eq!(u16::from(frame.code), 1001);
        assert_eq!(frame.reason.as_str(), "the server is shutting down");
    }
    let (status, retry_after, problem) = refused(server.addr, "").await;
    assert_eq!((status, retry_after.is_some()), (503, true));
    assert_eq!(problem["type"], "/problems/shutting-down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_pings_and_a_client_that_answers_stays() {
    let store = MemoryStore::new();
    let config = config()
        .ping_interval(Duration::from_millis(100))
        .idle_timeout(Duration::from_millis(800));
    let server = serve_bank(&store, config).await;
    let mut client = connect(server.addr, "").await;
    let mut pings = 0;
    // tokio-tungstenite answers every ping while it is read, so the client
    // is never idle: three idle timeouts pass without a close.
    let deadline = Instant::now() + Duration::from_millis(2400);
    while let Ok(message) = tokio::time::timeout_at(deadline, client.next()).await {
        match message {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("expected pings only, got {other:?}"),
        }
    }
    assert!(pings >= 3, "{pings} pings");
    ticks(&store, "tick-1", 1).await;
    assert_eq!(positions(&mut client, 1).await, [1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_closed_as_idle_with_1008() {
    let store = MemoryStore::new();
    // No pings within the test, so nothing makes the client answer.
    let config = config()
        .ping_interval(Duration::from_secs(3600))
        .idle_timeout(Duration::from_millis(500));
    let server = serve_bank(&store, config).await;
    let mut client = connect(server.addr, "").await;
    let (received, frame) = until_close(&mut client).await;
    assert!(received.is_empty());
    assert_eq!(u16::from(frame.code), 1008);
    assert!(frame.reason.starts_with("idle"), "{}", frame.reason);
    // A client that speaks is not idle.
    let mut client = connect(server.addr, "").await;
    for _ in 0..6 {
        client.send(Message::Pong(Vec::new().into())).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ticks(&store, "tick-1", 1).await;
    assert_eq!(positions(&mut client, 1).await, [1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_is_closed_with_1008_without_delaying_the_others_and_resumes() {
    const EVENTS: usize = 200;
    let store = MemoryStore::new();
    let config = config()
        .write_timeout(Duration::from_secs(1))
        .idle_timeout(Duration::from_secs(60))
        .ping_interval(Duration::from_secs(3600));
    let server = serve_bank(&store, config).await;
    let mut stalled = connect(server.addr, "?after=0").await;
    let healthy: Vec<_> = [
        connect(server.addr, "?after=0").await,
        connect(server.addr, "?after=0").await,
    ]
    .into_iter()
    .map(|mut client| {
        tokio::spawn(async move {
            let received = positions(&mut client, EVENTS).await;
            (received, Instant::now(), client)
        })
    })
    .collect();
    // 64 KiB an event: 12.5 MiB, far more than the socket buffers hold,
    // so the stalled client's connection fills up and blocks.
    let padding = "x".repeat(64 * 1024);
    for n in 0..EVENTS {
        append(
            &store,
            "big-1",
            "Padded",
            json!({ "n": n, "padding": padding }),
        )
        .await;
    }
    let written = Instant::now();
    for reader in healthy {
        let (received, done, _client) = timeout(PATIENCE, reader).await.expect("in time").unwrap();
        assert_eq!(received, (1..=EVENTS as u64).collect::<Vec<_>>());
        assert!(
            done.duration_since(written) < Duration::from_secs(20),
            "a stalled client delayed the others by {:?}",
            done.duration_since(written)
        );
    }
    // Give the server well over its write timeout to give up on it.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (received, frame) = until_close(&mut stalled).await;
    assert_eq!(u16::from(frame.code), 1008);
    assert!(frame.reason.starts_with("too slow"), "{}", frame.reason);
    let last = received.len() as u64;
    assert_eq!(
        received,
        (1..=last).collect::<Vec<_>>(),
        "a prefix, in order"
    );
    assert!(
        last < EVENTS as u64,
        "the client was cut off ({last} events)"
    );
    let mut resumed = connect(server.addr, &format!("?after={last}")).await;
    let rest = positions(&mut resumed, EVENTS - last as usize).await;
    assert_eq!(rest, (last + 1..=EVENTS as u64).collect::<Vec<_>>());
}
