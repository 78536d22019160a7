//! Correlation ids: every request gets one — the client's
//! `X-Correlation-Id` or a new UUID v7 — carried by a `request` span,
//! available to handlers as [`CorrelationId`], written into the metadata of
//! the events a command records, and echoed on the response. The same
//! middleware turns a panic below it into a 500 problem, logged with the id.

use std::panic::AssertUnwindSafe;

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use tracing::Instrument;

use super::commands::CORRELATION_ID;
use super::problem::Problem;

/// The request's correlation id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorrelationId(pub String);

/// The client's id when it is 1..=255 visible ASCII characters.
pub(crate) fn given(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(CORRELATION_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|text| !text.is_empty() && text.len() <= 255)
}

/// The middleware: assigns the id, opens the request's span, echoes the id.
pub(crate) async fn correlate(mut request: Request, next: Next) -> Response {
    let id =
        given(request.headers()).map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        correlation_id = %id,
    );
    request.extensions_mut().insert(CorrelationId(id.clone()));
    // A panicking handler (a user route, a query handler) answers an opaque
    // 500 problem instead of dropping the connection.
    let run = AssertUnwindSafe(next.run(request)).catch_unwind();
    let mut response = match run.instrument(span.clone()).await {
        Ok(response) => response,
        Err(panic) => {
            let message = crate::panic_message(&*panic);
            span.in_scope(|| tracing::error!(correlation_id = %id, panic = %message, "a request handler panicked"));
            Problem::internal().into_response()
        }
    };
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(CORRELATION_ID, value);
    }
    response
}

impl<S: Send + Sync> FromRequestParts<S> for CorrelationId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // Outside the app's router (no middleware), fall back to the header
        // or a fresh id, so the extractor never fails.
        Ok(parts
            .extensions
            .get::<CorrelationId>()
            .cloned()
            .unwrap_or_else(|| {
                CorrelationId(
                    given(&parts.headers)
                        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned),
                )
            }))
    }
}
