//! Row reads over real loopback HTTP: `cargo bench -p allframe --bench reads`.
//!
//! `GET /projections/accounts/{key}` served by the framework's router,
//! against a hand-written axum handler that runs the same SQL on its own
//! sqlx pool over the same SQLite file (the baseline: what the framework
//! adds is routing, the registry, the checkpoint header and its error
//! handling). A raw-TCP load generator keeps `ALLFRAME_BENCH_CONNECTIONS`
//! (default 32) keep-alive connections busy for `ALLFRAME_BENCH_SECONDS`
//! (default 3) per round, over `ALLFRAME_BENCH_ACCOUNTS` rows (default
//! 1,000), in `ALLFRAME_BENCH_ROUNDS` (default 3) interleaved A/B rounds
//! after a warm-up of each. Prints requests/s, p50, p99 and the process's
//! CPU time per request (client included; unlike wall-clock figures it
//! barely moves when other programs load the machine) per round, the
//! medians, and the ratios framework/baseline.

// One backend and one route: this bench has no parts to select.
#[allow(dead_code)]
mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use allframe::store::SqliteStore;
use allframe::{Aggregate, App, Event, EventStore, ExpectedVersion, NewEvent, RecordedEvent};
use allframe::{ApplyError, Change, Projection, Projections};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use common::{env_number, median};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

#[derive(Event)]
enum AccountEvent {
    AccountOpened { owner: String, email: String },
}

#[derive(Default)]
struct Account;

impl Aggregate for Account {
    type Event = AccountEvent;
    const CATEGORY: &'static str = "account";
    fn apply(&mut self, _: &AccountEvent) {}
}

#[allframe::projection(name = "accounts", key = account_id, indexed_by(owner))]
#[derive(Clone, Serialize, Deserialize)]
struct AccountRow {
    account_id: String,
    owner: String,
    email: String,
    balance: u64,
    open: bool,
}

impl Projection for AccountRow {
    type Source = Account;

    fn apply(
        _: Option<&Self>,
        event: &AccountEvent,
        recorded: &RecordedEvent,
    ) -> Result<Change<Self>, ApplyError> {
        let AccountEvent::AccountOpened { owner, email } = event;
        Ok(Change::Upsert(AccountRow {
            account_id: recorded.aggregate_id().to_owned(),
            owner: owner.clone(),
            email: email.clone(),
            balance: 100,
            open: true,
        }))
    }
}

/// The same read the framework's SQLite projection storage runs.
const ROW_BY_KEY: &str = "SELECT row FROM allframe_projection_rows WHERE projection = ? AND key = ? \
     AND generation = (SELECT generation FROM allframe_projections WHERE name = ?)";

/// The baseline: a plain axum handler, straight to sqlx.
async fn hand_written(State(pool): State<SqlitePool>, Path(key): Path<String>) -> Response {
    let row: Result<Option<String>, sqlx::Error> = sqlx::query_scalar(ROW_BY_KEY)
        .bind("accounts")
        .bind(&key)
        .bind("accounts")
        .fetch_optional(&pool)
        .await;
    match row {
        Ok(Some(row)) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            row,
        )
            .into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run());
}

async fn run() {
    let connections = env_number("ALLFRAME_BENCH_CONNECTIONS", 32.0) as usize;
    let seconds = env_number("ALLFRAME_BENCH_SECONDS", 3.0);
    let accounts = env_number("ALLFRAME_BENCH_ACCOUNTS", 1_000.0) as usize;
    let rounds = env_number("ALLFRAME_BENCH_ROUNDS", 3.0) as usize;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("reads.db");
    let store = SqliteStore::open(&path).await.expect("open SQLite");
    let keys = populate(&store, accounts).await;
    let app = App::builder(&store)
        .projections(Projections::builder(&store).projection::<AccountRow>())
        .build()
        .await
        .expect("the app builds");
    let head = store.head_position().await.expect("head");
    app.projections()
        .wait_for("accounts", head, Duration::from_secs(60))
        .await
        .expect("the projection catches up");
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(&path)
                .journal_mode(SqliteJournalMode::Wal)
                .read_only(true),
        )
        .await
        .expect("the baseline's pool");
    let baseline = axum::Router::new()
        .route(
            "/projections/accounts/{key}",
            axum::routing::get(hand_written),
        )
        .with_state(pool);
    let framework = serve(app.router()).await;
    let baseline = serve(baseline).await;

    println!(
        "## GET /projections/accounts/{{key}} over loopback HTTP ({connections} keep-alive connections, {seconds} s rounds, {accounts} rows, SQLite)\n"
    );
    println!("| round | server | requests/s | p50 | p99 | CPU/request |");
    println!("|---|---|---|---|---|---|");
    let duration = Duration::from_secs_f64(seconds);
    load(framework, &keys, connections, Duration::from_secs(1)).await;
    load(baseline, &keys, connections, Duration::from_secs(1)).await;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        // Alternate which goes first, so neither always meets a warmer
        // machine.
        let order = if round % 2 == 1 {
            [("framework", framework), ("axum + sqlx", baseline)]
        } else {
            [("axum + sqlx", baseline), ("framework", framework)]
        };
        for (name, addr) in order {
            let result = load(addr, &keys, connections, duration).await;
            println!(
                "| {round} | {name} | {:.0} | {:.0} µs | {:.0} µs | {:.1} µs |",
                result.0, result.1, result.2, result.3
            );
            if name == "framework" {
                ours.push(result)
            } else {
                theirs.push(result)
            }
        }
    }
    let stat = |results: &[Round], pick: fn(&Round) -> f64| {
        median(&mut results.iter().map(pick).collect::<Vec<_>>())
    };
    let (our_rps, their_rps) = (stat(&ours, |r| r.0), stat(&theirs, |r| r.0));
    let (our_p50, their_p50) = (stat(&ours, |r| r.1), stat(&theirs, |r| r.1));
    let (our_p99, their_p99) = (stat(&ours, |r| r.2), stat(&theirs, |r| r.2));
    let (our_cpu, their_cpu) = (stat(&ours, |r| r.3), stat(&theirs, |r| r.3));
    println!(
        "\nmedians: framework {our_rps:.0} req/s, p50 {our_p50:.0} µs, p99 {our_p99:.0} µs, \
         {our_cpu:.1} µs CPU/request; axum + sqlx {their_rps:.0} req/s, p50 {their_p50:.0} µs, \
         p99 {their_p99:.0} µs, {their_cpu:.1} µs CPU/request"
    );
    println!(
        "framework/baseline (target ≤ 1.1×): time per request {:.3}×, p50 {:.3}×, p99 {:.3}×, \
         CPU per request {:.3}×",
        their_rps / our_rps,
        our_p50 / their_p50,
        our_p99 / their_p99,
        our_cpu / their_cpu
    );
}

/// Opens `accounts` accounts; returns their keys.
async fn populate(store: &SqliteStore, accounts: usize) -> Vec<String> {
    let mut keys = Vec::with_capacity(accounts);
    for i in 0..accounts {
        let key = format!("{i:06}");
        let event = NewEvent::from_event(&AccountEvent::AccountOpened {
            owner: format!("owner-{}", i % 100),
            email: format!("{i}@example.com"),
        })
        .expect("an event");
        store
            .append(
                &format!("account-{key}"),
                ExpectedVersion::NoStream,
                vec![event],
            )
            .await
            .expect("append");
        keys.push(key);
    }
    keys
}

async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// One round: requests/s, p50 and p99 latency (µs), CPU µs per request.
type Round = (f64, f64, f64, f64);

/// This process's user + system CPU time so far, in seconds (Linux; 0
/// elsewhere, which makes the CPU column meaningless there).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses and may
    // hold spaces; utime and stime are the 14th and 15th fields, in ticks
    // of (almost always) 1/100 s.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<f64> = rest
        .split_whitespace()
        .map(|field| field.parse().unwrap_or(0.0))
        .collect();
    fields
        .get(11)
        .zip(fields.get(12))
        .map_or(0.0, |(user, system)| (user + system) / 100.0)
}

/// Keeps `connections` connections busy for `duration`.
async fn load(addr: SocketAddr, keys: &[String], connections: usize, duration: Duration) -> Round {
    let cpu = cpu_seconds();
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..connections)
        .map(|connection| {
            let keys = keys.to_vec();
            tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
                stream.set_nodelay(true).expect("nodelay");
                let mut stream = BufReader::new(stream);
                let mut latencies = Vec::new();
                let mut i = connection * 7919;
                while Instant::now() < deadline {
                    let key = &keys[i % keys.len()];
                    i += 1;
                    let request =
                        format!("GET /projections/accounts/{key} HTTP/1.1\r\nHost: bench\r\n\r\n");
                    let sent = Instant::now();
                    stream
                        .get_mut()
                        .write_all(request.as_bytes())
                        .await
                        .expect("write");
                    assert_eq!(
                        read_response(&mut stream).await,
                        200,
                        "a row exists for every key"
                    );
                    latencies.push(sent.elapsed().as_secs_f64() * 1e6);
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("a load task"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = (cpu_seconds() - cpu) * 1e6 / latencies.len() as f64;
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    (latencies.len() as f64 / elapsed, at(0.50), at(0.99), cpu)
}

/// Reads one response with a `Content-Length` body; returns its status.
async fn read_response(stream: &mut BufReader<tokio::net::TcpStream>) -> u16 {
    let mut line = String::new();
    stream.read_line(&mut line).await.expect("status line");
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let mut length = 0;
    loop {
        line.clear();
        stream.read_line(&mut line).await.expect("a header");
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().expect("a length");
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.expect("the body");
    status
}
