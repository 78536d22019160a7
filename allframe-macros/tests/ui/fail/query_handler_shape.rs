//! `#[query_handler]` shape mistakes, each at its own span.
use allframe::{Dep, ProjectionError, Projections};
use serde::{Deserialize, Serialize};

#[allframe::query]
#[derive(Deserialize, garde::Validate)]
struct Over {
    #[garde(skip)]
    min: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Answer {
    total: u64,
}

#[allframe::query_handler(fast)]
fn not_async(query: &Over, projections: Projections) -> Answer {
    let _ = (query, projections);
    Answer { total: 0 }
}

#[allframe::query_handler]
async fn too_few() -> Result<Answer, ProjectionError> {
    Ok(Answer { total: 0 })
}

#[allframe::query_handler]
async fn extra(query: Over, projections: &mut Projections, clock: u64) -> Result<Answer, ProjectionError> {
    let _ = (query, projections, clock);
    Ok(Answer { total: 0 })
}

#[allframe::query_handler]
async fn generic<T>(query: Over, projections: &Projections, _: Dep<T>) -> Result<Answer, ProjectionError> {
    let _ = (query, projections);
    Ok(Answer { total: 0 })
}

fn main() {}
