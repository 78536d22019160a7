//! `Dep<T>` as an axum extractor: plain axum handlers get their
//! dependencies from the same container as command handlers.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::errors::RequestError;
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
            RequestError::Internal(format!(
                "a route asked for a Dep<{}> that nobody provides; add it to the app's container",
                std::any::type_name::<T>()
            ))
            .into()
        })
    }
}

/// axum's `Path`, refused as a 400 problem (`invalid-path`) instead of a
/// plain-text answer when a segment does not decode (not UTF-8 once
/// percent-decoded, say).
pub(crate) struct PathParams<T>(pub(crate) T);

impl<S, T> FromRequestParts<S> for PathParams<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned + Send,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(RequestError::InvalidPath(rejection.body_text()).into()),
        }
    }
}

/// The router's answer for a path no route serves: a 404 problem.
pub(crate) async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> Problem {
    RequestError::NoRoute {
        method,
        path: uri.path().to_owned(),
    }
    .into()
}

/// The router's answer for a method a route does not serve: a 405
/// problem (axum adds the `Allow` header).
pub(crate) async fn method_not_allowed(
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> Problem {
    RequestError::MethodNotAllowed {
        method,
        path: uri.path().to_owned(),
    }
    .into()
}
