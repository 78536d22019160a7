//! Snapshots: an aggregate's folded state kept beside the log, so loading
//! a long stream reads the snapshot and replays only the events after it.
//!
//! A snapshot is a cache of what the stream's events add up to, never a
//! source of truth: the log alone decides. Each stream has at most one, the
//! latest written. It records the stream version and global position it
//! reflects, and the two things that decide whether today's code may use
//! it (see [`Snapshots`](crate::Snapshots)): the state version the
//! aggregate declares and a fingerprint of the state's shape and the event
//! versions it was folded from. A reader compares those before it decodes
//! anything, and a snapshot that does not match, or does not decode, is
//! ignored: the stream is replayed from its start and the snapshot
//! replaced.
//!
//! # Rules every backend follows
//!
//! - [`SnapshotStore::save_snapshot`] keeps the new snapshot unless the one
//!   kept for the stream has the same state version and fingerprint and a
//!   later stream version: writers racing each other (two nodes, a slow
//!   background write) never move a stream's snapshot backwards, and a
//!   snapshot of other code (an older or newer release) is replaced by
//!   today's.
//! - What is saved is loaded back exactly: the state text byte for byte,
//!   the versions, position, fingerprint and time.
//! - Stream ids are checked like an append's.

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;

use super::Result;

mod memory;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) mod sql;

pub(crate) use memory::MemorySnapshots;

/// One stream's snapshot: its aggregate's state after the event at
/// `version`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The stream it is a snapshot of.
    pub stream_id: String,
    /// The stream version of the last event folded into it (at least 1).
    pub version: u64,
    /// The global position of that event.
    pub position: u64,
    /// The state version the aggregate declared when it was taken.
    pub state_version: u32,
    /// The fingerprint of the state's shape and the event versions it was
    /// folded from, when it was taken.
    pub fingerprint: String,
    /// The state, as JSON.
    pub state: String,
    /// When it was taken (millisecond precision).
    pub taken_at: DateTime<Utc>,
}

impl Snapshot {
    /// A snapshot of `stream_id` at `version` (the event at `position`),
    /// taken now.
    pub fn new(
        stream_id: impl Into<String>,
        version: u64,
        position: u64,
        state_version: u32,
        fingerprint: impl Into<String>,
        state: impl Into<String>,
    ) -> Self {
        Self {
            stream_id: stream_id.into(),
            version,
            position,
            state_version,
            fingerprint: fingerprint.into(),
            state: state.into(),
            taken_at: crate::event::now_millis(),
        }
    }

    /// Whether a kept snapshot `self` stays when `new` is saved for the
    /// same stream (see the module docs).
    pub(crate) fn outranks(&self, new: &Snapshot) -> bool {
        self.state_version == new.state_version
            && self.fingerprint == new.fingerprint
            && self.version > new.version
    }
}

/// Where a backend keeps snapshots: [`EventStore::snapshots`](crate::EventStore::snapshots).
/// The rules are in the [module docs](self).
pub trait SnapshotStore: Send + Sync {
    /// The snapshot kept for `stream_id`, if any.
    fn load_snapshot<'a>(&'a self, stream_id: &'a str) -> BoxFuture<'a, Result<Option<Snapshot>>>;

    /// Keeps `snapshot` as its stream's snapshot unless the one kept
    /// outranks it (same state version and fingerprint, later stream
    /// version). Returns whether it was kept.
    fn save_snapshot(&self, snapshot: Snapshot) -> BoxFuture<'_, Result<bool>>;
}
