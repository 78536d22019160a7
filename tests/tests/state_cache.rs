//! The dispatcher's aggregate state cache: a command on a cached aggregate
//! reads nothing before deciding, the cache only ever holds committed
//! states, a stale entry costs a retry, and the bounds hold.

use allframe::{CommandError, DispatchConfig, DispatchOptions, Dispatcher, load};
use allframe_tests::faulty::{Fault, Faulty};
use bank::domain::{Account, CloseAccount, Deposit, OpenAccount, Withdraw};

fn dispatcher(store: &Faulty, config: DispatchConfig) -> Dispatcher {
    Dispatcher::builder(store).config(config).build().unwrap()
}

/// Opens an account and returns its id.
async fn open(dispatcher: &Dispatcher) -> String {
    let opened = dispatcher
        .dispatch(
            OpenAccount {
                owner: "Ada".into(),
                email: "ada@example.com".into(),
                initial_deposit: 0,
                currency: None,
            },
            DispatchOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(opened.version, 1);
    opened.aggregate_id
}

async fn deposit(dispatcher: &Dispatcher, id: &str, amount: u64) -> Result<u64, CommandError> {
    let deposit = Deposit {
        account_id: id.into(),
        amount,
    };
    let outcome = dispatcher
        .dispatch(deposit, DispatchOptions::default())
        .await?;
    Ok(outcome.version)
}

async fn withdraw(dispatcher: &Dispatcher, id: &str, amount: u64) -> Result<u64, CommandError> {
    let withdraw = Withdraw {
        account_id: id.into(),
        amount,
    };
    let outcome = dispatcher
        .dispatch(withdraw, DispatchOptions::default())
        .await?;
    Ok(outcome.version)
}

async fn balance(store: &Faulty, id: &str) -> u64 {
    load::<Account>(store, id).await.unwrap().state.balance
}

#[tokio::test]
async fn a_cached_aggregate_is_decided_without_reading_its_stream() {
    let store = Faulty::new();
    let cached = dispatcher(&store, DispatchConfig::default());
    let a = open(&cached).await;
    for expected in 2..=4 {
        assert_eq!(deposit(&cached, &a, 10).await.unwrap(), expected);
    }
    assert_eq!(
        store.stream_reads(),
        0,
        "the create's append checked the stream was new, and each deposit's append that the state was current"
    );
    assert_eq!(cached.state_cache_usage().entries, 1);

    // A refusal is answered only after reading what came after the cached
    // version: one read, which finds nothing.
    let refused = withdraw(&cached, &a, 31).await.unwrap_err();
    assert_eq!(refused.code(), "insufficient-funds");
    assert_eq!(store.stream_reads(), 1);
    // So is a decision on no events... and a failed precondition.
    let stale = DispatchOptions::default().expected_version(3);
    let error = cached
        .dispatch(
            Deposit {
                account_id: a.clone(),
                amount: 1,
            },
            stale,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, CommandError::PreconditionFailed { actual: 4, .. }),
        "{error:?}"
    );
    assert_eq!(store.stream_reads(), 2);

    // Without the cache, every command reads its stream.
    let uncached = dispatcher(&store, DispatchConfig::default().state_cache(0, 0));
    assert_eq!(deposit(&uncached, &a, 1).await.unwrap(), 5);
    assert_eq!(deposit(&uncached, &a, 1).await.unwrap(), 6);
    assert_eq!(store.stream_reads(), 4);
    assert_eq!(uncached.state_cache_usage().entries, 0);
}

#[tokio::test]
async fn a_failed_append_leaves_the_cached_state_as_committed() {
    let store = Faulty::new();
    let dispatcher = dispatcher(&store, DispatchConfig::default());
    let a = open(&dispatcher).await;
    assert_eq!(deposit(&dispatcher, &a, 10).await.unwrap(), 2);
    store.set(Some(Fault::Unreachable));
    let error = deposit(&dispatcher, &a, 5).await.unwrap_err();
    assert!(matches!(error, CommandError::Store(_)), "{error:?}");
    store.set(Some(Fault::Conflict));
    let error = deposit(&dispatcher, &a, 6).await.unwrap_err();
    assert_eq!(error.code(), "conflict", "{error:?}");
    store.set(None);
    // Neither the refused 5 nor the conflicting 6 is in the state.
    assert_eq!(deposit(&dispatcher, &a, 7).await.unwrap(), 3);
    assert_eq!(
        withdraw(&dispatcher, &a, 18).await.unwrap_err().code(),
        "insufficient-funds"
    );
    assert_eq!(withdraw(&dispatcher, &a, 17).await.unwrap(), 4);
    assert_eq!(balance(&store, &a).await, 0);
}

#[tokio::test]
async fn a_stale_entry_is_a_conflict_then_a_retry_on_the_tail() {
    let store = Faulty::new();
    let one = dispatcher(&store, DispatchConfig::default());
    let other = dispatcher(&store, DispatchConfig::default());
    let a = open(&one).await;
    assert_eq!(deposit(&one, &a, 10).await.unwrap(), 2);
    // The other dispatcher has no entry: it reads the stream.
    assert_eq!(deposit(&other, &a, 100).await.unwrap(), 3);
    assert_eq!(store.stream_reads(), 1);
    // One's entry (version 2) is stale: the append conflicts, it reads
    // only the tail and decides again.
    assert_eq!(withdraw(&one, &a, 110).await.unwrap(), 4);
    assert_eq!(store.stream_reads(), 2);
    // The other's entry is stale now; closing needs a zero balance, which
    // it sees only after the tail.
    let closed = other
        .dispatch(
            CloseAccount {
                account_id: a.clone(),
            },
            DispatchOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(closed.version, 5);
    assert_eq!(
        deposit(&one, &a, 1).await.unwrap_err().code(),
        "account-closed"
    );
    assert_eq!(balance(&store, &a).await, 0);
}

#[tokio::test]
async fn the_cache_keeps_to_its_bounds() {
    let store = Faulty::new();
    let dispatcher = dispatcher(&store, DispatchConfig::default().state_cache(10, 1 << 20));
    let mut ids = Vec::new();
    for _ in 0..25 {
        ids.push(open(&dispatcher).await);
    }
    assert_eq!(dispatcher.state_cache_usage().entries, 10);
    // The most recent ten are cached: no reads.
    for id in &ids[15..] {
        deposit(&dispatcher, id, 1).await.unwrap();
    }
    assert_eq!(store.stream_reads(), 0);
    // An evicted one is read again.
    deposit(&dispatcher, &ids[0], 1).await.unwrap();
    assert_eq!(store.stream_reads(), 1);

    // A byte bound of three entries' worth keeps three.
    let per_entry = {
        let probe = dispatcher_with(&store, 100, 1 << 20);
        open(&probe).await;
        probe.state_cache_usage().bytes
    };
    let small = dispatcher_with(&store, 100, per_entry * 3);
    for _ in 0..10 {
        open(&small).await;
    }
    let usage = small.state_cache_usage();
    assert_eq!(usage.entries, 3, "{usage:?}");
    assert!(usage.bytes <= per_entry * 3, "{usage:?}");
}

fn dispatcher_with(store: &Faulty, entries: usize, bytes: usize) -> Dispatcher {
    dispatcher(store, DispatchConfig::default().state_cache(entries, bytes))
}
