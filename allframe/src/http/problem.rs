//! RFC 9457 problem details: every error response is
//! `application/problem+json` with a stable `type` per kind.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::command::{CommandError, FieldError};

/// The media type of problem responses.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem: what went wrong, in a form clients can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct Problem {
    /// A stable URI reference naming the kind of problem, `/problems/{code}`.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What happened this time.
    pub detail: String,
    /// Validation failures, one per field (RFC 6901 pointers); absent when
    /// there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Further members particular to this kind of problem (RFC 9457
    /// extension members), e.g. `projection` and `position` of
    /// `projection-failed`.
    #[serde(flatten)]
    #[schema(value_type = std::collections::BTreeMap<String, serde_json::Value>)]
    pub extensions: Box<serde_json::Map<String, serde_json::Value>>,
}

impl Problem {
    /// A problem of kind `code` (kebab-case) with the given status.
    pub fn new(
        status: u16,
        code: &str,
        title: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            problem_type: format!("/problems/{code}"),
            title: title.into(),
            status,
            detail: detail.into(),
            errors: Vec::new(),
            extensions: Box::default(),
        }
    }

    /// Adds the extension member `name`.
    pub fn with(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extensions.insert(name.to_owned(), value.into());
        self
    }

    /// A problem of `kind`, saying `detail`.
    pub fn of(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self::new(kind.status, kind.code, kind.title, detail)
    }

    /// Whether it is a problem of `kind`.
    pub fn is(&self, kind: ProblemKind) -> bool {
        self.status == kind.status
            && self.problem_type.strip_prefix("/problems/") == Some(kind.code)
    }

    /// A 500 that says nothing about its cause (log the cause instead).
    pub fn internal() -> Self {
        Self::of(
            super::kinds::INTERNAL_ERROR,
            "The server failed to handle the request; the cause has been logged.",
        )
    }

    /// 400: the request itself is malformed.
    pub fn bad_request(code: &str, detail: impl Into<String>) -> Self {
        Self::new(400, code, "Bad request", detail)
    }

    /// 404: nothing under this name.
    pub fn not_found(code: &str, detail: impl Into<String>) -> Self {
        Self::new(404, code, "Not found", detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).expect("a problem always serializes");
        let mut response = (status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}

/// A kind of problem: its HTTP status, stable code and title. The
/// framework's own are the constants in [`kinds`](super::kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProblemKind {
    /// The HTTP status.
    pub status: u16,
    /// The stable kebab-case code; the problem's `type` is
    /// `/problems/{code}`.
    pub code: &'static str,
    /// A short summary of the kind.
    pub title: &'static str,
}

/// An error the HTTP layer answers with: every such error implements it,
/// and `Problem::from` turns it into the answer. A 500 says nothing about
/// its cause, which is logged instead; any other status sends the error's
/// `Display` as the `detail`. Implement it for your own routes' errors to
/// answer the same way.
pub trait HttpError: std::error::Error {
    /// Its status, code and title.
    fn kind(&self) -> ProblemKind;

    /// Adds what the kind carries beyond `detail`: field errors, RFC 9457
    /// extension members. None by default.
    fn extend(&self, problem: Problem) -> Problem {
        problem
    }
}

impl<E: HttpError> From<E> for Problem {
    fn from(error: E) -> Self {
        let kind = error.kind();
        if kind.status == 500 {
            tracing::error!(%error, source = ?std::error::Error::source(&error), "request failed");
            return Self::internal();
        }
        let problem = Self::new(kind.status, kind.code, kind.title, error.to_string());
        error.extend(problem)
    }
}

impl<E: crate::command::DomainError> HttpError for CommandError<E> {
    fn kind(&self) -> ProblemKind {
        self.problem_kind()
    }

    fn extend(&self, mut problem: Problem) -> Problem {
        if let CommandError::Validation(errors) = self {
            problem.errors = errors.clone();
        }
        problem
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_say_nothing_internal() {
        let error: CommandError = CommandError::Store(crate::StoreError::Backend(
            "password=hunter2 connection refused".into(),
        ));
        let problem = Problem::from(error);
        assert_eq!(problem.status, 500);
        assert!(!problem.detail.contains("hunter2"));
        assert_eq!(problem.problem_type, "/problems/internal-error");
    }

    #[test]
    fn validation_problems_carry_pointers() {
        let error: CommandError = CommandError::Validation(vec![FieldError {
            pointer: "/amount".into(),
            detail: "lower than 1".into(),
        }]);
        let problem = Problem::from(error);
        let json = serde_json::to_value(&problem).unwrap();
        assert_eq!(json["type"], "/problems/validation-failed");
        assert_eq!(json["status"], 422);
        assert_eq!(json["errors"][0]["pointer"], "/amount");
    }
}
