//! Where projections keep their rows: a backend-neutral [`ProjectionStore`]
//! with one implementation per event store backend, in the same database as
//! the events.
//!
//! # Layout
//!
//! Every projection shares three generic tables rather than getting tables
//! of its own: rows as JSON under `(projection, generation, key)`, index
//! entries under `(projection, generation, field, value, key)`, and one
//! checkpoint per `(projection, generation)`. No DDL is ever generated from
//! user names, a new projection needs no migration, and a rebuild is just a
//! new generation number beside the live one: readers always read the
//! generation named in `allframe_projections`, in the same statement, so a
//! swap is one row update and nobody sees a half-built generation.
//!
//! # Exactly once
//!
//! [`ProjectionStore::commit`] writes a batch of row changes and moves the
//! generation's checkpoint from `from` to `to` in one transaction, and only
//! if the checkpoint still is `from` (a compare-and-set). A process killed
//! at any moment therefore leaves rows that match its checkpoint exactly,
//! and two runners that somehow work on the same generation cannot both
//! apply one event: the second one's commit is refused with
//! [`Committed::Moved`].

use std::collections::HashMap;

use futures_util::future::BoxFuture;

use super::Result;

pub mod memory;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) mod sql;

pub use memory::MemoryProjectionStore;

/// The generations of one projection as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Generations {
    /// The generation readers see.
    pub live: Generation,
    /// A generation being rebuilt beside it, if any.
    pub rebuilding: Option<Generation>,
}

/// One generation of a projection's rows and how far it has read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Generation {
    /// Its number; a rebuild gets a number above every earlier one.
    pub number: u64,
    /// The position of the last event its rows reflect.
    pub checkpoint: u64,
    /// The projection's version (`#[projection(version = N)]`) its rows
    /// were built by.
    pub version: u32,
}

impl Generation {
    /// A generation numbered `number` at `checkpoint`, built by `version`.
    pub fn new(number: u64, checkpoint: u64, version: u32) -> Self {
        Self {
            number,
            checkpoint,
            version,
        }
    }
}

/// The new state of one row.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RowWrite {
    /// The row's key.
    pub key: String,
    /// The row as JSON, or `None` to delete it.
    pub row: Option<String>,
    /// Its index entries: `(field, value)` for every indexed field with a
    /// value.
    pub index: Vec<(&'static str, String)>,
    /// Whether the stored index entries of the key must be replaced by
    /// `index`; `false` when the row was stored before with exactly these
    /// entries, so a store may leave them as they are.
    pub reindex: bool,
}

impl RowWrite {
    /// Stores `row` (JSON) under `key` with these index entries.
    pub fn upsert(key: String, row: String, index: Vec<(&'static str, String)>) -> Self {
        Self {
            key,
            row: Some(row),
            index,
            reindex: true,
        }
    }

    /// Marks the index entries as already stored for the key (see
    /// [`RowWrite::reindex`]).
    pub fn index_unchanged(mut self) -> Self {
        self.reindex = false;
        self
    }

    /// Deletes the row under `key`.
    pub fn delete(key: String) -> Self {
        Self {
            key,
            row: None,
            index: Vec::new(),
            reindex: true,
        }
    }
}

/// One transaction of a runner: row changes and the checkpoint move.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Batch<'a> {
    /// The projection.
    pub projection: &'a str,
    /// The generation written.
    pub generation: u64,
    /// The checkpoint the runner read from; the commit is refused unless
    /// the stored checkpoint still is this.
    pub from: u64,
    /// The new checkpoint.
    pub to: u64,
    /// Whether the projection has indexed fields (if not, index entries
    /// need not be touched).
    pub indexed: bool,
    /// The rows changed, each key at most once.
    pub writes: &'a [RowWrite],
    /// The lease the runner holds, on a store with leases: the commit is
    /// refused ([`Committed::Moved`]) unless the lease still has this
    /// epoch. Stores without leases ignore it.
    pub fence: Option<Fence<'a>>,
}

/// The lease a commit is fenced by: see [`Batch::fence`] and
/// [`leases`](super::leases).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Fence<'a> {
    /// The lease's name.
    pub lease: &'a str,
    /// The epoch the runner took it with.
    pub epoch: u64,
}

impl<'a> Fence<'a> {
    /// The fence of lease `lease` taken with `epoch`.
    pub fn new(lease: &'a str, epoch: u64) -> Self {
        Self { lease, epoch }
    }
}

impl<'a> Batch<'a> {
    /// A batch moving `generation` of `projection` from `from` to `to`.
    pub fn new(
        projection: &'a str,
        generation: u64,
        from: u64,
        to: u64,
        indexed: bool,
        writes: &'a [RowWrite],
    ) -> Self {
        Self {
            projection,
            generation,
            from,
            to,
            indexed,
            writes,
            fence: None,
        }
    }

    /// The batch, committed only while `fence` holds (see
    /// [`Batch::fence`]).
    pub fn fenced(mut self, fence: Option<Fence<'a>>) -> Self {
        self.fence = fence;
        self
    }
}

/// The outcome of [`ProjectionStore::commit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Committed {
    /// Rows and checkpoint were written.
    Done,
    /// The stored checkpoint was no longer `from` (another runner moved it,
    /// or the generation was swapped out or dropped): nothing was written.
    Moved,
}

/// Which rows a list reads: keys after `after`, in key order, optionally
/// only those whose indexed `field` has `value`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RowQuery {
    /// Only keys strictly greater than this (bytewise).
    pub after: Option<String>,
    /// At most this many rows (at least 1).
    pub limit: usize,
    /// Only rows whose indexed field (first) has this value (second).
    pub index: Option<(String, String)>,
}

impl RowQuery {
    /// The first `limit` rows in key order.
    pub fn first(limit: usize) -> Self {
        Self {
            after: None,
            limit,
            index: None,
        }
    }

    /// Continues after `key`.
    pub fn after(mut self, key: impl Into<String>) -> Self {
        self.after = Some(key.into());
        self
    }

    /// Only rows whose indexed `field` equals `value`.
    pub fn indexed(mut self, field: impl Into<String>, value: impl Into<String>) -> Self {
        self.index = Some((field.into(), value.into()));
        self
    }
}

/// Storage of projection rows, index entries and checkpoints.
///
/// Reads ([`get`](Self::get), [`list`](Self::list)) always see the live
/// generation, chosen in the same statement as the rows. Keys compare
/// bytewise in every backend.
pub trait ProjectionStore: Send + Sync + 'static {
    /// The projection's generations, creating generation 1 at checkpoint 0
    /// built by `version` if it has never run. (Generations written before
    /// projections had versions count as version 1.)
    fn open<'a>(&'a self, projection: &'a str, version: u32) -> BoxFuture<'a, Result<Generations>>;

    /// The rows (JSON) of `generation` under the given keys; missing keys
    /// are absent from the map.
    fn load<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<HashMap<String, String>>>;

    /// Writes a batch and moves its checkpoint in one transaction; see
    /// [`Batch::from`].
    fn commit<'a>(&'a self, batch: Batch<'a>) -> BoxFuture<'a, Result<Committed>>;

    /// Starts a rebuild by `version`: a new, empty generation at checkpoint
    /// 0 beside the live one. When one is already being rebuilt by the
    /// same version, that one is returned and keeps its progress; one
    /// being rebuilt by another version is dropped and replaced.
    fn begin_rebuild<'a>(
        &'a self,
        projection: &'a str,
        version: u32,
    ) -> BoxFuture<'a, Result<Generation>>;

    /// Makes the rebuilt `generation` live, atomically for readers, and
    /// forgets the old generation's checkpoint (its rows are dropped by
    /// [`drop_old`](Self::drop_old)). Returns whether `generation` was the
    /// one being rebuilt.
    fn swap<'a>(&'a self, projection: &'a str, generation: u64) -> BoxFuture<'a, Result<bool>>;

    /// Deletes the rows and index entries of every generation below the
    /// live one.
    fn drop_old<'a>(&'a self, projection: &'a str) -> BoxFuture<'a, Result<()>>;

    /// The row (JSON) under `key` in the live generation.
    fn get<'a>(
        &'a self,
        projection: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>>>;

    /// Rows of the live generation as `(key, JSON)`, in key order.
    fn list<'a>(
        &'a self,
        projection: &'a str,
        query: &'a RowQuery,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>>>;

    /// The live generation's checkpoint (0 for a projection never run).
    fn checkpoint<'a>(&'a self, projection: &'a str) -> BoxFuture<'a, Result<u64>>;
}
