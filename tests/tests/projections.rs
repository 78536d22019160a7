//! Projections over every backend: rows follow the log, pages and filters,
//! a failing projection stops alone and restarts, read-your-writes, pages
//! under concurrent inserts, and rebuilds under concurrent writes.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use allframe::store::{MemoryStore, SqliteStore};
use allframe::{Aggregate, Event, EventStore, ExpectedVersion, NewEvent, RecordedEvent};
use allframe::{
    ApplyError, Change, ListQuery, Projection, ProjectionError, ProjectionState, Projections,
};
use serde::{Deserialize, Serialize};

const WAIT: Duration = Duration::from_secs(20);

#[derive(Event, Debug, Clone)]
enum LedgerEvent {
    Opened { owner: String },
    Deposited { amount: u64 },
    Closed {},
    Poison {},
}

#[derive(Default)]
struct Ledger;

impl Aggregate for Ledger {
    type Event = LedgerEvent;
    const CATEGORY: &'static str = "ledger";
    fn apply(&mut self, _: &LedgerEvent) {}
}

#[allframe::projection(name = "balances", key = id, indexed_by(owner))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Balance {
    id: String,
    owner: String,
    balance: u64,
    deposits: u64,
}

impl Projection for Balance {
    type Source = Ledger;

    fn apply(
        row: Option<&Self>,
        event: &LedgerEvent,
        recorded: &RecordedEvent,
    ) -> Result<Change<Self>, ApplyError> {
        Ok(match (event, row) {
            (LedgerEvent::Opened { owner }, _) => Change::Upsert(Balance {
                id: recorded.aggregate_id().to_owned(),
                owner: owner.clone(),
                balance: 0,
                deposits: 0,
            }),
            (LedgerEvent::Deposited { amount }, Some(row)) => Change::Upsert(Balance {
                balance: row.balance + amount,
                deposits: row.deposits + 1,
                ..row.clone()
            }),
            (LedgerEvent::Deposited { .. }, None) => return Err("deposit before opening".into()),
            (LedgerEvent::Closed {}, _) => Change::Delete,
            (LedgerEvent::Poison {}, _) => Change::Skip,
        })
    }
}

/// Stream ids whose `Poison` event makes `fragile` panic; removing one
/// "fixes the bug" for a restart.
static POISONED: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[allframe::projection(name = "fragile", key = id)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Fragile {
    id: String,
    events: u64,
}

impl Projection for Fragile {
    type Source = Ledger;

    fn apply(
        row: Option<&Self>,
        event: &LedgerEvent,
        recorded: &RecordedEvent,
    ) -> Result<Change<Self>, ApplyError> {
        if matches!(event, LedgerEvent::Poison {})
            && POISONED.lock().unwrap().contains(&recorded.stream_id)
        {
            panic!("poisoned by {}", recorded.stream_id);
        }
        Ok(Change::Upsert(Fragile {
            id: recorded.aggregate_id().to_owned(),
            events: row.map_or(0, |r| r.events) + 1,
        }))
    }
}

async fn append(store: &dyn EventStore, id: &str, events: &[LedgerEvent]) -> u64 {
    let events = events
        .iter()
        .map(|e| NewEvent::from_event(e).unwrap())
        .collect();
    store
        .append(&format!("ledger-{id}"), ExpectedVersion::Any, events)
        .await
        .expect("append")
        .position
}

fn opened(owner: &str) -> LedgerEvent {
    LedgerEvent::Opened {
        owner: owner.into(),
    }
}

fn deposit(amount: u64) -> LedgerEvent {
    LedgerEvent::Deposited { amount }
}

async fn start(store: &dyn EventStore) -> Projections {
    Projections::builder(store)
        .projection::<Balance>()
        .projection::<Fragile>()
        .batch_size(64)
        .start()
        .await
        .expect("start projections")
}

async fn caught_up(projections: &Projections, store: &dyn EventStore, name: &str) -> u64 {
    let head = store.head_position().await.unwrap();
    projections
        .wait_for(name, head, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{name} did not catch up: {e}"))
}

async fn all_rows(projections: &Projections, query: ListQuery) -> Vec<Balance> {
    let mut rows = Vec::new();
    let mut query = query;
    loop {
        let page = projections.list::<Balance>(&query).await.unwrap();
        rows.extend(page.items);
        match page.next_cursor {
            Some(cursor) => query = query.cursor(Some(cursor)),
            None => return rows,
        }
    }
}

/// Owners of the rows the `owner` index names, by key.
async fn owned_by(projections: &Projections, owner: &str) -> Vec<String> {
    let rows = all_rows(projections, ListQuery::new().filter("owner", owner)).await;
    rows.into_iter().map(|row| row.id).collect()
}

/// A batch that leaves a row's indexed fields alone does not rewrite its
/// index entries; one that changes them does, whether the row was stored
/// before the batch or not.
async fn index_entries_follow_only_indexed_changes(store: Arc<dyn EventStore>) {
    append(&*store, "a", &[opened("Ada")]).await;
    let projections = start(&*store).await;
    caught_up(&projections, &*store, "balances").await;
    // Deposits keep the owner: the entries stay as they were stored.
    append(&*store, "a", &[deposit(5)]).await;
    caught_up(&projections, &*store, "balances").await;
    assert_eq!(owned_by(&projections, "Ada").await, ["a"]);
    // Opening again under another owner moves the row in the index, here
    // together with a deposit in the same batch.
    append(&*store, "a", &[opened("Bea"), deposit(1)]).await;
    caught_up(&projections, &*store, "balances").await;
    assert!(owned_by(&projections, "Ada").await.is_empty());
    assert_eq!(owned_by(&projections, "Bea").await, ["a"]);
    append(&*store, "a", &[deposit(2)]).await;
    caught_up(&projections, &*store, "balances").await;
    assert_eq!(owned_by(&projections, "Bea").await, ["a"]);
    let row = projections.get::<Balance>("a").await.unwrap().unwrap();
    assert_eq!((row.balance, row.deposits), (3, 2));
    projections.stop().await;
}

async fn rows_follow_the_log(store: Arc<dyn EventStore>) {
    append(&*store, "b", &[opened("Bob"), deposit(5), deposit(7)]).await;
    append(&*store, "a", &[opened("Ada"), deposit(100)]).await;
    append(&*store, "c", &[opened("Ada")]).await;
    append(&*store, "d", &[opened("Dan"), LedgerEvent::Closed {}]).await;
    let projections = start(&*store).await;
    let checkpoint = caught_up(&projections, &*store, "balances").await;
    assert_eq!(checkpoint, store.head_position().await.unwrap());
    assert_eq!(projections.checkpoint("balances").unwrap(), checkpoint);

    let b = projections.get::<Balance>("b").await.unwrap().unwrap();
    assert_eq!((b.balance, b.deposits, b.owner.as_str()), (12, 2, "Bob"));
    assert!(
        projections.get::<Balance>("d").await.unwrap().is_none(),
        "closed: deleted"
    );
    let json = projections
        .get_json("balances", "a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(json.get()).unwrap(),
        serde_json::json!({"id": "a", "owner": "Ada", "balance": 100, "deposits": 1})
    );

    let page = projections
        .list::<Balance>(&ListQuery::new().limit(2))
        .await
        .unwrap();
    let keys: Vec<&str> = page.items.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(keys, ["a", "b"]);
    let next = ListQuery::new().limit(2).cursor(page.next_cursor.clone());
    let page = projections.list::<Balance>(&next).await.unwrap();
    assert_eq!(
        page.items.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["c"]
    );
    assert_eq!(page.next_cursor, None);

    let adas = all_rows(
        &projections,
        ListQuery::new().limit(1).filter("owner", "Ada"),
    )
    .await;
    assert_eq!(
        adas.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["a", "c"]
    );
    let nobody = projections
        .list_json("balances", &ListQuery::new().filter("owner", "Zed"))
        .await
        .unwrap();
    assert!(nobody.items.is_empty() && nobody.next_cursor.is_none());

    let bad = |query: ListQuery| {
        let projections = projections.clone();
        async move { projections.list_json("balances", &query).await.unwrap_err() }
    };
    assert!(matches!(
        bad(ListQuery::new().filter("balance", "1")).await,
        ProjectionError::NotIndexed { .. }
    ));
    assert!(matches!(
        bad(ListQuery::new().limit(0)).await,
        ProjectionError::InvalidLimit { .. }
    ));
    assert!(matches!(
        bad(ListQuery::new().limit(1001)).await,
        ProjectionError::InvalidLimit { .. }
    ));
    assert!(matches!(
        bad(ListQuery::new().cursor(Some("nope".into()))).await,
        ProjectionError::InvalidCursor
    ));
    assert!(matches!(
        projections.get_json("nope", "a").await,
        Err(ProjectionError::Unknown(_))
    ));

    // A change after the catch-up arrives live.
    let position = append(&*store, "c", &[deposit(1)]).await;
    projections
        .wait_for("balances", position, WAIT)
        .await
        .unwrap();
    assert_eq!(
        projections
            .get::<Balance>("c")
            .await
            .unwrap()
            .unwrap()
            .balance,
        1
    );

    // Events of other categories move the checkpoint without touching rows.
    let other = store
        .append(
            "other-1",
            ExpectedVersion::Any,
            vec![NewEvent::new("Noise", &serde_json::json!({}))],
        )
        .await
        .unwrap();
    projections
        .wait_for("balances", other.position, WAIT)
        .await
        .unwrap();

    // A projection restarted over the same storage resumes, not replays.
    drop(projections);
    let again = start(&*store).await;
    caught_up(&again, &*store, "balances").await;
    assert_eq!(
        again.get::<Balance>("b").await.unwrap().unwrap().balance,
        12
    );
}

async fn failing_projection_stops_alone(store: Arc<dyn EventStore>) {
    let victim = format!("poison{}", uuid::Uuid::now_v7().simple());
    POISONED.lock().unwrap().push(format!("ledger-{victim}"));
    append(&*store, "x", &[opened("Xi"), deposit(1)]).await;
    let before = append(&*store, &victim, &[opened("Vic")]).await;
    let poison = append(&*store, &victim, &[LedgerEvent::Poison {}]).await;
    append(&*store, "y", &[opened("Yu")]).await;
    let projections = start(&*store).await;
    caught_up(&projections, &*store, "balances").await;

    let failed = loop {
        let status = projections.status_of("fragile").await.unwrap();
        if status.state == ProjectionState::Failed {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(failed.failed_position, Some(poison));
    assert!(
        failed.error.as_deref().unwrap().contains("poisoned by"),
        "{failed:?}"
    );
    assert_eq!(
        failed.checkpoint, before,
        "stops right before the failing event"
    );
    assert_eq!(failed.lag, failed.head - before);
    // The event before the failure is stored, the one after is not.
    assert!(projections.get::<Fragile>(&victim).await.unwrap().is_some());
    assert!(projections.get::<Fragile>("y").await.unwrap().is_none());

    // The others keep running.
    let later = append(&*store, "x", &[deposit(2)]).await;
    projections.wait_for("balances", later, WAIT).await.unwrap();
    assert_eq!(
        projections
            .get::<Balance>("x")
            .await
            .unwrap()
            .unwrap()
            .balance,
        3
    );
    let list = projections.status().await.unwrap();
    let balances = list.iter().find(|s| s.name == "balances").unwrap();
    assert_eq!(
        (balances.state, balances.error.as_ref()),
        (ProjectionState::Running, None)
    );

    // Restarting without a fix fails at the same event; with one it goes on.
    projections.restart("fragile").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = projections.status_of("fragile").await.unwrap();
    assert_eq!(
        (status.state, status.failed_position),
        (ProjectionState::Failed, Some(poison))
    );
    POISONED.lock().unwrap().retain(|s| !s.ends_with(&victim));
    projections.restart("fragile").unwrap();
    caught_up(&projections, &*store, "fragile").await;
    let status = projections.status_of("fragile").await.unwrap();
    assert_eq!(
        (status.state, status.error),
        (ProjectionState::Running, None)
    );
    assert_eq!(
        projections
            .get::<Fragile>("x")
            .await
            .unwrap()
            .unwrap()
            .events,
        3
    );
    assert_eq!(
        projections
            .get::<Fragile>(&victim)
            .await
            .unwrap()
            .unwrap()
            .events,
        2
    );
}

async fn read_your_writes(store: Arc<dyn EventStore>) {
    append(&*store, "r", &[opened("Ry")]).await;
    let projections = start(&*store).await;
    for round in 1..=100u64 {
        let position = append(&*store, "r", &[deposit(1)]).await;
        let checkpoint = projections
            .wait_for("balances", position, WAIT)
            .await
            .unwrap();
        assert!(checkpoint >= position);
        let row = projections.get::<Balance>("r").await.unwrap().unwrap();
        assert_eq!(row.balance, round, "round {round}: the deposit is visible");
    }
    let error = projections
        .wait_for("balances", u64::MAX, Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ProjectionError::BeyondHead {
                wanted: u64::MAX,
                head: 101
            }
        ),
        "no command produced it, so no wait: {error}"
    );
}

async fn pages_under_concurrent_inserts(store: Arc<dyn EventStore>) {
    for i in 0..150 {
        append(&*store, &format!("p{i:04}"), &[opened("Pat")]).await;
    }
    let projections = start(&*store).await;
    caught_up(&projections, &*store, "balances").await;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..150 {
                // New rows land before, between and after existing keys.
                append(&*store, &format!("p{i:04}x"), &[opened("Pat")]).await;
                append(&*store, &format!("p{i:04}"), &[deposit(1)]).await;
            }
        })
    };
    let mut seen = Vec::new();
    let mut query = ListQuery::new().limit(7).filter("owner", "Pat");
    loop {
        let page = projections.list::<Balance>(&query).await.unwrap();
        seen.extend(page.items.into_iter().map(|r| r.id));
        tokio::task::yield_now().await;
        match page.next_cursor {
            Some(cursor) => query = query.cursor(Some(cursor)),
            None => break,
        }
    }
    writer.await.unwrap();
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no row is listed twice");
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "keys ascend across pages"
    );
    for i in 0..150 {
        assert!(
            seen.contains(&format!("p{i:04}")),
            "p{i:04} existed throughout"
        );
    }
}

async fn rebuild_under_concurrent_writes(store: Arc<dyn EventStore>) {
    const ACCOUNTS: usize = 40;
    for i in 0..ACCOUNTS {
        append(&*store, &format!("r{i:02}"), &[opened("Rae"), deposit(1)]).await;
    }
    let projections = start(&*store).await;
    caught_up(&projections, &*store, "balances").await;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut expected: BTreeMap<String, (u64, u64)> = (0..ACCOUNTS)
                .map(|i| (format!("r{i:02}"), (1, 1)))
                .collect();
            for round in 0..600u64 {
                let id = format!("r{:02}", round as usize % ACCOUNTS);
                append(&*store, &id, &[deposit(round + 1)]).await;
                let entry = expected.get_mut(&id).unwrap();
                *entry = (entry.0 + round + 1, entry.1 + 1);
                if round % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            expected
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    projections.rebuild("balances").await.unwrap();
    let status = projections.status_of("balances").await.unwrap();
    assert_eq!(status.state, ProjectionState::Rebuilding, "{status:?}");
    assert!(status.rebuild_checkpoint.is_some());
    // Readers never see a half-built generation: every account is there
    // at every moment of the rebuild.
    let mut reads = 0;
    loop {
        let rows = all_rows(&projections, ListQuery::new().limit(1000)).await;
        assert_eq!(rows.len(), ACCOUNTS, "a complete generation at every read");
        reads += 1;
        let status = projections.status_of("balances").await.unwrap();
        if status.state == ProjectionState::Running {
            assert_eq!(status.rebuild_checkpoint, None);
            break;
        }
        assert!(reads < 100_000, "the rebuild never finished: {status:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let expected = writer.await.unwrap();
    caught_up(&projections, &*store, "balances").await;
    let rows = all_rows(&projections, ListQuery::new().limit(1000)).await;
    let actual: BTreeMap<String, (u64, u64)> = rows
        .into_iter()
        .map(|r| (r.id, (r.balance, r.deposits)))
        .collect();
    assert_eq!(actual, expected, "every deposit applied exactly once");
}

/// A fresh SQLite store in a temporary file, kept while the test runs.
async fn sqlite() -> (Arc<dyn EventStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("events.db"))
        .await
        .unwrap();
    (Arc::new(store), dir)
}

macro_rules! backend_tests {
    ($backend:ident, $make:expr) => {
        mod $backend {
            #[allow(unused_imports)]
            use super::*;
            backend_tests!(@each $make; rows_follow_the_log, index_entries_follow_only_indexed_changes, failing_projection_stops_alone,
                read_your_writes, pages_under_concurrent_inserts, rebuild_under_concurrent_writes);
        }
    };
    (@each $make:expr; $($test:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                #[allow(clippy::redundant_closure_call)]
                let Some((store, _guard)) = ($make)().await else { return };
                super::$test(store).await;
            }
        )+
    };
}

backend_tests!(memory, || async {
    Some((Arc::new(MemoryStore::new()) as Arc<dyn EventStore>, ()))
});
backend_tests!(sqlite, || async { Some(super::sqlite().await) });
backend_tests!(postgres, || async {
    allframe_tests::postgres_store()
        .await
        .map(|store| (Arc::new(store) as Arc<dyn EventStore>, ()))
});
