//! `GET /admin/projections` lists every projection's progress;
//! `POST /admin/projections/{name}/rebuild` starts a rebuild and
//! `POST /admin/projections/{name}/restart` restarts a failed projection
//! from its checkpoint. Both answer 202 with the projection's status:
//! the work goes on in the background.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::extract::PathParams;
use super::problem::Problem;
use super::reads::ReadRoutes;

pub(super) async fn list(State(reads): State<ReadRoutes>) -> Response {
    match reads.projections.status().await {
        Ok(status) => axum::Json(status).into_response(),
        Err(error) => Problem::from(error).into_response(),
    }
}

pub(super) async fn rebuild(
    State(reads): State<ReadRoutes>,
    PathParams(name): PathParams<String>,
) -> Response {
    let started = async {
        reads.projections.rebuild(&name).await?;
        reads.projections.status_of(&name).await
    };
    accepted(started.await)
}

pub(super) async fn restart(
    State(reads): State<ReadRoutes>,
    PathParams(name): PathParams<String>,
) -> Response {
    let started = async {
        reads.projections.restart(&name)?;
        reads.projections.status_of(&name).await
    };
    accepted(started.await)
}

fn accepted(
    status: Result<crate::projection::ProjectionStatus, crate::ProjectionError>,
) -> Response {
    match status {
        Ok(status) => (StatusCode::ACCEPTED, axum::Json(status)).into_response(),
        Err(error) => Problem::from(error).into_response(),
    }
}
