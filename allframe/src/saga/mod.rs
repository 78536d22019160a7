//! Sagas (process managers): workflows across aggregates that finish,
//! compensate and survive crashes.
//!
//! A saga instance is a stream of its own, `saga-{name}-{id}`, started by
//! appending its first event ([`Sagas::start`]). Its state is folded from
//! its own events like an aggregate's ([`Saga::evolve`]). For each input —
//! the first event, the answer to a command it sent, a step that timed out
//! — [`Saga::decide`] returns a [`Decision`]: events to record, commands to
//! send (each a named step) and, optionally, the end. The decision is
//! appended to the saga's stream in one append, with optimistic
//! concurrency: its events followed by a `SagaStep` record of the input it
//! answers, the commands to send and the end.
//!
//! The log is the work queue. A runner per saga type follows the `saga`
//! category through a checkpointed subscription (the checkpoint is kept by
//! the store's projection storage, beside the projections' own). For each
//! `SagaStep` it reads, it sends the step's commands through the
//! dispatcher and appends the next decision. Every command carries an
//! idempotency key made of the saga's name, id and step, the saga id as its
//! correlation id and the `SagaStep` event as its causation. The checkpoint
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

use crate::Command;
use crate::command::CommandOutcome;
use crate::event::Event;

mod runner;

pub use runner::{SagaError, SagaView, Sagas, SagasBuilder, view};

/// The stored type of the record appended with each decision.
pub const STEP_EVENT_TYPE: &str = "SagaStep";

/// The stream category every saga instance lives in.
pub const CATEGORY: &str = "saga";

/// How long a step waits for an answer unless its decision says otherwise.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// A workflow across aggregates. See the [module docs](self).
pub trait Saga: Default + Send + Sync + 'static {
    /// Its name: instances live in streams `saga-{NAME}-{id}`. Lowercase
    /// letters, digits and `-`.
    const NAME: &'static str;

    /// Its own events, folded into its state. The first one, recorded by
    /// [`Sagas::start`], starts an instance.
    type Event: Event;

    /// Applies one of its own events to the state.
    fn evolve(&mut self, event: &Self::Event);

    /// Decides what to do about `input`, on the state folded so far.
    fn decide(&self, input: Input<'_, Self>) -> Decision<Self>;
}

/// What a saga decides about.
#[derive(Debug)]
#[non_exhaustive]
pub enum Input<'a, S: Saga> {
    /// The instance's first event: it was just started.
    Started(&'a S::Event),
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
/// # use allframe::Event;
/// # #[derive(Event)] enum TripEvent { Booked {} }
/// # #[derive(Default)] struct Trip;
/// # impl Saga for Trip {
/// #     const NAME: &'static str = "trip";
/// #     type Event = TripEvent;
/// #     fn evolve(&mut self, _: &TripEvent) {}
/// #     fn decide(&self, input: Input<'_, Self>) -> Decision<Self> {
/// match input {
///     Input::Refused { code, .. } => Decision::end("rejected").because(code),
///     _ => Decision::end("completed"),
/// }
/// #     }
/// # }
/// ```
#[derive(Debug)]
pub struct Decision<S: Saga> {
    pub(crate) events: Vec<S::Event>,
    pub(crate) sends: Vec<Sent>,
    pub(crate) end: Option<End>,
    /// Why the decision cannot be recorded as it is (a command that does
    /// not encode): the instance then ends as `failed`.
    pub(crate) invalid: Option<String>,
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
    pub fn record(mut self, event: S::Event) -> Self {
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
    pub fn events(&self) -> &[S::Event] {
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

/// The stream id of instance `id` of saga `S`.
pub fn stream_id<S: Saga>(id: &str) -> String {
    format!("{CATEGORY}-{}-{id}", S::NAME)
}
