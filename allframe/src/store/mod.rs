//! The event store: an append-only log of streams with a global order.
//!
//! [`EventStore`] is what every backend implements with identical behaviour,
//! proven by the conformance suite in [`crate::testing`]:
//!
//! - [`MemoryStore`]: in-process, for tests and prototypes, or, with a
//!   [`Journal`] that keeps its commits, an embedded store of its own;
//! - `SqliteStore` (feature `sqlite`): a file in WAL mode, the embedded default;
//! - `PostgresStore` (feature `postgres`): one database shared by many nodes.
//!
//! Appends to one stream are atomic and checked against an
//! [`ExpectedVersion`]. Positions are global, strictly increasing and
//! gap-safe: a reader that has seen position N never later finds a committed
//! event below N. Subscriptions ([`EventStore::subscribe`]) read only through
//! the store, using [`EventStore::watch_head`] as a wake-up signal, so a slow
//! subscriber can lag but never skip.
//!
//! [`EventStore`] is the log alone: append, read, head, subscribe. What a
//! backend keeps beside it are capabilities the app asks for, each `None`
//! unless the backend offers it:
//!
//! - idempotency records ([`EventStore::idempotency`], an
//!   [`IdempotencyStore`]): a command's response is stored in the same
//!   transaction as its events ([`IdempotencyStore::append_with`]) and
//!   replayed to retries; without them, commands with a key are refused;
//! - projection storage ([`EventStore::projection_store`]): rows that commit
//!   with their checkpoint; without it, projections run in memory and are
//!   rebuilt from the log at start;
//! - snapshots ([`EventStore::snapshots`], a [`SnapshotStore`]): aggregate
//!   states kept beside their streams, so a long stream loads as a
//!   snapshot and the events after it; without them, every load replays.
//!
//! Timers and leases are to come the same way.

use crate::event::{NewEvent, RecordedEvent};

mod connect;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod group_commit;
mod idempotency;
pub mod journal;
pub mod leases;
pub(crate) mod log;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
pub mod projections;
pub mod snapshots;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;
mod validate;

pub use connect::{ConnectError, ConnectOptions, connect, redact};
pub(crate) use idempotency::validate_key as validate_idempotency_key;
pub use idempotency::{Claim, Completion, IdempotencyStore, MAX_DURATION};
pub use journal::{Commit, CompletedKey, Journal};
pub use leases::{Lease, LeaseStore};
pub(crate) use log::{Appended, EventFilter, EventStore, ExpectedVersion, StoreError, StoredType};
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresBuilder, PostgresDialect, PostgresStore};
pub use snapshots::{Snapshot, SnapshotStore};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sql::{Dialect, SqlStore};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteDialect, SqliteStore};

/// Appends that may share one transaction of a SQL store by default.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub const DEFAULT_MAX_BATCH: usize = 256;
pub(crate) use validate::{
    validate_append, validate_event_type, validate_read, validate_stream_id,
};

/// Longest accepted stream id, in bytes.
pub const MAX_STREAM_ID_LEN: usize = 255;
/// Longest accepted event type name, in bytes.
pub const MAX_EVENT_TYPE_LEN: usize = 128;
/// Longest accepted idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
/// Most events accepted in one append.
pub const MAX_EVENTS_PER_APPEND: usize = 10_000;

/// The result type of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Turns an accepted append into recorded events placed right after
/// `version` in the stream and `position` in the log.
pub(crate) fn record_append(
    stream_id: &str,
    events: Vec<NewEvent>,
    version: u64,
    position: u64,
    recorded_at: chrono::DateTime<chrono::Utc>,
) -> Appended {
    let events: Vec<RecordedEvent> = events
        .into_iter()
        .zip(1u64..)
        .map(|(event, n)| event.record(stream_id, version + n, position + n, recorded_at))
        .collect();
    appended(stream_id, events)
}

/// The outcome of an append to `stream_id` that recorded `events`.
pub(crate) fn appended(stream_id: &str, events: Vec<RecordedEvent>) -> Appended {
    let last = events.last().expect("appends carry at least one event");
    Appended {
        stream_id: stream_id.to_owned(),
        version: last.version,
        position: last.position,
        events,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_version_semantics() {
        assert!(ExpectedVersion::Any.accepts(0));
        assert!(ExpectedVersion::Any.accepts(7));
        assert!(ExpectedVersion::NoStream.accepts(0));
        assert!(!ExpectedVersion::NoStream.accepts(1));
        assert!(ExpectedVersion::Exact(0).accepts(0));
        assert!(ExpectedVersion::Exact(3).accepts(3));
        assert!(!ExpectedVersion::Exact(3).accepts(2));
    }
}
