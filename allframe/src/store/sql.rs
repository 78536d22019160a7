//! SQL shared by the SQLite and PostgreSQL backends: the read queries (built
//! with sqlx's `QueryBuilder`, which writes each database's bind-parameter syntax) and
//! the conversion between a stored row and a [`RecordedEvent`].
//!
//! Both backends keep one `allframe_events` table with the same columns;
//! metadata is split into columns so reads need not parse it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde_json::value::RawValue;
use sqlx::{
    AssertSqlSafe, ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool,
    QueryBuilder, Type,
};
use tokio::sync::watch;
use uuid::Uuid;

use super::group_commit::{BatchWriter, GroupCommit, Plan, Request, completion_keys, plan};
use super::projections::ProjectionStore;
use super::projections::sql::SqlProjectionStore;
use super::{
    Appended, Claim, Completion, EventFilter, EventStore, IdempotencyStore, Result, StoreError,
    idempotency, validate_append, validate_read,
};
use crate::ExpectedVersion;
use crate::event::{Metadata, NewEvent, RecordedEvent};

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
        .push_bind(to_i64(limit as u64));
}

/// Appends ` WHERE stream_id = s AND version >= v ORDER BY version LIMIT n`.
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
    query
        .push(" WHERE stream_id = ")
        .push_bind(stream_id.to_owned())
        .push(" AND version >= ")
        .push_bind(to_i64(from_version))
        .push(" ORDER BY version LIMIT ")
        .push_bind(to_i64(limit as u64));
}

/// `SELECT stream_id, MAX(version) … WHERE stream_id IN (…) GROUP BY stream_id`
/// for the streams of a batch.
pub(crate) fn stream_versions_query<'s, DB>(
    stream_ids: impl IntoIterator<Item = &'s str>,
) -> QueryBuilder<DB>
where
    DB: Database,
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new(
        "SELECT stream_id, MAX(version) FROM allframe_events WHERE stream_id IN (",
    );
    let mut list = query.separated(", ");
    for stream_id in stream_ids {
        list.push_bind(stream_id.to_owned());
    }
    query.push(") GROUP BY stream_id");
    query
}

/// `SELECT key, token … WHERE state = 'in_flight' AND key IN (…)` for the
/// idempotency keys a batch completes (see
/// [`completion_keys`](super::group_commit::completion_keys)), followed by
/// `suffix` (PostgreSQL locks the rows with ` FOR UPDATE`). Rows without a
/// token (claimed before tokens existed) are left out: no completion holds
/// them.
pub(crate) fn held_tokens_query<'k, DB>(
    keys: impl IntoIterator<Item = &'k str>,
    suffix: &'static str,
) -> QueryBuilder<DB>
where
    DB: Database,
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new(
        "SELECT key, token FROM allframe_idempotency \
         WHERE state = 'in_flight' AND token IS NOT NULL AND key IN (",
    );
    let mut list = query.separated(", ");
    for key in keys {
        list.push_bind(key.to_owned());
    }
    query.push(") ORDER BY key").push(suffix);
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

/// Maps a database error to a store error.
pub(crate) fn db_error(error: sqlx::Error) -> StoreError {
    StoreError::backend(error)
}

/// The SQL database a [`SqlStore`] runs on: SQLite
/// ([`SqliteDialect`](super::sqlite::SqliteDialect)) or PostgreSQL
/// ([`PostgresDialect`](super::postgres::PostgresDialect)). It holds what
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
    /// Follows the select of a projection's generations before they change
    /// (a row lock where the database has them).
    const LOCK: &'static str;
    /// Follows each bound JSON row (a cast to the JSON column type).
    const ROW_IN: &'static str;
    /// Selects a stored JSON row as text.
    const ROW_OUT: &'static str;

    /// How many rows a statement changed.
    fn rows_affected(result: &<Self::Db as Database>::QueryResult) -> u64;

    /// Decodes the rows of [`SELECT_EVENTS`](Self::SELECT_EVENTS).
    fn events(rows: Vec<<Self::Db as Database>::Row>) -> Result<Vec<RecordedEvent>>;

    /// Claims an idempotency key (already checked).
    fn claim_key(
        store: &SqlStore<Self>,
        key: &str,
        fingerprint: &str,
        lease: Duration,
        retention: Duration,
    ) -> impl Future<Output = Result<Claim>> + Send;

    /// Records the response under a claimed key (already checked).
    fn complete_key(
        store: &SqlStore<Self>,
        key: &str,
        token: &str,
        response: String,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Lets a claimed key go (already checked).
    fn release_key(
        store: &SqlStore<Self>,
        key: &str,
        token: &str,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Deletes expired records; returns how many.
    fn purge_keys(
        store: &SqlStore<Self>,
        retention: Duration,
    ) -> impl Future<Output = Result<u64>> + Send;
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
    pub(crate) inner: Arc<SqlInner<Pool<D::Db>>>,
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
        writer: impl BatchWriter,
        max_batch: usize,
    ) -> Result<Self> {
        let head_now = Self::head_in(&reads).await?;
        let (head_sender, head) = watch::channel(head_now);
        let writer = GroupCommit::spawn(writer, max_batch, head_sender);
        Ok(Self {
            inner: Arc::new(SqlInner {
                reads,
                writer,
                head,
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
    pub(crate) async fn plan_batch<'b>(
        connection: &mut <D::Db as Database>::Connection,
        batch: &'b [Request],
        recorded_at: DateTime<Utc>,
    ) -> Result<Plan<'b>> {
        let head: i64 = sqlx::query_scalar(AssertSqlSafe(format!("{}{}", D::HEAD, D::LOCK)))
            .fetch_one(&mut *connection)
            .await
            .map_err(db_error)?;
        let versions: HashMap<String, u64> =
            stream_versions_query::<D::Db>(batch.iter().map(|r| r.stream_id.as_str()))
                .build_query_as::<(String, i64)>()
                .fetch_all(&mut *connection)
                .await
                .map_err(db_error)?
                .into_iter()
                .map(|(stream_id, version)| (stream_id, version as u64))
                .collect();
        let keys = completion_keys(batch);
        let held: HashMap<String, String> = if keys.is_empty() {
            HashMap::new()
        } else {
            held_tokens_query::<D::Db>(keys, D::LOCK)
                .build_query_as::<(String, String)>()
                .fetch_all(&mut *connection)
                .await
                .map_err(db_error)?
                .into_iter()
                .collect()
        };
        Ok(plan(batch, head as u64, versions, held, recorded_at))
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

impl<D: Dialect> EventStore for SqlStore<D>
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
        self.append_with(stream_id, expected, events, None)
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

    fn watch_head(&self) -> watch::Receiver<u64> {
        self.inner.head.clone()
    }

    fn shared(&self) -> Arc<dyn EventStore> {
        Arc::new(self.clone())
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        self.inner.close().boxed()
    }

    fn projection_store(&self) -> Option<Arc<dyn ProjectionStore>> {
        Some(Arc::new(SqlProjectionStore::<D>::new(self.pool().clone())))
    }
}

impl<D: Dialect> IdempotencyStore for SqlStore<D>
where
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    for<'t> &'t str: Encode<'t, D::Db> + Type<D::Db>,
    for<'t> i64: Encode<'t, D::Db> + Decode<'t, D::Db> + Type<D::Db>,
    for<'t> String: Encode<'t, D::Db> + Decode<'t, D::Db> + Type<D::Db>,
    usize: ColumnIndex<<D::Db as Database>::Row>,
{
    fn append_with<'a>(
        &'a self,
        stream_id: &'a str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        completion: Option<Completion>,
    ) -> BoxFuture<'a, Result<Appended>> {
        async move {
            validate_append(stream_id, &events, completion.as_ref())?;
            let request = Request {
                stream_id: stream_id.to_owned(),
                expected,
                events,
                completion,
            };
            self.inner.writer.append(request).await
        }
        .boxed()
    }

    fn claim_idempotency_key<'a>(
        &'a self,
        key: &'a str,
        fingerprint: &'a str,
        lease: Duration,
        retention: Duration,
    ) -> BoxFuture<'a, Result<Claim>> {
        async move {
            idempotency::validate_key(key)?;
            D::claim_key(self, key, fingerprint, lease, retention).await
        }
        .boxed()
    }

    fn complete_idempotency_key<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
        response: String,
    ) -> BoxFuture<'a, Result<()>> {
        async move {
            idempotency::validate_key(key)?;
            D::complete_key(self, key, token, response).await
        }
        .boxed()
    }

    fn release_idempotency_key<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        async move {
            idempotency::validate_key(key)?;
            D::release_key(self, key, token).await
        }
        .boxed()
    }

    fn purge_idempotency_keys(&self, retention: Duration) -> BoxFuture<'_, Result<u64>> {
        D::purge_keys(self, retention).boxed()
    }
}

/// What a SQL store holds: its read pool, the queue to its writer task and
/// the head signal that task moves.
pub(crate) struct SqlInner<P> {
    pub(crate) reads: P,
    pub(crate) writer: super::group_commit::GroupCommit,
    pub(crate) head: tokio::sync::watch::Receiver<u64>,
}

impl<DB: sqlx::Database> SqlInner<sqlx::Pool<DB>> {
    /// Lets the writer finish what is queued and close its connection,
    /// then closes the read pool once its connections are back.
    pub(crate) async fn close(&self) {
        self.writer.close().await;
        self.reads.close().await;
    }
}

/// The events of a batch's accepted appends, in position order.
pub(crate) fn accepted_events(outcomes: &[Result<super::Appended>]) -> Vec<&RecordedEvent> {
    outcomes
        .iter()
        .filter_map(|outcome| outcome.as_ref().ok())
        .flat_map(|appended| &appended.events)
        .collect()
}
