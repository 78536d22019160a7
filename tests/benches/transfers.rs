//! Transfers (the `transfer-money` saga) beside deposits, in one run, on
//! SQLite and PostgreSQL: `cargo bench -p allframe-tests --bench transfers`.
//!
//! `ALLFRAME_BENCH_CALLERS` (64) callers work for `ALLFRAME_BENCH_SECONDS`
//! (4) per phase over 16 accounts. A deposit phase counts commands per
//! second. A transfer phase has each caller start transfers through the
//! dispatcher (what `POST /commands/transfer-money` does before answering
//! `202`), keeping a window of them running: one (each caller waits for
//! its transfer to complete before starting the next), then
//! `ALLFRAME_BENCH_WINDOW` (8; a new one starts whenever one ends, the way
//! clients that are answered `202` go on). It counts completed transfers
//! per second, until the last one started has ended, and times each from
//! its `202` to `completed`. Phases alternate for `ALLFRAME_BENCH_ROUNDS`
//! (3) rounds; medians are reported, latencies over every transfer of the
//! run. A second table says what each operation wrote: events, and
//! idempotency records (the keys of the commands a saga sends).
//! `RUST_LOG=allframe::store=debug` logs each group commit to stderr
//! (appends, events, round trips): how full the batches are.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use allframe::store::SqliteStore;
use allframe::{DispatchOptions, Dispatcher, EventFilter, EventStore, Sagas};
use allframe_tests::bench::{deposits_per_second, env_number, open_accounts};
use bank::transfer::{Transfer, TransferMoney};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use tokio::sync::oneshot;

/// The allocator the bank's binary runs on (see its `main.rs`), so the
/// figures are the bank's.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Each saga's end as the watcher saw it: when, and whether it completed.
type Ending = (Instant, bool);

/// Who is waiting for which saga to end, and the ends of sagas nobody was
/// waiting for yet (their starter has not registered): one lock for both,
/// so an end is never missed.
#[derive(Default)]
struct Endings {
    waiting: HashMap<String, oneshot::Sender<Ending>>,
    early: HashMap<String, Ending>,
}

type Waiters = Arc<Mutex<Endings>>;

/// Hands the end of each saga whose ending step is recorded to its waiter.
fn watch_endings(store: &dyn EventStore, after: u64, waiters: Waiters) {
    let mut endings = store.subscribe(after, EventFilter::all().category("saga"));
    tokio::spawn(async move {
        while let Some(Ok(event)) = endings.next().await {
            if event.event_type != allframe::saga::STEP_EVENT_TYPE {
                continue;
            }
            let Some(id) = event.stream_id.strip_prefix("saga-transfer-money-") else {
                continue;
            };
            let record: serde_json::Value = serde_json::from_str(event.data.get()).unwrap();
            let Some(status) = record["end"]["status"].as_str() else {
                continue;
            };
            let ending = (Instant::now(), status == "completed");
            let mut endings = waiters.lock().unwrap();
            match endings.waiting.remove(id) {
                Some(waiter) => {
                    let _ = waiter.send(ending);
                }
                None => {
                    endings.early.insert(id.to_owned(), ending);
                }
            }
        }
    });
}

/// Starts a transfer (what `POST /commands/transfer-money` does before
/// answering `202`); returns a future of the time from its `202` to the
/// end of its saga.
async fn start_transfer(
    dispatcher: &Dispatcher,
    waiters: &Waiters,
    from: String,
    to: String,
) -> impl std::future::Future<Output = Duration> + use<> {
    let transfer = TransferMoney {
        from_account_id: from,
        to_account_id: to,
        amount: 1,
    };
    let outcome = dispatcher
        .dispatch(transfer, DispatchOptions::default())
        .await
        .unwrap();
    let accepted = Instant::now();
    let (done, ended) = oneshot::channel();
    let early = {
        let mut endings = waiters.lock().unwrap();
        let early = endings.early.remove(&outcome.aggregate_id);
        if early.is_none() {
            endings.waiting.insert(outcome.aggregate_id.clone(), done);
        }
        early
    };
    async move {
        let (end, completed) = match early {
            Some(ending) => ending,
            None => ended.await.unwrap(),
        };
        assert!(completed, "a transfer did not complete");
        end - accepted
    }
}

/// Each caller keeps `window` transfers running (starting one whenever one
/// ends) until the phase is over; returns transfers completed per second,
/// counted until the last one started has ended, and how many completed.
async fn transfers(
    dispatcher: &Arc<Dispatcher>,
    accounts: &Arc<Vec<String>>,
    waiters: &Waiters,
    window: usize,
    seconds: f64,
    latencies: &mut Vec<Duration>,
) -> (f64, usize) {
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(seconds);
    let callers = env_number("ALLFRAME_BENCH_CALLERS", 64.0) as usize;
    let tasks: Vec<_> = (0..callers)
        .map(|caller| {
            let (dispatcher, accounts, waiters) =
                (dispatcher.clone(), accounts.clone(), waiters.clone());
            tokio::spawn(async move {
                let mut times = Vec::new();
                let mut running = futures_util::stream::FuturesUnordered::new();
                let mut n = caller;
                while Instant::now() < until {
                    if running.len() == window {
                        times.push(running.next().await.unwrap());
                    }
                    let (from, to) = (
                        accounts[n % accounts.len()].clone(),
                        accounts[(n + 1) % accounts.len()].clone(),
                    );
                    n += callers;
                    running.push(start_transfer(&dispatcher, &waiters, from, to).await);
                }
                while let Some(time) = running.next().await {
                    times.push(time);
                }
                times
            })
        })
        .collect();
    let mut completed = 0;
    for task in tasks {
        let times = task.await.unwrap();
        completed += times.len();
        latencies.extend(times);
    }
    (
        completed as f64 / started.elapsed().as_secs_f64(),
        completed,
    )
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// Counts a store's idempotency records.
type KeyCount = Box<dyn Fn() -> BoxFuture<'static, i64>>;

/// What the operations of one phase wrote, in all: the operations, the
/// events (the log's head moved by) and the idempotency records.
#[derive(Default, Clone, Copy)]
struct Written {
    operations: f64,
    events: f64,
    keys: f64,
}

impl Written {
    fn add(&mut self, operations: f64, events: u64, keys: i64) {
        self.operations += operations;
        self.events += events as f64;
        self.keys += keys as f64;
    }

    fn per_operation(&self) -> (f64, f64) {
        (self.events / self.operations, self.keys / self.operations)
    }
}

async fn report(
    backend: &str,
    store: Arc<dyn EventStore>,
    keys: KeyCount,
    written: &mut Vec<String>,
) {
    let seconds = env_number("ALLFRAME_BENCH_SECONDS", 4.0);
    let callers = env_number("ALLFRAME_BENCH_CALLERS", 64.0) as usize;
    let rounds = env_number("ALLFRAME_BENCH_ROUNDS", 3.0) as usize;
    let dispatcher = Arc::new(Dispatcher::builder(&*store).build().unwrap());
    let count = env_number("ALLFRAME_BENCH_ACCOUNTS", 16.0) as usize;
    let accounts = open_accounts(&dispatcher, count, 1_000_000_000).await;
    let accounts = Arc::new(accounts);
    let sagas = Sagas::builder(&*store, dispatcher.clone())
        .saga::<Transfer>()
        .start()
        .await
        .unwrap();
    let waiters: Waiters = Arc::default();
    watch_endings(
        &*store,
        store.head_position().await.unwrap(),
        waiters.clone(),
    );
    let windows = [1, env_number("ALLFRAME_BENCH_WINDOW", 8.0) as usize];
    let mut deposit_rates = Vec::new();
    let mut transfer_rates = vec![Vec::new(); windows.len()];
    let mut latencies = vec![Vec::new(); windows.len()];
    let (mut deposits_wrote, mut transfers_wrote) = (Written::default(), Written::default());
    for round in 0..rounds {
        // Deposits first in even rounds, last in odd ones.
        let mut phases = vec![None, Some(0), Some(1)];
        if round % 2 == 1 {
            phases.rotate_left(1);
        }
        for phase in phases {
            let (head, records) = (store.head_position().await.unwrap(), keys().await);
            let (operations, into) = match phase {
                None => {
                    let rate = deposits_per_second(&dispatcher, &accounts, callers, seconds).await;
                    deposit_rates.push(rate);
                    (rate * seconds, &mut deposits_wrote)
                }
                Some(w) => {
                    let (rate, completed) = transfers(
                        &dispatcher,
                        &accounts,
                        &waiters,
                        windows[w],
                        seconds,
                        &mut latencies[w],
                    )
                    .await;
                    transfer_rates[w].push(rate);
                    (completed as f64, &mut transfers_wrote)
                }
            };
            // Every transfer started in the phase has ended: all it wrote
            // is in.
            let events = store.head_position().await.unwrap() - head;
            into.add(operations, events, keys().await - records);
        }
    }
    sagas.stop().await;
    for (operation, wrote) in [("deposit", deposits_wrote), ("transfer", transfers_wrote)] {
        let (events, keys) = wrote.per_operation();
        written.push(format!(
            "| {backend} | {operation} | {events:.2} | {keys:.2} |"
        ));
    }
    let d = median(&mut deposit_rates);
    for (w, window) in windows.iter().enumerate() {
        latencies[w].sort();
        let t = median(&mut transfer_rates[w]);
        println!(
            "| {backend} | {window} | {d:.0} | {t:.0} | {:.2} | {:.1} ms | {:.1} ms |",
            t / d,
            percentile(&latencies[w], 0.5).as_secs_f64() * 1e3,
            percentile(&latencies[w], 0.99).as_secs_f64() * 1e3,
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    println!("## Transfers beside deposits (64 callers, medians of interleaved rounds)\n");
    println!(
        "| backend | transfers running per caller | deposits/s | transfers completed/s | transfers / deposits | 202 → completed p50 | p99 |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut written = Vec::new();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let sqlite = SqliteStore::open(dir.path().join("bank.db")).await.unwrap();
    let keys = key_count(sqlite.pool().clone());
    report("SQLite", Arc::new(sqlite), keys, &mut written).await;
    match allframe_tests::postgres_store().await {
        Some(postgres) => {
            let keys = key_count(postgres.pool().clone());
            report("PostgreSQL", Arc::new(postgres), keys, &mut written).await
        }
        None => println!("\n!!! PostgreSQL SKIPPED: the server is not reachable"),
    }
    println!("\n## What each operation wrote (means over every phase)\n");
    println!("| backend | operation | events | idempotency records |");
    println!("|---|---|---|---|");
    for line in written {
        println!("{line}");
    }
}

/// Counts the idempotency records of the store `pool` reads.
fn key_count<DB: sqlx::Database>(pool: sqlx::Pool<DB>) -> KeyCount
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
    i64: for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    Box::new(move || {
        let pool = pool.clone();
        Box::pin(async move {
            sqlx::query_scalar("SELECT COUNT(*) FROM allframe_idempotency")
                .fetch_one(&pool)
                .await
                .expect("count the idempotency records")
        })
    })
}
