//! Every kind of problem the framework answers with, in one place: its
//! status, stable code (`type` is `/problems/{code}`) and title. Domain
//! errors add their own codes (see [`DomainError`](crate::DomainError)).

use super::problem::ProblemKind;

const fn kind(status: u16, code: &'static str, title: &'static str) -> ProblemKind {
    ProblemKind {
        status,
        code,
        title,
    }
}

/// Any failure of the service itself; the cause is logged, never sent.
pub const INTERNAL_ERROR: ProblemKind = kind(500, "internal-error", "Internal server error");

/// The route needs credentials and the request has none, or none that
/// hold (`WWW-Authenticate` says which kind).
pub const UNAUTHENTICATED: ProblemKind = kind(401, "unauthenticated", "Unauthenticated");
/// The principal may not do this.
pub const FORBIDDEN: ProblemKind = kind(403, "forbidden", "Forbidden");

/// No route serves the path.
pub const NO_ROUTE: ProblemKind = kind(404, "no-route", "Not found");
/// The route does not serve the method (`Allow` lists those it does).
pub const METHOD_NOT_ALLOWED: ProblemKind = kind(405, "method-not-allowed", "Method not allowed");
/// A path segment does not decode.
pub const INVALID_PATH: ProblemKind = kind(400, "invalid-path", "Bad request");
/// A header the route reads is malformed.
pub const INVALID_HEADER: ProblemKind = kind(400, "invalid-header", "Bad request");
/// `If-Match` is neither `*` nor a list of entity tags.
pub const INVALID_IF_MATCH: ProblemKind = kind(400, "invalid-if-match", "Bad request");
/// A command body that is not JSON by its content type.
pub const UNSUPPORTED_CONTENT_TYPE: ProblemKind =
    kind(400, "unsupported-content-type", "Bad request");
/// A body over the size limit.
pub const BODY_TOO_LARGE: ProblemKind = kind(413, "body-too-large", "Body too large");
/// A body that could not be read.
pub const UNREADABLE_BODY: ProblemKind = kind(400, "unreadable-body", "Bad request");

/// No command has the name.
pub const UNKNOWN_COMMAND: ProblemKind = kind(404, "unknown-command", "Not found");
/// The body is not JSON.
pub const MALFORMED_JSON: ProblemKind = kind(400, "malformed-json", "Malformed JSON");
/// JSON that does not fit the command's schema.
pub const INVALID_COMMAND: ProblemKind = kind(422, "invalid-command", "Invalid command");
/// garde refused fields (`errors` points at each).
pub const VALIDATION_FAILED: ProblemKind = kind(422, "validation-failed", "Validation failed");
/// The aggregate does not exist.
pub const NOT_FOUND: ProblemKind = kind(404, "not-found", "Not found");
/// A create-command for an aggregate that exists.
pub const ALREADY_EXISTS: ProblemKind = kind(409, "already-exists", "Already exists");
/// A concurrency conflict outlasted the retries.
pub const CONFLICT: ProblemKind = kind(409, "conflict", "Concurrency conflict");
/// `If-Match` does not match the stream's version.
pub const PRECONDITION_FAILED: ProblemKind =
    kind(412, "precondition-failed", "Precondition failed");
/// An idempotency key used before with a different request.
pub const IDEMPOTENCY_KEY_REUSED: ProblemKind =
    kind(422, "idempotency-key-reused", "Idempotency key reused");
/// A request with the same idempotency key is still in flight.
pub const IDEMPOTENCY_KEY_IN_FLIGHT: ProblemKind = kind(
    409,
    "idempotency-key-in-flight",
    "Idempotency key in flight",
);
/// A malformed idempotency key.
pub const INVALID_IDEMPOTENCY_KEY: ProblemKind =
    kind(400, "invalid-idempotency-key", "Request refused");
/// An idempotency key sent to a service whose event store keeps no
/// idempotency records.
pub const IDEMPOTENCY_UNSUPPORTED: ProblemKind =
    kind(400, "idempotency-unsupported", "Request refused");
/// Events the store refuses (a stream id or type it cannot take).
pub const INVALID_EVENT: ProblemKind = kind(422, "invalid-event", "Request refused");

/// No projection has the name.
pub const UNKNOWN_PROJECTION: ProblemKind = kind(404, "unknown-projection", "Not found");
/// The projection has no row under the key.
pub const ROW_NOT_FOUND: ProblemKind = kind(404, "row-not-found", "Not found");
/// The query string does not parse.
pub const INVALID_QUERY_STRING: ProblemKind = kind(400, "invalid-query-string", "Bad request");
/// A parameter given twice.
pub const DUPLICATE_PARAMETER: ProblemKind = kind(400, "duplicate-parameter", "Bad request");
/// A parameter the route or query does not have.
pub const UNKNOWN_PARAMETER: ProblemKind = kind(400, "unknown-parameter", "Bad request");
/// A list `limit` that is not a whole number in range.
pub const INVALID_LIMIT: ProblemKind = kind(400, "invalid-limit", "Bad request");
/// A list filtered by more than one field.
pub const TOO_MANY_FILTERS: ProblemKind = kind(400, "too-many-filters", "Bad request");
/// A list filtered by a field that is not indexed.
pub const NOT_INDEXED: ProblemKind = kind(400, "not-indexed", "Bad request");
/// A cursor this API did not hand out.
pub const INVALID_CURSOR: ProblemKind = kind(400, "invalid-cursor", "Bad request");
/// A key, filter value or cursor with a control character.
pub const CONTROL_CHARACTER: ProblemKind = kind(400, "control-character", "Bad request");
/// `min_position` that is not a position.
pub const INVALID_MIN_POSITION: ProblemKind = kind(400, "invalid-min-position", "Bad request");
/// `min_position` past the log's head.
pub const MIN_POSITION_BEYOND_HEAD: ProblemKind =
    kind(400, "min-position-beyond-head", "Bad request");
/// The read did not reach `min_position` in time (`Retry-After`).
pub const POSITION_NOT_REACHED: ProblemKind =
    kind(503, "position-not-reached", "Not caught up yet");
/// The projection failed and stopped before the position asked for.
pub const PROJECTION_FAILED: ProblemKind = kind(503, "projection-failed", "Projection failed");

/// No query has the name.
pub const UNKNOWN_QUERY: ProblemKind = kind(404, "unknown-query", "Unknown query");
/// The query string does not fit the query's fields.
pub const INVALID_QUERY_PARAMETERS: ProblemKind =
    kind(400, "invalid-query-parameters", "Bad request");

/// No saga has the name.
pub const UNKNOWN_SAGA: ProblemKind = kind(404, "unknown-saga", "Not found");
/// The saga has no instance with the id.
pub const SAGA_NOT_FOUND: ProblemKind = kind(404, "saga-not-found", "Not found");

/// A bad event-stream parameter.
pub const INVALID_PARAMETER: ProblemKind = kind(400, "invalid-parameter", "Bad request");
/// `GET /events/ws` without a WebSocket handshake.
pub const NOT_A_WEBSOCKET_REQUEST: ProblemKind =
    kind(400, "not-a-websocket-request", "Not a WebSocket request");
/// Every event-stream connection is taken (`Retry-After`).
pub const TOO_MANY_CONNECTIONS: ProblemKind =
    kind(503, "too-many-connections", "Service unavailable");
/// The service is shutting down (`Retry-After`).
pub const SHUTTING_DOWN: ProblemKind = kind(503, "shutting-down", "Service unavailable");
/// The aggregate's stream holds an event written by a newer release than
/// this one (a rolling deploy in progress; `Retry-After`).
pub const WAITING_FOR_UPGRADE: ProblemKind =
    kind(503, "waiting-for-upgrade", "Waiting for an upgrade");
/// The event store does not answer (`Retry-After`).
pub const STORE_UNAVAILABLE: ProblemKind = kind(503, "store-unavailable", "Service unavailable");
/// A command did not finish within the app's command timeout; it may
/// still take effect (`Retry-After`).
pub const COMMAND_TIMED_OUT: ProblemKind = kind(503, "command-timed-out", "Command timed out");

/// The path or the query string is longer than the app accepts
/// ([`RequestLimits`](crate::http::RequestLimits)).
pub const URI_TOO_LONG: ProblemKind = kind(414, "uri-too-long", "URI too long");

/// The headers are larger than the app accepts
/// ([`RequestLimits`](crate::http::RequestLimits)).
pub const HEADERS_TOO_LARGE: ProblemKind =
    kind(431, "headers-too-large", "Request header fields too large");

/// What each framework route can answer besides success: the one list
/// both its handler's errors and its documented statuses come from.
pub(crate) mod routes {
    use super::*;

    /// `POST /commands/{name}` (a domain's refusals come on top).
    pub(crate) const COMMAND: &[ProblemKind] = &[
        INVALID_HEADER,
        INVALID_IF_MATCH,
        INVALID_IDEMPOTENCY_KEY,
        IDEMPOTENCY_UNSUPPORTED,
        UNSUPPORTED_CONTENT_TYPE,
        UNREADABLE_BODY,
        MALFORMED_JSON,
        ALREADY_EXISTS,
        CONFLICT,
        IDEMPOTENCY_KEY_IN_FLIGHT,
        PRECONDITION_FAILED,
        BODY_TOO_LARGE,
        INVALID_COMMAND,
        VALIDATION_FAILED,
        IDEMPOTENCY_KEY_REUSED,
        INVALID_EVENT,
        INTERNAL_ERROR,
        COMMAND_TIMED_OUT,
        STORE_UNAVAILABLE,
    ];
    /// What a command on an existing aggregate adds to [`COMMAND`].
    pub(crate) const COMMAND_ON_EXISTING: &[ProblemKind] = &[NOT_FOUND, WAITING_FOR_UPGRADE];
    /// What every read that may wait (`min_position`) can answer.
    pub(crate) const WAITING_READ: &[ProblemKind] = &[
        INVALID_QUERY_STRING,
        DUPLICATE_PARAMETER,
        UNKNOWN_PARAMETER,
        INVALID_MIN_POSITION,
        MIN_POSITION_BEYOND_HEAD,
        POSITION_NOT_REACHED,
        PROJECTION_FAILED,
        WAITING_FOR_UPGRADE,
        INTERNAL_ERROR,
    ];
    /// What `GET /projections/{name}/{key}` adds to [`WAITING_READ`].
    pub(crate) const ROW: &[ProblemKind] = &[CONTROL_CHARACTER, ROW_NOT_FOUND];
    /// What `GET /projections/{name}` adds to [`WAITING_READ`].
    pub(crate) const LIST: &[ProblemKind] = &[
        INVALID_LIMIT,
        TOO_MANY_FILTERS,
        NOT_INDEXED,
        INVALID_CURSOR,
        CONTROL_CHARACTER,
    ];
    /// What `GET /queries/{name}` adds to [`WAITING_READ`] (a domain's
    /// refusals come on top).
    pub(crate) const QUERY: &[ProblemKind] = &[INVALID_QUERY_PARAMETERS, VALIDATION_FAILED];
    /// `GET /admin/projections`.
    pub(crate) const ADMIN_LIST: &[ProblemKind] = &[INTERNAL_ERROR];
    /// `GET /admin/sagas`.
    pub(crate) const ADMIN_SAGAS: &[ProblemKind] = &[STORE_UNAVAILABLE];
    /// `GET /sagas/{name}/{id}`.
    pub(crate) const SAGA: &[ProblemKind] = &[UNKNOWN_SAGA, SAGA_NOT_FOUND, STORE_UNAVAILABLE];
    /// `POST /admin/projections/{name}/rebuild` and `.../restart`.
    pub(crate) const ADMIN_ACTION: &[ProblemKind] = &[UNKNOWN_PROJECTION, INTERNAL_ERROR];
    /// `GET /health`.
    pub(crate) const HEALTH: &[ProblemKind] = &[STORE_UNAVAILABLE];
    /// `GET /events/ws`.
    pub(crate) const WEBSOCKET: &[ProblemKind] = &[
        INVALID_PARAMETER,
        NOT_A_WEBSOCKET_REQUEST,
        SHUTTING_DOWN,
        TOO_MANY_CONNECTIONS,
        STORE_UNAVAILABLE,
    ];
    /// `GET /events/sse`.
    pub(crate) const SSE: &[ProblemKind] = &[
        INVALID_PARAMETER,
        INVALID_HEADER,
        SHUTTING_DOWN,
        TOO_MANY_CONNECTIONS,
        STORE_UNAVAILABLE,
    ];

    /// The distinct statuses of `lists`' kinds, ascending.
    pub(crate) fn statuses(lists: &[&[ProblemKind]]) -> std::collections::BTreeSet<u16> {
        lists
            .iter()
            .flat_map(|kinds| kinds.iter().map(|kind| kind.status))
            .collect()
    }
}
