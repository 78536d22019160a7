//! Projection rows in memory, for the memory backend and tests: every
//! projection behind one lock, so a batch (rows and checkpoint) is applied
//! in one critical section and readers never see part of it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use futures_util::future::{self, BoxFuture, FutureExt};

use super::{Batch, Committed, Generation, Generations, ProjectionStore, RowQuery};
use crate::store::{Result, validate_read};

/// Projection storage in memory. Cloning gives another handle to the same
/// rows.
#[derive(Clone, Default)]
pub struct MemoryProjectionStore {
    inner: Arc<RwLock<HashMap<String, Projection>>>,
}

struct Projection {
    live: u64,
    rebuilding: Option<u64>,
    generations: BTreeMap<u64, Rows>,
}

#[derive(Default)]
struct Rows {
    checkpoint: u64,
    version: u32,
    rows: BTreeMap<String, String>,
    /// `(field, value)` → keys.
    index: BTreeMap<(String, String), BTreeSet<String>>,
    /// key → its index entries, to remove them when the row changes.
    entries: HashMap<String, Vec<(String, String)>>,
}

impl Rows {
    fn empty(version: u32) -> Self {
        Self {
            version,
            ..Self::default()
        }
    }
}

impl Projection {
    fn new(version: u32) -> Self {
        Self {
            live: 1,
            rebuilding: None,
            generations: BTreeMap::from([(1, Rows::empty(version))]),
        }
    }

    fn generations(&self) -> Generations {
        let generation = |number| {
            let rows = self.generations.get(&number);
            Generation::new(
                number,
                rows.map_or(0, |rows| rows.checkpoint),
                rows.map_or(1, |rows| rows.version),
            )
        };
        Generations {
            live: generation(self.live),
            rebuilding: self.rebuilding.map(generation),
        }
    }

    fn live(&self) -> Option<&Rows> {
        self.generations.get(&self.live)
    }
}

impl Rows {
    fn unindex(&mut self, key: &str) {
        for entry in self.entries.remove(key).unwrap_or_default() {
            if let Some(keys) = self.index.get_mut(&entry) {
                keys.remove(key);
                if keys.is_empty() {
                    self.index.remove(&entry);
                }
            }
        }
    }
}

impl MemoryProjectionStore {
    /// Empty storage.
    pub fn new() -> Self {
        Self::default()
    }

    fn read<T>(&self, f: impl FnOnce(&HashMap<String, Projection>) -> T) -> T {
        // Every change is made after its checks, in one critical section,
        // so a poisoned lock holds consistent data.
        f(&self.inner.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn write<T>(&self, f: impl FnOnce(&mut HashMap<String, Projection>) -> T) -> T {
        f(&mut self.inner.write().unwrap_or_else(|e| e.into_inner()))
    }

    fn commit_now(&self, batch: Batch<'_>) -> Committed {
        self.write(|projections| {
            let Some(rows) = projections
                .get_mut(batch.projection)
                .and_then(|p| p.generations.get_mut(&batch.generation))
                .filter(|rows| rows.checkpoint == batch.from)
            else {
                return Committed::Moved;
            };
            for write in batch.writes {
                rows.unindex(&write.key);
                match &write.row {
                    None => {
                        rows.rows.remove(&write.key);
                    }
                    Some(row) => {
                        rows.rows.insert(write.key.clone(), row.clone());
                        let entries: Vec<(String, String)> = write
                            .index
                            .iter()
                            .map(|(field, value)| ((*field).to_owned(), value.clone()))
                            .collect();
                        for entry in &entries {
                            rows.index
                                .entry(entry.clone())
                                .or_default()
                                .insert(write.key.clone());
                        }
                        if !entries.is_empty() {
                            rows.entries.insert(write.key.clone(), entries);
                        }
                    }
                }
            }
            rows.checkpoint = batch.to;
            Committed::Done
        })
    }

    fn list_now(&self, projection: &str, query: &RowQuery) -> Vec<(String, String)> {
        self.read(|projections| {
            let Some(rows) = projections.get(projection).and_then(Projection::live) else {
                return Vec::new();
            };
            let after = |key: &String| query.after.as_ref().is_none_or(|after| key > after);
            match &query.index {
                None => {
                    let range = match &query.after {
                        None => rows.rows.range::<String, _>(..),
                        Some(after) => rows.rows.range::<String, _>((
                            std::ops::Bound::Excluded(after),
                            std::ops::Bound::Unbounded,
                        )),
                    };
                    range
                        .take(query.limit)
                        .map(|(key, row)| (key.clone(), row.clone()))
                        .collect()
                }
                Some(entry) => rows
                    .index
                    .get(entry)
                    .into_iter()
                    .flatten()
                    .filter(|key| after(key))
                    .take(query.limit)
                    .filter_map(|key| rows.rows.get(key).map(|row| (key.clone(), row.clone())))
                    .collect(),
            }
        })
    }
}

impl std::fmt::Debug for MemoryProjectionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryProjectionStore")
            .finish_non_exhaustive()
    }
}

impl ProjectionStore for MemoryProjectionStore {
    fn open<'a>(&'a self, projection: &'a str, version: u32) -> BoxFuture<'a, Result<Generations>> {
        let generations = self.write(|projections| {
            projections
                .entry(projection.to_owned())
                .or_insert_with(|| Projection::new(version))
                .generations()
        });
        future::ready(Ok(generations)).boxed()
    }

    fn load<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<HashMap<String, String>>> {
        let rows = self.read(|projections| {
            let Some(rows) = projections
                .get(projection)
                .and_then(|p| p.generations.get(&generation))
            else {
                return HashMap::new();
            };
            keys.iter()
                .filter_map(|key| rows.rows.get(key).map(|row| (key.clone(), row.clone())))
                .collect()
        });
        future::ready(Ok(rows)).boxed()
    }

    fn commit<'a>(&'a self, batch: Batch<'a>) -> BoxFuture<'a, Result<Committed>> {
        future::ready(Ok(self.commit_now(batch))).boxed()
    }

    fn begin_rebuild<'a>(
        &'a self,
        projection: &'a str,
        version: u32,
    ) -> BoxFuture<'a, Result<Generation>> {
        let generation = self.write(|projections| {
            let p = projections
                .entry(projection.to_owned())
                .or_insert_with(|| Projection::new(version));
            let number = match p.rebuilding {
                Some(number) if p.generations[&number].version == version => number,
                other => {
                    if let Some(abandoned) = other {
                        p.generations.remove(&abandoned);
                    }
                    let number = p.generations.keys().next_back().copied().unwrap_or(0) + 1;
                    p.generations.insert(number, Rows::empty(version));
                    p.rebuilding = Some(number);
                    number
                }
            };
            let rows = &p.generations[&number];
            Generation::new(number, rows.checkpoint, rows.version)
        });
        future::ready(Ok(generation)).boxed()
    }

    fn swap<'a>(&'a self, projection: &'a str, generation: u64) -> BoxFuture<'a, Result<bool>> {
        let swapped = self.write(|projections| {
            let Some(p) = projections.get_mut(projection) else {
                return false;
            };
            if p.rebuilding != Some(generation) {
                return false;
            }
            p.live = generation;
            p.rebuilding = None;
            true
        });
        future::ready(Ok(swapped)).boxed()
    }

    fn drop_old<'a>(&'a self, projection: &'a str) -> BoxFuture<'a, Result<()>> {
        self.write(|projections| {
            if let Some(p) = projections.get_mut(projection) {
                let live = p.live;
                p.generations.retain(|&number, _| number >= live);
            }
        });
        future::ready(Ok(())).boxed()
    }

    fn get<'a>(
        &'a self,
        projection: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>>> {
        let row = self.read(|projections| {
            projections
                .get(projection)
                .and_then(Projection::live)
                .and_then(|rows| rows.rows.get(key).cloned())
        });
        future::ready(Ok(row)).boxed()
    }

    fn list<'a>(
        &'a self,
        projection: &'a str,
        query: &'a RowQuery,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>>> {
        let result = validate_read(query.limit).map(|()| self.list_now(projection, query));
        future::ready(result).boxed()
    }

    fn checkpoint<'a>(&'a self, projection: &'a str) -> BoxFuture<'a, Result<u64>> {
        let checkpoint = self.read(|projections| {
            projections
                .get(projection)
                .and_then(Projection::live)
                .map_or(0, |rows| rows.checkpoint)
        });
        future::ready(Ok(checkpoint)).boxed()
    }
}
