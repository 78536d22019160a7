//! `GET /queries/{name}?...`: runs a registered query handler with the
//! query string as its parameters (`min_position` aside, which waits
//! until every projection has reached it, as a handler may read any).

use axum::extract::{RawQuery, State};
use axum::response::Response;

use super::extract::PathParams;
use super::problem::Problem;
use super::reads::{ReadRoutes, finish, json, parameters, take_min_position};
use crate::query::QueryError;

pub(crate) async fn query(
    State(reads): State<ReadRoutes>,
    PathParams(name): PathParams<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let read = async {
        if !reads.queries.contains(&name) {
            return Err(answer(QueryError::Unknown(name.clone())));
        }
        let mut pairs = parameters(raw.as_deref())?;
        let min_position = take_min_position(&mut pairs)?;
        let rest = serde_urlencoded::to_string(&pairs).expect("decoded pairs encode again");
        if let Some(position) = min_position {
            reads
                .queries
                .wait_for(position, reads.wait)
                .await
                .map_err(super::reads::problem)?;
        }
        // Read before the handler runs: its answer reflects at least this.
        let position = reads.queries.position();
        let answer = reads.queries.run(&name, &rest).await.map_err(answer)?;
        Ok(json(&answer, position))
    };
    finish(read.await)
}

/// The problem answer for a query error; 5xx causes are logged, not sent.
fn answer(error: QueryError) -> Problem {
    let status = error.status();
    if status >= 500 {
        tracing::error!(%error, source = ?std::error::Error::source(&error), "query failed");
        return Problem::internal();
    }
    let title = match &error {
        QueryError::Unknown(_) => "Unknown query",
        QueryError::BadParameters(_) | QueryError::UnknownParameter { .. } => "Bad request",
        QueryError::Validation(_) => "Validation failed",
        _ => "Refused by the domain",
    };
    let mut problem = Problem::new(status, error.code(), title, error.to_string());
    if let QueryError::Validation(errors) = error {
        problem.errors = errors;
    }
    problem
}
