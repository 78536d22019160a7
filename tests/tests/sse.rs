//! `GET /events/sse` over a real socket, read the way a browser's
//! `EventSource` reads it: history then live, `Last-Event-ID`, filters, bad
//! parameters, keep-alive comments, the shared connection limit, a client
//! that stops reading, and graceful shutdown.

// The bank's handlers register themselves; link them like the service does.
#[allow(unused_extern_crates)]
extern crate bank;

use std::net::SocketAddr;
use std::time::Duration;

use allframe::store::{MemoryStore, SqliteStore};
use allframe::{EventFilter, EventStore, EventStreamConfig, ExpectedVersion, NewEvent};
use allframe_tests::server::{PATIENCE, serve_bank};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// One block of an event stream: its fields, in order.
#[derive(Debug, Default, PartialEq)]
struct Block {
    id: Option<String>,
    event: Option<String>,
    data: Vec<String>,
    comments: Vec<String>,
}

/// A streaming HTTP/1.1 client that decodes the chunked body as it comes.
struct SseClient {
    socket: TcpStream,
    headers: Vec<(String, String)>,
    raw: Vec<u8>,
    body: String,
    ended: bool,
}

impl SseClient {
    async fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Self {
        match Self::try_open(addr, path, headers).await {
            Ok(client) => client,
            Err(status) => panic!("{path}: status {status}"),
        }
    }

    /// Opens a stream, or returns the status that refused it.
    async fn try_open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<Self, u16> {
        let mut socket = TcpStream::connect(addr).await.unwrap();
        let mut request =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        socket.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        let split = loop {
            if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break split;
            }
            let mut chunk = [0; 4096];
            let read = timeout(PATIENCE, socket.read(&mut chunk))
                .await
                .unwrap()
                .unwrap();
            assert!(read > 0, "the server closed before its response head");
            raw.extend_from_slice(&chunk[..read]);
        };
        let head = String::from_utf8(raw[..split].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let status: u16 = lines.next().unwrap()[9..12].parse().unwrap();
        if status != 200 {
            return Err(status);
        }
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let mut client = Self {
            socket,
            headers,
            raw: raw[split + 4..].to_vec(),
            body: String::new(),
            ended: false,
        };
        client.decode();
        Ok(client)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Moves every complete chunk from `raw` to `body`.
    fn decode(&mut self) {
        while let Some(end) = self.raw.windows(2).position(|w| w == b"\r\n") {
            let size = std::str::from_utf8(&self.raw[..end]).unwrap();
            let size = usize::from_str_radix(size.trim(), 16).unwrap();
            if self.raw.len() < end + 2 + size + 2 {
                return;
            }
            let data = &self.raw[end + 2..end + 2 + size];
            self.body.push_str(std::str::from_utf8(data).unwrap());
            self.raw.drain(..end + 2 + size + 2);
            if size == 0 {
                self.ended = true;
                return;
            }
        }
    }

    /// The next block, or `None` when the response has ended.
    async fn next_block(&mut self) -> Option<Block> {
        loop {
            if let Some(end) = self.body.find("\n\n") {
                let text: String = self.body.drain(..end + 2).collect();
                let mut block = Block::default();
                for line in text.lines().filter(|line| !line.is_empty()) {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
                    match field {
                        "" => block.comments.push(value),
                        "id" => block.id = Some(value),
                        "event" => block.event = Some(value),
                        "data" => block.data.push(value),
                        other => panic!("unexpected field {other}"),
                    }
                }
                return Some(block);
            }
            if self.ended {
                return None;
            }
            let mut chunk = [0; 16 * 1024];
            let read = timeout(PATIENCE, self.socket.read(&mut chunk))
                .await
                .expect("data in time")
                .unwrap();
            if read == 0 {
                return None;
            }
            self.raw.extend_from_slice(&chunk[..read]);
            self.decode();
        }
    }

    /// The next event (skipping keep-alive comments), as `(id, data JSON)`.
    async fn next_event(&mut self) -> (u64, Value) {
        loop {
            let block = self.next_block().await.expect("an event, not the end");
            if block.data.is_empty() {
                continue;
            }
            assert_eq!(block.event, None, "events are unnamed");
            assert_eq!(block.data.len(), 1, "the JSON is one line");
            let id = block.id.expect("every event has an id").parse().unwrap();
            return (id, serde_json::from_str(&block.data[0]).unwrap());
        }
    }

    async fn ids(&mut self, count: usize) -> Vec<u64> {
        let mut ids = Vec::new();
        while ids.len() < count {
            let (id, event) = self.next_event().await;
            assert_eq!(event["position"], id, "the id is the position");
            ids.push(id);
        }
        ids
    }
}

async fn append(store: &dyn EventStore, stream: &str, event_type: &str, data: Value) {
    let event = NewEvent::new(event_type, &data);
    store
        .append(stream, ExpectedVersion::Any, vec![event])
        .await
        .unwrap();
}

async fn ticks(store: &dyn EventStore, stream: &str, count: usize) {
    for n in 0..count {
        append(store, stream, "Ticked", json!({ "n": n })).await;
    }
}

async fn history_then_live(store: &dyn EventStore) {
    let server = serve_bank(store, EventStreamConfig::default()).await;
    ticks(store, "tick-1", 3).await;
    let mut client = SseClient::open(server.addr, "/events/sse?after=1", &[]).await;
    assert_eq!(client.header("content-type"), Some("text/event-stream"));
    let stored = store.read_all(1, 10, &EventFilter::all()).await.unwrap();
    for expected in &stored {
        let (id, event) = client.next_event().await;
        assert_eq!(id, expected.position);
        assert_eq!(
            event,
            serde_json::to_value(expected).unwrap(),
            "the wire shape"
        );
    }
    ticks(store, "tick-2", 1).await;
    assert_eq!(client.ids(1).await, [4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_then_live_memory() {
    history_then_live(&MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_then_live_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("events.db").display());
    history_then_live(&SqliteStore::connect(&url).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_event_id_takes_precedence_over_after() {
    let store = MemoryStore::new();
    let server = serve_bank(&store, EventStreamConfig::default()).await;
    ticks(&store, "tick-1", 5).await;
    // What a reconnecting EventSource sends: its original URL, and the id
    // of the last event it received.
    let mut client = SseClient::open(
        server.addr,
        "/events/sse?after=0",
        &[("Last-Event-ID", "3")],
    )
    .await;
    assert_eq!(client.ids(2).await, [4, 5]);
    // Without `after`, it resumes just the same.
    let mut client = SseClient::open(server.addr, "/events/sse", &[("Last-Event-ID", "4")]).await;
    assert_eq!(client.ids(1).await, [5]);
    // Without either, only new events.
    let mut client = SseClient::open(server.addr, "/events/sse", &[]).await;
    ticks(&store, "tick-1", 1).await;
    assert_eq!(client.ids(1).await, [6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_and_bad_parameters() {
    let store = MemoryStore::new();
    let server = serve_bank(&store, EventStreamConfig::default()).await;
    append(&store, "account-1", "Opened", json!({})).await;
    append(&store, "loan-1", "Opened", json!({})).await;
    append(&store, "account-1", "Closed", json!({})).await;
    append(&store, "account-2", "Deposited", json!({})).await;
    let path = "/events/sse?after=0&category=account&type=Opened,Deposited";
    let mut client = SseClient::open(server.addr, path, &[]).await;
    assert_eq!(client.ids(2).await, [1, 4]);
    let mut client = SseClient::open(server.addr, "/events/sse?after=0&stream=loan-1", &[]).await;
    assert_eq!(client.ids(1).await, [2]);

    for (path, headers, code) in [
        ("/events/sse?after=x", &[][..], "invalid-parameter"),
        ("/events/sse?type=", &[][..], "invalid-parameter"),
        ("/events/sse?category=a-b", &[][..], "invalid-parameter"),
        ("/events/sse?from=3", &[][..], "invalid-parameter"),
        (
            "/events/sse",
            &[("last-event-id", "abc")][..],
            "invalid-header",
        ),
    ] {
        let response = allframe_tests::http_request(server.addr, "GET", path, headers, b"").await;
        assert_eq!(response.status, 400, "{path}");
        assert_eq!(
            response.header("content-type"),
            Some("application/problem+json")
        );
        let problem: Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(problem["type"], format!("/problems/{code}"), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_responses_get_keep_alive_comments() {
    let store = MemoryStore::new();
    let config = EventStreamConfig::default().ping_interval(Duration::from_millis(100));
    let server = serve_bank(&store, config).await;
    let mut client = SseClient::open(server.addr, "/events/sse", &[]).await;
    for _ in 0..3 {
        let block = client.next_block().await.expect("a keep-alive");
        assert_eq!(block.comments, ["keep-alive"], "{block:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_and_websocket_share_the_connection_limit() {
    let store = MemoryStore::new();
    let server = serve_bank(&store, EventStreamConfig::default().max_connections(1)).await;
    let client = SseClient::open(server.addr, "/events/sse", &[]).await;
    let response = allframe_tests::http_request(server.addr, "GET", "/events/sse", &[], b"").await;
    assert_eq!(response.status, 503);
    assert_eq!(response.header("retry-after"), Some("5"));
    let url = format!("ws://{}/events/ws", server.addr);
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
        }
        other => panic!("expected a 503, got {:?}", other.map(|_| ())),
    }
    drop(client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_every_response() {
    let store = MemoryStore::new();
    let server = serve_bank(&store, EventStreamConfig::default()).await;
    let mut client = SseClient::open(server.addr, "/events/sse?after=0", &[]).await;
    ticks(&store, "tick-1", 1).await;
    assert_eq!(client.ids(1).await, [1]);
    timeout(PATIENCE, server.app.shutdown())
        .await
        .expect("shutdown completes once every stream has ended");
    assert_eq!(client.next_block().await, None, "the response ended");
    assert!(client.ended, "with the final chunk, not a reset");
    let response = allframe_tests::http_request(server.addr, "GET", "/events/sse", &[], b"").await;
    assert_eq!(response.status, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_gets_its_response_ended_and_resumes() {
    const EVENTS: usize = 200;
    let store = MemoryStore::new();
    let config = EventStreamConfig::default()
        .write_timeout(Duration::from_secs(1))
        .max_connections(2);
    let server = serve_bank(&store, config).await;
    let mut stalled = SseClient::open(server.addr, "/events/sse?after=0", &[]).await;
    // 64 KiB an event: far more than the socket buffers hold.
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
    // Well over the write timeout: the server gives up on the client and
    // frees its slot, so two more clients fit under the limit of 2.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut others = Vec::new();
    for _ in 0..2 {
        let mut other = SseClient::open(server.addr, "/events/sse?after=199", &[]).await;
        assert_eq!(other.ids(1).await, [200]);
        others.push(other);
    }
    drop(others);
    let mut received = Vec::new();
    while let Some(block) = stalled.next_block().await {
        if let Some(id) = block.id {
            received.push(id.parse::<u64>().unwrap());
        }
    }
    let last = received.len() as u64;
    assert_eq!(
        received,
        (1..=last).collect::<Vec<_>>(),
        "a prefix, in order"
    );
    assert!(
        last < EVENTS as u64,
        "the response was cut off ({last} events)"
    );
    let last_id = last.to_string();
    let headers = [("Last-Event-ID", last_id.as_str())];
    // The slots of the clients just dropped come back once the server has
    // noticed they left.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut resumed = loop {
        match SseClient::try_open(server.addr, "/events/sse?after=0", &headers).await {
            Ok(client) => break client,
            Err(503) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("status {status}"),
        }
    };
    let rest = resumed.ids(EVENTS - last as usize).await;
    assert_eq!(rest, (last + 1..=EVENTS as u64).collect::<Vec<_>>());
}
