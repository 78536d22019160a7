#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod aggregate;
mod app;
pub mod auth;
mod command;
mod di;
mod event;
pub mod http;
pub mod metrics;
pub mod node;
mod projection;
mod query;
pub mod router;
pub mod saga;
mod schema;
mod serve;
pub mod store;
mod subscription;
#[cfg(feature = "otlp")]
pub mod telemetry;
pub mod testing;

/// What a panic said: its `&str` or `String` payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-string payload".to_owned())
}

/// `bytes` in lowercase hexadecimal.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

pub use aggregate::{Aggregate, LoadError, Loaded, Snapshots, load, replay, stream_id};
pub use app::{
    App, AppBuilder, AppError, DEFAULT_BODY_LIMIT, DEFAULT_COMMAND_TIMEOUT, Undecodable,
};
pub use command::{
    AggregateOf, AuthorizeHook, BuildError, Command, CommandError, CommandHandler, CommandOutcome,
    Decision, DispatchConfig, DispatchOptions, Dispatcher, DispatcherBuilder, DomainError, EventOf,
    FieldError, HandlerRegistration, IfMatch, RegistryError, Rejection, SnapshotStats,
    StateCacheUsage,
};
pub use di::{Container, ContainerBuilder, Dep, Dependency, DiError};
pub use event::{
    DecodeError, DecodeErrorKind, Event, Metadata, NewEvent, RecordedEvent, UpcastError,
};
pub use http::RequestLimits;
pub use http::stream::EventStreamConfig;
pub use projection::{
    ApplyError, Change, DEFAULT_BATCH_SIZE, DEFAULT_LIMIT, ListQuery, MAX_LIMIT, OneOf2, OneOf3,
    Page, Projection, ProjectionError, ProjectionState, ProjectionStatus, Projections,
    ProjectionsBuilder, Row, Source, WorkProgress,
};
pub use query::{Queries, Query, QueryError, QueryHandler, QueryRegistryError};
pub use saga::{Saga, Sagas};
pub use schema::WireSchema;
pub use serve::Serve;
pub use store::log::{Appended, EventFilter, EventStore, ExpectedVersion, StoreError, StoredType};
pub use subscription::Subscription;

#[cfg(feature = "macros")]
pub use allframe_macros::{
    DomainError, Event, command, command_handler, projection, query, query_handler, saga,
};

/// The traits most programs implement or call, and the macros, in one
/// import (`use allframe::prelude::*`); types are named from the root.
pub mod prelude {
    pub use crate::http::HttpError;
    pub use crate::{
        Aggregate, Command, CommandHandler, DomainError, Event, EventStore, Projection, Query,
        QueryHandler,
    };
    #[cfg(feature = "macros")]
    pub use allframe_macros::{command, command_handler, projection, query, query_handler, saga};
}

/// Support for generated code. Not public API: it may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::command::{CommandHandler, HandlerRegistration};
    pub use crate::di::{Container, Dependency};
    pub use crate::event::{DecodeErrorKind, Event, UpcastError, upcast};
    pub use crate::projection::{ProjectionRegistration, Row, index_value};
    pub use crate::query::{QueryHandler, QueryRegistration};
    pub use crate::saga::{SagaRegistration, assert_saga_category};
    pub use crate::schema::{Constraint, LengthMode, WireSchema};
    pub use futures_util::future::BoxFuture;
    pub use garde;
    pub use inventory;
    pub use serde;
    pub use serde_json;
    pub use serde_json::value::RawValue;
    pub use utoipa;
}
