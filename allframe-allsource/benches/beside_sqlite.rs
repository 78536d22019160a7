//! The AllSource adapter beside SQLite, in one run:
//! `cargo bench -p allframe-allsource`.
//!
//! Prints figures, asserts none (the machines are shared and noisy). Each
//! comparison runs its two backends interleaved, round by round
//! (`ALLFRAME_BENCH_ROUNDS`, default 3), and reports medians and the ratio
//! of medians:
//!
//! - appends of one event, by one writer and by 16 at once, for
//!   `ALLFRAME_BENCH_SECONDS` (default 2) each;
//! - appends of 100 events by one writer;
//! - catch-up: the whole log read in pages of 1,000, from a log of
//!   `ALLFRAME_BENCH_CATCH_UP_EVENTS` (default 100,000);
//! - reopening a store of `ALLFRAME_BENCH_LOG_EVENTS` (default 1,000,000)
//!   events, written in appends of 100: how long, and the resident memory
//!   the first open added.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use allframe::store::SqliteStore;
use allframe::{EventFilter, EventStore, ExpectedVersion, NewEvent};
use allframe_allsource::AllSourceStore;
use serde_json::json;

type Opened = Pin<Box<dyn Future<Output = Arc<dyn EventStore>>>>;

/// Opens a store at a path (a directory, made if missing): SQLite's, then
/// AllSource's.
const BACKENDS: [fn(PathBuf) -> Opened; 2] = [
    |path| {
        Box::pin(async move {
            std::fs::create_dir_all(&path).unwrap();
            Arc::new(SqliteStore::open(path.join("log.db")).await.unwrap()) as Arc<dyn EventStore>
        })
    },
    |path| {
        Box::pin(async move {
            Arc::new(AllSourceStore::open(path).await.unwrap()) as Arc<dyn EventStore>
        })
    },
];

fn env_number(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn events(count: usize) -> Vec<NewEvent> {
    (0..count)
        .map(|n| {
            NewEvent::new(
                "Deposited",
                &json!({ "amount": n, "note": "a bench event" }),
            )
        })
        .collect()
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(run());
}

async fn run() {
    let rounds = env_number("ALLFRAME_BENCH_ROUNDS", 3.0) as usize;
    let sample = Duration::from_secs_f64(env_number("ALLFRAME_BENCH_SECONDS", 2.0));
    let tmp = tempfile::tempdir().expect("temporary directory");
    let mut place = 0;
    let mut fresh = |root: &Path| {
        place += 1;
        root.join(format!("store-{place}"))
    };
    println!("## AllSource beside SQLite ({rounds} interleaved rounds, medians)\n");
    println!("| measure | SQLite | AllSource | AllSource / SQLite |");
    println!("|---|---|---|---|");

    for (label, writers, batch) in [
        ("appends of 1 event, 1 writer (events/s)", 1, 1),
        ("appends of 1 event, 16 writers (events/s)", 16, 1),
        ("appends of 100 events, 1 writer (events/s)", 1, 100),
    ] {
        let mut samples = [Vec::new(), Vec::new()];
        for _ in 0..rounds {
            for (backend, samples) in BACKENDS.iter().zip(&mut samples) {
                let store = backend(fresh(tmp.path())).await;
                samples.push(append_rate(&store, writers, batch, sample).await);
                store.close().await;
            }
        }
        report(label, &mut samples);
    }

    let catch_up = env_number("ALLFRAME_BENCH_CATCH_UP_EVENTS", 100_000.0) as usize;
    let mut stores = Vec::new();
    for backend in &BACKENDS {
        let store = backend(fresh(tmp.path())).await;
        fill(&store, catch_up).await;
        stores.push(store);
    }
    let mut samples = [Vec::new(), Vec::new()];
    for _ in 0..rounds {
        for (store, samples) in stores.iter().zip(&mut samples) {
            let started = Instant::now();
            let read = read_everything(&**store).await;
            assert_eq!(read, catch_up);
            samples.push(read as f64 / started.elapsed().as_secs_f64());
        }
    }
    for store in stores {
        store.close().await;
    }
    report(
        &format!("catch-up read of {catch_up} events, pages of 1,000 (events/s)"),
        &mut samples,
    );

    let logged = env_number("ALLFRAME_BENCH_LOG_EVENTS", 1_000_000.0) as usize;
    let mut dirs = Vec::new();
    let mut fill_seconds = Vec::new();
    for backend in &BACKENDS {
        let dir = fresh(tmp.path());
        let store = backend(dir.clone()).await;
        let started = Instant::now();
        fill(&store, logged).await;
        fill_seconds.push(started.elapsed().as_secs_f64());
        store.close().await;
        dirs.push(dir);
    }
    report(
        &format!("writing {logged} events in appends of 100, once (s)"),
        &mut [vec![fill_seconds[0]], vec![fill_seconds[1]]],
    );
    let sizes: Vec<f64> = dirs.iter().map(|dir| size_of(dir) as f64 / 1e6).collect();
    report(
        &format!("on disk after {logged} events (MB)"),
        &mut [vec![sizes[0]], vec![sizes[1]]],
    );
    let mut samples = [Vec::new(), Vec::new()];
    let mut resident = [Vec::new(), Vec::new()];
    for _ in 0..rounds {
        for (((backend, dir), samples), resident) in BACKENDS
            .iter()
            .zip(&dirs)
            .zip(&mut samples)
            .zip(&mut resident)
        {
            let before = resident_mb();
            let started = Instant::now();
            let store = backend(dir.clone()).await;
            let head = store.head_position().await.unwrap();
            samples.push(started.elapsed().as_secs_f64() * 1e3);
            resident.push(resident_mb() - before);
            assert_eq!(head, logged as u64);
            store.close().await;
        }
    }
    report(
        &format!("reopening a store of {logged} events (ms)"),
        &mut samples,
    );
    // The first round's: later ones reuse what the round before freed.
    report(
        &format!("resident memory the open store of {logged} events added, first open (MB)"),
        &mut [vec![resident[0][0]], vec![resident[1][0]]],
    );
}

/// Events per second appended by `writers` writers, `batch` events an
/// append, for `sample`.
async fn append_rate(
    store: &Arc<dyn EventStore>,
    writers: usize,
    batch: usize,
    sample: Duration,
) -> f64 {
    let until = Instant::now() + sample;
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut appended = 0;
                while Instant::now() < until {
                    store
                        .append(
                            &format!("account-{}", writer * 1_000 + appended % 16),
                            ExpectedVersion::Any,
                            events(batch),
                        )
                        .await
                        .unwrap();
                    appended += 1;
                }
                appended * batch
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// Appends `count` events in appends of 100 over 1,000 streams.
async fn fill(store: &Arc<dyn EventStore>, count: usize) {
    for n in 0..count / 100 {
        store
            .append(
                &format!("account-{}", n % 1_000),
                ExpectedVersion::Any,
                events(100),
            )
            .await
            .unwrap();
    }
}

/// Reads the whole log in pages of 1,000; returns how many events.
async fn read_everything(store: &dyn EventStore) -> usize {
    let (mut after, mut read) = (0, 0);
    loop {
        let page = store
            .read_all(after, 1_000, &EventFilter::all())
            .await
            .unwrap();
        let Some(last) = page.last() else {
            return read;
        };
        after = last.position;
        read += page.len();
    }
}

/// The process's resident memory (Linux; 0 elsewhere).
fn resident_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The bytes of every file under `path`.
fn size_of(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| match entry.file_type() {
                    Ok(kind) if kind.is_dir() => size_of(&entry.path()),
                    _ => entry.metadata().map_or(0, |m| m.len()),
                })
                .sum()
        })
        .unwrap_or(0)
}

/// One row: each backend's median and their ratio.
fn report(label: &str, samples: &mut [Vec<f64>; 2]) {
    let [sqlite, allsource] = samples;
    let (a, b) = (median(sqlite), median(allsource));
    let digits = if a.max(b) < 100.0 { 2 } else { 0 };
    println!("| {label} | {a:.digits$} | {b:.digits$} | {:.2} |", b / a);
}
