#![doc = include_str!("../../README.md")]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod aggregate;
mod app;
pub mod command;
pub mod di;
mod event;
pub mod http;
pub mod projection;
pub mod query;
pub mod router;
pub mod schema;
mod serve;
pub mod store;
mod subscription;
pub mod testing;

/// What a panic said: its `&str` or `String` payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-string payload".to_owned())
}

pub use aggregate::{Aggregate, LoadError, Loaded, load, replay, stream_id};
pub use app::{App, AppBuilder, AppError, DEFAULT_BODY_LIMIT};
pub use command::{
    Command, CommandError, CommandHandler, CommandOutcome, DispatchConfig, DispatchOptions,
    Dispatcher, DomainError, FieldError, IfMatch, Rejection,
};
pub use di::{Container, Dep};
pub use event::{DecodeError, DecodeErrorKind, Event, Metadata, NewEvent, RecordedEvent};
pub use http::EventStreamConfig;
pub use projection::{Change, Projection, ProjectionError, Projections};
pub use query::{Queries, Query, QueryError, QueryHandler};
pub use schema::WireSchema;
pub use serve::Serve;
pub use store::{Appended, EventFilter, EventStore, ExpectedVersion, StoreError};
pub use subscription::Subscription;

#[cfg(feature = "macros")]
pub use allframe_macros::{
    DomainError, Event, command, command_handler, projection, query, query_handler,
};

/// The names most programs need, in one import.
pub mod prelude {
    pub use crate::{
        Aggregate, Command, CommandError, Container, Dep, DispatchOptions, Dispatcher, DomainError,
        Event, EventFilter, EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent,
    };
    pub use crate::{Change, Projection, Projections, Query};
    #[cfg(feature = "macros")]
    pub use allframe_macros::{command, command_handler, projection, query, query_handler};
}

/// Support for generated code. Not public API: it may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::command::{CommandHandler, HandlerRegistration};
    pub use crate::di::{Container, Dependency};
    pub use crate::event::{DecodeErrorKind, Event};
    pub use crate::projection::{ProjectionRegistration, Row, index_value};
    pub use crate::query::{QueryHandler, QueryRegistration};
    pub use crate::schema::{Constraint, LengthMode, WireSchema};
    pub use futures_util::future::BoxFuture;
    pub use garde;
    pub use inventory;
    pub use serde;
    pub use serde_json;
    pub use serde_json::value::RawValue;
    pub use utoipa;
}
