//! The OpenAPI 3.1 document, built once at start-up from the registry and
//! the user's utoipa routes, and served at `GET /openapi.json`.
//!
//! Every command gets its own path, `/commands/{name}`, so its body and
//! outcome have their own schemas; the responses listed are exactly the
//! statuses the command route can answer with. The document is plain JSON
//! with sorted keys, so the same program always writes the same bytes.

use axum::body::Bytes;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::command::registry::Description;
use crate::http::kinds::routes;
use crate::http::problem::ProblemKind;

mod commands;
mod reads;
mod service;

use commands::{admin_sagas_path, command_path, saga_path};
use service::{event_stream_paths, health_path, metrics_path, shared_schemas};

/// The name of the authenticator's scheme under `securitySchemes`.
const SECURITY_SCHEME: &str = "authenticated";
/// The operations of a path item.
const OPERATIONS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The built document, serialized once.
#[derive(Debug, Clone)]
pub(crate) struct Document {
    value: Value,
    bytes: Bytes,
}

impl Document {
    /// The document for `commands` added to the user's `base` document.
    pub(crate) fn build(
        commands: &[Description],
        sagas: &[&str],
        base: utoipa::openapi::OpenApi,
    ) -> Self {
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
        if !sagas.is_empty() {
            paths.insert("/sagas/{name}/{id}".into(), saga_path(sagas, &mut schemas));
        }
        paths.insert("/admin/sagas".into(), admin_sagas_path(&mut schemas));
        document["paths"] = Value::Object(paths);
        document["components"]["schemas"] = Value::Object(schemas);
        Self::from_value(document)
    }

    /// The document `value`, serialized.
    fn from_value(value: Value) -> Self {
        let mut bytes = serde_json::to_vec_pretty(&value).expect("JSON values serialize");
        bytes.push(b'\n');
        Self {
            value,
            bytes: bytes.into(),
        }
    }

    /// Says who may call what, once every path is in: with an
    /// authenticator's security `scheme`, every operation but `/health`'s
    /// needs it and may answer 401, and the admin operations 403; without
    /// one, every operation is open (`security: []`). The `guarded`
    /// operations (path, method, why: those with an authorization hook)
    /// may answer 403 either way. A document without `servers` gets this
    /// service's own root.
    pub(crate) fn secured(
        self,
        scheme: Option<Value>,
        guarded: &[(String, &'static str, &'static str)],
    ) -> Self {
        let mut document = self.value;
        if document["servers"].as_array().is_none_or(Vec::is_empty) {
            document["servers"] = json!([{ "url": "/", "description": "This service" }]);
        }
        for (path, method, why) in guarded {
            if let Some(operation) = document["paths"]
                .get_mut(path)
                .and_then(|item| item.get_mut(*method))
            {
                operation["responses"]["403"] = problem_response(why);
            }
        }
        let Some(scheme) = scheme else {
            document["security"] = json!([]);
            return Self::from_value(document);
        };
        document["components"]["securitySchemes"] = json!({ SECURITY_SCHEME: scheme });
        document["security"] = json!([{ SECURITY_SCHEME: [] }]);
        let paths = document["paths"]
            .as_object_mut()
            .expect("paths are an object");
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, operation) in item.iter_mut() {
                if !OPERATIONS.contains(&method.as_str()) {
                    continue;
                }
                if path == "/health" {
                    operation["security"] = json!([]);
                    continue;
                }
                operation["responses"]["401"] = problem_response(
                    "No credentials, or credentials the authenticator refused (`unauthenticated`; `WWW-Authenticate` names the scheme).",
                );
                if crate::auth::admin_only(path) {
                    operation["responses"]["403"] =
                        problem_response("The principal is not an admin (`forbidden`).");
                }
                if path == "/sagas/{name}/{id}" {
                    operation["responses"]["403"] = problem_response(
                        "Another principal started the instance, and this one is not an admin (`forbidden`).",
                    );
                }
            }
        }
        Self::from_value(document)
    }

    /// The document with `GET /metrics`.
    pub(crate) fn with_metrics(self) -> Self {
        let mut document = self.value;
        document["paths"]["/metrics"] = metrics_path();
        Self::from_value(document)
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

/// The problem responses of the statuses of `lists`' kinds (see
/// [`routes`]), each described by its entry in `texts`.
fn problem_responses(lists: &[&[ProblemKind]], texts: &[(u16, &str)]) -> Map<String, Value> {
    routes::statuses(lists)
        .into_iter()
        .map(|status| {
            let text = texts
                .iter()
                .find(|(described, _)| *described == status)
                .map_or("See the problem's `type`.", |(_, text)| text);
            (status.to_string(), problem_response(text))
        })
        .collect()
}

fn problem_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/problem+json": { "schema": reference("Problem") } },
    })
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

fn header_doc(description: &str) -> Value {
    json!({ "description": description, "schema": { "type": "string" } })
}
