//! Aggregates: state rebuilt from one stream of events, `{category}-{id}`.

use crate::event::{DecodeError, Event};
use crate::store::{EventStore, StoreError};

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

/// Loads an aggregate by replaying its whole stream.
pub async fn load<A: Aggregate>(store: &dyn EventStore, id: &str) -> Result<Loaded<A>, LoadError> {
    let mut loaded = Loaded::<A>::default();
    catch_up(store, &stream_id::<A>(id), &mut loaded).await?;
    Ok(loaded)
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
