//! `GET /queries/{name}?...`: runs a registered query handler with the
//! query string as its parameters (`min_position` aside, which waits
//! until every projection has reached it, as a handler may read any).

use axum::extract::{RawQuery, State};
use axum::response::Response;

use super::extract::PathParams;
use super::problem::Problem;
use super::reads::{ReadRoutes, finish, json, parameters, take_min_position};
use crate::auth::Principal;
use crate::command::Rejection;
use crate::query::QueryError;

pub(crate) async fn query(
    State(reads): State<ReadRoutes>,
    PathParams(name): PathParams<String>,
    RawQuery(raw): RawQuery,
    principal: Option<Principal>,
) -> Response {
    let read = async {
        if !reads.queries.contains(&name) {
            return Err(Problem::from(QueryError::<Rejection>::Unknown(
                name.clone(),
            )));
        }
        let mut pairs = parameters(raw.as_deref())?;
        let min_position = take_min_position(&mut pairs)?;
        let rest = serde_urlencoded::to_string(&pairs).expect("decoded pairs encode again");
        if let Some(position) = min_position {
            reads
                .queries
                .wait_for(position, reads.wait)
                .await
                .map_err(Problem::from)?;
        }
        // Read before the handler runs: its answer reflects at least this.
        let position = reads.queries.position();
        let answer = reads
            .queries
            .run_as(&name, &rest, principal.as_ref())
            .await
            .map_err(Problem::from)?;
        Ok(json(&answer, position))
    };
    finish(read.await)
}
