//! The snapshot store's rules (see [`crate::store::snapshots`]).

use crate::EventStore;
use crate::store::{MAX_STREAM_ID_LEN, Snapshot, SnapshotStore, StoreError};

fn snapshots(store: &dyn EventStore) -> &dyn SnapshotStore {
    store
        .snapshots()
        .expect("the snapshot cases need a store that keeps snapshots")
}

fn snapshot(stream: &str, version: u64, fingerprint: &str, state: &str) -> Snapshot {
    Snapshot::new(stream, version, version * 10, 1, fingerprint, state)
}

async fn kept(store: &dyn EventStore, stream: &str) -> Option<Snapshot> {
    snapshots(store)
        .load_snapshot(stream)
        .await
        .expect("load a snapshot")
}

async fn save(store: &dyn EventStore, snapshot: Snapshot) -> bool {
    snapshots(store)
        .save_snapshot(snapshot)
        .await
        .expect("save a snapshot")
}

/// A stream without a snapshot has none; a saved snapshot loads back
/// exactly (state text byte for byte, versions, position, fingerprint and
/// time to the millisecond), a large one too, and each stream keeps its
/// own.
pub async fn snapshot_save_and_load(store: &dyn EventStore) {
    assert_eq!(kept(store, "counter-1").await, None, "no snapshot yet");
    let odd = r#"{"note":"ünïcödé \u0000 \\ \" \n\t 🦀","total":18446744073709551615}"#;
    let mut first = Snapshot::new("counter-1", 7, 42, 3, "fp-a", odd);
    first.position = i64::MAX as u64;
    assert!(save(store, first.clone()).await, "a first snapshot is kept");
    assert_eq!(kept(store, "counter-1").await, Some(first.clone()));

    let big = format!(r#"{{"items":[{}0]}}"#, "1234567,".repeat(200_000));
    let large = snapshot("counter-2", 1, "fp-a", &big);
    assert!(save(store, large.clone()).await);
    assert_eq!(
        kept(store, "counter-2").await,
        Some(large),
        "1.6 MB of state"
    );
    assert_eq!(
        kept(store, "counter-1").await,
        Some(first),
        "streams keep their own snapshots"
    );
    assert_eq!(kept(store, "counter-3").await, None);
}

/// Of two snapshots by the same code (state version and fingerprint), the
/// later stream version stays: saving an earlier one is refused and
/// changes nothing, saving the same version again or a later one
/// replaces it.
pub async fn snapshot_later_version_stays(store: &dyn EventStore) {
    assert!(save(store, snapshot("counter-1", 10, "fp-a", r#"{"n":10}"#)).await);
    assert!(
        !save(store, snapshot("counter-1", 5, "fp-a", r#"{"n":5}"#)).await,
        "an earlier snapshot does not replace a later one"
    );
    assert_eq!(kept(store, "counter-1").await.unwrap().state, r#"{"n":10}"#);
    assert!(
        save(store, snapshot("counter-1", 10, "fp-a", r#"{"n":"again"}"#)).await,
        "the same version again replaces it (an undecodable one is replaced so)"
    );
    assert_eq!(
        kept(store, "counter-1").await.unwrap().state,
        r#"{"n":"again"}"#
    );
    assert!(save(store, snapshot("counter-1", 11, "fp-a", r#"{"n":11}"#)).await);
    let now = kept(store, "counter-1").await.unwrap();
    assert_eq!((now.version, now.position), (11, 110));
}

/// A snapshot taken by other code (another fingerprint or state version)
/// is replaced by today's, even by one at an earlier stream version: a
/// reader would ignore it anyway.
pub async fn snapshot_of_other_code_is_replaced(store: &dyn EventStore) {
    assert!(save(store, snapshot("counter-1", 10, "fp-old", r#"{"n":10}"#)).await);
    assert!(
        save(store, snapshot("counter-1", 4, "fp-new", r#"{"n":4}"#)).await,
        "another fingerprint replaces it"
    );
    let now = kept(store, "counter-1").await.unwrap();
    assert_eq!((now.version, now.fingerprint.as_str()), (4, "fp-new"));

    let mut newer_state = snapshot("counter-1", 3, "fp-new", r#"{"n":3}"#);
    newer_state.state_version = 2;
    assert!(
        save(store, newer_state.clone()).await,
        "another state version replaces it"
    );
    assert_eq!(kept(store, "counter-1").await, Some(newer_state));
}

/// Snapshots saved concurrently for one stream end with the latest
/// version kept, whatever order they land in.
pub async fn snapshot_concurrent_saves(store: &dyn EventStore) {
    let saves = (1..=40u64).rev().map(|version| {
        snapshots(store).save_snapshot(snapshot("counter-1", version, "fp-a", "{}"))
    });
    for saved in futures_util::future::join_all(saves).await {
        saved.expect("a concurrent save");
    }
    assert_eq!(kept(store, "counter-1").await.unwrap().version, 40);
}

/// Stream ids are checked like an append's, on loads and saves.
pub async fn snapshot_invalid_stream_ids(store: &dyn EventStore) {
    let long = "x".repeat(MAX_STREAM_ID_LEN + 1);
    for bad in ["", long.as_str(), "counter-\n1"] {
        let loaded = snapshots(store).load_snapshot(bad).await;
        assert!(
            matches!(loaded, Err(StoreError::InvalidStreamId { .. })),
            "loading {bad:?}: {loaded:?}"
        );
        let saved = snapshots(store)
            .save_snapshot(snapshot(bad, 1, "fp-a", "{}"))
            .await;
        assert!(
            matches!(saved, Err(StoreError::InvalidStreamId { .. })),
            "saving {bad:?}: {saved:?}"
        );
    }
}
