//! The SQL event store, written once for SQLite and PostgreSQL: what
//! differs between them is a [`Dialect`]; the statements and row decoding
//! they share are in [`rows`].

mod rows;

pub(crate) use rows::{
    EventRow, INSERT_COLUMNS, accepted_events, db_error, extra_column, key_records_query,
    push_read_all, push_read_stream, stream_versions_query, to_i64,
};

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sqlx::{
    AssertSqlSafe, ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool,
    QueryBuilder, Type,
};
use tokio::sync::watch;

use super::group_commit::{BatchWriter, GroupCommit, Plan, Request, completion_keys, plan};
use super::idempotency::SqlRecords;
use super::projections::ProjectionStore;
use super::projections::sql::SqlProjectionStore;
use super::{
    Appended, EventFilter, EventStore, IdempotencyStore, Result, SnapshotStore, StoredType,
    validate_read,
};
use crate::ExpectedVersion;
use crate::event::{NewEvent, RecordedEvent};

/// The SQL database a [`SqlStore`] runs on: SQLite
/// ([`SqliteDialect`](super::SqliteDialect)) or PostgreSQL
/// ([`PostgresDialect`](super::PostgresDialect)). It holds what
/// differs between them (statements, row decoding, the idempotency
/// records); the store's logic is written once, in [`SqlStore`]. Sealed:
/// implemented by those two only.
pub trait Dialect: sealed::Sealed + Sized + Send + Sync + 'static {
    /// The sqlx database.
    type Db: sqlx::Database;
    /// Its name, for `Debug`.
    const NAME: &'static str;
    /// `SELECT … FROM allframe_events`, which the read conditions follow.
    const SELECT_EVENTS: &'static str;
    /// Closes [`SELECT_EVENTS`](Self::SELECT_EVENTS) after the conditions.
    const SELECT_END: &'static str;
    /// A stream's version, given one bound stream id.
    const STREAM_VERSION: &'static str;
    /// The last committed position.
    const HEAD: &'static str;
    /// Starts a transaction that writes projection rows.
    const BEGIN: &'static str;
    /// Whether every write goes through the store's one writer: where the
    /// database has a single write lock (SQLite), projection batches queue
    /// with the appends instead of waiting for that lock in the database's
    /// busy handler. Elsewhere (PostgreSQL: row locks) they write on a
    /// connection of the pool, beside the appends.
    const ONE_WRITER: bool;
    /// Follows the select of a projection's generations before they change
    /// (a row lock where the database has them).
    const LOCK: &'static str;
    /// Follows each bound JSON row (a cast to the JSON column type).
    const ROW_IN: &'static str;
    /// Selects a stored JSON row as text.
    const ROW_OUT: &'static str;

    /// Pushes a table expression of text columns `c0`, `c1`, … holding
    /// `columns` (each the values of one column, all of one length), bound
    /// as one value per column (arrays unnested, on PostgreSQL) or one for
    /// all (a JSON array of rows, on SQLite). However many rows a batch
    /// has, the statement's text stays the same, so it is prepared once
    /// and sent in one round trip.
    fn push_columns(query: &mut QueryBuilder<Self::Db>, columns: Vec<Vec<&str>>);

    /// Pushes the `FROM` and `WHERE` of a query of `allframe_idempotency`
    /// (as `i`) selecting the records of `keys` (sorted, bound as one
    /// value like [`push_columns`](Self::push_columns)), locked on
    /// PostgreSQL in the order of `keys`.
    ///
    /// On PostgreSQL each key is looked up in the primary key by itself (a
    /// lateral subquery per key, which also locks its row), so the cost is
    /// one index probe per key whatever the table's statistics say.
    /// `key = ANY(array)` was planned, as a generic plan made while the
    /// table was small, as a scan of every record comparing each with the
    /// whole array: with a saga's commands recording their keys, each batch
    /// cost grew with the records kept.
    fn push_key_records(query: &mut QueryBuilder<Self::Db>, keys: Vec<&str>);

    /// The leases of a store of this dialect, where several nodes share
    /// one ([`EventStore::leases`]); none by default.
    fn leases(store: &SqlStore<Self>) -> Option<&dyn super::LeaseStore> {
        let _ = store;
        None
    }

    /// Pushes a condition selecting the rows of `table` (a projection
    /// table, indexed by `(projection, generation, key)`) in `projection`'s
    /// `generation` whose key is one of `keys`, the keys bound as one value.
    ///
    /// On PostgreSQL each key is looked up in that index by itself (a
    /// lateral subquery per key, kept apart from the planner's join
    /// ordering by `OFFSET 0`) and the rows are then fetched by their
    /// `ctid`s, so the cost is one index probe per key whatever the
    /// table's statistics say. `key = ANY(array)` was planned, without
    /// statistics (a projection's first catch-up, a rebuild into an empty
    /// generation) and as a generic plan, as a scan of the generation's
    /// every row comparing each with the whole array: a batch cost grew
    /// with the rows already written, and a catch-up became quadratic.
    /// Fetching by `ctid` within the statement is sound because the rows
    /// of a generation change only in a transaction that holds its
    /// checkpoint row locked (see `commit_in`), so none moves meanwhile.
    fn push_keyed(
        query: &mut QueryBuilder<Self::Db>,
        table: &str,
        projection: &str,
        generation: i64,
        keys: Vec<&str>,
    );

    /// How many rows a statement changed.
    fn rows_affected(result: &<Self::Db as Database>::QueryResult) -> u64;

    /// Decodes the rows of [`SELECT_EVENTS`](Self::SELECT_EVENTS).
    fn events(rows: Vec<<Self::Db as Database>::Row>) -> Result<Vec<RecordedEvent>>;
}

/// The connection type of a dialect's database.
pub(crate) type Conn<D> = <<D as Dialect>::Db as Database>::Connection;

/// Runs `work` (which begins and commits its own transaction) on the
/// store's writer connection when given one (where the database has one
/// write lock for everything: see [`Dialect::ONE_WRITER`]), else on a
/// connection of `pool`.
pub(crate) async fn write_on<D: Dialect, T, F>(
    pool: &Pool<D::Db>,
    writer: Option<&GroupCommit<Conn<D>>>,
    work: F,
) -> Result<T>
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut Conn<D>) -> BoxFuture<'c, Result<T>> + Send + 'static,
{
    match writer {
        Some(writer) => writer.run(work).await,
        None => {
            let mut connection = pool.acquire().await.map_err(db_error)?;
            work(&mut connection).await
        }
    }
}

pub(crate) mod sealed {
    /// Keeps [`Dialect`](super::Dialect) to the databases this crate knows.
    pub trait Sealed {}
}

/// An event store in a SQL database: SQLite
/// ([`SqliteStore`](super::SqliteStore)) or PostgreSQL
/// ([`PostgresStore`](super::PostgresStore)). Reads go to a pool of
/// connections; appends queue for one writer task that commits them in
/// groups. Cloning gives another handle to the same store.
pub struct SqlStore<D: Dialect> {
    pub(crate) inner: Arc<SqlInner<D::Db>>,
}

impl<D: Dialect> Clone for SqlStore<D> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<D: Dialect> std::fmt::Debug for SqlStore<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("database", &D::NAME)
            .field("head", &*self.inner.head.borrow())
            .finish_non_exhaustive()
    }
}

impl<D: Dialect> SqlStore<D> {
    /// The pool of read connections, for projections that keep their rows
    /// in the same database.
    pub fn pool(&self) -> &Pool<D::Db> {
        &self.inner.reads
    }
}

impl<D: Dialect> SqlStore<D>
where
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    for<'t> &'t str: Encode<'t, D::Db> + Type<D::Db>,
    for<'t> i64: Encode<'t, D::Db> + Decode<'t, D::Db> + Type<D::Db>,
    for<'t> String: Encode<'t, D::Db> + Decode<'t, D::Db> + Type<D::Db>,
    usize: ColumnIndex<<D::Db as Database>::Row>,
{
    /// Starts the writer task on `writer` and wraps up the store.
    pub(crate) async fn start(
        reads: Pool<D::Db>,
        writer: impl BatchWriter<Connection = <D::Db as Database>::Connection>,
        max_batch: usize,
    ) -> Result<Self> {
        let head_now = Self::head_in(&reads).await?;
        let (head_sender, head) = watch::channel(head_now);
        let writer = GroupCommit::spawn(writer, max_batch, head_sender.clone());
        Ok(Self {
            inner: Arc::new(SqlInner {
                reads,
                writer,
                head,
                head_sender,
                listener: std::sync::Mutex::new(None),
            }),
        })
    }

    async fn head_in(pool: &Pool<D::Db>) -> Result<u64> {
        let head: i64 = sqlx::query_scalar(D::HEAD)
            .fetch_one(pool)
            .await
            .map_err(db_error)?;
        Ok(head as u64)
    }

    async fn fetch_events(&self, mut query: QueryBuilder<D::Db>) -> Result<Vec<RecordedEvent>> {
        let rows = query
            .push(D::SELECT_END)
            .build()
            .fetch_all(&self.inner.reads)
            .await
            .map_err(db_error)?;
        D::events(rows)
    }

    /// The start of every batch write, the same on each database: inside
    /// the writer's transaction (`connection`), reads the head (with
    /// [`Dialect::LOCK`], which takes the writers' lock where there is one),
    /// the versions of the batch's streams and the tokens of the keys it
    /// completes (locked the same way, so no claim takes one over before the
    /// commit), and decides the batch.
    ///
    /// Adds the statements it sends to `round_trips`.
    pub(crate) async fn plan_batch<'b>(
        connection: &mut <D::Db as Database>::Connection,
        batch: &'b [Request],
        recorded_at: DateTime<Utc>,
        round_trips: &mut u32,
    ) -> Result<Plan<'b>> {
        *round_trips += 2;
        let head: i64 = sqlx::query_scalar(AssertSqlSafe(format!("{}{}", D::HEAD, D::LOCK)))
            .fetch_one(&mut *connection)
            .await
            .map_err(db_error)?;
        let versions: HashMap<String, u64> =
            stream_versions_query::<D>(batch.iter().map(|r| r.stream_id.as_str()))
                .build_query_as::<(String, Option<i64>)>()
                .fetch_all(&mut *connection)
                .await
                .map_err(db_error)?
                .into_iter()
                .filter_map(|(stream_id, version)| Some((stream_id, version? as u64)))
                .collect();
        let keys = completion_keys(batch);
        let records: HashMap<String, Option<String>> = if keys.is_empty() {
            HashMap::new()
        } else {
            *round_trips += 1;
            key_records_query::<D>(keys)
                .build_query_as::<(String, Option<String>)>()
                .fetch_all(&mut *connection)
                .await
                .map_err(db_error)?
                .into_iter()
                .collect()
        };
        Ok(plan(batch, head as u64, versions, records, recorded_at))
    }

    async fn stream_version_now(&self, stream_id: &str) -> Result<u64> {
        let version: i64 = sqlx::query_scalar(D::STREAM_VERSION)
            .bind(stream_id)
            .fetch_one(&self.inner.reads)
            .await
            .map_err(db_error)?;
        Ok(version as u64)
    }
}

impl<D: SqlRecords> EventStore for SqlStore<D>
where
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    for<'t> &'t str: Encode<'t, D::Db> + Type<D::Db>,
    for<'t> i64: Encode<'t, D::Db> + Decode<'t, D::Db> + Type<D::Db>,
    for<'t> String: Encode<'t, D::Db> + Decode<'t, D::Db> + Type<D::Db>,
    usize: ColumnIndex<<D::Db as Database>::Row>,
{
    fn append<'a>(
        &'a self,
        stream_id: &'a str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<Appended>> {
        self.append_with(stream_id, expected, events, Vec::new())
    }

    fn idempotency(&self) -> Option<&dyn IdempotencyStore> {
        Some(self)
    }

    fn read_stream<'a>(
        &'a self,
        stream_id: &'a str,
        from_version: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>>> {
        async move {
            validate_read(limit)?;
            let mut query = QueryBuilder::new(D::SELECT_EVENTS);
            push_read_stream(&mut query, stream_id, from_version, limit);
            self.fetch_events(query).await
        }
        .boxed()
    }

    fn read_all<'a>(
        &'a self,
        after: u64,
        limit: usize,
        filter: &'a EventFilter,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>>> {
        async move {
            validate_read(limit)?;
            let mut query = QueryBuilder::new(D::SELECT_EVENTS);
            push_read_all(&mut query, after, limit, filter);
            self.fetch_events(query).await
        }
        .boxed()
    }

    fn stream_version<'a>(&'a self, stream_id: &'a str) -> BoxFuture<'a, Result<u64>> {
        self.stream_version_now(stream_id).boxed()
    }

    fn head_position(&self) -> BoxFuture<'_, Result<u64>> {
        Self::head_in(&self.inner.reads).boxed()
    }

    fn stored_types(&self) -> BoxFuture<'_, Result<BTreeSet<StoredType>>> {
        async move {
            let rows: Vec<(String, String, i64)> = sqlx::query_as(
                "SELECT category, event_type, CAST(schema_version AS BIGINT) FROM allframe_event_types",
            )
            .fetch_all(&self.inner.reads)
            .await
            .map_err(db_error)?;
            Ok(rows
                .into_iter()
                .map(|(category, event_type, schema_version)| StoredType {
                    category,
                    event_type,
                    schema_version: u32::try_from(schema_version).unwrap_or(u32::MAX),
                })
                .collect())
        }
        .boxed()
    }

    fn watch_head(&self) -> watch::Receiver<u64> {
        self.inner.head.clone()
    }

    fn shared(&self) -> Arc<dyn EventStore> {
        Arc::new(self.clone())
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        self.inner.close().boxed()
    }

    fn snapshots(&self) -> Option<&dyn SnapshotStore> {
        Some(self)
    }

    fn leases(&self) -> Option<&dyn super::LeaseStore> {
        D::leases(self)
    }

    fn projection_store(&self) -> Option<Arc<dyn ProjectionStore>> {
        let writer = D::ONE_WRITER.then(|| self.inner.writer.clone());
        Some(Arc::new(SqlProjectionStore::<D>::new(
            self.pool().clone(),
            writer,
        )))
    }
}

/// What a SQL store holds: its read pool, the queue to its writer task,
/// the head signal that task moves, and the task that moves it on other
/// nodes' commits, where there is one (PostgreSQL's listener).
pub(crate) struct SqlInner<DB: Database> {
    pub(crate) reads: Pool<DB>,
    pub(crate) writer: GroupCommit<DB::Connection>,
    pub(crate) head: watch::Receiver<u64>,
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) head_sender: watch::Sender<u64>,
    pub(crate) listener: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl<DB: Database> SqlInner<DB> {
    /// Stops the listener, lets the writer finish what is queued and close
    /// its connection, then closes the read pool once its connections are
    /// back.
    pub(crate) async fn close(&self) {
        self.stop_listener();
        self.writer.close().await;
        self.reads.close().await;
    }

    fn stop_listener(&self) {
        if let Some(listener) = self
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            listener.abort();
        }
    }
}

impl<DB: Database> Drop for SqlInner<DB> {
    fn drop(&mut self) {
        self.stop_listener();
    }
}
