//! Crash consistency: a child process runs a projection over many events
//! in large batches and is killed with SIGKILL at random moments, again and
//! again, while more events are written; once it has finished, its rows
//! must be exactly those of a fresh rebuild (nothing lost, nothing applied
//! twice), on SQLite and on PostgreSQL.

use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use allframe::Projections;
use allframe::store::SqliteStore;
use allframe::store::projections::{MemoryProjectionStore, ProjectionStore, RowQuery};
use allframe::{EventStore, ExpectedVersion, NewEvent};
use allframe_tests::crash::{CrashEvent, CrashRow};

const ACCOUNTS: usize = 200;
/// Events written before the first child starts (and again between kills).
const EVENTS_PER_ROUND: usize = 10_000;
const KILLS: usize = 6;
const BATCH: &str = "2000";

fn child(backend: &str, place: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_projection_child"))
        .args([backend, place, BATCH])
        .spawn()
        .expect("spawn the projection child")
}

/// Writes a round of deposits spread over the accounts (opening them in the
/// first round), in appends of 50 events.
async fn write_round(store: &dyn EventStore, round: usize) {
    let mut written = 0;
    let mut n = 0usize;
    while written < EVENTS_PER_ROUND {
        let account = n % ACCOUNTS;
        let mut events = Vec::new();
        if round == 0 && n < ACCOUNTS {
            events.push(CrashEvent::Opened {});
        }
        while events.len() < 50 {
            events.push(CrashEvent::Deposited {
                amount: (round * 1_000 + n + events.len()) as u64 % 97 + 1,
            });
        }
        written += events.len();
        let events = events
            .iter()
            .map(|e| NewEvent::from_event(e).unwrap())
            .collect();
        store
            .append(&format!("crash-{account:04}"), ExpectedVersion::Any, events)
            .await
            .unwrap();
        n += 1;
    }
}

async fn all_rows(storage: &dyn ProjectionStore) -> Vec<(String, serde_json::Value)> {
    let mut rows = Vec::new();
    let mut query = RowQuery::first(500);
    loop {
        let page = storage.list("crash-ledger", &query).await.unwrap();
        let Some((last, _)) = page.last() else {
            return rows;
        };
        query = RowQuery::first(500).after(last.clone());
        rows.extend(
            page.into_iter()
                .map(|(key, json)| (key, serde_json::from_str(&json).unwrap())),
        );
    }
}

async fn crash_and_compare(store: Arc<dyn EventStore>, backend: &str, place: &str) {
    let storage = store
        .projection_store()
        .expect("the store keeps projection rows");
    write_round(&*store, 0).await;
    let mut partial_kills = 0;
    for kill in 0..KILLS {
        let before = storage.checkpoint("crash-ledger").await.unwrap();
        let mut process = child(backend, place);
        // Once the child has committed a batch it is in the middle of its
        // work: kill it a random-ish moment later, inside a later batch.
        let started = Instant::now();
        while storage.checkpoint("crash-ledger").await.unwrap() == before {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the child never committed"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let wait = (kill * 7919 + std::process::id() as usize) % 150;
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        process.kill().expect("SIGKILL the child");
        process.wait().unwrap();
        let checkpoint = storage.checkpoint("crash-ledger").await.unwrap();
        let head = store.head_position().await.unwrap();
        if checkpoint > 0 && checkpoint < head {
            partial_kills += 1;
        }
        eprintln!("kill {kill} after {wait} ms: checkpoint {checkpoint} of {head}");
        write_round(&*store, kill + 1).await;
    }
    assert!(
        partial_kills > 0,
        "no kill landed while the child was working"
    );

    let mut process = child(backend, place);
    let head = store.head_position().await.unwrap();
    let started = Instant::now();
    while storage.checkpoint("crash-ledger").await.unwrap() < head {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the child never caught up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    process.kill().unwrap();
    process.wait().unwrap();

    let fresh: Arc<dyn ProjectionStore> = Arc::new(MemoryProjectionStore::new());
    let rebuild = Projections::builder(&*store)
        .storage(fresh.clone())
        .projection::<CrashRow>()
        .start()
        .await
        .unwrap();
    rebuild
        .wait_for("crash-ledger", head, Duration::from_secs(120))
        .await
        .unwrap();
    let killed = all_rows(&*storage).await;
    let rebuilt = all_rows(&*fresh).await;
    assert_eq!(killed.len(), ACCOUNTS);
    assert!(
        killed == rebuilt,
        "rows after the kills differ from a fresh rebuild"
    );
    let deposits: u64 = killed
        .iter()
        .map(|(_, row)| row["deposits"].as_u64().unwrap())
        .sum();
    assert_eq!(deposits as usize, EVENTS_PER_ROUND * (KILLS + 1) - ACCOUNTS);
    // The index was rewritten with the rows: every row is found by its parity.
    for parity in ["even", "odd"] {
        let mut found = 0;
        let mut query = RowQuery::first(1000).indexed("parity", parity);
        loop {
            let page = storage.list("crash-ledger", &query).await.unwrap();
            found += page
                .iter()
                .filter(|(_, json)| json.contains(parity))
                .count();
            let Some((last, _)) = page.last() else { break };
            query = RowQuery::first(1000)
                .indexed("parity", parity)
                .after(last.clone());
        }
        let expected = killed
            .iter()
            .filter(|(_, row)| row["parity"] == parity)
            .count();
        assert_eq!(found, expected, "{parity} rows in the index");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_rows_survive_kills() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let store = SqliteStore::open(&path).await.unwrap();
    crash_and_compare(Arc::new(store), "sqlite", path.to_str().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rows_survive_kills() {
    let schema = allframe_tests::fresh_schema();
    let Some(store) = allframe_tests::postgres_store_in(&schema, 16).await else {
        return;
    };
    crash_and_compare(Arc::new(store) as Arc<dyn EventStore>, "postgres", &schema).await;
}
