//! The HTTP surface: one small module per route family, assembled into an
//! axum `Router` by [`crate::App`].

mod admin;
pub(crate) mod commands;
pub(crate) mod console;
pub(crate) mod correlation;
#[cfg(feature = "swagger-ui")]
pub(crate) mod docs;
pub(crate) mod errors;
pub(crate) mod extract;
pub(crate) mod health;
pub mod kinds;
pub(crate) mod limits;
#[cfg(feature = "metrics")]
pub(crate) mod metrics;
pub(crate) mod openapi;
pub(crate) mod problem;
mod queries;
pub(crate) mod reads;
pub(crate) mod routes;
mod sagas;
pub(crate) mod stream;

pub use commands::{CORRELATION_ID, IDEMPOTENCY_KEY, IDEMPOTENCY_REPLAYED};
pub use correlation::CorrelationId;
pub use health::Health;
pub use limits::RequestLimits;
pub use problem::{HttpError, PROBLEM_JSON, Problem, ProblemKind};
pub use reads::{ALLFRAME_POSITION, DEFAULT_READ_WAIT};
