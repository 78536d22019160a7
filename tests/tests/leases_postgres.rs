//! Leases on PostgreSQL, at the store: taking, renewing, giving back, the
//! fair share, and the epoch fence on checkpoint commits. Node ids are
//! plain strings here; the three_nodes test runs real processes.

use std::time::Duration;

use allframe::EventStore;
use allframe::store::projections::{Batch, Committed, Fence, RowWrite};
use allframe::store::{LeaseStore, PostgresStore};
use allframe_tests::postgres_store;

const TTL: Duration = Duration::from_secs(1);

fn leases(store: &PostgresStore) -> &dyn LeaseStore {
    store.leases().expect("PostgreSQL keeps leases")
}

/// Whether `node` takes lease `name` (for half a minute).
async fn takes(leases: &dyn LeaseStore, name: &str, node: &str) -> bool {
    leases
        .try_acquire(name, node, TTL * 30)
        .await
        .unwrap()
        .is_some()
}

/// Waits until every lease taken before has expired.
async fn expire() {
    tokio::time::sleep(TTL + Duration::from_millis(200)).await;
}

#[tokio::test]
async fn one_holder_at_a_time_and_a_new_epoch_per_holder() {
    let Some(store) = postgres_store().await else {
        return;
    };
    let leases = leases(&store);
    for node in ["a", "b"] {
        leases
            .heartbeat(node, Duration::from_secs(60))
            .await
            .unwrap();
    }
    let a = leases.try_acquire("projection:p", "a", TTL).await.unwrap();
    let a = a.expect("a free lease is taken");
    assert_eq!((a.owner.as_str(), a.epoch), ("a", 1));
    assert_eq!(
        leases.try_acquire("projection:p", "b", TTL).await.unwrap(),
        None,
        "a held lease is not taken"
    );
    // Renewed: still held, same epoch, later expiry.
    let renewed = leases.renew(&a, TTL).await.unwrap().expect("still held");
    assert_eq!(renewed.epoch, 1);
    assert!(renewed.expires_at >= a.expires_at);

    // Expired: another node takes it, with the next epoch, and the old
    // holder can no longer renew it.
    expire().await;
    let b = leases.try_acquire("projection:p", "b", TTL).await.unwrap();
    let b = b.expect("an expired lease is taken");
    assert_eq!((b.owner.as_str(), b.epoch), ("b", 2));
    assert_eq!(leases.renew(&a, TTL).await.unwrap(), None);
    // Giving back an old epoch changes nothing; the holder's own does.
    leases.release(&a).await.unwrap();
    assert_eq!(
        leases.try_acquire("projection:p", "a", TTL).await.unwrap(),
        None
    );
    leases.release(&b).await.unwrap();
    let again = leases.try_acquire("projection:p", "a", TTL).await.unwrap();
    assert_eq!(
        again.map(|l| l.epoch),
        Some(3),
        "a lease given back is free"
    );

    // A node restarted under its id takes its own lease back at once.
    let back = leases.try_acquire("projection:p", "a", TTL).await.unwrap();
    assert_eq!(back.map(|l| l.epoch), Some(4));
    let listed = leases.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].owner.as_str(), listed[0].epoch), ("a", 4));
}

#[tokio::test]
async fn a_commit_under_a_lost_lease_writes_nothing() {
    let Some(store) = postgres_store().await else {
        return;
    };
    let leases = leases(&store);
    let storage = store.projection_store().unwrap();
    let live = storage.open("p", 1).await.unwrap().live;
    let old = leases
        .try_acquire("projection:p", "a", TTL)
        .await
        .unwrap()
        .unwrap();
    let rows = [RowWrite::upsert("k".into(), "{\"n\":1}".into(), Vec::new())];
    let batch =
        |from, to, fence| Batch::new("p", live.number, from, to, false, &rows).fenced(fence);
    // The holder commits.
    let committed = storage
        .commit(batch(0, 5, Some(Fence::new("projection:p", old.epoch))))
        .await
        .unwrap();
    assert_eq!(committed, Committed::Done);
    // Paused past its expiry, it lost the lease to b: its next commit is
    // refused, though the checkpoint it starts from is right.
    expire().await;
    let new = leases
        .try_acquire("projection:p", "b", TTL)
        .await
        .unwrap()
        .unwrap();
    let stale = storage
        .commit(batch(5, 9, Some(Fence::new("projection:p", old.epoch))))
        .await
        .unwrap();
    assert_eq!(stale, Committed::Moved);
    assert_eq!(storage.checkpoint("p").await.unwrap(), 5);
    // The new holder's commit goes through.
    let fresh = storage
        .commit(batch(5, 9, Some(Fence::new("projection:p", new.epoch))))
        .await
        .unwrap();
    assert_eq!(fresh, Committed::Done);
    assert_eq!(storage.checkpoint("p").await.unwrap(), 9);
}

#[tokio::test]
async fn leases_spread_over_the_live_nodes() {
    let Some(store) = postgres_store().await else {
        return;
    };
    let leases = leases(&store);
    let names = ["projection:a", "projection:b", "projection:c", "saga:d"];
    // Alone, a node takes everything.
    leases.heartbeat("one", TTL * 30).await.unwrap();
    for name in names {
        assert!(takes(leases, name, "one").await);
    }
    assert_eq!(leases.surplus("one").await.unwrap(), None);
    // A second node: each one's share is two, so "one" has two too many
    // and gives back the last by name, first.
    leases.heartbeat("two", TTL * 30).await.unwrap();
    assert_eq!(
        leases.surplus("one").await.unwrap().as_deref(),
        Some("saga:d")
    );
    for lease in leases.list().await.unwrap() {
        if lease.name == "saga:d" || lease.name == "projection:c" {
            leases.release(&lease).await.unwrap();
        }
    }
    assert_eq!(leases.surplus("one").await.unwrap(), None);
    assert!(takes(leases, "saga:d", "two").await);
    assert!(takes(leases, "projection:c", "two").await);
    // At its share, a node takes no more, even a free one.
    leases.heartbeat("three", TTL * 30).await.unwrap();
    leases.leave("three").await.unwrap();
    let held = leases.list().await.unwrap();
    let c = held.iter().find(|l| l.name == "projection:c").unwrap();
    leases.release(c).await.unwrap();
    assert!(!takes(leases, "projection:c", "one").await);
    assert!(takes(leases, "projection:c", "two").await);
    // A lease nobody below their share takes is taken after two
    // lifetimes whatever the share (a runner only some nodes know).
    let held = leases.list().await.unwrap();
    let c = held.iter().find(|l| l.name == "projection:c").unwrap();
    leases.release(c).await.unwrap();
    assert!(
        leases
            .try_acquire("projection:c", "one", TTL)
            .await
            .unwrap()
            .is_none()
    );
    tokio::time::sleep(TTL * 2 + Duration::from_millis(200)).await;
    // (Two lifetimes of the asker's TTL.)
    let late = leases
        .try_acquire("projection:c", "one", TTL)
        .await
        .unwrap();
    assert_eq!(late.map(|l| l.owner), Some("one".to_owned()));
    // A node that leaves gives everything back, and is no longer counted:
    // the other may take it all.
    leases.leave("two").await.unwrap();
    for name in ["saga:d", "projection:c"] {
        assert!(takes(leases, name, "one").await, "{name}");
    }
    let owners: Vec<String> = leases
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.owner)
        .collect();
    assert_eq!(owners, vec!["one"; 4]);
}
