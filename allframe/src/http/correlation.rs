//! Correlation ids: every request gets one — the client's
//! `X-Correlation-Id` or a new UUID v7 — carried by a `request` span,
//! available to handlers as [`CorrelationId`], written into the metadata of
//! the events a command records, and echoed on the response.

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use super::commands::CORRELATION_ID;

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
    let mut response = next.run(request).instrument(span).await;
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
