//! The dispatcher: the registry of handlers, the dependency container and
//! the per-aggregate turns that the command cycle runs with.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::Instrument;

use super::authorize::Authorizers;
use super::cache::{StateCache, StateCacheUsage};
use super::registry::{self, HandlerRegistration, Registered, RegistryError};
use super::rounds::{Queues, Server};
use super::states::{SnapshotStats, States};
use super::{
    AuthorizeHook, Command, CommandError, CommandOutcome, DispatchConfig, DispatchOptions,
};
use crate::di::{Container, DiError};
use crate::store::EventStore;

/// A command's input: JSON from the wire, or a typed value from Rust.
pub(crate) enum Input<'a> {
    Json(&'a [u8]),
    Typed(Box<dyn Any + Send>),
}

/// Why a dispatcher could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The handler registry is inconsistent.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Handlers ask for dependencies nobody provides.
    #[error(transparent)]
    Dependencies(#[from] DiError),
}

/// How many locks commands on different aggregates are spread over.
const STRIPES: usize = 1024;

/// Runs commands against an event store.
///
/// Within one dispatcher, commands on the same aggregate take turns (a lock
/// per aggregate, striped over a fixed set), so a hot aggregate does not
/// burn its retries on conflicts between callers in the same process;
/// conflicts with other processes are still caught by the expected-version
/// append and retried. A handler must therefore not dispatch a command and
/// wait for it.
pub struct Dispatcher {
    pub(super) store: Arc<dyn EventStore>,
    pub(super) container: Arc<Container>,
    handlers: BTreeMap<&'static str, Registered>,
    pub(super) config: DispatchConfig,
    turns: Box<[Arc<tokio::sync::Mutex<()>>]>,
    /// Folded states of recently commanded aggregates, and their
    /// snapshots.
    pub(super) states: Arc<States>,
    /// Plain commands waiting for their aggregate's next round.
    pub(super) queues: Arc<Queues>,
    hasher: std::hash::RandomState,
    /// Milliseconds since `started` at which expired idempotency records
    /// are next purged.
    next_purge: AtomicU64,
    started: Instant,
    /// Each command's authorization hook.
    pub(super) authorizers: Authorizers,
}

/// How often expired idempotency records are purged at most (or once per
/// retention period, when that is shorter).
const PURGE_EVERY: Duration = Duration::from_secs(600);

/// Configures a [`Dispatcher`].
pub struct DispatcherBuilder {
    store: Arc<dyn EventStore>,
    container: Container,
    config: DispatchConfig,
    registrations: Option<Vec<&'static HandlerRegistration>>,
    authorizers: Authorizers,
}

impl DispatcherBuilder {
    /// Runs `hook` before the handler of every `C`, on the aggregate's
    /// state as loaded: `Err(reason)` refuses the command with
    /// [`CommandError::Forbidden`] (a 403 problem, `forbidden`). The hook
    /// sees who sends it ([`DispatchOptions::principal`]; `None` for the
    /// service itself, such as a saga). One hook per command; a later one
    /// replaces it.
    pub fn authorize<C: Command>(mut self, hook: impl AuthorizeHook<C>) -> Self {
        self.authorizers.insert::<C>(Arc::new(hook));
        self
    }

    /// The dependencies handlers ask for.
    pub fn container(mut self, container: Container) -> Self {
        self.container = container;
        self
    }

    /// Retry and idempotency settings.
    pub fn config(mut self, config: DispatchConfig) -> Self {
        self.config = config;
        self
    }

    /// Uses exactly these handlers instead of every `#[command_handler]`
    /// linked into the program.
    pub fn handlers(mut self, registrations: Vec<&'static HandlerRegistration>) -> Self {
        self.registrations = Some(registrations);
        self
    }

    /// Checks the registry (one handler per command) and that every
    /// `Dep<T>` any handler asks for is provided, naming all missing types.
    pub fn build(self) -> Result<Dispatcher, BuildError> {
        let handlers = match self.registrations {
            Some(registrations) => registry::collect(registrations)?,
            None => registry::collect(registry::linked())?,
        };
        self.container.check(
            handlers
                .values()
                .flat_map(|registered| registered.erased.dependencies().iter().copied()),
        )?;
        Ok(Dispatcher {
            store: self.store.clone(),
            container: Arc::new(self.container),
            handlers,
            turns: (0..STRIPES).map(|_| Arc::default()).collect(),
            states: Arc::new(States::new(
                self.store.clone(),
                StateCache::new(
                    self.config.state_cache_entries,
                    self.config.state_cache_bytes,
                ),
            )),
            queues: Arc::default(),
            config: self.config,
            hasher: std::hash::RandomState::new(),
            next_purge: AtomicU64::new(0),
            started: Instant::now(),
            authorizers: self.authorizers,
        })
    }
}

impl Dispatcher {
    /// A dispatcher over `store`, with every linked handler by default.
    pub fn builder(store: &dyn EventStore) -> DispatcherBuilder {
        DispatcherBuilder {
            store: store.shared(),
            container: Container::default(),
            config: DispatchConfig::default(),
            registrations: None,
            authorizers: Authorizers::default(),
        }
    }

    /// The names of all commands it can run, sorted.
    pub fn commands(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.handlers.keys().copied()
    }

    /// Whether the command registered as `name` creates its aggregate;
    /// `None` when there is no such command.
    pub fn creates(&self, name: &str) -> Option<bool> {
        self.handlers
            .get(name)
            .map(|registered| registered.erased.creates())
    }

    /// The saga the command registered as `name` starts, by name: a
    /// create-command on a saga (see [`Saga`](crate::Saga)).
    pub fn starts_saga(&self, name: &str) -> Option<&'static str> {
        let registered = self.handlers.get(name)?;
        let erased = &registered.erased;
        crate::saga::started_by(erased.creates(), erased.category())
    }

    /// Every command, sorted by name, as the OpenAPI document describes it.
    pub(crate) fn describe(&self) -> Vec<super::registry::Description> {
        self.handlers
            .values()
            .map(|registered| registered.erased.describe())
            .collect()
    }

    /// The event store.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// How many aggregate states the cache holds and their estimated
    /// bytes (bounded by [`DispatchConfig::state_cache_entries`] and
    /// [`DispatchConfig::state_cache_bytes`]).
    pub fn state_cache_usage(&self) -> StateCacheUsage {
        self.states.usage()
    }

    /// How snapshots were used and written since this dispatcher was
    /// built (see [`Aggregate::snapshots`](crate::Aggregate::snapshots)).
    pub fn snapshot_stats(&self) -> SnapshotStats {
        self.states.snapshot_stats()
    }

    /// The dependency container.
    pub fn container(&self) -> &Container {
        &self.container
    }

    /// Runs a typed command.
    pub async fn dispatch<C: Command>(
        &self,
        command: C,
        options: DispatchOptions,
    ) -> Result<CommandOutcome, CommandError> {
        let registered = self.handler(C::NAME)?;
        self.run(
            C::NAME,
            registered,
            Input::Typed(Box::new(command)),
            options,
        )
        .await
    }

    /// The stream and aggregate id the command registered as `name`, with
    /// JSON `body`, is for; `None` when the body names no aggregate (a
    /// create-command whose id the dispatcher makes up).
    pub(crate) fn target_json(
        &self,
        name: &str,
        body: &[u8],
    ) -> Result<Option<(String, String)>, CommandError> {
        let registered = self
            .handlers
            .get(name)
            .ok_or_else(|| CommandError::UnknownCommand(name.to_owned()))?;
        registered.erased.target(body)
    }

    /// How long idempotency records are kept
    /// ([`DispatchConfig::idempotency_retention`]).
    pub(crate) fn idempotency_retention(&self) -> Duration {
        self.config.idempotency_retention
    }

    /// Runs the command registered as `name` from its JSON body.
    pub async fn dispatch_json(
        &self,
        name: &str,
        body: &[u8],
        options: DispatchOptions,
    ) -> Result<CommandOutcome, CommandError> {
        let (name, registered) = self
            .handlers
            .get_key_value(name)
            .ok_or_else(|| CommandError::UnknownCommand(name.to_owned()))?;
        self.run(name, registered, Input::Json(body), options).await
    }

    /// Runs one command in its span (`command`: the command, its
    /// aggregate's category and, once known, the aggregate's id, stream,
    /// version and position, and the outcome), and counts it.
    async fn run(
        &self,
        name: &'static str,
        registered: &Registered,
        input: Input<'_>,
        options: DispatchOptions,
    ) -> Result<CommandOutcome, CommandError> {
        let span = tracing::info_span!(
            "command",
            command = name,
            aggregate = registered.erased.category(),
            correlation_id = options.correlation_id.as_deref(),
            aggregate_id = tracing::field::Empty,
            stream_id = tracing::field::Empty,
            version = tracing::field::Empty,
            position = tracing::field::Empty,
            outcome = tracing::field::Empty,
            "otel.status_code" = tracing::field::Empty,
        );
        let started = std::time::Instant::now();
        let outcome = registered
            .erased
            .dispatch(self, input, options)
            .instrument(span.clone())
            .await;
        match &outcome {
            Ok(done) => {
                span.record("aggregate_id", done.aggregate_id.as_str());
                span.record("stream_id", done.stream_id.as_str());
                span.record("version", done.version);
                if let Some(position) = done.position {
                    span.record("position", position);
                }
            }
            // A refusal is the domain's answer; only failures of the
            // service itself mark the span as an error.
            Err(error) if error.is_internal() => {
                span.record("otel.status_code", "ERROR");
            }
            Err(_) => {}
        }
        counted(name, &outcome, started, &span);
        outcome
    }

    /// Deletes expired idempotency records when it is time to; one caller
    /// at a time does it, and a failure only waits for the next turn.
    pub(super) async fn purge_if_due(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        let due = self.next_purge.load(Ordering::Relaxed);
        let every = PURGE_EVERY.min(self.config.idempotency_retention);
        if now < due
            || self
                .next_purge
                .compare_exchange(
                    due,
                    now + every.as_millis() as u64,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return;
        }
        // A store without idempotency records has none to purge.
        let Some(records) = self.store.idempotency() else {
            return;
        };
        match records
            .purge_idempotency_keys(self.config.idempotency_retention)
            .await
        {
            Ok(purged) => tracing::debug!(purged, "purged expired idempotency records"),
            Err(error) => tracing::warn!(%error, "could not purge expired idempotency records"),
        }
    }

    /// What the task serving an aggregate's rounds needs.
    pub(super) fn server(&self) -> Server {
        Server {
            store: self.store.clone(),
            states: self.states.clone(),
            queues: self.queues.clone(),
            max_retries: self.config.max_retries,
        }
    }

    /// The lock commands on `stream` take turns on.
    pub(super) fn turn(&self, stream: &str) -> &Arc<tokio::sync::Mutex<()>> {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(stream);
        &self.turns[(hash % STRIPES as u64) as usize]
    }

    fn handler(&self, name: &str) -> Result<&Registered, CommandError> {
        self.handlers
            .get(name)
            .ok_or_else(|| CommandError::UnknownCommand(name.to_owned()))
    }
}

/// Counts a command named `name`, started at `started`, by outcome, and
/// records the outcome on its `span`.
fn counted(
    name: &'static str,
    outcome: &Result<CommandOutcome, CommandError>,
    started: std::time::Instant,
    span: &tracing::Span,
) {
    let code = match outcome {
        Ok(outcome) => {
            if outcome.replayed {
                crate::metrics::replayed(name);
            }
            "ok"
        }
        Err(error) => error.code(),
    };
    span.record("outcome", code);
    crate::metrics::command(name, code, started.elapsed());
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("commands", &self.handlers.keys().collect::<Vec<_>>())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
