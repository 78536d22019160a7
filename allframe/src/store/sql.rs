//! SQL shared by the SQLite and PostgreSQL backends: the read queries (built
//! with sqlx's `QueryBuilder`, which writes each database's bind-parameter syntax) and
//! the conversion between a stored row and a [`RecordedEvent`].
//!
//! Both backends keep one `allframe_events` table with the same columns;
//! metadata is split into columns so reads need not parse it.

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use sqlx::{Database, Encode, QueryBuilder, Type};
use uuid::Uuid;

use super::{EventFilter, Result, StoreError};
use crate::event::{Metadata, RecordedEvent};

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

/// What differs between the SQL databases the stores run on, beyond what
/// sqlx's `QueryBuilder` already writes for each (bind parameters).
pub(crate) trait Dialect: Send + Sync + 'static {
    /// The sqlx database.
    type Db: sqlx::Database;
    /// Its name, for `Debug`.
    const NAME: &'static str;
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
    fn rows_affected(result: &<Self::Db as sqlx::Database>::QueryResult) -> u64;
}

/// Defines a SQL store type and its [`EventStore`](super::EventStore) impl.
///
/// SQLite and PostgreSQL differ only in their connection set-up, their
/// writer and a few statements; everything else about the two stores is
/// this one definition. `select_events` is the `SELECT … FROM
/// allframe_events` that the read conditions follow and `select_end`
/// closes; `events` decodes its rows. `head` reads the last committed
/// position, `stream_version` takes one bound stream id.
///
/// Each backend also defines the inherent methods the idempotency part of
/// the trait calls once the key is checked: `claim_key`, `complete_key`
/// (key, token, response), `release_key` (key, token) and `purge_keys`
/// (see [`super::idempotency`]).
macro_rules! sql_event_store {
    (
        $(#[$doc:meta])*
        store: $store:ident,
        database: $db:ty,
        select_events: $select_events:expr,
        select_end: $select_end:expr,
        stream_version: $stream_version:expr,
        head: $head:expr,
        events: $events:path $(,)?
    ) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $store {
            inner: ::std::sync::Arc<$crate::store::sql::SqlInner<::sqlx::Pool<$db>>>,
        }

        impl $store {
            /// Starts the writer task on `writer` and wraps up the store.
            async fn start(
                reads: ::sqlx::Pool<$db>,
                writer: impl $crate::store::group_commit::BatchWriter,
                max_batch: usize,
            ) -> $crate::store::Result<Self> {
                let head_now = Self::head_in(&reads).await?;
                let (head_sender, head) = ::tokio::sync::watch::channel(head_now);
                let writer =
                    $crate::store::group_commit::GroupCommit::spawn(writer, max_batch, head_sender);
                Ok(Self {
                    inner: ::std::sync::Arc::new($crate::store::sql::SqlInner {
                        reads,
                        writer,
                        head,
                    }),
                })
            }

            /// The pool of read connections, for projections that keep
            /// their rows in the same database.
            pub fn pool(&self) -> &::sqlx::Pool<$db> {
                &self.inner.reads
            }

            async fn head_in(pool: &::sqlx::Pool<$db>) -> $crate::store::Result<u64> {
                let head: i64 = ::sqlx::query_scalar($head)
                    .fetch_one(pool)
                    .await
                    .map_err($crate::store::sql::db_error)?;
                Ok(head as u64)
            }

            async fn fetch_events(
                &self,
                mut query: ::sqlx::QueryBuilder<$db>,
            ) -> $crate::store::Result<Vec<$crate::RecordedEvent>> {
                let rows = query
                    .push($select_end)
                    .build()
                    .fetch_all(&self.inner.reads)
                    .await
                    .map_err($crate::store::sql::db_error)?;
                $events(rows)
            }
        }

        impl ::std::fmt::Debug for $store {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct(stringify!($store))
                    .field("head", &*self.inner.head.borrow())
                    .finish_non_exhaustive()
            }
        }

        impl $crate::store::EventStore for $store {
            fn append_with<'a>(
                &'a self,
                stream_id: &'a str,
                expected: $crate::ExpectedVersion,
                events: Vec<$crate::NewEvent>,
                completion: Option<$crate::store::Completion>,
            ) -> ::futures_util::future::BoxFuture<'a, $crate::store::Result<$crate::Appended>> {
                ::futures_util::FutureExt::boxed(async move {
                    $crate::store::validate_append(stream_id, &events, completion.as_ref())?;
                    let request = $crate::store::group_commit::Request {
                        stream_id: stream_id.to_owned(),
                        expected,
                        events,
                        completion,
                    };
                    self.inner.writer.append(request).await
                })
            }

            fn claim_idempotency_key<'a>(
                &'a self,
                key: &'a str,
                fingerprint: &'a str,
                lease: ::std::time::Duration,
                retention: ::std::time::Duration,
            ) -> ::futures_util::future::BoxFuture<'a, $crate::store::Result<$crate::store::Claim>> {
                ::futures_util::FutureExt::boxed(async move {
                    $crate::store::idempotency::validate_key(key)?;
                    self.claim_key(key, fingerprint, lease, retention).await
                })
            }

            fn complete_idempotency_key<'a>(
                &'a self,
                key: &'a str,
                token: &'a str,
                response: String,
            ) -> ::futures_util::future::BoxFuture<'a, $crate::store::Result<()>> {
                ::futures_util::FutureExt::boxed(async move {
                    $crate::store::idempotency::validate_key(key)?;
                    self.complete_key(key, token, response).await
                })
            }

            fn release_idempotency_key<'a>(
                &'a self,
                key: &'a str,
                token: &'a str,
            ) -> ::futures_util::future::BoxFuture<'a, $crate::store::Result<()>> {
                ::futures_util::FutureExt::boxed(async move {
                    $crate::store::idempotency::validate_key(key)?;
                    self.release_key(key, token).await
                })
            }

            fn purge_idempotency_keys(
                &self,
                retention: ::std::time::Duration,
            ) -> ::futures_util::future::BoxFuture<'_, $crate::store::Result<u64>> {
                ::futures_util::FutureExt::boxed(self.purge_keys(retention))
            }

            fn read_stream<'a>(
                &'a self,
                stream_id: &'a str,
                from_version: u64,
                limit: usize,
            ) -> ::futures_util::future::BoxFuture<
                'a,
                $crate::store::Result<Vec<$crate::RecordedEvent>>,
            > {
                ::futures_util::FutureExt::boxed(async move {
                    $crate::store::validate_read(limit)?;
                    let mut query = ::sqlx::QueryBuilder::new($select_events);
                    $crate::store::sql::push_read_stream(&mut query, stream_id, from_version, limit);
                    self.fetch_events(query).await
                })
            }

            fn read_all<'a>(
                &'a self,
                after: u64,
                limit: usize,
                filter: &'a $crate::EventFilter,
            ) -> ::futures_util::future::BoxFuture<
                'a,
                $crate::store::Result<Vec<$crate::RecordedEvent>>,
            > {
                ::futures_util::FutureExt::boxed(async move {
                    $crate::store::validate_read(limit)?;
                    let mut query = ::sqlx::QueryBuilder::new($select_events);
                    $crate::store::sql::push_read_all(&mut query, after, limit, filter);
                    self.fetch_events(query).await
                })
            }

            fn stream_version<'a>(
                &'a self,
                stream_id: &'a str,
            ) -> ::futures_util::future::BoxFuture<'a, $crate::store::Result<u64>> {
                ::futures_util::FutureExt::boxed(async move {
                    let version: i64 = ::sqlx::query_scalar($stream_version)
                        .bind(stream_id)
                        .fetch_one(&self.inner.reads)
                        .await
                        .map_err($crate::store::sql::db_error)?;
                    Ok(version as u64)
                })
            }

            fn head_position(&self) -> ::futures_util::future::BoxFuture<'_, $crate::store::Result<u64>> {
                ::futures_util::FutureExt::boxed(Self::head_in(&self.inner.reads))
            }

            fn watch_head(&self) -> ::tokio::sync::watch::Receiver<u64> {
                self.inner.head.clone()
            }

            fn shared(&self) -> ::std::sync::Arc<dyn $crate::store::EventStore> {
                ::std::sync::Arc::new(self.clone())
            }

            fn close(&self) -> ::futures_util::future::BoxFuture<'_, ()> {
                ::futures_util::FutureExt::boxed(self.inner.close())
            }

            fn projection_store(
                &self,
            ) -> Option<::std::sync::Arc<dyn $crate::store::projections::ProjectionStore>> {
                Some(self.projection_rows())
            }
        }
    };
}
pub(crate) use sql_event_store;

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
