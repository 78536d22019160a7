//! The app: one builder call turns a store, the registered commands and the
//! dependencies into an axum `Router`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use utoipa_axum::router::OpenApiRouter;

use futures_util::future::BoxFuture;

use crate::auth::guards::ReadGuards;
use crate::auth::{Authenticator, Denied, Principal};
use crate::command::registry::Description;
use crate::command::{AuthorizeHook, Command, DispatcherBuilder};
use crate::command::{BuildError, DispatchConfig, Dispatcher};
use crate::di::{Container, ContainerBuilder, DiError};
use crate::event::TodaysShapes;
use crate::http::RequestLimits;
use crate::http::commands::CommandRoutes;
use crate::http::correlation::correlate;
use crate::http::openapi::Document;
use crate::http::reads::{DEFAULT_READ_WAIT, ReadRoutes};
use crate::http::routes::Mounts;
use crate::http::stream::{EventStreamConfig, EventStreams};
use crate::node::Node;
use crate::projection::{ListQuery, ProjectionError, Projections, ProjectionsBuilder, Row};
use crate::query::{Queries, Query, QueryRegistryError};
use crate::saga::{Saga, SagaError, Sagas, SagasBuilder};
use crate::store::log::each_page;
use crate::store::{EventFilter, EventStore, StoreError, StoredType};

/// The default limit on a command body: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
/// How long a command over HTTP may take by default: [`AppBuilder::command_timeout`].
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// A built service: its dispatcher and its router.
#[derive(Debug, Clone)]
pub struct App {
    dispatcher: Arc<Dispatcher>,
    router: Router,
    openapi: Document,
    events: Arc<EventStreams>,
    projections: Projections,
    queries: Queries,
    sagas: Arc<Sagas>,
}

impl App {
    /// Starts building an app over `store`.
    pub fn builder(store: &dyn EventStore) -> AppBuilder {
        AppBuilder {
            store: store.shared(),
            dependencies: Container::builder(),
            config: DispatchConfig::default(),
            body_limit: DEFAULT_BODY_LIMIT,
            routes: None,
            events: EventStreamConfig::default(),
            projections: None,
            read_wait: DEFAULT_READ_WAIT,
            sagas: Vec::new(),
            saga_step_timeout: crate::saga::DEFAULT_STEP_TIMEOUT,
            node_id: None,
            lease_ttl: crate::node::DEFAULT_LEASE_TTL,
            authenticator: None,
            authorize: Vec::new(),
            guarded: Vec::new(),
            guards: ReadGuards::default(),
            limits: RequestLimits::default(),
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
        }
    }

    /// The router: `POST /commands/{name}`, `GET /projections/{name}`,
    /// `GET /projections/{name}/{key}`, `GET /queries/{name}`,
    /// `GET /admin/projections`, `POST /admin/projections/{name}/rebuild`
    /// and `.../restart`, `GET /sagas/{name}/{id}`, `GET /admin/sagas`,
    /// `GET /health`, `GET /admin` (the admin console's page, with
    /// `/admin/console.css` and `/admin/console.js`), `GET /metrics` (with
    /// the `metrics` feature),
    /// `GET /openapi.json`, `GET /docs` (with the `swagger-ui` feature),
    /// `GET /events/ws`, `GET /events/sse` and the routes added with
    /// [`AppBuilder::routes`]. A plain axum `Router`: merge it, nest it
    /// under a prefix, wrap it in any tower layer. Unknown paths answer a
    /// 404 problem and unserved methods a 405 problem with `Allow`; call
    /// `.fallback(…)` on it to answer unknown paths yourself.
    ///
    /// [`App::serve`] serves it. To serve it yourself, hand axum
    /// `router.into_make_service()`: given the router itself, axum's
    /// server makes a copy of every route for each connection, and keeps
    /// it while the connection is open.
    ///
    /// ```no_run
    /// # async fn run(app: allframe::App) -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    /// axum::serve(listener, app.router().into_make_service()).await
    /// # }
    /// ```
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// The OpenAPI 3.1 document served at `GET /openapi.json`.
    pub fn openapi(&self) -> &serde_json::Value {
        self.openapi.value()
    }

    /// The running projections (read them, list their status, rebuild
    /// them); they stop when the app and every clone of this are dropped.
    pub fn projections(&self) -> &Projections {
        &self.projections
    }

    /// The registered queries, to run them from Rust.
    pub fn queries(&self) -> &Queries {
        &self.queries
    }

    /// The running sagas (read an instance's status from Rust).
    pub fn sagas(&self) -> &Sagas {
        &self.sagas
    }

    /// The dispatcher, to run commands from Rust.
    pub fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.dispatcher
    }

    /// Closes the live event streams for a graceful shutdown and waits,
    /// bounded, until they are closed: WebSockets get close frame 1001
    /// (going away), SSE responses end, new ones are refused with 503.
    ///
    /// [`App::serve`] calls it when its shutdown signal fires. Serving the
    /// router yourself, call it as part of the future given to axum's
    /// `with_graceful_shutdown`: axum does not track upgraded WebSocket
    /// connections, and waits for SSE responses to end.
    pub async fn shutdown(&self) {
        self.events.shutdown().await;
    }

    /// Stops the sagas and the projections and closes the event store's connections
    /// (SQLite checkpoints and removes its WAL). [`App::serve`] calls it
    /// once it has stopped serving; serving the router yourself, call it
    /// last, after `axum::serve(..)` returns, since commands and reads fail
    /// from here on.
    pub async fn close(&self) {
        self.sagas.stop().await;
        self.projections.stop().await;
        self.projections.node().leave().await;
        self.dispatcher.store().close().await;
    }

    /// The node this app runs as.
    pub fn node(&self) -> &Node {
        self.projections.node()
    }
}

/// Configures an [`App`].
pub struct AppBuilder {
    store: Arc<dyn EventStore>,
    dependencies: ContainerBuilder,
    config: DispatchConfig,
    body_limit: usize,
    /// The user's routes; the first router given keeps its document's
    /// `info`, `tags` and `servers`.
    routes: Option<OpenApiRouter>,
    events: EventStreamConfig,
    /// `None`: every linked projection with default settings.
    projections: Option<ProjectionsBuilder>,
    read_wait: Duration,
    /// Adds each saga to the runners' builder.
    sagas: Vec<fn(SagasBuilder) -> SagasBuilder>,
    saga_step_timeout: Duration,
    node_id: Option<String>,
    lease_ttl: Duration,
    authenticator: Option<Arc<dyn Authenticator>>,
    /// Adds each command's authorization hook to the dispatcher.
    authorize: Vec<Box<dyn FnOnce(DispatcherBuilder) -> DispatcherBuilder + Send>>,
    /// The names of the commands with a hook.
    guarded: Vec<&'static str>,
    /// The hooks of the reads and the event streams.
    guards: ReadGuards,
    limits: RequestLimits,
    command_timeout: Duration,
}

impl AppBuilder {
    /// Runs saga `S` (see [`Saga`]): its runner follows the log from its
    /// checkpoint, `GET /sagas/{name}/{id}` shows its instances, and its
    /// create-commands answer `202` with the new instance's id. Every saga
    /// registered with `#[saga]` and linked into the program runs without
    /// this; it is for sagas implemented by hand.
    pub fn saga<S: Saga>(mut self) -> Self {
        self.sagas.push(SagasBuilder::saga::<S>);
        self
    }

    /// How long `POST /commands/{name}` may take (default
    /// [`DEFAULT_COMMAND_TIMEOUT`]): a command still running then, such as
    /// one waiting for a slow or hung database, is answered `503`
    /// (`command-timed-out`, `Retry-After: 1`). It may still take effect;
    /// sent again with the same `Idempotency-Key`, it answers its outcome.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Authenticates every request with `authenticator` (see
    /// [`auth`](crate::auth)): routes other than `/health`,
    /// `/openapi.json`, `/docs` and the admin console's page need a
    /// principal, the admin routes an admin, and commands record the
    /// principal's subject in their events' metadata (`principal`).
    pub fn authenticator(mut self, authenticator: impl Authenticator) -> Self {
        self.authenticator = Some(Arc::new(authenticator));
        self
    }

    /// Runs `hook` before the handler of every `C`, as
    /// [`DispatcherBuilder::authorize`] says: over HTTP it sees the
    /// request's principal, and a refusal answers a 403 problem
    /// (`forbidden`).
    pub fn authorize<C: Command>(mut self, hook: impl AuthorizeHook<C>) -> Self {
        self.authorize
            .push(Box::new(move |builder| builder.authorize::<C>(hook)));
        self.guarded.push(C::NAME);
        self
    }

    /// Runs `hook` on every row of projection `P` read over HTTP
    /// (`GET /projections/{name}/{key}`), after it is read: it sees the
    /// request's principal (`None` without an authenticator) and the row,
    /// and `Err(reason)` answers a 403 problem (`forbidden`) instead of
    /// the row. A key without a row is a 404 whatever the hook would say.
    pub fn authorize_row<P: Row>(
        mut self,
        hook: impl Fn(Option<&Principal>, &P) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.guards.row::<P>(hook);
        self
    }

    /// Runs `hook` on every list of projection `P`'s rows
    /// (`GET /projections/{name}`) before it is read: it sees the
    /// principal and the list asked for (its filter, limit and cursor), and
    /// `Err(reason)` answers a 403 problem (`forbidden`). To let callers
    /// list only their own rows, accept only a filter on their own id.
    pub fn authorize_list<P: Row>(
        mut self,
        hook: impl Fn(Option<&Principal>, &ListQuery) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.guards.list::<P>(hook);
        self
    }

    /// Runs `hook` before the handler of every query `Q`, once its
    /// parameters are decoded and validated: `Err(reason)` answers a 403
    /// problem (`forbidden`). [`Queries::run`] runs it too, with no
    /// principal.
    pub fn authorize_query<Q: Query>(
        mut self,
        hook: impl Fn(Option<&Principal>, &Q) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.guards.query::<Q>(hook);
        self
    }

    /// Runs `hook` before a live event stream (`GET /events/ws`,
    /// `GET /events/sse`) is accepted, before the WebSocket upgrade: it
    /// gets the principal and the events asked for (the `stream`,
    /// `category` and `types` parameters as an [`EventFilter`]), may look
    /// things up (it is async): [`Denied::Forbidden`] answers a 403
    /// problem (`forbidden`), [`Denied::Store`] (a failed lookup, through
    /// `?`) a 503 one.
    pub fn authorize_events<F>(mut self, hook: F) -> Self
    where
        F: Fn(Option<Principal>, EventFilter) -> BoxFuture<'static, Result<(), Denied>>
            + Send
            + Sync
            + 'static,
    {
        self.guards.events(hook);
        self
    }

    /// The id this node goes by among the nodes sharing the store: in
    /// `/health`, and as the owner of the projections and sagas it runs
    /// (default [`default_node_id`](crate::node::default_node_id): host
    /// name and process id). A node restarted under the same id takes its
    /// leases back at once instead of waiting for them to expire.
    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.node_id = Some(id.into());
        self
    }

    /// How long this node's leases last unless renewed (default 10 s,
    /// renewed every third of it): how long its projections and sagas
    /// wait for another node when it dies without leaving.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// How long a saga's step may go unanswered before the saga is told
    /// it timed out (default 30 s; see [`SagasBuilder::step_timeout`]).
    pub fn saga_step_timeout(mut self, timeout: Duration) -> Self {
        self.saga_step_timeout = timeout;
        self
    }

    /// Provides `Dep<T>` to command handlers and axum handlers.
    pub fn provide<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.dependencies = self.dependencies.provide(value);
        self
    }

    /// Provides an already shared value for `Dep<T>`.
    pub fn provide_shared<T: Send + Sync + 'static>(mut self, value: Arc<T>) -> Self {
        self.dependencies = self.dependencies.provide_shared(value);
        self
    }

    /// Provides `Dep<T>` from an async factory run by [`AppBuilder::build`].
    pub fn provide_with<T, F, Fut, E>(mut self, factory: F) -> Self
    where
        T: Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.dependencies = self.dependencies.provide_with(factory);
        self
    }

    /// Retry and idempotency settings.
    pub fn config(mut self, config: DispatchConfig) -> Self {
        self.config = config;
        self
    }

    /// The largest accepted command body, in bytes (default 1 MiB).
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// How large a request's path, query string and headers may be
    /// (default [`RequestLimits::default`]): larger ones are refused with
    /// a problem before any route or the authenticator sees them.
    pub fn request_limits(mut self, limits: RequestLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Settings of `GET /events/ws` and `GET /events/sse`.
    pub fn events(mut self, config: EventStreamConfig) -> Self {
        self.events = config;
        self
    }

    /// Runs the projections `builder` configures (which ones, batch size,
    /// storage) instead of every `#[projection]` linked into the program.
    /// `Projections::builder(store).projections(vec![])` runs none.
    pub fn projections(mut self, builder: ProjectionsBuilder) -> Self {
        self.projections = Some(builder);
        self
    }

    /// How long a read with `min_position` waits for the projections to
    /// reach it before answering 503 (default 5 s).
    pub fn read_wait(mut self, wait: Duration) -> Self {
        self.read_wait = wait;
        self
    }

    /// Your own axum routes, served by the same router; their handlers can
    /// extract `Dep<T>`. Routes added to an [`OpenApiRouter`] with
    /// `#[utoipa::path]` appear in the OpenAPI document, whose `info`,
    /// `tags` and `servers` come from the first router's own document
    /// (`OpenApiRouter::with_openapi(ApiDoc::openapi())`); a plain axum
    /// `Router` works too. Called again, it merges.
    ///
    /// The app answers paths no route serves with a 404 problem and methods
    /// a route does not serve with a 405 problem (with `Allow`), yours
    /// included; a method fallback on your routes is kept, a router-wide
    /// `fallback` is replaced: set that on [`App::router`] instead.
    pub fn routes(mut self, routes: impl Into<OpenApiRouter>) -> Self {
        let routes = routes.into();
        self.routes = Some(match self.routes {
            Some(existing) => existing.merge(routes),
            None => routes,
        });
        self
    }

    /// Runs the dependency factories, checks that every handler's
    /// dependencies are provided and that each command and query has one
    /// handler, checks that every kind of event the store holds in an
    /// aggregate's category decodes into that aggregate's event type
    /// ([`AppError::UndecodableEvents`] names each kind that does not, and
    /// its count; the store must answer), starts the projections and
    /// builds the router.
    pub async fn build(self) -> Result<App, AppError> {
        let container = self.dependencies.build().await?;
        let dispatcher = self
            .authorize
            .into_iter()
            .fold(Dispatcher::builder(&*self.store), |builder, add| {
                add(builder)
            });
        let dispatcher = Arc::new(
            dispatcher
                .container(container)
                .config(self.config)
                .build()?,
        );
        let described = dispatcher.describe();
        // Before anything reads the log: every kind of event in it decodes.
        check_stored_events(&*self.store, &described).await?;
        let commands = CommandRoutes {
            dispatcher: dispatcher.clone(),
            body_limit: self.body_limit,
            timeout: self.command_timeout,
        };
        let container = Arc::new(dispatcher.container().clone());
        let node = Node::new(
            &*self.store,
            self.node_id.unwrap_or_else(crate::node::default_node_id),
            self.lease_ttl,
        );
        let projections = self
            .projections
            .unwrap_or_else(|| Projections::builder(&*self.store))
            .default_node(node.clone())
            .start()
            .await?;
        let queries =
            Queries::new(projections.clone(), container.clone())?.guarded(self.guards.clone());
        let sagas = self
            .sagas
            .iter()
            .fold(
                crate::saga::linked(
                    Sagas::builder(&*self.store, dispatcher.clone())
                        .step_timeout(self.saga_step_timeout)
                        .node(node),
                ),
                |builder, add| add(builder),
            )
            .start()
            .await?;
        let sagas = Arc::new(sagas);
        let (routes, base) = self.routes.unwrap_or_default().split_for_parts();
        #[cfg(feature = "metrics")]
        let metrics = crate::metrics::handle();
        #[cfg(not(feature = "metrics"))]
        let metrics: Option<()> = None;
        let mut openapi = Document::build(&described, sagas.names(), base);
        if metrics.is_some() {
            openapi = openapi.with_metrics();
        }
        let openapi = openapi.with_reads(&projections, &queries).secured(
            self.authenticator.as_ref().map(|a| a.scheme()),
            &guarded_operations(&self.guarded, &self.guards),
        );
        let mut shapes = TodaysShapes::default();
        for command in &described {
            shapes.insert(command.category, command.todays_shape);
        }
        let events =
            EventStreams::new(self.store.clone(), shapes, self.events, self.guards.clone());
        let cqrs = crate::http::routes::router(Mounts {
            commands,
            projections: projections.clone(),
            reads: ReadRoutes {
                projections: projections.clone(),
                queries: queries.clone(),
                wait: self.read_wait,
                guards: self.guards,
            },
            document: openapi.clone(),
            streams: events.clone(),
            sagas: sagas.clone(),
        });
        #[cfg(feature = "metrics")]
        let cqrs = match metrics {
            Some(handle) => cqrs.route(
                "/metrics",
                axum::routing::get(crate::http::metrics::metrics).with_state(
                    crate::http::metrics::MetricsRoute {
                        handle,
                        projections: projections.clone(),
                        sagas: sagas.clone(),
                        dispatcher: dispatcher.clone(),
                        streams: events.clone(),
                    },
                ),
            ),
            None => cqrs,
        };
        let cqrs = cqrs.merge(crate::http::console::router());
        // After the user's routes, so the 405 covers theirs too (a custom
        // method fallback of theirs is kept) and the 404 covers every path.
        let router = cqrs
            .merge(routes)
            .fallback(crate::http::extract::no_route)
            .method_not_allowed_fallback(crate::http::extract::method_not_allowed)
            .layer(axum::Extension(container));
        let router = match self.authenticator {
            Some(authenticator) => router.layer(axum::middleware::from_fn_with_state(
                authenticator,
                crate::auth::authenticate,
            )),
            None => {
                tracing::warn!(
                    "no authenticator is set: every route, the admin routes and the event streams included, is open to anyone who can reach the service"
                );
                router
            }
        };
        // Before the authenticator, which reads the query string.
        let router = router.layer(axum::middleware::from_fn_with_state(
            self.limits,
            crate::http::limits::limit,
        ));
        // Outermost, so a refusal of the authenticator carries the id too.
        // Every route is made ready to serve here, once (axum would do it
        // for each request, or each connection).
        let router = router
            .layer(axum::middleware::from_fn(correlate))
            .with_state(());
        Ok(App {
            dispatcher,
            router,
            openapi,
            events,
            projections,
            queries,
            sagas,
        })
    }
}

impl std::fmt::Debug for AppBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppBuilder")
            .field("config", &self.config)
            .field("body_limit", &self.body_limit)
            .field("events", &self.events)
            .field("read_wait", &self.read_wait)
            .finish_non_exhaustive()
    }
}

/// Why an app could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// A dependency factory failed.
    #[error(transparent)]
    Dependencies(#[from] DiError),
    /// The handler registry or the dependency check failed.
    #[error(transparent)]
    Dispatcher(#[from] BuildError),
    /// The projections could not start.
    #[error(transparent)]
    Projections(#[from] ProjectionError),
    /// The query registry or its dependency check failed.
    #[error(transparent)]
    Queries(#[from] QueryRegistryError),
    /// The sagas could not start.
    #[error(transparent)]
    Sagas(#[from] SagaError),
    /// The store could not say which kinds of events it holds.
    #[error("reading the kinds of stored events failed: {0}")]
    Store(#[source] StoreError),
    /// The store holds events that today's event types cannot decode
    /// (an unknown type, or a schema version no upcast chain reaches).
    #[error("{}", undecodable_message(.0))]
    UndecodableEvents(Vec<Undecodable>),
}

/// Kinds of stored events today's code cannot decode, found at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Undecodable {
    /// The kind: category, stored `type` and `schema_version`.
    pub kind: StoredType,
    /// How many events of that kind the log holds.
    pub events: u64,
}

fn undecodable_message(found: &[Undecodable]) -> String {
    let kinds: Vec<String> = found
        .iter()
        .map(|u| {
            format!(
                "`{}` schema version {} in category `{}` ({} events)",
                u.kind.event_type, u.kind.schema_version, u.kind.category, u.events
            )
        })
        .collect();
    format!(
        "the store holds events no event type of this app decodes: {}; declare the type (or an \
         `alias`) and an upcast step from that version, or deploy the release that wrote them",
        kinds.join(", ")
    )
}

/// Checks that every kind of event the store holds in a category of one of
/// `commands`' aggregates decodes into that aggregate's event type. Kinds
/// newer than the type knows are let through with a warning: a newer
/// release wrote them during a rolling deploy, and commands and projections
/// that meet them wait for the upgrade.
async fn check_stored_events(
    store: &dyn EventStore,
    commands: &[Description],
) -> Result<(), AppError> {
    let mut version_of: HashMap<&str, fn(&str) -> Option<u32>> = HashMap::new();
    for command in commands {
        version_of.insert(command.category, command.version_of);
    }
    let mut undecodable = Vec::new();
    for kind in store.stored_types().await.map_err(AppError::Store)? {
        let Some(version_of) = version_of.get(kind.category.as_str()) else {
            continue;
        };
        match version_of(&kind.event_type) {
            Some(today) if (1..=today).contains(&kind.schema_version) => {}
            Some(today) if kind.schema_version > today => tracing::warn!(
                category = %kind.category,
                event_type = %kind.event_type,
                schema_version = kind.schema_version,
                today,
                "the store holds events of a newer release; what meets them waits for the upgrade"
            ),
            _ => undecodable.push(kind),
        }
    }
    if undecodable.is_empty() {
        return Ok(());
    }
    let mut found = Vec::with_capacity(undecodable.len());
    for kind in undecodable {
        let events = count(store, &kind).await.map_err(AppError::Store)?;
        found.push(Undecodable { kind, events });
    }
    Err(AppError::UndecodableEvents(found))
}

/// How many events of `kind` the log holds, read through the category and
/// type filter (only when the start-up check fails).
async fn count(store: &dyn EventStore, kind: &StoredType) -> Result<u64, StoreError> {
    let filter = EventFilter::all()
        .category(kind.category.clone())
        .event_types([kind.event_type.clone()]);
    let mut events = 0;
    each_page(store, &filter, |page| {
        events += page.iter().filter(|e| kind.is(e)).count() as u64;
    })
    .await?;
    Ok(events)
}

/// The operations an authorization hook may refuse with 403, as
/// (path, method, why): the `commands` with a hook, and the reads and
/// streams `guards` has hooks for.
fn guarded_operations(
    commands: &[&'static str],
    guards: &ReadGuards,
) -> Vec<(String, &'static str, &'static str)> {
    let mut operations: Vec<_> = commands
        .iter()
        .map(|name| {
            (
                format!("/commands/{name}"),
                "post",
                "The command's authorization hook refused the caller (`forbidden`).",
            )
        })
        .collect();
    operations.extend(guards.guarded());
    operations
}
