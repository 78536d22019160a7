//! What a projection reads: the events of one or more aggregates, chosen by
//! stream category and decoded through [`RecordedEvent::decode`], the one
//! place stored events become typed.

use crate::aggregate::Aggregate;
use crate::event::{DecodeError, RecordedEvent};
use crate::store::EventFilter;

/// The events a projection reads.
///
/// Implemented for every [`Aggregate`] (its events) and for tuples of two
/// or three aggregates (their events as [`OneOf2`] / [`OneOf3`]).
/// Implement it for your own enum to read any other mix.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event source for a projection",
    note = "use an aggregate (`type Source = Account;`) or a tuple of aggregates (`type Source = (Account, Transfer);`)"
)]
pub trait Source: Send + Sync + 'static {
    /// The decoded event `apply` receives.
    type Event: Send + 'static;

    /// Which events of the log to read. It may select more than
    /// [`decode`](Self::decode) accepts, never less.
    fn filter() -> EventFilter;

    /// Decodes a recorded event, or `Ok(None)` when this source does not
    /// read it (another category).
    fn decode(recorded: &RecordedEvent) -> Result<Option<Self::Event>, DecodeError>;
}

impl<A: Aggregate> Source for A {
    type Event = A::Event;

    fn filter() -> EventFilter {
        EventFilter::all().category(A::CATEGORY)
    }

    fn decode(recorded: &RecordedEvent) -> Result<Option<A::Event>, DecodeError> {
        if recorded.category() != A::CATEGORY {
            return Ok(None);
        }
        recorded.decode::<A::Event>().map(Some)
    }
}

/// An event of one of two aggregates, for `type Source = (A, B)`.
#[derive(Debug, Clone, PartialEq)]
pub enum OneOf2<A, B> {
    /// An event of the first aggregate.
    A(A),
    /// An event of the second aggregate.
    B(B),
}

/// An event of one of three aggregates, for `type Source = (A, B, C)`.
#[derive(Debug, Clone, PartialEq)]
pub enum OneOf3<A, B, C> {
    /// An event of the first aggregate.
    A(A),
    /// An event of the second aggregate.
    B(B),
    /// An event of the third aggregate.
    C(C),
}

/// Decodes `recorded` as the events of whichever aggregate's category it
/// is in, wrapped in the matching variant.
macro_rules! decode_one_of {
    ($recorded:expr, $($aggregate:ident => $variant:path),+) => {{
        let category = $recorded.category();
        $(
            if category == $aggregate::CATEGORY {
                return $recorded.decode::<$aggregate::Event>().map(|event| Some($variant(event)));
            }
        )+
        Ok(None)
    }};
}

impl<A: Aggregate, B: Aggregate> Source for (A, B) {
    type Event = OneOf2<A::Event, B::Event>;

    fn filter() -> EventFilter {
        // A filter holds one category: read everything, decode skips the rest.
        EventFilter::all()
    }

    fn decode(recorded: &RecordedEvent) -> Result<Option<Self::Event>, DecodeError> {
        decode_one_of!(recorded, A => OneOf2::A, B => OneOf2::B)
    }
}

impl<A: Aggregate, B: Aggregate, C: Aggregate> Source for (A, B, C) {
    type Event = OneOf3<A::Event, B::Event, C::Event>;

    fn filter() -> EventFilter {
        EventFilter::all()
    }

    fn decode(recorded: &RecordedEvent) -> Result<Option<Self::Event>, DecodeError> {
        decode_one_of!(recorded, A => OneOf3::A, B => OneOf3::B, C => OneOf3::C)
    }
}
