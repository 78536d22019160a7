//! The HTTP surface: one small module per route family, assembled into an
//! axum `Router` by [`crate::App`].

pub(crate) mod commands;
pub(crate) mod correlation;
#[cfg(feature = "swagger-ui")]
pub(crate) mod docs;
mod extract;
pub(crate) mod health;
pub(crate) mod openapi;
pub mod problem;

pub use commands::{CORRELATION_ID, IDEMPOTENCY_KEY, IDEMPOTENCY_REPLAYED};
pub use correlation::CorrelationId;
pub use health::Health;
pub use problem::{PROBLEM_JSON, Problem};
