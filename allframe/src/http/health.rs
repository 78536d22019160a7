//! `GET /health`: whether the store answers, its head position and each
//! projection's state. A failed projection shows here (and in
//! `/admin/projections`) but leaves the service healthy: commands and
//! plain reads still work.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::errors::store_unavailable;
use crate::projection::{ProjectionStatus, Projections};

/// The health report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Health {
    /// `ok`.
    pub status: String,
    /// The node that answered.
    pub node: String,
    /// The position of the last committed event.
    pub head_position: u64,
    /// Every projection's state and progress, sorted by name.
    pub projections: Vec<ProjectionStatus>,
}

pub(crate) async fn health(State(projections): State<Projections>) -> Response {
    match projections.health().await {
        Ok((head_position, statuses)) => Json(Health {
            status: "ok".into(),
            node: projections.node().id().to_owned(),
            head_position,
            projections: statuses,
        })
        .into_response(),
        Err(error) => store_unavailable("health check", &error).into_response(),
    }
}
