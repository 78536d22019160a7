//! `GET /health`: whether the store answers, and its head position.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::problem::Problem;
use crate::store::EventStore;

/// The health report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `ok`.
    pub status: String,
    /// The position of the last committed event.
    pub head_position: u64,
}

pub(crate) async fn health(State(store): State<Arc<dyn EventStore>>) -> Response {
    match store.head_position().await {
        Ok(head_position) => Json(Health {
            status: "ok".into(),
            head_position,
        })
        .into_response(),
        Err(error) => {
            tracing::error!(%error, "health check: the event store is unreachable");
            Problem::new(
                503,
                "store-unavailable",
                "Service unavailable",
                "the event store does not answer",
            )
            .into_response()
        }
    }
}
