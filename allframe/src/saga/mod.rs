//! Sagas (process managers): workflows across aggregates that finish,
//! compensate and survive crashes.
//!
//! A saga instance is a stream of its own, `saga-{name}-{id}`, started by
//! a create-command on it (or [`Sagas::start`]), which records its first
//! event. A saga is an aggregate over that stream: its state is folded
//! from its own events by [`Aggregate::apply`]. For each input —
//! the first event, the answer to a command it sent, a step that timed out
//! — [`Saga::decide`] returns a [`Decision`]: events to record, commands to
//! send (each a named step) and, optionally, the end. The decision is
//! appended to the saga's stream in one append, with optimistic
//! concurrency: its events followed by a `SagaStep` record of the input it
//! answers, the commands to send and the end.
//!
//! A create-command on a saga linked with `#[saga]` records the decision
//! about its first event ([`Input::Started`]) in its own append, after its
//! events: the runner then finds the start decided and sends its commands
//! as soon as it reads the instance, without an append of its own first.
//! An instance started otherwise ([`Sagas::start`], a saga added to the
//! runner only) has its start decided by the runner.
//!
//! The log is the work queue. A runner per saga type follows the `saga`
//! category through a checkpointed subscription (the checkpoint is kept by
//! the store's projection storage, beside the projections' own). For each
//! `SagaStep` it reads, it sends the step's commands through the
//! dispatcher and appends the next decision. Every command carries an
//! idempotency key made of the saga's name, id and step (recorded with the
//! command's events rather than claimed first:
//! [`DispatchOptions::unclaimed_idempotency`](crate::DispatchOptions::unclaimed_idempotency)),
//! the saga id as its correlation id and the `SagaStep` event as its
//! causation. The checkpoint
//! passes an event only once everything it asked for is recorded, so after
//! a crash the runner reads it again: an input whose decision is already
//! in the stream is not decided again, and a command sent again under its
//! key replays its first answer instead of running twice.
//!
//! A command that is refused (a domain error, a missing aggregate, an
//! invalid body) is an input like any other ([`Input::Refused`]): the saga
//! compensates. A command that keeps failing without an answer (conflicts,
//! a handler that panics, a node waiting for an upgrade) is sent again
//! until its step's timeout, counted from when the step was recorded, so a
//! restart does not extend it; then the saga gets [`Input::TimedOut`]. Such
//! a command was not carried out, so compensation is sound. While the store
//! itself is unreachable the saga cannot record anything and waits.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::command::CommandOutcome;
use crate::{Aggregate, Command};

mod runner;

pub use runner::{SagaError, SagaStatus, SagaView, Sagas, SagasBuilder, view};

/// The stored type of the record appended with each decision.
pub const STEP_EVENT_TYPE: &str = "SagaStep";

/// The stream category every saga instance lives in.
pub const CATEGORY: &str = "saga";

/// How long a step waits for an answer unless its decision says otherwise.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// A workflow across aggregates. See the [module docs](self).
///
/// A saga is an [`Aggregate`] over its own stream: its events are the
/// aggregate's events, folded by [`Aggregate::apply`], and its
/// `CATEGORY` is `saga-{name}` (lowercase letters, digits and `-` after
/// `saga-`), so instance `id` lives in the stream `saga-{name}-{id}`. No
/// saga's name may be another's followed by `-` (`transfer` beside
/// `transfer-money`): their streams could not be told apart. A
/// create-command on it starts an instance: over HTTP it answers `202`
/// with the saga's id.
pub trait Saga: Aggregate {
    /// Decides what to do about `input`, on the state folded so far.
    fn decide(&self, input: Input<'_, Self>) -> Decision<Self>;
}

/// The name of saga `S`: its category after `saga-`.
pub fn name<S: Saga>() -> &'static str {
    S::CATEGORY
        .strip_prefix(STREAM_PREFIX)
        .unwrap_or(S::CATEGORY)
}

/// What every saga's category starts with.
pub const STREAM_PREFIX: &str = "saga-";

/// One saga linked into the program, registered by `#[saga]` on its
/// `impl Saga` block. An app runs every linked saga.
#[derive(Clone, Copy)]
pub struct SagaRegistration {
    category: &'static str,
    add: fn(SagasBuilder) -> SagasBuilder,
    start: StartDecision,
}

/// [`runner::start_decision`] of one saga.
type StartDecision = fn(&dyn std::any::Any, &crate::Metadata, &str) -> Option<Vec<crate::NewEvent>>;

impl SagaRegistration {
    /// The registration of saga `S`.
    pub const fn new<S: Saga>() -> Self {
        Self {
            category: S::CATEGORY,
            add: SagasBuilder::saga::<S>,
            start: runner::start_decision::<S>,
        }
    }

    /// The saga's category, `saga-{name}`.
    pub fn category(&self) -> &'static str {
        self.category
    }
}

inventory::collect!(SagaRegistration);

/// The start decision of a new instance `id` of the linked saga whose
/// category is `category`, made on the `events` (a `Vec` of its events) a
/// create-command decided (`first` is the metadata of the first), to be
/// recorded in the same append as they are: the runner then finds the
/// start decided and sends its commands at once, instead of deciding and
/// recording it first. `None` when no linked saga has that category (its
/// runner, if any, decides the start).
pub(crate) fn start_decision(
    category: &str,
    events: &dyn std::any::Any,
    first: &crate::Metadata,
    id: &str,
) -> Option<Vec<crate::NewEvent>> {
    if !is_saga_category(category) {
        return None;
    }
    let registration = inventory::iter::<SagaRegistration>
        .into_iter()
        .find(|registration| registration.category == category)?;
    (registration.start)(events, first, id)
}

/// Adds every saga linked into the program to `builder`.
pub(crate) fn linked(builder: SagasBuilder) -> SagasBuilder {
    inventory::iter::<SagaRegistration>
        .into_iter()
        .fold(builder, |builder, registration| (registration.add)(builder))
}

/// Stops compilation unless `category` is a saga's (see
/// [`is_saga_category`]); `#[saga]` calls it in a constant.
#[doc(hidden)]
pub const fn assert_saga_category(category: &str) {
    let bytes = category.as_bytes();
    let prefix = STREAM_PREFIX.as_bytes();
    let mut i = 0;
    while i < prefix.len() {
        if i >= bytes.len() || bytes[i] != prefix[i] {
            panic!("a saga's CATEGORY must be `saga-` followed by its name");
        }
        i += 1;
    }
    if i >= bytes.len() || !bytes[i].is_ascii_lowercase() {
        panic!("a saga's name (its CATEGORY after `saga-`) must start with a lowercase letter");
    }
    while i < bytes.len() {
        let c = bytes[i];
        if !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-') {
            panic!(
                "a saga's name (its CATEGORY after `saga-`) takes lowercase letters, digits and `-` only"
            );
        }
        i += 1;
    }
}

/// The saga a command starts: the name in its aggregate's `category`
/// when it `creates` and the category is a saga's.
pub(crate) fn started_by(creates: bool, category: &'static str) -> Option<&'static str> {
    (creates && is_saga_category(category)).then(|| &category[STREAM_PREFIX.len()..])
}

/// What a command that starts a saga answers over HTTP (`202`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SagaStarted {
    /// The new instance's id: `GET /sagas/{name}/{saga_id}` follows it.
    pub saga_id: String,
}

/// Whether `category` names a saga: `saga-` and then lowercase letters,
/// digits and `-`, starting with a letter.
pub(crate) fn is_saga_category(category: &str) -> bool {
    category.strip_prefix(STREAM_PREFIX).is_some_and(|name| {
        name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    })
}

/// What a saga decides about.
#[non_exhaustive]
pub enum Input<'a, S: Saga> {
    /// The instance's first event: it was just started.
    Started(&'a <S as Aggregate>::Event),
    /// The command sent as `step` was carried out.
    Done {
        /// The step's name.
        step: &'a str,
        /// What the command recorded.
        outcome: &'a CommandOutcome,
    },
    /// The command sent as `step` was refused.
    Refused {
        /// The step's name.
        step: &'a str,
        /// The refusal's problem code (`insufficient-funds`, `not-found`, …).
        code: &'a str,
        /// What the refusal said.
        message: &'a str,
    },
    /// The command sent as `step` got no answer within its timeout; it was
    /// not carried out.
    TimedOut {
        /// The step's name.
        step: &'a str,
    },
}

/// A command a decision sends, as the `SagaStep` record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Sent {
    /// The step's name, unique within the instance.
    pub(crate) step: String,
    /// The command's registered name.
    pub(crate) command: String,
    /// Its JSON body.
    pub(crate) body: serde_json::Value,
    /// How long it may go unanswered, in milliseconds; `None`: the
    /// runner's step timeout ([`SagasBuilder::step_timeout`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) timeout_ms: Option<u64>,
}

/// How an instance ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct End {
    pub(crate) status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
}

/// The record appended with each decision (type [`STEP_EVENT_TYPE`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    /// The input it answers: `start`, or `answer:{step}`.
    pub(crate) input: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) sends: Vec<Sent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) end: Option<End>,
}

/// What a saga decided about one input: events to record, commands to
/// send and whether it has ended.
///
/// ```
/// # use allframe::saga::{Decision, Saga, Input};
/// # use allframe::{Aggregate, Event};
/// # #[derive(Event)] enum TripEvent { Booked {} }
/// # #[derive(Default)] struct Trip;
/// # impl Aggregate for Trip {
/// #     type Event = TripEvent;
/// #     const CATEGORY: &'static str = "saga-trip";
/// #     fn apply(&mut self, _: &TripEvent) {}
/// # }
/// # impl Saga for Trip {
/// #     fn decide(&self, input: Input<'_, Self>) -> Decision<Self> {
/// match input {
///     Input::Refused { code, .. } => Decision::end("rejected").because(code),
///     _ => Decision::end("completed"),
/// }
/// #     }
/// # }
/// ```
pub struct Decision<S: Saga> {
    pub(crate) events: Vec<<S as Aggregate>::Event>,
    pub(crate) sends: Vec<Sent>,
    pub(crate) end: Option<End>,
    /// Why the decision cannot be recorded as it is (a command that does
    /// not encode): the instance then ends as `failed`.
    pub(crate) invalid: Option<String>,
}

impl<S: Saga> std::fmt::Debug for Input<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Started(_) => f.write_str("Started"),
            Self::Done { step, outcome } => f
                .debug_struct("Done")
                .field("step", step)
                .field("version", &outcome.version)
                .finish_non_exhaustive(),
            Self::Refused { step, code, .. } => f
                .debug_struct("Refused")
                .field("step", step)
                .field("code", code)
                .finish_non_exhaustive(),
            Self::TimedOut { step } => f.debug_struct("TimedOut").field("step", step).finish(),
        }
    }
}

impl<S: Saga> std::fmt::Debug for Decision<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decision")
            .field("events", &self.events.len())
            .field("sends", &self.sends)
            .field("end", &self.end)
            .field("invalid", &self.invalid)
            .finish()
    }
}

impl<S: Saga> Default for Decision<S> {
    fn default() -> Self {
        Self {
            events: Vec::new(),
            sends: Vec::new(),
            end: None,
            invalid: None,
        }
    }
}

impl<S: Saga> Decision<S> {
    /// Nothing to record, nothing to send: wait for the next input.
    pub fn wait() -> Self {
        Self::default()
    }

    /// Sends `command` as the step `step` (a name unique within the
    /// instance), to be answered within the runner's step timeout
    /// ([`SagasBuilder::step_timeout`], default [`DEFAULT_STEP_TIMEOUT`]).
    pub fn send<C: Command>(step: impl Into<String>, command: &C) -> Self {
        Self::default().and_send(step, command)
    }

    /// Ends the instance with `status` (`completed`, `refunded`, …).
    pub fn end(status: impl Into<String>) -> Self {
        Self::default().and_end(status)
    }

    /// Also records `event` in the saga's stream.
    pub fn record(mut self, event: <S as Aggregate>::Event) -> Self {
        self.events.push(event);
        self
    }

    /// Also sends `command` as the step `step`.
    pub fn and_send<C: Command>(self, step: impl Into<String>, command: &C) -> Self {
        self.sending(step, command, None)
    }

    /// Also sends `command` as the step `step`, to be answered within
    /// `timeout` rather than the runner's step timeout.
    pub fn and_send_within<C: Command>(
        self,
        step: impl Into<String>,
        command: &C,
        timeout: Duration,
    ) -> Self {
        self.sending(step, command, Some(timeout))
    }

    fn sending<C: Command>(
        mut self,
        step: impl Into<String>,
        command: &C,
        timeout: Option<Duration>,
    ) -> Self {
        let step = step.into();
        match serde_json::to_value(command) {
            Ok(body) => self.sends.push(Sent {
                step,
                command: C::NAME.to_owned(),
                body,
                timeout_ms: timeout
                    .map(|timeout| u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)),
            }),
            Err(error) => {
                self.invalid = Some(format!(
                    "the command of step `{step}` does not encode: {error}"
                ));
            }
        }
        self
    }

    /// Also ends the instance with `status`.
    pub fn and_end(mut self, status: impl Into<String>) -> Self {
        self.end = Some(End {
            status: status.into(),
            reason: None,
        });
        self
    }

    /// The events it records, in order.
    pub fn events(&self) -> &[<S as Aggregate>::Event] {
        &self.events
    }

    /// The commands it sends: each step's name, the command's name and its
    /// JSON body, in order.
    pub fn sends(&self) -> impl Iterator<Item = (&str, &str, &serde_json::Value)> {
        self.sends
            .iter()
            .map(|send| (send.step.as_str(), send.command.as_str(), &send.body))
    }

    /// The status it ends the instance with, and why, if it ends it.
    pub fn ending(&self) -> Option<(&str, Option<&str>)> {
        self.end
            .as_ref()
            .map(|end| (end.status.as_str(), end.reason.as_deref()))
    }

    /// Why it cannot be recorded as it is, if it cannot (a command that
    /// does not encode): the instance would end as `failed`.
    pub fn invalid(&self) -> Option<&str> {
        self.invalid.as_deref()
    }

    /// Gives the end a reason (a refusal's code, …).
    pub fn because(mut self, reason: impl Into<String>) -> Self {
        if let Some(end) = &mut self.end {
            end.reason = Some(reason.into());
        }
        self
    }
}

/// The stream id of instance `id` of saga `S`: `saga-{name}-{id}`.
pub fn stream_id<S: Saga>(id: &str) -> String {
    crate::aggregate::stream_id::<S>(id)
}
