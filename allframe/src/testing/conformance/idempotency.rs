//! Conformance checks for idempotency records: claims, completion in the
//! append's transaction, replay, leases, expiry and purge.

use std::time::Duration;

use super::{assert_conflict, event, events, everything};
use crate::store::{Claim, Completion, MAX_IDEMPOTENCY_KEY_LEN};
use crate::{EventStore, ExpectedVersion, StoreError};

/// A lease no check outlives.
const LONG: Duration = Duration::from_secs(3600);
/// A lease or retention period checks let run out.
const SHORT: Duration = Duration::from_millis(200);
/// How long checks sleep to let [`SHORT`] run out.
const PAST_SHORT: Duration = Duration::from_millis(400);

async fn claim(store: &dyn EventStore, key: &str, fingerprint: &str) -> Claim {
    claim_for(store, key, fingerprint, LONG, LONG).await
}

async fn claim_for(
    store: &dyn EventStore,
    key: &str,
    fingerprint: &str,
    lease: Duration,
    retention: Duration,
) -> Claim {
    store
        .claim_idempotency_key(key, fingerprint, lease, retention)
        .await
        .unwrap_or_else(|e| panic!("claim {key:?}: {e}"))
}

/// A response that names the append it was built from.
fn describe(appended: &crate::Appended) -> String {
    format!(
        "{{\"stream\":\"{}\",\"version\":{},\"position\":{},\"events\":{}}}",
        appended.stream_id,
        appended.version,
        appended.position,
        appended.events.len()
    )
}

/// A key is claimed once, completes with the append that carries its
/// completion, and then replays that response byte for byte; a key
/// completed without events or without a claim replays too, and a
/// completed record keeps its first response.
pub async fn idempotency_claim_complete_replay(store: &dyn EventStore) {
    assert_eq!(claim(store, "key-1", "fp-a").await, Claim::Acquired);
    assert_eq!(
        claim(store, "key-1", "fp-a").await,
        Claim::InFlight,
        "a claimed key is in flight until completed"
    );
    let appended = store
        .append_with(
            "order-1",
            ExpectedVersion::NoStream,
            events("Placed", 2),
            Some(Completion::new("key-1", describe)),
        )
        .await
        .expect("append with a completion");
    assert_eq!((appended.version, appended.position), (2, 2));
    let expected = describe(&appended);
    for _ in 0..2 {
        assert_eq!(
            claim(store, "key-1", "fp-a").await,
            Claim::Completed(expected.clone()),
            "a completed key replays its response"
        );
    }
    assert_eq!(everything(store).await.len(), 2, "replays append nothing");

    // No events: completed directly; the response survives byte for byte.
    let odd = "ünïcödé \u{0} \\ \" \n\t 🦀".to_owned();
    assert_eq!(claim(store, "key-2", "fp-b").await, Claim::Acquired);
    store
        .complete_idempotency_key("key-2", odd.clone())
        .await
        .expect("complete without events");
    assert_eq!(
        claim(store, "key-2", "fp-b").await,
        Claim::Completed(odd.clone())
    );
    store
        .complete_idempotency_key("key-2", "second".into())
        .await
        .expect("completing again is not an error");
    store
        .append_with(
            "order-2",
            ExpectedVersion::Any,
            events("Placed", 1),
            Some(Completion::new("key-2", |_| "third".to_owned())),
        )
        .await
        .expect("an append completing a completed key still appends");
    assert_eq!(
        claim(store, "key-2", "fp-b").await,
        Claim::Completed(odd),
        "a completed record keeps its first response"
    );

    // Completing a key nobody claimed records it; it replays to anyone.
    store
        .complete_idempotency_key("key-3", "done".into())
        .await
        .expect("complete an unclaimed key");
    assert_eq!(
        claim(store, "key-3", "any").await,
        Claim::Completed("done".into())
    );
    let unclaimed = store
        .append_with(
            "order-3",
            ExpectedVersion::NoStream,
            events("Placed", 1),
            Some(Completion::new("key-4", describe)),
        )
        .await
        .unwrap();
    assert_eq!(
        claim(store, "key-4", "whatever").await,
        Claim::Completed(describe(&unclaimed))
    );
    assert_eq!(claim(store, "key-5", "").await, Claim::Acquired);
    assert_eq!(
        claim(store, "key-5", "").await,
        Claim::InFlight,
        "an empty fingerprint is a fingerprint like any other"
    );
}

/// A key used with a different fingerprint is a mismatch, whether its
/// record is in flight or completed, and however its lease stands.
pub async fn idempotency_mismatch(store: &dyn EventStore) {
    assert_eq!(claim(store, "key-1", "fp-a").await, Claim::Acquired);
    assert_eq!(claim(store, "key-1", "fp-b").await, Claim::Mismatch);
    assert_eq!(
        claim(store, "key-1", "fp-a").await,
        Claim::InFlight,
        "a mismatch changes nothing"
    );
    store
        .complete_idempotency_key("key-1", "r".into())
        .await
        .unwrap();
    assert_eq!(claim(store, "key-1", "fp-b").await, Claim::Mismatch);
    assert_eq!(
        claim(store, "key-1", "FP-A").await,
        Claim::Mismatch,
        "fingerprints compare exactly"
    );
    assert_eq!(
        claim(store, "key-1", "fp-a").await,
        Claim::Completed("r".into())
    );
    assert_eq!(
        claim_for(store, "key-2", "fp-a", SHORT, LONG).await,
        Claim::Acquired
    );
    tokio::time::sleep(PAST_SHORT).await;
    assert_eq!(
        claim(store, "key-2", "fp-b").await,
        Claim::Mismatch,
        "a run-out lease is not taken over with another fingerprint"
    );
}

/// An in-flight claim blocks others while its lease runs and is taken
/// over once it ran out; the new holder gets a new lease.
pub async fn idempotency_lease_take_over(store: &dyn EventStore) {
    assert_eq!(
        claim_for(store, "key-1", "fp", SHORT, LONG).await,
        Claim::Acquired
    );
    assert_eq!(claim(store, "key-1", "fp").await, Claim::InFlight);
    tokio::time::sleep(PAST_SHORT).await;
    assert_eq!(
        claim(store, "key-1", "fp").await,
        Claim::Acquired,
        "a lease that ran out is taken over"
    );
    assert_eq!(
        claim(store, "key-1", "fp").await,
        Claim::InFlight,
        "the take-over holds a new lease"
    );
    store
        .complete_idempotency_key("key-1", "r".into())
        .await
        .unwrap();
    assert_eq!(
        claim(store, "key-1", "fp").await,
        Claim::Completed("r".into())
    );
}

/// Records older than the retention period count as absent, and purging
/// deletes exactly those, returning how many.
pub async fn idempotency_expiry_and_purge(store: &dyn EventStore) {
    for key in ["old-done", "old-kept"] {
        assert_eq!(claim(store, key, "fp").await, Claim::Acquired);
        store
            .complete_idempotency_key(key, format!("{key}-response"))
            .await
            .unwrap();
    }
    assert_eq!(claim(store, "old-in-flight", "fp").await, Claim::Acquired);
    assert_eq!(claim(store, "old-purged", "fp").await, Claim::Acquired);
    tokio::time::sleep(PAST_SHORT).await;
    assert_eq!(claim(store, "new", "fp").await, Claim::Acquired);

    assert_eq!(
        claim(store, "old-kept", "fp").await,
        Claim::Completed("old-kept-response".into()),
        "within a long retention an old record still counts"
    );
    assert_eq!(
        claim_for(store, "old-done", "other", LONG, SHORT).await,
        Claim::Acquired,
        "an expired completed record is replaced, whatever the fingerprint"
    );
    assert_eq!(
        claim_for(store, "old-done", "other", LONG, SHORT).await,
        Claim::InFlight,
        "the replacement is a fresh claim"
    );
    assert_eq!(
        claim_for(store, "old-in-flight", "other", LONG, SHORT).await,
        Claim::Acquired,
        "an expired in-flight record is replaced despite its lease"
    );

    assert_eq!(
        store.purge_idempotency_keys(LONG).await.unwrap(),
        0,
        "nothing is older than the long retention"
    );
    assert_eq!(
        store.purge_idempotency_keys(SHORT).await.unwrap(),
        2,
        "exactly old-kept and old-purged are older than the short retention"
    );
    assert_eq!(store.purge_idempotency_keys(SHORT).await.unwrap(), 0);
    assert_eq!(
        claim(store, "old-kept", "other").await,
        Claim::Acquired,
        "a purged key is new again"
    );
    assert_eq!(claim(store, "old-purged", "fp").await, Claim::Acquired);
    assert_eq!(claim(store, "new", "fp").await, Claim::InFlight);
    assert_eq!(claim(store, "old-done", "other").await, Claim::InFlight);
}

/// The completion and the events commit together: a refused append
/// leaves the record untouched, and appends completing keys
/// concurrently each store their own response.
pub async fn idempotency_completion_is_atomic_with_append(store: &dyn EventStore) {
    store
        .append("acct-1", ExpectedVersion::NoStream, events("Opened", 1))
        .await
        .unwrap();
    assert_eq!(claim(store, "key-1", "fp").await, Claim::Acquired);
    let refused = store
        .append_with(
            "acct-1",
            ExpectedVersion::NoStream,
            events("Opened", 1),
            Some(Completion::new("key-1", describe)),
        )
        .await;
    assert_conflict(refused, 1);
    let error = store
        .append_with(
            "acct-1",
            ExpectedVersion::Any,
            vec![event("bad type", 1)],
            Some(Completion::new("key-1", describe)),
        )
        .await
        .expect_err("invalid events are refused");
    assert!(error.is_invalid_input(), "{error:?}");
    let error = store
        .append_with(
            "acct-1",
            ExpectedVersion::Any,
            events("Deposited", 1),
            Some(Completion::new("key-1", |_| {
                panic!("response builder fails")
            })),
        )
        .await
        .expect_err("a failing response builder fails the append");
    assert!(matches!(error, StoreError::Backend(_)), "{error:?}");
    assert_eq!(
        claim(store, "key-1", "fp").await,
        Claim::InFlight,
        "refused appends leave the claim in flight"
    );
    store
        .append_with(
            "acct-2",
            ExpectedVersion::Exact(1),
            events("Opened", 1),
            Some(Completion::new("key-never", describe)),
        )
        .await
        .expect_err("a refused append");
    assert_eq!(
        claim(store, "key-never", "fp").await,
        Claim::Acquired,
        "a refused append records no completion"
    );
    assert_eq!(
        everything(store).await.len(),
        1,
        "refused appends store nothing"
    );

    let done = store
        .append_with(
            "acct-1",
            ExpectedVersion::Exact(1),
            events("Deposited", 1),
            Some(Completion::new("key-1", describe)),
        )
        .await
        .expect("the store still works after a failed builder");
    assert_eq!(
        (done.version, done.position),
        (2, 2),
        "no position was used up"
    );
    assert_eq!(
        claim(store, "key-1", "fp").await,
        Claim::Completed(describe(&done))
    );

    // Concurrent appends (one group-commit batch on SQL backends): each
    // stores the response of its own events.
    const APPENDS: usize = 32;
    let append = |i: usize| async move {
        let key = format!("batch-{i}");
        assert_eq!(claim(store, &key, "fp").await, Claim::Acquired);
        // Every third append is refused by its expected version.
        let expected = if i.is_multiple_of(3) {
            ExpectedVersion::Exact(7)
        } else {
            ExpectedVersion::NoStream
        };
        let outcome = store
            .append_with(
                &format!("batch-{i}"),
                expected,
                events("Placed", 1 + i as u64 % 2),
                Some(Completion::new(key, describe)),
            )
            .await;
        (i, outcome)
    };
    let outcomes = futures_util::future::join_all((0..APPENDS).map(append)).await;
    for (i, outcome) in outcomes {
        let key = format!("batch-{i}");
        let answer = claim(store, &key, "fp").await;
        if i.is_multiple_of(3) {
            assert_conflict(outcome, 0);
            assert_eq!(answer, Claim::InFlight, "{key}");
        } else {
            let appended = outcome.unwrap_or_else(|e| panic!("{key}: {e}"));
            assert_eq!(answer, Claim::Completed(describe(&appended)), "{key}");
        }
    }
}

/// Of many concurrent claims of one key exactly one acquires it: a new
/// key, an in-flight key whose lease ran out, and an expired record.
pub async fn idempotency_concurrent_claims(store: &dyn EventStore) {
    const CLAIMS: usize = 16;
    let race = |key: &'static str, lease: Duration, retention: Duration| async move {
        let claims = (0..CLAIMS).map(|_| claim_for(store, key, "fp", lease, retention));
        let answers = futures_util::future::join_all(claims).await;
        let acquired = answers.iter().filter(|a| **a == Claim::Acquired).count();
        let in_flight = answers.iter().filter(|a| **a == Claim::InFlight).count();
        assert_eq!((acquired, in_flight), (1, CLAIMS - 1), "{key}: {answers:?}");
    };
    for key in ["new-1", "new-2", "new-3"] {
        race(key, LONG, LONG).await;
    }
    assert_eq!(
        claim_for(store, "lease-over", "fp", SHORT, LONG).await,
        Claim::Acquired
    );
    assert_eq!(claim(store, "expired", "fp").await, Claim::Acquired);
    store
        .complete_idempotency_key("expired", "r".into())
        .await
        .unwrap();
    tokio::time::sleep(PAST_SHORT).await;
    race("lease-over", LONG, LONG).await;
    race("expired", LONG, SHORT).await;
}

/// Release gives an in-flight key back but never deletes a completed
/// record; releasing an unknown key does nothing.
pub async fn idempotency_release(store: &dyn EventStore) {
    assert_eq!(claim(store, "key-1", "fp-a").await, Claim::Acquired);
    store.release_idempotency_key("key-1").await.unwrap();
    assert_eq!(
        claim(store, "key-1", "fp-b").await,
        Claim::Acquired,
        "a released key is free for any request"
    );
    store
        .complete_idempotency_key("key-1", "r".into())
        .await
        .unwrap();
    store.release_idempotency_key("key-1").await.unwrap();
    assert_eq!(
        claim(store, "key-1", "fp-b").await,
        Claim::Completed("r".into()),
        "a completed record survives release"
    );
    store
        .release_idempotency_key("never-claimed")
        .await
        .expect("releasing an unknown key is not an error");
    assert_eq!(claim(store, "never-claimed", "fp").await, Claim::Acquired);
}

/// Malformed idempotency keys are typed input errors everywhere, and an
/// append carrying one stores nothing.
pub async fn idempotency_invalid_keys(store: &dyn EventStore) {
    let long = "k".repeat(MAX_IDEMPOTENCY_KEY_LEN + 1);
    for key in ["", long.as_str(), "line\nbreak", "nul\0", "del\u{7f}"] {
        let check = |what: &str, result: crate::store::Result<()>| {
            let error = result.expect_err(what);
            assert!(
                matches!(error, StoreError::InvalidIdempotencyKey { .. }),
                "{what} {key:?}: {error:?}"
            );
            assert!(error.is_invalid_input(), "{what}: {error:?}");
        };
        check(
            "claim",
            store
                .claim_idempotency_key(key, "fp", LONG, LONG)
                .await
                .map(drop),
        );
        check(
            "complete",
            store.complete_idempotency_key(key, "r".into()).await,
        );
        check("release", store.release_idempotency_key(key).await);
        check(
            "append_with",
            store
                .append_with(
                    "s-1",
                    ExpectedVersion::Any,
                    events("Ok", 1),
                    Some(Completion::new(key, describe)),
                )
                .await
                .map(drop),
        );
    }
    assert!(everything(store).await.is_empty(), "nothing was appended");
    let max = "k".repeat(MAX_IDEMPOTENCY_KEY_LEN);
    assert_eq!(claim(store, &max, "fp").await, Claim::Acquired);
    assert_eq!(claim(store, "ünïcödé key 🦀", "fp").await, Claim::Acquired);
}
