//! The read side of the OpenAPI document: each projection's
//! `GET /projections/{name}/{key}` and `GET /projections/{name}`, each
//! query's `GET /queries/{name}` and the admin routes, with the row, page,
//! answer and status schemas. The statuses listed are the ones the read
//! routes answer with.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::{
    Document, ProblemKind, header_doc, problem_response, problem_responses, reference, routes,
    split_description, take_object,
};
use crate::projection::{MAX_LIMIT, ProjectionRegistration, Projections};
use crate::query::Queries;
use crate::query::registry::QueryDescription;

impl Document {
    /// Adds the read routes of `projections` and `queries`.
    pub(crate) fn with_reads(self, projections: &Projections, queries: &Queries) -> Self {
        let mut document = self.value;
        let mut paths = take_object(&mut document, "paths");
        let mut schemas = take_object(&mut document["components"], "schemas");
        for name in projections.names() {
            let registration = projections
                .registration(name)
                .expect("a listed projection is registered");
            projection_paths(registration, &mut paths, &mut schemas);
        }
        for query in queries.describe() {
            paths.insert(
                format!("/queries/{}", query.name),
                query_path(query, &mut schemas),
            );
        }
        admin_paths(&projections.names(), &mut paths);
        document["paths"] = Value::Object(paths);
        document["components"]["schemas"] = Value::Object(schemas);
        Self::from_value(document)
    }
}

/// The row's own type name, which is also its component name (rows
/// implement `ToSchema` under it, so query answers refer to the same one).
fn row_name(registration: &ProjectionRegistration) -> &'static str {
    let row = registration.row();
    row.rsplit("::").next().unwrap_or(row)
}

fn projection_paths(
    registration: &ProjectionRegistration,
    paths: &mut Map<String, Value>,
    schemas: &mut Map<String, Value>,
) {
    let name = registration.name();
    let row = row_name(registration);
    let (schema, referenced) = registration.schema().into_parts();
    schemas.extend(referenced);
    schemas.insert(row.to_owned(), schema);
    let page = format!("{row}Page");
    schemas.insert(
        page.clone(),
        json!({
            "type": "object",
            "description": format!("A page of `{name}` rows, in key order."),
            "required": ["items", "next_cursor"],
            "properties": {
                "items": { "type": "array", "items": reference(row) },
                "next_cursor": { "type": ["string", "null"],
                                 "description": "Pass as `cursor` for the next page; null on the last page." },
            },
        }),
    );
    let key = registration.key();
    let mut get_parameters = vec![json!({
        "name": key, "in": "path", "required": true, "schema": { "type": "string" },
        "description": format!("The row's key, its `{key}`."),
    })];
    get_parameters.push(min_position());
    let mut get_responses = read_responses(
        row,
        "The row.",
        routes::ROW,
        &[
            (
                400,
                "A parameter other than `min_position`, a malformed one, or a `min_position` beyond the log's head.",
            ),
            (404, "No row has this key (yet: see `AllFrame-Position`)."),
        ],
    );
    get_responses["404"]["headers"] = json!({ "AllFrame-Position": position_header() });
    paths.insert(
        format!("/projections/{name}/{{{key}}}"),
        json!({ "get": {
            "operationId": format!("get-{name}"),
            "tags": ["projections"],
            "summary": format!("One `{name}` row by its `{key}`."),
            "parameters": get_parameters,
            "responses": get_responses,
        }}),
    );
    let mut list_parameters = vec![
        json!({ "name": "limit", "in": "query", "required": false,
                "description": "Rows per page.",
                "schema": { "type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                            "default": crate::projection::DEFAULT_LIMIT } }),
        json!({ "name": "cursor", "in": "query", "required": false,
                "description": "The `next_cursor` of the previous page.",
                "schema": { "type": "string" } }),
    ];
    for field in registration.indexed_by() {
        list_parameters.push(json!({
            "name": field, "in": "query", "required": false,
            "description": format!("Only rows whose `{field}` is this (one indexed field at a time)."),
            "schema": { "type": "string" },
        }));
    }
    list_parameters.push(min_position());
    let list_responses = read_responses(
        &page,
        "A page of rows.",
        routes::LIST,
        &[(
            400,
            "A bad `limit`, `cursor` or `min_position`, an unknown parameter, or more than one filter.",
        )],
    );
    paths.insert(
        format!("/projections/{name}"),
        json!({ "get": {
            "operationId": format!("list-{name}"),
            "tags": ["projections"],
            "summary": format!("A page of `{name}` rows, in key order."),
            "parameters": list_parameters,
            "responses": list_responses,
        }}),
    );
}

fn query_path(query: QueryDescription, schemas: &mut Map<String, Value>) -> Value {
    let (parameters_schema, referenced) = query.parameters.into_parts();
    schemas.extend(referenced);
    let (output, referenced) = query.output.into_parts();
    schemas.extend(referenced);
    let output_name = super::component_name(&query.output_name);
    schemas.insert(output_name.clone(), output);
    let required: Vec<&str> = parameters_schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut parameters = Vec::new();
    if let Some(properties) = parameters_schema["properties"].as_object() {
        for (name, schema) in properties {
            let mut schema = schema.clone();
            let description = schema
                .as_object_mut()
                .and_then(|schema| schema.remove("description"));
            let mut parameter = json!({
                "name": name, "in": "query", "required": required.contains(&name.as_str()),
                "schema": schema,
            });
            if let Some(description) = description {
                parameter["description"] = description;
            }
            parameters.push(parameter);
        }
    }
    parameters.push(min_position());
    let mut responses = read_responses(
        &output_name,
        "The answer.",
        routes::QUERY,
        &[
            (
                400,
                "The query string does not fit the parameters, names one the query does not have, or has a bad `min_position`.",
            ),
            (
                422,
                "Validation failed (`errors` points at each parameter).",
            ),
        ],
    );
    let mut refused: BTreeMap<u16, String> = BTreeMap::new();
    for (code, status) in query.refusals {
        let text = refused.entry(*status).or_insert_with(|| {
            responses
                .get(&status.to_string())
                .and_then(|response| response["description"].as_str())
                .unwrap_or("Refused.")
                .to_owned()
        });
        text.push_str(&format!(" Refused: `/problems/{code}`."));
    }
    for (status, text) in refused {
        responses.insert(status.to_string(), problem_response(&text));
    }
    let mut operation = json!({
        "operationId": format!("query-{}", query.name),
        "tags": ["queries"],
        "parameters": parameters,
        "responses": responses,
    });
    let (summary, description) = split_description(&parameters_schema);
    if let Some(summary) = summary {
        operation["summary"] = json!(summary);
    }
    if let Some(description) = description {
        operation["description"] = json!(description);
    }
    json!({ "get": operation })
}

/// 200 (with the position header) and the problems of the read's kinds:
/// [`routes::WAITING_READ`] and `kinds`, described by `texts` (500 and 503
/// are described here, as every read answers them alike).
fn read_responses(
    schema: &str,
    description: &str,
    kinds: &[ProblemKind],
    texts: &[(u16, &str)],
) -> Map<String, Value> {
    let mut texts = texts.to_vec();
    texts.extend([
        (500, "The service failed; the cause is logged, not sent."),
        (
            503,
            "`min_position` was not reached: in time (`position-not-reached`, with `Retry-After`), or ever, because the projection failed before it (`projection-failed`, naming the `projection`, the `position` it failed at and a short `reason`), or not until a newer release runs it, because it paused at an event that release wrote (`waiting-for-upgrade`, with `Retry-After`, naming the `projection` and the `position`).",
        ),
    ]);
    let mut responses = problem_responses(&[routes::WAITING_READ, kinds], &texts);
    responses.insert(
        "200".into(),
        json!({
            "description": description,
            "headers": { "AllFrame-Position": position_header() },
            "content": { "application/json": { "schema": reference(schema) } },
        }),
    );
    responses["503"]["headers"] = json!({ "Retry-After": header_doc(
        "Seconds to wait before retrying (`position-not-reached` and `waiting-for-upgrade`)."
    ) });
    responses
}

fn position_header() -> Value {
    header_doc("The position the answer reflects: every event up to it, none after.")
}

fn min_position() -> Value {
    json!({
        "name": "min_position", "in": "query", "required": false,
        "description": "Wait (bounded) until the read reflects this position, e.g. the `position` a command answered with.",
        "schema": { "type": "integer", "minimum": 0 },
    })
}

fn admin_paths(names: &[&str], paths: &mut Map<String, Value>) {
    const TEXTS: &[(u16, &str)] = &[
        (404, "There is no projection by this name."),
        (500, "The service failed; the cause is logged, not sent."),
    ];
    let mut list_responses = problem_responses(&[routes::ADMIN_LIST], TEXTS);
    list_responses.insert(
        "200".into(),
        json!({ "description": "The projections, sorted by name.",
                "content": { "application/json": { "schema": {
                    "type": "array", "items": reference("ProjectionStatus") } } } }),
    );
    let mut action_responses = problem_responses(&[routes::ADMIN_ACTION], TEXTS);
    action_responses.insert(
        "202".into(),
        json!({ "description": "Started; the projection's status.",
                "content": { "application/json": { "schema": reference("ProjectionStatus") } } }),
    );
    paths.insert(
        "/admin/projections".into(),
        json!({ "get": {
            "operationId": "list-projections",
            "tags": ["admin"],
            "summary": "Every projection's progress: checkpoint, head, lag and state.",
            "responses": list_responses,
        }}),
    );
    for (action, summary) in [
        (
            "rebuild",
            "Rebuilds a projection beside the live one, which readers keep seeing until the new one has caught up.",
        ),
        (
            "restart",
            "Restarts a projection from its checkpoint, e.g. after a failure whose cause is fixed.",
        ),
    ] {
        paths.insert(
            format!("/admin/projections/{{name}}/{action}"),
            json!({ "post": {
                "operationId": format!("{action}-projection"),
                "tags": ["admin"],
                "summary": summary,
                "parameters": [{ "name": "name", "in": "path", "required": true,
                                 "schema": { "type": "string", "enum": names } }],
                "responses": action_responses,
            }}),
        );
    }
}
