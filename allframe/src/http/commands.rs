//! `POST /commands/{name}`: a command from its JSON body, with the
//! `Idempotency-Key`, `If-Match` and `X-Correlation-Id` headers.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::correlation::CorrelationId;
use super::errors::RequestError;
use super::extract::PathParams;
use super::kinds;
use super::problem::Problem;
use crate::auth::Principal;
use crate::command::{CommandError, Rejection};
use crate::command::{CommandOutcome, DispatchOptions, Dispatcher, IfMatch};

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
    /// How long a command may take before it is answered 503.
    pub(crate) timeout: std::time::Duration,
}

/// The route handler. The correlation id comes from the app's middleware,
/// which also echoes it.
pub(crate) async fn post_command(
    State(routes): State<CommandRoutes>,
    PathParams(name): PathParams<String>,
    CorrelationId(correlation_id): CorrelationId,
    principal: Option<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if headers.contains_key(CORRELATION_ID) && super::correlation::given(&headers).is_none() {
        return Problem::from(RequestError::InvalidHeader(CORRELATION_ID.to_string()))
            .into_response();
    }
    // The request's span (method, path, correlation id) holds the
    // dispatcher's `command` span.
    handle(&routes, &name, &headers, body, &correlation_id, principal)
        .await
        .unwrap_or_else(refused)
}

/// The problem's answer; one waiting for an upgrade says when to retry.
fn refused(problem: Problem) -> Response {
    let retry = if problem.is(kinds::WAITING_FOR_UPGRADE) {
        Some(UPGRADE_RETRY_AFTER_SECONDS)
    } else if problem.is(kinds::COMMAND_TIMED_OUT) || problem.is(kinds::STORE_UNAVAILABLE) {
        Some("1")
    } else {
        None
    };
    let mut response = problem.into_response();
    if let Some(seconds) = retry {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static(seconds));
    }
    response
}

/// How long a command on a stream written by a newer release is told to
/// wait: about the time a rolling deploy takes to replace a node.
const UPGRADE_RETRY_AFTER_SECONDS: &str = "10";

async fn handle(
    routes: &CommandRoutes,
    name: &str,
    headers: &HeaderMap,
    body: Body,
    correlation_id: &str,
    principal: Option<Principal>,
) -> Result<Response, Problem> {
    let Some(creates) = routes.dispatcher.creates(name) else {
        return Err(CommandError::<Rejection>::UnknownCommand(name.to_owned()).into());
    };
    check_content_type(headers)?;
    let body = read_body(headers, body, routes.body_limit).await?;
    let mut options = DispatchOptions::default().correlation_id(correlation_id);
    if let Some(principal) = principal {
        options = options.principal(principal);
    }
    if let Some(key) = header_text(headers, &IDEMPOTENCY_KEY)? {
        options = options.idempotency_key(key);
    }
    if let Some(if_match) = if_match(headers)? {
        options = options.if_match(if_match);
    }
    let dispatched = routes.dispatcher.dispatch_json(name, &body, options);
    let outcome = match tokio::time::timeout(routes.timeout, dispatched).await {
        Ok(outcome) => outcome?,
        Err(_) => {
            tracing::warn!(command = name, timeout = ?routes.timeout, "a command timed out");
            return Err(Problem::of(
                kinds::COMMAND_TIMED_OUT,
                format!(
                    "the command did not finish within {} ms; it may still take effect: send it again with the same Idempotency-Key to learn its outcome",
                    routes.timeout.as_millis()
                ),
            ));
        }
    };
    Ok(match routes.dispatcher.starts_saga(name) {
        Some(saga) => started(&outcome, saga),
        None => success(&outcome, creates),
    })
}

/// `202 {saga_id}` with the saga's `Location`: the saga goes on in the
/// background, and will reach an end even if the process dies.
fn started(outcome: &CommandOutcome, saga: &str) -> Response {
    let body = crate::saga::SagaStarted {
        saga_id: outcome.aggregate_id.clone(),
    };
    let mut response = (StatusCode::ACCEPTED, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    // Ids are checked stream ids; one that is not a valid header is left
    // without a `Location` rather than failing the accepted command.
    if let Ok(location) = HeaderValue::from_str(&format!("/sagas/{saga}/{}", outcome.aggregate_id))
    {
        headers.insert(header::LOCATION, location);
    }
    if outcome.replayed {
        headers.insert(IDEMPOTENCY_REPLAYED, HeaderValue::from_static("true"));
    }
    response
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
        other => Err(RequestError::UnsupportedContentType(
            other.map_or_else(|| "none".to_owned(), |t| format!("`{t}`")),
        )
        .into()),
    }
}

async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<axum::body::Bytes, Problem> {
    let too_large = || Problem::from(RequestError::BodyTooLarge(limit));
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
            RequestError::UnreadableBody(error.to_string()).into()
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
        _ => Err(RequestError::InvalidHeader(name.to_string()).into()),
    }
}

/// `If-Match` (RFC 9110 §13.1.1): `*`, or a list of entity tags from one
/// or more header lines. A strong tag matches the version it spells in
/// canonical digits (the ETag the server sends); any other tag, and every
/// weak tag (`W/"3"`), never matches. Only a malformed header is a 400.
fn if_match(headers: &HeaderMap) -> Result<Option<IfMatch>, Problem> {
    let mut lines = headers.get_all(header::IF_MATCH).iter().peekable();
    if lines.peek().is_none() {
        return Ok(None);
    }
    let malformed = |text: &str| Problem::from(RequestError::InvalidIfMatch(text.to_owned()));
    let mut versions = Vec::new();
    let mut any = false;
    for line in lines {
        let text = line
            .to_str()
            .map_err(|_| malformed("bytes that are not ASCII"))?;
        if text.trim() == "*" {
            any = true;
            continue;
        }
        entity_tags(text, &mut versions).ok_or_else(|| malformed(text))?;
    }
    Ok(Some(match (any, versions.is_empty()) {
        (true, true) => IfMatch::Exists,
        // `*` must stand alone (RFC 9110: `"*" / #entity-tag`).
        (true, false) => return Err(malformed("`*` together with entity tags")),
        (false, _) => IfMatch::OneOf(versions),
    }))
}

/// Reads a comma-separated list of entity tags, pushing the versions its
/// strong tags name; `None` if the text is not such a list.
fn entity_tags(text: &str, versions: &mut Vec<u64>) -> Option<()> {
    let mut rest = text;
    let mut tags = 0;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return (tags > 0).then_some(());
        }
        let (weak, tag) = match rest.strip_prefix("W/") {
            Some(tag) => (true, tag),
            None => (false, rest),
        };
        let tag = tag.strip_prefix('"')?;
        let end = tag.find('"')?;
        let opaque = &tag[..end];
        if !opaque
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80)
        {
            return None;
        }
        rest = &tag[end + 1..];
        // After a tag: whitespace, then a comma or the end.
        let after = rest.trim_start_matches([' ', '\t']);
        if !(after.is_empty() || after.starts_with(',')) {
            return None;
        }
        tags += 1;
        if !weak && let Some(version) = canonical_version(opaque) {
            versions.push(version);
        }
    }
}

/// The version an ETag's opaque text spells exactly as the server writes
/// it: decimal digits, no sign, no leading zero.
fn canonical_version(opaque: &str) -> Option<u64> {
    let digits = !opaque.is_empty() && opaque.bytes().all(|b| b.is_ascii_digit());
    let canonical = opaque == "0" || !opaque.starts_with('0');
    (digits && canonical).then(|| opaque.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(lines: &[&str]) -> Result<Option<IfMatch>, u16> {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(header::IF_MATCH, HeaderValue::from_str(line).unwrap());
        }
        if_match(&headers).map_err(|problem| problem.status)
    }

    fn one_of(versions: &[u64]) -> Result<Option<IfMatch>, u16> {
        Ok(Some(IfMatch::OneOf(versions.to_vec())))
    }

    #[test]
    fn if_match_follows_rfc_9110() {
        assert_eq!(parse(&[]), Ok(None));
        assert_eq!(parse(&["\"3\""]), one_of(&[3]));
        assert_eq!(parse(&["\"0\""]), one_of(&[0]));
        assert_eq!(parse(&["*"]), Ok(Some(IfMatch::Exists)));
        assert_eq!(parse(&["\"1\", \"3\""]), one_of(&[1, 3]));
        assert_eq!(parse(&["\"1\"", "\"3\""]), one_of(&[1, 3]));
        assert_eq!(parse(&["\"1\",,\t\"3\" ,"]), one_of(&[1, 3]));
        // Valid tags that name no version never match.
        assert_eq!(parse(&["\"+1\""]), one_of(&[]));
        assert_eq!(parse(&["\"02\""]), one_of(&[]));
        assert_eq!(parse(&["\"-1\""]), one_of(&[]));
        assert_eq!(parse(&["\"abc\""]), one_of(&[]));
        assert_eq!(parse(&["\"99999999999999999999\""]), one_of(&[]));
        assert_eq!(parse(&["W/\"3\""]), one_of(&[]));
        assert_eq!(parse(&["W/\"3\", \"4\""]), one_of(&[4]));
        assert_eq!(parse(&["\"a,b\""]), one_of(&[]));
        // Not entity tags at all.
        for bad in [
            "3",
            "\"3",
            "\"3\"x",
            "W/3",
            "\"3\" \"4\"",
            ",",
            "*, \"1\"",
            "w/\"3\"",
        ] {
            assert_eq!(parse(&[bad]), Err(400), "{bad}");
        }
        assert_eq!(parse(&["*", "\"1\""]), Err(400));
    }
}
