//! The conformance suite on the in-memory backend, plain and journaled, and
//! what a journal adds: the log rebuilt from its commits, and writes that
//! stop when a journal write's outcome is unknown.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use allframe::store::{Claim, Commit, Journal, MemoryStore};
use allframe::{EventStore, ExpectedVersion, NewEvent, StoreError};
use futures_util::future::BoxFuture;

allframe::store_conformance_tests!(async { MemoryStore::new() });

/// A journal in memory: the commits it was given, and how its next write
/// fails, if it does.
#[derive(Default)]
struct Recorder {
    commits: Mutex<Vec<Commit>>,
    fail_next: Mutex<Option<StoreError>>,
    panic_next: Mutex<bool>,
    closed: Mutex<bool>,
}

impl Recorder {
    fn commits(&self) -> Vec<Commit> {
        self.commits.lock().unwrap().clone()
    }
}

impl Journal for Recorder {
    fn write<'a>(&'a self, commit: &'a Commit) -> BoxFuture<'a, allframe::store::Result<()>> {
        Box::pin(async move {
            if let Some(error) = self.fail_next.lock().unwrap().take() {
                return Err(error);
            }
            if std::mem::take(&mut *self.panic_next.lock().unwrap()) {
                panic!("the journal broke mid-write");
            }
            self.commits.lock().unwrap().push(commit.clone());
            Ok(())
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move { *self.closed.lock().unwrap() = true })
    }
}

mod journaled {
    use super::*;

    allframe::store_conformance_tests!(async {
        MemoryStore::journaled(Arc::new(Recorder::default()), []).unwrap()
    });
}

fn event(n: u64) -> NewEvent {
    NewEvent::new("Noted", &serde_json::json!({ "n": n }))
}

#[tokio::test]
async fn a_journaled_log_is_rebuilt_from_its_commits() {
    let journal = Arc::new(Recorder::default());
    let store = MemoryStore::journaled(journal.clone(), []).unwrap();
    let reopen = async || {
        assert!(
            *journal.closed.lock().unwrap(),
            "closing the store closes its journal"
        );
        MemoryStore::journaled(Arc::new(Recorder::default()), journal.commits()).unwrap()
    };
    allframe::testing::conformance::log_survives_reopen(store, reopen).await;
    let commits = journal.commits();
    assert_eq!(
        commits.len(),
        4,
        "three appends and a completion on its own"
    );
    assert!(commits[3].events.is_empty());
    assert_eq!(commits[2].keys[0].key, "k1");
    assert_eq!(commits[2].keys[0].fingerprint, "f1");
}

#[tokio::test]
async fn a_closed_store_takes_no_writes_and_keys_in_flight_are_not_journaled() {
    let journal = Arc::new(Recorder::default());
    let store = MemoryStore::journaled(journal.clone(), []).unwrap();
    let records = store.idempotency().unwrap();
    let hour = Duration::from_secs(3600);
    let claimed = records
        .claim_idempotency_key("k", "f", hour, hour)
        .await
        .unwrap();
    assert!(matches!(claimed, Claim::Acquired { .. }));
    store.close().await;
    assert!(matches!(
        store
            .append("note-c", ExpectedVersion::Any, vec![event(7)])
            .await,
        Err(StoreError::Closed)
    ));
    assert!(journal.commits().is_empty());
    let reopened =
        MemoryStore::journaled(Arc::new(Recorder::default()), journal.commits()).unwrap();
    let claimed = reopened
        .idempotency()
        .unwrap()
        .claim_idempotency_key("k", "f", hour, hour)
        .await;
    assert!(matches!(claimed.unwrap(), Claim::Acquired { .. }));
}

#[tokio::test]
async fn commits_that_do_not_follow_on_are_refused_at_open() {
    let journal = Arc::new(Recorder::default());
    let store = MemoryStore::journaled(journal.clone(), []).unwrap();
    for n in 0..3 {
        store
            .append("note-a", ExpectedVersion::Any, vec![event(n)])
            .await
            .unwrap();
    }
    let commits = journal.commits();

    let mut skipped = commits.clone();
    skipped.remove(1);
    let error = MemoryStore::journaled(Arc::new(Recorder::default()), skipped).unwrap_err();
    assert!(error.to_string().contains("does not follow on"), "{error}");

    let mut repeated = commits.clone();
    repeated.insert(1, commits[0].clone());
    assert!(MemoryStore::journaled(Arc::new(Recorder::default()), repeated).is_err());

    let mut renumbered = commits;
    renumbered[2].events[0].version = 7;
    assert!(MemoryStore::journaled(Arc::new(Recorder::default()), renumbered).is_err());
}

#[tokio::test]
async fn an_unknown_journal_outcome_stops_writes_and_nothing_written_does_not() {
    let journal = Arc::new(Recorder::default());
    let store = MemoryStore::journaled(journal.clone(), []).unwrap();
    store
        .append("note-a", ExpectedVersion::NoStream, vec![event(1)])
        .await
        .unwrap();

    // Refused before anything was written: the store goes on.
    *journal.fail_next.lock().unwrap() = Some(StoreError::BatchSize(0));
    let refused = store
        .append("note-a", ExpectedVersion::Exact(1), vec![event(2)])
        .await;
    assert!(matches!(refused, Err(StoreError::BatchSize(0))));
    assert_eq!(
        store.head_position().await.unwrap(),
        1,
        "a refused commit is not applied"
    );
    store
        .append("note-a", ExpectedVersion::Exact(1), vec![event(3)])
        .await
        .unwrap();

    // Could not take it now (nothing written): the store goes on too.
    *journal.fail_next.lock().unwrap() = Some(StoreError::Unavailable("busy".into()));
    let unavailable = store
        .append("note-a", ExpectedVersion::Exact(2), vec![event(4)])
        .await;
    assert!(matches!(unavailable, Err(StoreError::Unavailable(_))));
    store
        .append("note-a", ExpectedVersion::Exact(2), vec![event(4)])
        .await
        .unwrap();

    // Failed with its outcome unknown: nothing applied, and no later write.
    *journal.fail_next.lock().unwrap() = Some(StoreError::Backend("disk gone".into()));
    let failed = store
        .append("note-a", ExpectedVersion::Exact(3), vec![event(5)])
        .await;
    assert!(matches!(failed, Err(StoreError::Backend(_))));
    assert_eq!(store.head_position().await.unwrap(), 3);
    let later = store
        .append("note-b", ExpectedVersion::Any, vec![event(5)])
        .await
        .unwrap_err();
    assert!(
        later.to_string().contains("open the store again"),
        "{later}"
    );
    let records = store.idempotency().unwrap();
    let hour = Duration::from_secs(3600);
    assert!(
        records
            .claim_idempotency_key("k", "f", hour, hour)
            .await
            .is_err()
    );
    // Reads go on.
    assert_eq!(store.read_stream("note-a", 0, 10).await.unwrap().len(), 3);
    assert_eq!(journal.commits().len(), 3);
}

#[tokio::test]
async fn a_journal_write_that_never_answers_stops_writes() {
    let journal = Arc::new(Recorder::default());
    let store = MemoryStore::journaled(journal.clone(), []).unwrap();
    *journal.panic_next.lock().unwrap() = true;
    let broken = store
        .append("note-a", ExpectedVersion::NoStream, vec![event(1)])
        .await;
    assert!(matches!(broken, Err(StoreError::Backend(_))), "{broken:?}");
    let later = store
        .append("note-a", ExpectedVersion::NoStream, vec![event(2)])
        .await
        .unwrap_err();
    assert!(later.to_string().contains("did not finish"), "{later}");
    assert_eq!(store.head_position().await.unwrap(), 0);
}
