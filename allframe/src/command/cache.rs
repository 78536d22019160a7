//! The dispatcher's cache of folded aggregate states.
//!
//! A command takes its aggregate's entry out for the length of its turn
//! and puts back the state it ends with. Only committed states go in: one
//! read from the store, or a cached one with the events of a successful
//! append applied. A cached state may be behind the store (another process
//! wrote since); that shows as a wrong expected version on the append, or
//! is caught by reading the stream's tail before a refusal is answered (see
//! the command cycle), so a stale entry costs a retry, never a wrong
//! decision.
//!
//! Bounded by entries and by bytes (the states' own estimate,
//! [`Aggregate::memory_size`](crate::Aggregate::memory_size), plus the
//! stream id and a fixed overhead per entry); the least recently used
//! entries are dropped first.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use crate::aggregate::Loaded;

/// What an entry costs besides its state and stream id: the map slots, the
/// recency index and the box.
const ENTRY_OVERHEAD: usize = 96;

struct Entry {
    version: u64,
    position: u64,
    snapshot: u64,
    bytes: usize,
    /// When it was last put, in [`Lru::tick`]s; its key in
    /// [`Lru::recency`].
    used: u64,
    state: Box<dyn Any + Send>,
}

#[derive(Default)]
struct Lru {
    entries: HashMap<String, Entry>,
    /// Tick of last use → stream id, oldest first.
    recency: BTreeMap<u64, String>,
    tick: u64,
    bytes: usize,
}

/// Folded aggregate states by stream id, least recently used dropped first.
pub(crate) struct StateCache {
    lru: Mutex<Lru>,
    max_entries: usize,
    max_bytes: usize,
}

/// How full a dispatcher's state cache is:
/// [`Dispatcher::state_cache_usage`](crate::Dispatcher::state_cache_usage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct StateCacheUsage {
    /// How many aggregate states it holds.
    pub entries: usize,
    /// Their estimated bytes, stream ids and overhead included.
    pub bytes: usize,
}

impl StateCache {
    /// A cache of at most `max_entries` states and `max_bytes` bytes; either
    /// 0 turns it off.
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            lru: Mutex::default(),
            max_entries,
            max_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        // The lock guards plain map updates that cannot leave them half
        // done, so a poisoned lock (a panic elsewhere) is still consistent.
        self.lru
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes the state of `stream` out of the cache, if it holds one of
    /// type `A`.
    pub(crate) fn take<A: Send + 'static>(&self, stream: &str) -> Option<Loaded<A>> {
        let mut lru = self.lock();
        let entry = lru.remove(stream)?;
        let state = entry.state.downcast::<A>().ok()?;
        Some(Loaded {
            state: *state,
            version: entry.version,
            position: entry.position,
            snapshot: entry.snapshot,
        })
    }

    /// Keeps a committed state of `stream` that takes `state_bytes`,
    /// dropping the least recently used entries while over a bound. States
    /// of streams without events, and states larger than the whole cache,
    /// are not kept.
    pub(crate) fn put<A: Send + 'static>(
        &self,
        stream: &str,
        loaded: Loaded<A>,
        state_bytes: usize,
    ) {
        if loaded.version == 0 || self.max_entries == 0 {
            return;
        }
        let bytes = state_bytes + stream.len() + ENTRY_OVERHEAD;
        if bytes > self.max_bytes {
            return;
        }
        let mut lru = self.lock();
        lru.remove(stream);
        while lru.entries.len() >= self.max_entries || lru.bytes + bytes > self.max_bytes {
            let Some((_, oldest)) = lru.recency.pop_first() else {
                break;
            };
            if let Some(entry) = lru.entries.remove(&oldest) {
                lru.bytes -= entry.bytes;
            }
        }
        lru.tick += 1;
        let used = lru.tick;
        lru.recency.insert(used, stream.to_owned());
        lru.bytes += bytes;
        lru.entries.insert(
            stream.to_owned(),
            Entry {
                version: loaded.version,
                position: loaded.position,
                snapshot: loaded.snapshot,
                bytes,
                used,
                state: Box::new(loaded.state),
            },
        );
    }

    /// How many states it holds and their estimated bytes.
    pub(crate) fn usage(&self) -> StateCacheUsage {
        let lru = self.lock();
        StateCacheUsage {
            entries: lru.entries.len(),
            bytes: lru.bytes,
        }
    }
}

impl Lru {
    fn remove(&mut self, stream: &str) -> Option<Entry> {
        let entry = self.entries.remove(stream)?;
        self.recency.remove(&entry.used);
        self.bytes -= entry.bytes;
        Some(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq)]
    struct Counter {
        total: u64,
        note: String,
    }

    impl Counter {
        fn bytes(&self) -> usize {
            std::mem::size_of::<Self>() + self.note.capacity()
        }
    }

    fn counter(total: u64, version: u64) -> Loaded<Counter> {
        Loaded {
            state: Counter {
                total,
                note: String::new(),
            },
            version,
            ..Loaded::default()
        }
    }

    fn put(cache: &StateCache, stream: &str, loaded: Loaded<Counter>) {
        let bytes = loaded.state.bytes();
        cache.put(stream, loaded, bytes);
    }

    #[test]
    fn a_taken_state_is_out_until_put_back() {
        let cache = StateCache::new(10, 1 << 20);
        put(&cache, "counter-1", counter(5, 2));
        let taken = cache.take::<Counter>("counter-1").unwrap();
        assert_eq!((taken.state.total, taken.version), (5, 2));
        assert!(cache.take::<Counter>("counter-1").is_none());
        assert_eq!(
            cache.usage(),
            StateCacheUsage {
                entries: 0,
                bytes: 0
            }
        );
    }

    #[test]
    fn empty_streams_and_wrong_types_are_not_served() {
        let cache = StateCache::new(10, 1 << 20);
        put(&cache, "counter-1", counter(0, 0));
        assert!(cache.take::<Counter>("counter-1").is_none());
        put(&cache, "counter-2", counter(1, 1));
        assert!(cache.take::<String>("counter-2").is_none());
    }

    #[test]
    fn the_least_recently_used_entry_goes_first_when_full() {
        let cache = StateCache::new(2, 1 << 20);
        put(&cache, "counter-1", counter(1, 1));
        put(&cache, "counter-2", counter(2, 1));
        // Used again: now the most recent.
        let one = cache.take::<Counter>("counter-1").unwrap();
        put(&cache, "counter-1", one);
        put(&cache, "counter-3", counter(3, 1));
        assert_eq!(cache.usage().entries, 2);
        assert!(cache.take::<Counter>("counter-2").is_none());
        assert_eq!(cache.take::<Counter>("counter-1").unwrap().state.total, 1);
        assert_eq!(cache.take::<Counter>("counter-3").unwrap().state.total, 3);
    }

    #[test]
    fn the_byte_bound_counts_each_states_own_size() {
        let entry = |note: usize| std::mem::size_of::<Counter>() + note + 9 + ENTRY_OVERHEAD;
        let cache = StateCache::new(100, entry(1_000) + entry(0));
        let big = Loaded {
            state: Counter {
                total: 1,
                note: "x".repeat(1_000),
            },
            version: 1,
            ..Loaded::default()
        };
        put(&cache, "counter-1", big);
        put(&cache, "counter-2", counter(2, 1));
        assert_eq!(cache.usage().bytes, entry(1_000) + entry(0));
        put(&cache, "counter-3", counter(3, 1));
        // The oldest (and biggest) made room.
        assert!(cache.take::<Counter>("counter-1").is_none());
        assert_eq!(cache.usage().entries, 2);
        // A state bigger than the whole cache is not kept at all.
        let huge = Loaded {
            state: Counter {
                total: 1,
                note: "x".repeat(1 << 20),
            },
            version: 1,
            ..Loaded::default()
        };
        put(&cache, "counter-4", huge);
        assert!(cache.take::<Counter>("counter-4").is_none());
        assert_eq!(cache.usage().entries, 2);
    }

    #[test]
    fn a_cache_with_no_room_keeps_nothing() {
        for cache in [StateCache::new(0, 1 << 20), StateCache::new(10, 0)] {
            put(&cache, "counter-1", counter(1, 1));
            assert!(cache.take::<Counter>("counter-1").is_none());
        }
    }
}
