//! A durable record of what a [`MemoryStore`](super::MemoryStore) commits,
//! which makes the in-memory log an embedded store of its own: every commit
//! is written to the [`Journal`] before it becomes visible, and at the next
//! start the store is rebuilt from the journal's commits
//! ([`MemoryStore::journaled`](super::MemoryStore::journaled)).
//!
//! The log and its rules stay the memory store's (versions, positions,
//! idempotency, subscriptions); a journal only has to keep commits, whole,
//! in order. Claims of idempotency keys are not journaled: a key in flight
//! when the process stops is free again at the next start, as if its lease
//! had run out. Nor are purges: records purged before a restart come back
//! at the next start (expired, so a claim treats them as absent) until
//! they are purged again. Snapshots and projection rows are kept in memory too and
//! rebuilt after a restart (loads replay the stream, projections start
//! from the beginning of the log).

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::Result;
use crate::event::RecordedEvent;

/// Where a journaled [`MemoryStore`](super::MemoryStore) writes its
/// commits.
///
/// The store calls [`write`](Self::write) once per commit, one at a time,
/// in commit order, and makes the commit visible only after it returned
/// `Ok`. An error that says nothing was written — one that
/// [`is_invalid_input`](super::StoreError::is_invalid_input) (the journal
/// refused the commit) or [`StoreError::Unavailable`](super::StoreError::Unavailable)
/// (it could not take it now) — fails the append, and the store goes on.
/// Any other error leaves the commit's fate unknown (it may be on disk and
/// come back at the next start), so the store refuses every later write
/// until it is opened again from the journal.
pub trait Journal: Send + Sync + 'static {
    /// Makes `commit` durable, whole or not at all.
    fn write<'a>(&'a self, commit: &'a Commit) -> BoxFuture<'a, Result<()>>;

    /// Flushes and releases what the journal holds, at shutdown
    /// ([`EventStore::close`](super::EventStore::close)); no write follows.
    fn close(&self) -> BoxFuture<'_, ()>;
}

/// One commit of a journaled store: an append's events, the idempotency
/// keys it completed, or both.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Commit {
    /// The events appended, as recorded (positions right after the
    /// previous commit's, versions right after their stream's last).
    pub events: Vec<RecordedEvent>,
    /// The idempotency keys completed with them.
    pub keys: Vec<CompletedKey>,
}

/// An idempotency key a commit completed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CompletedKey {
    /// The key.
    pub key: String,
    /// The fingerprint of the request that holds it.
    pub fingerprint: String,
    /// The stored response, replayed to retries.
    pub response: String,
    /// When the key's record was created (its retention counts from here).
    pub created_at: DateTime<Utc>,
}

/// Whether a journal's `error` says it wrote nothing (see [`Journal`]).
pub(crate) fn wrote_nothing(error: &super::StoreError) -> bool {
    error.is_invalid_input() || matches!(error, super::StoreError::Unavailable(_))
}
