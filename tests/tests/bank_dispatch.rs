//! The bank domain dispatched for real on every backend: concurrent
//! deposits to one hot account lose nothing.

use std::sync::Arc;

use allframe::store::{MemoryStore, SqliteStore};
use allframe::{DispatchConfig, DispatchOptions, Dispatcher, EventStore};
use bank::domain::{AccountEvent, Deposit, OpenAccount};

const DEPOSITS: u64 = 64;

async fn open(dispatcher: &Dispatcher) -> String {
    let open = OpenAccount {
        owner: "Ada".into(),
        email: "ada@example.com".into(),
        initial_deposit: 0,
        currency: None,
    };
    dispatcher
        .dispatch(open, DispatchOptions::default())
        .await
        .expect("open the account")
        .aggregate_id
}

/// 64 deposits at once, spread over `dispatchers` (each its own node when
/// they sit on separate store instances): every one succeeds, the balance
/// is exact and the stream versions are contiguous.
async fn concurrent_deposits(dispatchers: &[Arc<Dispatcher>], store: &dyn EventStore) {
    let account_id = open(&dispatchers[0]).await;
    let deposits = (1..=DEPOSITS).map(|amount| {
        let dispatcher = dispatchers[amount as usize % dispatchers.len()].clone();
        let account_id = account_id.clone();
        tokio::spawn(async move {
            dispatcher
                .dispatch(Deposit { account_id, amount }, DispatchOptions::default())
                .await
        })
    });
    for outcome in futures_util::future::join_all(deposits).await {
        outcome.expect("task").expect("every deposit succeeds");
    }
    let stream = format!("account-{account_id}");
    let events = store.read_stream(&stream, 0, 1_000).await.unwrap();
    let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
    assert_eq!(
        versions,
        (1..=DEPOSITS + 1).collect::<Vec<_>>(),
        "versions are contiguous"
    );
    let mut amounts: Vec<u64> = events[1..]
        .iter()
        .map(|e| match e.decode::<AccountEvent>().unwrap() {
            AccountEvent::MoneyDeposited { amount } => amount,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    amounts.sort_unstable();
    assert_eq!(
        amounts,
        (1..=DEPOSITS).collect::<Vec<_>>(),
        "each deposit exactly once"
    );
    let account = allframe::load::<bank::domain::Account>(store, &account_id)
        .await
        .unwrap();
    assert_eq!(account.state.balance, DEPOSITS * (DEPOSITS + 1) / 2);
}

fn single(store: &dyn EventStore) -> Vec<Arc<Dispatcher>> {
    vec![Arc::new(Dispatcher::builder(store).build().unwrap())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_concurrent_deposits() {
    let store = MemoryStore::new();
    concurrent_deposits(&single(&store), &store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_deposits() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("bank.db")).await.unwrap();
    concurrent_deposits(&single(&store), &store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_deposits() {
    let Some(store) = allframe_tests::postgres_store().await else {
        return;
    };
    concurrent_deposits(&single(&store), &store).await;
}

/// Two nodes (two store instances on one schema, each with its own
/// dispatcher): conflicts between nodes are caught by the expected-version
/// append and retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_deposits_from_two_nodes() {
    let schema = allframe_tests::fresh_schema();
    let Some(node_a) = allframe_tests::postgres_store_in(&schema, 256).await else {
        return;
    };
    let node_b = allframe_tests::postgres_store_in(&schema, 256)
        .await
        .unwrap();
    let config = DispatchConfig::default().max_retries(50);
    let dispatchers = vec![
        Arc::new(
            Dispatcher::builder(&node_a)
                .config(config.clone())
                .build()
                .unwrap(),
        ),
        Arc::new(Dispatcher::builder(&node_b).config(config).build().unwrap()),
    ];
    concurrent_deposits(&dispatchers, &node_a).await;
}

/// An account is snapshotted every 100 events, and loads from the
/// snapshot read back the balance the whole history adds up to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_an_account_is_snapshotted_every_100_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("bank.db")).await.unwrap();
    let dispatcher = Dispatcher::builder(&store).build().unwrap();
    let account_id = open(&dispatcher).await;
    for amount in 1..=204 {
        let deposit = Deposit {
            account_id: account_id.clone(),
            amount,
        };
        dispatcher
            .dispatch(deposit, DispatchOptions::default())
            .await
            .unwrap();
    }
    let stream = format!("account-{account_id}");
    let snapshots = store.snapshots().unwrap();
    let mut kept = None;
    for _ in 0..500 {
        kept = snapshots.load_snapshot(&stream).await.unwrap();
        if kept.as_ref().is_some_and(|kept| kept.version == 200) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let kept = kept.expect("a snapshot");
    assert_eq!(kept.version, 200, "due at 100 and at 200");
    assert_eq!(dispatcher.snapshot_stats().written, 2);
    let state: bank::domain::Account = serde_json::from_str(&kept.state).unwrap();
    assert_eq!((state.open, state.balance), (true, 199 * 200 / 2));
    let loaded = allframe::load::<bank::domain::Account>(&store, &account_id)
        .await
        .unwrap();
    assert_eq!((loaded.version, loaded.state.balance), (205, 204 * 205 / 2));
}
