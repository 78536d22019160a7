//! The in-process backend: a vector of events behind a lock, for tests and
//! prototypes; nothing survives the process unless the store is journaled.
//!
//! An append checks and writes under one short write lock, so positions are
//! assigned and published in the same step and readers can never observe a
//! hole. No lock is held across an `.await`.
//!
//! Idempotency records live in the same structure behind the same lock, so
//! a claim is one critical section, and a completion's token is checked and
//! the record written in the same critical section as its append's events
//! (see [`super::idempotency`]).
//!
//! A journaled store ([`MemoryStore::journaled`]) writes each commit to its
//! [`Journal`] between checking it (under the read lock) and applying it
//! (under the write lock); every write takes the journal's turn, so nothing
//! changes the log in between, and readers never wait for the journal.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::future::{self, BoxFuture, FutureExt};
use tokio::sync::watch;

use super::idempotency::{self, Decision, Holder, Seen, millis, refused, validate_key};
use super::journal::{Commit, CompletedKey, Journal};
use super::projections::{MemoryProjectionStore, ProjectionStore};
use super::snapshots::{MemorySnapshots, SnapshotStore};
use super::{
    Appended, Claim, Completion, EventFilter, EventStore, ExpectedVersion, IdempotencyStore,
    Result, StoreError, StoredType, appended, record_append, validate_append, validate_read,
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
    /// Where commits are written before they are visible, if anywhere.
    journal: Option<Arc<Journaled>>,
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
    fn held(&self, key: &str, token: &str) -> Option<&KeyRecord> {
        self.keys
            .get(key)
            .filter(|record| record.response.is_none() && record.token == token)
    }

    /// Claims `key` (see [`IdempotencyStore::claim_idempotency_key`]).
    fn claim(
        &mut self,
        key: &str,
        fingerprint: &str,
        lease: Duration,
        retention: Duration,
    ) -> Claim {
        let now = idempotency::now_millis();
        let seen = self.keys.get(key).map(|record| Seen {
            same_fingerprint: record.fingerprint == fingerprint,
            response: record.response.clone(),
            expired: record.created_at < now - millis(retention),
            lease_over: record.lease_until <= now,
        });
        let decision = idempotency::decide(seen);
        let token = idempotency::new_token();
        match decision {
            Decision::Take => {
                self.keys.insert(
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
                if let Some(record) = self.keys.get_mut(key) {
                    record.token.clone_from(&token);
                    record.lease_until = now + millis(lease);
                }
            }
            Decision::Answer(_) => {}
        }
        decision.into_claim(token)
    }

    /// The version of `stream_id` (0 when it has no events).
    fn version(&self, stream_id: &str) -> u64 {
        self.streams.get(stream_id).map_or(0, |s| s.len() as u64)
    }

    /// The commit of an append, checked against the log (the completions'
    /// tokens first, then the expected version) and not applied yet.
    fn plan(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        completions: &[Completion],
    ) -> Result<Commit> {
        let records = completions
            .iter()
            .filter_map(|completion| {
                let record = self.keys.get(completion.key())?;
                let token = record.response.is_none().then(|| record.token.clone());
                Some((completion.key().to_owned(), token))
            })
            .collect();
        if let Some(lost) = refused(completions, &records) {
            return Err(lost);
        }
        let actual = self.version(stream_id);
        if !expected.accepts(actual) {
            return Err(StoreError::WrongExpectedVersion {
                stream_id: stream_id.to_owned(),
                expected,
                actual,
            });
        }
        let head = self.events.len() as u64;
        let appended = record_append(stream_id, events, actual, head, now_millis());
        let keys = completions
            .iter()
            .map(|completion| {
                let response = completion.respond(&appended)?;
                self.completed(completion.key(), completion.holder(), response)
            })
            .collect::<Result<_>>()?;
        Ok(Commit {
            events: appended.events,
            keys,
        })
    }

    /// The commit that completes `key` without events, if it is in flight
    /// with `token`.
    fn plan_completion(&self, key: &str, token: &str, response: String) -> Result<Commit> {
        if self.held(key, token).is_none() {
            return Err(StoreError::IdempotencyKeyLost {
                key: key.to_owned(),
            });
        }
        let completed = self.completed(key, &Holder::Claim(token.to_owned()), response)?;
        Ok(Commit {
            events: Vec::new(),
            keys: vec![completed],
        })
    }

    /// `key` completed with `response` by `holder` (checked to hold it):
    /// a claimed record keeps its fingerprint and creation time, an
    /// unclaimed completion creates the record now.
    fn completed(&self, key: &str, holder: &Holder, response: String) -> Result<CompletedKey> {
        let now = idempotency::now_millis();
        let (fingerprint, created_at) = match (holder, self.keys.get(key)) {
            (Holder::Claim(_), Some(record)) => (record.fingerprint.clone(), record.created_at),
            (Holder::Claim(_), None) => {
                return Err(StoreError::IdempotencyKeyLost {
                    key: key.to_owned(),
                });
            }
            (Holder::Nobody(fingerprint), _) => (fingerprint.clone(), now),
        };
        let created_at = chrono::DateTime::from_timestamp_millis(created_at).ok_or_else(|| {
            StoreError::Backend(format!("key {key:?}: creation time out of range").into())
        })?;
        Ok(CompletedKey {
            key: key.to_owned(),
            fingerprint,
            response,
            created_at,
        })
    }

    /// Writes a planned (or journaled) commit, its completed `keys` and
    /// its `events`, into the log; returns the new head.
    fn apply(
        &mut self,
        keys: &[CompletedKey],
        events: impl IntoIterator<Item = RecordedEvent>,
    ) -> u64 {
        let now = idempotency::now_millis();
        for completed in keys {
            let record = KeyRecord {
                fingerprint: completed.fingerprint.clone(),
                token: idempotency::new_token(),
                response: Some(completed.response.clone()),
                created_at: completed.created_at.timestamp_millis(),
                lease_until: now,
            };
            self.keys.insert(completed.key.clone(), record);
        }
        for event in events {
            if !self.types.iter().any(|known| known.is(&event)) {
                self.types.insert(StoredType::of(&event));
            }
            self.streams
                .entry(event.stream_id.clone())
                .or_default()
                .push(self.events.len());
            self.events.push(event);
        }
        self.events.len() as u64
    }

    /// Checks that `commit` follows the log (positions right after the
    /// head, versions right after each stream's), before a journaled
    /// commit is applied at start.
    fn follows(&self, commit: &Commit) -> Result<()> {
        let mut versions = HashMap::new();
        for (event, position) in commit.events.iter().zip(self.events.len() as u64 + 1..) {
            let version = versions
                .entry(event.stream_id.as_str())
                .or_insert_with(|| self.version(&event.stream_id));
            *version += 1;
            if event.position != position || event.version != *version {
                return Err(StoreError::Backend(
                    format!(
                        "the journal does not follow on: event of `{}` at position {} version {}, expected position {position} version {}",
                        event.stream_id, event.position, event.version, *version
                    )
                    .into(),
                ));
            }
        }
        Ok(())
    }
}

/// A journaled store's journal, and whose turn it is to write.
struct Journaled {
    journal: Arc<dyn Journal>,
    /// Held by every write from before it reads the log until it has
    /// applied what it wrote, so the journal's order is the log's; says
    /// whether writes may go on.
    state: tokio::sync::Mutex<Writable>,
}

/// Whether a journaled store takes writes.
enum Writable {
    Yes,
    /// A journal write failed with its outcome unknown.
    Failed(String),
    Closed,
}

/// The turn to write of one journaled commit.
struct Turn<'j> {
    state: tokio::sync::MutexGuard<'j, Writable>,
    journal: &'j dyn Journal,
}

impl Journaled {
    /// Waits for the turn to write, unless writes have stopped.
    async fn turn(&self) -> Result<Turn<'_>> {
        let state = self.state.lock().await;
        match &*state {
            Writable::Yes => Ok(Turn {
                state,
                journal: &*self.journal,
            }),
            Writable::Failed(why) => Err(StoreError::Backend(
                format!("a journal write failed earlier ({why}); open the store again").into(),
            )),
            Writable::Closed => Err(StoreError::Closed),
        }
    }
}

impl Turn<'_> {
    /// Writes `commit` to the journal; an outcome that is not known stops
    /// every later write (see [`Journal`]).
    async fn write(&mut self, commit: &Commit) -> Result<()> {
        // Until the journal answers, the outcome is unknown: a write that
        // panics, or whose task is aborted, leaves writes stopped.
        *self.state = Writable::Failed("a journal write did not finish".into());
        let written = self.journal.write(commit).await;
        match written {
            Ok(()) => {
                *self.state = Writable::Yes;
                Ok(())
            }
            Err(refused) if super::journal::wrote_nothing(&refused) => {
                *self.state = Writable::Yes;
                Err(refused)
            }
            Err(error) => {
                *self.state = Writable::Failed(error.to_string());
                Err(error)
            }
        }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::holding(Log::default(), None)
    }

    /// A store holding `log`, writing to `journal` if there is one.
    fn holding(log: Log, journal: Option<Arc<Journaled>>) -> Self {
        let head = log.events.len() as u64;
        Self {
            inner: Arc::new(Inner {
                log: RwLock::new(log),
                head: watch::Sender::new(head),
                projections: MemoryProjectionStore::new(),
                snapshots: MemorySnapshots::default(),
                journal,
            }),
        }
    }

    /// A store that holds `commits` (what `journal` recorded before, in
    /// order) and writes every later commit to `journal` before it becomes
    /// visible: an embedded store whose log survives restarts (see
    /// [`Journal`]). Fails when the commits do not follow on from one
    /// another (a position or a stream version skipped or repeated).
    ///
    /// Writes take turns (each waits for the one before to be journaled)
    /// and run on the Tokio runtime (each in a task of its own); reads
    /// never wait for a write.
    pub fn journaled(
        journal: Arc<dyn Journal>,
        commits: impl IntoIterator<Item = Commit>,
    ) -> Result<Self> {
        let mut log = Log::default();
        for commit in commits {
            log.follows(&commit)?;
            log.apply(&commit.keys, commit.events);
        }
        let journal = Journaled {
            journal,
            state: tokio::sync::Mutex::new(Writable::Yes),
        };
        Ok(Self::holding(log, Some(Arc::new(journal))))
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

    /// Plans a commit on the log and applies it; with a journal, writes it
    /// to the journal in between, in a task of its own so a caller that
    /// goes away cannot leave a journaled commit unapplied.
    async fn commit(
        &self,
        plan: impl FnOnce(&Log) -> Result<Commit> + Send + 'static,
    ) -> Result<Commit> {
        let Some(journaled) = self.inner.journal.clone() else {
            let (commit, head) = self.write(|log| {
                let commit = plan(log)?;
                let head = log.apply(&commit.keys, commit.events.iter().cloned());
                Ok::<_, StoreError>((commit, head))
            })?;
            self.publish(&commit, head);
            return Ok(commit);
        };
        let store = self.clone();
        let written = tokio::spawn(async move {
            let mut turn = journaled.turn().await?;
            // Nothing else writes while the turn is held, so what is
            // planned under the read lock still holds when it is applied.
            let commit = store.read(plan)?;
            turn.write(&commit).await?;
            let head = store.write(|log| log.apply(&commit.keys, commit.events.iter().cloned()));
            store.publish(&commit, head);
            Ok(commit)
        });
        written
            .await
            .unwrap_or_else(|failed| Err(StoreError::Backend(Box::new(failed))))
    }

    /// Wakes subscribers up after a commit that appended events.
    fn publish(&self, commit: &Commit, head: u64) {
        if !commit.events.is_empty() {
            self.inner.head.send_replace(head);
        }
    }

    /// Runs `f` on the log, after the journal's turn when there is one, so
    /// it never falls between a commit's plan and its application.
    async fn write_in_turn<T>(&self, f: impl FnOnce(&mut Log) -> T) -> Result<T> {
        let _turn = match &self.inner.journal {
            Some(journaled) => Some(journaled.turn().await?),
            None => None,
        };
        Ok(self.write(f))
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

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let Some(journaled) = &self.inner.journal else {
                return;
            };
            let mut state = journaled.state.lock().await;
            if matches!(*state, Writable::Closed) {
                return;
            }
            *state = Writable::Closed;
            journaled.journal.close().await;
        })
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
        let version = self.read(|log| log.version(stream_id));
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
        Box::pin(async move {
            validate_append(stream_id, &events, &completions)?;
            let stream = stream_id.to_owned();
            let commit = self
                .commit(move |log| log.plan(&stream, expected, events, &completions))
                .await?;
            Ok(appended(stream_id, commit.events))
        })
    }

    fn claim_idempotency_key<'a>(
        &'a self,
        key: &'a str,
        fingerprint: &'a str,
        lease: Duration,
        retention: Duration,
    ) -> BoxFuture<'a, Result<Claim>> {
        Box::pin(async move {
            validate_key(key)?;
            self.write_in_turn(|log| log.claim(key, fingerprint, lease, retention))
                .await
        })
    }

    fn complete_idempotency_key<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
        response: String,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            validate_key(key)?;
            let (key, token) = (key.to_owned(), token.to_owned());
            self.commit(move |log| log.plan_completion(&key, &token, response))
                .await?;
            Ok(())
        })
    }

    fn release_idempotency_key<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            validate_key(key)?;
            self.write_in_turn(|log| {
                if log.held(key, token).is_some() {
                    log.keys.remove(key);
                }
            })
            .await
        })
    }

    fn purge_idempotency_keys(&self, retention: Duration) -> BoxFuture<'_, Result<u64>> {
        Box::pin(self.write_in_turn(move |log| {
            let cutoff = idempotency::now_millis() - millis(retention);
            let before = log.keys.len();
            log.keys.retain(|_, record| record.created_at >= cutoff);
            (before - log.keys.len()) as u64
        }))
    }
}
