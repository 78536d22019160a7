//! The OpenAPI 3.1 document, built once at start-up from the registry and
//! the user's utoipa routes, and served at `GET /openapi.json`.
//!
//! Every command gets its own path, `/commands/{name}`, so its body and
//! outcome have their own schemas; the responses listed are exactly the
//! statuses the command route can answer with. The document is plain JSON
//! with sorted keys, so the same program always writes the same bytes.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::command::registry::Description;

mod reads;

/// The built document, serialized once.
#[derive(Debug, Clone)]
pub(crate) struct Document {
    value: Value,
    bytes: Bytes,
}

impl Document {
    /// The document for `commands` added to the user's `base` document.
    pub(crate) fn build(commands: &[Description], base: utoipa::openapi::OpenApi) -> Self {
        let mut document = serde_json::to_value(&base).expect("a utoipa document serializes");
        document["openapi"] = json!("3.1.0");
        fill_info(&mut document);
        let mut paths = take_object(&mut document, "paths");
        let mut schemas = take_object(&mut document["components"], "schemas");
        schemas.extend(shared_schemas());
        paths.insert("/health".into(), health_path());
        paths.extend(event_stream_paths());
        for command in commands {
            let (path, item) = command_path(command, &mut schemas);
            paths.insert(path, item);
        }
        document["paths"] = Value::Object(paths);
        document["components"]["schemas"] = Value::Object(schemas);
        let mut bytes = serde_json::to_vec_pretty(&document).expect("JSON values serialize");
        bytes.push(b'\n');
        Self {
            value: document,
            bytes: bytes.into(),
        }
    }

    /// The document as JSON.
    pub(crate) fn value(&self) -> &Value {
        &self.value
    }
}

impl IntoResponse for Document {
    fn into_response(self) -> Response {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            self.bytes,
        )
            .into_response()
    }
}

/// A user document without a title or version still needs both.
fn fill_info(document: &mut Value) {
    let info = &mut document["info"];
    if info["title"].as_str().is_none_or(str::is_empty) {
        info["title"] = json!("AllFrame service");
    }
    if info["version"].as_str().is_none_or(str::is_empty) {
        info["version"] = json!("0.0.0");
    }
}

fn take_object(parent: &mut Value, key: &str) -> Map<String, Value> {
    match parent.get_mut(key).map(Value::take) {
        Some(Value::Object(object)) => object,
        _ => Map::new(),
    }
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// `open-account` → `OpenAccount`.
fn pascal_case(name: &str) -> String {
    name.split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// A component name may hold only letters, digits, `.`, `-` and `_`.
fn component_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The path item for one command, adding its schemas to `schemas`.
fn command_path(command: &Description, schemas: &mut Map<String, Value>) -> (String, Value) {
    let (body, referenced) = command.body.clone().into_parts();
    schemas.extend(referenced);
    let (summary, description) = split_description(&body);
    let body_name = pascal_case(command.name);
    schemas.insert(body_name.clone(), body);
    let outcome = outcome_schema(command, schemas);
    let success = if command.creates { "201" } else { "200" };
    let mut responses = BTreeMap::new();
    responses.insert(
        success.to_owned(),
        json!({
            "description": if command.creates {
                "Created: the new aggregate's id and its recorded events."
            } else {
                "Done: the recorded events (none when nothing changed)."
            },
            "headers": {
                "ETag": header_doc("The stream's version after the command, quoted."),
                "Idempotency-Replayed": header_doc(
                    "`true` when this is the stored response to an earlier call with the same `Idempotency-Key`.",
                ),
                "X-Correlation-Id": header_doc("The request's correlation id."),
            },
            "content": { "application/json": { "schema": reference(&outcome) } },
        }),
    );
    for (status, text) in failures(command) {
        responses.insert(status.to_string(), problem_response(&text));
    }
    let mut operation = json!({
        "operationId": command.name,
        "tags": [command.aggregate],
        "parameters": command_headers(),
        "requestBody": {
            "required": true,
            "content": { "application/json": { "schema": reference(&body_name) } },
        },
        "responses": responses,
    });
    if let Some(summary) = summary {
        operation["summary"] = json!(summary);
    }
    if let Some(description) = description {
        operation["description"] = json!(description);
    }
    (
        format!("/commands/{}", command.name),
        json!({ "post": operation }),
    )
}

/// The first paragraph of a schema's description is the summary.
fn split_description(schema: &Value) -> (Option<String>, Option<String>) {
    let Some(text) = schema.get("description").and_then(Value::as_str) else {
        return (None, None);
    };
    match text.split_once("\n\n") {
        Some((summary, rest)) => (
            Some(summary.replace('\n', " ")),
            Some(rest.trim().to_owned()),
        ),
        None => (Some(text.replace('\n', " ")), None),
    }
}

/// Every failure status the command route can answer with, and why.
fn failures(command: &Description) -> BTreeMap<u16, String> {
    let mut failures = BTreeMap::from([
        (
            400,
            "Malformed JSON, a body that does not fit the schema, a content type other than JSON, or a malformed header.".to_owned(),
        ),
        (
            409,
            "A concurrency conflict outlasted the retries, or a request with the same `Idempotency-Key` is still in flight.".to_owned(),
        ),
        (412, "`If-Match` does not match the stream's version.".to_owned()),
        (413, "The body is over the size limit.".to_owned()),
        (
            422,
            "Validation failed (`errors` points at each field), or the `Idempotency-Key` was used before with a different body.".to_owned(),
        ),
        (500, "The service failed; the cause is logged, not sent.".to_owned()),
    ]);
    if !command.creates {
        failures.insert(404, "The aggregate does not exist.".to_owned());
    }
    for (code, status) in command.refusals {
        let text = failures
            .entry(*status)
            .or_insert_with(|| "Refused.".to_owned());
        text.push_str(&format!(" Refused: `/problems/{code}`."));
    }
    failures
}

fn problem_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/problem+json": { "schema": reference("Problem") } },
    })
}

fn header_doc(description: &str) -> Value {
    json!({ "description": description, "schema": { "type": "string" } })
}

fn command_headers() -> Value {
    let header = |name: &str, description: &str, schema: Value| {
        json!({ "name": name, "in": "header", "required": false,
                "description": description, "schema": schema })
    };
    json!([
        header(
            "Idempotency-Key",
            "Makes the command safe to retry: a repeat gets the first response back.",
            json!({ "type": "string", "minLength": 1, "maxLength": 255 }),
        ),
        header(
            "If-Match",
            "The stream version the command expects, quoted (`\"3\"`), or `*`.",
            json!({ "type": "string", "pattern": "^(\\*|\"[0-9]+\")$" }),
        ),
        header(
            "X-Correlation-Id",
            "Flows into the events' `metadata.correlation_id`; generated when absent.",
            json!({ "type": "string", "minLength": 1, "maxLength": 255 }),
        ),
    ])
}

/// The outcome schema for the command's aggregate, with its typed events;
/// returns its name.
fn outcome_schema(command: &Description, schemas: &mut Map<String, Value>) -> String {
    let outcome = format!("{}Outcome", component_name(command.aggregate));
    if schemas.contains_key(&outcome) {
        return outcome;
    }
    let event = component_name(command.event);
    let mut variants = Vec::new();
    for (event_type, data) in &command.events {
        let (data, referenced) = data.clone().into_parts();
        schemas.extend(referenced);
        let name = format!("{event}.{}", component_name(event_type));
        schemas.insert(
            name.clone(),
            json!({
                "allOf": [
                    reference("RecordedEvent"),
                    {
                        "type": "object",
                        "properties": { "type": { "const": event_type }, "data": data },
                    },
                ],
            }),
        );
        variants.push(reference(&name));
    }
    schemas.insert(
        event.clone(),
        json!({
            "description": format!("One of the events of the `{}` aggregate.", command.aggregate),
            "oneOf": variants,
        }),
    );
    schemas.insert(
        outcome.clone(),
        json!({
            "type": "object",
            "description": format!("What a command did to a `{}`.", command.aggregate),
            "required": ["stream_id", "aggregate_id", "version", "position", "events"],
            "properties": {
                "stream_id": { "type": "string", "description": "The aggregate's stream." },
                "aggregate_id": { "type": "string", "description": "The aggregate's id." },
                "version": { "type": "integer", "minimum": 0,
                             "description": "The stream's version after the command." },
                "position": { "type": ["integer", "null"], "minimum": 1,
                              "description": "The global position of the last recorded event; null when none was recorded." },
                "events": { "type": "array", "items": reference(&event) },
            },
        }),
    );
    outcome
}

fn health_path() -> Value {
    json!({
        "get": {
            "operationId": "health",
            "tags": ["service"],
            "summary": "Whether the service and its event store answer.",
            "responses": {
                "200": {
                    "description": "The store answers.",
                    "content": { "application/json": { "schema": reference("Health") } },
                },
                "503": problem_response("The event store does not answer."),
            },
        }
    })
}

/// `GET /events/ws` and `GET /events/sse`: the same filters, the same
/// RecordedEvent per message.
fn event_stream_paths() -> Map<String, Value> {
    use super::stream_params::PARAMETERS;
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
    let refused = |what: &str| {
        problem_response(&format!(
            "{what}: too many connections, shutting down, or the store does not answer; \
             `Retry-After` says when to try again."
        ))
    };
    let bad_parameters = problem_response(
        "A bad or unknown parameter (checked before the stream starts), or not a request for this kind of stream.",
    );
    let message = reference("RecordedEvent");
    let mut sse_parameters = parameters.clone();
    sse_parameters.push(json!({
        "name": "Last-Event-ID", "in": "header", "required": false,
        "description": "Resume after this position; sent by a reconnecting `EventSource`, and takes precedence over `after`.",
        "schema": { "type": "integer", "minimum": 0 },
    }));
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
            "responses": {
                "101": {
                    "description": "Switching Protocols: each message is a `RecordedEvent`.",
                    "x-message": message,
                },
                "400": bad_parameters,
                "503": refused("No WebSocket now"),
            },
        }},
        "/events/sse": { "get": {
            "operationId": "events-sse",
            "tags": ["events"],
            "summary": "The event log as server-sent events.",
            "description": "One `message` per event: `id:` is its position and `data:` the \
                `RecordedEvent` as JSON, in ascending `position`; stored events after `after` \
                (or `Last-Event-ID`), then live ones. Comments keep an idle stream alive.",
            "parameters": sse_parameters,
            "responses": {
                "200": {
                    "description": "The stream; each `data:` line is a `RecordedEvent`.",
                    "content": { "text/event-stream": { "schema": { "type": "string" } } },
                    "x-message": message,
                },
                "400": bad_parameters,
                "503": refused("No event stream now"),
            },
        }},
    });
    match paths {
        Value::Object(paths) => paths,
        _ => unreachable!("a JSON object literal"),
    }
}

/// Problem, RecordedEvent and the other shapes every service shares.
fn shared_schemas() -> Map<String, Value> {
    let schemas = json!({
        "Problem": {
            "type": "object",
            "description": "An RFC 9457 problem: what went wrong, in a form a client can act on.",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": { "type": "string", "description": "Names the kind of problem: `/problems/{code}`, stable." },
                "title": { "type": "string", "description": "A short summary of the kind." },
                "status": { "type": "integer", "description": "The HTTP status code." },
                "detail": { "type": "string", "description": "What happened this time." },
                "errors": { "type": "array", "items": reference("FieldError"),
                            "description": "One entry per invalid field." },
            },
        },
        "FieldError": {
            "type": "object",
            "required": ["pointer", "detail"],
            "properties": {
                "pointer": { "type": "string", "description": "RFC 6901 pointer into the body, e.g. `/amount`." },
                "detail": { "type": "string", "description": "What is wrong with the value." },
            },
        },
        "RecordedEvent": {
            "type": "object",
            "description": "An event as the store recorded it.",
            "required": ["position", "stream_id", "version", "type", "schema_version", "data", "metadata", "recorded_at"],
            "properties": {
                "position": { "type": "integer", "minimum": 1, "description": "Global position in the log: strictly increasing, gap-safe." },
                "stream_id": { "type": "string", "description": "`{category}-{id}`." },
                "version": { "type": "integer", "minimum": 1, "description": "1-based position in its stream." },
                "type": { "type": "string", "description": "The event's stored type name." },
                "schema_version": { "type": "integer", "minimum": 1 },
                "data": { "type": "object", "description": "The event's fields." },
                "metadata": reference("Metadata"),
                "recorded_at": { "type": "string", "format": "date-time" },
            },
        },
        "Metadata": {
            "type": "object",
            "description": "Who and what caused an event; may carry further caller-defined fields.",
            "required": ["event_id"],
            "properties": {
                "event_id": { "type": "string", "format": "uuid" },
                "correlation_id": { "type": "string" },
                "causation_id": { "type": "string" },
                "command": { "type": "string", "description": "The command that recorded it." },
            },
            "additionalProperties": true,
        },
        "Health": {
            "type": "object",
            "required": ["status", "head_position"],
            "properties": {
                "status": { "type": "string", "const": "ok" },
                "head_position": { "type": "integer", "minimum": 0,
                                   "description": "The position of the last committed event." },
            },
        },
    });
    match schemas {
        Value::Object(schemas) => schemas,
        _ => unreachable!("a JSON object literal"),
    }
}

#[cfg(test)]
mod tests {
    use super::{component_name, pascal_case, split_description};
    use serde_json::json;

    #[test]
    fn names() {
        assert_eq!(pascal_case("open-account"), "OpenAccount");
        assert_eq!(pascal_case("v2-x"), "V2X");
        assert_eq!(component_name("account:opened"), "account_opened");
    }

    #[test]
    fn the_first_paragraph_is_the_summary() {
        let schema = json!({ "description": "Opens an account.\n\nThe id is the server's." });
        assert_eq!(
            split_description(&schema),
            (
                Some("Opens an account.".into()),
                Some("The id is the server's.".into())
            )
        );
        assert_eq!(split_description(&json!({})), (None, None));
    }
}
