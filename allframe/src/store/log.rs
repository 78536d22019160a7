//! The log every backend keeps: appends checked against an
//! [`ExpectedVersion`], reads by stream and in global order, and the head.
//! These types are named from the crate root (`allframe::EventStore`).

use std::collections::BTreeSet;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio::sync::watch;

use super::{IdempotencyStore, MAX_EVENTS_PER_APPEND, Result, SnapshotStore, projections};
use crate::event::{NewEvent, RecordedEvent};
use crate::subscription::Subscription;

/// What the writer expects the stream's current version to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version is.
    Any,
    /// The stream must not exist yet (no events).
    NoStream,
    /// The stream's last event must have exactly this version. `Exact(0)`
    /// means the same as [`ExpectedVersion::NoStream`].
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream currently at `actual` (0 when empty) satisfies this.
    pub fn accepts(self, actual: u64) -> bool {
        match self {
            Self::Any => true,
            Self::NoStream => actual == 0,
            Self::Exact(expected) => actual == expected,
        }
    }
}

impl std::fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Any => f.write_str("any version"),
            Self::NoStream => f.write_str("no stream"),
            Self::Exact(version) => write!(f, "version {version}"),
        }
    }
}

/// The outcome of a successful append.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Appended {
    /// The stream appended to.
    pub stream_id: String,
    /// The stream's version after the append (the last event's version).
    pub version: u64,
    /// The global position of the last appended event.
    pub position: u64,
    /// The appended events as recorded.
    pub events: Vec<RecordedEvent>,
}

/// Selects events from the global log. An empty filter selects everything;
/// set fields narrow it (all must match).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventFilter {
    /// Only events of this stream.
    pub stream_id: Option<String>,
    /// Only events of streams in this category (`{category}-…`).
    pub category: Option<String>,
    /// Only events with one of these types (empty: any type).
    pub event_types: Vec<String>,
}

impl EventFilter {
    /// A filter that selects every event.
    pub fn all() -> Self {
        Self::default()
    }

    /// Narrows to one stream.
    pub fn stream(mut self, stream_id: impl Into<String>) -> Self {
        self.stream_id = Some(stream_id.into());
        self
    }

    /// Narrows to one stream category.
    pub fn category(mut self, category: impl Into<String>) -> Self {
        self.category = Some(category.into());
        self
    }

    /// Narrows to the given event types.
    pub fn event_types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.event_types = types.into_iter().map(Into::into).collect();
        self
    }

    /// Whether nothing is filtered out.
    pub fn is_all(&self) -> bool {
        self.stream_id.is_none() && self.category.is_none() && self.event_types.is_empty()
    }

    /// Whether the event passes this filter.
    pub fn matches(&self, event: &RecordedEvent) -> bool {
        self.stream_id
            .as_ref()
            .is_none_or(|s| *s == event.stream_id)
            && self.category.as_ref().is_none_or(|c| c == event.category())
            && (self.event_types.is_empty() || self.event_types.contains(&event.event_type))
    }
}

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The stream's version did not match the expected version.
    #[error(
        "wrong expected version for stream `{stream_id}`: expected {expected}, actual version {actual}"
    )]
    WrongExpectedVersion {
        /// The stream appended to.
        stream_id: String,
        /// What the writer expected.
        expected: ExpectedVersion,
        /// The stream's current version (0 when it has no events).
        actual: u64,
    },
    /// The stream id is empty, too long or contains control characters.
    #[error("invalid stream id {stream_id:?}: {reason}")]
    InvalidStreamId {
        /// The rejected id.
        stream_id: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// An event type name is empty, too long or has forbidden characters.
    #[error("invalid event type {event_type:?}: {reason}")]
    InvalidEventType {
        /// The rejected name.
        event_type: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// An event is malformed (data not an object, bad metadata, version 0).
    #[error("invalid event `{event_type}`: {reason}")]
    InvalidEvent {
        /// The type of the rejected event.
        event_type: String,
        /// Why it was rejected.
        reason: String,
    },
    /// An append carried no events, or more than [`MAX_EVENTS_PER_APPEND`].
    #[error("an append must carry between 1 and {MAX_EVENTS_PER_APPEND} events, got {0}")]
    BatchSize(usize),
    /// An idempotency key is empty, too long or contains control characters.
    #[error("invalid idempotency key {key:?}: {reason}")]
    InvalidIdempotencyKey {
        /// The rejected key.
        key: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A completion (in [`IdempotencyStore::append_with`] or
    /// [`IdempotencyStore::complete_idempotency_key`]) whose claim no longer holds
    /// its idempotency key: the key is not in flight with the completion's
    /// token because its lease ran out and another caller took it over, or
    /// it was completed, released or purged, or never claimed. Nothing was
    /// written. Claiming the key again tells what became of it.
    #[error("idempotency key {key:?} is no longer held by this claim")]
    IdempotencyKeyLost {
        /// The idempotency key.
        key: String,
    },
    /// A read limit of zero.
    #[error("a read limit must be at least 1")]
    ZeroLimit,
    /// The database failed.
    #[error("event store backend error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The database cannot be reached, or cannot take this now: the
    /// connection broke or timed out, the server is shutting down or
    /// refusing connections, the database is locked or its disk is full.
    /// Nothing was written; the same call may work later.
    #[error("the event store is unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The connection to the database broke while a transaction was being
    /// committed: the append may or may not have been stored. Read the
    /// stream before retrying it.
    #[error("the outcome of the commit is unknown: {0}")]
    CommitUnknown(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The store has shut down.
    #[error("the event store is closed")]
    Closed,
    /// The store keeps no idempotency records
    /// ([`EventStore::idempotency`] is `None`).
    #[error(
        "this event store keeps no idempotency records; send the command without an idempotency key"
    )]
    NoIdempotency,
}

/// The idempotency records of `store`, or [`StoreError::NoIdempotency`].
pub(crate) fn records(store: &dyn EventStore) -> Result<&dyn IdempotencyStore> {
    store.idempotency().ok_or(StoreError::NoIdempotency)
}

/// Appends through `store`'s log, or, with `completions`, through its
/// idempotency records so the responses commit with the events.
pub(crate) async fn append_completing(
    store: &dyn EventStore,
    stream_id: &str,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    completions: Vec<super::Completion>,
) -> Result<Appended> {
    if completions.is_empty() {
        return store.append(stream_id, expected, events).await;
    }
    records(store)?
        .append_with(stream_id, expected, events, completions)
        .await
}

/// Reads every event of `store`'s log that passes `filter`, a page at a
/// time, handing each page to `each`.
pub(crate) async fn each_page<S: EventStore + ?Sized>(
    store: &S,
    filter: &EventFilter,
    mut each: impl FnMut(&[RecordedEvent]),
) -> Result<()> {
    let mut after = 0;
    loop {
        let page = store.read_all(after, 1_000, filter).await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = last.position;
        each(&page);
    }
}

impl StoredType {
    /// The kind of `event`.
    pub(crate) fn of(event: &RecordedEvent) -> Self {
        Self {
            category: event.category().to_owned(),
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
        }
    }

    /// Whether `event` is of this kind.
    pub(crate) fn is(&self, event: &RecordedEvent) -> bool {
        self.schema_version == event.schema_version
            && self.event_type == event.event_type
            && self.category == event.category()
    }
}

impl StoreError {
    /// Whether this is an expected-version conflict (worth retrying a
    /// command over).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::WrongExpectedVersion { .. })
    }

    /// Whether the caller's input was rejected (as opposed to the backend
    /// failing).
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            Self::InvalidStreamId { .. }
                | Self::InvalidEventType { .. }
                | Self::InvalidEvent { .. }
                | Self::BatchSize(_)
                | Self::InvalidIdempotencyKey { .. }
                | Self::ZeroLimit
        )
    }

    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn backend(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Backend(Box::new(error))
    }
}

/// One kind of event the log holds: a stream category, a stored `type`
/// and a `schema_version`, as [`EventStore::stored_types`] lists them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StoredType {
    /// The category of the streams holding such events.
    pub category: String,
    /// The stored `type`.
    pub event_type: String,
    /// The stored `schema_version`.
    pub schema_version: u32,
}

/// An append-only event log with streams and a global order.
///
/// All backends behave identically; [`crate::testing`] holds the suite that
/// proves it and can be run against a new backend.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an AllFrame event store",
    note = "use `MemoryStore`, `SqliteStore` or `PostgresStore`, or implement `EventStore` and run `allframe::testing` against it"
)]
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream_id` atomically if the stream's version
    /// matches `expected`; all of them or none are stored.
    fn append<'a>(
        &'a self,
        stream_id: &'a str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<Appended>>;

    /// Reads up to `limit` events of one stream, starting at version
    /// `from_version` (1-based; 0 reads from the start), in version order.
    fn read_stream<'a>(
        &'a self,
        stream_id: &'a str,
        from_version: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>>>;

    /// Reads up to `limit` events of the global log with a position greater
    /// than `after` that pass `filter`, in position order.
    fn read_all<'a>(
        &'a self,
        after: u64,
        limit: usize,
        filter: &'a EventFilter,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>>>;

    /// The current version of a stream (0 when it has no events).
    fn stream_version<'a>(&'a self, stream_id: &'a str) -> BoxFuture<'a, Result<u64>>;

    /// The position of the last committed event (0 when the log is empty).
    fn head_position(&self) -> BoxFuture<'_, Result<u64>>;

    /// Every distinct `(category, type, schema_version)` of the events in
    /// the log, for the start-up check that all of them decode.
    ///
    /// The built-in backends answer from a small index kept with the
    /// appends (the SQL ones in the same transaction, as a table their
    /// migration filled from the events already stored), so the answer
    /// costs nothing however long the log. This default reads the whole
    /// log, page by page: correct for any backend, and worth replacing in
    /// one with long logs.
    fn stored_types(&self) -> BoxFuture<'_, Result<BTreeSet<StoredType>>> {
        Box::pin(async move {
            let mut types = BTreeSet::new();
            each_page(self, &EventFilter::all(), |page| {
                types.extend(page.iter().map(StoredType::of));
            })
            .await?;
            Ok(types)
        })
    }

    /// A signal that changes when this store commits new events. Its value
    /// is a position known to be committed; it only wakes readers up, the
    /// events themselves are always read from the store.
    fn watch_head(&self) -> watch::Receiver<u64>;

    /// A shared handle to this store, for work that outlives the borrow
    /// (subscriptions).
    fn shared(&self) -> Arc<dyn EventStore>;

    /// Closes the store's connections once what is already queued has been
    /// written; every later call fails with [`StoreError::Closed`] or a
    /// backend error. SQLite's last connection checkpoints the WAL and
    /// removes it; PostgreSQL's sessions end with a proper goodbye. Stores
    /// that hold no connections (memory) have nothing to close.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }

    /// Events after position `after` that pass `filter`: first what the store
    /// already holds (catch-up), then new events as they are committed, in
    /// ascending position with no gap and no duplicate.
    fn subscribe(&self, after: u64, filter: EventFilter) -> Subscription {
        Subscription::new(self.shared(), after, filter)
    }

    /// The idempotency records kept beside this log, which commands with an
    /// `Idempotency-Key` need; `None` (the default) for a backend that keeps
    /// none, where such commands are refused.
    fn idempotency(&self) -> Option<&dyn IdempotencyStore> {
        None
    }

    /// Where projections over this store keep their rows and checkpoints:
    /// the same database, so a batch of rows commits with its checkpoint.
    /// `None` for a backend without one (projections then need storage of
    /// their own).
    fn projection_store(&self) -> Option<Arc<dyn projections::ProjectionStore>> {
        None
    }

    /// Where aggregate snapshots are kept beside this log; `None` (the
    /// default) for a backend that keeps none, where every load replays
    /// the whole stream and snapshot policies have no effect.
    fn snapshots(&self) -> Option<&dyn SnapshotStore> {
        None
    }

    /// The leases that let one node at a time run each projection and
    /// saga, for a backend several nodes share; `None` (the default) for
    /// one that only one process uses, whose runners need none.
    fn leases(&self) -> Option<&dyn super::LeaseStore> {
        None
    }
}
