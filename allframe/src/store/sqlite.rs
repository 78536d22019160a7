//! The embedded backend: one SQLite file in WAL mode.
//!
//! One writer task owns the only writing connection and commits queued
//! appends together (group commit). Each transaction starts with `BEGIN
//! IMMEDIATE`, which takes SQLite's write lock before the stream versions
//! are read, so even another process writing the same file
//! cannot slip in between the check and the insert. SQLite commits one
//! writer at a time, so positions become visible in order and readers (a
//! pool of WAL readers that never block the writer) can never see a hole.
//!
//! Durability follows the connection's `synchronous` setting: `FULL` (the
//! default) makes every acknowledged append survive power loss.
//!
//! Idempotency records (table `allframe_idempotency`, times in Unix
//! milliseconds of the host clock) are written by the same writer task: a
//! completion in the transaction of its append (whose tokens are read under
//! the write lock before any event is inserted), the other operations
//! (claims, completions without events, releases, purges) in `BEGIN
//! IMMEDIATE` transactions of their own, those queued together sharing
//! one. Keeping every write on the one writing connection means a claim
//! never waits on a lock held inside this process (nor hits shared-cache
//! table locks of an in-memory database), and the write lock still orders
//! it against other processes on the file. See [`super::idempotency`].

use std::collections::BTreeSet;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::DateTime;
use futures_util::future::{BoxFuture, FutureExt};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
};
use sqlx::{Connection, QueryBuilder, Row, Sqlite};

use super::group_commit::{BatchWriter, KeyOp, KeyOutcome, Request, log_batch};
use super::idempotency::{self, Decision, Seen, millis, response_text};
use super::sql::{
    Dialect, EventRow, INSERT_COLUMNS, SqlStore, accepted_events, db_error, extra_column, to_i64,
};
use super::{Appended, Claim, Result, StoreError};
use crate::event::{RecordedEvent, category_of, now_millis};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// Rows per `INSERT` statement, largest first. Inserting in chunks of these
/// fixed sizes keeps the number of distinct statements small, so each is
/// prepared once and then served from the statement cache; 13 columns × 512
/// rows stays far below SQLite's limit of 32,766 bound parameters. Powers
/// of two split any batch into at most one statement per bit of its size
/// (120 rows: 4, where sizes 512, 64, 8 and 1 took 8), and each statement
/// is a round trip to SQLite's worker thread that the writer waits for.
const INSERT_CHUNKS: [usize; 10] = [512, 256, 128, 64, 32, 16, 8, 4, 2, 1];
/// A page of events comes back as one row holding a JSON array: sqlx hands
/// each row from its worker thread to the reader with a wake-up, which
/// costs more than the event itself, so one row per page is several
/// times faster. The read conditions complete the inner `SELECT`, which
/// `)` closes.
const SELECT_EVENTS: &str = "SELECT json_group_array(json_array(position, stream_id, version, \
     event_type, schema_version, data, hex(event_id), correlation_id, causation_id, command, \
     extra, recorded_at) ORDER BY position) FROM (SELECT * FROM allframe_events";
/// Marks a key completed if it is in flight with the token; affects one
/// row or none. Binds: key, token, response, now.
const COMPLETE_KEY: &str = "UPDATE allframe_idempotency \
     SET state = 'completed', response = ?3, lease_until = ?4 \
     WHERE key = ?1 AND token = ?2 AND state = 'in_flight'";
/// How many completions of each kind one statement writes, largest first,
/// so a few statement shapes serve every batch (see [`INSERT_CHUNKS`]).
const COMPLETION_CHUNKS: [usize; 7] = [64, 32, 16, 8, 4, 2, 1];

/// The SQL SQLite speaks where it differs from the other backends.
#[derive(Debug)]
pub struct SqliteDialect;

impl super::sql::sealed::Sealed for SqliteDialect {}

/// Pushes ` IN …` testing the preceding expression against `items`, bound
/// as one value like [`Dialect::push_columns`].
fn push_in(query: &mut QueryBuilder<Sqlite>, items: Vec<&str>) {
    query.push(" IN (SELECT c0 FROM ");
    SqliteDialect::push_columns(query, vec![items]);
    query.push(")");
}

impl Dialect for SqliteDialect {
    type Db = Sqlite;
    const NAME: &'static str = "SQLite";
    const SELECT_EVENTS: &'static str = SELECT_EVENTS;
    const SELECT_END: &'static str = ")";
    const STREAM_VERSION: &'static str =
        "SELECT COALESCE(MAX(version), 0) FROM allframe_events WHERE stream_id = ?";
    const HEAD: &'static str = "SELECT COALESCE(MAX(position), 0) FROM allframe_events";
    const BEGIN: &'static str = "BEGIN IMMEDIATE";
    const ONE_WRITER: bool = true;
    const LOCK: &'static str = "";
    const ROW_IN: &'static str = "";
    const ROW_OUT: &'static str = "row";

    fn push_columns(query: &mut QueryBuilder<Sqlite>, columns: Vec<Vec<&str>>) {
        let rows = columns.first().map_or(0, Vec::len);
        let table: Vec<Vec<&str>> = (0..rows)
            .map(|row| columns.iter().map(|column| column[row]).collect())
            .collect();
        let names: Vec<String> = (0..columns.len())
            .map(|i| format!("json_extract(value, '$[{i}]') AS c{i}"))
            .collect();
        query
            .push(format!("(SELECT {} FROM json_each(", names.join(", ")))
            .push_bind(serde_json::to_string(&table).unwrap_or_default())
            .push("))");
    }

    fn push_key_records(query: &mut QueryBuilder<Sqlite>, keys: Vec<&str>) {
        query.push(" FROM allframe_idempotency AS i WHERE i.key");
        push_in(query, keys);
    }

    fn push_keyed(
        query: &mut QueryBuilder<Sqlite>,
        _table: &str,
        projection: &str,
        generation: i64,
        keys: Vec<&str>,
    ) {
        query
            .push("projection = ")
            .push_bind(projection.to_owned())
            .push(" AND generation = ")
            .push_bind(generation)
            .push(" AND key");
        push_in(query, keys);
    }

    fn rows_affected(result: &<Sqlite as sqlx::Database>::QueryResult) -> u64 {
        result.rows_affected()
    }

    fn events(rows: Vec<<Sqlite as sqlx::Database>::Row>) -> Result<Vec<RecordedEvent>> {
        events(rows)
    }
}

/// The SQLite event store. Cloning gives another handle to the same store.
pub type SqliteStore = SqlStore<SqliteDialect>;

impl SqliteStore {
    /// Opens (creating it if missing) the database file at `path`.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        Self::connect_with(options, super::DEFAULT_MAX_BATCH).await
    }

    /// Opens a database from a URL such as `sqlite://bank.db` or
    /// `sqlite::memory:`, creating the file if missing.
    pub async fn connect(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(db_error)?
            .create_if_missing(true);
        Self::connect_with(options, super::DEFAULT_MAX_BATCH).await
    }

    /// A private in-memory database, gone when the last handle is dropped.
    pub async fn in_memory() -> Result<Self> {
        Self::connect("sqlite::memory:").await
    }

    /// Opens a database with full control over the connection options. WAL
    /// journaling is always turned on; `max_batch` appends at most share one
    /// transaction (1 turns group commit off).
    pub async fn connect_with(options: SqliteConnectOptions, max_batch: usize) -> Result<Self> {
        Self::connect_with_pool(options, max_batch, |pool| pool).await
    }

    /// [`connect_with`](Self::connect_with), with `pool` adjusting the
    /// options of the pool of reading connections (4 by default).
    pub(crate) async fn connect_with_pool(
        options: SqliteConnectOptions,
        max_batch: usize,
        pool: impl FnOnce(SqlitePoolOptions) -> SqlitePoolOptions,
    ) -> Result<Self> {
        let options = options.journal_mode(SqliteJournalMode::Wal);
        // A batch can touch many pages; a larger cache (16 MiB) for the one
        // writing connection keeps them from spilling mid-transaction. Not
        // larger: a commit whose inserts split pages walks the whole cache
        // (the split parks pages under a number past the end of the file,
        // and the commit then looks for pages past the end in every slot),
        // so that walk grows with the cache; at 64 MiB it took a seventh of
        // the writer's CPU time in the transfers benchmark.
        let mut writer =
            SqliteConnection::connect_with(&options.clone().pragma("cache_size", "-16384"))
                .await
                .map_err(db_error)?;
        MIGRATOR
            .run(&mut writer)
            .await
            .map_err(StoreError::backend)?;
        let reads = pool(SqlitePoolOptions::new().max_connections(4))
            .connect_with(options)
            .await
            .map_err(db_error)?;
        Self::start(reads, Writer { connection: writer }, max_batch).await
    }
}

/// One event as an element of the page [`SELECT_EVENTS`] returns:
/// position, stream id, version, type, schema version, data, event id (hex),
/// correlation id, causation id, command, extra, recorded at (ms).
type PageRow = (
    i64,
    String,
    i64,
    String,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
);

/// Decodes the one row of a page: a JSON array of [`PageRow`]s.
fn events(rows: Vec<SqliteRow>) -> Result<Vec<RecordedEvent>> {
    let page: String = match rows.first() {
        Some(row) => row.try_get(0).map_err(db_error)?,
        None => return Ok(Vec::new()),
    };
    let page: Vec<PageRow> = serde_json::from_str(&page).map_err(|error| {
        StoreError::Backend(format!("unreadable page of events: {error}").into())
    })?;
    page.into_iter()
        .map(|row| {
            let (position, stream_id, version, event_type, schema_version, data, event_id) =
                (row.0, row.1, row.2, row.3, row.4, row.5, row.6);
            let event_id = uuid::Uuid::try_parse(&event_id).map_err(|_| {
                StoreError::Backend(
                    format!("stored event at position {position} has invalid event_id").into(),
                )
            })?;
            EventRow {
                position,
                stream_id,
                version,
                event_type,
                schema_version,
                data,
                event_id,
                correlation_id: row.7,
                causation_id: row.8,
                command: row.9,
                extra: row.10,
                recorded_at: DateTime::from_timestamp_millis(row.11).unwrap_or_default(),
            }
            .into_event()
        })
        .collect()
}

struct Writer {
    connection: SqliteConnection,
}

/// Adds the kinds of `events` to `allframe_event_types` (see
/// [`EventStore::stored_types`]), in one statement.
async fn record_kinds(connection: &mut SqliteConnection, events: &[&RecordedEvent]) -> Result<()> {
    let kinds: BTreeSet<(&str, &str, String)> = events
        .iter()
        .map(|e| {
            (
                category_of(&e.stream_id),
                e.event_type.as_str(),
                e.schema_version.to_string(),
            )
        })
        .collect();
    let (mut categories, mut types, mut versions) = (Vec::new(), Vec::new(), Vec::new());
    for (category, event_type, version) in &kinds {
        categories.push(*category);
        types.push(*event_type);
        versions.push(version.as_str());
    }
    let mut query = QueryBuilder::<Sqlite>::new(
        "INSERT OR IGNORE INTO allframe_event_types (category, event_type, schema_version) \
         SELECT c0, c1, CAST(c2 AS INTEGER) FROM ",
    );
    SqliteDialect::push_columns(&mut query, vec![categories, types, versions]);
    query
        .build()
        .execute(&mut *connection)
        .await
        .map_err(db_error)?;
    Ok(())
}

impl Writer {
    async fn write_batch(&mut self, batch: &[Request]) -> Result<Vec<Result<Appended>>> {
        let mut tx = self
            .connection
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)?;
        // BEGIN and COMMIT, and every statement between.
        let mut round_trips = 2;
        let plan = SqliteStore::plan_batch(&mut tx, batch, now_millis(), &mut round_trips).await?;
        let rows = accepted_events(&plan.outcomes);
        // The batch's writes say `OR ROLLBACK`: a constraint they break
        // ends the whole transaction, as any failure of a batch does (see
        // `group_commit`), rather than undoing that one statement. Without
        // it SQLite keeps a statement journal, a copy of every page each
        // statement changes, which a batch of this size spills to a
        // temporary file: the writer's busiest cost after the inserts.
        for chunk in fixed_chunks(&rows, &INSERT_CHUNKS) {
            let mut insert = QueryBuilder::<Sqlite>::new(format!(
                "INSERT OR ROLLBACK INTO allframe_events ({INSERT_COLUMNS}) "
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
            round_trips += 1;
            insert.build().execute(&mut *tx).await.map_err(db_error)?;
        }
        if !rows.is_empty() {
            round_trips += 1;
            record_kinds(&mut tx, &rows).await?;
        }
        let now = idempotency::now_millis();
        let (claimed, unclaimed) = plan.completion_rows();
        let mut written = 0;
        for chunk in fixed_chunks(&claimed, &COMPLETION_CHUNKS) {
            // Each key in flight with the token becomes completed.
            let mut update = QueryBuilder::<Sqlite>::new(
                "UPDATE OR ROLLBACK allframe_idempotency SET state = 'completed', \
                 response = c.column3, lease_until = ",
            );
            update.push_bind(now).push(" FROM (");
            update.push_values(chunk, |mut row, (key, token, response)| {
                row.push_bind(*key).push_bind(*token).push_bind(*response);
            });
            update.push(
                ") AS c WHERE allframe_idempotency.key = c.column1 \
                 AND allframe_idempotency.token = c.column2 \
                 AND allframe_idempotency.state = 'in_flight'",
            );
            round_trips += 1;
            written += update
                .build()
                .execute(&mut *tx)
                .await
                .map_err(db_error)?
                .rows_affected();
        }
        for chunk in fixed_chunks(&unclaimed, &COMPLETION_CHUNKS) {
            // Keys nobody claimed get a completed record, where they have none.
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT OR ROLLBACK INTO allframe_idempotency \
                 (key, fingerprint, state, response, created_at, lease_until, token) ",
            );
            insert.push_values(chunk, |mut row, (key, fingerprint, response)| {
                row.push_bind(*key)
                    .push_bind(*fingerprint)
                    .push("'completed'")
                    .push_bind(*response)
                    .push_bind(now)
                    .push_bind(now)
                    .push_bind(idempotency::new_token());
            });
            insert.push(" ON CONFLICT (key) DO NOTHING");
            round_trips += 1;
            written += insert
                .build()
                .execute(&mut *tx)
                .await
                .map_err(db_error)?
                .rows_affected();
        }
        if written != plan.completions.len() as u64 {
            // The write lock was held since the records were read, so this
            // means the database changed behind the store's back; failing
            // the transaction writes none of the batch.
            return Err(StoreError::Backend(
                "idempotency records changed while their appends were written".into(),
            ));
        }
        tx.commit().await.map_err(db_error)?;
        log_batch(batch.len(), rows.len(), round_trips);
        Ok(plan.outcomes)
    }

    async fn write_key_ops(&mut self, ops: &[KeyOp]) -> Result<Vec<KeyOutcome>> {
        let mut tx = self
            .connection
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)?;
        let mut outcomes = Vec::with_capacity(ops.len());
        for op in ops {
            // Read after the write lock is held, so no other process can
            // change the record between the decision and the write.
            let now = idempotency::now_millis();
            let outcome = match op {
                KeyOp::Claim {
                    key,
                    fingerprint,
                    lease,
                    retention,
                } => KeyOutcome::Claimed(
                    claim(&mut tx, key, fingerprint, now, *lease, *retention).await?,
                ),
                KeyOp::Complete {
                    key,
                    token,
                    response,
                } => {
                    let written = sqlx::query(COMPLETE_KEY)
                        .bind(key.as_str())
                        .bind(token.as_str())
                        .bind(response.as_bytes())
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_error)?;
                    if written.rows_affected() == 1 {
                        KeyOutcome::Done
                    } else {
                        KeyOutcome::Lost
                    }
                }
                KeyOp::Release { key, token } => {
                    sqlx::query(
                        "DELETE FROM allframe_idempotency \
                         WHERE key = ? AND token = ? AND state = 'in_flight'",
                    )
                    .bind(key.as_str())
                    .bind(token.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                    KeyOutcome::Done
                }
                KeyOp::Purge { retention } => {
                    let purged =
                        sqlx::query("DELETE FROM allframe_idempotency WHERE created_at < ?")
                            .bind(now - millis(*retention))
                            .execute(&mut *tx)
                            .await
                            .map_err(db_error)?;
                    KeyOutcome::Purged(purged.rows_affected())
                }
            };
            outcomes.push(outcome);
        }
        tx.commit().await.map_err(db_error)?;
        Ok(outcomes)
    }
}

/// An idempotency record as a claim reads it: fingerprint, response,
/// created_at, lease_until.
type KeyRow = (Option<Vec<u8>>, Option<Vec<u8>>, i64, i64);

/// Decides a claim on the record as stored and writes the decision.
async fn claim(
    connection: &mut SqliteConnection,
    key: &str,
    fingerprint: &str,
    now: i64,
    lease: Duration,
    retention: Duration,
) -> Result<Claim> {
    let row: Option<KeyRow> = sqlx::query_as(
        "SELECT fingerprint, response, created_at, lease_until \
         FROM allframe_idempotency WHERE key = ?",
    )
    .bind(key)
    .fetch_optional(&mut *connection)
    .await
    .map_err(db_error)?;
    let seen = match row {
        None => None,
        Some((stored, response, created_at, lease_until)) => Some(Seen {
            same_fingerprint: stored.is_none_or(|stored| stored == fingerprint.as_bytes()),
            response: response.map(|r| response_text(key, r)).transpose()?,
            expired: created_at < now - millis(retention),
            lease_over: lease_until <= now,
        }),
    };
    let decision = idempotency::decide(seen);
    let token = idempotency::new_token();
    match decision {
        Decision::Take => {
            sqlx::query(
                "INSERT INTO allframe_idempotency \
                 (key, fingerprint, state, response, created_at, lease_until, token) \
                 VALUES (?1, ?2, 'in_flight', NULL, ?3, ?4, ?5) \
                 ON CONFLICT (key) DO UPDATE SET fingerprint = excluded.fingerprint, \
                 state = 'in_flight', response = NULL, created_at = excluded.created_at, \
                 lease_until = excluded.lease_until, token = excluded.token",
            )
            .bind(key)
            .bind(fingerprint.as_bytes())
            .bind(now)
            .bind(now + millis(lease))
            .bind(token.as_str())
            .execute(&mut *connection)
            .await
            .map_err(db_error)?;
        }
        Decision::TakeOver => {
            sqlx::query("UPDATE allframe_idempotency SET lease_until = ?, token = ? WHERE key = ?")
                .bind(now + millis(lease))
                .bind(token.as_str())
                .bind(key)
                .execute(&mut *connection)
                .await
                .map_err(db_error)?;
        }
        Decision::Answer(_) => {}
    }
    Ok(decision.into_claim(token))
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
    type Connection = SqliteConnection;

    fn connection(&mut self) -> &mut SqliteConnection {
        &mut self.connection
    }

    fn write<'a>(
        &'a mut self,
        batch: &'a [Request],
    ) -> BoxFuture<'a, Result<Vec<Result<Appended>>>> {
        self.write_batch(batch).boxed()
    }

    fn close(self) -> BoxFuture<'static, ()> {
        async move {
            if let Err(error) = self.connection.close().await {
                tracing::warn!(%error, "closing the writer's connection failed");
            }
        }
        .boxed()
    }

    fn write_keys<'a>(&'a mut self, ops: &'a [KeyOp]) -> BoxFuture<'a, Result<Vec<KeyOutcome>>> {
        self.write_key_ops(ops).boxed()
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

    #[test]
    fn a_batch_takes_one_statement_per_bit_of_its_size() {
        let rows: Vec<u32> = (0..1_100).collect();
        for n in [1, 7, 120, 511, 512, 513, 1_100] {
            let chunks = fixed_chunks(&rows[..n], &super::INSERT_CHUNKS);
            let sizes: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
            let below = n % 512;
            assert_eq!(
                sizes.len(),
                n / 512 + below.count_ones() as usize,
                "{n} rows: {sizes:?}"
            );
            assert_eq!(chunks.concat(), rows[..n]);
        }
        let completions: Vec<usize> = fixed_chunks(&rows[..100], &super::COMPLETION_CHUNKS)
            .iter()
            .map(|c| c.len())
            .collect();
        assert_eq!(completions, [64, 32, 4]);
    }
}
