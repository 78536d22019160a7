//! The service's own operations (`/health`, the event streams) and the
//! schemas every service shares (Problem, RecordedEvent, …).

use serde_json::{Map, Value, json};

use super::{ProblemKind, problem_responses, reference, routes};
use crate::event::RecordedEvent;
use crate::http::problem::Problem;

pub(super) fn health_path() -> Value {
    let mut responses = problem_responses(
        &[routes::HEALTH],
        &[(503, "The event store does not answer.")],
    );
    responses.insert(
        "200".into(),
        json!({
            "description": "The store answers.",
            "content": { "application/json": { "schema": reference("Health") } },
        }),
    );
    json!({
        "get": {
            "operationId": "health",
            "tags": ["service"],
            "summary": "Whether the service and its event store answer.",
            "responses": responses,
        }
    })
}

/// `GET /metrics`: Prometheus' text format.
pub(super) fn metrics_path() -> Value {
    json!({
        "get": {
            "operationId": "metrics",
            "tags": ["admin"],
            "summary": "Prometheus metrics: commands, appends, projections, sagas, live streams, snapshots.",
            "responses": { "200": {
                "description": "Every metric in Prometheus' text exposition format (version 0.0.4).",
                "content": { "text/plain": { "schema": { "type": "string" } } },
            } },
        }
    })
}

/// `GET /events/ws` and `GET /events/sse`: the same filters, the same
/// RecordedEvent per message.
pub(super) fn event_stream_paths() -> Map<String, Value> {
    use crate::http::stream::params::PARAMETERS;
    let parameters: Vec<Value> = PARAMETERS
        .iter()
        .map(|(name, description)| {
            let schema = match *name {
                "after" => json!({ "type": "integer", "minimum": 0 }),
                "type" => json!({ "type": "array", "items": { "type": "string" } }),
                _ => json!({ "type": "string" }),
            };
            json!({ "name": name, "in": "query", "required": false,
                    "description": description, "schema": schema,
                    "style": "form", "explode": true })
        })
        .collect();
    let message = reference("RecordedEvent");
    let bad_parameters = "A bad or unknown parameter (checked before the stream starts), or not a request for this kind of stream.";
    let responses = |kinds: &[ProblemKind], what: &str| {
        let refused = format!(
            "{what}: too many connections, shutting down, or the store does not answer; \
             `Retry-After` says when to try again."
        );
        problem_responses(&[kinds], &[(400, bad_parameters), (503, &refused)])
    };
    let mut ws_responses = responses(routes::WEBSOCKET, "No WebSocket now");
    ws_responses.insert(
        "101".into(),
        json!({
            "description": "Switching Protocols: each message is a `RecordedEvent`.",
            "x-message": message,
        }),
    );
    let mut sse_responses = responses(routes::SSE, "No event stream now");
    // One event as an SSE parser gives it (the way OpenAPI 3.1 tools such
    // as schemathesis read a `text/event-stream` schema): `id` and `data`
    // strings, the data being a RecordedEvent as JSON.
    let sse_event = json!({
        "type": "object",
        "description": "One server-sent event: `id` is the event's position, `data` the `RecordedEvent` as JSON. \
            The server sets no `event:` field, so clients see the default type `message`.",
        "required": ["id", "data"],
        "properties": {
            "id": { "type": "string", "pattern": "^(0|[1-9][0-9]*)$", "description": "The event's position." },
            "event": { "type": "string", "const": "message" },
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": message,
            },
        },
    });
    let mut sse_parameters = parameters.clone();
    sse_parameters.push(json!({
        "name": "Last-Event-ID", "in": "header", "required": false,
        "description": "Resume after this position; sent by a reconnecting `EventSource`, and takes precedence over `after`.",
        "schema": { "type": "integer", "minimum": 0 },
    }));
    sse_responses.insert(
        "200".into(),
        json!({
            "description": "The stream; each `data:` line is a `RecordedEvent`.",
            "content": { "text/event-stream": { "schema": sse_event } },
        }),
    );
    let paths = json!({
        "/events/ws": { "get": {
            "operationId": "events-ws",
            "tags": ["events"],
            "summary": "The event log over a WebSocket.",
            "description": "One text frame per event, a `RecordedEvent` as JSON, in ascending `position`: \
                the stored events after `after`, then live ones, with no gap or repeat between them. \
                The server pings; a client that stops reading is closed with 1008, and on shutdown \
                with 1001. Reconnect with `after` set to the last position received.",
            "parameters": parameters,
            "responses": ws_responses,
        }},
        "/events/sse": { "get": {
            "operationId": "events-sse",
            "tags": ["events"],
            "summary": "The event log as server-sent events.",
            "description": "One `message` per event: `id:` is its position and `data:` the \
                `RecordedEvent` as JSON, in ascending `position`; stored events after `after` \
                (or `Last-Event-ID`), then live ones. Comments keep an idle stream alive.",
            "parameters": sse_parameters,
            "responses": sse_responses,
        }},
    });
    match paths {
        Value::Object(paths) => paths,
        _ => unreachable!("a JSON object literal"),
    }
}

/// Problem, RecordedEvent and the other shapes every service shares.
///
/// Problem, FieldError, RecordedEvent and Metadata are derived from the
/// Rust types that are serialized onto the wire, so they cannot drift from
/// what is sent.
pub(super) fn shared_schemas() -> Map<String, Value> {
    let mut schemas = Map::new();
    derived::<Problem>(&mut schemas);
    derived::<RecordedEvent>(&mut schemas);
    let health = json!({
        "type": "object",
        "required": ["status", "node", "head_position", "projections"],
        "properties": {
            "status": { "type": "string", "const": "ok" },
            "node": { "type": "string",
                      "description": "The node that answered (its id; by default host name and process id)." },
            "head_position": { "type": "integer", "minimum": 0,
                               "description": "The position of the last committed event." },
            "projections": { "type": "array", "items": reference("ProjectionStatus"),
                             "description": "Every projection's state and progress, sorted by name; a failed one does not make the service unhealthy." },
        },
    });
    schemas.insert("Health".into(), health);
    schemas.insert("ProjectionStatus".into(), status_schema());
    schemas
}

/// Adds `T`'s derived schema under its name, and every schema it refers to.
pub(super) fn derived<T: utoipa::ToSchema>(schemas: &mut Map<String, Value>) {
    let mut referenced = Vec::new();
    T::schemas(&mut referenced);
    for (name, schema) in referenced {
        schemas.insert(name, to_json(&schema));
    }
    schemas.insert(T::name().into_owned(), to_json(&T::schema()));
}

/// A utoipa schema as the JSON the document holds.
pub(super) fn to_json(schema: &utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>) -> Value {
    serde_json::to_value(schema).expect("a utoipa schema serializes")
}

fn status_schema() -> Value {
    json!({
        "type": "object",
        "description": "A projection's progress.",
        "required": ["name", "state", "checkpoint", "head", "lag"],
        "properties": {
            "name": { "type": "string" },
            "state": { "type": "string", "enum": ["running", "rebuilding", "failed", "waiting-for-upgrade", "standby"],
                       "description": "`standby`: another node runs it (see `owner`); this one follows its checkpoint." },
            "checkpoint": { "type": "integer", "minimum": 0, "description": "The position readers' rows reflect." },
            "head": { "type": "integer", "minimum": 0, "description": "The position of the last event in the store." },
            "lag": { "type": "integer", "minimum": 0, "description": "`head - checkpoint`." },
            "rebuild_checkpoint": { "type": "integer", "minimum": 0,
                                    "description": "While rebuilding: how far the new generation has read." },
            "error": { "type": "string", "description": "When failed: why." },
            "failed_position": { "type": "integer", "minimum": 1,
                                 "description": "When failed: the position of the event it stopped at." },
            "owner": { "type": "string",
                       "description": "On a store several nodes share (PostgreSQL): the node that runs it, holding its lease." },
            "lease_expires_at": { "type": "string", "format": "date-time",
                                  "description": "Until when the owner holds the lease unless it renews it." },
            "progress": {
                "type": "object",
                "description": "While rebuilding, or catching up a batch or more behind the head: how fast it goes and how long it has left.",
                "required": ["events_per_second", "remaining_events"],
                "properties": {
                    "events_per_second": { "type": "integer", "minimum": 0,
                                           "description": "Log positions covered a second, over the last ten seconds." },
                    "remaining_events": { "type": "integer", "minimum": 0, "description": "Positions left to the head." },
                    "eta_seconds": { "type": "integer", "minimum": 0,
                                     "description": "Seconds left at that rate; absent while nothing has moved yet." },
                },
            },
        },
    })
}
