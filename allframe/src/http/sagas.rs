//! `GET /sagas/{name}/{id}`: one saga instance's status;
//! `GET /admin/sagas`: every saga's runner and a tally of its instances.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::errors::store_unavailable;
use super::extract::PathParams;
use super::kinds;
use super::problem::Problem;
use crate::auth::Principal;
use crate::saga::{SagaError, Sagas};

/// An instance is for whoever started it, and admins
/// ([`Sagas::view_for`]).
pub(super) async fn get(
    State(sagas): State<Arc<Sagas>>,
    principal: Option<Principal>,
    PathParams((name, id)): PathParams<(String, String)>,
) -> Response {
    match sagas.view_for(&name, &id, principal.as_ref()).await {
        Ok(Some(view)) => axum::Json(view).into_response(),
        Ok(None) => Problem::of(
            kinds::SAGA_NOT_FOUND,
            format!("saga `{name}` has no instance `{id}`"),
        )
        .into_response(),
        Err(SagaError::UnknownSaga(name)) => {
            Problem::of(kinds::UNKNOWN_SAGA, format!("there is no saga `{name}`")).into_response()
        }
        Err(SagaError::Forbidden(reason)) => Problem::of(kinds::FORBIDDEN, reason).into_response(),
        Err(error) => store_unavailable("reading a saga", &error).into_response(),
    }
}

pub(super) async fn list(State(sagas): State<Arc<Sagas>>) -> Response {
    match sagas.status().await {
        Ok(status) => axum::Json(status).into_response(),
        Err(error) => store_unavailable("listing the sagas", &error).into_response(),
    }
}
