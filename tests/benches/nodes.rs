//! Several nodes on one PostgreSQL, measured in one run:
//! `cargo bench -p allframe-tests --bench nodes`.
//!
//! - The write cost of notifying commits: `ALLFRAME_BENCH_WRITERS` (16)
//!   callers deposit through the dispatcher for `ALLFRAME_BENCH_SECONDS`
//!   (3) on a store that notifies and on one that does not (each in a
//!   schema of its own with the same accounts), alternating for
//!   `ALLFRAME_BENCH_ROUNDS` (5) rounds each; medians.
//! - Cross-node delivery: node A (a store and dispatcher) deposits, node C
//!   (the bank served over another store on the same schema) streams the
//!   log to a WebSocket client; each write's time from its command
//!   returning on A to its frame arriving from C, p50/p99, with C woken by
//!   notifications and with C polling only, alternating.
//! - One node against three: the same callers deposit through one store,
//!   or spread over three stores on one schema (three writers, three
//!   pools; each node its own third of the accounts, as a router keeping
//!   an account on one node would), alternating; medians.

use std::sync::Arc;
use std::time::{Duration, Instant};

use allframe::store::PostgresStore;
use allframe::{DispatchOptions, Dispatcher, EventStore};
use allframe_tests::bench::{deposits_per_second, env_number, open_accounts};
use futures_util::StreamExt;

async fn store(schema: &str, notifications: bool) -> PostgresStore {
    let options = allframe_tests::postgres_options()
        .await
        .expect("PostgreSQL is reachable");
    PostgresStore::builder(options)
        .schema(Some(schema))
        .notifications(notifications)
        .connect()
        .await
        .expect("open the store")
}

async fn drop_schema(schema: &str) {
    let options = allframe_tests::postgres_options().await.unwrap();
    let pool = sqlx::PgPool::connect_with(options).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
}

/// A dispatcher over `store` and 64 accounts opened on it.
async fn bank(store: &PostgresStore) -> (Arc<Dispatcher>, Arc<Vec<String>>) {
    let dispatcher = Arc::new(Dispatcher::builder(store).build().unwrap());
    let accounts = open_accounts(&dispatcher, 64, 100).await;
    (dispatcher, Arc::new(accounts))
}

/// Times `writes` deposits through `a`, one at a time a few milliseconds
/// apart, from their answer to their frame on a WebSocket of `c`.
async fn delivery(
    a: &Dispatcher,
    account: &str,
    c: std::net::SocketAddr,
    writes: usize,
) -> Vec<Duration> {
    let head = a.store().head_position().await.unwrap();
    let (mut client, _) =
        tokio_tungstenite::connect_async(format!("ws://{c}/events/ws?after={head}"))
            .await
            .expect("the upgrade succeeds");
    let mut times = Vec::new();
    for n in 0..writes {
        let deposit = bank::domain::Deposit {
            account_id: account.to_owned(),
            amount: 1,
        };
        let position = a
            .dispatch(deposit, DispatchOptions::default())
            .await
            .unwrap()
            .position
            .unwrap();
        let written = Instant::now();
        loop {
            let message = client.next().await.unwrap().unwrap();
            if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
                let event: serde_json::Value = serde_json::from_str(&text).unwrap();
                if event["position"].as_u64() >= Some(position) {
                    break;
                }
            }
        }
        times.push(written.elapsed());
        // Off the poll's rhythm, so each write waits a different share of it.
        tokio::time::sleep(Duration::from_millis(3 + (n as u64 * 7) % 13)).await;
    }
    times
}

/// Deposits per second from `writers` callers spread over `nodes` (one
/// dispatcher each), each node depositing into its own part of
/// `accounts`.
async fn spread_deposits(
    nodes: &[Arc<Dispatcher>],
    accounts: &[String],
    writers: usize,
    seconds: f64,
) -> f64 {
    let share = accounts.len() / nodes.len();
    let rates = nodes.iter().enumerate().map(|(i, node)| {
        let mine = Arc::new(accounts[i * share..(i + 1) * share].to_vec());
        let callers = writers / nodes.len() + usize::from(i < writers % nodes.len());
        async move { deposits_per_second(node, &mine, callers, seconds).await }
    });
    futures_util::future::join_all(rates)
        .await
        .into_iter()
        .sum()
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)].as_secs_f64() * 1e3
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if allframe_tests::postgres_options().await.is_none() {
        println!("!!! SKIPPED: PostgreSQL is not reachable");
        return;
    }
    let seconds = env_number("ALLFRAME_BENCH_SECONDS", 3.0);
    let rounds = env_number("ALLFRAME_BENCH_ROUNDS", 5.0) as usize;
    let writers = env_number("ALLFRAME_BENCH_WRITERS", 16.0) as usize;

    let (loud_schema, quiet_schema) = (
        allframe_tests::fresh_schema(),
        allframe_tests::fresh_schema(),
    );
    let loud = store(&loud_schema, true).await;
    let quiet = store(&quiet_schema, false).await;
    let (loud_bank, loud_accounts) = bank(&loud).await;
    let (quiet_bank, quiet_accounts) = bank(&quiet).await;
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let loud_first = round % 2 == 0;
        for notify in [loud_first, !loud_first] {
            if notify {
                with.push(deposits_per_second(&loud_bank, &loud_accounts, writers, seconds).await);
            } else {
                without.push(
                    deposits_per_second(&quiet_bank, &quiet_accounts, writers, seconds).await,
                );
            }
        }
    }
    let (with, without) = (median(&mut with), median(&mut without));
    println!("## Notifying commits ({writers} writers, medians of {rounds} interleaved rounds)\n");
    println!("| store | deposits/s |");
    println!("|---|---|");
    println!("| notifies each batch | {with:.0} |");
    println!("| does not notify | {without:.0} |");
    println!(
        "| cost of the notification | {:.1} % |\n",
        (1.0 - with / without) * 100.0
    );

    // Cross-node delivery: A writes, C serves a WebSocket; C notified or
    // polling.
    let writes = env_number("ALLFRAME_BENCH_PROBES", 200.0) as usize;
    let c_notified = store(&loud_schema, true).await;
    let c_polling = store(&loud_schema, false).await;
    let config = allframe::EventStreamConfig::default();
    let served_notified = allframe_tests::server::serve_bank(&c_notified, config.clone()).await;
    let served_polling = allframe_tests::server::serve_bank(&c_polling, config).await;
    let (mut notified, mut polling) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let notified_first = round % 2 == 0;
        for listen in [notified_first, !notified_first] {
            let c = if listen {
                &served_notified
            } else {
                &served_polling
            };
            let times = delivery(&loud_bank, &loud_accounts[0], c.addr, writes / rounds).await;
            if listen {
                notified.extend(times);
            } else {
                polling.extend(times);
            }
        }
    }
    drop((served_notified, served_polling));
    notified.sort();
    polling.sort();
    println!("## Cross-node delivery: deposit on node A → WebSocket frame from node C\n");
    println!("| node C | writes | p50 | p99 |");
    println!("|---|---|---|---|");
    for (name, times) in [
        ("listens (NOTIFY)", &notified),
        ("polls only (500 ms)", &polling),
    ] {
        println!(
            "| {name} | {} | {:.2} ms | {:.2} ms |",
            times.len(),
            percentile(times, 0.5),
            percentile(times, 0.99)
        );
    }

    // One node against three on one schema.
    let mut three = vec![loud_bank.clone()];
    let mut extra_stores = Vec::new();
    for _ in 0..2 {
        let node = store(&loud_schema, true).await;
        three.push(Arc::new(Dispatcher::builder(&node).build().unwrap()));
        extra_stores.push(node);
    }
    let (mut one_rates, mut three_rates) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let one_first = round % 2 == 0;
        for one in [one_first, !one_first] {
            if one {
                one_rates.push(
                    spread_deposits(&three[..1], &loud_accounts[..63], writers, seconds).await,
                );
            } else {
                three_rates
                    .push(spread_deposits(&three, &loud_accounts[..63], writers, seconds).await);
            }
        }
    }
    let (one, three_nodes) = (median(&mut one_rates), median(&mut three_rates));
    println!("\n## Deposits per second: one node or three on one database ({writers} callers)\n");
    println!("| nodes | deposits/s |");
    println!("|---|---|");
    println!("| 1 | {one:.0} |");
    println!("| 3 | {three_nodes:.0} |");
    println!("| 3 / 1 | {:.2} |", three_nodes / one);

    for store in [&loud, &quiet, &c_notified, &c_polling]
        .into_iter()
        .chain(&extra_stores)
    {
        store.close().await;
    }
    drop_schema(&loud_schema).await;
    drop_schema(&quiet_schema).await;
}
