//! A store that fails on demand, around a real memory store: every
//! operation gone (an unreachable database, projection rows included), or
//! every append refused as a concurrency conflict (a stream hotter than the
//! retries), or its snapshots broken. It can also hold back reads of old
//! history, standing in for a catch-up over a log too large to finish
//! during a test, and hold back appends or snapshot writes, standing in
//! for a slow disk. It counts the reads of streams, the events they
//! returned and the appends, so tests can see what a command did.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::collections::HashMap;

use allframe::store::projections::{
    Batch, Committed, Generation, Generations, ProjectionStore, RowQuery,
};
use allframe::store::{
    Claim, Completion, IdempotencyStore, MemoryStore, Result, Snapshot, SnapshotStore,
};
use allframe::{
    Appended, EventFilter, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StoreError,
};
use futures_util::future::BoxFuture;

/// What goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Every operation fails with a backend error whose text must never
    /// reach a client.
    Unreachable,
    /// Every append is refused with a wrong expected version.
    Conflict,
    /// Every snapshot read and write fails with a backend error; the log
    /// works.
    Snapshots,
}

/// A memory store with a switchable [`Fault`].
#[derive(Clone)]
pub struct Faulty {
    inner: MemoryStore,
    fault: Arc<Mutex<Option<Fault>>>,
    /// Reads of the log that start below this position wait while it is set.
    held_below: Arc<tokio::sync::watch::Sender<Option<u64>>>,
    /// Appends wait while this is true.
    appends_held: Arc<tokio::sync::watch::Sender<bool>>,
    /// Snapshot writes wait while this is true.
    snapshot_writes_held: Arc<tokio::sync::watch::Sender<bool>>,
    /// How many times a stream was read.
    stream_reads: Arc<AtomicU64>,
    /// How many events those reads returned.
    stream_events_read: Arc<AtomicU64>,
    /// How many appends reached the store.
    appends: Arc<AtomicU64>,
}

impl Default for Faulty {
    fn default() -> Self {
        Self::new()
    }
}

impl Faulty {
    /// A healthy store.
    pub fn new() -> Self {
        Self {
            inner: MemoryStore::new(),
            fault: Arc::default(),
            held_below: Arc::new(tokio::sync::watch::Sender::new(None)),
            appends_held: Arc::new(tokio::sync::watch::Sender::new(false)),
            snapshot_writes_held: Arc::new(tokio::sync::watch::Sender::new(false)),
            stream_reads: Arc::default(),
            stream_events_read: Arc::default(),
            appends: Arc::default(),
        }
    }

    /// How many appends have reached the store (failed ones included).
    pub fn appends(&self) -> u64 {
        self.appends.load(Ordering::SeqCst)
    }

    /// How many times a stream has been read ([`EventStore::read_stream`]).
    pub fn stream_reads(&self) -> u64 {
        self.stream_reads.load(Ordering::SeqCst)
    }

    /// How many events reads of streams have returned.
    pub fn stream_events_read(&self) -> u64 {
        self.stream_events_read.load(Ordering::SeqCst)
    }

    /// Makes every snapshot write wait until
    /// [`release_snapshot_writes`](Self::release_snapshot_writes).
    pub fn hold_snapshot_writes(&self) {
        self.snapshot_writes_held.send_replace(true);
    }

    /// Lets held snapshot writes go on.
    pub fn release_snapshot_writes(&self) {
        self.snapshot_writes_held.send_replace(false);
    }

    /// Makes every read of the global log that starts below `position`
    /// wait until [`release_history`](Self::release_history): a catch-up
    /// that is still running, for as long as a test needs.
    pub fn hold_history_below(&self, position: u64) {
        self.held_below.send_replace(Some(position));
    }

    /// Lets held reads of the log go on.
    pub fn release_history(&self) {
        self.held_below.send_replace(None);
    }

    /// Makes every append wait (after it is counted) until
    /// [`release_appends`](Self::release_appends): a slow disk, for as long
    /// as a test needs to let work pile up behind a write.
    pub fn hold_appends(&self) {
        self.appends_held.send_replace(true);
    }

    /// Lets held appends go on.
    pub fn release_appends(&self) {
        self.appends_held.send_replace(false);
    }

    /// A store with `fault` from the start.
    pub fn with(fault: Fault) -> Self {
        let store = Self::new();
        store.set(Some(fault));
        store
    }

    /// Switches the fault on (`Some`) or off.
    pub fn set(&self, fault: Option<Fault>) {
        *self.fault.lock().unwrap() = fault;
    }

    fn fault(&self) -> Option<Fault> {
        *self.fault.lock().unwrap()
    }

    /// Runs `operation` on the inner store unless the store is unreachable.
    fn guard<'a, T: Send + 'a>(
        &'a self,
        operation: impl FnOnce(&'a MemoryStore) -> BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        guarded(self.fault(), || operation(&self.inner))
    }
}

/// `operation`, or the unreachable database's error.
fn guarded<'a, T: Send + 'a>(
    fault: Option<Fault>,
    operation: impl FnOnce() -> BoxFuture<'a, Result<T>>,
) -> BoxFuture<'a, Result<T>> {
    match fault {
        Some(Fault::Unreachable) => Box::pin(async {
            Err(StoreError::Backend(
                "connection refused to db.internal:5432 as admin".into(),
            ))
        }),
        _ => operation(),
    }
}

/// The memory store's projection rows, gone with the rest of the store
/// while it is unreachable.
struct FaultyRows {
    inner: Arc<dyn ProjectionStore>,
    fault: Arc<Mutex<Option<Fault>>>,
}

impl FaultyRows {
    fn fault(&self) -> Option<Fault> {
        *self.fault.lock().unwrap()
    }
}

impl ProjectionStore for FaultyRows {
    fn open<'a>(&'a self, projection: &'a str, version: u32) -> BoxFuture<'a, Result<Generations>> {
        guarded(self.fault(), || self.inner.open(projection, version))
    }

    fn load<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<HashMap<String, String>>> {
        guarded(self.fault(), || {
            self.inner.load(projection, generation, keys)
        })
    }

    fn commit<'a>(&'a self, batch: Batch<'a>) -> BoxFuture<'a, Result<Committed>> {
        guarded(self.fault(), || self.inner.commit(batch))
    }

    fn begin_rebuild<'a>(
        &'a self,
        projection: &'a str,
        version: u32,
    ) -> BoxFuture<'a, Result<Generation>> {
        guarded(self.fault(), || {
            self.inner.begin_rebuild(projection, version)
        })
    }

    fn swap<'a>(&'a self, projection: &'a str, generation: u64) -> BoxFuture<'a, Result<bool>> {
        guarded(self.fault(), || self.inner.swap(projection, generation))
    }

    fn drop_old<'a>(&'a self, projection: &'a str) -> BoxFuture<'a, Result<()>> {
        guarded(self.fault(), || self.inner.drop_old(projection))
    }

    fn get<'a>(
        &'a self,
        projection: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>>> {
        guarded(self.fault(), || self.inner.get(projection, key))
    }

    fn list<'a>(
        &'a self,
        projection: &'a str,
        query: &'a RowQuery,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>>> {
        guarded(self.fault(), || self.inner.list(projection, query))
    }

    fn checkpoint<'a>(&'a self, projection: &'a str) -> BoxFuture<'a, Result<u64>> {
        guarded(self.fault(), || self.inner.checkpoint(projection))
    }
}

impl EventStore for Faulty {
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
        self.stream_reads.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let events = self
                .guard(move |s| s.read_stream(stream_id, from_version, limit))
                .await?;
            self.stream_events_read
                .fetch_add(events.len() as u64, Ordering::SeqCst);
            Ok(events)
        })
    }
    fn read_all<'a>(
        &'a self,
        after: u64,
        limit: usize,
        filter: &'a EventFilter,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>>> {
        let mut held = self.held_below.subscribe();
        Box::pin(async move {
            // Only an error can end this early: the sender lives in `self`.
            let _ = held
                .wait_for(|below| below.is_none_or(|below| after >= below))
                .await;
            self.guard(move |s| s.read_all(after, limit, filter)).await
        })
    }
    fn stream_version<'a>(&'a self, stream_id: &'a str) -> BoxFuture<'a, Result<u64>> {
        self.guard(move |s| s.stream_version(stream_id))
    }
    fn head_position(&self) -> BoxFuture<'_, Result<u64>> {
        self.guard(|s| s.head_position())
    }
    fn watch_head(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.watch_head()
    }
    fn projection_store(&self) -> Option<Arc<dyn ProjectionStore>> {
        Some(Arc::new(FaultyRows {
            inner: self.inner.projection_store()?,
            fault: self.fault.clone(),
        }))
    }

    fn snapshots(&self) -> Option<&dyn SnapshotStore> {
        Some(self)
    }

    fn shared(&self) -> Arc<dyn EventStore> {
        Arc::new(self.clone())
    }
}

impl Faulty {
    /// Runs `operation` on the inner store's snapshots unless they (or
    /// the whole store) are broken.
    fn snapshots_guard<'a, T: Send + 'a>(
        &'a self,
        operation: impl FnOnce(&'a dyn SnapshotStore) -> BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        let fault = match self.fault() {
            Some(Fault::Snapshots) => Some(Fault::Unreachable),
            other => other,
        };
        let snapshots = self
            .inner
            .snapshots()
            .expect("the memory store keeps snapshots");
        guarded(fault, || operation(snapshots))
    }
}

impl SnapshotStore for Faulty {
    fn load_snapshot<'a>(&'a self, stream_id: &'a str) -> BoxFuture<'a, Result<Option<Snapshot>>> {
        self.snapshots_guard(move |s| s.load_snapshot(stream_id))
    }

    fn save_snapshot(&self, snapshot: Snapshot) -> BoxFuture<'_, Result<bool>> {
        let mut held = self.snapshot_writes_held.subscribe();
        Box::pin(async move {
            // Only an error can end this early: the sender lives in `self`.
            let _ = held.wait_for(|held| !held).await;
            self.snapshots_guard(move |s| s.save_snapshot(snapshot))
                .await
        })
    }
}

impl IdempotencyStore for Faulty {
    fn append_with<'a>(
        &'a self,
        stream_id: &'a str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        completions: Vec<Completion>,
    ) -> BoxFuture<'a, Result<Appended>> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        let mut held = self.appends_held.subscribe();
        Box::pin(async move {
            // Only an error can end this early: the sender lives in `self`.
            let _ = held.wait_for(|held| !held).await;
            if self.fault() == Some(Fault::Conflict) {
                return Err(StoreError::WrongExpectedVersion {
                    stream_id: stream_id.to_owned(),
                    expected,
                    actual: 99,
                });
            }
            self.guard(move |s| s.append_with(stream_id, expected, events, completions))
                .await
        })
    }
    fn claim_idempotency_key<'a>(
        &'a self,
        key: &'a str,
        fingerprint: &'a str,
        lease: Duration,
        retention: Duration,
    ) -> BoxFuture<'a, Result<Claim>> {
        self.guard(move |s| s.claim_idempotency_key(key, fingerprint, lease, retention))
    }
    fn complete_idempotency_key<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
        response: String,
    ) -> BoxFuture<'a, Result<()>> {
        self.guard(move |s| s.complete_idempotency_key(key, token, response))
    }
    fn release_idempotency_key<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        self.guard(move |s| s.release_idempotency_key(key, token))
    }
    fn purge_idempotency_keys(&self, retention: Duration) -> BoxFuture<'_, Result<u64>> {
        self.guard(move |s| s.purge_idempotency_keys(retention))
    }
}
