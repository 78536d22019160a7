//! No statement the PostgreSQL store runs on its write and projection paths
//! reads a large table sequentially.
//!
//! The store's statements are all meant to be answered from an index: an
//! append reads the versions of its streams and the tokens of its keys, a
//! projection loads and rewrites the rows a batch touches, a read takes a
//! page. A sequential scan of the event log (or of the shared projection or
//! idempotency tables) in any of them would be invisible on the small
//! tables of the other tests and cost seconds per statement on a real log,
//! with every writer of every node waiting behind the head lock meanwhile.
//!
//! Rather than `EXPLAIN` a hand-copied list of statements (which would miss
//! a new one or drift from the real text), the test makes PostgreSQL report
//! the plan of *every* statement the real store executes: every connection
//! of the store loads the `auto_explain` module (`session_preload_libraries`,
//! passed as startup options), which sends each executed plan to the client
//! as a NOTICE; sqlx turns notices into `tracing` events (target
//! `sqlx::postgres::notice`), which a subscriber installed here collects.
//! Plans are the ones actually used, custom or generic, since the
//! statements run through sqlx's prepared-statement cache as in production.
//!
//! The store runs on a schema filled beforehand with SQL: 200,000 events over
//! 1,000 streams (900 `ledger-…` streams a projection reads, 100 `other-…`
//! ones it does not), 100,000 idempotency records, and 50,000 rows and index
//! entries of other projections (as several projections share the tables),
//! all `ANALYZE`d. The tables must be large for the check to mean anything:
//! on a table of a few pages a sequential scan is the planner's right
//! choice (with 1,000 idempotency records it picks one to complete keys),
//! and a statement that would scan a large table only shows it on one.
//! The test then drives the public API: group-commit appends
//! to old and new streams with every kind of expected version (one of them
//! wrong), idempotent commands (claim, completion with the append, completion
//! without events, replay, mismatch, release, take-over, expiry, a lost key,
//! purge), a projection with an indexed field catching up over the whole log,
//! following new appends, being read (get, pages, filtered pages) and
//! rebuilt (new generation, swap, dropping the old one), and reads of the
//! log with each kind of filter. The catch-up runs on statistics taken
//! before the projection had rows (as right after it is deployed), the
//! rest after another `ANALYZE` (as autovacuum would run).
//!
//! It fails listing every statement whose plan has a `Seq Scan` on
//! `allframe_events`, `allframe_projection_rows`, `allframe_projection_index`
//! or `allframe_idempotency`. Sequential scans of the small tables
//! (`allframe_head`: one row; `allframe_projections` and
//! `allframe_projection_checkpoints`: a row or two per projection;
//! `_sqlx_migrations` and the catalogs) are fine: they are a page or two
//! and an index would not read less. A bitmap scan that reads a large part
//! of a table because the statement wants most of it is fine too.
//!
//! A second test runs a projection's first catch-up on tables PostgreSQL
//! has no statistics for (autovacuum off), where a plan looks only at the
//! statement, and checks that every batch finds its rows and index entries
//! by key in an index, not by filtering the whole generation.
//!
//! A third checks the same of the idempotency records a batch reads and
//! locks, while the record table grows without statistics.
//!
//! It checks that the capture works (plans of the statements it expects
//! arrive), so it cannot pass by seeing nothing. Without a PostgreSQL server
//! it is skipped with a message, as the other PostgreSQL tests are (a
//! failure when `CI=true`); a server without the `auto_explain` module
//! (PostgreSQL's contrib package) is a failure.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use allframe::Projections;
use allframe::store::{Claim, Completion, DEFAULT_MAX_BATCH, IdempotencyStore, PostgresStore};
use allframe::{Aggregate, ApplyError, Change, Event, ListQuery, Projection, ProjectionState};
use allframe::{EventFilter, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StoreError};
use allframe_tests::{fresh_schema, postgres_options};
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// Events in the pre-filled log.
const EVENTS: i64 = 200_000;
/// Streams they are spread over, round-robin; the first [`LEDGERS`] are
/// `ledger-…`, the rest `other-…`.
const STREAMS: i64 = 1_000;
const LEDGERS: i64 = 900;
/// Pre-filled idempotency records (a day of commands at about one a
/// second).
const KEYS: i64 = 100_000;
/// Rows (each with one index entry) of other projections in the shared
/// projection tables.
const OTHER_ROWS: i64 = 50_000;
/// Distinct owners of the ledgers (the projection's indexed field).
const OWNERS: i64 = 50;
/// Ledgers the test opens: three per round of [`group_commits`].
const NEW_LEDGERS: usize = 18;

const WAIT: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// The tables a statement must never read sequentially.
const LARGE_TABLES: [&str; 4] = [
    "allframe_events",
    "allframe_projection_rows",
    "allframe_projection_index",
    "allframe_idempotency",
];

// ---------------------------------------------------------------------------
// Capturing the plans

const NOTICE_TARGET: &str = "sqlx::postgres::notice";

/// Every notice received by any connection of the process.
static NOTICES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// A `tracing` layer keeping the message of each PostgreSQL notice.
struct CollectNotices;

impl<S: tracing::Subscriber> Layer<S> for CollectNotices {
    fn register_callsite(
        &self,
        metadata: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if metadata.target() == NOTICE_TARGET {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn enabled(&self, metadata: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        metadata.target() == NOTICE_TARGET
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut message = Message(None);
        event.record(&mut message);
        if let Some(message) = message.0 {
            NOTICES
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(message);
        }
    }
}

struct Message(Option<String>);

impl tracing::field::Visit for Message {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" && self.0.is_none() {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

/// One plan `auto_explain` reported: the statement and its plan.
struct Plan {
    query: String,
    plan: String,
}

/// The plans among the notices: `duration: … plan:\nQuery Text: …\n<plan>`.
fn plans() -> Vec<Plan> {
    NOTICES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter_map(|notice| {
            let (_, rest) = notice.split_once("Query Text: ")?;
            // The store's statements are one line; a multi-line one (a
            // migration) leaves some SQL in the "plan", which names no
            // scan.
            let (query, plan) = rest.split_once('\n').unwrap_or((rest, ""));
            Some(Plan {
                query: query.trim().to_owned(),
                plan: plan.to_owned(),
            })
        })
        .collect()
}

/// The large tables `plan` reads sequentially.
fn sequential_scans(plan: &str) -> Vec<&'static str> {
    LARGE_TABLES
        .into_iter()
        .filter(|table| {
            let needle = format!("Seq Scan on {table}");
            plan.match_indices(&needle).any(|(at, _)| {
                // Not a longer name that starts the same.
                !plan[at + needle.len()..]
                    .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            })
        })
        .collect()
}

/// `query` with runs of bind parameters (`$3, $4, …, $258`) shortened, to
/// print it.
fn shorten(query: &str) -> String {
    let mut out = String::new();
    let mut rest = query;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        // A run `$a, $b, …`, possibly with casts between (`$4::jsonb), ($5`).
        let mut end = at;
        let mut count = 0;
        let mut last = "";
        loop {
            let digits = rest[end + 1..]
                .find(|c: char| !c.is_ascii_digit())
                .map_or(rest.len() - end - 1, |n| n);
            if digits == 0 {
                break;
            }
            count += 1;
            last = &rest[end..end + 1 + digits];
            end += 1 + digits;
            let next = rest[end..].find('$');
            match next {
                Some(gap)
                    if gap <= 12
                        && rest[end..end + gap].chars().all(|c| {
                            matches!(c, ',' | ' ' | '(' | ')' | ':') || c.is_alphanumeric()
                        }) =>
                {
                    end += gap;
                }
                _ => break,
            }
        }
        if count == 0 {
            out.push('$');
            rest = &rest[at + 1..];
            continue;
        }
        let first_len = rest[at + 1..]
            .find(|c: char| !c.is_ascii_digit())
            .map_or(rest.len() - at - 1, |n| n);
        let first = &rest[at..at + 1 + first_len];
        if count > 3 {
            let _ = write!(out, "{first}…{last} ({count} binds)");
        } else {
            out.push_str(&rest[at..end]);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    if out.chars().count() > 220 {
        out = out.chars().take(220).collect::<String>() + "…";
    }
    out
}

// ---------------------------------------------------------------------------
// The projection

#[derive(Event, Debug, Clone)]
enum LedgerEvent {
    Opened { owner: String },
    Deposited { amount: u64 },
}

#[derive(Default)]
struct Ledger;

impl Aggregate for Ledger {
    type Event = LedgerEvent;
    const CATEGORY: &'static str = "ledger";
    fn apply(&mut self, _: &LedgerEvent) {}
}

/// One row per ledger stream, indexed by owner.
#[allframe::projection(name = "plan-balances", key = id, indexed_by(owner))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Balance {
    id: String,
    owner: String,
    balance: u64,
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
            }),
            (LedgerEvent::Deposited { amount }, Some(row)) => Change::Upsert(Balance {
                balance: row.balance + amount,
                ..row.clone()
            }),
            (LedgerEvent::Deposited { .. }, None) => return Err("deposit before opening".into()),
        })
    }
}

fn event(event: &LedgerEvent) -> Vec<NewEvent> {
    vec![NewEvent::from_event(event).unwrap()]
}

fn deposit() -> Vec<NewEvent> {
    event(&LedgerEvent::Deposited { amount: 1 })
}

fn opened(owner: &str) -> Vec<NewEvent> {
    event(&LedgerEvent::Opened {
        owner: owner.to_owned(),
    })
}

// ---------------------------------------------------------------------------
// Setting up

/// Fills the (migrated) schema behind `connection`.
async fn fill(connection: &mut PgConnection) {
    let statements = [
        format!(
            "INSERT INTO allframe_events (position, stream_id, category, version, event_type, \
             schema_version, data, event_id, recorded_at) \
             SELECT g + 1, \
                    CASE WHEN g % {STREAMS} < {LEDGERS} THEN 'ledger-' ELSE 'other-' END \
                        || (g % {STREAMS}), \
                    CASE WHEN g % {STREAMS} < {LEDGERS} THEN 'ledger' ELSE 'other' END, \
                    g / {STREAMS} + 1, \
                    CASE WHEN g % {STREAMS} >= {LEDGERS} THEN 'Noise' \
                         WHEN g < {STREAMS} THEN 'Opened' ELSE 'Deposited' END, \
                    1, \
                    CASE WHEN g % {STREAMS} >= {LEDGERS} THEN '{{}}'::jsonb \
                         WHEN g < {STREAMS} \
                             THEN jsonb_build_object('owner', 'owner-' || (g % {OWNERS})) \
                         ELSE '{{\"amount\": 1}}'::jsonb END, \
                    gen_random_uuid(), now() \
             FROM generate_series(0, {EVENTS} - 1) g"
        ),
        format!("UPDATE allframe_head SET position = {EVENTS}"),
        // Ten of them older than the retention period, for the purge.
        format!(
            "INSERT INTO allframe_idempotency \
             (key, fingerprint, state, response, created_at, lease_until, token) \
             SELECT 'bulk-' || g, 'fp'::bytea, 'completed', 'done'::bytea, \
                    CASE WHEN g <= 10 THEN now() - interval '2 days' \
                         ELSE now() - make_interval(secs => g % 600) END, \
                    now(), gen_random_uuid()::text \
             FROM generate_series(1, {KEYS}) g"
        ),
        "INSERT INTO allframe_projections (name, generation) \
         VALUES ('other_a', 1), ('other_b', 3)"
            .to_owned(),
        "INSERT INTO allframe_projection_checkpoints (projection, generation, position) \
         VALUES ('other_a', 1, 0), ('other_b', 3, 0)"
            .to_owned(),
        format!(
            "INSERT INTO allframe_projection_rows (projection, generation, key, row) \
             SELECT CASE WHEN g % 2 = 0 THEN 'other_a' ELSE 'other_b' END, \
                    CASE WHEN g % 2 = 0 THEN 1 ELSE 3 END, \
                    'k' || g, jsonb_build_object('n', g) \
             FROM generate_series(1, {OTHER_ROWS}) g"
        ),
        format!(
            "INSERT INTO allframe_projection_index (projection, generation, field, value, key) \
             SELECT CASE WHEN g % 2 = 0 THEN 'other_a' ELSE 'other_b' END, \
                    CASE WHEN g % 2 = 0 THEN 1 ELSE 3 END, \
                    'group', 'g' || (g % 100), 'k' || g \
             FROM generate_series(1, {OTHER_ROWS}) g"
        ),
        "ANALYZE".to_owned(),
    ];
    for statement in statements {
        sqlx::query(AssertSqlSafe(statement))
            .execute(&mut *connection)
            .await
            .expect("fill the schema");
    }
}

// ---------------------------------------------------------------------------
// The paths driven

/// Rounds of concurrent appends, so group commit writes several streams in
/// one transaction: old streams at their exact version, new ones, `Any`,
/// one wrong expected version, and idempotent commands completed by their
/// appends.
async fn group_commits(store: &PostgresStore, records: &dyn IdempotencyStore) {
    for round in 0..6i64 {
        let mut appends = Vec::new();
        for i in 0..4 {
            let stream = format!("ledger-{}", round * 4 + i);
            // Pre-filled streams are at version EVENTS / STREAMS.
            let expected = ExpectedVersion::Exact((EVENTS / STREAMS) as u64);
            appends.push((stream, expected, deposit(), Vec::new()));
        }
        for i in 0..3 {
            let stream = format!("ledger-new{round}x{i}");
            appends.push((
                stream,
                ExpectedVersion::NoStream,
                opened("owner-new"),
                Vec::new(),
            ));
        }
        for i in 0..3 {
            let stream = format!("ledger-{}", 100 + i);
            appends.push((stream, ExpectedVersion::Any, deposit(), Vec::new()));
        }
        appends.push((
            format!("ledger-{}", 200 + round),
            ExpectedVersion::Exact(1),
            deposit(),
            Vec::new(),
        ));
        for i in 0..4 {
            let key = format!("cmd-{round}-{i}");
            let token = records
                .claim_idempotency_key(&key, "fp", HOUR, HOUR)
                .await
                .unwrap()
                .token()
                .expect("a new key is acquired")
                .to_owned();
            let completion = Completion::new(key, token, |a| format!("v{}", a.version));
            appends.push((
                format!("ledger-{}", 300 + i),
                ExpectedVersion::Any,
                deposit(),
                vec![completion],
            ));
        }
        let outcomes = join_all(appends.into_iter().map(
            |(stream, expected, events, completion)| async move {
                let outcome = records
                    .append_with(&stream, expected, events, completion)
                    .await;
                (stream, expected, outcome)
            },
        ))
        .await;
        for (stream, expected, outcome) in outcomes {
            if expected == ExpectedVersion::Exact(1) {
                assert!(
                    matches!(outcome, Err(StoreError::WrongExpectedVersion { .. })),
                    "{stream}: {outcome:?}"
                );
            } else {
                outcome.unwrap_or_else(|e| panic!("{stream}: {e}"));
            }
        }
    }
    // One append alone, through the plain API.
    store
        .append("ledger-1", ExpectedVersion::Any, deposit())
        .await
        .unwrap();
}

/// Every other way a key goes: replay, mismatch, completion without
/// events, release, take-over, expiry, a lost key, purge.
async fn idempotency(records: &dyn IdempotencyStore) {
    let claim = |key: &'static str,
                 fingerprint: &'static str,
                 lease: Duration,
                 retention: Duration| async move {
        records
            .claim_idempotency_key(key, fingerprint, lease, retention)
            .await
            .unwrap()
    };
    assert_eq!(
        claim("cmd-0-0", "fp", HOUR, HOUR).await,
        Claim::Completed("v201".into())
    );
    assert_eq!(claim("cmd-0-0", "other", HOUR, HOUR).await, Claim::Mismatch);
    assert_eq!(
        claim("bulk-500", "fp", HOUR, HOUR).await,
        Claim::Completed("done".into())
    );

    let noop = claim("noop", "fp", HOUR, HOUR).await;
    records
        .complete_idempotency_key("noop", noop.token().unwrap(), "nothing".into())
        .await
        .unwrap();
    assert_eq!(
        claim("noop", "fp", HOUR, HOUR).await,
        Claim::Completed("nothing".into())
    );

    let failed = claim("failed", "fp", HOUR, HOUR).await;
    assert_eq!(claim("failed", "fp", HOUR, HOUR).await, Claim::InFlight);
    records
        .release_idempotency_key("failed", failed.token().unwrap())
        .await
        .unwrap();

    // A lease that runs out at once is taken over; the first holder's
    // completion is then refused.
    let first = claim("lapsed", "fp", Duration::ZERO, HOUR).await;
    let second = claim("lapsed", "fp", HOUR, HOUR).await;
    assert!(second.token().is_some() && second != first, "{second:?}");
    let lost = records
        .append_with(
            "ledger-400",
            ExpectedVersion::Any,
            deposit(),
            vec![Completion::new("lapsed", first.token().unwrap(), |_| {
                String::new()
            })],
        )
        .await;
    assert!(
        matches!(lost, Err(StoreError::IdempotencyKeyLost { .. })),
        "{lost:?}"
    );
    records
        .release_idempotency_key("lapsed", second.token().unwrap())
        .await
        .unwrap();

    // A completed record past a (zero) retention period counts as absent.
    let expired = claim("cmd-0-1", "fp", HOUR, Duration::ZERO).await;
    assert!(expired.token().is_some(), "{expired:?}");
    records
        .release_idempotency_key("cmd-0-1", expired.token().unwrap())
        .await
        .unwrap();

    let purged = records.purge_idempotency_keys(HOUR).await.unwrap();
    assert_eq!(purged, 10, "the ten old pre-filled records");
}

/// Pages through a listing, returning the keys.
async fn all_keys(projections: &Projections, mut query: ListQuery) -> Vec<String> {
    let mut keys = Vec::new();
    loop {
        let page = projections.list::<Balance>(&query).await.unwrap();
        keys.extend(page.items.into_iter().map(|row| row.id));
        match page.next_cursor {
            Some(cursor) => query = query.cursor(Some(cursor)),
            None => return keys,
        }
    }
}

/// Reads the projection's rows, `new` ledgers having been opened by the
/// test.
async fn projection_reads(projections: &Projections, new: usize) {
    // A pre-filled ledger no append touched: opened, then a deposit per
    // later version.
    let row = projections.get::<Balance>("500").await.unwrap().unwrap();
    assert_eq!(
        (row.owner.as_str(), row.balance),
        ("owner-0", (EVENTS / STREAMS - 1) as u64)
    );
    assert!(projections.get::<Balance>("950").await.unwrap().is_none());
    let keys = all_keys(projections, ListQuery::new().limit(250)).await;
    assert_eq!(
        keys.len(),
        LEDGERS as usize + new,
        "pre-filled and new ledgers"
    );
    let owned = all_keys(
        projections,
        ListQuery::new().limit(7).filter("owner", "owner-7"),
    )
    .await;
    assert_eq!(owned.len(), (LEDGERS / OWNERS) as usize);
    let owned_new = all_keys(
        projections,
        ListQuery::new().limit(1000).filter("owner", "owner-new"),
    )
    .await;
    assert_eq!(owned_new.len(), new);
}

async fn log_reads(store: &PostgresStore) {
    let per_stream = (EVENTS / STREAMS) as u64;
    let events = store.read_stream("ledger-500", 0, 50).await.unwrap();
    assert_eq!(events.len(), 50);
    let events = store.read_stream("ledger-500", 150, 1000).await.unwrap();
    assert_eq!(events.len(), (per_stream - 149) as usize);
    assert_eq!(
        store.stream_version("ledger-500").await.unwrap(),
        per_stream
    );
    assert_eq!(store.stream_version("nowhere-1").await.unwrap(), 0);
    let mid = (EVENTS / 2) as u64;
    let filters = [
        EventFilter::all(),
        EventFilter::all().stream("ledger-500"),
        EventFilter::all().stream("other-950"),
        EventFilter::all().category("other"),
        EventFilter::all().category("ledger"),
        EventFilter::all().event_types(["Opened"]),
        EventFilter::all().event_types(["Noise", "Opened"]),
        EventFilter::all()
            .category("ledger")
            .event_types(["Opened"]),
        EventFilter::all()
            .stream("ledger-500")
            .event_types(["Deposited"]),
    ];
    for filter in &filters {
        for after in [0, mid] {
            let events = store.read_all(after, 100, filter).await.unwrap();
            assert!(
                events
                    .iter()
                    .all(|e| e.position > after && filter.matches(e)),
                "{filter:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------

/// Installs the notice collector once for the test binary (its tests share
/// it: each looks for its own statements among the plans).
fn capture_plans() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(CollectNotices),
        )
        .expect("the only subscriber of this test binary");
    });
}

/// `options` with every executed plan reported to the client.
fn traced(options: PgConnectOptions) -> PgConnectOptions {
    options.options([
        ("session_preload_libraries", "auto_explain"),
        ("auto_explain.log_min_duration", "0"),
        ("auto_explain.log_level", "notice"),
        ("auto_explain.log_nested_statements", "on"),
        ("auto_explain.log_format", "text"),
        ("client_min_messages", "notice"),
    ])
}

/// Starts capturing plans and migrates a fresh schema with a plain store:
/// the server's options, the schema, and a connection to fill it with
/// (`None` when PostgreSQL is unreachable and the test is skipped).
///
/// The tests of this binary run one at a time (the returned guard), each
/// seeing only its own plans: the collector is process-wide, and under
/// `cargo test` they share a process, where one test's small fresh tables
/// (on which a sequential scan is the right plan) would show in the other's
/// check.
async fn migrated_schema() -> Option<(
    PgConnectOptions,
    String,
    PgConnection,
    tokio::sync::MutexGuard<'static, ()>,
)> {
    static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let alone = ALONE.lock().await;
    capture_plans();
    NOTICES.lock().unwrap_or_else(|e| e.into_inner()).clear();
    let options = postgres_options().await?;
    let schema = fresh_schema();
    let plain = PostgresStore::connect_with(options.clone(), Some(&schema), DEFAULT_MAX_BATCH)
        .await
        .expect("open the PostgreSQL store");
    plain.close().await;
    let setup = PgConnection::connect_with(&options.clone().options([("search_path", &schema)]))
        .await
        .unwrap();
    Some((options, schema, setup, alone))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_and_projection_paths_never_scan_a_large_table_sequentially() {
    let started = Instant::now();
    // Migrate with a plain store, fill, then reopen with plans reported.
    let Some((options, schema, mut setup, _alone)) = migrated_schema().await else {
        return;
    };
    fill(&mut setup).await;
    let filled = started.elapsed();

    let store = PostgresStore::connect_with(traced(options), Some(&schema), DEFAULT_MAX_BATCH)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "open the store with auto_explain loaded (is PostgreSQL's contrib module \
                 auto_explain installed on the server?): {e}"
            )
        });
    assert!(
        plans()
            .iter()
            .any(|p| p.query.starts_with("SELECT position FROM allframe_head")),
        "auto_explain reports no plan: the capture does not work"
    );
    let records = store
        .idempotency()
        .expect("PostgreSQL keeps idempotency records");

    // A projection catching up over the whole log.
    let projections = Projections::builder(&store)
        .projection::<Balance>()
        .start()
        .await
        .unwrap();
    projections
        .wait_for("plan-balances", EVENTS as u64, WAIT)
        .await
        .unwrap();
    let caught_up = started.elapsed();
    projection_reads(&projections, 0).await;
    // The statements above ran with statistics that predate the
    // projection's rows (as right after a projection is deployed); those
    // below with fresh ones, as autovacuum would have gathered by then.
    sqlx::query("ANALYZE").execute(&mut setup).await.unwrap();

    // Writes, which the projection follows.
    group_commits(&store, records).await;
    idempotency(records).await;
    let head = store.head_position().await.unwrap();
    projections
        .wait_for("plan-balances", head, WAIT)
        .await
        .unwrap();
    projection_reads(&projections, NEW_LEDGERS).await;
    log_reads(&store).await;

    // A rebuild: a new generation beside the live one, swapped in, the old
    // one dropped.
    projections.rebuild("plan-balances").await.unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let status = projections.status_of("plan-balances").await.unwrap();
        if status.state == ProjectionState::Running && status.rebuild_checkpoint.is_none() {
            break;
        }
        assert!(
            status.state != ProjectionState::Failed && Instant::now() < deadline,
            "the rebuild did not finish: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    store
        .append("ledger-2", ExpectedVersion::Any, deposit())
        .await
        .unwrap();
    let head = store.head_position().await.unwrap();
    projections
        .wait_for("plan-balances", head, WAIT)
        .await
        .unwrap();
    projection_reads(&projections, NEW_LEDGERS).await;
    projections.stop().await;
    store.close().await;
    let rows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM allframe_projection_rows WHERE projection = 'plan-balances'",
    )
    .fetch_one(&mut setup)
    .await
    .unwrap();
    assert_eq!(
        rows,
        LEDGERS + NEW_LEDGERS as i64,
        "the old generation was dropped"
    );
    sqlx::query(AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE")))
        .execute(&mut setup)
        .await
        .unwrap();

    // The plans.
    let plans = plans();
    let mut statements: BTreeMap<&str, (usize, Vec<&'static str>, Option<&str>)> = BTreeMap::new();
    for plan in &plans {
        let entry = statements.entry(&plan.query).or_default();
        entry.0 += 1;
        let scans = sequential_scans(&plan.plan);
        if !scans.is_empty() && entry.2.is_none() {
            entry.1 = scans;
            entry.2 = Some(&plan.plan);
        }
    }
    let mut report = format!(
        "{} plans of {} distinct statements (filled in {filled:.1?}, caught up at \
         {caught_up:.1?}, done at {:.1?}):\n",
        plans.len(),
        statements.len(),
        started.elapsed()
    );
    for (query, (count, scans, _)) in &statements {
        let flag = if scans.is_empty() { "  " } else { "!!" };
        let _ = writeln!(report, "{flag} {count:>5} × {}", shorten(query));
    }
    println!("{report}");

    // The capture saw every path, so a pass means something.
    for expected in [
        "SELECT position FROM allframe_head FOR UPDATE",
        "WHERE e.stream_id = s.c0) FROM (SELECT * FROM UNNEST(",
        "INSERT INTO allframe_events",
        "FROM allframe_events WHERE position >",
        "FROM allframe_events WHERE stream_id =",
        "INSERT INTO allframe_idempotency",
        "FROM allframe_idempotency WHERE key = $1 FOR UPDATE",
        "FROM allframe_idempotency WHERE key = k.key FOR UPDATE",
        "UPDATE allframe_idempotency AS i",
        "UPDATE allframe_idempotency SET",
        "DELETE FROM allframe_idempotency WHERE key = $1",
        "DELETE FROM allframe_idempotency WHERE key = ANY",
        "FROM allframe_projection_rows WHERE projection",
        "INSERT INTO allframe_projection_rows",
        "DELETE FROM allframe_projection_index",
        "INSERT INTO allframe_projection_index",
        "FROM allframe_projection_index t JOIN allframe_projection_rows",
        "FROM allframe_projection_rows t WHERE",
        "DELETE FROM allframe_projection_rows WHERE projection",
        "UPDATE allframe_projection_checkpoints",
        "UPDATE allframe_projections SET generation = rebuilding",
    ] {
        assert!(
            statements.keys().any(|query| query.contains(expected)),
            "no plan of a statement containing {expected:?} was captured:\n{report}"
        );
    }
    assert!(plans.len() > 1_000, "{report}");

    let offending: Vec<String> = statements
        .iter()
        .filter_map(|(query, (count, scans, plan))| {
            let plan = (*plan)?;
            Some(format!(
                "sequential scan of {} ({count} runs) in:\n  {query}\nplan:\n{plan}\n",
                scans.join(", ")
            ))
        })
        .collect();
    assert!(
        offending.is_empty(),
        "{} statement(s) read a large table sequentially:\n\n{}",
        offending.len(),
        offending.join("\n")
    );
}

/// Ledgers and events of [`projection_batches_probe_the_key_index_without_statistics`].
const FRESH_LEDGERS: i64 = 3_000;
const FRESH_EVENTS: i64 = 30_000;

/// A projection's first catch-up (or a rebuild) writes into a generation
/// the table's statistics know nothing of. Its batches load the rows they
/// touch and replace their index entries by key; planned without
/// statistics and then as a generic plan, `key = ANY(array)` became a
/// filter over every row the generation already had, compared with the
/// whole array, so each batch cost more than the one before. Each key must
/// be an index condition, statistics or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projection_batches_probe_the_key_index_without_statistics() {
    let Some((options, schema, mut setup, _alone)) = migrated_schema().await else {
        return;
    };
    let mut statements: Vec<String> = [
        "allframe_events",
        "allframe_projection_rows",
        "allframe_projection_index",
    ]
    .iter()
    .map(|table| format!("ALTER TABLE {table} SET (autovacuum_enabled = false)"))
    .collect();
    statements.push(format!(
        "INSERT INTO allframe_events (position, stream_id, category, version, event_type, \
         schema_version, data, event_id, recorded_at) \
         SELECT g + 1, 'ledger-' || (g % {FRESH_LEDGERS}), 'ledger', g / {FRESH_LEDGERS} + 1, \
                CASE WHEN g < {FRESH_LEDGERS} THEN 'Opened' ELSE 'Deposited' END, 1, \
                CASE WHEN g < {FRESH_LEDGERS} \
                     THEN jsonb_build_object('owner', 'owner-' || (g % {OWNERS})) \
                     ELSE '{{\"amount\": 1}}'::jsonb END, \
                gen_random_uuid(), now() \
         FROM generate_series(0, {FRESH_EVENTS} - 1) g"
    ));
    statements.push(format!(
        "UPDATE allframe_head SET position = {FRESH_EVENTS}"
    ));
    for statement in statements {
        sqlx::query(AssertSqlSafe(statement))
            .execute(&mut setup)
            .await
            .expect("fill the log");
    }

    let store = PostgresStore::connect_with(traced(options), Some(&schema), DEFAULT_MAX_BATCH)
        .await
        .expect("open the store with auto_explain loaded");
    let projections = Projections::builder(&store)
        .projection::<Balance>()
        .batch_size(500)
        .start()
        .await
        .unwrap();
    projections
        .wait_for("plan-balances", FRESH_EVENTS as u64, WAIT)
        .await
        .unwrap();
    let row = projections.get::<Balance>("7").await.unwrap().unwrap();
    let per_ledger = (FRESH_EVENTS / FRESH_LEDGERS) as u64;
    assert_eq!(
        (row.owner.as_str(), row.balance),
        ("owner-7", per_ledger - 1)
    );
    projections.stop().await;
    store.close().await;
    let analyzed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_user_tables WHERE schemaname = $1 \
         AND relname LIKE 'allframe_projection_%' \
         AND COALESCE(last_analyze, last_autoanalyze) IS NOT NULL",
    )
    .bind(&schema)
    .fetch_one(&mut setup)
    .await
    .unwrap();
    assert_eq!(
        analyzed, 0,
        "the projection tables must not have statistics"
    );
    sqlx::query(AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE")))
        .execute(&mut setup)
        .await
        .unwrap();

    // The loads of a batch's rows and the deletes of its index entries.
    let keyed: Vec<Plan> = plans()
        .into_iter()
        .filter(|p| {
            (p.query
                .starts_with("SELECT key, row::text FROM allframe_projection_rows WHERE")
                || p.query
                    .starts_with("DELETE FROM allframe_projection_index WHERE"))
                && p.query.contains("key =")
        })
        .collect();
    let batches = (FRESH_EVENTS / 500) as usize;
    assert!(
        keyed.len() >= batches,
        "{} keyed statements for {batches} batches",
        keyed.len()
    );
    for plan in &keyed {
        let by_key = plan
            .plan
            .lines()
            .any(|line| line.contains("Index Cond:") && line.contains("(key = "));
        assert!(
            by_key,
            "a batch's keys are not an index condition:\n{}\n{}",
            plan.query, plan.plan
        );
    }
}

/// Reading a long stream page by page from a table without statistics
/// (just filled, as after a bulk import or on a new node's first minute):
/// planned so, a page was read with a bitmap scan of every remaining event
/// of the stream and a sort, and reading the whole stream was quadratic.
/// Each page must be bounded on both sides by the stream version index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_pages_read_only_their_own_rows_without_statistics() {
    let Some((options, schema, mut setup, _alone)) = migrated_schema().await else {
        return;
    };
    const LONG: i64 = 20_000;
    for statement in [
        "ALTER TABLE allframe_events SET (autovacuum_enabled = false)".to_owned(),
        format!(
            "INSERT INTO allframe_events (position, stream_id, category, version, event_type, \
             schema_version, data, event_id, recorded_at) \
             SELECT g, 'ledger-long', 'ledger', g, 'Deposited', 1, '{{\"amount\": 1}}'::jsonb, \
                    gen_random_uuid(), now() \
             FROM generate_series(1, {LONG}) g"
        ),
        format!("UPDATE allframe_head SET position = {LONG}"),
    ] {
        sqlx::query(AssertSqlSafe(statement))
            .execute(&mut setup)
            .await
            .expect("fill the log");
    }
    let store = PostgresStore::connect_with(traced(options), Some(&schema), DEFAULT_MAX_BATCH)
        .await
        .expect("open the store with auto_explain loaded");
    let mut from = 1;
    loop {
        let page = store.read_stream("ledger-long", from, 1_000).await.unwrap();
        if let Some(first) = page.first() {
            assert_eq!(first.version, from);
        }
        from += page.len() as u64;
        if page.len() < 1_000 {
            break;
        }
    }
    assert_eq!(from, LONG as u64 + 1, "the whole stream, in order");
    store.close().await;
    sqlx::query(AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE")))
        .execute(&mut setup)
        .await
        .unwrap();

    let pages: Vec<Plan> = plans()
        .into_iter()
        .filter(|p| p.query.contains("FROM allframe_events WHERE stream_id ="))
        .collect();
    assert!(pages.len() >= 20, "{} page reads", pages.len());
    for plan in &pages {
        let bounded = plan.plan.lines().any(|line| {
            line.contains("Cond:") && line.contains("version >=") && line.contains("version <=")
        });
        assert!(
            bounded,
            "a page is not bounded by the version index:\n{}\n{}",
            plan.query, plan.plan
        );
    }
}

/// Completing idempotency keys with appends while the record table grows
/// without statistics being taken (a saga's commands record two keys per
/// transfer, faster than autovacuum analyzes): each batch reads and locks
/// the records of its keys. Planned as `key = ANY(array)`, generically,
/// while the table was small, that read became a scan of every record,
/// and each batch cost grew with the records kept. Each key must be looked
/// up in the primary key, before and after the table grew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_keys_are_found_by_the_primary_key_as_the_records_grow() {
    let Some((options, schema, mut setup, _alone)) = migrated_schema().await else {
        return;
    };
    sqlx::query("ALTER TABLE allframe_idempotency SET (autovacuum_enabled = false)")
        .execute(&mut setup)
        .await
        .unwrap();
    let store = PostgresStore::connect_with(traced(options), Some(&schema), DEFAULT_MAX_BATCH)
        .await
        .expect("open the store with auto_explain loaded");
    let records = store.idempotency().expect("idempotency records");
    let complete = |round: usize| async move {
        let completions = (0..2)
            .map(|n| Completion::unclaimed(format!("k-{round}-{n}"), "fp", |_| "{}".to_owned()))
            .collect();
        let stream = format!("ledger-{round}");
        records
            .append_with(&stream, ExpectedVersion::NoStream, deposit(), completions)
            .await
    };
    // Enough batches on the small table for a generic plan to be cached.
    for round in 0..10 {
        complete(round).await.unwrap();
    }
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO allframe_idempotency (key, fingerprint, state, response, created_at, \
         lease_until, token) \
         SELECT 'old-' || g, 'fp', 'completed', '{{}}', now(), now(), 't' \
         FROM generate_series(1, {KEYS}) g"
    )))
    .execute(&mut setup)
    .await
    .expect("fill the records");
    for round in 10..20 {
        complete(round).await.unwrap();
    }
    assert_lost(
        records
            .append_with(
                "ledger-old",
                ExpectedVersion::NoStream,
                deposit(),
                vec![Completion::unclaimed("old-7", "fp", |_| "{}".to_owned())],
            )
            .await,
    );
    store.close().await;
    sqlx::query(AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE")))
        .execute(&mut setup)
        .await
        .unwrap();

    let lookups: Vec<Plan> = plans()
        .into_iter()
        .filter(|p| {
            p.query.starts_with("SELECT i.key,") && p.query.contains("allframe_idempotency")
        })
        .collect();
    assert!(
        lookups.len() >= 21,
        "{} key lookups for 21 batches",
        lookups.len()
    );
    for plan in &lookups {
        let by_key = plan
            .plan
            .lines()
            .any(|line| line.contains("Index Cond:") && line.contains("(key = "));
        assert!(
            by_key && sequential_scans(&plan.plan).is_empty(),
            "a batch's keys are not looked up in the primary key:\n{}\n{}",
            plan.query,
            plan.plan
        );
    }
}

#[track_caller]
fn assert_lost(outcome: Result<allframe::Appended, StoreError>) {
    assert!(
        matches!(outcome, Err(StoreError::IdempotencyKeyLost { .. })),
        "a key among the old records is found: {outcome:?}"
    );
}
