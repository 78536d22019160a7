//! Aggregates: state rebuilt from one stream of events, `{category}-{id}`.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::event::{DecodeError, Event};
use crate::store::{EventStore, Snapshot, SnapshotStore, StoreError};

/// How many events one read of an aggregate's stream fetches.
const PAGE: usize = 1_000;

/// The write model of one entity: a default state that every event of its
/// stream is applied to, in order.
///
/// ```
/// use allframe::{Aggregate, Event};
///
/// #[derive(Event)]
/// enum CounterEvent { Incremented { by: u64 } }
///
/// #[derive(Default)]
/// struct Counter { total: u64 }
///
/// impl Aggregate for Counter {
///     type Event = CounterEvent;
///     const CATEGORY: &'static str = "counter";
///     fn apply(&mut self, event: &CounterEvent) {
///         match event {
///             CounterEvent::Incremented { by } => self.total += by,
///         }
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an aggregate",
    note = "implement `allframe::Aggregate` for `{Self}`: a `Default` state with `apply(&mut self, &Event)`"
)]
pub trait Aggregate: Default + Send + Sync + 'static {
    /// The events of this aggregate's stream.
    type Event: Event;

    /// The stream category: instances live in streams `{CATEGORY}-{id}`.
    /// ASCII letters, digits and `_` only, so the first `-` of a stream id
    /// always ends the category.
    const CATEGORY: &'static str;

    /// Applies one event to the state. Must not fail: events are facts.
    fn apply(&mut self, event: &Self::Event);

    /// About how many bytes this state occupies, for the byte bound of the
    /// dispatcher's state cache
    /// ([`DispatchConfig::state_cache_bytes`](crate::DispatchConfig::state_cache_bytes)).
    /// The default counts the value itself; a state holding strings,
    /// collections or boxes should add what they own on the heap.
    fn memory_size(&self) -> usize {
        std::mem::size_of::<Self>()
    }

    /// When to snapshot this aggregate's state: [`Snapshots::every`] N
    /// events. `None` (the default): never, every load replays the whole
    /// stream (after the dispatcher's state cache misses).
    fn snapshots() -> Option<Snapshots<Self>> {
        None
    }
}

/// An aggregate's snapshot policy, returned by [`Aggregate::snapshots`]:
/// how often its state is kept beside its stream and which snapshots
/// today's code may use.
///
/// A command that commits the state at a stream version `N` or more past
/// the last snapshot writes a new one, after the commit and off the
/// command's path (a failure is logged and counted, never the command's).
/// A load reads the snapshot and replays only the events after it.
///
/// A snapshot is used only if it was taken by the same [state
/// version](Snapshots::state_version) and has the same
/// [fingerprint](Snapshots::fingerprint): a hash of the category, the
/// shape of the default state's JSON (its field names and kinds of value)
/// and the schema version of every event type. So adding, removing or
/// renaming a field of the state, or raising an event's version, retires
/// old snapshots by itself; raise the state version when `apply` changes
/// what it computes, or a field changes type inside an `Option` or a
/// collection. A snapshot that is not used, or does not decode, is
/// ignored: the stream is replayed and the snapshot replaced.
///
/// ```
/// use allframe::{Aggregate, Event, Snapshots};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Event)]
/// enum CounterEvent { Incremented { by: u64 } }
///
/// #[derive(Default, Serialize, Deserialize)]
/// struct Counter { total: u64 }
///
/// impl Aggregate for Counter {
///     type Event = CounterEvent;
///     const CATEGORY: &'static str = "counter";
///     fn apply(&mut self, event: &CounterEvent) {
///         let CounterEvent::Incremented { by } = event;
///         self.total += by;
///     }
///     fn snapshots() -> Option<Snapshots<Self>> {
///         Some(Snapshots::every(100))
///     }
/// }
/// ```
pub struct Snapshots<A> {
    every: u64,
    state_version: u32,
    encode: fn(&A) -> serde_json::Result<String>,
    decode: fn(&str) -> serde_json::Result<A>,
}

impl<A> Clone for Snapshots<A> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A> Copy for Snapshots<A> {}

impl<A> std::fmt::Debug for Snapshots<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshots")
            .field("every", &self.every)
            .field("state_version", &self.state_version)
            .finish_non_exhaustive()
    }
}

impl<A: Aggregate + Serialize + DeserializeOwned> Snapshots<A> {
    /// A snapshot every `events` events (0 counts as 1), as JSON, at state
    /// version 1.
    pub fn every(events: u64) -> Self {
        Self {
            every: events.max(1),
            state_version: 1,
            encode: |state| serde_json::to_string(state),
            decode: |text| serde_json::from_str(text),
        }
    }
}

impl<A: Aggregate> Snapshots<A> {
    /// Declares the state version (1 unless set): raise it when `apply`
    /// changes what the state holds in a way the
    /// [fingerprint](Snapshots::fingerprint) cannot see, and every older
    /// snapshot is ignored.
    pub fn state_version(mut self, version: u32) -> Self {
        self.state_version = version;
        self
    }

    /// How many events apart snapshots are taken.
    pub fn interval(&self) -> u64 {
        self.every
    }

    /// The declared state version.
    pub fn declared_state_version(&self) -> u32 {
        self.state_version
    }

    /// The hex SHA-256 of what a snapshot must have been folded under to
    /// be used: the aggregate's category, the shape of its default state's
    /// JSON (object keys, sorted, and the kind of each value) and each of
    /// its event types with today's schema version.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        hash.update(A::CATEGORY.as_bytes());
        hash.update([0]);
        match (self.encode)(&A::default()).and_then(|text| serde_json::from_str(&text)) {
            Ok(state) => shape(&state, &mut hash),
            // A default state that does not encode cannot be snapshotted
            // either: every write fails and is counted.
            Err(_) => hash.update(b"?"),
        }
        for event_type in A::Event::event_types() {
            hash.update([0]);
            hash.update(event_type.as_bytes());
            let version = A::Event::version_of(event_type).unwrap_or(0);
            hash.update(version.to_be_bytes());
        }
        crate::hex(&hash.finalize())
    }

    /// Whether `loaded` is far enough past its last snapshot to take one.
    pub(crate) fn due(&self, loaded: &Loaded<A>) -> bool {
        loaded.version >= loaded.snapshot.saturating_add(self.every)
    }

    /// A snapshot of `loaded` for `stream`.
    pub(crate) fn take(&self, stream: &str, loaded: &Loaded<A>) -> serde_json::Result<Snapshot> {
        Ok(Snapshot::new(
            stream,
            loaded.version,
            loaded.position,
            self.state_version,
            self.fingerprint(),
            (self.encode)(&loaded.state)?,
        ))
    }

    /// The state `snapshot` holds, if today's code may use it.
    fn restore(&self, snapshot: &Snapshot) -> Result<A, SnapshotRead> {
        if snapshot.version == 0
            || snapshot.state_version != self.state_version
            || snapshot.fingerprint != self.fingerprint()
        {
            tracing::debug!(stream_id = %snapshot.stream_id, "a snapshot of other code is ignored; the stream is replayed and the snapshot replaced");
            return Err(SnapshotRead::Stale);
        }
        (self.decode)(&snapshot.state).map_err(|error| {
            tracing::warn!(stream_id = %snapshot.stream_id, %error, "a snapshot does not decode; the stream is replayed and the snapshot replaced");
            SnapshotRead::Undecodable
        })
    }
}

/// Feeds the shape of `value` to `hash`: object keys in sorted order with
/// the shape of their values, and the kind of every other value.
fn shape(value: &serde_json::Value, hash: &mut sha2::Sha256) {
    use serde_json::Value;
    use sha2::Digest;
    match value {
        Value::Null => hash.update(b"z"),
        Value::Bool(_) => hash.update(b"b"),
        Value::Number(_) => hash.update(b"n"),
        Value::String(_) => hash.update(b"s"),
        Value::Array(_) => hash.update(b"a"),
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            hash.update(b"{");
            for key in keys {
                hash.update(key.as_bytes());
                hash.update(b":");
                shape(&map[key], hash);
                hash.update(b",");
            }
            hash.update(b"}");
        }
    }
}

/// How a load used the aggregate's snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SnapshotRead {
    /// The aggregate has no policy, or the store keeps no snapshots.
    Off,
    /// The stream has none.
    Missing,
    /// The load started from it.
    Used,
    /// Taken by other code (state version or fingerprint differ).
    Stale,
    /// It did not decode.
    Undecodable,
    /// The store could not read it.
    Unreadable,
}

/// The stream id of the aggregate instance `id`.
pub fn stream_id<A: Aggregate>(id: &str) -> String {
    format!("{}-{id}", A::CATEGORY)
}

/// An aggregate state and the stream version it reflects (0: no events).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Loaded<A> {
    /// The state after applying every event of the stream.
    pub state: A,
    /// The version of the last applied event; 0 when the stream is empty.
    pub version: u64,
    /// The global position of the last applied event, when known (0
    /// otherwise).
    pub(crate) position: u64,
    /// The stream version of the latest snapshot known to be kept (or on
    /// its way); 0 when none is.
    pub(crate) snapshot: u64,
}

impl<A> Loaded<A> {
    /// Whether the stream had any event.
    pub fn exists(&self) -> bool {
        self.version > 0
    }
}

/// Why an aggregate could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored event did not decode into the aggregate's event type.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// Loads an aggregate: from its snapshot and the events after it when it
/// has a snapshot policy ([`Aggregate::snapshots`]) and the store keeps a
/// usable snapshot, else by replaying its whole stream.
pub async fn load<A: Aggregate>(store: &dyn EventStore, id: &str) -> Result<Loaded<A>, LoadError> {
    Ok(load_stream(store, &stream_id::<A>(id)).await?.0)
}

/// [`load`] of the aggregate's stream `stream`, telling how the snapshot
/// was used.
pub(crate) async fn load_stream<A: Aggregate>(
    store: &dyn EventStore,
    stream: &str,
) -> Result<(Loaded<A>, SnapshotRead), LoadError> {
    let mut loaded = Loaded::<A>::default();
    let read = match (A::snapshots(), store.snapshots()) {
        (Some(policy), Some(snapshots)) => restore(&policy, snapshots, stream, &mut loaded).await,
        _ => SnapshotRead::Off,
    };
    catch_up(store, stream, &mut loaded).await?;
    Ok((loaded, read))
}

/// Starts `loaded` from the snapshot of `stream` if there is a usable one.
async fn restore<A: Aggregate>(
    policy: &Snapshots<A>,
    snapshots: &dyn SnapshotStore,
    stream: &str,
    loaded: &mut Loaded<A>,
) -> SnapshotRead {
    let snapshot = match snapshots.load_snapshot(stream).await {
        Ok(Some(snapshot)) => snapshot,
        Ok(None) => return SnapshotRead::Missing,
        Err(error) => {
            tracing::warn!(stream_id = %stream, %error, "could not read a snapshot; the stream is replayed");
            return SnapshotRead::Unreadable;
        }
    };
    match policy.restore(&snapshot) {
        Ok(state) => {
            *loaded = Loaded {
                state,
                version: snapshot.version,
                position: snapshot.position,
                snapshot: snapshot.version,
            };
            SnapshotRead::Used
        }
        Err(read) => read,
    }
}

/// Applies the events of `stream` after `loaded.version` to `loaded`.
/// Returns whether there were any. The state and its version move together
/// event by event, so after an error `loaded` still describes a prefix of
/// the stream.
pub(crate) async fn catch_up<A: Aggregate>(
    store: &dyn EventStore,
    stream: &str,
    loaded: &mut Loaded<A>,
) -> Result<bool, LoadError> {
    let from = loaded.version;
    loop {
        let page = store.read_stream(stream, loaded.version + 1, PAGE).await?;
        apply_recorded(loaded, &page)?;
        if page.len() < PAGE {
            return Ok(loaded.version > from);
        }
    }
}

/// Applies recorded events of the aggregate's stream, in order.
pub(crate) fn apply_recorded<A: Aggregate>(
    loaded: &mut Loaded<A>,
    events: &[crate::RecordedEvent],
) -> Result<(), DecodeError> {
    for recorded in events {
        loaded.state.apply(&recorded.decode::<A::Event>()?);
        loaded.version = recorded.version;
        loaded.position = recorded.position;
    }
    Ok(())
}

/// Applies already-decoded events to a fresh state (the given/when/then
/// harness and tests use this).
pub fn replay<'e, A: Aggregate>(events: impl IntoIterator<Item = &'e A::Event>) -> Loaded<A> {
    let mut loaded = Loaded::<A>::default();
    for event in events {
        loaded.state.apply(event);
        loaded.version += 1;
    }
    loaded
}
