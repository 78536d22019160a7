//! Given/when/then for sagas: a saga's decisions, tested with no store.
//!
//! `given_saga::<Transfer>([requested]).when_refused("deposit",
//! "account-closed").then_sends("refund", &refund)` — the bank's
//! `transfer` module tests show it in full.

use std::fmt::Debug;

use crate::aggregate::replay;
use crate::command::{Command, CommandOutcome};
use crate::saga::{Decision, Input, Saga};

/// Starts a saga scenario from the events already in the instance's
/// stream; the first is the one that started it.
pub fn given_saga<S: Saga>(events: impl IntoIterator<Item = S::Event>) -> SagaScenario<S> {
    SagaScenario {
        history: events.into_iter().collect(),
    }
}

/// A saga instance's history.
pub struct SagaScenario<S: Saga> {
    history: Vec<S::Event>,
}

impl<S: Saga> SagaScenario<S> {
    fn decide(self, decide: impl FnOnce(&S, &[S::Event]) -> Decision<S>) -> SagaThen<S> {
        let state = replay::<S>(&self.history).state;
        SagaThen {
            decision: decide(&state, &self.history),
        }
    }

    /// It was just started: its first given event is the input.
    #[must_use = "assert on the decision with the `then_…` methods"]
    pub fn when_started(self) -> SagaThen<S> {
        self.decide(|saga, history| {
            let first = history
                .first()
                .expect("given the event that started the saga");
            saga.decide(Input::Started(first))
        })
    }

    /// The command sent as `step` was carried out (recording no events).
    #[must_use = "assert on the decision with the `then_…` methods"]
    pub fn when_done(self, step: &str) -> SagaThen<S> {
        let outcome = CommandOutcome {
            stream_id: String::new(),
            aggregate_id: String::new(),
            version: 0,
            position: None,
            events: Vec::new(),
            replayed: false,
        };
        self.decide(|saga, _| {
            saga.decide(Input::Done {
                step,
                outcome: &outcome,
            })
        })
    }

    /// The command sent as `step` was refused with `code`.
    #[must_use = "assert on the decision with the `then_…` methods"]
    pub fn when_refused(self, step: &str, code: &str) -> SagaThen<S> {
        self.decide(|saga, _| {
            saga.decide(Input::Refused {
                step,
                code,
                message: code,
            })
        })
    }

    /// The command sent as `step` got no answer in time.
    #[must_use = "assert on the decision with the `then_…` methods"]
    pub fn when_timed_out(self, step: &str) -> SagaThen<S> {
        self.decide(|saga, _| saga.decide(Input::TimedOut { step }))
    }
}

/// What a saga decided, to assert on; each assertion returns it for the
/// next.
pub struct SagaThen<S: Saga> {
    decision: Decision<S>,
}

impl<S: Saga> SagaThen<S>
where
    S::Event: PartialEq + Debug,
{
    /// Asserts that it sends `command` as step `step`.
    #[track_caller]
    pub fn then_sends<C: Command>(self, step: &str, command: &C) -> Self {
        let body = serde_json::to_value(command).expect("the command encodes");
        let sent: Vec<_> = self.decision.sends().collect();
        assert!(
            sent.contains(&(step, C::NAME, &body)),
            "expected step `{step}` to send `{}` {body}, but it sends {sent:?}",
            C::NAME
        );
        self
    }

    /// Asserts that it sends nothing.
    #[track_caller]
    pub fn then_sends_nothing(self) -> Self {
        let sent: Vec<_> = self.decision.sends().collect();
        assert!(
            sent.is_empty(),
            "expected no command, but it sends {sent:?}"
        );
        self
    }

    /// Asserts that it records exactly these events.
    #[track_caller]
    pub fn then_records(self, expected: impl IntoIterator<Item = S::Event>) -> Self {
        let expected: Vec<S::Event> = expected.into_iter().collect();
        assert_eq!(
            self.decision.events(),
            expected.as_slice(),
            "it records other events"
        );
        self
    }

    /// Asserts that it ends the instance with `status` (and `reason`).
    #[track_caller]
    pub fn then_ends(self, status: &str, reason: Option<&str>) -> Self {
        assert_eq!(
            self.decision.ending(),
            Some((status, reason)),
            "it ends otherwise"
        );
        self
    }

    /// Asserts that it does not end the instance.
    #[track_caller]
    pub fn then_goes_on(self) -> Self {
        assert_eq!(self.decision.ending(), None, "it ends the instance");
        self
    }

    /// The decision itself, for assertions of your own.
    pub fn decision(self) -> Decision<S> {
        self.decision
    }
}
