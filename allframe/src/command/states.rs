//! The aggregate states commands decide on: taken from the state cache,
//! else loaded from the store (from a snapshot when there is a usable
//! one), and kept again once committed, with a snapshot written when the
//! aggregate's policy says one is due.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::cache::{StateCache, StateCacheUsage};
use crate::Aggregate;
use crate::aggregate::{LoadError, Loaded, SnapshotRead, load_stream};
use crate::store::{EventStore, Snapshot};

/// What became of snapshots in one dispatcher:
/// [`Dispatcher::snapshot_stats`](crate::Dispatcher::snapshot_stats).
/// Counts since the dispatcher was built, of aggregates with a snapshot
/// policy on a store that keeps snapshots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnapshotStats {
    /// Loads that started from a snapshot.
    pub used: u64,
    /// Loads of a stream that had no snapshot.
    pub missing: u64,
    /// Loads that found a snapshot and replayed the stream instead: taken
    /// by other code (state version or fingerprint differ), undecodable,
    /// or unreadable. Each is replaced by the next write.
    pub ignored: u64,
    /// Snapshots written.
    pub written: u64,
    /// Snapshots that could not be encoded or written (each is logged;
    /// the command that made it due succeeded all the same).
    pub failed: u64,
}

#[derive(Default)]
struct Counters {
    used: AtomicU64,
    missing: AtomicU64,
    ignored: AtomicU64,
    written: AtomicU64,
    failed: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The states of one dispatcher's aggregates.
pub(crate) struct States {
    store: Arc<dyn EventStore>,
    cache: StateCache,
    counters: Arc<Counters>,
}

impl States {
    pub(super) fn new(store: Arc<dyn EventStore>, cache: StateCache) -> Self {
        Self {
            store,
            cache,
            counters: Arc::default(),
        }
    }

    /// Takes the cached state of `stream`, if there is one.
    pub(super) fn take<A: Aggregate>(&self, stream: &str) -> Option<Loaded<A>> {
        self.cache.take(stream)
    }

    /// Loads the state of `stream` from the store.
    pub(super) async fn load<A: Aggregate>(&self, stream: &str) -> Result<Loaded<A>, LoadError> {
        let (loaded, read) = load_stream::<A>(&*self.store, stream).await?;
        let counters = &self.counters;
        match read {
            SnapshotRead::Off => {}
            SnapshotRead::Used => Counters::add(&counters.used),
            SnapshotRead::Missing => Counters::add(&counters.missing),
            SnapshotRead::Stale | SnapshotRead::Undecodable | SnapshotRead::Unreadable => {
                Counters::add(&counters.ignored)
            }
        }
        Ok(loaded)
    }

    /// Keeps a committed state of `stream` in the cache, first starting a
    /// snapshot of it when one is due.
    pub(super) fn keep<A: Aggregate>(&self, stream: &str, mut loaded: Loaded<A>) {
        if let Some(policy) = A::snapshots()
            && self.store.snapshots().is_some()
            && policy.due(&loaded)
        {
            match policy.take(stream, &loaded) {
                Ok(snapshot) => {
                    loaded.snapshot = loaded.version;
                    self.write(snapshot);
                }
                Err(error) => {
                    Counters::add(&self.counters.failed);
                    tracing::warn!(stream_id = %stream, %error, "could not encode a snapshot");
                }
            }
        }
        let bytes = loaded.state.memory_size();
        self.cache.put(stream, loaded, bytes);
    }

    /// Writes `snapshot` in a task of its own, off the command's path.
    fn write(&self, snapshot: Snapshot) {
        let store = self.store.clone();
        let counters = self.counters.clone();
        tokio::spawn(async move {
            let Some(snapshots) = store.snapshots() else {
                return;
            };
            let stream = snapshot.stream_id.clone();
            let version = snapshot.version;
            match snapshots.save_snapshot(snapshot).await {
                Ok(_) => Counters::add(&counters.written),
                Err(error) => {
                    Counters::add(&counters.failed);
                    tracing::warn!(stream_id = %stream, version, %error, "could not write a snapshot");
                }
            }
        });
    }

    pub(super) fn usage(&self) -> StateCacheUsage {
        self.cache.usage()
    }

    pub(super) fn snapshot_stats(&self) -> SnapshotStats {
        let count = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let counters = &self.counters;
        SnapshotStats {
            used: count(&counters.used),
            missing: count(&counters.missing),
            ignored: count(&counters.ignored),
            written: count(&counters.written),
            failed: count(&counters.failed),
        }
    }
}
