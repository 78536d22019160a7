//! The errors of HTTP requests themselves, before any command, query or
//! read runs: routing, headers, bodies, parameters and the admission of
//! event streams. Each is a [`ProblemKind`] from [`kinds`].

use axum::http::Method;

use super::kinds;
use super::problem::{HttpError, ProblemKind};

/// What is wrong with a request, as the HTTP layer answers it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum RequestError {
    /// No route serves the path.
    #[error("nothing is served at {method} {path}")]
    NoRoute { method: Method, path: String },
    /// The route does not serve the method.
    #[error("{path} does not answer {method}; `Allow` lists the methods it does")]
    MethodNotAllowed { method: Method, path: String },
    /// Swagger UI has no such file.
    #[cfg(feature = "swagger-ui")]
    #[error("Swagger UI has no file `{0}`")]
    NoDocsFile(String),
    /// A path segment does not decode.
    #[error("the path does not decode: {0}")]
    InvalidPath(String),
    /// A header is not 1 to 255 visible ASCII characters.
    #[error("`{0}` must be 1 to 255 visible ASCII characters")]
    InvalidHeader(String),
    /// `If-Match` is malformed (what was found).
    #[error("`If-Match` must be `*` or a list of entity tags like \"3\", \"4\" (got {0})")]
    InvalidIfMatch(String),
    /// A command body's content type is not JSON (what was sent).
    #[error("commands are JSON: send `Content-Type: application/json` (got {0})")]
    UnsupportedContentType(String),
    /// The body is over the limit (in bytes).
    #[error("the body is larger than the limit of {0} bytes")]
    BodyTooLarge(usize),
    /// The body could not be read.
    #[error("the body could not be read: {0}")]
    UnreadableBody(String),
    /// The query string does not parse.
    #[error("the query string does not parse: {0}")]
    InvalidQueryString(String),
    /// A parameter given twice.
    #[error("`{0}` is given twice")]
    DuplicateParameter(String),
    /// A parameter the route does not have (the whole explanation).
    #[error("{0}")]
    UnknownParameter(String),
    /// A list `limit` that is not a whole number.
    #[error("`limit` must be a whole number, got `{0}`")]
    InvalidLimit(String),
    /// A list filtered by more than one field.
    #[error("filter by one indexed field at a time")]
    TooManyFilters,
    /// `min_position` that is not a position.
    #[error("`min_position` must be a position (a whole number), got `{0}`")]
    InvalidMinPosition(String),
    /// No row under the key.
    #[error("projection `{projection}` has no row under key `{key}`")]
    RowNotFound { projection: String, key: String },
    /// Not a WebSocket handshake (axum's status and explanation).
    #[error("{detail}")]
    NotAWebSocketRequest { status: u16, detail: String },
    /// The service is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// Every event-stream connection is taken.
    #[error("the server already streams events to {0} connections; try again later")]
    TooManyConnections(usize),
    /// The event store does not answer (the cause is logged where seen).
    #[error("the event store does not answer")]
    StoreUnavailable,
    /// The service failed (logged, never sent).
    #[error("{0}")]
    Internal(String),
}

impl HttpError for RequestError {
    fn kind(&self) -> ProblemKind {
        match self {
            Self::NoRoute { .. } => kinds::NO_ROUTE,
            #[cfg(feature = "swagger-ui")]
            Self::NoDocsFile(_) => kinds::NO_ROUTE,
            Self::MethodNotAllowed { .. } => kinds::METHOD_NOT_ALLOWED,
            Self::InvalidPath(_) => kinds::INVALID_PATH,
            Self::InvalidHeader(_) => kinds::INVALID_HEADER,
            Self::InvalidIfMatch(_) => kinds::INVALID_IF_MATCH,
            Self::UnsupportedContentType(_) => kinds::UNSUPPORTED_CONTENT_TYPE,
            Self::BodyTooLarge(_) => kinds::BODY_TOO_LARGE,
            Self::UnreadableBody(_) => kinds::UNREADABLE_BODY,
            Self::InvalidQueryString(_) => kinds::INVALID_QUERY_STRING,
            Self::DuplicateParameter(_) => kinds::DUPLICATE_PARAMETER,
            Self::UnknownParameter(_) => kinds::UNKNOWN_PARAMETER,
            Self::InvalidLimit(_) => kinds::INVALID_LIMIT,
            Self::TooManyFilters => kinds::TOO_MANY_FILTERS,
            Self::InvalidMinPosition(_) => kinds::INVALID_MIN_POSITION,
            Self::RowNotFound { .. } => kinds::ROW_NOT_FOUND,
            Self::NotAWebSocketRequest { status, .. } => ProblemKind {
                status: *status,
                ..kinds::NOT_A_WEBSOCKET_REQUEST
            },
            Self::ShuttingDown => kinds::SHUTTING_DOWN,
            Self::TooManyConnections(_) => kinds::TOO_MANY_CONNECTIONS,
            Self::StoreUnavailable => kinds::STORE_UNAVAILABLE,
            Self::Internal(_) => kinds::INTERNAL_ERROR,
        }
    }
}

/// The answer when the event store does not answer `what` asked of it:
/// the cause is logged, the client learns only that.
pub(crate) fn store_unavailable(what: &str, error: &dyn std::error::Error) -> super::Problem {
    tracing::error!(%error, "{what}: the event store does not answer");
    RequestError::StoreUnavailable.into()
}
