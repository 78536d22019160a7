//! Command dispatch benchmarks: `cargo bench -p allframe --bench dispatch`.
//!
//! Prints commands/s through `Dispatcher::dispatch` on memory and SQLite
//! with 1 and 16 concurrent callers, on one hot aggregate and on many, and
//! the overhead of dispatch over the bare load + append it performs
//! (interleaved rounds, medians, one run); then whether a command costs the
//! same on an account with a long history as on a fresh one, with the
//! aggregate state cache on and off. `ALLFRAME_BENCH_SCALE` multiplies
//! the commands per sample (default 1), `ALLFRAME_BENCH_ROUNDS` the rounds
//! (default 3), `ALLFRAME_BENCH_ONLY=memory` or `=sqlite` one backend (and
//! `history` the second part), `ALLFRAME_BENCH_HISTORY` the long account's
//! events (default 10,000).

mod common;

use std::sync::Arc;
use std::time::Instant;

use allframe::store::{MemoryStore, SqliteStore};
use allframe::{
    Aggregate, Command, DispatchConfig, DispatchOptions, Dispatcher, Event, EventStore,
    ExpectedVersion, NewEvent,
};
use allframe::{CommandHandler, Decision, HandlerRegistration};
use allframe::{Container, Dependency};
use common::{env_number, median, selected};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

#[derive(Event)]
enum AccountEvent {
    Deposited { amount: u64 },
}

#[derive(Default)]
struct Account {
    balance: u64,
}

impl Aggregate for Account {
    type Event = AccountEvent;
    const CATEGORY: &'static str = "account";
    fn apply(&mut self, event: &AccountEvent) {
        let AccountEvent::Deposited { amount } = event;
        self.balance += amount;
    }
}

#[derive(Clone, Serialize, Deserialize, garde::Validate)]
struct Deposit {
    #[garde(length(chars, min = 1, max = 64))]
    account_id: String,
    #[garde(range(min = 1, max = 1_000_000_000))]
    amount: u64,
}

impl Command for Deposit {
    const NAME: &'static str = "deposit";
    const CREATE: bool = false;
    type Aggregate = Account;
    fn aggregate_id(&self) -> Option<String> {
        Some(self.account_id.clone())
    }
    fn schema() -> allframe::WireSchema {
        allframe::WireSchema::new(serde_json::json!({"type": "object"}))
    }
}

#[derive(Default)]
struct DepositHandler;

impl CommandHandler for DepositHandler {
    type Command = Deposit;
    type Error = std::convert::Infallible;
    const DEPENDENCIES: &'static [Dependency] = &[];
    fn handle<'a>(
        &'a self,
        command: Deposit,
        _state: &'a Account,
        _dependencies: &'a Container,
    ) -> BoxFuture<'a, Decision<Deposit, Self::Error>> {
        Box::pin(async move {
            Ok(vec![AccountEvent::Deposited {
                amount: command.amount,
            }])
        })
    }
}

static DEPOSIT: HandlerRegistration = HandlerRegistration::new::<DepositHandler>("bench::deposit");

/// What the dispatcher does for a deposit, written by hand: load, decide,
/// append at the loaded version with the same metadata, retry on conflict.
async fn bare_deposit(store: &dyn EventStore, account_id: &str, amount: u64) {
    let stream = allframe::stream_id::<Account>(account_id);
    let command_id = uuid::Uuid::now_v7().to_string();
    loop {
        let loaded = allframe::load::<Account>(store, account_id)
            .await
            .expect("load");
        let mut event = NewEvent::from_event(&AccountEvent::Deposited { amount }).expect("encode");
        let metadata = event.metadata_mut();
        metadata.correlation_id = Some(command_id.clone());
        metadata.causation_id = Some(command_id.clone());
        metadata.command = Some("deposit".into());
        match store
            .append(&stream, ExpectedVersion::Exact(loaded.version), vec![event])
            .await
        {
            Ok(_) => return,
            Err(error) if error.is_conflict() => continue,
            Err(error) => panic!("append: {error}"),
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Path {
    Dispatch,
    Bare,
}

async fn seed(store: &dyn EventStore, accounts: usize) {
    for i in 0..accounts {
        let opened = NewEvent::from_event(&AccountEvent::Deposited { amount: 1 }).unwrap();
        store
            .append(
                &format!("account-{i}"),
                ExpectedVersion::NoStream,
                vec![opened],
            )
            .await
            .expect("seed");
    }
}

/// Commands/s for `commands` commands from `callers` concurrent callers
/// over `accounts` accounts (1: every caller hits one hot account). A fixed
/// count, not a fixed time, so both paths end with streams of the same
/// length and pay the same replay cost.
async fn rate(
    store: Arc<dyn EventStore>,
    dispatcher: Arc<Dispatcher>,
    path: Path,
    callers: usize,
    accounts: usize,
    commands: u64,
) -> f64 {
    let each = commands / callers as u64;
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|caller| {
            let (store, dispatcher) = (store.clone(), dispatcher.clone());
            tokio::spawn(async move {
                for done in 0..each {
                    // Each caller walks its own accounts so the stream lengths
                    // (and so the load cost) grow the same way on both paths.
                    let account =
                        ((caller as u64 + done * callers as u64) % accounts as u64).to_string();
                    match path {
                        Path::Dispatch => {
                            let command = Deposit {
                                account_id: account,
                                amount: 5,
                            };
                            dispatcher
                                .dispatch(command, DispatchOptions::default())
                                .await
                                .expect("dispatch");
                        }
                        Path::Bare => bare_deposit(&*store, &account, 5).await,
                    }
                }
                each
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("caller");
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// Commands per sample: hot accounts replay ever longer streams, so they
/// get fewer.
fn base_commands(backend: &str, accounts: usize) -> f64 {
    match (backend, accounts) {
        ("memory", 1) => 3_000.0,
        ("memory", _) => 60_000.0,
        (_, 1) => 600.0,
        _ => 8_000.0,
    }
}

fn main() {
    common::run_on_two_workers(async {
        let scale = env_number("ALLFRAME_BENCH_SCALE", 1.0);
        let rounds = env_number("ALLFRAME_BENCH_ROUNDS", 3.0) as usize;
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut next_file = 0;
        if selected("memory") || selected("sqlite") {
            println!(
                "## Dispatch: commands/s and overhead over bare load + append (median of {rounds} interleaved rounds, commands per sample × {scale})\n"
            );
            println!(
                "| backend | callers | accounts | dispatch (cmd/s) | bare load+append (cmd/s) | overhead |"
            );
            println!("|---|---|---|---|---|---|");
        }
        for backend in ["memory", "sqlite"] {
            if !selected(backend) {
                continue;
            }
            for (callers, accounts) in [(1, 1), (1, 1_000), (16, 1), (16, 1_000)] {
                let (mut dispatched, mut bare) = (Vec::new(), Vec::new());
                for round in 0..rounds {
                    // Alternate which path goes first, so neither always runs
                    // on the heap the other just left behind.
                    let order = if round % 2 == 0 {
                        [Path::Dispatch, Path::Bare]
                    } else {
                        [Path::Bare, Path::Dispatch]
                    };
                    for path in order {
                        let store: Arc<dyn EventStore> = if backend == "memory" {
                            Arc::new(MemoryStore::new())
                        } else {
                            next_file += 1;
                            Arc::new(
                                SqliteStore::open(dir.path().join(format!("{next_file}.db")))
                                    .await
                                    .expect("open SQLite"),
                            )
                        };
                        seed(&*store, accounts).await;
                        let dispatcher = Arc::new(
                            Dispatcher::builder(&*store)
                                .handlers(vec![&DEPOSIT])
                                .build()
                                .expect("dispatcher"),
                        );
                        let commands = (scale * base_commands(backend, accounts)) as u64;
                        let r = rate(store, dispatcher, path, callers, accounts, commands).await;
                        if path == Path::Dispatch {
                            dispatched.push(r)
                        } else {
                            bare.push(r)
                        }
                    }
                }
                let (d, b) = (median(&mut dispatched), median(&mut bare));
                println!(
                    "| {backend} | {callers} | {accounts} | {d:.0} | {b:.0} | {:.2}× |",
                    b / d
                );
            }
        }
        if selected("history") {
            history(rounds, scale, dir.path()).await;
        }
    });
}

/// Deposits/s from one caller on one account.
async fn sequential_rate(dispatcher: &Dispatcher, account: &str, commands: u64) -> f64 {
    let started = Instant::now();
    for _ in 0..commands {
        let command = Deposit {
            account_id: account.to_owned(),
            amount: 5,
        };
        dispatcher
            .dispatch(command, DispatchOptions::default())
            .await
            .expect("dispatch");
    }
    commands as f64 / started.elapsed().as_secs_f64()
}

/// One caller's deposits on a fresh account and on one with a long history,
/// alternating, with the state cache on and off.
async fn history(rounds: usize, scale: f64, dir: &std::path::Path) {
    let events = env_number("ALLFRAME_BENCH_HISTORY", 10_000.0) as u64;
    println!(
        "\n## Flat as history grows: one caller's deposits/s on a fresh account and on one with {events} events (median of {rounds} interleaved rounds)\n"
    );
    println!("| backend | state cache | fresh (cmd/s) | long history (cmd/s) | long / fresh |");
    println!("|---|---|---|---|---|");
    for backend in ["memory", "sqlite"] {
        for cache in [true, false] {
            let store: Arc<dyn EventStore> = if backend == "memory" {
                Arc::new(MemoryStore::new())
            } else {
                let file = dir.join(format!("history-{cache}.db"));
                Arc::new(SqliteStore::open(file).await.expect("open SQLite"))
            };
            seed(&*store, 1).await;
            for chunk in 0..events.div_ceil(1_000) {
                let count = (events - chunk * 1_000).min(1_000);
                let deposits = (0..count)
                    .map(|_| NewEvent::from_event(&AccountEvent::Deposited { amount: 1 }).unwrap())
                    .collect();
                store
                    .append("account-long", ExpectedVersion::Any, deposits)
                    .await
                    .expect("fill");
            }
            let config = if cache {
                DispatchConfig::default()
            } else {
                DispatchConfig::default().state_cache(0, 0)
            };
            let dispatcher = Dispatcher::builder(&*store)
                .handlers(vec![&DEPOSIT])
                .config(config)
                .build()
                .expect("dispatcher");
            // Without the cache every command replays the whole history.
            let base = match (backend, cache) {
                ("memory", true) => 20_000.0,
                (_, true) => 2_000.0,
                ("memory", false) => 300.0,
                _ => 60.0,
            };
            let commands = ((scale * base) as u64).max(1);
            let (mut fresh, mut long) = (Vec::new(), Vec::new());
            // Warm: the first command on each account loads it.
            sequential_rate(&dispatcher, "0", 1).await;
            sequential_rate(&dispatcher, "long", 1).await;
            for round in 0..rounds {
                let order = if round % 2 == 0 {
                    ["0", "long"]
                } else {
                    ["long", "0"]
                };
                for account in order {
                    let rate = sequential_rate(&dispatcher, account, commands).await;
                    if account == "0" {
                        fresh.push(rate)
                    } else {
                        long.push(rate)
                    }
                }
            }
            let (f, l) = (median(&mut fresh), median(&mut long));
            let cache = if cache { "on" } else { "off" };
            println!("| {backend} | {cache} | {f:.0} | {l:.0} | {:.2}× |", l / f);
        }
    }
}
