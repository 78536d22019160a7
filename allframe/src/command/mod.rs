//! Commands: the write side below HTTP.
//!
//! A [`Command`] names its [`Aggregate`] and the field holding the aggregate
//! id; a [`CommandHandler`] decides which events a command produces from the
//! aggregate's current state. Both are normally written with
//! `#[command(...)]` and `#[command_handler]`, which register the handler
//! automatically. The [`Dispatcher`] validates, loads, calls, appends with
//! the loaded version as the expected version, and retries the whole cycle
//! on a concurrency conflict.

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::aggregate::Aggregate;
use crate::di::{Container, Dependency};
use crate::schema::WireSchema;

mod authorize;
mod cache;
mod cycle;
mod dispatch;
pub(crate) mod error;
mod idempotency;
mod options;
pub(crate) mod registry;
mod rounds;
mod states;

pub use authorize::AuthorizeHook;
pub use cache::StateCacheUsage;
pub use dispatch::{BuildError, Dispatcher, DispatcherBuilder};
pub use error::{CommandError, DomainError, FieldError, Rejection};
pub use options::{CommandOutcome, DispatchConfig, DispatchOptions, IfMatch};
pub use registry::{HandlerRegistration, RegistryError};
pub use states::SnapshotStats;

/// Validation errors of a command, with pointers in its wire field names.
pub(crate) fn field_errors_for<C: Command>(report: &garde::Report) -> Vec<FieldError> {
    error::field_errors(report, C::wire_field)
}

/// The aggregate a command targets.
pub type AggregateOf<C> = <C as Command>::Aggregate;
/// The events a command's handler returns.
pub type EventOf<C> = <<C as Command>::Aggregate as Aggregate>::Event;
/// What a handler decides for command `C`: events, or why not.
pub type Decision<C, E> = Result<Vec<EventOf<C>>, CommandError<E>>;

/// A request to change one aggregate. Implement it with `#[command(...)]`
/// on a struct that also derives `Clone`, `Serialize`, `Deserialize` and
/// `garde::Validate`.
///
/// `Clone` is what a retry after a concurrency conflict runs on: the
/// handler takes the command by value, so each attempt gets a clone.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a command",
    label = "not a command",
    note = "add `#[allframe::command(aggregate = ..., id = ...)]` to the definition of `{Self}`"
)]
pub trait Command:
    Clone + Serialize + DeserializeOwned + garde::Validate<Context = ()> + Send + Sync + 'static
{
    /// The name it is dispatched and routed under (kebab-case by default).
    const NAME: &'static str;
    /// Whether it creates its aggregate: the stream must not exist yet.
    const CREATE: bool;
    /// The aggregate it changes.
    type Aggregate: Aggregate;

    /// The target aggregate's id, or `None` for a create-command whose id
    /// the server generates (a UUID v7).
    fn aggregate_id(&self) -> Option<String>;

    /// The wire (serde) name of a top-level field, given its Rust name, so
    /// validation errors point at what the client sent.
    fn wire_field(rust_field: &str) -> &str {
        rust_field
    }

    /// The JSON Schema of its body, garde's rules included, for the
    /// OpenAPI document. Its `description` (the doc comment) becomes the
    /// operation's summary (first paragraph) and description.
    fn schema() -> WireSchema;
}

/// Decides the events for one command type. Implement it with
/// `#[command_handler]` on an `async fn(command, &state, Dep<T>...) ->
/// Result<Vec<Event>, E>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a command handler",
    note = "write handlers as `#[allframe::command_handler] async fn ...`"
)]
pub trait CommandHandler: Default + Send + Sync + 'static {
    /// The command it handles.
    type Command: Command;
    /// Its domain error.
    type Error: DomainError;
    /// Every `Dep<T>` it asks for, checked at start-up.
    const DEPENDENCIES: &'static [Dependency];

    /// Decides the events for `command` given the aggregate's current state.
    fn handle<'a>(
        &'a self,
        command: Self::Command,
        state: &'a AggregateOf<Self::Command>,
        dependencies: &'a Container,
    ) -> BoxFuture<'a, Decision<Self::Command, Self::Error>>;
}
