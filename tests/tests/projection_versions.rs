//! `#[projection(version = N)]`: a projection whose stored rows were built
//! by another version is rebuilt at start-up as a new generation beside the
//! live one, which keeps serving until the new one has caught up; an
//! unchanged version starts where it stopped. On memory, a SQLite file and
//! PostgreSQL (skipped loudly without one).

use std::time::Duration;

use allframe::store::{MemoryStore, SqliteStore};
use allframe::{
    Aggregate, ApplyError, Change, Event, EventStore, ExpectedVersion, NewEvent, Projection,
    ProjectionState, Projections, RecordedEvent,
};
use allframe_tests::faulty::Faulty;
use allframe_tests::postgres_store;
use serde::{Deserialize, Serialize};

const WAIT: Duration = Duration::from_secs(30);

#[derive(Event, Debug, Clone)]
enum TallyEvent {
    Counted {},
}

#[derive(Default)]
struct Tally;

impl Aggregate for Tally {
    type Event = TallyEvent;
    const CATEGORY: &'static str = "tally";
    fn apply(&mut self, _: &TallyEvent) {}
}

/// Version 1 of the `tallies` projection: a count per tally.
#[allframe::projection(name = "tallies", key = id)]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TalliesV1 {
    id: String,
    count: u64,
}

/// Version 2 also keeps the count doubled; rows of version 1 still read
/// (the new field defaults), so the old generation can serve meanwhile.
#[allframe::projection(name = "tallies", key = id, version = 2)]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TalliesV2 {
    id: String,
    count: u64,
    #[serde(default)]
    doubled: u64,
}

fn id(recorded: &RecordedEvent) -> String {
    recorded.aggregate_id().to_owned()
}

impl Projection for TalliesV1 {
    type Source = Tally;

    fn apply(
        row: Option<&Self>,
        _: &TallyEvent,
        recorded: &RecordedEvent,
    ) -> Result<Change<Self>, ApplyError> {
        Ok(Change::Upsert(TalliesV1 {
            id: id(recorded),
            count: row.map_or(0, |row| row.count) + 1,
        }))
    }
}

impl Projection for TalliesV2 {
    type Source = Tally;

    fn apply(
        row: Option<&Self>,
        _: &TallyEvent,
        recorded: &RecordedEvent,
    ) -> Result<Change<Self>, ApplyError> {
        let count = row.map_or(0, |row| row.count) + 1;
        Ok(Change::Upsert(TalliesV2 {
            id: id(recorded),
            count,
            doubled: count * 2,
        }))
    }
}

async fn count(store: &dyn EventStore, tally: &str, times: usize) {
    let events = (0..times)
        .map(|_| NewEvent::from_event(&TallyEvent::Counted {}).unwrap())
        .collect();
    store
        .append(&format!("tally-{tally}"), ExpectedVersion::Any, events)
        .await
        .unwrap();
}

/// `P` running, caught up with the log and any rebuild swapped in.
async fn caught_up<P: Projection>(store: &dyn EventStore) -> Projections {
    let projections = Projections::builder(store)
        .projection::<P>()
        .start()
        .await
        .unwrap();
    let head = store.head_position().await.unwrap();
    projections.wait_for("tallies", head, WAIT).await.unwrap();
    wait_running(&projections).await;
    projections
}

/// Runs `P` until it has caught up with the log; returns the live
/// generation's number and version.
async fn run<P: Projection>(store: &dyn EventStore) -> (u64, u32) {
    caught_up::<P>(store).await.stop().await;
    live(store).await
}

/// Waits until a rebuild under way has been swapped in.
async fn wait_running(projections: &Projections) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let status = projections.status_of("tallies").await.unwrap();
        if status.state == ProjectionState::Running && status.rebuild_checkpoint.is_none() {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn live(store: &dyn EventStore) -> (u64, u32) {
    let storage = store.projection_store().expect("projection storage");
    let live = storage.open("tallies", 1).await.unwrap().live;
    (live.number, live.version)
}

async fn rows<P: Projection>(store: &dyn EventStore, key: &str) -> P {
    let projections = caught_up::<P>(store).await;
    let row = projections.get::<P>(key).await.unwrap().unwrap();
    projections.stop().await;
    row
}

async fn versions(store: &dyn EventStore) {
    count(store, "a", 3).await;
    count(store, "b", 2).await;
    assert_eq!(run::<TalliesV1>(store).await, (1, 1), "first run");
    assert_eq!(run::<TalliesV1>(store).await, (1, 1), "same version: kept");
    // Version 2: rebuilt as generation 2, with the new field computed.
    assert_eq!(run::<TalliesV2>(store).await, (2, 2), "version 2 rebuilt");
    let row = rows::<TalliesV2>(store, "a").await;
    assert_eq!((row.count, row.doubled), (3, 6));
    count(store, "a", 1).await;
    assert_eq!(run::<TalliesV2>(store).await, (2, 2), "same version: kept");
    let row = rows::<TalliesV2>(store, "a").await;
    assert_eq!((row.count, row.doubled), (4, 8), "and followed the log");
    // Back to version 1 (a rollback): rebuilt again.
    assert_eq!(run::<TalliesV1>(store).await, (3, 1), "back to version 1");
    assert_eq!(rows::<TalliesV1>(store, "b").await.count, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_version_rebuilds_memory() {
    versions(&MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_version_rebuilds_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("versions.db"))
        .await
        .unwrap();
    versions(&store).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_version_rebuilds_postgres() {
    let Some(store) = postgres_store().await else {
        return;
    };
    versions(&store).await;
    store.close().await;
}

/// While the new version catches up, readers keep the old generation's
/// rows; once it has, they get the new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_generation_serves_until_the_new_one_has_caught_up() {
    let store = Faulty::new();
    count(&store, "a", 3).await;
    run::<TalliesV1>(&store).await;
    let head = store.head_position().await.unwrap();
    // The rebuild reads from the start; the live generation from the head.
    store.hold_history_below(head);
    let projections = Projections::builder(&store)
        .projection::<TalliesV2>()
        .start()
        .await
        .unwrap();
    let status = projections.status_of("tallies").await.unwrap();
    assert_eq!(status.state, ProjectionState::Rebuilding, "{status:?}");
    let old = projections.get::<TalliesV2>("a").await.unwrap().unwrap();
    assert_eq!(
        (old.count, old.doubled),
        (3, 0),
        "version 1's row, read as today's"
    );
    store.release_history();
    wait_running(&projections).await;
    let new = projections.get::<TalliesV2>("a").await.unwrap().unwrap();
    assert_eq!((new.count, new.doubled), (3, 6));
    projections.stop().await;
}

/// A rebuild begun by another version of the projection (another node of
/// a rolling deploy) is left to that version: rows built by other code are
/// never swapped in under its number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_for_another_version_is_left_alone() {
    let store = MemoryStore::new();
    count(&store, "a", 3).await;
    assert_eq!(run::<TalliesV1>(&store).await, (1, 1));
    let storage = store.projection_store().unwrap();
    let begun = storage.begin_rebuild("tallies", 2).await.unwrap();
    assert_eq!((begun.number, begun.version, begun.checkpoint), (2, 2, 0));
    count(&store, "a", 1).await;
    assert_eq!(
        run::<TalliesV1>(&store).await,
        (1, 1),
        "version 1 keeps its own"
    );
    let untouched = storage
        .open("tallies", 1)
        .await
        .unwrap()
        .rebuilding
        .unwrap();
    assert_eq!(
        (untouched.number, untouched.checkpoint),
        (2, 0),
        "not worked"
    );
    assert_eq!(
        run::<TalliesV2>(&store).await,
        (2, 2),
        "version 2 finishes it"
    );
    let row = rows::<TalliesV2>(&store, "a").await;
    assert_eq!((row.count, row.doubled), (4, 8));
}
