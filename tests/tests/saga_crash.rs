//! Exactly-once effects under crashes: a child process runs the bank's
//! `transfer-money` saga and is killed with SIGKILL at random moments,
//! again and again, while transfers keep being started; once a last child
//! has finished them, every transfer has ended, each withdrawal and
//! deposit happened once, and money is conserved — on SQLite and
//! PostgreSQL.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use allframe::store::SqliteStore;
use allframe::{Dispatcher, EventFilter, EventStore, Sagas, load};
use bank::domain::Account;
use bank::transfer::{Transfer, TransferEvent};

const ACCOUNTS: usize = 5;
const OPENING: u64 = 1_000;
const TRANSFERS_PER_ROUND: usize = 40;
const KILLS: usize = 6;

fn child(backend: &str, place: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_saga_child"))
        .args([backend, place])
        .spawn()
        .expect("spawn the saga child")
}

/// How many transfers have ended; `done` remembers which, so each poll
/// reads only the streams of those still running.
async fn ended(store: &dyn EventStore, ids: &[String], done: &mut HashSet<String>) -> usize {
    let running: Vec<&String> = ids.iter().filter(|id| !done.contains(*id)).collect();
    for id in running {
        let view = allframe::saga::view(store, "transfer-money", id)
            .await
            .unwrap()
            .unwrap();
        if view.status != "running" {
            done.insert(id.clone());
        }
    }
    done.len()
}

/// Starts a round of transfers: among the accounts, some too large for
/// the payer, some to an account that does not exist.
async fn start_round(store: &dyn EventStore, accounts: &[String], round: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..TRANSFERS_PER_ROUND {
        let n = round * TRANSFERS_PER_ROUND + i;
        let from = &accounts[n % ACCOUNTS];
        let to = match n % 13 {
            0 => "nobody".to_owned(),
            _ => accounts[(n + 1 + n / ACCOUNTS % (ACCOUNTS - 1)) % ACCOUNTS].clone(),
        };
        let amount = if n.is_multiple_of(11) {
            5_000
        } else {
            1 + (n as u64 * 37) % 200
        };
        let requested = TransferEvent::TransferRequested {
            from_account_id: from.clone(),
            to_account_id: to,
            amount,
        };
        ids.push(Sagas::start::<Transfer>(store, &requested).await.unwrap());
    }
    ids
}

async fn kill_and_check(store: Arc<dyn EventStore>, backend: &str, place: &str) {
    let dispatcher = Dispatcher::builder(&*store).build().unwrap();
    let accounts = allframe_tests::bench::open_accounts(&dispatcher, ACCOUNTS, OPENING).await;
    let mut ids = Vec::new();
    let mut done = HashSet::new();
    let mut cut_short = 0;
    for kill in 0..KILLS {
        ids.extend(start_round(&*store, &accounts, kill).await);
        let before = ended(&*store, &ids, &mut done).await;
        let mut process = child(backend, place);
        let started = Instant::now();
        while ended(&*store, &ids, &mut done).await == before {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the child never ended a transfer"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let wait = (kill * 7919 + std::process::id() as usize) % 20;
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        process.kill().expect("SIGKILL the child");
        process.wait().unwrap();
        let done = ended(&*store, &ids, &mut done).await;
        if done < ids.len() {
            cut_short += 1;
        }
        eprintln!(
            "kill {kill} after {wait} ms: {done} of {} transfers ended",
            ids.len()
        );
    }
    assert!(cut_short > 0, "no kill landed while the child was working");

    let mut process = child(backend, place);
    let started = Instant::now();
    while ended(&*store, &ids, &mut done).await < ids.len() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the transfers never all ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    process.kill().unwrap();
    process.wait().unwrap();

    // Each transfer's movements, by its id (the commands' correlation id).
    let moved = store
        .read_all(0, 1_000_000, &EventFilter::all().category("account"))
        .await
        .unwrap();
    let mut movements: HashMap<&str, Vec<&str>> = HashMap::new();
    for event in &moved {
        if let Some(saga) = event.metadata.correlation_id.as_deref() {
            movements
                .entry(saga)
                .or_default()
                .push(event.event_type.as_str());
        }
    }
    let mut statuses: HashMap<String, usize> = HashMap::new();
    for id in &ids {
        let view = allframe::saga::view(&*store, "transfer-money", id)
            .await
            .unwrap()
            .unwrap();
        let mine = movements.get(id.as_str()).cloned().unwrap_or_default();
        let expected: &[&str] = match view.status.as_str() {
            "completed" => &["MoneyWithdrawn", "MoneyDeposited"],
            "rejected" => &[],
            "refunded" => &["MoneyWithdrawn", "MoneyDeposited"],
            other => panic!("transfer {id} ended {other}: {:?}", view.reason),
        };
        assert_eq!(mine, expected, "transfer {id} ({}): movements", view.status);
        *statuses.entry(view.status).or_default() += 1;
    }
    eprintln!("statuses: {statuses:?}");
    assert!(
        statuses.contains_key("completed")
            && statuses.contains_key("refunded")
            && statuses.contains_key("rejected")
    );
    let mut total = 0;
    for account in &accounts {
        total += load::<Account>(&*store, account)
            .await
            .unwrap()
            .state
            .balance;
    }
    assert_eq!(total, OPENING * ACCOUNTS as u64, "money is conserved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_transfers_survive_kills() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bank.db");
    let store = SqliteStore::open(&path).await.unwrap();
    kill_and_check(Arc::new(store), "sqlite", path.to_str().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_transfers_survive_kills() {
    let schema = allframe_tests::fresh_schema();
    let Some(store) = allframe_tests::postgres_store_in(&schema, 16).await else {
        return;
    };
    kill_and_check(Arc::new(store) as Arc<dyn EventStore>, "postgres", &schema).await;
}
