//! Long streams with and without snapshots:
//! `cargo bench -p allframe --bench snapshots` (add `--features postgres`
//! for PostgreSQL).
//!
//! One account stream holds `ALLFRAME_BENCH_HISTORY` events (default
//! 100,000), another one. The same streams are read by two aggregates that
//! differ only in their policy: `Plain` replays its whole stream on every
//! load, `Snapped` snapshots every 100 events. With the state cache off
//! (so every command loads), in interleaved rounds (median of
//! `ALLFRAME_BENCH_ROUNDS`, default 3), it prints the time of one load and
//! one caller's deposits/s on each, and the ratio the target is about: a
//! command on the long stream within 2× of one on the fresh stream with
//! snapshots on. PostgreSQL uses `ALLFRAME_BENCH_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) and a fresh schema, dropped
//! afterwards. `ALLFRAME_BENCH_ONLY=sqlite,postgres` picks backends.

mod common;

use std::time::{Duration, Instant};

use allframe::store::SqliteStore;
use allframe::{
    Aggregate, DispatchConfig, DispatchOptions, Dispatcher, Event, EventStore, ExpectedVersion,
    NewEvent, Snapshots, load,
};
use common::{env_number, median, selected};
use serde::{Deserialize, Serialize};

#[derive(Event)]
enum AccountEvent {
    Deposited { amount: u64 },
}

/// An account that replays its whole stream.
#[derive(Default, Serialize, Deserialize)]
struct Plain {
    balance: u64,
}

/// The same account, snapshotted every 100 events.
#[derive(Default, Serialize, Deserialize)]
struct Snapped {
    balance: u64,
}

impl Aggregate for Plain {
    type Event = AccountEvent;
    const CATEGORY: &'static str = "account";
    fn apply(&mut self, event: &AccountEvent) {
        let AccountEvent::Deposited { amount } = event;
        self.balance += amount;
    }
}

impl Aggregate for Snapped {
    type Event = AccountEvent;
    const CATEGORY: &'static str = "account";
    fn apply(&mut self, event: &AccountEvent) {
        let AccountEvent::Deposited { amount } = event;
        self.balance += amount;
    }
    fn snapshots() -> Option<Snapshots<Self>> {
        Some(Snapshots::every(100))
    }
}

#[allframe::command(aggregate = Plain, id = account_id, name = "deposit-plain")]
#[derive(Clone, Serialize, Deserialize, garde::Validate)]
struct DepositPlain {
    #[garde(skip)]
    account_id: String,
    #[garde(skip)]
    amount: u64,
}

#[allframe::command(aggregate = Snapped, id = account_id, name = "deposit-snapped")]
#[derive(Clone, Serialize, Deserialize, garde::Validate)]
struct DepositSnapped {
    #[garde(skip)]
    account_id: String,
    #[garde(skip)]
    amount: u64,
}

#[allframe::command_handler]
async fn deposit_plain(
    command: DepositPlain,
    _: &Plain,
) -> Result<Vec<AccountEvent>, std::convert::Infallible> {
    Ok(vec![AccountEvent::Deposited {
        amount: command.amount,
    }])
}

#[allframe::command_handler]
async fn deposit_snapped(
    command: DepositSnapped,
    _: &Snapped,
) -> Result<Vec<AccountEvent>, std::convert::Infallible> {
    Ok(vec![AccountEvent::Deposited {
        amount: command.amount,
    }])
}

fn main() {
    common::run_on_two_workers(async {
        let history = env_number("ALLFRAME_BENCH_HISTORY", 100_000.0) as u64;
        let rounds = env_number("ALLFRAME_BENCH_ROUNDS", 3.0) as usize;
        println!(
            "## Snapshots: a stream of {history} events beside a fresh one, state cache off (median of {rounds} interleaved rounds)\n"
        );
        println!(
            "| backend | measure | fresh | long, snapshots | long, no snapshots | long with snapshots / fresh |"
        );
        println!("|---|---|---|---|---|---|");
        if selected("sqlite") {
            let dir = tempfile::tempdir().expect("temporary directory");
            let store = SqliteStore::open(dir.path().join("bench.db"))
                .await
                .expect("open SQLite");
            report("sqlite", &store, history, rounds).await;
        }
        #[cfg(feature = "postgres")]
        if selected("postgres") {
            postgres(history, rounds).await;
        }
        #[cfg(not(feature = "postgres"))]
        println!(
            "\n!!! PostgreSQL SKIPPED: run `cargo bench -p allframe --features postgres --bench snapshots` to include it."
        );
    });
}

#[cfg(feature = "postgres")]
async fn postgres(history: u64, rounds: usize) {
    let Some((store, schema)) = common::postgres_store().await else {
        return;
    };
    report("postgres", &store, history, rounds).await;
    common::drop_schema(&store, &schema).await;
}

/// Writes `events` deposits of 1 to `account-{id}`, 1,000 per append.
async fn fill(store: &dyn EventStore, id: &str, events: u64) {
    for chunk in 0..events.div_ceil(1_000) {
        let count = (events - chunk * 1_000).min(1_000);
        let deposits = (0..count)
            .map(|_| NewEvent::from_event(&AccountEvent::Deposited { amount: 1 }).unwrap())
            .collect();
        store
            .append(&format!("account-{id}"), ExpectedVersion::Any, deposits)
            .await
            .expect("fill");
    }
}

/// Milliseconds per load of `A` `id`, over `loads` loads.
async fn load_ms<A: Aggregate>(store: &dyn EventStore, id: &str, loads: u32) -> f64 {
    let started = Instant::now();
    for _ in 0..loads {
        let loaded = load::<A>(store, id).await.expect("load");
        assert!(loaded.version > 0);
    }
    started.elapsed().as_secs_f64() * 1_000.0 / f64::from(loads)
}

/// One caller's deposits/s through `dispatcher`, `commands` of them.
async fn deposits_per_s(dispatcher: &Dispatcher, id: &str, snapped: bool, commands: u32) -> f64 {
    let started = Instant::now();
    for _ in 0..commands {
        let options = DispatchOptions::default();
        let account_id = id.to_owned();
        if snapped {
            let command = DepositSnapped {
                account_id,
                amount: 1,
            };
            dispatcher
                .dispatch(command, options)
                .await
                .expect("deposit");
        } else {
            let command = DepositPlain {
                account_id,
                amount: 1,
            };
            dispatcher
                .dispatch(command, options)
                .await
                .expect("deposit");
        }
    }
    f64::from(commands) / started.elapsed().as_secs_f64()
}

/// The cases of one round, in the order they run (rotated each round).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Case {
    Fresh,
    LongSnapped,
    LongPlain,
}

async fn report(backend: &str, store: &dyn EventStore, history: u64, rounds: usize) {
    fill(store, "fresh", 1).await;
    fill(store, "long", history).await;
    let dispatcher = Dispatcher::builder(store)
        .config(DispatchConfig::default().state_cache(0, 0))
        .build()
        .expect("dispatcher");
    // The first snapped command replays the whole stream and snapshots it.
    deposits_per_s(&dispatcher, "long", true, 1).await;
    let snapshots = store.snapshots().expect("the store keeps snapshots");
    while snapshots
        .load_snapshot("account-long")
        .await
        .expect("read the snapshot")
        .is_none()
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cases = [Case::Fresh, Case::LongSnapped, Case::LongPlain];
    let mut loads: [Vec<f64>; 3] = Default::default();
    let mut commands: [Vec<f64>; 3] = Default::default();
    for round in 0..rounds {
        for step in 0..cases.len() {
            let case = cases[(round + step) % cases.len()];
            let (load, command) = match case {
                Case::Fresh => (
                    load_ms::<Snapped>(store, "fresh", 200).await,
                    deposits_per_s(&dispatcher, "fresh", true, 200).await,
                ),
                Case::LongSnapped => (
                    load_ms::<Snapped>(store, "long", 200).await,
                    deposits_per_s(&dispatcher, "long", true, 200).await,
                ),
                Case::LongPlain => (
                    load_ms::<Plain>(store, "long", 3).await,
                    deposits_per_s(&dispatcher, "long", false, 3).await,
                ),
            };
            let at = cases.iter().position(|c| *c == case).unwrap_or(0);
            loads[at].push(load);
            commands[at].push(command);
        }
    }
    let [fresh, snapped, plain] = loads.map(|mut samples| median(&mut samples));
    println!(
        "| {backend} | load (ms) | {fresh:.3} | {snapped:.3} | {plain:.1} | {:.2}× |",
        snapped / fresh
    );
    let [fresh, snapped, plain] = commands.map(|mut samples| median(&mut samples));
    println!(
        "| {backend} | deposits/s, one caller | {fresh:.0} | {snapped:.0} | {plain:.1} | {:.2}× slower |",
        fresh / snapped
    );
}
