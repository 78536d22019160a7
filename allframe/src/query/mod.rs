//! Queries: named reads over the projections, asked over HTTP as
//! `GET /queries/{name}?field=value...`.
//!
//! A [`Query`] is a struct deserialized from the query string and checked
//! with garde; a [`QueryHandler`] answers it from the projections and any
//! `Dep<T>`. Both are normally written with `#[query]` and
//! `#[query_handler]`, which register the handler, so [`Queries`] (built by
//! the app) runs it by name.

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::command::DomainError;
use crate::di::{Container, Dependency};
use crate::projection::Projections;
use crate::schema::WireSchema;

mod error;
mod queries;
pub(crate) mod registry;

pub use error::QueryError;
pub use queries::Queries;
pub use registry::{QueryRegistration, QueryRegistryError};

/// The parameters of a read, taken from the query string. Implement it
/// with `#[query]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a query",
    label = "not a query",
    note = "add `#[allframe::query]` to the definition of `{Self}`"
)]
pub trait Query: DeserializeOwned + garde::Validate<Context = ()> + Send + Sync + 'static {
    /// The name it is routed under, `GET /queries/{NAME}` (kebab-case).
    const NAME: &'static str;

    /// The wire (serde) name of a field, given its Rust name, so
    /// validation errors point at the parameter the client sent.
    fn wire_field(rust_field: &str) -> &str {
        rust_field
    }

    /// The JSON Schema of its parameters (an object, one property per
    /// query-string parameter), garde's rules included.
    fn schema() -> WireSchema;
}

/// Answers one query type. Implement it with `#[query_handler]` on an
/// `async fn(query, &Projections, Dep<T>...) -> Result<Output, E>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a query handler",
    note = "write query handlers as `#[allframe::query_handler] async fn ...`"
)]
pub trait QueryHandler: Default + Send + Sync + 'static {
    /// The query it answers.
    type Query: Query;
    /// What it answers with, as JSON and as a schema.
    type Output: Serialize + utoipa::ToSchema + Send + 'static;
    /// Why it may refuse.
    type Error: DomainError;
    /// Every `Dep<T>` it asks for, checked at start-up.
    const DEPENDENCIES: &'static [Dependency];

    /// Answers `query` from `projections`.
    fn handle<'a>(
        &'a self,
        query: Self::Query,
        projections: &'a Projections,
        dependencies: &'a Container,
    ) -> BoxFuture<'a, Result<Self::Output, QueryError<Self::Error>>>;
}
