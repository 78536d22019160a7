//! The embedded backend: one SQLite file in WAL mode.
//!
//! One writer task owns the only writing connection and commits queued
//! appends together ([group commit](super::group_commit)). Each transaction
//! starts with `BEGIN IMMEDIATE`, which takes SQLite's write lock before the
//! stream versions are read, so even another process writing the same file
//! cannot slip in between the check and the insert. SQLite commits one
//! writer at a time, so positions become visible in order and readers (a
//! pool of WAL readers that never block the writer) can never see a hole.
//!
//! Durability follows the connection's `synchronous` setting: `FULL` (the
//! default) makes every acknowledged append survive power loss.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;

use chrono::DateTime;
use futures_util::future::{BoxFuture, FutureExt};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
};
use sqlx::{Connection, QueryBuilder, Row, Sqlite};

use super::group_commit::{BatchWriter, Request, plan};
use super::sql::{
    EventRow, INSERT_COLUMNS, accepted_events, db_error, extra_column, sql_event_store,
    stream_versions_query, to_i64,
};
use super::{Appended, Result, StoreError};
use crate::event::{RecordedEvent, category_of, now_millis};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// Appends that may share one transaction by default.
pub const DEFAULT_MAX_BATCH: usize = 256;
/// Rows per `INSERT` statement, largest first. Inserting in chunks of these
/// fixed sizes keeps the number of distinct statements small, so each is
/// prepared once and then served from the statement cache; 13 columns × 512
/// rows stays far below SQLite's limit of 32,766 bound parameters.
const INSERT_CHUNKS: [usize; 4] = [512, 64, 8, 1];
const SELECT_EVENTS: &str = "SELECT position, stream_id, version, event_type, schema_version, \
     data, event_id, correlation_id, causation_id, command, extra, recorded_at FROM allframe_events";

sql_event_store! {
    /// The SQLite event store. Cloning gives another handle to the same store.
    store: SqliteStore,
    database: Sqlite,
    select_events: SELECT_EVENTS,
    stream_version: "SELECT COALESCE(MAX(version), 0) FROM allframe_events WHERE stream_id = ?",
    head: "SELECT COALESCE(MAX(position), 0) FROM allframe_events",
    event_row: event_row,
}

impl SqliteStore {
    /// Opens (creating it if missing) the database file at `path`.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        Self::connect_with(options, DEFAULT_MAX_BATCH).await
    }

    /// Opens a database from a URL such as `sqlite://bank.db` or
    /// `sqlite::memory:`, creating the file if missing.
    pub async fn connect(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(db_error)?
            .create_if_missing(true);
        Self::connect_with(options, DEFAULT_MAX_BATCH).await
    }

    /// A private in-memory database, gone when the last handle is dropped.
    pub async fn in_memory() -> Result<Self> {
        Self::connect("sqlite::memory:").await
    }

    /// Opens a database with full control over the connection options. WAL
    /// journaling is always turned on; `max_batch` appends at most share one
    /// transaction (1 turns group commit off).
    pub async fn connect_with(options: SqliteConnectOptions, max_batch: usize) -> Result<Self> {
        let options = options.journal_mode(SqliteJournalMode::Wal);
        // A batch can touch many pages; a larger cache (64 MiB) for the one
        // writing connection keeps them from spilling mid-transaction.
        let mut writer =
            SqliteConnection::connect_with(&options.clone().pragma("cache_size", "-65536"))
                .await
                .map_err(db_error)?;
        MIGRATOR
            .run(&mut writer)
            .await
            .map_err(StoreError::backend)?;
        let reads = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(db_error)?;
        Self::start(reads, Writer { connection: writer }, max_batch).await
    }
}

fn event_row(row: &SqliteRow) -> Result<RecordedEvent> {
    let get = || -> std::result::Result<EventRow, sqlx::Error> {
        let millis: i64 = row.try_get(11)?;
        Ok(EventRow {
            position: row.try_get(0)?,
            stream_id: row.try_get(1)?,
            version: row.try_get(2)?,
            event_type: row.try_get(3)?,
            schema_version: row.try_get(4)?,
            data: row.try_get(5)?,
            event_id: row.try_get(6)?,
            correlation_id: row.try_get(7)?,
            causation_id: row.try_get(8)?,
            command: row.try_get(9)?,
            extra: row.try_get(10)?,
            recorded_at: DateTime::from_timestamp_millis(millis).unwrap_or_default(),
        })
    };
    get().map_err(db_error)?.into_event()
}

struct Writer {
    connection: SqliteConnection,
}

impl Writer {
    async fn write_batch(&mut self, batch: &[Request]) -> Result<Vec<Result<Appended>>> {
        let mut tx = self
            .connection
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)?;
        let head: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM allframe_events")
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error)?;
        let versions: HashMap<String, u64> =
            stream_versions_query::<Sqlite>(batch.iter().map(|r| r.stream_id.as_str()))
                .build_query_as::<(String, i64)>()
                .fetch_all(&mut *tx)
                .await
                .map_err(db_error)?
                .into_iter()
                .map(|(stream_id, version)| (stream_id, version as u64))
                .collect();
        let outcomes = plan(batch, head as u64, versions, now_millis());
        let rows = accepted_events(&outcomes);
        for chunk in fixed_chunks(&rows, &INSERT_CHUNKS) {
            let mut insert = QueryBuilder::<Sqlite>::new(format!(
                "INSERT INTO allframe_events ({INSERT_COLUMNS}) "
            ));
            insert.push_values(chunk, |mut row, event| {
                row.push_bind(to_i64(event.position))
                    .push_bind(event.stream_id.as_str())
                    .push_bind(category_of(&event.stream_id))
                    .push_bind(to_i64(event.version))
                    .push_bind(event.event_type.as_str())
                    .push_bind(i64::from(event.schema_version))
                    .push_bind(event.data.get())
                    .push_bind(event.metadata.event_id)
                    .push_bind(event.metadata.correlation_id.as_deref())
                    .push_bind(event.metadata.causation_id.as_deref())
                    .push_bind(event.metadata.command.as_deref())
                    .push_bind(extra_column(&event.metadata))
                    .push_bind(event.recorded_at.timestamp_millis());
            });
            insert.build().execute(&mut *tx).await.map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(outcomes)
    }
}

/// Splits `rows` greedily into chunks whose lengths are all in `sizes`
/// (descending, ending with 1).
fn fixed_chunks<'r, T>(mut rows: &'r [T], sizes: &[usize]) -> Vec<&'r [T]> {
    let mut chunks = Vec::new();
    for &size in sizes {
        while rows.len() >= size {
            let (chunk, rest) = rows.split_at(size);
            chunks.push(chunk);
            rows = rest;
        }
    }
    chunks
}

impl BatchWriter for Writer {
    fn write<'a>(
        &'a mut self,
        batch: &'a [Request],
    ) -> BoxFuture<'a, Result<Vec<Result<Appended>>>> {
        self.write_batch(batch).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::fixed_chunks;

    #[test]
    fn rows_split_into_fixed_sizes() {
        let rows: Vec<u32> = (0..1_100).collect();
        let sizes: Vec<usize> = fixed_chunks(&rows, &[512, 64, 8, 1])
            .iter()
            .map(|c| c.len())
            .collect();
        assert_eq!(sizes, [512, 512, 64, 8, 1, 1, 1, 1]);
        let flat: Vec<u32> = fixed_chunks(&rows, &[512, 64, 8, 1]).concat();
        assert_eq!(flat, rows);
        assert!(fixed_chunks::<u32>(&[], &[512, 1]).is_empty());
    }
}
