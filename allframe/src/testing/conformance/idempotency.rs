//! Conformance checks for idempotency records: claims, completion in the
//! append's transaction, replay, leases, expiry and purge.

use std::time::Duration;

use super::{assert_conflict, event, events, everything};
use crate::store::{Claim, Completion, IdempotencyStore, MAX_IDEMPOTENCY_KEY_LEN};
use crate::{EventStore, ExpectedVersion, StoreError};

/// A lease no check outlives.
const LONG: Duration = Duration::from_secs(3600);
/// A lease or retention period checks let run out.
const SHORT: Duration = Duration::from_millis(200);
/// How long checks sleep to let [`SHORT`] run out.
const PAST_SHORT: Duration = Duration::from_millis(400);

/// The idempotency records of the store under test: these cases are for
/// stores that keep them.
fn records(store: &dyn EventStore) -> &dyn IdempotencyStore {
    store
        .idempotency()
        .expect("the idempotency cases need a store that keeps idempotency records")
}

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
    records(store)
        .claim_idempotency_key(key, fingerprint, lease, retention)
        .await
        .unwrap_or_else(|e| panic!("claim {key:?}: {e}"))
}

/// The token of a claim that must have acquired its key.
#[track_caller]
fn acquired(claim: Claim, what: &str) -> String {
    match claim {
        Claim::Acquired { token } => token,
        other => panic!("{what}: expected Acquired, got {other:?}"),
    }
}

/// Claims a key that must be acquired (with a long lease) and returns the
/// claim's token.
async fn acquire(store: &dyn EventStore, key: &str, fingerprint: &str) -> String {
    acquired(claim(store, key, fingerprint).await, key)
}

/// Checks that a completion was refused because its token lost the key.
#[track_caller]
fn assert_lost<T: std::fmt::Debug>(result: crate::store::Result<T>, key: &str, what: &str) {
    match result {
        Err(StoreError::IdempotencyKeyLost { key: lost }) => {
            assert_eq!(lost, key, "{what}: the error names the key");
        }
        other => panic!("{what}: expected IdempotencyKeyLost, got {other:?}"),
    }
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
/// completed without events replays too, and a completed record keeps its
/// first response: completing it again is refused and writes nothing. A
/// key nobody claimed cannot be completed.
pub async fn idempotency_claim_complete_replay(store: &dyn EventStore) {
    let token = acquire(store, "key-1", "fp-a").await;
    assert_eq!(
        claim(store, "key-1", "fp-a").await,
        Claim::InFlight,
        "a claimed key is in flight until completed"
    );
    let appended = records(store)
        .append_with(
            "order-1",
            ExpectedVersion::NoStream,
            events("Placed", 2),
            vec![Completion::new("key-1", token.clone(), describe)],
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
    assert_lost(
        records(store)
            .append_with(
                "order-1",
                ExpectedVersion::Any,
                events("Placed", 1),
                vec![Completion::new("key-1", token, describe)],
            )
            .await,
        "key-1",
        "an append completing a completed key",
    );
    assert_eq!(
        everything(store).await.len(),
        2,
        "a refused completion appends nothing"
    );

    // No events: completed directly; the response survives byte for byte.
    let odd = "ünïcödé \u{0} \\ \" \n\t 🦀".to_owned();
    let token = acquire(store, "key-2", "fp-b").await;
    records(store)
        .complete_idempotency_key("key-2", &token, odd.clone())
        .await
        .expect("complete without events");
    assert_eq!(
        claim(store, "key-2", "fp-b").await,
        Claim::Completed(odd.clone())
    );
    assert_lost(
        records(store)
            .complete_idempotency_key("key-2", &token, "second".into())
            .await,
        "key-2",
        "completing a completed key",
    );
    assert_lost(
        records(store)
            .append_with(
                "order-2",
                ExpectedVersion::Any,
                events("Placed", 1),
                vec![Completion::new("key-2", token, |_| "third".to_owned())],
            )
            .await,
        "key-2",
        "an append completing a key completed without events",
    );
    assert_eq!(
        claim(store, "key-2", "fp-b").await,
        Claim::Completed(odd),
        "a completed record keeps its first response"
    );
    assert_eq!(everything(store).await.len(), 2);

    // A key nobody claimed cannot be completed, with or without events.
    assert_lost(
        records(store)
            .complete_idempotency_key("key-3", "some-token", "done".into())
            .await,
        "key-3",
        "completing an unclaimed key",
    );
    assert_lost(
        records(store)
            .append_with(
                "order-3",
                ExpectedVersion::NoStream,
                events("Placed", 1),
                vec![Completion::new("key-4", "some-token", describe)],
            )
            .await,
        "key-4",
        "an append completing an unclaimed key",
    );
    assert_eq!(everything(store).await.len(), 2);
    for key in ["key-3", "key-4"] {
        acquired(
            claim(store, key, "whatever").await,
            "a refused completion records nothing",
        );
    }
    let first = acquire(store, "key-5", "").await;
    assert_eq!(
        claim(store, "key-5", "").await,
        Claim::InFlight,
        "an empty fingerprint is a fingerprint like any other"
    );
    let other = acquire(store, "key-6", "").await;
    assert_ne!(first, other, "every claim gets its own token");
}

/// A key used with a different fingerprint is a mismatch, whether its
/// record is in flight or completed, and however its lease stands.
pub async fn idempotency_mismatch(store: &dyn EventStore) {
    let token = acquire(store, "key-1", "fp-a").await;
    assert_eq!(claim(store, "key-1", "fp-b").await, Claim::Mismatch);
    assert_eq!(
        claim(store, "key-1", "fp-a").await,
        Claim::InFlight,
        "a mismatch changes nothing"
    );
    records(store)
        .complete_idempotency_key("key-1", &token, "r".into())
        .await
        .expect("a mismatch leaves the holder's token in place");
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
    acquired(
        claim_for(store, "key-2", "fp-a", SHORT, LONG).await,
        "key-2",
    );
    tokio::time::sleep(PAST_SHORT).await;
    assert_eq!(
        claim(store, "key-2", "fp-b").await,
        Claim::Mismatch,
        "a run-out lease is not taken over with another fingerprint"
    );
}

/// An in-flight claim blocks others while its lease runs and is taken
/// over once it ran out; the new holder gets a new token and a new lease,
/// and only its token completes the key.
pub async fn idempotency_lease_take_over(store: &dyn EventStore) {
    let first = acquired(claim_for(store, "key-1", "fp", SHORT, LONG).await, "key-1");
    assert_eq!(claim(store, "key-1", "fp").await, Claim::InFlight);
    tokio::time::sleep(PAST_SHORT).await;
    let second = acquired(
        claim(store, "key-1", "fp").await,
        "a lease that ran out is taken over",
    );
    assert_ne!(first, second, "a take-over gets a new token");
    assert_eq!(
        claim(store, "key-1", "fp").await,
        Claim::InFlight,
        "the take-over holds a new lease"
    );
    assert_lost(
        records(store)
            .complete_idempotency_key("key-1", &first, "stale".into())
            .await,
        "key-1",
        "the taken-over holder completing",
    );
    records(store)
        .complete_idempotency_key("key-1", &second, "r".into())
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
        let token = acquire(store, key, "fp").await;
        records(store)
            .complete_idempotency_key(key, &token, format!("{key}-response"))
            .await
            .unwrap();
    }
    let old_in_flight = acquire(store, "old-in-flight", "fp").await;
    let old_purged = acquire(store, "old-purged", "fp").await;
    tokio::time::sleep(PAST_SHORT).await;
    acquire(store, "new", "fp").await;

    assert_eq!(
        claim(store, "old-kept", "fp").await,
        Claim::Completed("old-kept-response".into()),
        "within a long retention an old record still counts"
    );
    acquired(
        claim_for(store, "old-done", "other", LONG, SHORT).await,
        "an expired completed record is replaced, whatever the fingerprint",
    );
    assert_eq!(
        claim_for(store, "old-done", "other", LONG, SHORT).await,
        Claim::InFlight,
        "the replacement is a fresh claim"
    );
    acquired(
        claim_for(store, "old-in-flight", "other", LONG, SHORT).await,
        "an expired in-flight record is replaced despite its lease",
    );
    assert_lost(
        records(store)
            .complete_idempotency_key("old-in-flight", &old_in_flight, "r".into())
            .await,
        "old-in-flight",
        "the holder of a replaced record completing",
    );

    assert_eq!(
        records(store).purge_idempotency_keys(LONG).await.unwrap(),
        0,
        "nothing is older than the long retention"
    );
    assert_eq!(
        records(store).purge_idempotency_keys(SHORT).await.unwrap(),
        2,
        "exactly old-kept and old-purged are older than the short retention"
    );
    assert_eq!(
        records(store).purge_idempotency_keys(SHORT).await.unwrap(),
        0
    );
    assert_lost(
        records(store)
            .complete_idempotency_key("old-purged", &old_purged, "r".into())
            .await,
        "old-purged",
        "the holder of a purged record completing",
    );
    acquired(
        claim(store, "old-kept", "other").await,
        "a purged key is new again",
    );
    acquire(store, "old-purged", "fp").await;
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
    let token = acquire(store, "key-1", "fp").await;
    let completion = || vec![Completion::new("key-1", token.clone(), describe)];
    let refused = records(store)
        .append_with(
            "acct-1",
            ExpectedVersion::NoStream,
            events("Opened", 1),
            completion(),
        )
        .await;
    assert_conflict(refused, 1);
    let error = records(store)
        .append_with(
            "acct-1",
            ExpectedVersion::Any,
            vec![event("bad type", 1)],
            completion(),
        )
        .await
        .expect_err("invalid events are refused");
    assert!(error.is_invalid_input(), "{error:?}");
    let error = records(store)
        .append_with(
            "acct-1",
            ExpectedVersion::Any,
            events("Deposited", 1),
            vec![Completion::new("key-1", token.clone(), |_| {
                panic!("response builder fails")
            })],
        )
        .await
        .expect_err("a failing response builder fails the append");
    assert!(matches!(error, StoreError::Backend(_)), "{error:?}");
    assert_eq!(
        claim(store, "key-1", "fp").await,
        Claim::InFlight,
        "refused appends leave the claim in flight"
    );
    assert_eq!(
        everything(store).await.len(),
        1,
        "refused appends store nothing"
    );

    let done = records(store)
        .append_with(
            "acct-1",
            ExpectedVersion::Exact(1),
            events("Deposited", 1),
            completion(),
        )
        .await
        .expect("the claim still holds after refused appends");
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
        let token = acquire(store, &key, "fp").await;
        // Every third append is refused by its expected version.
        let expected = if i.is_multiple_of(3) {
            ExpectedVersion::Exact(7)
        } else {
            ExpectedVersion::NoStream
        };
        let outcome = records(store)
            .append_with(
                &format!("batch-{i}"),
                expected,
                events("Placed", 1 + i as u64 % 2),
                vec![Completion::new(key, token, describe)],
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

/// A completion nobody claimed ([`Completion::unclaimed`]) commits only
/// on a key without a record, and creates it completed for its
/// fingerprint; on any record (completed, in flight) it is refused and
/// writes nothing, and of concurrent ones of one key (in one batch or
/// racing a claim) exactly one wins.
pub async fn idempotency_unclaimed_completion(store: &dyn EventStore) {
    let unclaimed = |key: &str| vec![Completion::unclaimed(key, "fp", describe)];
    let done = records(store)
        .append_with(
            "acct-1",
            ExpectedVersion::NoStream,
            events("Opened", 2),
            unclaimed("free"),
        )
        .await
        .expect("a key without a record completes");
    assert_eq!(
        claim(store, "free", "fp").await,
        Claim::Completed(describe(&done))
    );
    assert_eq!(claim(store, "free", "other").await, Claim::Mismatch);
    let again = records(store)
        .append_with(
            "acct-1",
            ExpectedVersion::Any,
            events("Deposited", 1),
            unclaimed("free"),
        )
        .await;
    assert_lost(again, "free", "a completed key");

    let token = acquire(store, "held", "fp").await;
    let stolen = records(store)
        .append_with(
            "acct-1",
            ExpectedVersion::Any,
            events("Deposited", 1),
            unclaimed("held"),
        )
        .await;
    assert_lost(stolen, "held", "a key in flight");
    assert_eq!(claim(store, "held", "fp").await, Claim::InFlight);
    let held = records(store)
        .append_with(
            "acct-1",
            ExpectedVersion::Exact(2),
            events("Deposited", 1),
            vec![Completion::new("held", token, describe)],
        )
        .await
        .expect("the claim still holds its key");
    assert_eq!(
        claim(store, "held", "fp").await,
        Claim::Completed(describe(&held))
    );

    let refused = records(store)
        .append_with(
            "acct-1",
            ExpectedVersion::Exact(9),
            events("Deposited", 1),
            unclaimed("refused"),
        )
        .await;
    assert_conflict(refused, 3);
    acquire(store, "refused", "fp").await;
    assert_eq!(
        everything(store).await.len(),
        3,
        "refused appends store nothing"
    );

    // Six appends of each of four keys at once, one stream each: one per
    // key commits, the others are refused and write nothing.
    const KEYS: usize = 4;
    let race = |i: usize| async move {
        let key = format!("race-{}", i % KEYS);
        let outcome = records(store)
            .append_with(
                &format!("race-{i}"),
                ExpectedVersion::NoStream,
                events("Placed", 1),
                unclaimed(&key),
            )
            .await;
        (key, outcome)
    };
    let outcomes = futures_util::future::join_all((0..KEYS * 6).map(race)).await;
    for k in 0..KEYS {
        let key = format!("race-{k}");
        let mut won = Vec::new();
        for (_, outcome) in outcomes.iter().filter(|(of, _)| *of == key) {
            match outcome {
                Ok(appended) => won.push(appended),
                Err(StoreError::IdempotencyKeyLost { key: lost }) => assert_eq!(*lost, key),
                Err(other) => panic!("{key}: {other:?}"),
            }
        }
        assert_eq!(won.len(), 1, "{key}: exactly one append wins");
        assert_eq!(
            claim(store, &key, "fp").await,
            Claim::Completed(describe(won[0]))
        );
    }
    assert_eq!(everything(store).await.len(), 3 + KEYS);

    // Racing a claim of the same key: exactly one of them gets it.
    for i in 0..16 {
        let key = format!("contested-{i}");
        let stream = key.clone();
        let (claimed, appended) = tokio::join!(
            claim(store, &key, "fp"),
            records(store).append_with(
                &stream,
                ExpectedVersion::NoStream,
                events("Placed", 1),
                unclaimed(&key),
            )
        );
        match (claimed, appended) {
            (Claim::Acquired { .. }, appended) => assert_lost(appended, &key, "after a claim"),
            (Claim::Completed(response), Ok(appended)) => {
                assert_eq!(response, describe(&appended), "{key}")
            }
            other => panic!("{key}: {other:?}"),
        }
    }
}

/// One append may complete several keys (the commands a round decided
/// together): claimed and unclaimed ones alike, each with the response its
/// own builder makes, all in the append's transaction. If any of them
/// cannot complete (its key was completed, taken over, or it is given
/// twice), the whole append is refused and writes nothing: no event, and
/// every other key stays as it was.
pub async fn idempotency_several_completions(store: &dyn EventStore) {
    // Each builder describes its own share of the append: the version of
    // its first event.
    let share = |first: usize| {
        move |appended: &crate::Appended| format!("{}", appended.events[first].version)
    };
    let token = acquire(store, "claimed", "fp").await;
    let appended = records(store)
        .append_with(
            "jar-1",
            ExpectedVersion::NoStream,
            events("Added", 3),
            vec![
                Completion::new("claimed", token, share(0)),
                Completion::unclaimed("unclaimed", "fp", share(2)),
            ],
        )
        .await
        .expect("an append completing two keys");
    assert_eq!(appended.version, 3);
    assert_eq!(
        claim(store, "claimed", "fp").await,
        Claim::Completed("1".into())
    );
    assert_eq!(
        claim(store, "unclaimed", "fp").await,
        Claim::Completed("3".into())
    );

    // One completion that cannot commit refuses the others with it.
    let held = acquire(store, "held", "fp").await;
    let refused = records(store)
        .append_with(
            "jar-1",
            ExpectedVersion::Exact(3),
            events("Added", 2),
            vec![
                Completion::new("held", held.clone(), share(0)),
                Completion::unclaimed("fresh", "fp", share(1)),
                Completion::unclaimed("unclaimed", "fp", share(1)),
            ],
        )
        .await;
    assert_lost(refused, "unclaimed", "a completed key among others");
    let twice = records(store)
        .append_with(
            "jar-1",
            ExpectedVersion::Exact(3),
            events("Added", 2),
            vec![
                Completion::unclaimed("fresh", "fp", share(0)),
                Completion::unclaimed("fresh", "fp", share(1)),
            ],
        )
        .await;
    assert_lost(twice, "fresh", "one key completed twice by one append");
    assert_eq!(
        everything(store).await.len(),
        3,
        "refused appends store nothing"
    );
    assert_eq!(
        claim(store, "held", "fp").await,
        Claim::InFlight,
        "the claim refused with the others still holds its key"
    );
    let fresh = acquire(store, "fresh", "fp").await;
    let appended = records(store)
        .append_with(
            "jar-1",
            ExpectedVersion::Exact(3),
            events("Added", 2),
            vec![
                Completion::new("held", held, share(0)),
                Completion::new("fresh", fresh, share(1)),
            ],
        )
        .await
        .expect("both claims still hold their keys");
    assert_eq!(appended.version, 5);
    assert_eq!(
        claim(store, "held", "fp").await,
        Claim::Completed("4".into())
    );
    assert_eq!(
        claim(store, "fresh", "fp").await,
        Claim::Completed("5".into())
    );

    // Appends racing with overlapping keys, one stream each: of the
    // appends sharing a key at most one commits, and every committed one
    // completed both its keys.
    let race = |i: usize| async move {
        let keys = [format!("race-{}", i % 4), format!("race-{}", (i + 1) % 4)];
        let outcome = records(store)
            .append_with(
                &format!("race-{i}"),
                ExpectedVersion::NoStream,
                events("Added", 2),
                keys.iter()
                    .enumerate()
                    .map(|(n, key)| Completion::unclaimed(key, "fp", share(n)))
                    .collect(),
            )
            .await;
        (keys, outcome)
    };
    let outcomes = futures_util::future::join_all((0..8).map(race)).await;
    let mut completed = std::collections::HashSet::new();
    for (keys, outcome) in &outcomes {
        match outcome {
            Ok(_) => {
                for key in keys {
                    assert!(completed.insert(key.clone()), "{key} completed twice");
                }
            }
            Err(StoreError::IdempotencyKeyLost { key }) => assert!(keys.contains(key)),
            Err(other) => panic!("{keys:?}: {other:?}"),
        }
    }
    assert!(!completed.is_empty(), "some append won");
    let won = outcomes
        .iter()
        .filter(|(_, outcome)| outcome.is_ok())
        .count();
    assert_eq!(everything(store).await.len(), 5 + 2 * won);
}

/// Of many concurrent claims of one key exactly one acquires it: a new
/// key, an in-flight key whose lease ran out, and an expired record.
pub async fn idempotency_concurrent_claims(store: &dyn EventStore) {
    const CLAIMS: usize = 16;
    let race = |key: &'static str, lease: Duration, retention: Duration| async move {
        let claims = (0..CLAIMS).map(|_| claim_for(store, key, "fp", lease, retention));
        let answers = futures_util::future::join_all(claims).await;
        let acquired = answers
            .iter()
            .filter(|a| matches!(a, Claim::Acquired { .. }))
            .count();
        let in_flight = answers.iter().filter(|a| **a == Claim::InFlight).count();
        assert_eq!((acquired, in_flight), (1, CLAIMS - 1), "{key}: {answers:?}");
    };
    for key in ["new-1", "new-2", "new-3"] {
        race(key, LONG, LONG).await;
    }
    acquired(
        claim_for(store, "lease-over", "fp", SHORT, LONG).await,
        "lease-over",
    );
    let token = acquire(store, "expired", "fp").await;
    records(store)
        .complete_idempotency_key("expired", &token, "r".into())
        .await
        .unwrap();
    tokio::time::sleep(PAST_SHORT).await;
    race("lease-over", LONG, LONG).await;
    race("expired", LONG, SHORT).await;
}

/// Release gives an in-flight key back, but only the claim holding it can:
/// a completed record is never deleted, a stale token deletes nothing, and
/// releasing an unknown key does nothing.
pub async fn idempotency_release(store: &dyn EventStore) {
    let first = acquire(store, "key-1", "fp-a").await;
    records(store)
        .release_idempotency_key("key-1", &first)
        .await
        .unwrap();
    let second = acquired(
        claim(store, "key-1", "fp-b").await,
        "a released key is free for any request",
    );
    records(store)
        .release_idempotency_key("key-1", &first)
        .await
        .expect("a stale release is not an error");
    assert_eq!(
        claim(store, "key-1", "fp-b").await,
        Claim::InFlight,
        "a stale token releases nothing"
    );
    records(store)
        .complete_idempotency_key("key-1", &second, "r".into())
        .await
        .unwrap();
    records(store)
        .release_idempotency_key("key-1", &second)
        .await
        .unwrap();
    assert_eq!(
        claim(store, "key-1", "fp-b").await,
        Claim::Completed("r".into()),
        "a completed record survives release"
    );
    records(store)
        .release_idempotency_key("never-claimed", "some-token")
        .await
        .expect("releasing an unknown key is not an error");
    acquire(store, "never-claimed", "fp").await;
}

/// A claim whose key was taken over (its lease ran out) or whose token is
/// wrong no longer holds the key: its append is refused whatever the
/// stream's version and stores nothing (no events, record unchanged), its
/// completion without events is refused, and its release leaves the new
/// holder's claim in place. In a batch of concurrent appends only those
/// with a stale token are refused, and of two appends completing one key
/// with the same token exactly one commits.
pub async fn idempotency_stale_tokens_are_refused(store: &dyn EventStore) {
    // A wrong token: refused before the expected version is looked at.
    let token = acquire(store, "key-1", "fp").await;
    for expected in [ExpectedVersion::NoStream, ExpectedVersion::Exact(5)] {
        let result = records(store)
            .append_with(
                "acct-1",
                expected,
                events("Opened", 1),
                vec![Completion::new("key-1", format!("{token}-not"), describe)],
            )
            .await;
        let error = result.as_ref().map(drop).unwrap_err();
        assert!(
            !error.is_invalid_input() && !error.is_conflict(),
            "{error:?}"
        );
        assert_lost(result, "key-1", "a completion with a wrong token");
    }
    assert!(everything(store).await.is_empty(), "nothing was appended");
    assert_eq!(
        claim(store, "key-1", "fp").await,
        Claim::InFlight,
        "the record is unchanged"
    );
    records(store)
        .complete_idempotency_key("key-1", &token, "r".into())
        .await
        .expect("the holder's token still completes the key");

    // A lease that ran out and was taken over.
    let old = acquired(claim_for(store, "key-2", "fp", SHORT, LONG).await, "key-2");
    tokio::time::sleep(PAST_SHORT).await;
    let new = acquired(claim(store, "key-2", "fp").await, "take-over");
    assert_lost(
        records(store)
            .append_with(
                "acct-2",
                ExpectedVersion::NoStream,
                events("Opened", 1),
                vec![Completion::new("key-2", old.clone(), describe)],
            )
            .await,
        "key-2",
        "the taken-over holder appending",
    );
    assert!(
        everything(store).await.is_empty(),
        "the taken-over holder's events are not stored"
    );
    records(store)
        .release_idempotency_key("key-2", &old)
        .await
        .expect("a stale release is not an error");
    assert_eq!(
        claim(store, "key-2", "fp").await,
        Claim::InFlight,
        "the taken-over holder's release keeps the new holder's claim"
    );
    assert_lost(
        records(store)
            .complete_idempotency_key("key-2", &old, "stale".into())
            .await,
        "key-2",
        "the taken-over holder completing",
    );
    let appended = records(store)
        .append_with(
            "acct-2",
            ExpectedVersion::NoStream,
            events("Opened", 1),
            vec![Completion::new("key-2", new, describe)],
        )
        .await
        .expect("the new holder appends");
    assert_eq!((appended.version, appended.position), (1, 1));
    assert_eq!(
        claim(store, "key-2", "fp").await,
        Claim::Completed(describe(&appended))
    );

    // Concurrent appends (one group-commit batch on SQL backends): every
    // other one carries a stale token and is refused alone.
    const APPENDS: usize = 24;
    let append = |i: usize| async move {
        let key = format!("batch-{i}");
        let token = acquire(store, &key, "fp").await;
        let token = if i.is_multiple_of(2) {
            token
        } else {
            format!("{token}-stale")
        };
        let outcome = records(store)
            .append_with(
                &key,
                ExpectedVersion::NoStream,
                events("Placed", 1),
                vec![Completion::new(key.clone(), token, describe)],
            )
            .await;
        (i, outcome)
    };
    let outcomes = futures_util::future::join_all((0..APPENDS).map(append)).await;
    for (i, outcome) in outcomes {
        let key = format!("batch-{i}");
        let answer = claim(store, &key, "fp").await;
        if i.is_multiple_of(2) {
            let appended = outcome.unwrap_or_else(|e| panic!("{key}: {e}"));
            assert_eq!(answer, Claim::Completed(describe(&appended)), "{key}");
        } else {
            assert_lost(outcome, &key, "a stale token in a batch");
            assert_eq!(answer, Claim::InFlight, "{key}");
            assert_eq!(store.stream_version(&key).await.unwrap(), 0, "{key}");
        }
    }
    assert_eq!(everything(store).await.len(), 1 + APPENDS / 2);

    // Two appends completing one key with the same token: one commits.
    let token = acquire(store, "twice", "fp").await;
    let twice = |stream: &'static str| {
        let token = token.clone();
        async move {
            records(store)
                .append_with(
                    stream,
                    ExpectedVersion::NoStream,
                    events("Placed", 1),
                    vec![Completion::new("twice", token, describe)],
                )
                .await
        }
    };
    let (a, b) = futures_util::future::join(twice("twice-a"), twice("twice-b")).await;
    let (committed, refused) = match (a, b) {
        (Ok(appended), refused) | (refused, Ok(appended)) => (appended, refused),
        (a, b) => panic!("one of two completions must commit: {a:?}, {b:?}"),
    };
    assert_lost(refused, "twice", "the second completion of a key");
    assert_eq!(
        claim(store, "twice", "fp").await,
        Claim::Completed(describe(&committed))
    );
    assert_eq!(everything(store).await.len(), 2 + APPENDS / 2);
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
            records(store)
                .claim_idempotency_key(key, "fp", LONG, LONG)
                .await
                .map(drop),
        );
        check(
            "complete",
            records(store)
                .complete_idempotency_key(key, "t", "r".into())
                .await,
        );
        check(
            "release",
            records(store).release_idempotency_key(key, "t").await,
        );
        check(
            "append_with",
            records(store)
                .append_with(
                    "s-1",
                    ExpectedVersion::Any,
                    events("Ok", 1),
                    vec![Completion::new(key, "t", describe)],
                )
                .await
                .map(drop),
        );
    }
    assert!(everything(store).await.is_empty(), "nothing was appended");
    let max = "k".repeat(MAX_IDEMPOTENCY_KEY_LEN);
    acquire(store, &max, "fp").await;
    acquire(store, "ünïcödé key 🦀", "fp").await;
}
