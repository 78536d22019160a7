//! The in-process backend: a vector of events behind a lock, for tests and
//! prototypes. Nothing survives the process.
//!
//! An append checks and writes under one short write lock, so positions are
//! assigned and published in the same step and readers can never observe a
//! hole. No lock is held across an `.await`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use futures_util::future::{self, BoxFuture, FutureExt};
use tokio::sync::watch;

use super::{
    Appended, EventFilter, EventStore, ExpectedVersion, Result, StoreError, record_append,
    validate_append, validate_read,
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
}

#[derive(Default)]
struct Log {
    /// Every event; the event at index `i` has position `i + 1`.
    events: Vec<RecordedEvent>,
    /// Indexes into `events` of each stream's events, in version order.
    streams: HashMap<String, Vec<usize>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                log: RwLock::new(Log::default()),
                head: watch::Sender::new(0),
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

    fn append_now(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended> {
        validate_append(stream_id, &events)?;
        let mut log = self.inner.log.write().unwrap_or_else(|e| e.into_inner());
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
        future::ready(self.append_now(stream_id, expected, events)).boxed()
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

    fn watch_head(&self) -> watch::Receiver<u64> {
        self.inner.head.subscribe()
    }

    fn shared(&self) -> Arc<dyn EventStore> {
        Arc::new(self.clone())
    }
}
