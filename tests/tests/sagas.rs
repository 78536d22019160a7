//! The bank's `transfer-money` saga run for real on every backend: each
//! ending (completed, rejected, refunded), commands that carry the saga's
//! ids, decisions that are never made twice when a runner reads its
//! events again, a command that ran before a crash not running again (also
//! once its idempotency key has been purged), and many concurrent
//! transfers conserving money.

use std::sync::Arc;
use std::time::Duration;

use allframe::saga::{SagaView, stream_id};
use allframe::store::{MemoryStore, SqliteStore};
use allframe::{DispatchOptions, Dispatcher, EventFilter, EventStore, Sagas, load};
use bank::domain::{Account, CloseAccount, OpenAccount, Withdraw};
use bank::transfer::{Transfer, TransferEvent};
use futures_util::future::join_all;

struct Bank {
    dispatcher: Arc<Dispatcher>,
    sagas: Sagas,
}

async fn bank(store: &dyn EventStore) -> Bank {
    let dispatcher = Arc::new(Dispatcher::builder(store).build().unwrap());
    let sagas = Sagas::builder(store, dispatcher.clone())
        .saga::<Transfer>()
        .start()
        .await
        .unwrap();
    Bank { dispatcher, sagas }
}

async fn open(dispatcher: &Dispatcher, initial_deposit: u64) -> String {
    let open = OpenAccount {
        owner: "Ada".into(),
        email: "ada@example.com".into(),
        initial_deposit,
        currency: None,
    };
    dispatcher
        .dispatch(open, DispatchOptions::default())
        .await
        .unwrap()
        .aggregate_id
}

async fn balance(store: &dyn EventStore, id: &str) -> u64 {
    load::<Account>(store, id).await.unwrap().state.balance
}

async fn transfer(store: &dyn EventStore, from: &str, to: &str, amount: u64) -> String {
    let requested = TransferEvent::TransferRequested {
        from_account_id: from.into(),
        to_account_id: to.into(),
        amount,
    };
    Sagas::start::<Transfer>(store, &requested).await.unwrap()
}

/// The instance once it has ended.
async fn ended(sagas: &Sagas, id: &str) -> SagaView {
    for _ in 0..1_500 {
        let view = sagas.view("transfer-money", id).await.unwrap().unwrap();
        if view.status != "running" {
            return view;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("transfer {id} did not end within 30 s");
}

async fn endings(store: &dyn EventStore) {
    let Bank { dispatcher, sagas } = bank(store).await;
    let (a, b) = (open(&dispatcher, 100).await, open(&dispatcher, 0).await);

    let done = transfer(store, &a, &b, 30).await;
    let view = ended(&sagas, &done).await;
    assert_eq!((view.status.as_str(), view.reason), ("completed", None));
    assert_eq!(view.steps, 3, "withdraw, deposit, end");
    assert!(view.ended_at.is_some());
    assert_eq!(
        (balance(store, &a).await, balance(store, &b).await),
        (70, 30)
    );

    // The commands carried the saga's id as correlation id, and a step's
    // record as causation.
    let moved = store
        .read_all(0, 1_000, &EventFilter::all().category("account"))
        .await
        .unwrap();
    let by_saga: Vec<_> = moved
        .iter()
        .filter(|event| event.metadata.correlation_id.as_deref() == Some(done.as_str()))
        .collect();
    assert_eq!(by_saga.len(), 2, "the withdrawal and the deposit");
    let saga_events = store
        .read_stream(&stream_id::<Transfer>(&done), 1, 100)
        .await
        .unwrap();
    for event in by_saga {
        let cause = event.metadata.causation_id.as_deref().unwrap();
        assert!(
            saga_events
                .iter()
                .any(|step| step.event_type == "SagaStep"
                    && step.metadata.event_id.to_string() == cause),
            "caused by a step record"
        );
    }

    let rejected = transfer(store, &a, &b, 1_000).await;
    let view = ended(&sagas, &rejected).await;
    assert_eq!(view.status, "rejected");
    assert_eq!(view.reason.as_deref(), Some("insufficient-funds"));
    let unknown_payer = transfer(store, "nobody", &b, 5).await;
    let view = ended(&sagas, &unknown_payer).await;
    assert_eq!(
        (view.status.as_str(), view.reason.as_deref()),
        ("rejected", Some("not-found"))
    );

    // A payer or payee whose id no stream may have (a control character):
    // the command is refused as invalid, and the saga decides on that.
    let invalid_payer = transfer(store, "bad\u{1}id", &b, 5).await;
    let view = ended(&sagas, &invalid_payer).await;
    assert_eq!(
        (view.status.as_str(), view.reason.as_deref()),
        ("rejected", Some("invalid-command"))
    );
    let invalid_payee = transfer(store, &a, "bad\u{1}id", 5).await;
    let view = ended(&sagas, &invalid_payee).await;
    assert_eq!(
        (view.status.as_str(), view.reason.as_deref()),
        ("refunded", Some("invalid-command"))
    );
    assert_eq!(balance(store, &a).await, 70, "the payer was paid back");

    let unknown_payee = transfer(store, &a, "nobody", 5).await;
    let view = ended(&sagas, &unknown_payee).await;
    assert_eq!(
        (view.status.as_str(), view.reason.as_deref()),
        ("refunded", Some("not-found"))
    );
    let c = open(&dispatcher, 0).await;
    dispatcher
        .dispatch(
            CloseAccount {
                account_id: c.clone(),
            },
            DispatchOptions::default(),
        )
        .await
        .unwrap();
    let closed_payee = transfer(store, &a, &c, 5).await;
    let view = ended(&sagas, &closed_payee).await;
    assert_eq!(
        (view.status.as_str(), view.reason.as_deref()),
        ("refunded", Some("account-closed"))
    );
    assert_eq!(view.steps, 4, "withdraw, deposit refused, refund, end");
    assert_eq!(
        (balance(store, &a).await, balance(store, &b).await),
        (70, 30)
    );

    assert!(
        sagas
            .view("transfer-money", "no-such-id")
            .await
            .unwrap()
            .is_none()
    );
    assert!(sagas.view("no-such-saga", &done).await.is_err());
    sagas.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_endings() {
    endings(&MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_endings() {
    let dir = tempfile::tempdir().unwrap();
    endings(&SqliteStore::open(dir.path().join("bank.db")).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_endings() {
    let Some(store) = allframe_tests::postgres_store().await else {
        return;
    };
    endings(&store).await;
}

/// A runner that reads its events again from the start (its checkpoint
/// lost, as after a crash before the checkpoint moved) decides nothing
/// twice and sends nothing twice; and a command that ran before a crash
/// (its decision not yet recorded) is answered from its idempotency
/// record when sent again.
async fn nothing_twice(store: &dyn EventStore) {
    let dispatcher = Arc::new(Dispatcher::builder(store).build().unwrap());
    let (a, b) = (open(&dispatcher, 100).await, open(&dispatcher, 0).await);
    let id = transfer(store, &a, &b, 40).await;
    // The withdrawal ran under the saga's key, and then the process died
    // before the saga recorded its answer (or even its first step).
    let withdraw = Withdraw {
        account_id: a.clone(),
        amount: 40,
    };
    let key =
        DispatchOptions::default().idempotency_key(format!("saga:transfer-money:{id}:withdraw"));
    dispatcher.dispatch(withdraw, key).await.unwrap();
    assert_eq!(balance(store, &a).await, 60);

    let sagas = Sagas::builder(store, dispatcher.clone())
        .saga::<Transfer>()
        .start()
        .await
        .unwrap();
    assert_eq!(ended(&sagas, &id).await.status, "completed");
    assert_eq!(
        (balance(store, &a).await, balance(store, &b).await),
        (60, 40)
    );
    sagas.stop().await;
    read_again(store, &dispatcher).await;
    assert_eq!(
        (balance(store, &a).await, balance(store, &b).await),
        (60, 40)
    );
}

/// Runs the runner over the whole log again from the start (a fresh
/// checkpoint, as after a crash before the checkpoint moved) and checks
/// that it writes nothing.
async fn read_again(store: &dyn EventStore, dispatcher: &Arc<Dispatcher>) {
    let head = store.head_position().await.unwrap();
    let checkpoints = store.projection_store().unwrap();
    let live = checkpoints
        .open("saga:transfer-money", 1)
        .await
        .unwrap()
        .live;
    let rewind = allframe::store::projections::Batch::new(
        "saga:transfer-money",
        live.number,
        live.checkpoint,
        0,
        false,
        &[],
    );
    checkpoints.commit(rewind).await.unwrap();
    let again = Sagas::builder(store, dispatcher.clone())
        .saga::<Transfer>()
        .start()
        .await
        .unwrap();
    for _ in 0..100 {
        if checkpoints.checkpoint("saga:transfer-money").await.unwrap() >= head {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        checkpoints.checkpoint("saga:transfer-money").await.unwrap(),
        head
    );
    assert_eq!(
        store.head_position().await.unwrap(),
        head,
        "nothing new was written"
    );
    again.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_nothing_twice() {
    nothing_twice(&MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    nothing_twice(&SqliteStore::open(dir.path().join("bank.db")).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_nothing_twice() {
    let Some(store) = allframe_tests::postgres_store().await else {
        return;
    };
    nothing_twice(&store).await;
}

/// 100 transfers at once among four accounts: every one ends, money is
/// conserved, and the balances are what the completed ones add up to.
async fn concurrent_transfers(store: &dyn EventStore) {
    let Bank { dispatcher, sagas } = bank(store).await;
    let mut accounts = Vec::new();
    for _ in 0..4 {
        accounts.push(open(&dispatcher, 500).await);
    }
    let starts = (0..100usize).map(|i| {
        let (from, to) = (&accounts[i % 4], &accounts[(i + 1 + i / 4 % 3) % 4]);
        let amount = 10 + (i as u64 * 37) % 90;
        async move {
            (
                transfer(store, from, to, amount).await,
                from.clone(),
                to.clone(),
                amount,
            )
        }
    });
    let started = join_all(starts).await;
    let mut expected: std::collections::HashMap<&String, i64> =
        accounts.iter().map(|account| (account, 500)).collect();
    for (id, from, to, amount) in &started {
        let view = ended(&sagas, id).await;
        match view.status.as_str() {
            "completed" => {
                *expected.get_mut(from).unwrap() -= *amount as i64;
                *expected.get_mut(to).unwrap() += *amount as i64;
            }
            "rejected" => assert_eq!(view.reason.as_deref(), Some("insufficient-funds")),
            other => panic!("transfer {id} ended {other}: {:?}", view.reason),
        }
    }
    let mut total = 0;
    for account in &accounts {
        let balance = balance(store, account).await;
        assert_eq!(balance as i64, expected[account], "{account}");
        total += balance;
    }
    assert_eq!(total, 2_000, "money is conserved");
    // Each completed transfer moved money once: one withdrawal and one
    // deposit per saga id.
    let moved = store
        .read_all(0, 100_000, &EventFilter::all().category("account"))
        .await
        .unwrap();
    for (id, ..) in &started {
        let count = moved
            .iter()
            .filter(|event| event.metadata.correlation_id.as_deref() == Some(id.as_str()))
            .count();
        assert!(
            count == 0 || count == 2,
            "transfer {id} moved money {count} times"
        );
    }
    sagas.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_concurrent_transfers() {
    concurrent_transfers(&MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_transfers() {
    let dir = tempfile::tempdir().unwrap();
    concurrent_transfers(&SqliteStore::open(dir.path().join("bank.db")).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_transfers() {
    let Some(store) = allframe_tests::postgres_store().await else {
        return;
    };
    concurrent_transfers(&store).await;
}

/// A transfer started by its command (as over HTTP) has its start decided
/// with its first event, in the command's one append: the runner sends
/// the withdrawal from that record at once and never decides the start
/// again, even when it reads the instance again from the start.
async fn started_by_command(store: &dyn EventStore) {
    let Bank { dispatcher, sagas } = bank(store).await;
    let (payer, payee) = (open(&dispatcher, 100).await, open(&dispatcher, 0).await);
    let command = bank::transfer::TransferMoney {
        from_account_id: payer.clone(),
        to_account_id: payee.clone(),
        amount: 30,
    };
    let started = dispatcher
        .dispatch(command, DispatchOptions::default())
        .await
        .unwrap();
    let types: Vec<&str> = started
        .events
        .iter()
        .map(|e| e.event_type.as_str())
        .collect();
    assert_eq!(
        types,
        ["TransferRequested", allframe::saga::STEP_EVENT_TYPE]
    );
    assert_eq!(started.version, 2);
    let record: serde_json::Value = serde_json::from_str(started.events[1].data.get()).unwrap();
    assert_eq!(record["input"], "start");
    assert_eq!(record["sends"][0]["step"], "withdraw", "{record}");
    assert_eq!(
        started.events[1].metadata.causation_id.as_deref(),
        Some(started.events[0].metadata.event_id.to_string().as_str()),
        "the start record names the first event as its cause"
    );
    let id = started.aggregate_id;
    assert_eq!(ended(&sagas, &id).await.status, "completed");
    assert_eq!(
        (balance(store, &payer).await, balance(store, &payee).await),
        (70, 30)
    );
    sagas.stop().await;
    let recorded = store
        .read_stream(&stream_id::<Transfer>(&id), 1, 100)
        .await
        .unwrap();
    let inputs: Vec<String> = recorded
        .iter()
        .filter(|e| e.event_type == allframe::saga::STEP_EVENT_TYPE)
        .map(|e| {
            let record: serde_json::Value = serde_json::from_str(e.data.get()).unwrap();
            record["input"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(inputs, ["start", "answer:withdraw", "answer:deposit"]);
    // A runner reading everything again decides and sends nothing more.
    read_again(store, &dispatcher).await;
    assert_eq!(
        (balance(store, &payer).await, balance(store, &payee).await),
        (70, 30)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_started_by_command() {
    started_by_command(&MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_started_by_command() {
    let dir = tempfile::tempdir().unwrap();
    started_by_command(&SqliteStore::open(dir.path().join("bank.db")).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_started_by_command() {
    let Some(store) = allframe_tests::postgres_store().await else {
        return;
    };
    started_by_command(&store).await;
}

/// A step recorded longer ago than its idempotency key is kept: the
/// withdrawal ran before a crash and its key has been purged since, so
/// sending it again would withdraw twice. The runner finds the
/// withdrawal's events by their cause (the step record) instead, and goes
/// on from them; a step of the same age whose command never ran is sent.
async fn purged_keys(store: &dyn EventStore) {
    let retention = Duration::from_millis(600);
    let config = allframe::DispatchConfig::default().idempotency_retention(retention);
    let dispatcher = Arc::new(Dispatcher::builder(store).config(config).build().unwrap());
    let (a, b) = (open(&dispatcher, 100).await, open(&dispatcher, 0).await);
    let start = |amount| bank::transfer::TransferMoney {
        from_account_id: a.clone(),
        to_account_id: b.clone(),
        amount,
    };
    let ran = dispatcher
        .dispatch(start(40), DispatchOptions::default())
        .await
        .unwrap();
    let never_ran = dispatcher
        .dispatch(start(5), DispatchOptions::default())
        .await
        .unwrap()
        .aggregate_id;
    // The runner sent the first transfer's withdrawal (under the key it
    // derives, caused by the start record), and the process died before
    // it recorded the answer.
    let id = &ran.aggregate_id;
    let sent = DispatchOptions::default()
        .unclaimed_idempotency_key(format!("saga:transfer-money:{id}:withdraw"))
        .correlation_id(id)
        .causation_id(ran.events[1].metadata.event_id.to_string());
    let withdraw = Withdraw {
        account_id: a.clone(),
        amount: 40,
    };
    dispatcher.dispatch(withdraw, sent).await.unwrap();
    assert_eq!(balance(store, &a).await, 60);
    tokio::time::sleep(retention + Duration::from_millis(100)).await;
    let keys = store.idempotency().unwrap();
    keys.purge_idempotency_keys(retention).await.unwrap();
    let key = format!("saga:transfer-money:{id}:withdraw");
    let claim = keys
        .claim_idempotency_key(&key, "x", Duration::from_secs(1), retention)
        .await
        .unwrap();
    let allframe::store::Claim::Acquired { token } = claim else {
        panic!("the key should be gone: {claim:?}");
    };
    keys.release_idempotency_key(&key, &token).await.unwrap();

    let sagas = Sagas::builder(store, dispatcher.clone())
        .saga::<Transfer>()
        .start()
        .await
        .unwrap();
    assert_eq!(ended(&sagas, id).await.status, "completed");
    assert_eq!(ended(&sagas, &never_ran).await.status, "completed");
    assert_eq!(
        (balance(store, &a).await, balance(store, &b).await),
        (55, 45),
        "each withdrawal ran once"
    );
    sagas.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_purged_keys() {
    purged_keys(&MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_purged_keys() {
    let dir = tempfile::tempdir().unwrap();
    purged_keys(&SqliteStore::open(dir.path().join("bank.db")).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_purged_keys() {
    let Some(store) = allframe_tests::postgres_store().await else {
        return;
    };
    purged_keys(&store).await;
}
