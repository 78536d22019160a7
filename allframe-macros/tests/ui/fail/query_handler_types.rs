//! Type mistakes of a `#[query_handler]`, reported at the parameter or
//! return type that made them: a query that is not a query, an answer
//! without a schema, an error that is not a domain error.
use allframe::{ProjectionError, Projections};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct NotAQuery {
    min: u64,
}

#[allframe::query]
#[derive(Deserialize, garde::Validate)]
struct Over {
    #[garde(skip)]
    min: u64,
}

#[derive(Serialize)]
struct NoSchema {
    total: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Answer {
    total: u64,
}

#[derive(Debug)]
struct NotADomainError;

#[allframe::query_handler]
async fn wrong_query(query: NotAQuery, _: &Projections) -> Result<Answer, ProjectionError> {
    Ok(Answer { total: query.min })
}

#[allframe::query_handler]
async fn wrong_answer(query: Over, _: &Projections) -> Result<NoSchema, ProjectionError> {
    Ok(NoSchema { total: query.min })
}

#[allframe::query_handler]
async fn wrong_error(query: Over, _: &Projections) -> Result<Answer, NotADomainError> {
    Ok(Answer { total: query.min })
}

fn main() {}
