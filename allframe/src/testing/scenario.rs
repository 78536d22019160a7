//! Given/when/then: test an aggregate's command handlers with no store.
//!
//! `given::<Account>([opened, deposited_50]).when(withdraw_80).await`
//! `.then_error("insufficient-funds")` — the bank example's domain tests
//! (`examples/bank/src/domain.rs`) show it in full.
//!
//! `when` runs exactly what dispatch runs before appending — validation,
//! the create / not-found rule, the registered handler — on the state the
//! given events produce.

use std::fmt::Debug;

use crate::aggregate::{Aggregate, Loaded, replay};
use crate::command::registry;
use crate::command::{Command, CommandError, field_errors_for};
use crate::di::{Container, ContainerBuilder};

/// Starts a scenario from the events already in the aggregate's stream
/// (none for a create-command).
pub fn given<A: Aggregate>(events: impl IntoIterator<Item = A::Event>) -> Scenario<A> {
    Scenario {
        history: events.into_iter().collect(),
        dependencies: Container::builder(),
    }
}

/// An aggregate history and the dependencies handlers may ask for.
pub struct Scenario<A: Aggregate> {
    history: Vec<A::Event>,
    dependencies: ContainerBuilder,
}

impl<A: Aggregate> Scenario<A> {
    /// Provides a `Dep<T>` for the handler.
    pub fn with<T: Send + Sync + 'static>(mut self, dependency: T) -> Self {
        self.dependencies = self.dependencies.provide(dependency);
        self
    }

    /// Runs the registered handler of `command` on the given history.
    pub async fn when<C: Command<Aggregate = A>>(self, command: C) -> Then<A> {
        let result = self.decide(command).await;
        Then { result }
    }

    async fn decide<C: Command<Aggregate = A>>(
        self,
        command: C,
    ) -> Result<Vec<A::Event>, CommandError> {
        if let Err(report) = garde::Validate::validate(&command) {
            return Err(CommandError::Validation(field_errors_for::<C>(&report)));
        }
        let handlers = registry::collect(registry::linked())
            .unwrap_or_else(|error| panic!("the handler registry is invalid: {error}"));
        let registered = handlers
            .get(C::NAME)
            .unwrap_or_else(|| panic!("no #[command_handler] is registered for `{}`", C::NAME));
        let container = self
            .dependencies
            .build()
            .await
            .unwrap_or_else(|error| panic!("scenario dependencies: {error}"));
        if let Err(error) = container.check(registered.erased.dependencies().iter().copied()) {
            panic!("provide the handler's dependencies with `.with(...)`: {error}");
        }
        let loaded: Loaded<A> = replay::<A>(&self.history);
        let events = registered
            .erased
            .decide(Box::new(command), &loaded, &container)
            .await?;
        Ok(*events
            .downcast::<Vec<A::Event>>()
            .expect("a handler returns its aggregate's events"))
    }
}

/// What a scenario's command decided, to assert on.
#[must_use = "assert on the outcome with `then` or `then_error`"]
pub struct Then<A: Aggregate> {
    result: Result<Vec<A::Event>, CommandError>,
}

impl<A: Aggregate> Then<A>
where
    A::Event: PartialEq + Debug,
{
    /// Asserts that the command produced exactly these events.
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = A::Event>) {
        let expected: Vec<A::Event> = expected.into_iter().collect();
        match self.result {
            Ok(events) => assert_eq!(events, expected, "the command produced other events"),
            Err(error) => panic!(
                "expected events {expected:?}, but the command failed with `{}`: {error}",
                error.code()
            ),
        }
    }

    /// Asserts that the command failed with this code (a domain error's
    /// code, or one of [`CommandError::code`]'s, e.g. `validation-failed`).
    #[track_caller]
    pub fn then_error(self, code: &str) {
        match self.result {
            Ok(events) => panic!("expected error `{code}`, but the command produced {events:?}"),
            Err(error) => assert_eq!(
                error.code(),
                code,
                "the command failed differently: {error}"
            ),
        }
    }

    /// The outcome itself, for assertions of your own.
    pub fn result(self) -> Result<Vec<A::Event>, CommandError> {
        self.result
    }
}
