//! Authorization hooks per command: registered with
//! [`DispatcherBuilder::authorize`](super::DispatcherBuilder::authorize)
//! (or [`AppBuilder::authorize`](crate::AppBuilder::authorize)), run after
//! the aggregate is loaded and before the handler, on every path a command
//! takes.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

use super::{AggregateOf, Command, CommandError};
use crate::auth::Principal;

/// A command's hook: given who sends it (`None`: the service itself), the
/// command and the aggregate's state, `Err(reason)` refuses it with a 403
/// problem (`forbidden`) whose detail is the reason.
pub(crate) type Authorize<C> =
    dyn Fn(Option<&Principal>, &C, &AggregateOf<C>) -> Result<(), String> + Send + Sync;

/// A command's authorization hook, as
/// [`DispatcherBuilder::authorize`](super::DispatcherBuilder::authorize)
/// takes it: any such closure is one.
pub trait AuthorizeHook<C: Command>:
    Fn(Option<&Principal>, &C, &AggregateOf<C>) -> Result<(), String> + Send + Sync + 'static
{
}

impl<C: Command, F> AuthorizeHook<C> for F where
    F: Fn(Option<&Principal>, &C, &AggregateOf<C>) -> Result<(), String> + Send + Sync + 'static
{
}

/// The hooks, by command type.
#[derive(Clone, Default)]
pub(crate) struct Authorizers(HashMap<TypeId, Arc<dyn Any + Send + Sync>>);

impl Authorizers {
    pub(crate) fn insert<C: Command>(&mut self, hook: Arc<Authorize<C>>) {
        self.0.insert(TypeId::of::<C>(), Arc::new(hook));
    }

    /// The hook of `C`, if it has one.
    pub(crate) fn of<C: Command>(&self) -> Option<Arc<Authorize<C>>> {
        self.0
            .get(&TypeId::of::<C>())
            .and_then(|hook| hook.downcast_ref::<Arc<Authorize<C>>>())
            .cloned()
    }
}

/// Runs `hook` (if any) on `command` sent by `principal` to `state`.
pub(crate) fn check<C: Command>(
    hook: Option<&Authorize<C>>,
    principal: Option<&Principal>,
    command: &C,
    state: &AggregateOf<C>,
) -> Result<(), CommandError> {
    match hook {
        Some(hook) => hook(principal, command, state).map_err(CommandError::Forbidden),
        None => Ok(()),
    }
}
