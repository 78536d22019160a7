//! `POST /commands/{name}`: a command from its JSON body, with the
//! `Idempotency-Key`, `If-Match` and `X-Correlation-Id` headers.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::correlation::CorrelationId;
use super::problem::Problem;
use crate::command::{CommandOutcome, DispatchOptions, Dispatcher};

/// `Idempotency-Key`: makes a command safe to retry.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// `Idempotency-Replayed: true` marks a stored response.
pub const IDEMPOTENCY_REPLAYED: HeaderName = HeaderName::from_static("idempotency-replayed");
/// `X-Correlation-Id`: flows into event metadata and is echoed back.
pub const CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");

/// What the command route needs.
#[derive(Clone)]
pub(crate) struct CommandRoutes {
    pub(crate) dispatcher: Arc<Dispatcher>,
    pub(crate) body_limit: usize,
}

/// The route handler. The correlation id comes from the app's middleware,
/// which also echoes it.
pub(crate) async fn post_command(
    State(routes): State<CommandRoutes>,
    Path(name): Path<String>,
    CorrelationId(correlation_id): CorrelationId,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if headers.contains_key(CORRELATION_ID) && super::correlation::given(&headers).is_none() {
        return Problem::bad_request(
            "invalid-header",
            format!("`{CORRELATION_ID}` must be 1 to 255 visible ASCII characters"),
        )
        .into_response();
    }
    let span = tracing::info_span!("command", name = %name, correlation_id = %correlation_id);
    handle(&routes, &name, &headers, body, &correlation_id)
        .instrument(span)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn handle(
    routes: &CommandRoutes,
    name: &str,
    headers: &HeaderMap,
    body: Body,
    correlation_id: &str,
) -> Result<Response, Problem> {
    let Some(creates) = routes.dispatcher.creates(name) else {
        return Err(Problem::not_found(
            "unknown-command",
            format!("there is no command `{name}`"),
        ));
    };
    check_content_type(headers)?;
    let body = read_body(headers, body, routes.body_limit).await?;
    let mut options = DispatchOptions::default().correlation_id(correlation_id);
    if let Some(key) = header_text(headers, &IDEMPOTENCY_KEY)? {
        options = options.idempotency_key(key);
    }
    if let Some(version) = if_match(headers)? {
        options = options.expected_version(version);
    }
    let outcome = routes
        .dispatcher
        .dispatch_json(name, &body, options)
        .await?;
    Ok(success(&outcome, creates))
}

fn success(outcome: &CommandOutcome, creates: bool) -> Response {
    let status = if creates {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = serde_json::to_vec(outcome).expect("a command outcome always serializes");
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let etag = HeaderValue::from_str(&format!("\"{}\"", outcome.version))
        .expect("digits are a valid header");
    headers.insert(header::ETAG, etag);
    if outcome.replayed {
        headers.insert(IDEMPOTENCY_REPLAYED, HeaderValue::from_static("true"));
    }
    response
}

fn check_content_type(headers: &HeaderMap) -> Result<(), Problem> {
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| {
            value
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    match media_type.as_deref() {
        Some("application/json") => Ok(()),
        Some(other) if other.starts_with("application/") && other.ends_with("+json") => Ok(()),
        other => Err(Problem::bad_request(
            "unsupported-content-type",
            format!(
                "commands are JSON: send `Content-Type: application/json` (got {})",
                other.map_or_else(|| "none".to_owned(), |t| format!("`{t}`"))
            ),
        )),
    }
}

async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<axum::body::Bytes, Problem> {
    let too_large = || {
        Problem::new(
            413,
            "body-too-large",
            "Body too large",
            format!("the body is larger than the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|error| {
        let limited = std::error::Error::source(&error)
            .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
        if limited {
            too_large()
        } else {
            Problem::bad_request(
                "unreadable-body",
                format!("the body could not be read: {error}"),
            )
        }
    })
}

/// A header's text, if present; 1..=255 visible ASCII characters.
fn header_text<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<Option<&'h str>, Problem> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(text) if !text.is_empty() && text.len() <= 255 => Ok(Some(text)),
        _ => Err(Problem::bad_request(
            "invalid-header",
            format!("`{name}` must be 1 to 255 visible ASCII characters"),
        )),
    }
}

/// `If-Match: "<version>"` (a strong ETag); `*` asks only that the
/// aggregate exists, which every non-create command checks anyway.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, Problem> {
    let Some(text) = header_text(headers, &header::IF_MATCH)? else {
        return Ok(None);
    };
    if text.trim() == "*" {
        return Ok(None);
    }
    text.trim()
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .and_then(|version| version.parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            Problem::bad_request(
                "invalid-if-match",
                format!("`If-Match` must be a version in quotes, like \"3\" (got {text})"),
            )
        })
}
