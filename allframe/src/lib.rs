#![doc = include_str!("../../README.md")]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod event;
pub mod store;
mod subscription;
pub mod testing;

pub use event::{DecodeError, DecodeErrorKind, Event, Metadata, NewEvent, RecordedEvent};
pub use store::{Appended, EventFilter, EventStore, ExpectedVersion, StoreError};
pub use subscription::Subscription;

#[cfg(feature = "macros")]
pub use allframe_macros::Event;

/// The names most programs need, in one import.
pub mod prelude {
    pub use crate::{
        Event, EventFilter, EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent,
    };
}

/// Support for generated code. Not public API: it may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::event::{DecodeErrorKind, Event};
    pub use serde;
    pub use serde_json;
    pub use serde_json::value::RawValue;
}
