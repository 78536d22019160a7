//! Snapshots in memory, for [`MemoryStore`](crate::store::MemoryStore).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::future::{self, BoxFuture, FutureExt};

use super::{Snapshot, SnapshotStore};
use crate::store::{Result, validate_stream_id};

/// The snapshot of each stream, behind one lock held only for a map
/// lookup or insert.
#[derive(Clone, Default)]
pub(crate) struct MemorySnapshots {
    kept: Arc<Mutex<HashMap<String, Snapshot>>>,
}

impl MemorySnapshots {
    fn kept(&self) -> std::sync::MutexGuard<'_, HashMap<String, Snapshot>> {
        // Plain map operations cannot be left half done: a poisoned lock
        // still guards a consistent map.
        self.kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl SnapshotStore for MemorySnapshots {
    fn load_snapshot<'a>(&'a self, stream_id: &'a str) -> BoxFuture<'a, Result<Option<Snapshot>>> {
        let loaded = validate_stream_id(stream_id).map(|()| self.kept().get(stream_id).cloned());
        future::ready(loaded).boxed()
    }

    fn save_snapshot(&self, snapshot: Snapshot) -> BoxFuture<'_, Result<bool>> {
        let saved = validate_stream_id(&snapshot.stream_id).map(|()| {
            let mut kept = self.kept();
            if kept
                .get(&snapshot.stream_id)
                .is_some_and(|old| old.outranks(&snapshot))
            {
                return false;
            }
            kept.insert(snapshot.stream_id.clone(), snapshot);
            true
        });
        future::ready(saved).boxed()
    }
}
