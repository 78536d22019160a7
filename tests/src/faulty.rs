//! A store that fails on demand, around a real memory store: every
//! operation gone (an unreachable database), or every append refused as a
//! concurrency conflict (a stream hotter than the retries).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use allframe::store::{Claim, Completion, MemoryStore, Result};
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
}

/// A memory store with a switchable [`Fault`].
#[derive(Clone)]
pub struct Faulty {
    inner: MemoryStore,
    fault: Arc<Mutex<Option<Fault>>>,
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
        }
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
        match self.fault() {
            Some(Fault::Unreachable) => Box::pin(async {
                Err(StoreError::Backend(
                    "connection refused to db.internal:5432 as admin".into(),
                ))
            }),
            _ => operation(&self.inner),
        }
    }
}

impl EventStore for Faulty {
    fn append_with<'a>(
        &'a self,
        stream_id: &'a str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        completion: Option<Completion>,
    ) -> BoxFuture<'a, Result<Appended>> {
        if self.fault() == Some(Fault::Conflict) {
            return Box::pin(async move {
                Err(StoreError::WrongExpectedVersion {
                    stream_id: stream_id.to_owned(),
                    expected,
                    actual: 99,
                })
            });
        }
        self.guard(move |s| s.append_with(stream_id, expected, events, completion))
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
    fn read_stream<'a>(
        &'a self,
        stream_id: &'a str,
        from_version: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>>> {
        self.guard(move |s| s.read_stream(stream_id, from_version, limit))
    }
    fn read_all<'a>(
        &'a self,
        after: u64,
        limit: usize,
        filter: &'a EventFilter,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>>> {
        self.guard(move |s| s.read_all(after, limit, filter))
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
    fn shared(&self) -> Arc<dyn EventStore> {
        Arc::new(self.clone())
    }
}
