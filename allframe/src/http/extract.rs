//! `Dep<T>` as an axum extractor: plain axum handlers get their
//! dependencies from the same container as command handlers.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::problem::Problem;
use crate::di::{Container, Dep};

impl<S, T> FromRequestParts<S> for Dep<T>
where
    S: Send + Sync,
    T: Send + Sync + 'static,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Problem> {
        let dependency = parts
            .extensions
            .get::<Arc<Container>>()
            .and_then(|container| container.get::<T>());
        dependency.ok_or_else(|| {
            tracing::error!(
                type_name = std::any::type_name::<T>(),
                "a route asked for a Dep<T> that nobody provides; add it to the app's container"
            );
            Problem::internal()
        })
    }
}
