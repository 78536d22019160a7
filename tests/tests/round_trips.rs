//! Round trips per batch, as logged and as sent.
//!
//! Each group-commit transaction and each projection batch commit logs (at
//! `debug`, target `allframe::store`) how many round trips it took. This
//! test checks those figures against what sqlx itself reports: sqlx emits
//! one `tracing` event (target `sqlx::query`) per statement it sends, and a
//! layer installed here counts them inside each batch's span
//! (`group_commit`, `projection_commit`). It also checks the point of group
//! commit: however many appends share a transaction, it takes the same
//! handful of round trips. On SQLite (statements handed to its worker
//! thread) and on PostgreSQL (a real server; skipped with a message without
//! one, a failure with `CI=true`).

use std::sync::Mutex;
use std::time::Duration;

use allframe::store::{Completion, IdempotencyStore, SqliteStore};
use allframe::{Aggregate, ApplyError, Change, Event, Projection, Projections};
use allframe::{EventStore, ExpectedVersion, NewEvent, RecordedEvent};
use allframe_tests::postgres_store;
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// One logged batch: its span's name, the figures it logged and the
/// statements sqlx sent inside it.
#[derive(Debug, Clone, PartialEq)]
struct Logged {
    span: &'static str,
    appends: u64,
    round_trips: u64,
    sent: u64,
}

static LOGGED: Mutex<Vec<Logged>> = Mutex::new(Vec::new());

/// Statements counted so far in a batch's span.
struct Sent(u64);

struct CountStatements;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for CountStatements {
    fn on_event(&self, event: &tracing::Event<'_>, context: Context<'_, S>) {
        let Some(span) = context.event_span(event) else {
            return;
        };
        let Some(batch) = span
            .scope()
            .find(|s| matches!(s.name(), "group_commit" | "projection_commit"))
        else {
            return;
        };
        let mut extensions = batch.extensions_mut();
        match event.metadata().target() {
            "sqlx::query" => match extensions.get_mut::<Sent>() {
                Some(sent) => sent.0 += 1,
                None => extensions.insert(Sent(1)),
            },
            "allframe::store" => {
                let mut fields = Fields::default();
                event.record(&mut fields);
                let Some(round_trips) = fields.round_trips else {
                    return;
                };
                LOGGED.lock().unwrap().push(Logged {
                    span: batch.name(),
                    appends: fields.appends.unwrap_or(0),
                    round_trips,
                    sent: extensions.get_mut::<Sent>().map_or(0, |sent| sent.0),
                });
            }
            _ => {}
        }
    }
}

#[derive(Default)]
struct Fields {
    appends: Option<u64>,
    round_trips: Option<u64>,
}

impl tracing::field::Visit for Fields {
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        match field.name() {
            "appends" => self.appends = Some(value),
            "round_trips" => self.round_trips = Some(value),
            _ => {}
        }
    }

    fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
}

#[derive(Event, Debug, Clone)]
enum TallyEvent {
    Counted { by: String },
}

#[derive(Default)]
struct Tally;

impl Aggregate for Tally {
    type Event = TallyEvent;
    const CATEGORY: &'static str = "tally";
    fn apply(&mut self, _: &TallyEvent) {}
}

/// One row per tally, indexed by who counted last.
#[allframe::projection(name = "tallies", key = id, indexed_by(by))]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TallyRow {
    id: String,
    by: String,
    count: u64,
}

impl Projection for TallyRow {
    type Source = Tally;

    fn apply(
        row: Option<&Self>,
        event: &TallyEvent,
        recorded: &RecordedEvent,
    ) -> Result<Change<Self>, ApplyError> {
        let TallyEvent::Counted { by } = event;
        Ok(Change::Upsert(TallyRow {
            id: recorded.aggregate_id().to_owned(),
            by: by.clone(),
            count: row.map_or(0, |row| row.count) + 1,
        }))
    }
}

fn counted(by: &str) -> Vec<NewEvent> {
    vec![NewEvent::from_event(&TallyEvent::Counted { by: by.to_owned() }).unwrap()]
}

/// Runs waves of concurrent appends (some completing idempotency keys, one
/// with a wrong expected version) and a projection over them; returns what
/// was logged meanwhile.
async fn exercise(store: &dyn EventStore, records: &dyn IdempotencyStore) -> Vec<Logged> {
    LOGGED.lock().unwrap().clear();
    const HOUR: Duration = Duration::from_secs(3600);
    for wave in 0..3 {
        let mut completions = Vec::new();
        for i in 0..3 {
            let key = format!("key-{wave}-{i}");
            let claim = records
                .claim_idempotency_key(&key, "fp", HOUR, HOUR)
                .await
                .unwrap();
            let token = claim.token().expect("a new key").to_owned();
            completions.push(vec![Completion::new(key, token, |_| String::new())]);
        }
        completions.resize_with(60, Vec::new);
        let appends = completions.into_iter().enumerate().map(|(i, completion)| {
            let stream = format!("tally-{}", i % 40);
            async move {
                records
                    .append_with(&stream, ExpectedVersion::Any, counted("a"), completion)
                    .await
                    .unwrap()
            }
        });
        join_all(appends).await;
        let refused = store
            .append("tally-0", ExpectedVersion::Exact(0), counted("b"))
            .await;
        assert!(refused.is_err(), "a wrong expected version is refused");
    }
    let head = store.head_position().await.unwrap();
    let projections = Projections::builder(store)
        .projection::<TallyRow>()
        .batch_size(50)
        .start()
        .await
        .unwrap();
    projections
        .wait_for("tallies", head, Duration::from_secs(30))
        .await
        .unwrap();
    // Appends 1 and 41 of each wave count tally 1.
    assert_eq!(
        projections
            .get::<TallyRow>("1")
            .await
            .unwrap()
            .unwrap()
            .count,
        6
    );
    projections.stop().await;
    LOGGED.lock().unwrap().clone()
}

/// The checks on one backend's log. sqlx leaves `unlogged` statements of
/// each transaction out of its statement log (see the callers); `most`, if
/// given, is the most round trips a group commit may take.
fn check(backend: &str, logged: &[Logged], unlogged: u64, most: Option<u64>) {
    let commits: Vec<&Logged> = logged.iter().filter(|l| l.span == "group_commit").collect();
    let batches: Vec<&Logged> = logged
        .iter()
        .filter(|l| l.span == "projection_commit")
        .collect();
    assert!(
        commits.len() >= 3 && batches.len() >= 3,
        "{backend}: too little was logged: {logged:#?}"
    );
    for entry in logged {
        assert_eq!(
            entry.round_trips,
            entry.sent + unlogged,
            "{backend}: a batch logged other round trips than sqlx sent: {entry:?}"
        );
    }
    let shared = commits.iter().map(|c| c.appends).max().unwrap_or(0);
    assert!(
        shared >= 5,
        "{backend}: no transaction was shared by several appends: {commits:#?}"
    );
    for commit in commits.iter().filter(|_| most.is_some()) {
        let most = most.unwrap_or_default();
        assert!(
            commit.round_trips <= most,
            "{backend}: a group commit of {} appends took {} round trips (at most {most})",
            commit.appends,
            commit.round_trips
        );
    }
    for batch in &batches {
        // BEGIN, checkpoint, delete index entries, upsert rows, insert
        // index entries, COMMIT.
        assert!(batch.round_trips <= 6, "{backend}: {batch:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_log_the_round_trips_they_take() {
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(CountStatements))
        .expect("the only subscriber of this test binary");

    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(dir.path().join("trips.db"))
        .await
        .unwrap();
    let logged = exercise(&sqlite, sqlite.idempotency().unwrap()).await;
    // SQLite's statements are calls into the same process (handed to its
    // worker thread), one per chunk of events and per completed key: they
    // are counted, not bounded.
    // sqlx's SQLite worker runs BEGIN and COMMIT as commands of its own,
    // which its statement log leaves out.
    check("sqlite", &logged, 2, None);
    sqlite.close().await;

    let Some(postgres) = postgres_store().await else {
        return;
    };
    let logged = exercise(&postgres, postgres.idempotency().unwrap()).await;
    // BEGIN, head, versions, held tokens, insert and head, completions,
    // COMMIT: whatever the batch's size.
    // sqlx logs a custom BEGIN (`begin_with`) as a statement but not the
    // COMMIT.
    check("postgres", &logged, 1, Some(7));
    postgres.close().await;
}
