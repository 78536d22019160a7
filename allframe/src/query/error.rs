//! Why a query was not answered: the client's mistakes (unknown query, a
//! query string that does not deserialize, garde's findings), the domain's
//! refusal, or the system failing.

use crate::command::{DomainError, FieldError, Rejection};
use crate::http::kinds;
use crate::http::problem::{HttpError, Problem, ProblemKind};
use crate::projection::ProjectionError;

/// Why a query was not answered, generic over the handler's domain error
/// (erased to [`Rejection`] when run by name).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError<E = Rejection> {
    /// No query has this name.
    #[error("there is no query `{0}`")]
    Unknown(String),
    /// The query string does not fit the query's fields.
    #[error("the query string does not fit the query: {0}")]
    BadParameters(String),
    /// The query string names a parameter the query does not have.
    #[error("`{parameter}` is not a parameter of query `{query}`; its parameters are: {known}")]
    UnknownParameter {
        /// The query.
        query: String,
        /// The name given.
        parameter: String,
        /// The query's parameters, comma-separated.
        known: String,
    },
    /// garde refused the parameters; pointers use wire names.
    #[error("the query's parameters are invalid")]
    Validation(Vec<FieldError>),
    /// The query's authorization hook refused the caller, for this
    /// reason.
    #[error("{0}")]
    Forbidden(String),
    /// The handler refused.
    #[error(transparent)]
    Domain(E),
    /// A `Dep<T>` has no provider (the app's start-up check prevents it).
    #[error("no provider for dependency `{0}`")]
    MissingDependency(&'static str),
    /// The answer does not serialize.
    #[error("the answer does not serialize: {0}")]
    Output(#[source] serde_json::Error),
    /// The handler failed for a reason of the system's (a 5xx "refusal",
    /// such as a projection read that failed): not the domain's answer, so
    /// logged and answered as a 500 that says nothing of its cause.
    #[error("the query failed: {0}")]
    Failed(String),
}

impl<E: DomainError> HttpError for QueryError<E> {
    fn kind(&self) -> ProblemKind {
        self.problem_kind()
    }

    fn extend(&self, mut problem: Problem) -> Problem {
        if let Self::Validation(errors) = self {
            problem.errors = errors.clone();
        }
        problem
    }
}

impl<E: DomainError> QueryError<E> {
    /// Its status, code and title over HTTP; a domain error's own code and
    /// status.
    pub(crate) fn problem_kind(&self) -> ProblemKind {
        match self {
            Self::Unknown(_) => kinds::UNKNOWN_QUERY,
            Self::BadParameters(_) => kinds::INVALID_QUERY_PARAMETERS,
            Self::UnknownParameter { .. } => kinds::UNKNOWN_PARAMETER,
            Self::Validation(_) => kinds::VALIDATION_FAILED,
            Self::Forbidden(_) => kinds::FORBIDDEN,
            Self::Domain(error) => ProblemKind {
                status: error.status(),
                code: error.code(),
                title: "Refused by the domain",
            },
            Self::MissingDependency(_) | Self::Output(_) | Self::Failed(_) => kinds::INTERNAL_ERROR,
        }
    }

    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        self.problem_kind().status
    }

    /// The stable problem code.
    pub fn code(&self) -> &'static str {
        self.problem_kind().code
    }

    /// Erases the domain error.
    pub fn erase(self) -> QueryError {
        match self {
            Self::Unknown(name) => QueryError::Unknown(name),
            Self::BadParameters(detail) => QueryError::BadParameters(detail),
            Self::UnknownParameter {
                query,
                parameter,
                known,
            } => QueryError::UnknownParameter {
                query,
                parameter,
                known,
            },
            Self::Validation(errors) => QueryError::Validation(errors),
            Self::Forbidden(reason) => QueryError::Forbidden(reason),
            // A 5xx is the system failing, whatever type carried it.
            Self::Domain(error) if error.status() >= 500 => QueryError::Failed(error.to_string()),
            Self::Domain(error) => QueryError::Domain(Rejection::from_domain(&error)),
            Self::MissingDependency(name) => QueryError::MissingDependency(name),
            Self::Output(error) => QueryError::Output(error),
            Self::Failed(message) => QueryError::Failed(message),
        }
    }
}

/// A query handler can use `?` on projection reads: any failure there is
/// the system's (the handler built the read), a 500 whose cause is logged.
impl DomainError for ProjectionError {
    const CODES: &'static [(&'static str, u16)] = &[];

    fn code(&self) -> &'static str {
        "internal-error"
    }

    fn status(&self) -> u16 {
        500
    }
}
