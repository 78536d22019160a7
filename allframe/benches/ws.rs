//! Live event stream benchmark: `cargo bench -p allframe --bench ws`.
//!
//! Connects N WebSocket clients (tokio-tungstenite, over loopback, in the
//! same process and runtime as the server) to `GET /events/ws` while one
//! appender writes single events at a fixed rate, each carrying the time it
//! was appended. Every client measures append → receive latency; the bench
//! prints p50/p99/max per scenario and whether every client got every event
//! (a connection that falls behind the shared feed catches up from the
//! store, so "lag" shows as latency, not loss). Then, for 100 clients, it
//! doubles the rate until p99 passes 50 ms or events go missing, and prints
//! the highest rate that held.
//!
//! Last, live delivery while one client catches up: over a log of 200,000
//! events, one client connects with `after=0` beside 100 live clients, and
//! the live clients' latency is taken over the events appended while that
//! client was still reading history. The same run without the catch-up
//! client alternates with it, and the medians of both are printed side by
//! side.
//!
//! `ALLFRAME_BENCH_SECONDS` sets the length of one run (default 3),
//! `ALLFRAME_BENCH_ONLY=memory` or `=sqlite` one backend,
//! `ALLFRAME_BENCH_HISTORY` the catch-up's log length (default 200000).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use allframe::store::{MemoryStore, SqliteStore};
use allframe::{App, EventStore, EventStreamConfig, ExpectedVersion, NewEvent};
use common::{env_number, median, selected};
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

/// The latency target the sustained rate is measured against.
const TARGET_P99: Duration = Duration::from_millis(50);

fn main() {
    common::run_on_two_workers(run());
}

async fn run() {
    let seconds = Duration::from_secs_f64(env_number("ALLFRAME_BENCH_SECONDS", 3.0));
    let tmp = tempfile::tempdir().expect("temporary directory");
    println!("## WebSocket delivery latency, append → client (runs of {seconds:?})\n");
    println!(
        "| backend | clients | events/s | p50 ms | p99 ms | max ms | delivered | append p99 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut sustained = Vec::new();
    for backend in ["memory", "sqlite"].into_iter().filter(|b| selected(b)) {
        let store = open(backend, &tmp).await;
        for (clients, rate) in [(100, 1_000), (1_000, 100), (1_000, 1_000)] {
            let (report, _) = measure(&*store, clients, rate, seconds, None).await;
            report.print(backend, clients, rate);
        }
        let mut best = None;
        let mut rate = 1_000;
        loop {
            let (report, _) = measure(&*store, 100, rate, seconds, None).await;
            report.print(backend, 100, rate);
            if !report.holds() {
                break;
            }
            best = Some(rate);
            rate *= 2;
        }
        sustained.push((backend, best));
    }
    println!("\n## Highest rate 100 clients sustained (p99 < 50 ms, nothing missing)\n");
    for (backend, best) in sustained {
        match best {
            Some(rate) => println!("- {backend}: {rate} events/s (the next doubling did not hold)"),
            None => println!("- {backend}: below 1000 events/s"),
        }
    }
    let history = env_number("ALLFRAME_BENCH_HISTORY", 200_000.0) as u64;
    println!(
        "\n## 100 live clients at 1000 events/s while one client catches up over {history} events\n"
    );
    println!(
        "Latency of the live clients over the events appended while the catch-up was reading \
         history, beside runs without a catch-up client (alternating, 3 each).\n"
    );
    println!(
        "| backend | run | catch-up took s | live events sampled | p50 ms | p99 ms | max ms |"
    );
    println!("|---|---|---|---|---|---|---|");
    for backend in ["memory", "sqlite"].into_iter().filter(|b| selected(b)) {
        let store = open(backend, &tmp).await;
        fill(&*store, history).await;
        let (mut with, mut without) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            let (report, catch_up) = measure(&*store, 100, 1_000, seconds, Some(history)).await;
            let took = catch_up.map_or("did not finish".to_owned(), |t| format!("{t:.2}"));
            report.print_catch_up(backend, "with catch-up", &took);
            with.push(report.percentile(0.99));
            let (report, _) = measure(&*store, 100, 1_000, seconds, None).await;
            report.print_catch_up(backend, "live only", "–");
            without.push(report.percentile(0.99));
        }
        let (with, without) = (median(&mut with), median(&mut without));
        println!(
            "\n- {backend}: median p99 {with:.1} ms with a catch-up, {without:.1} ms without \
             ({:.2}×); target < 50 ms\n",
            with / without
        );
    }
}

/// Appends `events` events to history streams, in batches of 1,000.
async fn fill(store: &dyn EventStore, events: u64) {
    let data = serde_json::json!({ "filler": true });
    for batch in 0..events.div_ceil(1_000) {
        let count = (events - batch * 1_000).min(1_000);
        let batch_events = (0..count).map(|_| NewEvent::new("Filler", &data)).collect();
        store
            .append(
                &format!("history-{batch}"),
                ExpectedVersion::NoStream,
                batch_events,
            )
            .await
            .expect("fill the log");
    }
}

async fn open(backend: &str, tmp: &tempfile::TempDir) -> Arc<dyn EventStore> {
    match backend {
        "memory" => Arc::new(MemoryStore::new()),
        _ => Arc::new(
            SqliteStore::open(tmp.path().join(format!("{}.db", uuid::Uuid::now_v7())))
                .await
                .expect("open SQLite"),
        ),
    }
}

struct Report {
    latencies: Vec<f64>,
    /// How long the appends themselves took (sorted), part of the latency.
    appends: Vec<f64>,
    expected: usize,
    delivered: usize,
}

impl Report {
    /// NaN when nothing was delivered.
    fn percentile(&self, fraction: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        // Sorted by `median` before this is called.
        let index =
            ((self.latencies.len() as f64 * fraction) as usize).min(self.latencies.len() - 1);
        self.latencies[index]
    }

    fn holds(&self) -> bool {
        self.delivered == self.expected
            && !self.latencies.is_empty()
            && self.percentile(0.99) < TARGET_P99.as_secs_f64() * 1000.0
    }

    fn print_catch_up(&self, backend: &str, run: &str, took: &str) {
        if self.latencies.is_empty() {
            println!("| {backend} | {run} | {took} | 0 | – | – | – |");
            return;
        }
        println!(
            "| {backend} | {run} | {took} | {} | {:.1} | {:.1} | {:.1} |",
            self.latencies.len(),
            self.percentile(0.5),
            self.percentile(0.99),
            self.latencies[self.latencies.len() - 1],
        );
    }

    fn print(&self, backend: &str, clients: usize, rate: u64) {
        if self.latencies.is_empty() {
            println!(
                "| {backend} | {clients} | {rate} | – | – | – | 0 / {} | – |",
                self.expected
            );
            return;
        }
        println!(
            "| {backend} | {clients} | {rate} | {:.1} | {:.1} | {:.1} | {} / {}{} | {:.1} |",
            self.percentile(0.5),
            self.percentile(0.99),
            self.latencies[self.latencies.len() - 1],
            self.delivered,
            self.expected,
            if self.holds() { "" } else { " ✗" },
            self.appends[(self.appends.len() * 99 / 100).min(self.appends.len() - 1)],
        );
    }
}

/// One run: `clients` connections, `rate` appends a second for `length`.
/// With `catch_up` (the log's length when the run starts), one more client
/// reads the whole log from `after=0`; the live clients' latencies are then
/// those of the events appended before it had read that far, and the run
/// also returns how long its catch-up took in seconds (`None`: it had not
/// finished when the run ended).
async fn measure(
    store: &dyn EventStore,
    clients: usize,
    rate: u64,
    length: Duration,
    catch_up: Option<u64>,
) -> (Report, Option<f64>) {
    let config = EventStreamConfig::default().max_connections(clients + 10);
    let app = App::builder(store)
        .events(config)
        .build()
        .await
        .expect("app");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let server = tokio::spawn(axum::serve(listener, app.router()).into_future());
    let epoch = Instant::now();
    let (stop, stopped) = watch::channel(false);
    let mut readers = Vec::with_capacity(clients);
    for _ in 0..clients {
        readers.push(tokio::spawn(read(addr, epoch, stopped.clone()).await));
    }
    let catching_up =
        catch_up.map(|history| tokio::spawn(read_history(addr, history, epoch, stopped.clone())));
    let started_catch_up = epoch.elapsed().as_secs_f64();
    let mut appends = append_at(store, rate, length, epoch).await;
    let expected = appends.len();
    median(&mut appends);
    // Let the last events arrive; a client still missing some after this
    // did not keep up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.send_replace(true);
    // Microseconds since `epoch` when the catch-up had read the whole log.
    let caught_up = match catching_up {
        Some(task) => task.await.expect("catch-up reader"),
        None => None,
    };
    let mut latencies = Vec::new();
    let mut delivered = usize::MAX;
    for reader in readers {
        let received = reader.await.expect("reader");
        delivered = delivered.min(received.len());
        latencies.extend(
            received
                .into_iter()
                .filter(|(sent, _)| catch_up.is_none() || caught_up.is_none_or(|at| *sent < at))
                .map(|(_, latency)| latency),
        );
    }
    app.shutdown().await;
    server.abort();
    if !latencies.is_empty() {
        median(&mut latencies);
    }
    let report = Report {
        latencies,
        appends,
        expected,
        delivered,
    };
    (report, caught_up.map(|at| at / 1e6 - started_catch_up))
}

/// Connects a client (live only) and returns its reading task, which
/// collects (sent at in µs, latency in ms) until told to stop.
async fn read(
    addr: SocketAddr,
    epoch: Instant,
    mut stop: watch::Receiver<bool>,
) -> impl std::future::Future<Output = Vec<(f64, f64)>> {
    let (mut client, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/events/ws"))
        .await
        .expect("connect");
    async move {
        let mut latencies = Vec::new();
        loop {
            tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => return latencies,
                message = client.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        let now = epoch.elapsed().as_micros() as f64;
                        let sent = sent_at(&text);
                        latencies.push((sent, (now - sent) / 1000.0));
                    }
                    Some(Ok(_)) => {}
                    _ => return latencies,
                },
            }
        }
    }
}

/// A client reading the log from the start: returns the time (µs since
/// `epoch`) when it had received `history` events, or `None` if it was told
/// to stop first.
async fn read_history(
    addr: SocketAddr,
    history: u64,
    epoch: Instant,
    mut stop: watch::Receiver<bool>,
) -> Option<f64> {
    let (mut client, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/events/ws?after=0"))
            .await
            .expect("connect");
    let mut received = 0;
    loop {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return None,
            message = client.next() => match message {
                Some(Ok(Message::Text(_))) => {
                    received += 1;
                    if received == history {
                        return Some(epoch.elapsed().as_micros() as f64);
                    }
                }
                Some(Ok(_)) => {}
                _ => return None,
            },
        }
    }
}

/// The `sent_at_us` field of an event's data, without parsing the JSON:
/// 1,000 clients parsing every event would measure the clients.
fn sent_at(text: &str) -> f64 {
    const KEY: &str = "\"sent_at_us\":";
    let start = text.find(KEY).expect("a stamped event") + KEY.len();
    let digits: String = text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().expect("a number")
}

/// Appends single events at `rate` a second for `length`, each stamped
/// with its append time; returns how long each append took, in ms.
async fn append_at(
    store: &dyn EventStore,
    rate: u64,
    length: Duration,
    epoch: Instant,
) -> Vec<f64> {
    let start = Instant::now();
    let mut appended = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut writes = Vec::new();
    while start.elapsed() < length {
        tick.tick().await;
        // Catch up to the schedule, so a late tick does not lower the rate.
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while appended < due {
            let stamp = serde_json::json!({ "sent_at_us": epoch.elapsed().as_micros() as u64 });
            let event = NewEvent::new("Stamped", &stamp);
            let store = store.shared();
            // Appends run concurrently, so the rate does not depend on the
            // latency of one append.
            let started = Instant::now();
            writes.push(tokio::spawn(async move {
                store
                    .append("bench-1", ExpectedVersion::Any, vec![event])
                    .await
                    .expect("append");
                started.elapsed().as_secs_f64() * 1000.0
            }));
            appended += 1;
        }
    }
    let mut took = Vec::with_capacity(writes.len());
    for write in writes {
        took.push(write.await.expect("append task"));
    }
    took
}
