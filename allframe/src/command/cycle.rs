//! One command's cycle: validate → claim its idempotency key → take the
//! aggregate's turn → load → decide → append with the loaded version,
//! retried on conflict.

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use futures_util::FutureExt;
use uuid::Uuid;

use super::dispatch::{Dispatcher, Input};
use super::idempotency::{Hold, Reclaimed, fingerprint, replay, response, scoped_key};
use super::rounds::{self, Decide, Member};
use super::{
    AggregateOf, Command, CommandError, CommandHandler, CommandOutcome, DispatchOptions, EventOf,
    field_errors_for,
};
use crate::aggregate::{Loaded, apply_recorded, catch_up, stream_id};
use crate::auth::Principal;
use crate::event::{Metadata, NewEvent};
use crate::store::log::{append_completing, records};
use crate::store::{Claim, ExpectedVersion, StoreError};

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

pub(super) fn parse<C: Command>(input: Input<'_>) -> Result<C, CommandError> {
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

/// The whole cycle for one command.
pub(crate) async fn run<H: CommandHandler>(
    handler: &H,
    dispatcher: &Dispatcher,
    input: Input<'_>,
    options: DispatchOptions,
) -> Result<CommandOutcome, CommandError> {
    let command: H::Command = parse(input)?;
    if let Err(report) = garde::Validate::validate(&command) {
        return Err(CommandError::Validation(field_errors_for::<H::Command>(
            &report,
        )));
    }
    let Some(given) = options.idempotency_key.as_deref() else {
        return execute(handler, dispatcher, command, &options, None).await;
    };
    let scoped = match options.service_key {
        true => given.to_owned(),
        false => scoped_key(options.principal.as_ref(), given)?,
    };
    let key = scoped.as_str();
    let store = &*dispatcher.store;
    let config = &dispatcher.config;
    dispatcher.purge_if_due().await;
    let fingerprint = fingerprint(&command, options.if_match.as_ref())?;
    let token = if options.unclaimed_idempotency {
        None
    } else {
        let claim = records(store)?
            .claim_idempotency_key(
                key,
                &fingerprint,
                config.idempotency_lease,
                config.idempotency_retention,
            )
            .await?;
        match claim {
            Claim::Acquired { token } => Some(token),
            Claim::Completed(response) => return replay(&response),
            // Named as the client sent it.
            Claim::InFlight => return Err(CommandError::IdempotencyInFlight(given.to_owned())),
            Claim::Mismatch => return Err(CommandError::IdempotencyMismatch(given.to_owned())),
        }
    };
    let mut hold = Hold {
        key: key.to_owned(),
        given: given.to_owned(),
        fingerprint,
        token,
        claimed_at: Instant::now(),
        reclaimed: false,
    };
    let outcome = match execute(handler, dispatcher, command, &options, Some(&mut hold)).await {
        Ok(outcome) => outcome,
        Err(error) => return hold.give_up(dispatcher, error).await,
    };
    if !outcome.events.is_empty() || outcome.replayed {
        // The events and the response were committed together (or another
        // dispatch committed them and this is its outcome).
        return Ok(outcome);
    }
    // A command that decided on no events completes its key on its own,
    // claiming it first if it was not.
    let text = response(&outcome);
    loop {
        let completed = match &hold.token {
            Some(token) => {
                records(store)?
                    .complete_idempotency_key(key, token, text.clone())
                    .await
            }
            None => Err(StoreError::IdempotencyKeyLost {
                key: key.to_owned(),
            }),
        };
        match completed {
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

/// [`attempt`], with a panic in user code (the handler, the aggregate's
/// `apply`) turned into [`CommandError::Panicked`]. Unwinding gave the
/// aggregate's turn back; the caller releases the idempotency key.
async fn execute<H: CommandHandler>(
    handler: &H,
    dispatcher: &Dispatcher,
    command: H::Command,
    options: &DispatchOptions,
    hold: Option<&mut Hold>,
) -> Result<CommandOutcome, CommandError> {
    let attempt = attempt(handler, dispatcher, command, options, hold);
    AssertUnwindSafe(attempt)
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| Err(CommandError::Panicked(crate::panic_message(&*panic))))
}

/// The aggregate's state as this command holds it, and whether it was read
/// from the store during this command (otherwise it came from the cache,
/// or is a create-command's presumed empty state, and may be behind).
pub(super) struct Current<A> {
    pub(super) loaded: Loaded<A>,
    pub(super) read: bool,
}

/// Checks existence and `If-Match`, then runs the handler on `loaded`.
async fn decide<H: CommandHandler>(
    handler: &H,
    dispatcher: &Dispatcher,
    command: &H::Command,
    options: &DispatchOptions,
    stream: &str,
    loaded: &Loaded<AggregateOf<H::Command>>,
) -> Result<Vec<EventOf<H::Command>>, CommandError> {
    check_existence::<H::Command>(stream, loaded)?;
    if let Some(expected) = &options.if_match
        && !expected.matches(loaded.exists(), loaded.version)
    {
        return Err(CommandError::PreconditionFailed {
            expected: expected.clone(),
            actual: loaded.version,
        });
    }
    super::authorize::check(
        dispatcher.authorizers.of::<H::Command>().as_deref(),
        options.principal.as_ref(),
        command,
        &loaded.state,
    )?;
    // Handlers take the command by value; a retry clones it again.
    let handled = handler.handle(command.clone(), &loaded.state, &dispatcher.container);
    Principal::acting(options.principal.clone(), handled)
        .await
        .map_err(CommandError::erase)
}

/// Takes the aggregate's turn and its state (from the dispatcher's cache,
/// else from the store), runs [`attempt`], and puts the state it ends with
/// back into the cache. That state is always a committed one: read from the
/// store, or with the events of a successful append applied. A panic drops
/// it.
async fn attempt<H: CommandHandler>(
    handler: &H,
    dispatcher: &Dispatcher,
    command: H::Command,
    options: &DispatchOptions,
    hold: Option<&mut Hold>,
) -> Result<CommandOutcome, CommandError> {
    let (aggregate_id, stream) = target(&command)?;
    // A claimed key runs alone: should its lease run out while it waits,
    // it is claimed again and appended within the same turn (see
    // `decide_and_append`), where a round would have to be decided anew.
    let claimed = hold.as_ref().is_some_and(|hold| hold.token.is_some());
    if !claimed && options.if_match.is_none() && !<H::Command as Command>::CREATE {
        return queued::<H>(dispatcher, command, options, hold, (aggregate_id, stream)).await;
    }
    let _turn = dispatcher.turn(&stream).lock().await;
    let mut current = match dispatcher.states.take(&stream) {
        Some(loaded) => Current {
            loaded,
            read: false,
        },
        // A create-command's append expects no stream, which checks this.
        None if <H::Command as Command>::CREATE => Current {
            loaded: Loaded::default(),
            read: false,
        },
        None => Current {
            loaded: dispatcher.states.load(&stream).await?,
            read: true,
        },
    };
    let outcome = decide_and_append(
        handler,
        dispatcher,
        command,
        options,
        hold,
        (aggregate_id, stream.clone()),
        &mut current,
    )
    .await;
    dispatcher.states.keep(&stream, current.loaded);
    outcome
}

/// A command that neither creates, nor carries `If-Match`, nor holds a
/// claimed key: queued for its aggregate's next round, decided together
/// with the commands queued beside it (see [`super::rounds`]). With an
/// unclaimed idempotency key, the round's append completes it; if the store
/// refuses that because the key has a record, the key is claimed: a
/// completed key's outcome is returned (replayed), and a key free again is
/// queued for another round under the new token.
async fn queued<H: CommandHandler>(
    dispatcher: &Dispatcher,
    command: H::Command,
    options: &DispatchOptions,
    mut hold: Option<&mut Hold>,
    (aggregate_id, stream): (String, String),
) -> Result<CommandOutcome, CommandError> {
    let command_id = Uuid::now_v7().to_string();
    let hook = dispatcher.authorizers.of::<H::Command>();
    loop {
        let (command, container) = (command.clone(), dispatcher.container.clone());
        let (options, command_id, checked) = (options.clone(), command_id.clone(), stream.clone());
        let hook = hook.clone();
        let decide: Decide<AggregateOf<H::Command>> = Box::new(move |loaded| {
            let (command, container) = (command.clone(), container.clone());
            let (options, command_id, stream) =
                (options.clone(), command_id.clone(), checked.clone());
            let hook = hook.clone();
            Box::pin(async move {
                check_existence::<H::Command>(&stream, loaded)?;
                super::authorize::check(
                    hook.as_deref(),
                    options.principal.as_ref(),
                    &command,
                    &loaded.state,
                )?;
                let handler = H::default();
                let handled = handler.handle(command, &loaded.state, &container);
                let decided = Principal::acting(options.principal.clone(), handled)
                    .await
                    .map_err(CommandError::erase)?;
                let encoded = encode::<H::Command>(&decided, &command_id, &options)?;
                Ok((decided, encoded))
            })
        });
        let (reply, answer) = tokio::sync::oneshot::channel();
        let keyed = hold.as_deref().map(Hold::keyed);
        if dispatcher.queues.join(
            &stream,
            Member {
                decide,
                reply,
                keyed,
            },
        ) {
            let turn = dispatcher.turn(&stream).clone();
            tokio::spawn(rounds::serve::<AggregateOf<H::Command>>(
                dispatcher.server(),
                turn,
                stream.clone(),
                aggregate_id.clone(),
            ));
        }
        let answer = answer.await.unwrap_or_else(|_| {
            Err(CommandError::Panicked(
                "the task deciding the aggregate's commands stopped".into(),
            ))
        });
        match (answer, hold.as_deref_mut()) {
            (
                Err(CommandError::Store(lost @ StoreError::IdempotencyKeyLost { .. })),
                Some(hold),
            ) => {
                match hold.reclaim(dispatcher, lost).await? {
                    Reclaimed::Replay(outcome) => return Ok(outcome),
                    // Held again under a new token: decided anew.
                    Reclaimed::Acquired => {}
                }
            }
            (answer, _) => return answer,
        }
    }
}

/// Decide → append, retried on conflict after reading the stream's tail.
/// A decision without events (a refusal, a failed precondition, nothing to
/// do) stands only on a state read during this command: one that was not
/// first reads the tail, and decides again if it moved. With an
/// idempotency key held, the append completes it; if the store refuses
/// that because the key was taken over (its lease ran out while this waited
/// for its turn or ran the handler), the key is claimed again: a completed
/// key's outcome is returned (replayed), and a key free again is appended
/// with under the new token.
async fn decide_and_append<H: CommandHandler>(
    handler: &H,
    dispatcher: &Dispatcher,
    command: H::Command,
    options: &DispatchOptions,
    mut hold: Option<&mut Hold>,
    (aggregate_id, stream): (String, String),
    current: &mut Current<AggregateOf<H::Command>>,
) -> Result<CommandOutcome, CommandError> {
    let store = &*dispatcher.store;
    let command_id = Uuid::now_v7().to_string();
    let mut conflicts = 0;
    loop {
        let decided = decide(
            handler,
            dispatcher,
            &command,
            options,
            &stream,
            &current.loaded,
        )
        .await;
        let decided = match decided {
            Ok(decided) if !decided.is_empty() => decided,
            settled => {
                if !current.read {
                    current.read = true;
                    if catch_up(store, &stream, &mut current.loaded).await? {
                        continue;
                    }
                }
                settled?;
                return Ok(CommandOutcome {
                    stream_id: stream,
                    aggregate_id,
                    version: current.loaded.version,
                    position: None,
                    events: Vec::new(),
                    replayed: false,
                });
            }
        };
        let encode = || {
            let mut events = encode::<H::Command>(&decided, &command_id, options)?;
            // A new saga instance's start decision is recorded with it.
            if <H::Command as Command>::CREATE
                && let Some(first) = events.first()
                && let Some(start) = crate::saga::start_decision(
                    <AggregateOf<H::Command> as crate::Aggregate>::CATEGORY,
                    &decided,
                    first.metadata(),
                    &aggregate_id,
                )
            {
                events.extend(start);
            }
            Ok::<_, CommandError>(events)
        };
        let own = decided.len();
        let expected = if <H::Command as Command>::CREATE {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(current.loaded.version)
        };
        let events = encode()?;
        let count = events.len();
        let completions = |hold: &Hold| vec![hold.completion(&aggregate_id, count)];
        let appended = append_completing(
            store,
            &stream,
            expected,
            events,
            hold.as_deref().map(completions).unwrap_or_default(),
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
                        append_completing(store, &stream, expected, encode()?, completions(hold))
                            .await
                    }
                }
            }
            (appended, _) => appended,
        };
        match appended {
            Ok(appended) => {
                // The recorded events, as any later load decodes them (a
                // saga's start decision after them changes no state).
                if let Err(error) = apply_recorded(&mut current.loaded, &appended.events[..own]) {
                    tracing::warn!(stream_id = %stream, %error, "an appended event does not decode");
                }
                current.loaded.version = appended.version;
                current.loaded.position = appended.position;
                return Ok(CommandOutcome {
                    stream_id: stream,
                    aggregate_id,
                    version: appended.version,
                    position: Some(appended.position),
                    events: appended.events,
                    replayed: false,
                });
            }
            Err(StoreError::WrongExpectedVersion { .. }) => {
                if <H::Command as Command>::CREATE {
                    return Err(CommandError::AlreadyExists { stream_id: stream });
                }
                conflicts += 1;
                if conflicts > dispatcher.config.max_retries {
                    return Err(CommandError::Conflict {
                        stream_id: stream,
                        attempts: conflicts,
                    });
                }
                tracing::debug!(stream_id = %stream, attempts = conflicts, "concurrency conflict; retrying");
                crate::metrics::retried(<AggregateOf<H::Command> as crate::Aggregate>::CATEGORY);
                // Another writer got there first (or the cached state was
                // behind): decide again on the stream as it is now. With
                // `If-Match`, that checks it again too.
                catch_up(store, &stream, &mut current.loaded).await?;
                current.read = true;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// A command's decided events, encoded with its metadata.
fn encode<C: Command>(
    decided: &[EventOf<C>],
    command_id: &str,
    options: &DispatchOptions,
) -> Result<Vec<NewEvent>, CommandError> {
    decided
        .iter()
        .map(|event| {
            NewEvent::from_event(event)
                .map(|new| new.with_metadata(metadata::<C>(command_id, options)))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(CommandError::EventEncoding)
}

fn metadata<C: Command>(command_id: &str, options: &DispatchOptions) -> Metadata {
    let mut metadata = Metadata::new();
    metadata.correlation_id = Some(
        options
            .correlation_id
            .clone()
            .unwrap_or_else(|| command_id.to_owned()),
    );
    metadata.causation_id = Some(
        options
            .causation_id
            .clone()
            .unwrap_or_else(|| command_id.to_owned()),
    );
    metadata.command = Some(C::NAME.to_owned());
    metadata.extra = options.metadata.clone();
    metadata
}
