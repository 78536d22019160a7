//! `deposit` over HTTP on loopback: the bank service (with and without its
//! `accounts` projection running) against a hand-written
//! axum handler doing the same work (decode, check, load the account's
//! stream, append one event with the loaded version as expected version,
//! answer with the recorded events and an ETag) on the same kind of store.
//!
//! Each side gets its own SQLite file with the same accounts. A load
//! generator on its own runtime keeps `ALLFRAME_BENCH_CONNECTIONS` (16)
//! keep-alive HTTP/1.1 connections busy for `ALLFRAME_BENCH_SECONDS` (3)
//! per round; rounds alternate between the two sides
//! (`ALLFRAME_BENCH_ROUNDS`, 5 each) and the medians are reported.
//!
//! `cargo bench -p allframe-tests --bench deposit`

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use allframe::store::SqliteStore;
use allframe::{Aggregate, EventStore, ExpectedVersion, NewEvent, RecordedEvent};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bank::domain::{Account, AccountEvent};
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ACCOUNTS: usize = 1000;

fn env_number(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

#[derive(Deserialize)]
struct Deposit {
    account_id: String,
    amount: u64,
}

/// The hand-written handler: what a careful author writes without a
/// framework.
async fn deposit(State(store): State<Arc<dyn EventStore>>, body: axum::body::Bytes) -> Response {
    let Ok(deposit) = serde_json::from_slice::<Deposit>(&body) else {
        return (StatusCode::BAD_REQUEST, "malformed").into_response();
    };
    if !(1..=1_000_000_000).contains(&deposit.amount) {
        return (StatusCode::UNPROCESSABLE_ENTITY, "amount").into_response();
    }
    let stream_id = format!("account-{}", deposit.account_id);
    let Ok(history) = store.read_stream(&stream_id, 1, usize::MAX).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    if history.is_empty() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let mut account = Account::default();
    for recorded in &history {
        let Ok(event) = recorded.decode::<AccountEvent>() else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        account.apply(&event);
    }
    if !account.open {
        return (StatusCode::UNPROCESSABLE_ENTITY, "closed").into_response();
    }
    let event = AccountEvent::MoneyDeposited {
        amount: deposit.amount,
    };
    let new = NewEvent::from_event(&event).expect("serializes");
    let version = history.len() as u64;
    match store
        .append(&stream_id, ExpectedVersion::Exact(version), vec![new])
        .await
    {
        Ok(appended) => {
            let events: &[RecordedEvent] = &appended.events;
            let mut headers = HeaderMap::new();
            let etag = format!("\"{}\"", appended.version);
            headers.insert(header::ETAG, HeaderValue::from_str(&etag).unwrap());
            let body = json!({
                "stream_id": stream_id,
                "aggregate_id": deposit.account_id,
                "version": appended.version,
                "position": appended.position,
                "events": events,
            });
            (headers, Json(body)).into_response()
        }
        Err(_) => StatusCode::CONFLICT.into_response(),
    }
}

async fn open_accounts(store: &dyn EventStore) -> Vec<String> {
    let mut ids = Vec::with_capacity(ACCOUNTS);
    for i in 0..ACCOUNTS {
        let id = format!("bench{i:05}");
        let opened = AccountEvent::AccountOpened {
            owner: "Ada".into(),
            email: "ada@example.com".into(),
            currency: "EUR".into(),
        };
        store
            .append(
                &format!("account-{id}"),
                ExpectedVersion::NoStream,
                vec![NewEvent::from_event(&opened).unwrap()],
            )
            .await
            .unwrap();
        ids.push(id);
    }
    ids
}

async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

struct Round {
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Keeps `connections` keep-alive connections busy posting deposits for
/// `seconds`; every response must be a 200.
async fn load(
    addr: SocketAddr,
    path: &str,
    ids: &[String],
    connections: usize,
    seconds: f64,
) -> Round {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for c in 0..connections {
        let ids: Vec<String> = ids.iter().skip(c).step_by(connections).cloned().collect();
        let path = path.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let mut latencies = Vec::new();
            let mut buffer = vec![0u8; 64 * 1024];
            let mut i = 0;
            while Instant::now() < deadline {
                let body = format!(r#"{{"account_id":"{}","amount":1}}"#, ids[i % ids.len()]);
                i += 1;
                let request = format!(
                    "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let started = Instant::now();
                stream.write_all(request.as_bytes()).await.unwrap();
                read_response(&mut stream, &mut buffer).await;
                latencies.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            latencies
        }));
    }
    let started = Instant::now();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Round {
        requests_per_second: latencies.len() as f64 / elapsed,
        p50_ms: at(0.50),
        p99_ms: at(0.99),
    }
}

/// Reads one response with a `Content-Length` body, which must be a 200.
async fn read_response(stream: &mut tokio::net::TcpStream, buffer: &mut [u8]) {
    let mut filled = 0;
    loop {
        let read = stream.read(&mut buffer[filled..]).await.unwrap();
        assert!(read > 0, "the server closed the connection");
        filled += read;
        let Some(end) = buffer[..filled].windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = std::str::from_utf8(&buffer[..end])
            .unwrap()
            .to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "not a 200: {head}");
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .map(|value| value.trim().parse().unwrap())
            .expect("a content-length");
        while filled < end + 4 + length {
            let read = stream.read(&mut buffer[filled..]).await.unwrap();
            assert!(read > 0, "the server closed the connection");
            filled += read;
        }
        return;
    }
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// One server under load: its name, address and accounts.
struct Side {
    name: &'static str,
    addr: SocketAddr,
    ids: Vec<String>,
}

fn main() {
    let seconds = env_number("ALLFRAME_BENCH_SECONDS", 3.0);
    let rounds = env_number("ALLFRAME_BENCH_ROUNDS", 5.0) as usize;
    let connections = env_number("ALLFRAME_BENCH_CONNECTIONS", 16.0) as usize;
    let dir = tempfile::tempdir().unwrap();
    // The servers get their own runtime, so the load generator's work is
    // not scheduled on the same workers.
    let servers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sides: Vec<Side> = servers.block_on(async {
        let url = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
        // The bank as `cargo run -p bank` serves it, with its `accounts`
        // projection writing to the same database; and without it, which
        // is the framework's own cost against the hand-written handler.
        let served_store = SqliteStore::connect(&url("served.db")).await.unwrap();
        let bank_store = SqliteStore::connect(&url("bank.db")).await.unwrap();
        let plain_store = SqliteStore::connect(&url("plain.db")).await.unwrap();
        let served_ids = open_accounts(&served_store).await;
        let bank_ids = open_accounts(&bank_store).await;
        let plain_ids = open_accounts(&plain_store).await;
        let served = bank::app(&served_store).build().await.unwrap();
        let bank = bank::app(&bank_store)
            .projections(allframe::Projections::builder(&bank_store).projections(vec![]))
            .build()
            .await
            .unwrap();
        let plain: Arc<dyn EventStore> = plain_store.shared();
        let handwritten = axum::Router::new()
            .route("/commands/deposit", axum::routing::post(deposit))
            .with_state(plain);
        // The apps (and with them the projection) live as long as the
        // runtime; leaking them keeps this simple.
        let served_router = Box::leak(Box::new(served)).router();
        let bank_router = Box::leak(Box::new(bank)).router();
        vec![
            Side {
                name: "bank",
                addr: serve(bank_router).await,
                ids: bank_ids,
            },
            Side {
                name: "hand-written",
                addr: serve(handwritten).await,
                ids: plain_ids,
            },
            Side {
                name: "bank+accounts",
                addr: serve(served_router).await,
                ids: served_ids,
            },
        ]
    });
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "deposit over HTTP, {connections} connections, {seconds} s rounds, {rounds} rounds each, SQLite"
    );
    let mut results: Vec<Vec<Round>> = sides.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (side, results) in sides.iter().zip(&mut results) {
            let result = client.block_on(load(
                side.addr,
                "/commands/deposit",
                &side.ids,
                connections,
                seconds,
            ));
            println!(
                "  round {round} {:<14} {:>8.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms",
                side.name, result.requests_per_second, result.p50_ms, result.p99_ms
            );
            results.push(result);
        }
    }
    let baseline = &results[1];
    for (side, results) in sides.iter().zip(&results) {
        let metric = |f: fn(&Round) -> f64| median(results.iter().map(f).collect());
        println!(
            "median {:<14} {:>8.0} req/s  p50 {:.2} ms  p99 {:.2} ms",
            side.name,
            metric(|r| r.requests_per_second),
            metric(|r| r.p50_ms),
            metric(|r| r.p99_ms)
        );
    }
    // Rounds run back to back drift with the machine's load and the
    // streams' growth; neighbouring rounds saw the same conditions, so the
    // median of the per-round ratios is the steadier figure.
    for (side, results) in sides
        .iter()
        .zip(&results)
        .filter(|(side, _)| side.name != "hand-written")
    {
        let paired = |f: fn(&Round) -> f64| {
            median(
                results
                    .iter()
                    .zip(baseline)
                    .map(|(a, b)| f(a) / f(b))
                    .collect(),
            )
        };
        println!(
            "{} / hand-written, median of per-round ratios: p50 {:.2}x  p99 {:.2}x  throughput {:.2}x  (target: latency <= 1.15x)",
            side.name,
            paired(|r| r.p50_ms),
            paired(|r| r.p99_ms),
            paired(|r| r.requests_per_second)
        );
    }
}
