//! Projection catch-up throughput: `cargo bench -p allframe --bench projection`
//! (add `--features postgres` for PostgreSQL).
//!
//! An accounts-like projection (one row per account: owner, email, balance,
//! open; indexed by owner) catches up from the first event over a log of
//! `ALLFRAME_BENCH_EVENTS` events (default 200,000) spread over
//! `ALLFRAME_BENCH_ACCOUNTS` accounts (default 10,000). Each round empties
//! the projection tables and times a fresh start until the checkpoint
//! reaches the head. Prints events/s per backend and batch size (median of
//! `ALLFRAME_BENCH_ROUNDS`, default 3). PostgreSQL uses
//! `ALLFRAME_BENCH_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) and a fresh schema, dropped
//! afterwards. `ALLFRAME_BENCH_ONLY=memory,sqlite,postgres` (any subset)
//! runs only those backends.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use allframe::store::{MemoryStore, SqliteStore};
use allframe::{Aggregate, Event, EventStore, ExpectedVersion, NewEvent, RecordedEvent};
use allframe::{ApplyError, Change, Projection, Projections};
use common::{env_number, median, selected};
use serde::{Deserialize, Serialize};

#[derive(Event)]
enum AccountEvent {
    AccountOpened { owner: String, email: String },
    MoneyDeposited { amount: u64 },
    MoneyWithdrawn { amount: u64 },
    AccountClosed {},
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
        row: Option<&Self>,
        event: &AccountEvent,
        recorded: &RecordedEvent,
    ) -> Result<Change<Self>, ApplyError> {
        if let AccountEvent::AccountOpened { owner, email } = event {
            return Ok(Change::Upsert(AccountRow {
                account_id: recorded.aggregate_id().to_owned(),
                owner: owner.clone(),
                email: email.clone(),
                balance: 0,
                open: true,
            }));
        }
        let mut row = row.ok_or("an event before the account was opened")?.clone();
        match event {
            AccountEvent::MoneyDeposited { amount } => row.balance += amount,
            AccountEvent::MoneyWithdrawn { amount } => row.balance -= amount,
            AccountEvent::AccountClosed {} => row.open = false,
            AccountEvent::AccountOpened { .. } => unreachable!("handled above"),
        }
        Ok(Change::Upsert(row))
    }
}

fn main() {
    common::run_on_two_workers(run());
}

async fn run() {
    let events = env_number("ALLFRAME_BENCH_EVENTS", 200_000.0) as usize;
    let accounts = env_number("ALLFRAME_BENCH_ACCOUNTS", 10_000.0) as usize;
    let rounds = env_number("ALLFRAME_BENCH_ROUNDS", 3.0) as usize;
    let batches = [500, 2_000, 5_000];
    println!(
        "## Projection catch-up (events/s, median of {rounds}; {events} events, {accounts} accounts)\n"
    );
    println!("| backend | batch 500 | batch 2000 | batch 5000 |");
    println!("|---|---|---|---|");

    if selected("memory") {
        let memory = MemoryStore::new();
        populate(&memory, events, accounts).await;
        report("memory", &memory, &batches, rounds, || async {}).await;
    }
    if selected("sqlite") {
        sqlite(events, accounts, &batches, rounds).await;
    }
    #[cfg(feature = "postgres")]
    if selected("postgres") {
        postgres(events, accounts, &batches, rounds).await;
    }
    #[cfg(not(feature = "postgres"))]
    println!(
        "\n!!! PostgreSQL SKIPPED: run `cargo bench -p allframe --features postgres --bench projection` to include it."
    );
}

async fn sqlite(events: usize, accounts: usize, batches: &[usize], rounds: usize) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let sqlite = SqliteStore::open(dir.path().join("bench.db"))
        .await
        .expect("open SQLite");
    populate(&sqlite, events, accounts).await;
    let pool = sqlite.pool().clone();
    report("sqlite", &sqlite, batches, rounds, || {
        let pool = pool.clone();
        async move {
            for table in TABLES {
                sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
                    .execute(&pool)
                    .await
                    .expect("empty the projection tables");
            }
        }
    })
    .await;
}

const TABLES: [&str; 4] = [
    "allframe_projection_index",
    "allframe_projection_rows",
    "allframe_projection_checkpoints",
    "allframe_projections",
];

#[cfg(feature = "postgres")]
async fn postgres(events: usize, accounts: usize, batches: &[usize], rounds: usize) {
    let Some((store, schema)) = common::postgres_store().await else {
        return;
    };
    populate(&store, events, accounts).await;
    // Statistics of the log, as autovacuum gathers them within a minute of
    // a table growing: without any, the planner reads each category page
    // with a bitmap scan of the rest of the category and a sort.
    sqlx::query("ANALYZE allframe_events")
        .execute(store.pool())
        .await
        .expect("analyze the log");
    let pool = store.pool().clone();
    report("postgres", &store, batches, rounds, || {
        let pool = pool.clone();
        async move {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "TRUNCATE {}",
                TABLES.join(", ")
            )))
            .execute(&pool)
            .await
            .expect("empty the projection tables");
        }
    })
    .await;
    common::drop_schema(&store, &schema).await;
}

/// Writes `events` events: each account opened, then deposits and
/// withdrawals round-robin, in appends of up to 20 events.
async fn populate(store: &dyn EventStore, events: usize, accounts: usize) {
    let started = Instant::now();
    let per_account = events.div_ceil(accounts);
    let writers: Vec<_> = (0..accounts)
        .map(|account| {
            let store = store.shared();
            async move {
                let mut written = Vec::with_capacity(per_account);
                written.push(AccountEvent::AccountOpened {
                    owner: format!("owner-{}", account % 100),
                    email: format!("user{account}@example.com"),
                });
                for n in 1..per_account {
                    written.push(if n % 3 == 2 {
                        AccountEvent::MoneyWithdrawn { amount: 1 }
                    } else {
                        AccountEvent::MoneyDeposited { amount: 2 }
                    });
                }
                for chunk in written.chunks(20) {
                    let events = chunk
                        .iter()
                        .map(|e| NewEvent::from_event(e).expect("serialize"))
                        .collect();
                    store
                        .append(
                            &format!("account-{account:06}"),
                            ExpectedVersion::Any,
                            events,
                        )
                        .await
                        .expect("append");
                }
            }
        })
        .collect();
    // A few hundred appenders at a time keep group commit busy.
    let mut writers = writers.into_iter();
    loop {
        let wave: Vec<_> = writers.by_ref().take(256).collect();
        if wave.is_empty() {
            break;
        }
        futures_util::future::join_all(wave).await;
    }
    eprintln!(
        "(populated {} events in {:.1} s)",
        store.head_position().await.expect("head"),
        started.elapsed().as_secs_f64()
    );
}

async fn report<F, Fut>(
    name: &str,
    store: &dyn EventStore,
    batches: &[usize],
    rounds: usize,
    reset: F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let head = store.head_position().await.expect("head");
    let mut samples = vec![Vec::new(); batches.len()];
    for _ in 0..rounds {
        for (i, &batch) in batches.iter().enumerate() {
            reset().await;
            // A fresh memory store's own rows for the memory backend.
            let storage = store.projection_store().expect("projection storage");
            let storage = if name == "memory" {
                Arc::new(allframe::store::projections::MemoryProjectionStore::new()) as _
            } else {
                storage
            };
            let started = Instant::now();
            let projections = Projections::builder(store)
                .storage(storage)
                .projection::<AccountRow>()
                .batch_size(batch)
                .start()
                .await
                .expect("start");
            projections
                .wait_for("accounts", head, Duration::from_secs(600))
                .await
                .expect("catch up");
            let seconds = started.elapsed().as_secs_f64();
            samples[i].push(head as f64 / seconds);
            drop(projections);
        }
    }
    let cells: Vec<String> = samples
        .iter_mut()
        .map(|s| format!("{:.0}", median(s)))
        .collect();
    println!("| {name} | {} |", cells.join(" | "));
}
