//! The shared backend: PostgreSQL, for several nodes on one database.
//!
//! # Why positions are gap-safe
//!
//! A sequence or identity column hands out numbers when rows are inserted,
//! but rows become visible when their transaction commits, and concurrent
//! transactions commit in any order: a reader could see 101, move its
//! checkpoint past it, and never see 100 when that commits a moment later.
//!
//! This store does not use a sequence. Every append transaction first locks
//! the single row of `allframe_head` (`SELECT … FOR UPDATE`), reads the last
//! position from it, numbers its events after it, and writes the new head
//! back before committing. The row lock is held until commit and PostgreSQL
//! makes a transaction visible before it releases its locks, so:
//!
//! - the next writer cannot even read the head until the previous writer's
//!   events are visible; positions therefore become visible in order, and a
//!   reader that has seen N will never later find a committed event below N;
//! - a transaction that rolls back also rolls back its head update, so the
//!   next writer reuses those positions: there are no holes to wait for and
//!   nothing for a reader to hang on.
//!
//! The lock serializes writers of all nodes, which would cap throughput at
//! one commit (one WAL flush) at a time; group commit wins it back by
//! writing every append queued on a node in one transaction.
//!
//! The argument assumes READ COMMITTED, where every statement reads a new
//! snapshot: the stream versions read after the head lock was granted see
//! every event the previous writer committed. Under REPEATABLE READ or
//! SERIALIZABLE the transaction would keep the snapshot of its first
//! statement, taken before it waited for the lock, and would check versions
//! against a stale log (or fail to serialize). Every transaction this store
//! writes in therefore starts with `BEGIN ISOLATION LEVEL READ COMMITTED`,
//! whatever the database's `default_transaction_isolation` says.
//!
//! # Commits notified between nodes
//!
//! Each batch's transaction also sends `NOTIFY allframe_head` with
//! `{schema}:{new head}` (from the statement that moves the head, so a
//! batch costs no extra round trip; PostgreSQL delivers it at commit and
//! drops it on rollback). Every store keeps one connection of its own
//! listening (`application_name` `allframe-listener`) and moves its head
//! signal ([`EventStore::watch_head`](super::EventStore::watch_head)) to
//! the heads of its schema: subscriptions, projection and saga runners,
//! reads waiting for a position and the live event streams all wake on
//! that signal, so another node's write reaches them at once instead of at
//! their next poll. Notifications are only hints: after each
//! (re)connection the listener reads the head from the table, since what
//! was sent while it was away is lost, and the poll stays as a safety net.
//! [`PostgresBuilder::notifications`] turns both off.
//!
//! # Idempotency records
//!
//! Table `allframe_idempotency`; times come from the server's
//! `clock_timestamp()`, the one clock all nodes share. A claim runs on the
//! pool in a transaction of its own: `INSERT … ON CONFLICT DO NOTHING`
//! creates a new record (of concurrent inserts of one key, the others wait
//! for the first to commit and then find its row), otherwise `SELECT … FOR
//! UPDATE` locks the existing record while it is decided and rewritten, so
//! claims from any node agree. A claim locks one record and nothing else,
//! and purging skips locked records, so neither can deadlock with an append
//! transaction that completes keys. The append's own transaction completes
//! them: after taking the head lock it locks the in-flight records of its
//! keys (`SELECT … FOR UPDATE`, in key order) and checks their tokens before
//! inserting any event, so no claim can take a key over between the check
//! and the commit. Completing without events and releasing are single
//! statements conditional on the token. See [`super::idempotency`].

use std::str::FromStr;

use futures_util::future::{BoxFuture, FutureExt};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions, PgRow};
use sqlx::{Connection, Postgres, Row};

use super::group_commit::{BatchWriter, Request, advance_head, log_batch};
use super::sql::{
    Dialect, EventRow, INSERT_COLUMNS, SqlStore, accepted_events, db_error, extra_column, to_i64,
};
use super::{Appended, Result, StoreError};
use crate::event::{RecordedEvent, category_of, now_millis};

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

const SELECT_EVENTS: &str = "SELECT position, stream_id, version, event_type, schema_version, \
     data::text, event_id, correlation_id, causation_id, command, extra::text, recorded_at \
     FROM allframe_events";
/// Marks keys completed where they are in flight with the given tokens;
/// affects one row per key that is. Binds: keys (distinct), tokens,
/// responses.
pub(crate) const COMPLETE_KEYS: &str = "UPDATE allframe_idempotency AS i \
     SET state = 'completed', response = c.r, lease_until = clock_timestamp() \
     FROM UNNEST($1::text[], $2::text[], $3::bytea[]) AS c(k, t, r) \
     WHERE i.key = c.k AND i.token = c.t AND i.state = 'in_flight'";
/// Creates completed records for keys nobody claimed, where they have none;
/// affects one row per key that has none. Binds: keys (distinct),
/// fingerprints, responses, tokens.
const CREATE_COMPLETED_KEYS: &str = "INSERT INTO allframe_idempotency \
     (key, fingerprint, state, response, created_at, lease_until, token) \
     SELECT k, f, 'completed', r, clock_timestamp(), clock_timestamp(), t \
     FROM UNNEST($1::text[], $2::bytea[], $3::bytea[], $4::text[]) AS c(k, f, r, t) \
     ON CONFLICT (key) DO NOTHING";

/// Starts every transaction that writes; see the module docs.
const BEGIN: &str = "BEGIN ISOLATION LEVEL READ COMMITTED";

/// The SQL PostgreSQL speaks where it differs from the other backends.
#[derive(Debug)]
pub struct PostgresDialect;

impl super::sql::sealed::Sealed for PostgresDialect {}

impl Dialect for PostgresDialect {
    type Db = Postgres;
    const NAME: &'static str = "PostgreSQL";
    const SELECT_EVENTS: &'static str = SELECT_EVENTS;
    const SELECT_END: &'static str = "";
    const STREAM_VERSION: &'static str =
        "SELECT COALESCE(MAX(version), 0) FROM allframe_events WHERE stream_id = $1";
    const HEAD: &'static str = "SELECT position FROM allframe_head";
    const BEGIN: &'static str = "BEGIN ISOLATION LEVEL READ COMMITTED";
    const ONE_WRITER: bool = false;
    const LOCK: &'static str = " FOR UPDATE";
    const ROW_IN: &'static str = "::jsonb";
    const ROW_OUT: &'static str = "row::text";

    fn push_columns(query: &mut sqlx::QueryBuilder<Postgres>, columns: Vec<Vec<&str>>) {
        let names: Vec<String> = (0..columns.len()).map(|i| format!("c{i}")).collect();
        query.push("(SELECT * FROM UNNEST(");
        let mut list = query.separated(", ");
        for column in columns {
            list.push_bind(column).push_unseparated("::text[]");
        }
        query.push(format!(") AS t({}))", names.join(", ")));
    }

    fn push_key_records(query: &mut sqlx::QueryBuilder<Postgres>, keys: Vec<&str>) {
        query.push(" FROM UNNEST(").push_bind(keys).push(
            "::text[]) AS k(key) CROSS JOIN LATERAL (SELECT key, state, token \
                 FROM allframe_idempotency WHERE key = k.key FOR UPDATE) i",
        );
    }

    fn leases(store: &PostgresStore) -> Option<&dyn super::LeaseStore> {
        Some(store)
    }

    fn push_keyed(
        query: &mut sqlx::QueryBuilder<Postgres>,
        table: &str,
        projection: &str,
        generation: i64,
        keys: Vec<&str>,
    ) {
        query
            .push("ctid = ANY(ARRAY(SELECT t.ctid FROM UNNEST(")
            .push_bind(keys)
            .push(format!(
                "::text[]) AS k(key) CROSS JOIN LATERAL (SELECT ctid FROM {table} WHERE projection = "
            ))
            .push_bind(projection.to_owned())
            .push(" AND generation = ")
            .push_bind(generation)
            .push(" AND key = k.key OFFSET 0) t))");
    }

    fn rows_affected(result: &<Postgres as sqlx::Database>::QueryResult) -> u64 {
        result.rows_affected()
    }

    fn events(rows: Vec<<Postgres as sqlx::Database>::Row>) -> Result<Vec<RecordedEvent>> {
        events(rows)
    }
}

/// The PostgreSQL event store. Cloning gives another handle to the same store.
pub type PostgresStore = SqlStore<PostgresDialect>;

impl PostgresStore {
    /// Connects to `url` (e.g. `postgres://localhost/app`) and creates the
    /// tables in the connection's default schema if they are missing.
    pub async fn connect(url: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url).map_err(db_error)?;
        Self::connect_with(options, None, super::DEFAULT_MAX_BATCH).await
    }

    /// Connects with full control: `schema` (created if missing) holds the
    /// store's tables, so several stores can share one database; `max_batch`
    /// appends at most share one transaction (1 turns group commit off).
    /// Commits are notified to other nodes ([`builder`](Self::builder) can
    /// turn that off).
    pub async fn connect_with(
        options: PgConnectOptions,
        schema: Option<&str>,
        max_batch: usize,
    ) -> Result<Self> {
        Self::builder(options)
            .schema(schema)
            .max_batch(max_batch)
            .connect()
            .await
    }

    /// Every setting of a connection, starting from `options`: see
    /// [`PostgresBuilder`].
    pub fn builder(options: PgConnectOptions) -> PostgresBuilder {
        PostgresBuilder {
            options,
            schema: None,
            max_batch: super::DEFAULT_MAX_BATCH,
            notifications: true,
        }
    }

    /// Connects as `settings` say, with `pool` adjusting the options of
    /// the connection pool (8 connections by default).
    pub(crate) async fn connect_with_pool(
        settings: PostgresBuilder,
        pool: impl FnOnce(PgPoolOptions) -> PgPoolOptions,
    ) -> Result<Self> {
        let PostgresBuilder {
            options,
            schema,
            max_batch,
            notifications,
        } = settings;
        let options = match schema {
            None => options,
            Some(schema) => {
                let quoted = quote_identifier(&schema)?;
                let mut admin = PgConnection::connect_with(&options)
                    .await
                    .map_err(db_error)?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "CREATE SCHEMA IF NOT EXISTS {quoted}"
                )))
                .execute(&mut admin)
                .await
                .map_err(db_error)?;
                options.options([("search_path", quoted)])
            }
        };
        let reads = pool(PgPoolOptions::new().max_connections(8))
            .connect_with(options.clone())
            .await
            .map_err(db_error)?;
        MIGRATOR.run(&reads).await.map_err(StoreError::backend)?;
        // Stores in other schemas of the database notify on the same
        // channel; the schema tells this store's commits apart.
        let notify = match notifications {
            true => Some(
                sqlx::query_scalar::<_, String>("SELECT current_schema()")
                    .fetch_one(&reads)
                    .await
                    .map_err(db_error)?,
            ),
            false => None,
        };
        let connection = PgConnection::connect_with(&options)
            .await
            .map_err(db_error)?;
        let store = Self::start(
            reads.clone(),
            Writer {
                connection,
                options: options.clone(),
                notify: notify.clone(),
            },
            max_batch,
        )
        .await?;
        if let Some(schema) = notify {
            let listener = tokio::spawn(listen(
                options,
                schema,
                reads,
                store.inner.head_sender.clone(),
            ));
            *store
                .inner
                .listener
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(listener);
        }
        Ok(store)
    }
}

/// How to connect a [`PostgresStore`]: [`PostgresStore::builder`].
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use allframe::store::PostgresStore;
/// use sqlx::postgres::PgConnectOptions;
///
/// let options: PgConnectOptions = "postgres://localhost/bank".parse()?;
/// let store = PostgresStore::builder(options)
///     .schema(Some("bank"))
///     .notifications(false)
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresBuilder {
    options: PgConnectOptions,
    schema: Option<String>,
    max_batch: usize,
    notifications: bool,
}

impl std::fmt::Debug for PostgresBuilder {
    // Without the connect options, which hold the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBuilder")
            .field("schema", &self.schema)
            .field("max_batch", &self.max_batch)
            .field("notifications", &self.notifications)
            .finish_non_exhaustive()
    }
}

impl PostgresBuilder {
    /// The schema that holds the store's tables (created if missing), so
    /// several stores can share one database; `None` (the default) uses
    /// the connection's default schema.
    pub fn schema(mut self, schema: Option<&str>) -> Self {
        self.schema = schema.map(str::to_owned);
        self
    }

    /// At most this many appends share one transaction (default 256; 1
    /// turns group commit off).
    pub fn max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch;
        self
    }

    /// Whether commits are notified between nodes (default `true`): each
    /// batch's transaction sends a `NOTIFY` with the new head, and a
    /// connection of its own `LISTEN`s, so subscriptions, runners and
    /// reads waiting on this store wake on other nodes' writes at once.
    /// Without it they see those writes at their next poll (every half
    /// second). Turn it off where `LISTEN` cannot work (a connection
    /// pooler in transaction mode) or where one node is alone.
    pub fn notifications(mut self, notifications: bool) -> Self {
        self.notifications = notifications;
        self
    }

    /// Connects, creating the tables if they are missing, and starts the
    /// store's writer (and listener).
    pub async fn connect(self) -> Result<PostgresStore> {
        PostgresStore::connect_with_pool(self, |pool| pool).await
    }
}

/// The channel every PostgreSQL store notifies its commits on; the payload
/// is `{schema}:{head}`.
const HEAD_CHANNEL: &str = "allframe_head";
/// The longest a listener waits before connecting again.
const MAX_LISTEN_BACKOFF: std::time::Duration = std::time::Duration::from_secs(5);

/// Keeps one connection listening to [`HEAD_CHANNEL`] and moves `head` to
/// each commit of the store in `schema`, whichever node made it. After
/// every (re)connection it reads the head from the store, since
/// notifications sent while it was not listening are lost; the
/// subscriptions' poll covers the time it is down.
async fn listen(
    options: PgConnectOptions,
    schema: String,
    reads: sqlx::PgPool,
    head: tokio::sync::watch::Sender<u64>,
) {
    const FIRST_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);
    let mut backoff = FIRST_BACKOFF;
    loop {
        let started = std::time::Instant::now();
        if let Err(error) = listen_once(&options, &schema, &reads, &head).await {
            tracing::warn!(%error, "the PostgreSQL listener lost its connection; other nodes' writes are seen by polling until it is back");
        }
        // A connection that lasted is not part of a run of failures.
        if started.elapsed() > MAX_LISTEN_BACKOFF * 2 {
            backoff = FIRST_BACKOFF;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_LISTEN_BACKOFF);
    }
}

/// One connection of [`listen`]: returns when it fails.
async fn listen_once(
    options: &PgConnectOptions,
    schema: &str,
    reads: &sqlx::PgPool,
    head: &tokio::sync::watch::Sender<u64>,
) -> std::result::Result<(), sqlx::Error> {
    let connection = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect_lazy_with(options.clone().application_name("allframe-listener"));
    let mut listener = sqlx::postgres::PgListener::connect_with(&connection).await?;
    listener.listen(HEAD_CHANNEL).await?;
    loop {
        // Listening from here on: what committed before is in the store.
        let now: i64 = sqlx::query_scalar(PostgresDialect::HEAD)
            .fetch_one(reads)
            .await?;
        advance_head(head, now as u64);
        // `None`: the connection was lost and made again (listening
        // again); what was sent in between is read above.
        while let Some(notification) = listener.try_recv().await? {
            if let Some((from, position)) = notification.payload().rsplit_once(':')
                && from == schema
                && let Ok(position) = position.parse()
            {
                advance_head(head, position);
            }
        }
    }
}

/// Quotes a schema name for SQL, refusing names PostgreSQL would mangle.
fn quote_identifier(name: &str) -> Result<String> {
    if name.is_empty() || name.len() > 63 || name.contains(['"', '\0']) {
        return Err(StoreError::Backend(
            format!("invalid schema name {name:?}: 1..=63 bytes without `\"`").into(),
        ));
    }
    Ok(format!("\"{name}\""))
}

fn events(rows: Vec<PgRow>) -> Result<Vec<RecordedEvent>> {
    rows.iter().map(event_row).collect()
}

fn event_row(row: &PgRow) -> Result<RecordedEvent> {
    let get = || -> std::result::Result<EventRow, sqlx::Error> {
        Ok(EventRow {
            position: row.try_get(0)?,
            stream_id: row.try_get(1)?,
            version: row.try_get(2)?,
            event_type: row.try_get(3)?,
            schema_version: i64::from(row.try_get::<i32, _>(4)?),
            data: row.try_get(5)?,
            event_id: row.try_get(6)?,
            correlation_id: row.try_get(7)?,
            causation_id: row.try_get(8)?,
            command: row.try_get(9)?,
            extra: row.try_get(10)?,
            recorded_at: row.try_get(11)?,
        })
    };
    get().map_err(db_error)?.into_event()
}

struct Writer {
    connection: PgConnection,
    /// To reconnect when the connection breaks.
    options: PgConnectOptions,
    /// The schema that names this store in its notifications, when it
    /// sends them.
    notify: Option<String>,
}

/// How often a batch is written again when a claim created the record of a
/// key that one of its completions nobody claimed was about to create.
const RACED_ATTEMPTS: usize = 3;

impl Writer {
    /// Writes a batch; a batch that lost a race for a key nobody claimed is
    /// rolled back and planned again, which refuses the append that lost
    /// (the claim's record is committed by then: the insert that found it
    /// waited for it).
    async fn write_batch(&mut self, batch: &[Request]) -> Result<Vec<Result<Appended>>> {
        for _ in 1..RACED_ATTEMPTS {
            if let Some(outcomes) = self.try_write_batch(batch).await? {
                return Ok(outcomes);
            }
            tracing::debug!(
                "a batch raced a claim for an unclaimed idempotency key; planning it again"
            );
        }
        self.try_write_batch(batch).await?.ok_or_else(|| {
            StoreError::Backend(
                "idempotency keys kept being claimed while their appends were written".into(),
            )
        })
    }

    /// One attempt of [`write_batch`](Self::write_batch): `None` when it
    /// raced a claim (and wrote nothing).
    async fn try_write_batch(
        &mut self,
        batch: &[Request],
    ) -> Result<Option<Vec<Result<Appended>>>> {
        let mut tx = self.connection.begin_with(BEGIN).await.map_err(db_error)?;
        // Takes the lock that orders all writers; see the module docs.
        let recorded_at = now_millis();
        // BEGIN and COMMIT, and every statement between.
        let mut round_trips = 2;
        let plan = PostgresStore::plan_batch(&mut tx, batch, recorded_at, &mut round_trips).await?;
        let rows = accepted_events(&plan.outcomes);
        if let Some(last) = rows.last() {
            let new_head = to_i64(last.position);
            round_trips += 1;
            // One statement writes the events, records their kinds and moves
            // the head.
            let write = sqlx::query(sqlx::AssertSqlSafe(format!(
                "WITH inserted AS (INSERT INTO allframe_events ({INSERT_COLUMNS}) \
                 SELECT p, s, c, v, t, sv, d::jsonb, e, co, ca, cm, x::jsonb, $13 \
                 FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::int8[], $5::text[], \
                             $6::int4[], $7::text[], $8::uuid[], $9::text[], $10::text[], \
                             $11::text[], $12::text[]) \
                 AS r(p, s, c, v, t, sv, d, e, co, ca, cm, x)), \
                 kinds AS (INSERT INTO allframe_event_types (category, event_type, schema_version) \
                 SELECT DISTINCT c, t, sv FROM UNNEST($3::text[], $5::text[], $6::int4[]) \
                 AS k(c, t, sv) ON CONFLICT DO NOTHING) \
                 UPDATE allframe_head SET position = $14{}",
                // The notification is sent when the transaction commits
                // (and not at all if it rolls back).
                match self.notify {
                    Some(_) => " FROM (SELECT pg_notify($15, $16)) AS n",
                    None => "",
                }
            )))
            .bind(rows.iter().map(|e| to_i64(e.position)).collect::<Vec<_>>())
            .bind(
                rows.iter()
                    .map(|e| e.stream_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                rows.iter()
                    .map(|e| category_of(&e.stream_id))
                    .collect::<Vec<_>>(),
            )
            .bind(rows.iter().map(|e| to_i64(e.version)).collect::<Vec<_>>())
            .bind(
                rows.iter()
                    .map(|e| e.event_type.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                rows.iter()
                    .map(|e| e.schema_version as i32)
                    .collect::<Vec<_>>(),
            )
            .bind(rows.iter().map(|e| e.data.get()).collect::<Vec<_>>())
            .bind(rows.iter().map(|e| e.metadata.event_id).collect::<Vec<_>>())
            .bind(
                rows.iter()
                    .map(|e| e.metadata.correlation_id.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(
                rows.iter()
                    .map(|e| e.metadata.causation_id.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(
                rows.iter()
                    .map(|e| e.metadata.command.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(
                rows.iter()
                    .map(|e| extra_column(&e.metadata))
                    .collect::<Vec<_>>(),
            )
            .bind(recorded_at)
            .bind(new_head);
            let write = match &self.notify {
                Some(schema) => write
                    .bind(HEAD_CHANNEL)
                    .bind(format!("{schema}:{new_head}")),
                None => write,
            };
            write.execute(&mut *tx).await.map_err(db_error)?;
        }
        let (claimed, unclaimed) = plan.completion_rows();
        if !claimed.is_empty() {
            round_trips += 1;
            let written = sqlx::query(COMPLETE_KEYS)
                .bind(claimed.iter().map(|c| c.0).collect::<Vec<_>>())
                .bind(claimed.iter().map(|c| c.1).collect::<Vec<_>>())
                .bind(claimed.iter().map(|c| c.2).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            if written.rows_affected() != claimed.len() as u64 {
                // The records were locked when their tokens were read, so
                // this means the database changed behind the store's back;
                // failing the transaction writes none of the batch.
                return Err(StoreError::Backend(
                    "idempotency records changed while their appends were written".into(),
                ));
            }
        }
        if !unclaimed.is_empty() {
            round_trips += 1;
            let written = sqlx::query(CREATE_COMPLETED_KEYS)
                .bind(unclaimed.iter().map(|c| c.0).collect::<Vec<_>>())
                .bind(unclaimed.iter().map(|c| c.1).collect::<Vec<_>>())
                .bind(unclaimed.iter().map(|c| c.2).collect::<Vec<_>>())
                .bind(
                    unclaimed
                        .iter()
                        .map(|_| super::idempotency::new_token())
                        .collect::<Vec<_>>(),
                )
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            if written.rows_affected() != unclaimed.len() as u64 {
                // A key without a record has nothing to lock in advance: a
                // claim created its record meanwhile. Rolled back.
                return Ok(None);
            }
        }
        tx.commit().await.map_err(|error| match error {
            // The server answered: the transaction is known not to be
            // committed.
            sqlx::Error::Database(_) => db_error(error),
            other => StoreError::CommitUnknown(Box::new(other)),
        })?;
        log_batch(batch.len(), rows.len(), round_trips);
        Ok(Some(plan.outcomes))
    }
}

impl BatchWriter for Writer {
    type Connection = PgConnection;

    fn connection(&mut self) -> &mut PgConnection {
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

    fn recover(&mut self) -> BoxFuture<'_, ()> {
        async move {
            if self.connection.ping().await.is_ok() {
                return;
            }
            match PgConnection::connect_with(&self.options).await {
                Ok(connection) => {
                    tracing::warn!("the writer's connection broke; reconnected");
                    self.connection = connection;
                }
                // The next failed transaction tries again.
                Err(error) => tracing::error!(%error, "the writer could not reconnect"),
            }
        }
        .boxed()
    }
}
