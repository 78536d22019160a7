//! The command operations: one path per command, its body, its typed
//! outcome and every status the command route answers with.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::service::{derived, to_json};
use super::{
    ProblemKind, component_name, header_doc, problem_response, reference, routes, split_description,
};
use crate::command::CommandOutcome;
use crate::command::registry::Description;
use crate::saga::SagaStarted;

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

/// The path item for one command, adding its schemas to `schemas`.
pub(super) fn command_path(
    command: &Description,
    schemas: &mut Map<String, Value>,
) -> (String, Value) {
    let (body, referenced) = command.body.clone().into_parts();
    schemas.extend(referenced);
    let (summary, description) = split_description(&body);
    let body_name = pascal_case(command.name);
    schemas.insert(body_name.clone(), body);
    let mut responses = BTreeMap::new();
    match command.saga {
        Some(saga) => {
            derived::<SagaStarted>(schemas);
            responses.insert(
                "202".to_owned(),
                json!({
                    "description": format!(
                        "Accepted: a `{saga}` saga was started and will reach an end even if the service stops; `Location` (`/sagas/{saga}/{{saga_id}}`) follows it."
                    ),
                    "headers": {
                        "Location": header_doc("The new saga instance's status."),
                        "Idempotency-Replayed": header_doc(
                            "`true` when this is the stored response to an earlier call with the same `Idempotency-Key`.",
                        ),
                        "X-Correlation-Id": header_doc("The request's correlation id."),
                    },
                    "content": { "application/json": { "schema": reference("SagaStarted") } },
                }),
            );
        }
        None => {
            let outcome = outcome_schema(command, schemas);
            let success = if command.creates { "201" } else { "200" };
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
        }
    }
    for (status, text) in failures(command) {
        responses.insert(status.to_string(), problem_response(&text));
    }
    if let Some(unavailable) = responses.get_mut("503") {
        unavailable["headers"] = json!({ "Retry-After": header_doc(
            "Seconds to wait before retrying."
        ) });
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

/// `GET /admin/sagas`, adding its schema to `schemas`.
pub(super) fn admin_sagas_path(schemas: &mut Map<String, Value>) -> Value {
    derived::<crate::saga::SagaStatus>(schemas);
    let texts = [(503, "The event store does not answer.")];
    let mut responses = super::problem_responses(&[routes::ADMIN_SAGAS], &texts);
    responses.insert(
        "200".into(),
        json!({ "description": "Every saga, sorted by name: its runner's state and checkpoint, its instances by status, and those overdue.",
                "content": { "application/json": { "schema": {
                    "type": "array", "items": reference("SagaStatus") } } } }),
    );
    json!({ "get": {
        "operationId": "list-sagas",
        "tags": ["admin"],
        "summary": "Every saga's runner and a tally of its instances.",
        "responses": responses,
    }})
}

/// `GET /sagas/{name}/{id}` for the sagas `names`, adding its schema to
/// `schemas`.
pub(super) fn saga_path(names: &[&str], schemas: &mut Map<String, Value>) -> Value {
    const TEXTS: &[(u16, &str)] = &[
        (
            404,
            "There is no saga by this name (`unknown-saga`), or it has no instance with this id (`saga-not-found`).",
        ),
        (503, "The event store does not answer."),
    ];
    derived::<crate::saga::SagaView>(schemas);
    let mut responses = super::problem_responses(&[routes::SAGA], TEXTS);
    responses.insert(
        "200".into(),
        json!({ "description": "The instance: its status, how many decisions it recorded, when it started and ended, and why it ended so.",
                "content": { "application/json": { "schema": reference("SagaView") } } }),
    );
    json!({ "get": {
        "operationId": "get-saga",
        "tags": ["sagas"],
        "summary": "One saga instance's status.",
        "parameters": [
            { "name": "name", "in": "path", "required": true,
              "schema": { "type": "string", "enum": names } },
            { "name": "id", "in": "path", "required": true,
              "schema": { "type": "string", "minLength": 1 } },
        ],
        "responses": responses,
    }})
}

/// Every failure status the command route can answer with, and why: the
/// statuses of its [`routes`] kinds and the domain's refusals.
fn failures(command: &Description) -> BTreeMap<u16, String> {
    const TEXTS: &[(u16, &str)] = &[
        (
            400,
            "Malformed JSON, a content type other than JSON, or a malformed header.",
        ),
        (404, "The aggregate does not exist."),
        (
            409,
            "A concurrency conflict outlasted the retries, or a request with the same `Idempotency-Key` is still in flight.",
        ),
        (412, "`If-Match` does not match the stream's version."),
        (413, "The body is over the size limit."),
        (
            422,
            "JSON that does not fit the command's schema (`invalid-command`), validation failed (`errors` points at each field), or the `Idempotency-Key` was used before with a different body.",
        ),
        (500, "The service failed; the cause is logged, not sent."),
        (
            503,
            "The aggregate's stream holds an event written by a newer release (`waiting-for-upgrade`, during a rolling deploy), the event store cannot be reached (`store-unavailable`), or the command did not finish within the service's command timeout (`command-timed-out`); after the last two it may still have taken effect, so send it again with the same `Idempotency-Key` to learn its outcome. `Retry-After` says when to try again.",
        ),
    ];
    let lists: &[&[ProblemKind]] = if command.creates {
        &[routes::COMMAND]
    } else {
        &[routes::COMMAND, routes::COMMAND_ON_EXISTING]
    };
    let mut failures: BTreeMap<u16, String> = routes::statuses(lists)
        .into_iter()
        .map(|status| {
            let text = TEXTS
                .iter()
                .find(|(described, _)| *described == status)
                .map_or("Refused.", |(_, text)| text);
            (status, text.to_owned())
        })
        .collect();
    for (code, status) in command.refusals {
        let text = failures
            .entry(*status)
            .or_insert_with(|| "Refused.".to_owned());
        text.push_str(&format!(" Refused: `/problems/{code}`."));
    }
    failures
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
    // The outcome is derived from the type the route serializes; only what
    // differs per aggregate is set here: its events are this aggregate's.
    let mut schema = to_json(&<CommandOutcome as utoipa::PartialSchema>::schema());
    schema["description"] = json!(format!("What a command did to a `{}`.", command.aggregate));
    schema["properties"]["events"]["items"] = reference(&event);
    schemas.insert(outcome.clone(), schema);
    outcome
}

#[cfg(test)]
mod tests {
    use super::pascal_case;
    use crate::http::openapi::{component_name, split_description};
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
