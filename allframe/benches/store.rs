//! Event store benchmarks: `cargo bench -p allframe --bench store`.
//!
//! Prints figures rather than asserting them (the machines are shared and
//! noisy). Every comparison runs its variants interleaved, round by round,
//! in one process, and reports medians and the ratio of medians.
//!
//! PostgreSQL is included with `--features postgres`. Set
//! `ALLFRAME_BENCH_POSTGRES_URL` to change the server (default
//! `postgres://postgres@127.0.0.1:5432/test`; each run uses a fresh schema,
//! dropped afterwards). `ALLFRAME_BENCH_SECONDS` sets the length of one
//! throughput sample (default 2). `ALLFRAME_BENCH_ONLY=append,group,read,latency,log`
//! (any subset) runs only those sections; `ALLFRAME_BENCH_ROUNDS` sets how
//! many interleaved rounds each comparison runs (default 3);
//! `ALLFRAME_BENCH_LOG_EVENTS` the size of the large log of section `log`
//! (default 1,000,000).

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[cfg(feature = "postgres")]
use allframe::store::PostgresStore;
use allframe::store::{MemoryStore, SqliteStore};
use allframe::{EventFilter, EventStore, ExpectedVersion, NewEvent};
use common::{env_number, median, selected};
use futures_util::StreamExt;
use serde_json::json;

type Opened = Pin<Box<dyn Future<Output = Arc<dyn EventStore>>>>;

/// Opens a fresh, empty store with the given group-commit batch limit.
struct Backend {
    name: &'static str,
    open: Box<dyn Fn(usize) -> Opened>,
}

fn main() {
    common::run_on_two_workers(run());
}

async fn run() {
    let seconds = env_number("ALLFRAME_BENCH_SECONDS", 2.0);
    let sample = Duration::from_secs_f64(seconds);
    let tmp = tempfile::tempdir().expect("temporary directory");
    let tmp_path = tmp.path().to_owned();
    let files = Arc::new(AtomicU64::new(0));
    #[cfg_attr(not(feature = "postgres"), allow(unused_mut))]
    let mut backends = vec![
        Backend {
            name: "memory",
            open: Box::new(|_| {
                Box::pin(async { Arc::new(MemoryStore::new()) as Arc<dyn EventStore> })
            }),
        },
        Backend {
            name: "sqlite",
            open: Box::new(move |max_batch| {
                let path = tmp_path.join(format!("{}.db", files.fetch_add(1, Ordering::Relaxed)));
                Box::pin(async move {
                    let options = sqlx::sqlite::SqliteConnectOptions::new()
                        .filename(path)
                        .create_if_missing(true);
                    Arc::new(
                        SqliteStore::connect_with(options, max_batch)
                            .await
                            .expect("open SQLite"),
                    ) as Arc<dyn EventStore>
                })
            }),
        },
    ];
    #[cfg(feature = "postgres")]
    add_postgres(&mut backends).await;
    #[cfg(not(feature = "postgres"))]
    println!(
        "!!! PostgreSQL benchmarks SKIPPED: run `cargo bench -p allframe --features postgres` to include them.\n"
    );

    let rounds = env_number("ALLFRAME_BENCH_ROUNDS", 3.0) as usize;

    if selected("append") {
        println!("## Append throughput (events/s, median of {rounds} samples of {seconds} s)\n");
        println!(
            "| backend | batch 1, 1 writer | batch 1, 16 writers | batch 100, 1 writer | batch 100, 16 writers |"
        );
        println!("|---|---|---|---|---|");
        for backend in &backends {
            let shapes = [(1, 1), (1, 16), (100, 1), (100, 16)];
            let mut samples = vec![Vec::new(); shapes.len()];
            for _ in 0..rounds {
                for (i, &(batch, writers)) in shapes.iter().enumerate() {
                    let store = (backend.open)(allframe::store::DEFAULT_MAX_BATCH).await;
                    samples[i].push(append_rate(store, writers, batch, sample).await);
                }
            }
            let cells: Vec<String> = samples
                .iter_mut()
                .map(|s| format!("{:.0}", median(s)))
                .collect();
            println!("| {} | {} |", backend.name, cells.join(" | "));
        }
    }

    if selected("group") {
        println!("\n## Group commit vs one transaction per append (16 writers, single events)\n");
        println!("| backend | group commit (events/s) | one tx per append (events/s) | ratio |");
        println!("|---|---|---|---|");
        for backend in backends.iter().filter(|b| b.name != "memory") {
            let (mut grouped, mut single) = (Vec::new(), Vec::new());
            for _ in 0..rounds {
                grouped.push(append_rate((backend.open)(256).await, 16, 1, sample).await);
                single.push(append_rate((backend.open)(1).await, 16, 1, sample).await);
            }
            let (g, s) = (median(&mut grouped), median(&mut single));
            println!("| {} | {g:.0} | {s:.0} | {:.2}× |", backend.name, g / s);
        }
    }

    if selected("read") {
        println!("\n## Global read (events/s, 200,000 events in pages of 1,000, median of 5)\n");
        println!("| backend | events/s |");
        println!("|---|---|");
        for backend in &backends {
            let store = (backend.open)(256).await;
            fill(&*store, 200_000).await;
            let mut rates: Vec<f64> = Vec::new();
            for _ in 0..5 {
                rates.push(read_rate(&*store).await);
            }
            println!("| {} | {:.0} |", backend.name, median(&mut rates));
        }
    }

    if selected("latency") {
        println!(
            "\n## Subscription delivery latency (append call to delivery, 2,000 single events, 1 every 2 ms)\n"
        );
        println!("| backend | p50 | p99 |");
        println!("|---|---|---|");
        for backend in &backends {
            let store = (backend.open)(256).await;
            let (p50, p99) = delivery_latency(store, 2_000, Duration::from_millis(2)).await;
            println!("| {} | {p50:.2?} | {p99:.2?} |", backend.name);
        }
    }
    if selected("log") {
        let events = env_number("ALLFRAME_BENCH_LOG_EVENTS", 1_000_000.0) as usize;
        println!(
            "\n## Appends into a large log vs an empty one (16 writers, single events, events/s, median of {rounds} interleaved samples of {seconds} s)\n"
        );
        println!("| backend | empty log | log of {events} events | large / empty |");
        println!("|---|---|---|---|");
        for backend in backends.iter().filter(|b| b.name != "memory") {
            let empty = (backend.open)(allframe::store::DEFAULT_MAX_BATCH).await;
            let large = (backend.open)(allframe::store::DEFAULT_MAX_BATCH).await;
            let filling = Instant::now();
            fill(&*large, events).await;
            eprintln!(
                "{}: filled {events} events in {:.1?}",
                backend.name,
                filling.elapsed()
            );
            let (mut small_rates, mut large_rates) = (Vec::new(), Vec::new());
            for round in 0..rounds {
                let order = if round % 2 == 0 {
                    [false, true]
                } else {
                    [true, false]
                };
                for is_large in order {
                    let store = if is_large { &large } else { &empty };
                    let rate = append_rate(store.clone(), 16, 1, sample).await;
                    if is_large {
                        large_rates.push(rate)
                    } else {
                        small_rates.push(rate)
                    }
                }
            }
            let (e, l) = (median(&mut small_rates), median(&mut large_rates));
            println!("| {} | {e:.0} | {l:.0} | {:.2}× |", backend.name, l / e);
        }
    }
    #[cfg(feature = "postgres")]
    drop_bench_schemas().await;
}

async fn append_rate(
    store: Arc<dyn EventStore>,
    writers: usize,
    batch: usize,
    sample: Duration,
) -> f64 {
    let deadline = Instant::now() + sample;
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let stream = format!("bench-{w}");
                let mut written = 0u64;
                while Instant::now() < deadline {
                    let events = (0..batch)
                        .map(|i| {
                            NewEvent::new("Deposited", &json!({"amount": i, "note": "benchmark"}))
                        })
                        .collect();
                    store
                        .append(&stream, ExpectedVersion::Any, events)
                        .await
                        .expect("append");
                    written += batch as u64;
                }
                written
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("writer task");
    }
    total as f64 / started.elapsed().as_secs_f64()
}

async fn fill(store: &dyn EventStore, count: usize) {
    for chunk in 0..count / 1000 {
        let events = (0..1000)
            .map(|i| NewEvent::new("Deposited", &json!({"amount": i, "note": "benchmark"})))
            .collect();
        store
            .append(
                &format!("fill-{}", chunk % 100),
                ExpectedVersion::Any,
                events,
            )
            .await
            .expect("fill");
    }
}

async fn read_rate(store: &dyn EventStore) -> f64 {
    let started = Instant::now();
    let (mut after, mut read) = (0, 0usize);
    loop {
        let page = store
            .read_all(after, 1000, &EventFilter::all())
            .await
            .expect("read");
        let Some(last) = page.last() else { break };
        after = last.position;
        read += page.len();
    }
    read as f64 / started.elapsed().as_secs_f64()
}

async fn delivery_latency(
    store: Arc<dyn EventStore>,
    count: usize,
    every: Duration,
) -> (Duration, Duration) {
    let sent: Arc<std::sync::Mutex<Vec<Instant>>> = Arc::default();
    let head = store.head_position().await.expect("head");
    let subscription = store.subscribe(head, EventFilter::all());
    let receiver = {
        let sent = sent.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(count);
            let mut events = subscription.take(count);
            while let Some(event) = events.next().await {
                let event = event.expect("subscription");
                let at = sent.lock().unwrap()[(event.position - head - 1) as usize];
                latencies.push(at.elapsed());
            }
            latencies
        })
    };
    let mut ticker = tokio::time::interval(every);
    for i in 0..count {
        ticker.tick().await;
        sent.lock().unwrap().push(Instant::now());
        store
            .append(
                &format!("latency-{}", i % 10),
                ExpectedVersion::Any,
                vec![NewEvent::new("Ping", &json!({"i": i}))],
            )
            .await
            .expect("append");
    }
    let mut latencies = receiver.await.expect("receiver");
    latencies.sort();
    (latencies[count / 2], latencies[count * 99 / 100])
}

/// Adds the PostgreSQL backend when the server answers.
#[cfg(feature = "postgres")]
async fn add_postgres(backends: &mut Vec<Backend>) {
    let pg_url = postgres_url();
    let pg_options = <sqlx::postgres::PgConnectOptions as std::str::FromStr>::from_str(&pg_url)
        .expect("Postgres URL");
    match sqlx::PgPool::connect_with(pg_options.clone()).await {
        Ok(pool) => {
            pool.close().await;
            let counter = Arc::new(AtomicU64::new(0));
            let run_id = uuid::Uuid::now_v7().simple().to_string();
            backends.push(Backend {
                name: "postgres",
                open: Box::new(move |max_batch| {
                    let schema = format!(
                        "allframe_bench_{run_id}_{}",
                        counter.fetch_add(1, Ordering::Relaxed)
                    );
                    let options = pg_options.clone();
                    Box::pin(async move {
                        Arc::new(
                            PostgresStore::connect_with(options, Some(&schema), max_batch)
                                .await
                                .expect("open PostgreSQL"),
                        ) as Arc<dyn EventStore>
                    })
                }),
            });
        }
        Err(error) => println!("!!! PostgreSQL benchmarks SKIPPED: cannot reach {pg_url}: {error}"),
    }
}

#[cfg(feature = "postgres")]
fn postgres_url() -> String {
    std::env::var("ALLFRAME_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Drops every schema the benchmark created.
#[cfg(feature = "postgres")]
async fn drop_bench_schemas() {
    let Ok(pool) = sqlx::PgPool::connect(&postgres_url()).await else {
        return;
    };
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'allframe\\_bench\\_%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap_or_default();
    for schema in schemas {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA \"{schema}\" CASCADE"
        )))
        .execute(&pool)
        .await;
    }
}
