//! The in-process backend: a vector of events behind a lock, for tests and
//! prototypes. Nothing survives the process.
//!
//! An append checks and writes under one short write lock, so positions are
//! assigned and published in the same step and readers can never observe a
//! hole. No lock is held across an `.await`.
//!
//! Idempotency records live in the same structure behind the same lock, so
//! a claim is one critical section, and a completion's token is checked and
//! the record written in the same critical section as its append's events
//! (see [`super::idempotency`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::future::{self, BoxFuture, FutureExt};
use tokio::sync::watch;

use super::idempotency::{self, Decision, Holder, Seen, millis, refused, validate_key};
use super::projections::{MemoryProjectionStore, ProjectionStore};
use super::snapshots::{MemorySnapshots, SnapshotStore};
use super::{
    Appended, Claim, Completion, EventFilter, EventStore, ExpectedVersion, IdempotencyStore,
    Result, StoreError, StoredType, record_append, validate_append, validate_read,
};
use crate::event::{NewEvent, RecordedEvent, now_millis};

/// The in-memory event store. Cloning gives another handle to the same log.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    log: RwLock<Log>,
    head: watch::Sender<u64>,
    /// The rows of projections over this store.
    projections: MemoryProjectionStore,
    /// The aggregate snapshots kept beside the log.
    snapshots: MemorySnapshots,
}

#[derive(Default)]
struct Log {
    /// Every event; the event at index `i` has position `i + 1`.
    events: Vec<RecordedEvent>,
    /// Indexes into `events` of each stream's events, in version order.
    streams: HashMap<String, Vec<usize>>,
    /// Idempotency records by key.
    keys: HashMap<String, KeyRecord>,
    /// The kinds of events in `events`.
    types: BTreeSet<StoredType>,
}

/// One idempotency record; times are Unix milliseconds.
struct KeyRecord {
    fingerprint: String,
    /// The token of the claim that holds (or completed) the key.
    token: String,
    /// `Some` once completed.
    response: Option<String>,
    created_at: i64,
    lease_until: i64,
}

impl Log {
    /// The record of `key` while it is in flight with `token`.
    fn held(&mut self, key: &str, token: &str) -> Option<&mut KeyRecord> {
        self.keys
            .get_mut(key)
            .filter(|record| record.response.is_none() && record.token == token)
    }

    /// Marks `key` completed if it is in flight with `token` (see the
    /// module docs of [`idempotency`]); whether it was.
    fn complete(&mut self, key: &str, token: &str, response: String, now: i64) -> bool {
        let Some(record) = self.held(key, token) else {
            return false;
        };
        record.response = Some(response);
        record.lease_until = now;
        true
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                log: RwLock::new(Log::default()),
                head: watch::Sender::new(0),
                projections: MemoryProjectionStore::new(),
                snapshots: MemorySnapshots::default(),
            }),
        }
    }

    fn read<T>(&self, f: impl FnOnce(&Log) -> T) -> T {
        // A panic while holding the lock cannot leave the log half-written
        // (appends push only after every check), so a poisoned lock is safe
        // to keep using.
        let log = self.inner.log.read().unwrap_or_else(|e| e.into_inner());
        f(&log)
    }

    fn write<T>(&self, f: impl FnOnce(&mut Log) -> T) -> T {
        let mut log = self.inner.log.write().unwrap_or_else(|e| e.into_inner());
        f(&mut log)
    }

    fn append_now(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        completions: Vec<Completion>,
    ) -> Result<Appended> {
        validate_append(stream_id, &events, &completions)?;
        let mut log = self.inner.log.write().unwrap_or_else(|e| e.into_inner());
        let records = completions
            .iter()
            .filter_map(|completion| {
                let record = log.keys.get(completion.key())?;
                let token = record.response.is_none().then(|| record.token.clone());
                Some((completion.key().to_owned(), token))
            })
            .collect();
        if let Some(lost) = refused(&completions, &records) {
            return Err(lost);
        }
        let actual = log.streams.get(stream_id).map_or(0, |s| s.len() as u64);
        if !expected.accepts(actual) {
            return Err(StoreError::WrongExpectedVersion {
                stream_id: stream_id.to_owned(),
                expected,
                actual,
            });
        }
        let first_index = log.events.len();
        let appended = record_append(stream_id, events, actual, first_index as u64, now_millis());
        // Built before anything is written, so a failing builder leaves the
        // log and the records untouched.
        let responses: Vec<String> = completions
            .iter()
            .map(|completion| completion.respond(&appended))
            .collect::<Result<_>>()?;
        let now = idempotency::now_millis();
        for (completion, response) in completions.iter().zip(responses) {
            match completion.holder() {
                Holder::Claim(token) => {
                    let completed = log.complete(completion.key(), token, response, now);
                    debug_assert!(completed, "the token was checked under the same lock");
                }
                Holder::Nobody(fingerprint) => {
                    let record = KeyRecord {
                        fingerprint: fingerprint.clone(),
                        token: idempotency::new_token(),
                        response: Some(response),
                        created_at: now,
                        lease_until: now,
                    };
                    log.keys.insert(completion.key().to_owned(), record);
                }
            }
        }
        for event in &appended.events {
            if !log.types.iter().any(|known| known.is(event)) {
                log.types.insert(StoredType::of(event));
            }
        }
        log.events.extend(appended.events.iter().cloned());
        let end = log.events.len();
        log.streams
            .entry(stream_id.to_owned())
            .or_default()
            .extend(first_index..end);
        let head = end as u64;
        drop(log);
        self.inner.head.send_replace(head);
        Ok(appended)
    }

    fn claim_now(
        &self,
        key: &str,
        fingerprint: &str,
        lease: Duration,
        retention: Duration,
    ) -> Result<Claim> {
        validate_key(key)?;
        Ok(self.write(|log| {
            let now = idempotency::now_millis();
            let seen = log.keys.get(key).map(|record| Seen {
                same_fingerprint: record.fingerprint == fingerprint,
                response: record.response.clone(),
                expired: record.created_at < now - millis(retention),
                lease_over: record.lease_until <= now,
            });
            let decision = idempotency::decide(seen);
            let token = idempotency::new_token();
            match decision {
                Decision::Take => {
                    log.keys.insert(
                        key.to_owned(),
                        KeyRecord {
                            fingerprint: fingerprint.to_owned(),
                            token: token.clone(),
                            response: None,
                            created_at: now,
                            lease_until: now + millis(lease),
                        },
                    );
                }
                Decision::TakeOver => {
                    if let Some(record) = log.keys.get_mut(key) {
                        record.token.clone_from(&token);
                        record.lease_until = now + millis(lease);
                    }
                }
                Decision::Answer(_) => {}
            }
            decision.into_claim(token)
        }))
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("head", &*self.inner.head.borrow())
            .finish()
    }
}

impl EventStore for MemoryStore {
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
        let result = validate_read(limit).map(|()| {
            self.read(|log| {
                let Some(indexes) = log.streams.get(stream_id) else {
                    return Vec::new();
                };
                let skip = from_version.saturating_sub(1) as usize;
                indexes
                    .iter()
                    .skip(skip)
                    .take(limit)
                    .map(|&i| log.events[i].clone())
                    .collect()
            })
        });
        future::ready(result).boxed()
    }

    fn read_all<'a>(
        &'a self,
        after: u64,
        limit: usize,
        filter: &'a EventFilter,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>>> {
        let result = validate_read(limit).map(|()| {
            self.read(|log| {
                let start = (after as usize).min(log.events.len());
                log.events[start..]
                    .iter()
                    .filter(|event| filter.matches(event))
                    .take(limit)
                    .cloned()
                    .collect()
            })
        });
        future::ready(result).boxed()
    }

    fn stream_version<'a>(&'a self, stream_id: &'a str) -> BoxFuture<'a, Result<u64>> {
        let version = self.read(|log| log.streams.get(stream_id).map_or(0, |s| s.len() as u64));
        future::ready(Ok(version)).boxed()
    }

    fn head_position(&self) -> BoxFuture<'_, Result<u64>> {
        future::ready(Ok(self.read(|log| log.events.len() as u64))).boxed()
    }

    fn stored_types(&self) -> BoxFuture<'_, Result<BTreeSet<StoredType>>> {
        future::ready(Ok(self.read(|log| log.types.clone()))).boxed()
    }

    fn watch_head(&self) -> watch::Receiver<u64> {
        self.inner.head.subscribe()
    }

    fn shared(&self) -> Arc<dyn EventStore> {
        Arc::new(self.clone())
    }

    fn projection_store(&self) -> Option<Arc<dyn ProjectionStore>> {
        Some(Arc::new(self.inner.projections.clone()))
    }

    fn snapshots(&self) -> Option<&dyn SnapshotStore> {
        Some(&self.inner.snapshots)
    }
}

impl IdempotencyStore for MemoryStore {
    fn append_with<'a>(
        &'a self,
        stream_id: &'a str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        completions: Vec<Completion>,
    ) -> BoxFuture<'a, Result<Appended>> {
        future::ready(self.append_now(stream_id, expected, events, completions)).boxed()
    }

    fn claim_idempotency_key<'a>(
        &'a self,
        key: &'a str,
        fingerprint: &'a str,
        lease: Duration,
        retention: Duration,
    ) -> BoxFuture<'a, Result<Claim>> {
        future::ready(self.claim_now(key, fingerprint, lease, retention)).boxed()
    }

    fn complete_idempotency_key<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
        response: String,
    ) -> BoxFuture<'a, Result<()>> {
        let result = validate_key(key).and_then(|()| {
            let now = idempotency::now_millis();
            if self.write(|log| log.complete(key, token, response, now)) {
                Ok(())
            } else {
                Err(StoreError::IdempotencyKeyLost {
                    key: key.to_owned(),
                })
            }
        });
        future::ready(result).boxed()
    }

    fn release_idempotency_key<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        let result = validate_key(key).map(|()| {
            self.write(|log| {
                if log.held(key, token).is_some() {
                    log.keys.remove(key);
                }
            })
        });
        future::ready(result).boxed()
    }

    fn purge_idempotency_keys(&self, retention: Duration) -> BoxFuture<'_, Result<u64>> {
        let purged = self.write(|log| {
            let cutoff = idempotency::now_millis() - millis(retention);
            let before = log.keys.len();
            log.keys.retain(|_, record| record.created_at >= cutoff);
            (before - log.keys.len()) as u64
        });
        future::ready(Ok(purged)).boxed()
    }
}
