//! The SQL the backends share: the read queries (built with sqlx's
//! `QueryBuilder`, which writes each database's bind-parameter syntax) and
//! the conversion between a stored row and a [`RecordedEvent`].
//!
//! Both backends keep one `allframe_events` table with the same columns;
//! metadata is split into columns so reads need not parse it.

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use sqlx::{Database, Encode, QueryBuilder, Type};
use uuid::Uuid;

use super::Dialect;
use crate::event::{Metadata, RecordedEvent};
use crate::store::{EventFilter, Result, StoreError};

/// The columns every event row is written with, in bind order.
pub(crate) const INSERT_COLUMNS: &str = "position, stream_id, category, version, event_type, \
     schema_version, data, event_id, correlation_id, causation_id, command, extra, recorded_at";

/// Appends ` WHERE position > after [AND filter…] ORDER BY position LIMIT n`.
pub(crate) fn push_read_all<DB>(
    query: &mut QueryBuilder<DB>,
    after: u64,
    limit: usize,
    filter: &EventFilter,
) where
    DB: Database,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
    query.push(" WHERE position > ").push_bind(to_i64(after));
    if let Some(stream_id) = &filter.stream_id {
        query.push(" AND stream_id = ").push_bind(stream_id.clone());
    }
    if let Some(category) = &filter.category {
        query.push(" AND category = ").push_bind(category.clone());
    }
    if !filter.event_types.is_empty() {
        query.push(" AND event_type IN (");
        let mut list = query.separated(", ");
        for event_type in &filter.event_types {
            list.push_bind(event_type.clone());
        }
        query.push(")");
    }
    query
        .push(" ORDER BY position LIMIT ")
        .push(limit_literal(limit));
}

/// A page size as a literal rather than a bound value: SQLite re-prepares
/// a statement whose `LIMIT` is bound every time it runs (a bound value
/// there could change the plan), and a prepared statement's generic plan
/// on PostgreSQL plans better with the limit known. Page sizes come from a
/// few constants and validated requests, so the statements stay few.
fn limit_literal(limit: usize) -> i64 {
    to_i64(limit as u64)
}

/// Appends ` WHERE stream_id = s AND version BETWEEN v AND v + n - 1
/// ORDER BY version LIMIT n`.
///
/// A stream's versions are 1, 2, 3, … without gaps, so the upper bound
/// selects nothing `LIMIT` would not; it keeps a page's cost to its own
/// rows whatever the plan. Without statistics (a table that was just
/// filled) PostgreSQL read a page of a long stream with a bitmap scan of
/// every remaining event of the stream and a top-N sort: each page cost
/// the rest of the stream, and a whole-stream read was quadratic (4 s
/// for 100,000 events).
pub(crate) fn push_read_stream<DB>(
    query: &mut QueryBuilder<DB>,
    stream_id: &str,
    from_version: u64,
    limit: usize,
) where
    DB: Database,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
    // Versions start at 1: reading from 0 reads from the first.
    let from = from_version.max(1);
    query
        .push(" WHERE stream_id = ")
        .push_bind(stream_id.to_owned())
        .push(" AND version BETWEEN ")
        .push_bind(to_i64(from))
        .push(" AND ")
        .push_bind(to_i64(from.saturating_add(limit as u64 - 1)))
        .push(" ORDER BY version LIMIT ")
        .push(limit_literal(limit));
}

/// The current version of each of a batch's streams (each named once),
/// one row per stream: `(stream_id, MAX(version))`, the version NULL for a
/// stream without events. Each stream's maximum is its own subquery, which
/// both databases answer from the `(stream_id, version)` index by reading
/// its last entry, so the cost does not grow with the streams' length or
/// the log's (a `GROUP BY` over `stream_id IN (…)` reads every version of
/// every stream named). The stream ids are bound as one list
/// ([`Dialect::push_columns`]), so the statement's text is the same for every
/// batch and is prepared once.
pub(crate) fn stream_versions_query<'s, D: Dialect>(
    stream_ids: impl IntoIterator<Item = &'s str>,
) -> QueryBuilder<D::Db> {
    let streams: std::collections::BTreeSet<&str> = stream_ids.into_iter().collect();
    let mut query = QueryBuilder::new(
        "SELECT s.c0, (SELECT MAX(e.version) FROM allframe_events e \
         WHERE e.stream_id = s.c0) FROM ",
    );
    D::push_columns(&mut query, vec![streams.into_iter().collect()]);
    query.push(" s");
    query
}

/// `SELECT key, token-while-in-flight …`: the records of the idempotency
/// keys a batch completes (see
/// [`completion_keys`](crate::store::group_commit::completion_keys)), with
/// the token of each in-flight one (`NULL` for the others, and for records
/// claimed before tokens existed, which no completion holds), bound as one
/// list like [`stream_versions_query`]'s. PostgreSQL locks the rows, in key
/// order, so writers of several nodes never wait for each other in a cycle
/// (see [`Dialect::push_key_records`]).
pub(crate) fn key_records_query<'k, D: Dialect>(
    keys: impl IntoIterator<Item = &'k str>,
) -> QueryBuilder<D::Db> {
    let keys: std::collections::BTreeSet<&str> = keys.into_iter().collect();
    let mut query =
        QueryBuilder::new("SELECT i.key, CASE WHEN i.state = 'in_flight' THEN i.token END");
    D::push_key_records(&mut query, keys.into_iter().collect());
    query
}

/// The stored columns of one event, as read back.
pub(crate) struct EventRow {
    pub(crate) position: i64,
    pub(crate) stream_id: String,
    pub(crate) version: i64,
    pub(crate) event_type: String,
    pub(crate) schema_version: i64,
    pub(crate) data: String,
    pub(crate) event_id: Uuid,
    pub(crate) correlation_id: Option<String>,
    pub(crate) causation_id: Option<String>,
    pub(crate) command: Option<String>,
    pub(crate) extra: Option<String>,
    pub(crate) recorded_at: DateTime<Utc>,
}

impl EventRow {
    /// Rebuilds the recorded event. A row that does not parse means the
    /// database was changed behind the store's back: a backend error.
    pub(crate) fn into_event(self) -> Result<RecordedEvent> {
        let position = self.position;
        let corrupt = |what: &str| {
            StoreError::Backend(
                format!("stored event at position {position} has invalid {what}").into(),
            )
        };
        let data = RawValue::from_string(self.data).map_err(|_| corrupt("data"))?;
        let extra = match &self.extra {
            None => serde_json::Map::new(),
            Some(text) => serde_json::from_str(text).map_err(|_| corrupt("metadata"))?,
        };
        Ok(RecordedEvent {
            position: u64::try_from(position).map_err(|_| corrupt("position"))?,
            version: u64::try_from(self.version).map_err(|_| corrupt("version"))?,
            schema_version: u32::try_from(self.schema_version)
                .map_err(|_| corrupt("schema_version"))?,
            stream_id: self.stream_id,
            event_type: self.event_type,
            data,
            metadata: Metadata {
                event_id: self.event_id,
                correlation_id: self.correlation_id,
                causation_id: self.causation_id,
                command: self.command,
                extra,
            },
            recorded_at: self.recorded_at,
        })
    }
}

/// The `extra` column of an event: NULL when there is nothing extra.
pub(crate) fn extra_column(metadata: &Metadata) -> Option<String> {
    (!metadata.extra.is_empty())
        .then(|| serde_json::to_string(&metadata.extra).expect("a JSON map always serializes"))
}

/// Positions and versions are `u64` in Rust and signed 64-bit in SQL; they
/// never get near `i64::MAX`, but saturate rather than wrap if asked to.
pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Maps a database error to a store error: [`StoreError::Unavailable`]
/// when the database cannot be reached or cannot take the work now,
/// [`StoreError::Backend`] otherwise.
pub(crate) fn db_error(error: sqlx::Error) -> StoreError {
    if unavailable(&error) {
        StoreError::Unavailable(Box::new(error))
    } else {
        StoreError::backend(error)
    }
}

/// Whether `error` says the database is out of reach or busy, rather than
/// that the work itself failed.
fn unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(error) => error.code().is_some_and(|code| {
            // PostgreSQL: connection exceptions (class 08), the server
            // shutting down or not taking connections (57P01-57P03), too
            // many connections (53300), a disk full (53100). SQLite: busy
            // (5), locked (6), disk full (13).
            code.starts_with("08")
                || matches!(
                    code.as_ref(),
                    "57P01" | "57P02" | "57P03" | "53300" | "53100" | "5" | "6" | "13"
                )
        }),
        _ => false,
    }
}

/// The events of a batch's accepted appends, in position order.
pub(crate) fn accepted_events(outcomes: &[Result<crate::Appended>]) -> Vec<&RecordedEvent> {
    outcomes
        .iter()
        .filter_map(|outcome| outcome.as_ref().ok())
        .flat_map(|appended| &appended.events)
        .collect()
}

#[cfg(all(test, feature = "postgres"))]
mod plans {
    use sqlx::{AssertSqlSafe, Connection, PgConnection};

    use super::stream_versions_query;
    use crate::store::postgres::PostgresDialect;

    /// The writer's per-batch read of its streams' versions takes the last
    /// `(stream_id, version)` index entry of each stream, whatever the
    /// length of the streams and the log: on a log of 200,000 events, an
    /// index-only scan read backwards and no sequential or bitmap scan.
    #[tokio::test]
    async fn stream_versions_read_one_index_entry_per_stream_on_postgres() {
        let url = std::env::var("ALLFRAME_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let mut connection = match PgConnection::connect(&url).await {
            Ok(connection) => connection,
            Err(error) => {
                assert_ne!(
                    std::env::var("CI").as_deref(),
                    Ok("true"),
                    "PostgreSQL at {url} is unreachable and CI=true: {error}"
                );
                eprintln!(
                    "\n*** SKIPPED: PostgreSQL plan test — cannot reach {url}: {error} ***\n"
                );
                return;
            }
        };
        // Named as the test suite's schemas are, so a run killed midway
        // leaves one that the next run drops.
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let schema = format!("allframe_test_{secs}_{}", uuid::Uuid::now_v7().simple());
        for statement in [
            format!("CREATE SCHEMA {schema}"),
            format!("SET search_path = {schema}"),
        ] {
            sqlx::query(AssertSqlSafe(statement))
                .execute(&mut connection)
                .await
                .unwrap();
        }
        crate::store::postgres::MIGRATOR
            .run(&mut connection)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO allframe_events (position, stream_id, category, version, event_type, \
             schema_version, data, event_id, recorded_at) \
             SELECT g, 'account-' || (g % 1000), 'account', g / 1000 + 1, 'Deposited', 1, \
             '{}'::jsonb, gen_random_uuid(), now() FROM generate_series(1, 200000) g",
        )
        .execute(&mut connection)
        .await
        .unwrap();
        sqlx::query("ANALYZE allframe_events")
            .execute(&mut connection)
            .await
            .unwrap();
        let query = stream_versions_query::<PostgresDialect>(["account-1", "account-2", "nowhere"]);
        // A generic plan, as a prepared statement gets after a few runs.
        for statement in [
            format!("PREPARE versions(text[]) AS {}", query.sql().as_str()),
            "SET plan_cache_mode = force_generic_plan".to_owned(),
        ] {
            sqlx::query(AssertSqlSafe(statement))
                .execute(&mut connection)
                .await
                .unwrap();
        }
        let plan: Vec<String> = sqlx::query_scalar(
            "EXPLAIN EXECUTE versions(ARRAY['account-1', 'account-2', 'nowhere'])",
        )
        .fetch_all(&mut connection)
        .await
        .unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains("Index Only Scan Backward"), "{plan}");
        assert!(
            !plan.contains("Seq Scan") && !plan.contains("Bitmap"),
            "{plan}"
        );
        let mut versions: Vec<(String, Option<i64>)> =
            sqlx::query_as("EXECUTE versions(ARRAY['account-1', 'account-2', 'nowhere'])")
                .fetch_all(&mut connection)
                .await
                .unwrap();
        versions.sort();
        assert_eq!(
            versions,
            [
                ("account-1".to_owned(), Some(200)),
                ("account-2".to_owned(), Some(200)),
                ("nowhere".to_owned(), None),
            ]
        );
        sqlx::query(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&mut connection)
            .await
            .unwrap();
    }
}
