//! Several nodes on one PostgreSQL, measured in one run:
//! `cargo bench -p allframe-tests --bench nodes`.
//!
//! - The write cost of notifying commits: `ALLFRAME_BENCH_WRITERS` (16)
//!   callers deposit through the dispatcher for `ALLFRAME_BENCH_SECONDS`
//!   (3) on a store that notifies and on one that does not (each in a
//!   schema of its own with the same accounts), alternating for
//!   `ALLFRAME_BENCH_ROUNDS` (5) rounds each; medians.
//! - Cross-node delivery: a store that writes (node A) and another on the
//!   same schema (node C) subscribed to the log; each write's time from its
//!   append returning on A to the event arriving in C's subscription,
//!   p50/p99, with notifications and with only the poll, alternating.

use std::sync::Arc;
use std::time::{Duration, Instant};

use allframe::store::PostgresStore;
use allframe::{DispatchOptions, Dispatcher, EventFilter, EventStore, ExpectedVersion, NewEvent};
use allframe_tests::bench::{deposits_per_second, env_number};
use bank::domain::OpenAccount;
use futures_util::StreamExt;
use serde_json::json;

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
    let mut accounts = Vec::new();
    for _ in 0..64 {
        let open = OpenAccount {
            owner: "Ada".into(),
            email: "ada@example.com".into(),
            initial_deposit: 100,
            currency: None,
        };
        let opened = dispatcher
            .dispatch(open, DispatchOptions::default())
            .await
            .unwrap();
        accounts.push(opened.aggregate_id);
    }
    (dispatcher, Arc::new(accounts))
}

/// Times `writes` appends on `a`, one at a time a few milliseconds apart,
/// from their return to their arrival in a subscription on `c`.
async fn delivery(a: &PostgresStore, c: &PostgresStore, writes: usize) -> Vec<Duration> {
    let mut subscription = c.subscribe(a.head_position().await.unwrap(), EventFilter::all());
    let mut times = Vec::new();
    for n in 0..writes {
        let appended = a
            .append(
                &format!("probe-{}", n % 8),
                ExpectedVersion::Any,
                vec![NewEvent::new("Probed", &json!({ "n": n }))],
            )
            .await
            .unwrap();
        let written = Instant::now();
        loop {
            let event = subscription.next().await.unwrap().unwrap();
            if event.position >= appended.position {
                break;
            }
        }
        times.push(written.elapsed());
        // Off the poll's rhythm, so each write waits a different share of it.
        tokio::time::sleep(Duration::from_millis(3 + (n as u64 * 7) % 13)).await;
    }
    times
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

    // Cross-node delivery: A writes, C subscribes; C notified or polling.
    let writes = env_number("ALLFRAME_BENCH_PROBES", 200.0) as usize;
    let a = store(&loud_schema, true).await;
    let c_notified = store(&loud_schema, true).await;
    let c_polling = store(&loud_schema, false).await;
    let (mut notified, mut polling) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let notified_first = round % 2 == 0;
        for listen in [notified_first, !notified_first] {
            let c = if listen { &c_notified } else { &c_polling };
            let times = delivery(&a, c, writes / rounds).await;
            if listen {
                notified.extend(times);
            } else {
                polling.extend(times);
            }
        }
    }
    notified.sort();
    polling.sort();
    println!("## Cross-node delivery: append on node A → event in a subscription on node C\n");
    println!("| node C | writes | p50 | p99 |");
    println!("|---|---|---|---|");
    for (name, times) in [("listens (NOTIFY)", &notified), ("polls only", &polling)] {
        println!(
            "| {name} | {} | {:.2} ms | {:.2} ms |",
            times.len(),
            percentile(times, 0.5),
            percentile(times, 0.99)
        );
    }

    for store in [&loud, &quiet, &a, &c_notified, &c_polling] {
        store.close().await;
    }
    drop_schema(&loud_schema).await;
    drop_schema(&quiet_schema).await;
}
