//! Authorization hooks per read: a projection's rows
//! ([`AppBuilder::authorize_row`](crate::AppBuilder::authorize_row)), its
//! lists ([`AppBuilder::authorize_list`](crate::AppBuilder::authorize_list)),
//! a query ([`AppBuilder::authorize_query`](crate::AppBuilder::authorize_query))
//! and the live event streams
//! ([`AppBuilder::authorize_events`](crate::AppBuilder::authorize_events)).
//! Each sees the request's principal (`None` without an authenticator) and
//! what is asked for; `Err(reason)` answers a 403 problem (`forbidden`)
//! whose detail is the reason.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::Principal;
use crate::projection::{ListQuery, Row};
use crate::query::Query;
use crate::store::{EventFilter, StoreError};

/// A row hook, erased: decodes the row's JSON for the typed hook.
type RowGuard = dyn Fn(Option<&Principal>, &str) -> Result<(), Refusal> + Send + Sync;
/// A list hook.
type ListGuard = dyn Fn(Option<&Principal>, &ListQuery) -> Result<(), String> + Send + Sync;
/// A query hook, erased: the query is the hook's own type.
pub(crate) type QueryGuard =
    dyn Fn(Option<&Principal>, &dyn Any) -> Result<(), String> + Send + Sync;
/// The event streams' hook.
type EventsGuard =
    dyn Fn(Option<Principal>, EventFilter) -> BoxFuture<'static, Result<(), Denied>> + Send + Sync;

/// Why the event streams' hook
/// ([`AppBuilder::authorize_events`](crate::AppBuilder::authorize_events))
/// did not let a subscription through.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Denied {
    /// Not for this principal: a 403 problem (`forbidden`) with this
    /// reason.
    #[error("{0}")]
    Forbidden(String),
    /// What the hook had to look up could not be read: a 503 problem
    /// (`store-unavailable`), logged.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<String> for Denied {
    fn from(reason: String) -> Self {
        Self::Forbidden(reason)
    }
}

impl From<&str> for Denied {
    fn from(reason: &str) -> Self {
        Self::Forbidden(reason.to_owned())
    }
}

/// Why a row hook did not let a read through.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The hook said no, for this reason.
    Forbidden(String),
    /// The stored row does not decode into the row type, so the hook
    /// could not look at it: refused, as a failure of the service's.
    Undecodable(String),
}

/// The read hooks an app was given.
#[derive(Clone, Default)]
pub(crate) struct ReadGuards {
    /// By projection name, with the projection's key field.
    rows: HashMap<&'static str, (Arc<RowGuard>, &'static str)>,
    lists: HashMap<&'static str, Arc<ListGuard>>,
    queries: HashMap<&'static str, Arc<QueryGuard>>,
    events: Option<Arc<EventsGuard>>,
}

impl ReadGuards {
    /// Checks every row of `P` read over HTTP with `hook`.
    pub(crate) fn row<P: Row>(
        &mut self,
        hook: impl Fn(Option<&Principal>, &P) -> Result<(), String> + Send + Sync + 'static,
    ) {
        let erased = move |principal: Option<&Principal>, text: &str| {
            let row: P = serde_json::from_str(text)
                .map_err(|error| Refusal::Undecodable(error.to_string()))?;
            hook(principal, &row).map_err(Refusal::Forbidden)
        };
        self.rows.insert(P::NAME, (Arc::new(erased), P::KEY));
    }

    /// Checks every list of `P`'s rows with `hook`.
    pub(crate) fn list<P: Row>(
        &mut self,
        hook: impl Fn(Option<&Principal>, &ListQuery) -> Result<(), String> + Send + Sync + 'static,
    ) {
        self.lists.insert(P::NAME, Arc::new(hook));
    }

    /// Checks every `Q` with `hook`.
    pub(crate) fn query<Q: Query>(
        &mut self,
        hook: impl Fn(Option<&Principal>, &Q) -> Result<(), String> + Send + Sync + 'static,
    ) {
        let erased =
            move |principal: Option<&Principal>, query: &dyn Any| match query.downcast_ref::<Q>() {
                Some(query) => hook(principal, query),
                None => Err(format!("not a `{}` query", Q::NAME)),
            };
        self.queries.insert(Q::NAME, Arc::new(erased));
    }

    /// Checks every event stream subscription with `hook`.
    pub(crate) fn events(
        &mut self,
        hook: impl Fn(Option<Principal>, EventFilter) -> BoxFuture<'static, Result<(), Denied>>
        + Send
        + Sync
        + 'static,
    ) {
        self.events = Some(Arc::new(hook));
    }

    /// Checks a row of projection `name` (its JSON `text`).
    pub(crate) fn check_row(
        &self,
        name: &str,
        principal: Option<&Principal>,
        text: &str,
    ) -> Result<(), Refusal> {
        match self.rows.get(name) {
            Some((hook, _)) => hook(principal, text),
            None => Ok(()),
        }
    }

    /// Checks a list of projection `name`'s rows.
    pub(crate) fn check_list(
        &self,
        name: &str,
        principal: Option<&Principal>,
        query: &ListQuery,
    ) -> Result<(), String> {
        match self.lists.get(name) {
            Some(hook) => hook(principal, query),
            None => Ok(()),
        }
    }

    /// The hook of query `name`, if it has one.
    pub(crate) fn query_guard(&self, name: &str) -> Option<Arc<QueryGuard>> {
        self.queries.get(name).cloned()
    }

    /// Checks a subscription to the events `filter` selects.
    pub(crate) async fn check_events(
        &self,
        principal: Option<Principal>,
        filter: EventFilter,
    ) -> Result<(), Denied> {
        match &self.events {
            Some(hook) => hook(principal, filter).await,
            None => Ok(()),
        }
    }

    /// The OpenAPI operations a hook may refuse, as (path, method, why).
    pub(crate) fn guarded(&self) -> Vec<(String, &'static str, &'static str)> {
        let mut guarded = Vec::new();
        for (name, (_, key)) in &self.rows {
            guarded.push((
                format!("/projections/{name}/{{{key}}}"),
                "get",
                "The projection's row hook refused the caller this row (`forbidden`).",
            ));
        }
        for name in self.lists.keys() {
            guarded.push((
                format!("/projections/{name}"),
                "get",
                "The projection's list hook refused the caller this list (`forbidden`).",
            ));
        }
        for name in self.queries.keys() {
            guarded.push((
                format!("/queries/{name}"),
                "get",
                "The query's authorization hook refused the caller (`forbidden`).",
            ));
        }
        if self.events.is_some() {
            for path in ["/events/ws", "/events/sse"] {
                guarded.push((
                    path.to_owned(),
                    "get",
                    "The event streams' hook refused the caller these events (`forbidden`).",
                ));
            }
        }
        guarded
    }
}
