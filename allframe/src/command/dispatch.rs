//! Dispatch: validate → load → decide → append, retried on conflict.

use std::any::Any;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::registry::{self, HandlerRegistration, Registered, RegistryError};
use super::{AggregateOf, Command, CommandError, CommandHandler, field_errors_for};
use crate::aggregate::{Loaded, load, stream_id};
use crate::di::{Container, DiError};
use crate::event::{Metadata, NewEvent, RecordedEvent};
use crate::store::{Appended, Claim, Completion, EventStore, ExpectedVersion, StoreError};

/// Dispatcher settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DispatchConfig {
    /// How many times a command is retried after a concurrency conflict
    /// (default 3, so at most 4 attempts).
    pub max_retries: u32,
    /// How long an idempotency record is kept (default 24 h).
    pub idempotency_retention: Duration,
    /// How long an in-flight idempotency key stays claimed by a caller
    /// that neither completes nor releases it (it crashed), default 30 s.
    ///
    /// A caller still running when its lease runs out may be taken over by
    /// a retry with the same key. That is safe, only wasteful: the store
    /// accepts the events of whichever caller holds the key when it
    /// appends, refuses the other's, and that one answers with the key's
    /// outcome instead (a replay, or `IdempotencyInFlight`). Set the lease
    /// well above the time a command takes, including its wait for its
    /// aggregate's turn.
    pub idempotency_lease: Duration,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            max_retries: 3,
            idempotency_retention: Duration::from_secs(24 * 60 * 60),
            idempotency_lease: Duration::from_secs(30),
        }
    }
}

impl DispatchConfig {
    /// Sets how many times a conflicting command is retried.
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// Sets how long idempotency records are kept.
    pub fn idempotency_retention(mut self, retention: Duration) -> Self {
        self.idempotency_retention = retention;
        self
    }

    /// Sets how long an abandoned in-flight key stays claimed.
    pub fn idempotency_lease(mut self, lease: Duration) -> Self {
        self.idempotency_lease = lease;
        self
    }
}

/// Per-call options: what the HTTP layer takes from request headers.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct DispatchOptions {
    /// Flows into every event's `metadata.correlation_id` (default: the
    /// command's own id).
    pub correlation_id: Option<String>,
    /// Makes the call idempotent: a repeat returns the first result.
    pub idempotency_key: Option<String>,
    /// Fails fast with a precondition error (no retry) unless the aggregate
    /// is at exactly this version.
    pub expected_version: Option<u64>,
    /// Extra metadata fields for every event.
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl DispatchOptions {
    /// Sets the correlation id.
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Sets the idempotency key.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Sets the expected aggregate version.
    pub fn expected_version(mut self, version: u64) -> Self {
        self.expected_version = Some(version);
        self
    }

    /// Adds an extra metadata field.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }
}

/// What a carried-out command produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CommandOutcome {
    /// The aggregate's stream.
    pub stream_id: String,
    /// The aggregate's id (server-generated for create-commands without one).
    pub aggregate_id: String,
    /// The aggregate's version after the command.
    pub version: u64,
    /// The global position of the last recorded event; `None` when the
    /// handler decided on no events.
    pub position: Option<u64>,
    /// The recorded events.
    pub events: Vec<RecordedEvent>,
    /// Whether this is the stored result of an earlier call with the same
    /// idempotency key.
    #[serde(skip)]
    pub replayed: bool,
}

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
    store: Arc<dyn EventStore>,
    container: Arc<Container>,
    handlers: BTreeMap<&'static str, Registered>,
    config: DispatchConfig,
    turns: Box<[tokio::sync::Mutex<()>]>,
    hasher: std::hash::RandomState,
    /// Milliseconds since `started` at which expired idempotency records
    /// are next purged.
    next_purge: AtomicU64,
    started: Instant,
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
}

impl DispatcherBuilder {
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
            store: self.store,
            container: Arc::new(self.container),
            handlers,
            config: self.config,
            turns: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            hasher: std::hash::RandomState::new(),
            next_purge: AtomicU64::new(0),
            started: Instant::now(),
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

    /// The event store.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
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
        registered
            .erased
            .dispatch(self, Input::Typed(Box::new(command)), options)
            .await
    }

    /// Runs the command registered as `name` from its JSON body.
    pub async fn dispatch_json(
        &self,
        name: &str,
        body: &[u8],
        options: DispatchOptions,
    ) -> Result<CommandOutcome, CommandError> {
        let registered = self.handler(name)?;
        registered
            .erased
            .dispatch(self, Input::Json(body), options)
            .await
    }

    /// Deletes expired idempotency records when it is time to; one caller
    /// at a time does it, and a failure only waits for the next turn.
    async fn purge_if_due(&self) {
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
        match self
            .store
            .purge_idempotency_keys(self.config.idempotency_retention)
            .await
        {
            Ok(purged) => tracing::debug!(purged, "purged expired idempotency records"),
            Err(error) => tracing::warn!(%error, "could not purge expired idempotency records"),
        }
    }

    /// The lock commands on `stream` take turns on.
    fn turn(&self, stream: &str) -> &tokio::sync::Mutex<()> {
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

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("commands", &self.handlers.keys().collect::<Vec<_>>())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Refuses a create-command on an existing aggregate and any other command
/// on a missing one.
pub(crate) fn check_existence<C: Command>(
    stream_id: &str,
    loaded: &Loaded<AggregateOf<C>>,
) -> Result<(), CommandError> {
    match (C::CREATE, loaded.exists()) {
        (true, true) => Err(CommandError::AlreadyExists {
            stream_id: stream_id.to_owned(),
        }),
        (false, false) => Err(CommandError::NotFound {
            stream_id: stream_id.to_owned(),
        }),
        _ => Ok(()),
    }
}

fn parse<C: Command>(input: Input<'_>) -> Result<C, CommandError> {
    match input {
        Input::Json(body) => serde_json::from_slice(body).map_err(|error| {
            if error.is_data() {
                CommandError::InvalidCommand(error.to_string())
            } else {
                CommandError::MalformedJson(error.to_string())
            }
        }),
        Input::Typed(command) => command
            .downcast::<C>()
            .map(|command| *command)
            .map_err(|_| CommandError::InvalidCommand("command of the wrong type".into())),
    }
}

/// The idempotency key a dispatch holds: what its completion and release
/// carry, and what it needs to claim the key again.
struct Hold {
    key: String,
    fingerprint: String,
    /// The token of the claim that holds the key.
    token: String,
    /// When the key was claimed, to tell whether the lease may have run out.
    claimed_at: Instant,
    /// Whether the key was already claimed again after it was lost: a
    /// dispatch does that at most once.
    reclaimed: bool,
}

/// What became of a key whose completion was refused, by claiming it again.
enum Reclaimed {
    /// The key completed (the caller that took it over committed): its
    /// stored outcome.
    Replay(CommandOutcome),
    /// The key was free (the caller that took it over gave up): this
    /// dispatch holds it again, under the new token in its [`Hold`].
    Acquired,
}

impl Hold {
    /// A completion of this hold's key, with the response stored for
    /// replays.
    fn completion(&self, aggregate_id: &str) -> Completion {
        let aggregate_id = aggregate_id.to_owned();
        Completion::new(
            self.key.clone(),
            self.token.clone(),
            move |appended: &Appended| {
                response(&CommandOutcome {
                    stream_id: appended.stream_id.clone(),
                    aggregate_id: aggregate_id.clone(),
                    version: appended.version,
                    position: Some(appended.position),
                    events: appended.events.clone(),
                    replayed: false,
                })
            },
        )
    }

    /// Claims the key again after a completion was refused with `lost`
    /// ([`StoreError::IdempotencyKeyLost`]): its lease ran out and another
    /// dispatch took it over. A key completed meanwhile replays; one still
    /// in flight is [`CommandError::IdempotencyInFlight`]; one that is free
    /// again is held anew. Anything else, or a second time, is `lost`.
    async fn reclaim(
        &mut self,
        dispatcher: &Dispatcher,
        lost: StoreError,
    ) -> Result<Reclaimed, CommandError> {
        if std::mem::replace(&mut self.reclaimed, true) {
            return Err(lost.into());
        }
        tracing::debug!(key = %self.key, "idempotency key was taken over; claiming it again");
        let config = &dispatcher.config;
        let claim = dispatcher
            .store
            .claim_idempotency_key(
                &self.key,
                &self.fingerprint,
                config.idempotency_lease,
                config.idempotency_retention,
            )
            .await?;
        match claim {
            Claim::Completed(response) => Ok(Reclaimed::Replay(replay(&response)?)),
            Claim::InFlight => Err(CommandError::IdempotencyInFlight(self.key.clone())),
            Claim::Acquired { token } => {
                self.token = token;
                self.claimed_at = Instant::now();
                Ok(Reclaimed::Acquired)
            }
            _ => Err(lost.into()),
        }
    }

    /// Gives the key back after a failed command. If the lease may have
    /// run out meanwhile, another dispatch may have taken the key over and
    /// completed it: then its outcome is the answer, not `error`.
    async fn give_up(
        mut self,
        dispatcher: &Dispatcher,
        error: CommandError,
    ) -> Result<CommandOutcome, CommandError> {
        let store = &*dispatcher.store;
        if !self.reclaimed && self.claimed_at.elapsed() >= dispatcher.config.idempotency_lease {
            let lost = StoreError::IdempotencyKeyLost {
                key: self.key.clone(),
            };
            match self.reclaim(dispatcher, lost).await {
                Ok(Reclaimed::Replay(outcome)) => return Ok(outcome),
                // Held again (under a new token): released below.
                Ok(Reclaimed::Acquired) => {}
                // Another dispatch holds the key, or the claim failed:
                // nothing of ours to release.
                Err(_) => return Err(error),
            }
        }
        if let Err(release) = store.release_idempotency_key(&self.key, &self.token).await {
            tracing::warn!(%release, key = %self.key, "could not release an idempotency key; it frees up when its lease runs out");
        }
        Err(error)
    }
}

/// The whole cycle for one command.
pub(crate) async fn run<H: CommandHandler>(
    handler: &H,
    dispatcher: &Dispatcher,
    input: Input<'_>,
    options: DispatchOptions,
) -> Result<CommandOutcome, CommandError> {
    let body = match &input {
        Input::Json(body) => Some(*body),
        Input::Typed(_) => None,
    };
    let command: H::Command = parse(input)?;
    if let Err(report) = garde::Validate::validate(&command) {
        return Err(CommandError::Validation(field_errors_for::<H::Command>(
            &report,
        )));
    }
    let Some(key) = options.idempotency_key.as_deref() else {
        return execute(handler, dispatcher, command, body, &options, None).await;
    };
    let store = &*dispatcher.store;
    let config = &dispatcher.config;
    dispatcher.purge_if_due().await;
    let fingerprint = fingerprint(&command)?;
    let claim = store
        .claim_idempotency_key(
            key,
            &fingerprint,
            config.idempotency_lease,
            config.idempotency_retention,
        )
        .await?;
    let token = match claim {
        Claim::Acquired { token } => token,
        Claim::Completed(response) => return replay(&response),
        Claim::InFlight => return Err(CommandError::IdempotencyInFlight(key.to_owned())),
        Claim::Mismatch => return Err(CommandError::IdempotencyMismatch(key.to_owned())),
    };
    let mut hold = Hold {
        key: key.to_owned(),
        fingerprint,
        token,
        claimed_at: Instant::now(),
        reclaimed: false,
    };
    let outcome = match execute(
        handler,
        dispatcher,
        command,
        body,
        &options,
        Some(&mut hold),
    )
    .await
    {
        Ok(outcome) => outcome,
        Err(error) => return hold.give_up(dispatcher, error).await,
    };
    if !outcome.events.is_empty() || outcome.replayed {
        // The events and the response were committed together (or another
        // dispatch committed them and this is its outcome).
        return Ok(outcome);
    }
    // A command that decided on no events completes its key on its own.
    let text = response(&outcome);
    loop {
        match store
            .complete_idempotency_key(key, &hold.token, text.clone())
            .await
        {
            Ok(()) => return Ok(outcome),
            Err(lost @ StoreError::IdempotencyKeyLost { .. }) => {
                match hold.reclaim(dispatcher, lost).await? {
                    Reclaimed::Replay(stored) => return Ok(stored),
                    Reclaimed::Acquired => {}
                }
            }
            Err(error) => return hold.give_up(dispatcher, error.into()).await,
        }
    }
}

/// The outcome stored for an idempotency key, replayed.
fn replay(response: &str) -> Result<CommandOutcome, CommandError> {
    let mut outcome: CommandOutcome = serde_json::from_str(response).map_err(|error| {
        StoreError::Backend(format!("stored idempotent response is unreadable: {error}").into())
    })?;
    outcome.replayed = true;
    Ok(outcome)
}

/// Identifies a request for idempotency: a hash of the command name and its
/// fields in serialized form, so formatting and field order of the body do
/// not matter, but any difference in value does.
///
/// The fields are hashed as a JSON value with every object's keys sorted,
/// so maps whose iteration order varies (`HashMap`) hash the same way each
/// time, whatever `serde_json` features are enabled.
fn fingerprint<C: Command>(command: &C) -> Result<String, CommandError> {
    use sha2::Digest;
    let value = serde_json::to_value(command).map_err(CommandError::EventEncoding)?;
    let fields = serde_json::to_vec(&sorted(value)).map_err(CommandError::EventEncoding)?;
    let mut hash = sha2::Sha256::new();
    hash.update(C::NAME.as_bytes());
    hash.update([0]);
    hash.update(&fields);
    Ok(hash
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}

/// `value` with the keys of every object in sorted order. `serde_json`'s
/// maps are sorted already unless its `preserve_order` feature is on
/// (anywhere in the build), in which case they keep insertion order.
fn sorted(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> =
                map.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// The stored form of an outcome, replayed for a repeated idempotency key.
fn response(outcome: &CommandOutcome) -> String {
    serde_json::to_string(outcome).expect("a command outcome always serializes")
}

/// The aggregate id (generated for create-commands without one) and its
/// stream.
fn target<C: Command>(command: &C) -> Result<(String, String), CommandError> {
    let aggregate_id = command
        .aggregate_id()
        .unwrap_or_else(|| Uuid::now_v7().to_string());
    if aggregate_id.is_empty() {
        return Err(CommandError::InvalidCommand(
            "the aggregate id must not be empty".into(),
        ));
    }
    let stream = stream_id::<AggregateOf<C>>(&aggregate_id);
    crate::store::validate_stream_id(&stream)
        .map_err(|error| CommandError::InvalidCommand(format!("invalid aggregate id: {error}")))?;
    Ok((aggregate_id, stream))
}

/// Load → decide → append, retried on conflict. With an idempotency key
/// held, the append completes it; if the store refuses that because the
/// key was taken over (its lease ran out while this waited for its turn or
/// ran the handler), the key is claimed again: a completed key's outcome is
/// returned (replayed), and a key free again is appended with under the new
/// token.
async fn execute<H: CommandHandler>(
    handler: &H,
    dispatcher: &Dispatcher,
    command: H::Command,
    body: Option<&[u8]>,
    options: &DispatchOptions,
    mut hold: Option<&mut Hold>,
) -> Result<CommandOutcome, CommandError> {
    let (aggregate_id, stream) = target(&command)?;
    let store = &*dispatcher.store;
    let _turn = dispatcher.turn(&stream).lock().await;
    let command_id = Uuid::now_v7().to_string();
    // Handlers take the command by value; a retry decodes a fresh copy
    // from the request body, or from the command serialized up front.
    let mut spare = body.map(Cow::Borrowed);
    let mut command = Some(command);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let current = match command.take() {
            Some(command) => command,
            None => rebuild(spare.as_deref())?,
        };
        if spare.is_none() && dispatcher.config.max_retries > 0 {
            let bytes = serde_json::to_vec(&current).map_err(CommandError::EventEncoding)?;
            spare = Some(Cow::Owned(bytes));
        }
        let loaded = load::<AggregateOf<H::Command>>(store, &aggregate_id).await?;
        check_existence::<H::Command>(&stream, &loaded)?;
        if let Some(expected) = options.expected_version
            && expected != loaded.version
        {
            return Err(CommandError::PreconditionFailed {
                expected,
                actual: loaded.version,
            });
        }
        let decided = handler
            .handle(current, &loaded.state, &dispatcher.container)
            .await
            .map_err(CommandError::erase)?;
        if decided.is_empty() {
            return Ok(CommandOutcome {
                stream_id: stream,
                aggregate_id,
                version: loaded.version,
                position: None,
                events: Vec::new(),
                replayed: false,
            });
        }
        let encode = || {
            decided
                .iter()
                .map(|event| {
                    NewEvent::from_event(event)
                        .map(|new| new.with_metadata(metadata::<H::Command>(&command_id, options)))
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(CommandError::EventEncoding)
        };
        let expected = if <H::Command as Command>::CREATE {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(loaded.version)
        };
        let appended = store
            .append_with(
                &stream,
                expected,
                encode()?,
                hold.as_ref().map(|hold| hold.completion(&aggregate_id)),
            )
            .await;
        let appended = match (appended, hold.as_deref_mut()) {
            (Err(lost @ StoreError::IdempotencyKeyLost { .. }), Some(hold)) => {
                match hold.reclaim(dispatcher, lost).await? {
                    Reclaimed::Replay(outcome) => return Ok(outcome),
                    // Held again under a new token. This is still the
                    // aggregate's turn, and the expected version checks
                    // that the decision still stands.
                    Reclaimed::Acquired => {
                        store
                            .append_with(
                                &stream,
                                expected,
                                encode()?,
                                Some(hold.completion(&aggregate_id)),
                            )
                            .await
                    }
                }
            }
            (appended, _) => appended,
        };
        match appended {
            Ok(appended) => {
                return Ok(CommandOutcome {
                    stream_id: stream,
                    aggregate_id,
                    version: appended.version,
                    position: Some(appended.position),
                    events: appended.events,
                    replayed: false,
                });
            }
            Err(StoreError::WrongExpectedVersion { actual, .. }) => {
                if let Some(expected) = options.expected_version {
                    return Err(CommandError::PreconditionFailed { expected, actual });
                }
                if <H::Command as Command>::CREATE {
                    return Err(CommandError::AlreadyExists { stream_id: stream });
                }
                if attempts > dispatcher.config.max_retries {
                    return Err(CommandError::Conflict {
                        stream_id: stream,
                        attempts,
                    });
                }
                tracing::debug!(stream_id = %stream, attempts, "concurrency conflict; retrying");
            }
            Err(error) => return Err(error.into()),
        }
    }
}

fn rebuild<C: Command>(spare: Option<&[u8]>) -> Result<C, CommandError> {
    let bytes =
        spare.ok_or_else(|| CommandError::InvalidCommand("command cannot be retried".into()))?;
    serde_json::from_slice(bytes).map_err(|error| CommandError::InvalidCommand(error.to_string()))
}

fn metadata<C: Command>(command_id: &str, options: &DispatchOptions) -> Metadata {
    let mut metadata = Metadata::new();
    metadata.correlation_id = Some(
        options
            .correlation_id
            .clone()
            .unwrap_or_else(|| command_id.to_owned()),
    );
    metadata.causation_id = Some(command_id.to_owned());
    metadata.command = Some(C::NAME.to_owned());
    metadata.extra = options.metadata.clone();
    metadata
}
