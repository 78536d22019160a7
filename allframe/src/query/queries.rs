//! [`Queries`]: the registered query handlers, run by name over the
//! app's projections and container.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;

use super::QueryError;
use super::registry::{self, QueryDescription, QueryRegistryError, Registered};
use crate::auth::Principal;
use crate::auth::guards::ReadGuards;
use crate::di::Container;
use crate::projection::{ProjectionError, Projections};

/// Every linked `#[query_handler]`, ready to run by name.
#[derive(Clone)]
pub struct Queries {
    handlers: Arc<BTreeMap<&'static str, Registered>>,
    projections: Projections,
    container: Arc<Container>,
    guards: ReadGuards,
}

impl Queries {
    /// Collects the linked handlers and checks that each query has one
    /// handler and every `Dep<T>` they ask for is in `container`.
    pub fn new(
        projections: Projections,
        container: Arc<Container>,
    ) -> Result<Self, QueryRegistryError> {
        let handlers = registry::collect()?;
        container.check(
            handlers
                .values()
                .flat_map(|registered| registered.erased.dependencies().iter().copied()),
        )?;
        Ok(Self {
            handlers: Arc::new(handlers),
            projections,
            container,
            guards: ReadGuards::default(),
        })
    }

    /// The same queries, each checked by its hook in `guards`.
    pub(crate) fn guarded(mut self, guards: ReadGuards) -> Self {
        self.guards = guards;
        self
    }

    /// The names of the queries, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        self.handlers.keys().copied().collect()
    }

    /// Whether a query has this name.
    pub fn contains(&self, name: &str) -> bool {
        self.handlers.contains_key(name)
    }

    /// The projections the handlers read.
    pub fn projections(&self) -> &Projections {
        &self.projections
    }

    /// Runs query `name` with `parameters`, a URL query string
    /// (`min_balance=100&limit=10`), and returns its answer as JSON.
    /// Its authorization hook, if it has one, sees no principal.
    pub async fn run(&self, name: &str, parameters: &str) -> Result<Box<RawValue>, QueryError> {
        self.run_as(name, parameters, None).await
    }

    /// Runs query `name` as [`run`](Self::run) does, for `principal`: its
    /// authorization hook and its handler
    /// ([`Principal::current`]) see it.
    pub async fn run_as(
        &self,
        name: &str,
        parameters: &str,
        principal: Option<&Principal>,
    ) -> Result<Box<RawValue>, QueryError> {
        let registered = self
            .handlers
            .get(name)
            .ok_or_else(|| QueryError::Unknown(name.to_owned()))?;
        registered.check_names(name, parameters)?;
        let guard = self.guards.query_guard(name);
        registered
            .erased
            .run(
                parameters,
                &self.projections,
                &self.container,
                principal,
                guard.as_deref(),
            )
            .await
    }

    /// The position every projection has reached: the least checkpoint
    /// (0 with no projections). An answer read after it reflects at least
    /// every event up to it.
    pub fn position(&self) -> u64 {
        self.projections
            .names()
            .into_iter()
            .filter_map(|name| self.projections.checkpoint(name).ok())
            .min()
            .unwrap_or(0)
    }

    /// Waits, at most `timeout` in all, until every projection has reached
    /// `position` (a query may read any of them), failing as
    /// [`Projections::wait_for_all`] does. Returns
    /// [`position`](Self::position) after the wait.
    pub async fn wait_for(&self, position: u64, timeout: Duration) -> Result<u64, ProjectionError> {
        self.projections.wait_for_all(position, timeout).await?;
        Ok(self.position())
    }

    pub(crate) fn describe(&self) -> Vec<QueryDescription> {
        self.handlers
            .values()
            .map(|registered| registered.erased.describe())
            .collect()
    }
}

impl std::fmt::Debug for Queries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queries")
            .field("names", &self.names())
            .finish_non_exhaustive()
    }
}
