//! Dispatcher settings, per-call options, and what a command produced.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::event::RecordedEvent;

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
    /// How many folded aggregate states the dispatcher keeps between
    /// commands (default 100,000; 0 turns the cache off). A command on a
    /// cached aggregate reads nothing before it decides: the append's
    /// expected version checks that the state was current, and a refusal
    /// is answered only after reading the stream's tail.
    pub state_cache_entries: usize,
    /// How many bytes the cached states may take at most, as their
    /// [`Aggregate::memory_size`](crate::Aggregate::memory_size) estimates
    /// them plus their stream ids (default 64 MiB; 0 turns the cache off).
    pub state_cache_bytes: usize,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            max_retries: 3,
            idempotency_retention: Duration::from_secs(24 * 60 * 60),
            idempotency_lease: Duration::from_secs(30),
            state_cache_entries: 100_000,
            state_cache_bytes: 64 << 20,
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

    /// Bounds the aggregate state cache by entries and bytes (either 0
    /// turns it off).
    pub fn state_cache(mut self, entries: usize, bytes: usize) -> Self {
        self.state_cache_entries = entries;
        self.state_cache_bytes = bytes;
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
    /// Flows into every event's `metadata.causation_id` (default: the
    /// command's own id): the message that caused this command, such as
    /// the event a saga reacted to.
    pub causation_id: Option<String>,
    /// Makes the call idempotent: a repeat returns the first result.
    pub idempotency_key: Option<String>,
    /// Runs an idempotent call without claiming its key first: the key's
    /// record is created with the command's events, in the same write,
    /// instead of in a write of its own before the handler runs (see
    /// [`Completion::unclaimed`](crate::store::Completion::unclaimed)).
    /// The command still takes effect at most once, but a duplicate sent
    /// while the first is running is not refused as in flight: both run
    /// the handler, one commits, and the other returns its stored result.
    /// For callers that do not send duplicates at once, such as a saga
    /// sending a step's command again after a crash.
    pub unclaimed_idempotency: bool,
    /// Fails with a precondition error (the handler does not run) unless
    /// the aggregate's version is one this accepts: HTTP's `If-Match`.
    pub if_match: Option<IfMatch>,
    /// Extra metadata fields for every event.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Who sends it, for the command's authorization hook; `None` for the
    /// service itself (a saga, code of the service's own).
    pub principal: Option<crate::auth::Principal>,
    /// The idempotency key is the service's own (a saga step's), unique
    /// without the principal: recorded as it is, not scoped by subject,
    /// so the key stays the one earlier releases recorded.
    pub(crate) service_key: bool,
}

impl DispatchOptions {
    /// Sets the correlation id.
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Sets the causation id.
    pub fn causation_id(mut self, id: impl Into<String>) -> Self {
        self.causation_id = Some(id.into());
        self
    }

    /// Sets the idempotency key.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Sets the idempotency key, to be recorded with the command's events
    /// rather than claimed first ([`unclaimed_idempotency`](Self::unclaimed_idempotency)).
    pub fn unclaimed_idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self.unclaimed_idempotency = true;
        self
    }

    /// Sets a key of the service's own, unclaimed
    /// ([`unclaimed_idempotency_key`](Self::unclaimed_idempotency_key)) and
    /// not scoped by the principal's subject.
    pub(crate) fn service_idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.service_key = true;
        self.unclaimed_idempotency_key(key)
    }

    /// Expects the aggregate at exactly `version`.
    pub fn expected_version(mut self, version: u64) -> Self {
        self.if_match = Some(IfMatch::OneOf(vec![version]));
        self
    }

    /// Sets the versions the aggregate may be at.
    pub fn if_match(mut self, if_match: IfMatch) -> Self {
        self.if_match = Some(if_match);
        self
    }

    /// Sent by `principal`: its authorization hook and its handler
    /// ([`Principal::current`](crate::auth::Principal::current)) see it,
    /// and every event's metadata records its subject (`principal`) and
    /// roles (`principal_roles`, when it has any).
    pub fn principal(mut self, principal: crate::auth::Principal) -> Self {
        principal.record(&mut self.metadata);
        self.principal = Some(principal);
        self
    }

    /// Adds an extra metadata field.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }
}

/// The aggregate versions a command accepts, as HTTP's `If-Match` says
/// them (RFC 9110 §13.1.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IfMatch {
    /// `*`: any version of an aggregate that exists.
    Exists,
    /// Any of these versions. Empty never matches (a list of weak tags
    /// only: a weak tag never matches under strong comparison).
    OneOf(Vec<u64>),
}

impl IfMatch {
    /// Whether an aggregate that `exists` at `version` satisfies this.
    pub fn matches(&self, exists: bool, version: u64) -> bool {
        match self {
            Self::Exists => exists,
            Self::OneOf(versions) => versions.contains(&version),
        }
    }
}

impl std::fmt::Display for IfMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exists => f.write_str("an existing aggregate"),
            Self::OneOf(versions) => match versions.as_slice() {
                [] => f.write_str("no version (weak tags never match)"),
                [version] => write!(f, "version {version}"),
                versions => {
                    let list: Vec<String> = versions.iter().map(u64::to_string).collect();
                    write!(f, "one of versions {}", list.join(", "))
                }
            },
        }
    }
}

/// What a carried-out command produced: the body of its success response.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct CommandOutcome {
    /// The aggregate's stream.
    pub stream_id: String,
    /// The aggregate's id (server-generated for create-commands without one).
    pub aggregate_id: String,
    /// The aggregate's version after the command.
    pub version: u64,
    /// The global position of the last recorded event; null when the
    /// handler decided on no events.
    #[schema(required = true, minimum = 1)]
    pub position: Option<u64>,
    /// The recorded events.
    pub events: Vec<RecordedEvent>,
    /// Whether this is the stored result of an earlier call with the same
    /// idempotency key.
    #[serde(skip)]
    pub replayed: bool,
}

impl CommandOutcome {
    /// The outcome of the command whose events are `part` of `appended`
    /// (all of them when it was the append's only command; one command's
    /// share when a round appended several commands' events at once).
    pub(super) fn part(
        appended: &crate::store::Appended,
        aggregate_id: &str,
        part: std::ops::Range<usize>,
    ) -> Self {
        let events = appended.events[part.clone()].to_vec();
        Self {
            stream_id: appended.stream_id.clone(),
            aggregate_id: aggregate_id.to_owned(),
            // The events after this command's are the later commands'.
            version: appended.version - (appended.events.len() - part.end) as u64,
            position: events.last().map(|event| event.position),
            events,
            replayed: false,
        }
    }
}
