//! Aggregate snapshots through the dispatcher, on every backend: a load is
//! the snapshot and the events after it; a snapshot of other code, or one
//! that does not decode, is ignored and replaced, never taken for a
//! default state; writes happen after the commit, off the command's path,
//! and a failing snapshot store never fails a command.

use std::time::Duration;

use allframe::store::{Snapshot, SqliteStore};
use allframe::{
    Aggregate, DispatchConfig, DispatchOptions, Dispatcher, EventStore, ExpectedVersion, NewEvent,
    Snapshots, load,
};
use allframe_tests::faulty::{Fault, Faulty};
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};

#[derive(allframe::Event, Debug, PartialEq)]
enum TallyEvent {
    Started {},
    Added { n: u64 },
}

/// A running total, snapshotted every 5 events.
#[derive(Default, Debug, Serialize, Deserialize)]
struct Tally {
    total: u64,
    adds: u64,
}

const EVERY: u64 = 5;

impl Aggregate for Tally {
    type Event = TallyEvent;
    const CATEGORY: &'static str = "tally";
    fn apply(&mut self, event: &TallyEvent) {
        match event {
            TallyEvent::Started {} => {}
            TallyEvent::Added { n } => {
                self.total += n;
                self.adds += 1;
            }
        }
    }
    fn snapshots() -> Option<Snapshots<Self>> {
        Some(Snapshots::every(EVERY))
    }
}

#[allframe::command(aggregate = Tally, id = id, create, name = "start-tally")]
#[derive(Clone, Serialize, Deserialize, garde::Validate)]
struct StartTally {
    #[garde(skip)]
    id: String,
}

#[allframe::command(aggregate = Tally, id = id, name = "add-to-tally")]
#[derive(Clone, Serialize, Deserialize, garde::Validate)]
struct AddTo {
    #[garde(skip)]
    id: String,
    #[garde(skip)]
    n: u64,
}

#[allframe::command_handler]
async fn start_tally(
    _: StartTally,
    _: &Tally,
) -> Result<Vec<TallyEvent>, std::convert::Infallible> {
    Ok(vec![TallyEvent::Started {}])
}

#[allframe::command_handler]
async fn add_to(command: AddTo, _: &Tally) -> Result<Vec<TallyEvent>, std::convert::Infallible> {
    Ok(vec![TallyEvent::Added { n: command.n }])
}

/// A SQLite store in a file of a fresh directory (which lives as long as
/// the handle returned with it).
async fn sqlite() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("events.db"))
        .await
        .unwrap();
    (dir, store)
}

/// A dispatcher without a state cache, so every command loads its
/// aggregate from the store.
fn uncached(store: &dyn EventStore) -> Dispatcher {
    Dispatcher::builder(store)
        .config(DispatchConfig::default().state_cache(0, 0))
        .build()
        .unwrap()
}

async fn start(dispatcher: &Dispatcher, id: &str) {
    let command = StartTally { id: id.into() };
    dispatcher
        .dispatch(command, DispatchOptions::default())
        .await
        .unwrap();
}

/// Adds `n` and returns the stream version after it.
async fn add(dispatcher: &Dispatcher, id: &str, n: u64) -> u64 {
    let command = AddTo { id: id.into(), n };
    let outcome = dispatcher
        .dispatch(command, DispatchOptions::default())
        .await
        .unwrap();
    outcome.version
}

/// The snapshot of `stream` once one at `version` or later is kept.
async fn snapshot_at_least(store: &dyn EventStore, stream: &str, version: u64) -> Snapshot {
    let snapshots = store.snapshots().expect("the store keeps snapshots");
    for _ in 0..500 {
        let kept = snapshots.load_snapshot(stream).await.unwrap();
        if let Some(snapshot) = kept.filter(|kept| kept.version >= version) {
            return snapshot;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no snapshot of {stream} at version {version} or later within 10 s");
}

/// The state of `stream` folded from every one of its events, without a
/// snapshot.
async fn replayed(store: &dyn EventStore, stream: &str) -> (Tally, u64) {
    let mut tally = Tally::default();
    let events = store.read_stream(stream, 1, usize::MAX).await.unwrap();
    for event in &events {
        tally.apply(&event.decode().unwrap());
    }
    (tally, events.len() as u64)
}

fn policy() -> Snapshots<Tally> {
    Tally::snapshots().unwrap()
}

/// Starts tally `id` and adds 1, 2, … until its stream is at `version`,
/// one command at a time.
async fn build(dispatcher: &Dispatcher, id: &str, version: u64) {
    start(dispatcher, id).await;
    for n in 1..version {
        assert_eq!(add(dispatcher, id, n).await, n + 1);
    }
}

/// Commands write snapshots as the stream grows; a load is the snapshot
/// (proved by one that lies about the total) and the events after it.
async fn loads_are_the_snapshot_and_the_tail(store: &dyn EventStore) {
    // With the state cache on, snapshots are due at versions 5 and 10.
    let cached = Dispatcher::builder(store).build().unwrap();
    build(&cached, "t1", 12).await;
    for _ in 0..500 {
        if cached.snapshot_stats().written == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(cached.snapshot_stats().written, 2);
    let kept = snapshot_at_least(store, "tally-t1", 10).await;
    assert_eq!(kept.version, 10);
    assert_eq!(kept.fingerprint, policy().fingerprint());
    assert_eq!(kept.state_version, 1);
    let folded: Tally = serde_json::from_str(&kept.state).unwrap();
    assert_eq!(
        folded.adds,
        kept.version - 1,
        "the snapshot is the state at its version"
    );
    let at = store
        .read_stream("tally-t1", kept.version, 1)
        .await
        .unwrap();
    assert_eq!(kept.position, at[0].position);

    // A snapshot that lies by a million: a load that starts from it says so.
    let lie = Tally {
        total: folded.total + 1_000_000,
        adds: folded.adds,
    };
    let mut lying = kept.clone();
    lying.state = serde_json::to_string(&lie).unwrap();
    let snapshots = store.snapshots().unwrap();
    assert!(snapshots.save_snapshot(lying).await.unwrap());
    let loaded = load::<Tally>(store, "t1").await.unwrap();
    let (truth, version) = replayed(store, "tally-t1").await;
    assert_eq!(loaded.version, version);
    assert_eq!(loaded.state.total, truth.total + 1_000_000);
    assert_eq!(loaded.state.adds, truth.adds);

    // So does a command's.
    let dispatcher = uncached(store);
    assert_eq!(add(&dispatcher, "t1", 1).await, 13);
    let stats = dispatcher.snapshot_stats();
    assert_eq!((stats.used, stats.missing, stats.ignored), (1, 0, 0));
}

#[tokio::test]
async fn memory_loads_are_the_snapshot_and_the_tail() {
    let store = Faulty::new();
    loads_are_the_snapshot_and_the_tail(&store).await;
    // And the load read only the tail.
    let kept = snapshot_at_least(&store, "tally-t1", 10).await;
    let read = store.stream_events_read();
    let loaded = load::<Tally>(&store, "t1").await.unwrap();
    assert_eq!(
        store.stream_events_read() - read,
        loaded.version - kept.version
    );
}

#[tokio::test]
async fn sqlite_loads_are_the_snapshot_and_the_tail() {
    let (_dir, store) = sqlite().await;
    loads_are_the_snapshot_and_the_tail(&store).await;
}

#[tokio::test]
async fn postgres_loads_are_the_snapshot_and_the_tail() {
    let Some(store) = allframe_tests::postgres_store().await else {
        return;
    };
    loads_are_the_snapshot_and_the_tail(&store).await;
}

/// Snapshots a load must not use, at the stream's `version`: those with
/// today's fingerprint and state version claim a total of a million.
fn unusable(stream: &str, version: u64) -> Vec<(&'static str, Snapshot)> {
    let lie = format!(r#"{{"total":1000000,"adds":{}}}"#, version - 1);
    let today = Snapshot::new(stream, version, version, 1, policy().fingerprint(), lie);
    let mut other_fingerprint = today.clone();
    other_fingerprint.fingerprint = "f".repeat(64);
    let mut other_state_version = today.clone();
    other_state_version.state_version = 2;
    let mut undecodable = today.clone();
    undecodable.state = r#"{"total":"a million"}"#.into();
    let mut not_json = today;
    not_json.state = "\u{1}garbage".into();
    vec![
        ("another fingerprint", other_fingerprint),
        ("another state version", other_state_version),
        ("a state that does not decode", undecodable),
        ("a state that is not JSON", not_json),
    ]
}

/// A snapshot of other code, or one that does not decode, is ignored: the
/// load replays the whole stream (never a default state at the
/// snapshot's version), and the next command replaces it.
async fn unusable_snapshots_are_ignored_and_replaced(store: &dyn EventStore) {
    // Twelve events written without the dispatcher, so no snapshot yet.
    let mut events = vec![NewEvent::from_event(&TallyEvent::Started {}).unwrap()];
    for n in 1..12 {
        events.push(NewEvent::from_event(&TallyEvent::Added { n }).unwrap());
    }
    store
        .append("tally-t2", ExpectedVersion::NoStream, events)
        .await
        .unwrap();
    let snapshots = store.snapshots().unwrap();
    for case in 0..4 {
        let (truth, version) = replayed(store, "tally-t2").await;
        let (what, bad) = unusable("tally-t2", version).swap_remove(case);
        assert!(snapshots.save_snapshot(bad).await.unwrap(), "{what}");
        let loaded = load::<Tally>(store, "t2").await.unwrap();
        assert_eq!(
            (loaded.version, loaded.state.total, loaded.state.adds),
            (version, truth.total, truth.adds),
            "{what}: the whole stream is replayed"
        );

        let dispatcher = uncached(store);
        let version = add(&dispatcher, "t2", 1).await;
        let replaced = snapshot_at_least(store, "tally-t2", version).await;
        let stats = dispatcher.snapshot_stats();
        assert_eq!((stats.ignored, stats.used), (1, 0), "{what}");
        assert_eq!(replaced.fingerprint, policy().fingerprint(), "{what}");
        assert_eq!(replaced.state_version, 1, "{what}");
        let state: Tally = serde_json::from_str(&replaced.state).unwrap();
        assert_eq!(
            (state.total, state.adds),
            (truth.total + 1, truth.adds + 1),
            "{what}: replaced by the true state"
        );
    }
}

#[tokio::test]
async fn memory_unusable_snapshots_are_ignored_and_replaced() {
    unusable_snapshots_are_ignored_and_replaced(&Faulty::new()).await;
}

#[tokio::test]
async fn sqlite_unusable_snapshots_are_ignored_and_replaced() {
    let (_dir, store) = sqlite().await;
    unusable_snapshots_are_ignored_and_replaced(&store).await;
}

#[tokio::test]
async fn postgres_unusable_snapshots_are_ignored_and_replaced() {
    let Some(store) = allframe_tests::postgres_store().await else {
        return;
    };
    unusable_snapshots_are_ignored_and_replaced(&store).await;
}

#[tokio::test]
async fn a_failing_snapshot_store_never_fails_a_command() {
    let store = Faulty::with(Fault::Snapshots);
    let dispatcher = uncached(&store);
    build(&dispatcher, "t3", 12).await;
    // Writes were due at 5 and at every version after it (the failed
    // writes leave no snapshot behind): each failed, was counted, and the
    // command went on.
    let mut stats = dispatcher.snapshot_stats();
    for _ in 0..500 {
        if stats.failed >= 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        stats = dispatcher.snapshot_stats();
    }
    assert_eq!(stats.written, 0);
    assert_eq!(stats.failed, 8, "{stats:?}");
    assert_eq!(
        stats.ignored, 11,
        "each load found the snapshots unreadable"
    );
    let loaded = load::<Tally>(&store, "t3").await.unwrap();
    assert_eq!((loaded.version, loaded.state.total), (12, 66));

    // Mended, the next command writes one.
    store.set(None);
    assert_eq!(add(&dispatcher, "t3", 1).await, 13);
    assert_eq!(snapshot_at_least(&store, "tally-t3", 13).await.version, 13);
}

#[tokio::test]
async fn snapshots_are_written_off_the_commands_path() {
    let store = Faulty::new();
    store.hold_snapshot_writes();
    let dispatcher = Dispatcher::builder(&store).build().unwrap();
    // With snapshot writes stuck, commands past every due point still
    // answer.
    let commands = async {
        build(&dispatcher, "t4", 12).await;
    };
    tokio::time::timeout(Duration::from_secs(30), commands)
        .await
        .expect("commands answer while snapshot writes are stuck");
    let snapshots = store.snapshots().unwrap();
    assert_eq!(snapshots.load_snapshot("tally-t4").await.unwrap(), None);
    assert_eq!(dispatcher.snapshot_stats().written, 0);
    store.release_snapshot_writes();
    // With the state cache on, one was due at 5 and the next at 10.
    assert_eq!(snapshot_at_least(&store, "tally-t4", 10).await.version, 10);
    assert_eq!(dispatcher.snapshot_stats().written, 2);
}

/// Concurrent callers on a few tallies, their commands decided in rounds:
/// every snapshot written is the state at its version, and a load from it
/// equals a replay of the whole stream.
async fn concurrent_commands_snapshot_committed_states(store: &dyn EventStore) {
    let cached = Dispatcher::builder(store).build().unwrap();
    let ids = ["c1", "c2", "c3"];
    for id in ids {
        start(&cached, id).await;
    }
    let callers = (0..12u64).map(|caller| {
        let cached = &cached;
        async move {
            for n in 0..20 {
                add(cached, ids[(caller % 3) as usize], caller * 100 + n).await;
            }
        }
    });
    join_all(callers).await;
    for id in ids {
        let stream = format!("tally-{id}");
        let kept = snapshot_at_least(store, &stream, 75).await;
        let (truth, version) = replayed(store, &stream).await;
        assert_eq!(version, 81);
        let loaded = load::<Tally>(store, id).await.unwrap();
        assert_eq!(
            (loaded.version, loaded.state.total, loaded.state.adds),
            (version, truth.total, truth.adds),
            "{id}: snapshot + tail = the whole stream"
        );
        let at: Tally = serde_json::from_str(&kept.state).unwrap();
        let events = store.read_stream(&stream, 1, kept.version as usize).await;
        let mut prefix = Tally::default();
        for event in &events.unwrap() {
            prefix.apply(&event.decode().unwrap());
        }
        assert_eq!((at.total, at.adds), (prefix.total, prefix.adds), "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_commands_snapshot_committed_states() {
    let (_dir, store) = sqlite().await;
    concurrent_commands_snapshot_committed_states(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_commands_snapshot_committed_states() {
    let Some(store) = allframe_tests::postgres_store().await else {
        return;
    };
    concurrent_commands_snapshot_committed_states(&store).await;
}

/// Tally as a later release might have it.
mod later {
    use super::*;

    #[derive(allframe::Event, Debug)]
    pub(super) enum TallyEvent {
        Started {},
        #[event(version = 2, upcast(1 = same))]
        Added {
            n: u64,
        },
    }

    fn same(data: serde_json::Value) -> Result<serde_json::Value, allframe::UpcastError> {
        Ok(data)
    }

    macro_rules! tally {
        ($name:ident, $event:ty, $category:literal { $($field:ident: $ty:ty),* }) => {
            #[derive(Default, Serialize, Deserialize)]
            pub(super) struct $name {
                $($field: $ty),*
            }
            impl Aggregate for $name {
                type Event = $event;
                const CATEGORY: &'static str = $category;
                fn apply(&mut self, _: &$event) {}
                fn snapshots() -> Option<Snapshots<Self>> {
                    Some(Snapshots::every(EVERY))
                }
            }
        };
    }

    tally!(Same, super::TallyEvent, "tally" { total: u64, adds: u64 });
    tally!(Renamed, super::TallyEvent, "tally" { total: u64, count: u64 });
    tally!(Wider, super::TallyEvent, "tally" { total: u64, adds: u64, note: String });
    tally!(Retyped, super::TallyEvent, "tally" { total: String, adds: u64 });
    tally!(Recategorized, super::TallyEvent, "counter" { total: u64, adds: u64 });
    tally!(Upcast, TallyEvent, "tally" { total: u64, adds: u64 });
}

#[test]
fn the_fingerprint_follows_the_state_shape_and_the_event_versions() {
    let today = policy().fingerprint();
    assert_eq!(today.len(), 64);
    assert_eq!(today, policy().fingerprint(), "stable");
    let same = later::Same::snapshots().unwrap().fingerprint();
    assert_eq!(today, same, "the same shape and events");
    for (what, other) in [
        (
            "a renamed field",
            later::Renamed::snapshots().unwrap().fingerprint(),
        ),
        (
            "an added field",
            later::Wider::snapshots().unwrap().fingerprint(),
        ),
        (
            "a field of another kind",
            later::Retyped::snapshots().unwrap().fingerprint(),
        ),
        (
            "another category",
            later::Recategorized::snapshots().unwrap().fingerprint(),
        ),
        (
            "an event at version 2",
            later::Upcast::snapshots().unwrap().fingerprint(),
        ),
    ] {
        assert_ne!(today, other, "{what}");
    }
    let declared = policy().state_version(3);
    assert_eq!(declared.declared_state_version(), 3);
    assert_eq!(
        declared.fingerprint(),
        today,
        "the state version is kept apart"
    );
    assert_eq!(Snapshots::<Tally>::every(0).interval(), 1);
}
