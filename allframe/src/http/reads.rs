//! `GET /projections/{name}/{key}` and `GET /projections/{name}`: a
//! projection's rows by key, or a page of them in key order, filtered by
//! one indexed field.
//!
//! Every answer carries `AllFrame-Position`, the checkpoint the rows
//! reflect (read before the rows, so they reflect at least that); so does
//! a 404 for a key without a row.
//! `min_position=N` first waits, bounded, until the checkpoint is at least
//! `N`: a client that saw its command recorded at `N` reads its own write.

use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::errors::RequestError;
use super::extract::PathParams;
use super::kinds;
use super::problem::{HttpError, Problem, ProblemKind};
use crate::auth::Principal;
use crate::auth::guards::{ReadGuards, Refusal};
use crate::projection::{DEFAULT_LIMIT, ListQuery, ProjectionError, Projections};
use crate::query::Queries;

/// `AllFrame-Position`: the position every event up to which a read
/// reflects.
pub const ALLFRAME_POSITION: HeaderName = HeaderName::from_static("allframe-position");
/// The longest a read waits for `min_position` by default.
pub const DEFAULT_READ_WAIT: Duration = Duration::from_secs(5);
/// The parameter asking a read to wait for a position.
const MIN_POSITION: &str = "min_position";

/// What the read routes need.
#[derive(Clone)]
pub(crate) struct ReadRoutes {
    pub(crate) projections: Projections,
    pub(crate) queries: Queries,
    /// How long `min_position` may wait.
    pub(crate) wait: Duration,
    /// The authorization hooks of rows, lists and queries.
    pub(crate) guards: ReadGuards,
}

pub(super) async fn get_row(
    State(reads): State<ReadRoutes>,
    PathParams((name, key)): PathParams<(String, String)>,
    RawQuery(raw): RawQuery,
    principal: Option<Principal>,
) -> Response {
    let read = async {
        known(&reads.projections, &name)?;
        let mut parameters = parameters(raw.as_deref())?;
        let min_position = take_min_position(&mut parameters)?;
        if let Some((unknown, _)) = parameters.first() {
            return Err(RequestError::UnknownParameter(format!(
                "a row is read by key alone; `{unknown}` is not a parameter here"
            ))
            .into());
        }
        let position = settle(&reads, &name, min_position).await?;
        let row = reads
            .projections
            .get_text(&name, &key)
            .await
            .map_err(Problem::from)?;
        let Some(row) = row else {
            // A miss is an answer too: the position says how fresh it is,
            // so a client can tell "not yet" from "not there".
            let missing = RequestError::RowNotFound {
                projection: name.clone(),
                key: key.clone(),
            };
            let mut response = Problem::from(missing).into_response();
            response
                .headers_mut()
                .insert(ALLFRAME_POSITION, HeaderValue::from(position));
            return Ok(response);
        };
        match reads.guards.check_row(&name, principal.as_ref(), &row) {
            Ok(()) => Ok(json_text(row, position)),
            Err(Refusal::Forbidden(reason)) => Err(Problem::of(kinds::FORBIDDEN, reason)),
            Err(Refusal::Undecodable(error)) => {
                tracing::error!(projection = %name, %key, %error, "a row does not decode into its type, so its authorization hook could not see it");
                Err(Problem::of(
                    kinds::INTERNAL_ERROR,
                    "the row could not be checked",
                ))
            }
        }
    };
    finish(read.await)
}

pub(super) async fn list(
    State(reads): State<ReadRoutes>,
    PathParams(name): PathParams<String>,
    RawQuery(raw): RawQuery,
    principal: Option<Principal>,
) -> Response {
    let read = async {
        let indexed = known(&reads.projections, &name)?;
        let mut parameters = parameters(raw.as_deref())?;
        let min_position = take_min_position(&mut parameters)?;
        let mut query = ListQuery::new();
        let mut seen = Vec::new();
        for (key, value) in parameters {
            if seen.contains(&key) {
                return Err(RequestError::DuplicateParameter(key).into());
            }
            seen.push(key.clone());
            match key.as_str() {
                "limit" => {
                    let limit = value
                        .parse()
                        .map_err(|_| Problem::from(RequestError::InvalidLimit(value.clone())))?;
                    query = query.limit(limit);
                }
                "cursor" => query = query.cursor(Some(value)),
                field if indexed.contains(&field) => {
                    if query.filter.is_some() {
                        return Err(RequestError::TooManyFilters.into());
                    }
                    query = query.filter(field, value);
                }
                other => {
                    return Err(RequestError::UnknownParameter(format!(
                        "`{other}` is not a parameter of `{name}`: use `limit` (default \
                             {DEFAULT_LIMIT}), `cursor`, `{MIN_POSITION}` or an indexed field ({})",
                        indexed.join(", ")
                    ))
                    .into());
                }
            }
        }
        reads
            .guards
            .check_list(&name, principal.as_ref(), &query)
            .map_err(|reason| Problem::of(kinds::FORBIDDEN, reason))?;
        let position = settle(&reads, &name, min_position).await?;
        let page = reads
            .projections
            .list_json(&name, &query)
            .await
            .map_err(Problem::from)?;
        Ok(json(&page, position))
    };
    finish(read.await)
}

/// The indexed fields of projection `name`, or 404.
fn known(projections: &Projections, name: &str) -> Result<&'static [&'static str], Problem> {
    projections
        .registration(name)
        .map(|registration| registration.indexed_by())
        .map_err(Problem::from)
}

/// Waits for `min_position` if given, then reads the checkpoint.
async fn settle(reads: &ReadRoutes, name: &str, min_position: Option<u64>) -> Result<u64, Problem> {
    if let Some(position) = min_position {
        reads
            .projections
            .wait_for(name, position, reads.wait)
            .await
            .map_err(Problem::from)?;
    }
    reads.projections.checkpoint(name).map_err(Problem::from)
}

/// The answer, or its problem; a 503 says when to retry.
pub(super) fn finish(result: Result<Response, Problem>) -> Response {
    let problem = match result {
        Ok(response) => return response,
        Err(problem) => problem,
    };
    // Waiting helps a projection that is behind, not one that failed.
    let retry = problem.status == 503 && !problem.is(kinds::PROJECTION_FAILED);
    let mut response = problem.into_response();
    if retry {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// The query string's pairs, decoded.
pub(super) fn parameters(raw: Option<&str>) -> Result<Vec<(String, String)>, Problem> {
    serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|error| RequestError::InvalidQueryString(error.to_string()).into())
}

/// Removes `min_position` from `parameters` and parses it.
pub(super) fn take_min_position(
    parameters: &mut Vec<(String, String)>,
) -> Result<Option<u64>, Problem> {
    let mut found = None;
    for (key, value) in parameters.extract_if(.., |(key, _)| key == MIN_POSITION) {
        if found.is_some() {
            return Err(RequestError::DuplicateParameter(key).into());
        }
        let position = value
            .parse::<u64>()
            .map_err(|_| Problem::from(RequestError::InvalidMinPosition(value.clone())))?;
        found = Some(position);
    }
    Ok(found)
}

/// A 200 JSON answer labelled with the position it reflects.
pub(super) fn json(body: &impl Serialize, position: u64) -> Response {
    json_text(
        serde_json::to_string(body).expect("rows and pages serialize"),
        position,
    )
}

/// A 200 answer of JSON text labelled with the position it reflects.
fn json_text(body: String, position: u64) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(ALLFRAME_POSITION, HeaderValue::from(position));
    response
}

/// A projection error over HTTP: the client's mistakes as 4xx, a missed
/// `min_position` as 503 (with `Retry-After`), a failed
/// projection as 503 naming it, the rest as a logged 500.
impl HttpError for ProjectionError {
    fn kind(&self) -> ProblemKind {
        match self {
            Self::Unknown(_) => kinds::UNKNOWN_PROJECTION,
            Self::NotIndexed { .. } => kinds::NOT_INDEXED,
            Self::InvalidLimit { .. } => kinds::INVALID_LIMIT,
            Self::InvalidCursor => kinds::INVALID_CURSOR,
            Self::ControlCharacter { .. } => kinds::CONTROL_CHARACTER,
            Self::NotReached { .. } => kinds::POSITION_NOT_REACHED,
            Self::BeyondHead { .. } => kinds::MIN_POSITION_BEYOND_HEAD,
            Self::Failed { .. } => kinds::PROJECTION_FAILED,
            Self::WaitingForUpgrade { .. } => kinds::WAITING_FOR_UPGRADE,
            _ => kinds::INTERNAL_ERROR,
        }
    }

    fn extend(&self, mut problem: Problem) -> Problem {
        match self {
            Self::Unknown(name) => problem.detail = format!("there is no projection `{name}`"),
            Self::InvalidCursor => {
                problem.detail = "`cursor` must be a `next_cursor` this API returned".to_owned();
            }
            Self::BeyondHead { .. } => {
                problem.detail = format!("{self}: pass a position a command returned");
            }
            Self::Failed {
                projection,
                position,
                reason,
            } => {
                problem.detail = format!(
                    "projection `{projection}` failed at position {position} and will not reach the position asked for until it is restarted or rebuilt"
                );
                problem = problem
                    .with("projection", projection.as_str())
                    .with("position", *position)
                    .with("reason", short(reason));
            }
            Self::WaitingForUpgrade {
                projection,
                position,
            } => {
                problem = problem
                    .with("projection", projection.as_str())
                    .with("position", *position);
            }
            _ => {}
        }
        problem
    }
}

/// At most the first 200 characters of `text`.
fn short(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{parameters, take_min_position};

    #[test]
    fn min_position_is_taken_out_and_checked() {
        let mut pairs = parameters(Some("owner=Ada%20L&min_position=7&limit=2")).unwrap();
        assert_eq!(take_min_position(&mut pairs).unwrap(), Some(7));
        assert_eq!(
            pairs,
            [
                ("owner".into(), "Ada L".into()),
                ("limit".into(), "2".into())
            ]
        );
        let mut none = parameters(None).unwrap();
        assert_eq!(take_min_position(&mut none).unwrap(), None);
        for bad in [
            "min_position=x",
            "min_position=-1",
            "min_position=1&min_position=2",
        ] {
            let mut pairs = parameters(Some(bad)).unwrap();
            let problem = take_min_position(&mut pairs).unwrap_err();
            assert_eq!(problem.status, 400, "{bad}");
        }
    }
}
