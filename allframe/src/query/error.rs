//! Why a query was not answered: the client's mistakes (unknown query, a
//! query string that does not deserialize, garde's findings), the domain's
//! refusal, or the system failing.

use crate::command::{DomainError, FieldError, Rejection};
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
    /// The handler refused.
    #[error(transparent)]
    Domain(E),
    /// A `Dep<T>` has no provider (the app's start-up check prevents it).
    #[error("no provider for dependency `{0}`")]
    MissingDependency(&'static str),
    /// The answer does not serialize.
    #[error("the answer does not serialize: {0}")]
    Output(#[source] serde_json::Error),
}

impl<E: DomainError> QueryError<E> {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Self::Unknown(_) => 404,
            Self::BadParameters(_) | Self::UnknownParameter { .. } => 400,
            Self::Validation(_) => 422,
            Self::Domain(error) => error.status(),
            Self::MissingDependency(_) | Self::Output(_) => 500,
        }
    }

    /// The stable problem code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unknown(_) => "unknown-query",
            Self::BadParameters(_) => "invalid-query-parameters",
            Self::UnknownParameter { .. } => "unknown-parameter",
            Self::Validation(_) => "validation-failed",
            Self::Domain(error) => error.code(),
            Self::MissingDependency(_) | Self::Output(_) => "internal-error",
        }
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
            Self::Domain(error) => QueryError::Domain(Rejection::from_domain(&error)),
            Self::MissingDependency(name) => QueryError::MissingDependency(name),
            Self::Output(error) => QueryError::Output(error),
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
