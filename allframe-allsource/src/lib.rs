//! An experimental AllFrame event store on [AllSource]'s embedded engine
//! (`allsource-core`, pinned to 0.27.0, embedded mode).
//!
//! [`AllSourceStore::open`] opens a directory as an [`EventStore`] that
//! passes AllFrame's conformance suite. The engine keeps the data; the
//! adapter keeps the rules, because the engine's own calls do not give them
//! (measured on this release):
//!
//! - a batch of events is several separately versioned writes, partly
//!   written when one fails;
//! - its events have no durable global position, and its reads order them
//!   by timestamp, not by write order;
//! - its change broadcast drops what a slow reader did not take;
//! - a plain write after a reopen can repeat a stream version.
//!
//! (`tests/engine.rs` pins each of these.)
//!
//! So every commit (an append's events and the idempotency keys it
//! completes) is **one** engine event — a commit envelope — on one engine
//! stream, appended with the engine's expected-version call: the engine's
//! version of that stream is the commit's number, which makes every commit
//! whole or absent and the commits' order the log's. Positions and stream
//! versions are the adapter's, inside the envelope; at [`open`] the
//! adapter reads every envelope back, checks that they follow on from one
//! another, and rebuilds its index — a [`MemoryStore`] with the engine as
//! its [`Journal`], which serves reads, catch-up and wake-ups (so none is
//! lost), and writes nothing visible before the engine has it on disk.
//!
//! What this costs, and what it does not keep: see the README (section
//! "AllSource"). In short, the whole log is held in memory twice (the
//! engine loads every event at open, and the index holds them again),
//! writes take turns, one engine write (and fsync) each, and idempotency
//! keys in flight, snapshots and projection rows live in memory only and
//! are rebuilt after a restart.
//!
//! [AllSource]: https://crates.io/crates/allsource-core
//! [`open`]: AllSourceStore::open

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use allframe::store::{
    Commit, IdempotencyStore, Journal, LeaseStore, MemoryStore, SnapshotStore,
    projections::ProjectionStore,
};
use allframe::{
    Appended, EventFilter, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StoreError,
    StoredType,
};
use allsource_core::embedded::{Config, EmbeddedCore, Query};
use allsource_core::{AllSourceError, Event};
use futures_util::future::BoxFuture;
use tokio::sync::watch;

/// The engine stream that holds every commit, in order.
pub const LOG_STREAM: &str = "allframe.log";
/// The engine event type of a commit envelope.
pub const COMMIT_TYPE: &str = "allframe.commit";
/// The envelope format this release writes and reads.
const ENVELOPE_VERSION: u64 = 1;
/// The largest commit accepted, as encoded in its envelope. The engine
/// cannot flush an event much larger to its Parquet files (32 MiB
/// compressed), and keeps every event in memory.
pub const MAX_COMMIT_BYTES: usize = 4 * 1024 * 1024;
/// The engine's tenant: the adapter runs it single-tenant.
const TENANT: &str = "default";

/// Why a directory could not be opened as a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The directory or its lock file could not be created or opened.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// Another store (in this process or another) has the directory open.
    #[error("{0}: another process has this store open")]
    Locked(PathBuf),
    /// The engine failed to open.
    #[error("the AllSource engine failed to open: {0}")]
    Engine(#[from] AllSourceError),
    /// The engine opened without its write-ahead log or its Parquet files
    /// (it falls back to memory when they fail to open): nothing written
    /// would survive.
    #[error("the AllSource engine opened without durable storage ({0})")]
    NotDurable(String),
    /// The engine panicked while opening.
    #[error("the AllSource engine panicked while opening: {0}")]
    Panicked(String),
    /// The engine holds commits the adapter cannot read back in order: a
    /// commit is missing or repeated, an envelope does not decode, or the
    /// commits do not follow on from one another.
    #[error("the store's commits cannot be read back: {0}")]
    Corrupt(String),
}

/// An AllFrame event store in a directory, kept by AllSource's embedded
/// engine. Cloning gives another handle to the same store.
#[derive(Clone)]
pub struct AllSourceStore {
    index: MemoryStore,
    dir: Arc<PathBuf>,
}

impl std::fmt::Debug for AllSourceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AllSourceStore")
            .field("dir", &self.dir)
            .field("index", &self.index)
            .finish()
    }
}

impl AllSourceStore {
    /// Opens (creating it if needed) the store in `dir`: locks the
    /// directory, opens the engine in `dir/engine`, reads every commit back
    /// and rebuilds the index from them. The engine loads its whole log
    /// into memory here, so opening takes time in proportion to it.
    pub async fn open(dir: impl AsRef<Path>) -> Result<Self, OpenError> {
        let dir = dir.as_ref().to_path_buf();
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| OpenError::Io { path, source }
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let lock_path = dir.join("allframe.lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(OpenError::Locked(dir)),
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(OpenError::Io {
                    path: lock_path,
                    source,
                });
            }
        }
        let lock = DirLock(lock);
        let config = Config::builder()
            .data_dir(dir.join("engine"))
            .wal_sync_on_write(true)
            .build()?;
        // The engine reads its whole log here, on the calling thread.
        let runtime = tokio::runtime::Handle::current();
        let core =
            tokio::task::spawn_blocking(move || runtime.block_on(EmbeddedCore::open(config)))
                .await
                .map_err(|failed| OpenError::Panicked(failed.to_string()))??;
        let status = core.durability_status();
        if !status.wal_enabled || !status.parquet_enabled {
            return Err(OpenError::NotDurable(format!(
                "write-ahead log {}, Parquet files {}",
                on_off(status.wal_enabled),
                on_off(status.parquet_enabled)
            )));
        }
        let commits = read_commits(&core).await?;
        let count = commits.len() as u64;
        let journal = Arc::new(EngineJournal {
            core,
            commits: AtomicU64::new(count),
            _lock: lock,
        });
        let index = MemoryStore::journaled(journal, commits)
            .map_err(|error| OpenError::Corrupt(error.to_string()))?;
        tracing::info!(dir = %dir.display(), commits = count, "AllSource store open");
        Ok(Self {
            index,
            dir: Arc::new(dir),
        })
    }

    /// The directory the store is in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// Every commit the engine holds, in commit order, checked to be numbered
/// 1, 2, 3, … with none missing or repeated.
async fn read_commits(core: &EmbeddedCore) -> Result<Vec<Commit>, OpenError> {
    let mut envelopes = core.query(Query::new().entity_id(LOG_STREAM)).await?;
    envelopes.sort_by_key(|envelope| envelope.version);
    envelopes
        .into_iter()
        .zip(1i64..)
        .map(|(envelope, number)| {
            if envelope.version != number {
                return Err(OpenError::Corrupt(format!(
                    "commit {number} is missing or repeated (found commit {} in its place)",
                    envelope.version
                )));
            }
            if envelope.event_type != COMMIT_TYPE {
                return Err(OpenError::Corrupt(format!(
                    "commit {number} is a `{}`, not a `{COMMIT_TYPE}`",
                    envelope.event_type
                )));
            }
            decode(&envelope.payload)
                .map_err(|why| OpenError::Corrupt(format!("commit {number}: {why}")))
        })
        .collect()
}

/// The commit an envelope holds.
fn decode(payload: &serde_json::Value) -> Result<Commit, String> {
    let version = payload["v"].as_u64();
    if version != Some(ENVELOPE_VERSION) {
        return Err(format!(
            "envelope format {} is not one this release reads ({ENVELOPE_VERSION})",
            payload["v"]
        ));
    }
    let text = payload["commit"]
        .as_str()
        .ok_or("the envelope holds no commit")?;
    serde_json::from_str(text).map_err(|error| format!("the commit does not decode: {error}"))
}

/// The envelope of a commit: the commit as JSON text, so the engine sees
/// one fixed shape (two fields) whatever the events hold, and gives the
/// events back byte for byte.
fn encode(commit: &Commit) -> Result<serde_json::Value, StoreError> {
    let refused = |reason: String| StoreError::InvalidEvent {
        event_type: commit
            .events
            .first()
            .map_or_else(|| "idempotency record".to_owned(), |e| e.event_type.clone()),
        reason,
    };
    // Written without a depth limit, read back with serde_json's (128
    // levels, the commit's own four included): metadata deeper than that
    // would make the store impossible to open.
    let too_deep = commit.events.iter().any(|event| {
        event
            .metadata
            .extra
            .values()
            .any(|value| depth(value) > MAX_METADATA_DEPTH)
    });
    if too_deep {
        return Err(refused(format!(
            "metadata nested deeper than {MAX_METADATA_DEPTH} levels cannot be stored"
        )));
    }
    let text = serde_json::to_string(commit)
        .map_err(|error| refused(format!("the commit does not encode: {error}")))?;
    if text.len() > MAX_COMMIT_BYTES {
        return Err(refused(format!(
            "the append is {} bytes as stored; this store takes at most {MAX_COMMIT_BYTES}",
            text.len()
        )));
    }
    Ok(serde_json::json!({ "v": ENVELOPE_VERSION, "commit": text }))
}

/// The deepest nesting of arrays and objects accepted in a metadata value.
pub const MAX_METADATA_DEPTH: usize = 100;

/// How deep arrays and objects nest in `value` (0 for a scalar).
fn depth(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(fields) => 1 + fields.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The engine, as the index's journal.
struct EngineJournal {
    core: EmbeddedCore,
    /// How many commits the engine holds: the version of [`LOG_STREAM`].
    /// Written only by the index's writes, which take turns.
    commits: AtomicU64,
    /// The lock that keeps other stores out of the directory, released
    /// only once the engine (declared before it, so dropped first) is gone.
    _lock: DirLock,
}

/// The lock file of an open store's directory, holding an exclusive
/// `flock`. Dropping it unlocks the file before closing it: a child
/// process forked in between (by any thread of the process) holds a copy
/// of the descriptor until it `exec`s, and closing ours alone would leave
/// the directory locked until then.
struct DirLock(File);

impl Drop for DirLock {
    fn drop(&mut self) {
        if let Err(error) = self.0.unlock() {
            tracing::warn!(%error, "unlocking an AllSource directory failed");
        }
    }
}

/// How many commits go between two checkpoints of the engine (its log
/// moved into its Parquet files), so a restart after a crash replays at
/// most this many.
const CHECKPOINT_EVERY: u64 = 10_000;

impl Journal for EngineJournal {
    fn write<'a>(&'a self, commit: &'a Commit) -> BoxFuture<'a, allframe::store::Result<()>> {
        Box::pin(async move {
            let payload = encode(commit)?;
            let event = Event::from_strings(
                COMMIT_TYPE.into(),
                LOG_STREAM.into(),
                TENANT.into(),
                payload,
                None,
            )
            .map_err(|error| StoreError::InvalidEvent {
                event_type: COMMIT_TYPE.into(),
                reason: error.to_string(),
            })?;
            let expected = self.commits.load(Ordering::Acquire);
            let engine = self.core.inner();
            // The engine's call blocks (it writes and syncs its log).
            let written = tokio::task::spawn_blocking(move || {
                engine.ingest_with_expected_version(&event, Some(expected))
            })
            .await
            .map_err(|failed| StoreError::Backend(Box::new(failed)))?;
            match written {
                Ok(version) if version == expected + 1 => {
                    self.commits.store(version, Ordering::Release);
                    if version % CHECKPOINT_EVERY == 0 {
                        self.checkpoint().await;
                    }
                    Ok(())
                }
                Ok(version) => Err(StoreError::Backend(
                    format!("the engine numbered commit {} as {version}", expected + 1).into(),
                )),
                // Refused before the engine's log was touched: nothing was
                // written, and the same commit may go through later.
                Err(
                    error @ (AllSourceError::ArchiveIndexIncomplete { .. }
                    | AllSourceError::ArchiveBudgetExceeded { .. }),
                ) => Err(StoreError::Unavailable(Box::new(error))),
                Err(AllSourceError::ValidationError(reason)) => Err(StoreError::InvalidEvent {
                    event_type: COMMIT_TYPE.into(),
                    reason,
                }),
                // Anything else may have reached the engine's log (or, for a
                // version conflict, another writer has): the index stops
                // taking writes.
                Err(error) => Err(StoreError::Backend(Box::new(error))),
            }
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.checkpoint().await;
            if let Err(error) = self.core.shutdown().await {
                tracing::error!(%error, "AllSource shutdown failed");
            }
        })
    }
}

impl EngineJournal {
    /// Moves what the engine's log holds into its Parquet files, so the
    /// next open does not replay it (and write it there a second time). A
    /// failure loses nothing: the log still holds it.
    async fn checkpoint(&self) {
        let engine = self.core.inner();
        let checkpointed = tokio::task::spawn_blocking(move || engine.checkpoint()).await;
        match checkpointed {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "AllSource checkpoint failed"),
            Err(error) => tracing::error!(%error, "AllSource checkpoint failed"),
        }
    }
}

impl EventStore for AllSourceStore {
    fn append<'a>(
        &'a self,
        stream_id: &'a str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, allframe::store::Result<Appended>> {
        self.index.append(stream_id, expected, events)
    }

    fn read_stream<'a>(
        &'a self,
        stream_id: &'a str,
        from_version: u64,
        limit: usize,
    ) -> BoxFuture<'a, allframe::store::Result<Vec<RecordedEvent>>> {
        self.index.read_stream(stream_id, from_version, limit)
    }

    fn read_all<'a>(
        &'a self,
        after: u64,
        limit: usize,
        filter: &'a EventFilter,
    ) -> BoxFuture<'a, allframe::store::Result<Vec<RecordedEvent>>> {
        self.index.read_all(after, limit, filter)
    }

    fn stream_version<'a>(
        &'a self,
        stream_id: &'a str,
    ) -> BoxFuture<'a, allframe::store::Result<u64>> {
        self.index.stream_version(stream_id)
    }

    fn head_position(&self) -> BoxFuture<'_, allframe::store::Result<u64>> {
        self.index.head_position()
    }

    fn stored_types(&self) -> BoxFuture<'_, allframe::store::Result<BTreeSet<StoredType>>> {
        self.index.stored_types()
    }

    fn watch_head(&self) -> watch::Receiver<u64> {
        self.index.watch_head()
    }

    fn shared(&self) -> Arc<dyn EventStore> {
        Arc::new(self.clone())
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        self.index.close()
    }

    fn idempotency(&self) -> Option<&dyn IdempotencyStore> {
        self.index.idempotency()
    }

    fn projection_store(&self) -> Option<Arc<dyn ProjectionStore>> {
        self.index.projection_store()
    }

    fn snapshots(&self) -> Option<&dyn SnapshotStore> {
        self.index.snapshots()
    }

    fn leases(&self) -> Option<&dyn LeaseStore> {
        None
    }
}
