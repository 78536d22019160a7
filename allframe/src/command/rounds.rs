//! Commands on a busy aggregate, decided together.
//!
//! Commands on one aggregate take turns, so on a hot aggregate each would
//! pay a whole append (a commit) of its own, one after another, and group
//! commit could not help. Instead, commands that neither create, nor carry
//! `If-Match`, nor hold a claimed idempotency key queue per aggregate (a
//! saga's commands, whose keys are not claimed, do), and one task serves
//! the queue in rounds: each round takes the aggregate's turn and every
//! command queued at that moment, decides them one after another on the
//! state as the ones before left it, and appends all their events in one
//! append that expects the version the round started from. Then each
//! command gets its own events, versions and positions (or its own
//! refusal) back. A command with an idempotency key completes it in that
//! append, with its own share of the events as the stored response; a key
//! that can no longer be completed (recorded already) refuses the whole
//! append: that command is told, and the others are decided again without
//! it. A round takes at most one command per key: another with the same
//! key waits for the next round, which finds the key recorded.
//!
//! What each caller sees is what it would have seen had the commands run
//! one by one in queue order: each was decided on the state after every
//! command before it. The one append makes that all or nothing, so no
//! decision stands on an event that was not committed:
//!
//! - a conflict (another process wrote) reloads the state and decides the
//!   whole round again, up to the dispatcher's retries;
//! - any other failure of the append, and a failure to load the state, is
//!   answered per command: the round's commands then run one at a time, so
//!   each gets its own answer (one command's bad event does not fail the
//!   others);
//! - a round that decides no events at all stands on a state read during
//!   the round, exactly as a single command's refusal does.
//!
//! The serving task is spawned, so a caller that goes away (its HTTP
//! connection closed) does not cancel the round its command is in: a
//! command either commits and is answered, or is not written.

use std::any::Any;
use std::collections::{HashMap, HashSet, VecDeque};
use std::ops::Range;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::oneshot;

use super::cycle::Current;
use super::idempotency::Keyed;
use super::states::States;
use super::{CommandError, CommandOutcome};
use crate::aggregate::{Aggregate, Loaded, catch_up};
use crate::event::NewEvent;
use crate::store::log::append_completing;
use crate::store::{Appended, EventStore, ExpectedVersion, MAX_EVENTS_PER_APPEND, StoreError};

/// How many queued commands one round takes at most: a round holds the
/// aggregate's turn, and commands that must run alone (creating, with
/// `If-Match` or with a claimed key) wait for it.
const ROUND: usize = 256;

/// What a command decided: the events to apply to the state, and the same
/// events encoded with the command's metadata.
pub(super) type Decided<A> = (Vec<<A as Aggregate>::Event>, Vec<NewEvent>);

/// Decides one command on a state (existence check and handler). Called
/// again when a round is decided again after a conflict.
pub(super) type Decide<A> = Box<
    dyn for<'s> Fn(&'s Loaded<A>) -> BoxFuture<'s, Result<Decided<A>, CommandError>> + Send + Sync,
>;

/// A queued command.
pub(super) struct Member<A: Aggregate> {
    pub(super) decide: Decide<A>,
    pub(super) reply: oneshot::Sender<Result<CommandOutcome, CommandError>>,
    /// The idempotency key the command holds, completed by the append of
    /// its events.
    pub(super) keyed: Option<Keyed>,
}

/// The queues of commands waiting for a round, by stream. Each holds a
/// `VecDeque<Member<A>>` of its aggregate's type.
#[derive(Default)]
pub(super) struct Queues(Mutex<HashMap<String, Box<dyn Any + Send>>>);

impl Queues {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Box<dyn Any + Send>>> {
        // Only plain map and queue updates happen under the lock.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `member` on `stream`. `true` when no task serves the stream
    /// yet: the caller must start one ([`serve`]).
    pub(super) fn join<A: Aggregate>(&self, stream: &str, member: Member<A>) -> bool {
        let mut queues = self.lock();
        if let Some(queue) = queues
            .get_mut(stream)
            .and_then(|queue| queue.downcast_mut::<VecDeque<Member<A>>>())
        {
            queue.push_back(member);
            return false;
        }
        queues.insert(stream.to_owned(), Box::new(VecDeque::from([member])));
        true
    }

    /// Takes up to [`ROUND`] queued members of `stream`, in queue order,
    /// at most one per idempotency key; when there are none, the stream's queue is removed (its task ends) in the same step,
    /// so a command queued later starts a new task.
    fn next_round<A: Aggregate>(&self, stream: &str) -> Vec<Member<A>> {
        let mut queues = self.lock();
        let Some(queue) = queues
            .get_mut(stream)
            .and_then(|queue| queue.downcast_mut::<VecDeque<Member<A>>>())
        else {
            return Vec::new();
        };
        // One command per idempotency key: a later one of the same key
        // waits for the next round, where it finds the key recorded.
        let mut keys = HashSet::new();
        let mut taken = Vec::new();
        let mut left = VecDeque::new();
        while let Some(member) = queue.pop_front() {
            if taken.len() == ROUND {
                queue.push_front(member);
                break;
            }
            match &member.keyed {
                Some(keyed) if !keys.insert(keyed.key().to_owned()) => left.push_back(member),
                _ => taken.push(member),
            }
        }
        left.append(queue);
        *queue = left;
        if taken.is_empty() {
            queues.remove(stream);
        }
        taken
    }
}

/// Removes a stream's queue if its task stops early (it panicked): the
/// commands still queued are dropped, so their callers are told instead of
/// waiting for a task that is gone.
struct Serving<'q> {
    queues: &'q Queues,
    stream: &'q str,
    done: bool,
}

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.queues.lock().remove(self.stream);
        }
    }
}

/// What a serving task needs of the dispatcher, owned.
#[derive(Clone)]
pub(super) struct Server {
    pub(super) store: Arc<dyn EventStore>,
    pub(super) states: Arc<States>,
    pub(super) queues: Arc<Queues>,
    pub(super) max_retries: u32,
}

/// Serves the queue of `stream` round by round until it is empty. `turn`
/// is the aggregate's turn, taken for each round and given back between
/// rounds so commands that run alone get theirs.
pub(super) async fn serve<A: Aggregate>(
    server: Server,
    turn: Arc<tokio::sync::Mutex<()>>,
    stream: String,
    aggregate_id: String,
) {
    let mut serving = Serving {
        queues: &server.queues,
        stream: &stream,
        done: false,
    };
    loop {
        let _turn = turn.clone().lock_owned().await;
        let (mut decides, mut keyed, mut replies) = (Vec::new(), Vec::new(), Vec::new());
        for member in server.queues.next_round::<A>(&stream) {
            decides.push(member.decide);
            keyed.push(member.keyed);
            replies.push(member.reply);
        }
        if decides.is_empty() {
            serving.done = true;
            return;
        }
        let mut slot = server.states.take::<A>(&stream).map(|loaded| Current {
            loaded,
            read: false,
        });
        let round = Round {
            server: &server,
            stream: &stream,
            aggregate_id: &aggregate_id,
        };
        let answers = loop {
            match round.together(&mut slot, &decides, &keyed).await {
                Together::Answered(answers) => break answers,
                Together::Lost(member, lost) => {
                    // Only that command is told; the others are decided
                    // again without it.
                    drop(decides.remove(member));
                    keyed.remove(member);
                    let _ = replies.remove(member).send(Err(lost.into()));
                }
                Together::Apart => {
                    let mut answers = Vec::with_capacity(decides.len());
                    for (decide, keyed) in decides.iter().zip(&keyed) {
                        answers.push(round.alone(&mut slot, decide, keyed).await);
                    }
                    break answers;
                }
            }
        };
        if let Some(current) = slot {
            server.states.keep(&stream, current.loaded);
        }
        for (answer, reply) in answers.into_iter().zip(replies) {
            // A caller that went away has nothing to be told.
            let _ = reply.send(answer);
        }
    }
}

/// One round's context.
struct Round<'r> {
    server: &'r Server,
    stream: &'r str,
    aggregate_id: &'r str,
}

/// How a round of commands decided together ended.
enum Together {
    /// Each command's answer, in order.
    Answered(Vec<Result<CommandOutcome, CommandError>>),
    /// The commands must run one at a time instead (see the module docs).
    Apart,
    /// The append was refused because this command's idempotency key can
    /// no longer be completed: it is answered with this error, and the
    /// others are decided again without it.
    Lost(usize, StoreError),
}

/// How deciding a set of commands ended.
enum Outcome<A: Aggregate> {
    /// Each command's decision (or refusal), and the state after them.
    Decided(Vec<Result<Decided<A>, CommandError>>),
    /// A handler or `apply` panicked while deciding: the state is no
    /// longer known.
    Panicked(String),
}

impl Round<'_> {
    /// The state to decide on: the cached one, else read from the store.
    async fn state<A: Aggregate>(
        &self,
        slot: &mut Option<Current<A>>,
    ) -> Result<Current<A>, CommandError> {
        match slot.take() {
            Some(current) => Ok(current),
            None => Ok(Current {
                loaded: self.server.states.load(self.stream).await?,
                read: true,
            }),
        }
    }

    /// Decides `decides` one after another on `current`, applying each
    /// decision's events before the next is decided.
    async fn decide<A: Aggregate>(current: &mut Current<A>, decides: &[&Decide<A>]) -> Outcome<A> {
        let mut decisions = Vec::with_capacity(decides.len());
        for decide in decides {
            let decided = AssertUnwindSafe(decide(&current.loaded))
                .catch_unwind()
                .await;
            let decided = match decided {
                Ok(decided) => decided,
                Err(panic) => {
                    return Outcome::Panicked(crate::panic_message(&*panic));
                }
            };
            if let Ok((events, _)) = &decided {
                let applied = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    for event in events {
                        current.loaded.state.apply(event);
                    }
                }));
                if let Err(panic) = applied {
                    return Outcome::Panicked(crate::panic_message(&*panic));
                }
                current.loaded.version += events.len() as u64;
            }
            decisions.push(decided);
        }
        Outcome::Decided(decisions)
    }

    /// Decides and appends the commands together (see [`Together`]); the
    /// state is left out of `slot` unless it is known.
    async fn together<A: Aggregate>(
        &self,
        slot: &mut Option<Current<A>>,
        decides: &[Decide<A>],
        keyed: &[Option<Keyed>],
    ) -> Together {
        let decides: Vec<&Decide<A>> = decides.iter().collect();
        let mut conflicts = 0;
        loop {
            let mut current = match self.state(slot).await {
                Ok(current) => current,
                Err(error) if decides.len() == 1 => return Together::Answered(vec![Err(error)]),
                Err(_) => return Together::Apart,
            };
            let from = current.loaded.version;
            let decisions = match Self::decide(&mut current, &decides).await {
                Outcome::Decided(decisions) => decisions,
                // Alone, each command's own panic is its own answer.
                Outcome::Panicked(_) if decides.len() > 1 => return Together::Apart,
                Outcome::Panicked(message) => {
                    return Together::Answered(vec![Err(CommandError::Panicked(message))]);
                }
            };
            let events: Vec<NewEvent> = decisions
                .iter()
                .filter_map(|decided| decided.as_ref().ok())
                .flat_map(|(_, new)| new.iter().cloned())
                .collect();
            if events.is_empty() {
                // Refusals and empty decisions stand on a state read during
                // this round, like a single command's.
                if !current.read {
                    let tail = catch_up(&*self.server.store, self.stream, &mut current.loaded);
                    let moved = match tail.await {
                        Ok(moved) => moved,
                        Err(error) if decides.len() == 1 => {
                            return Together::Answered(vec![Err(error.into())]);
                        }
                        Err(_) => return Together::Apart,
                    };
                    current.read = true;
                    if moved {
                        *slot = Some(current);
                        continue;
                    }
                }
                // Nothing was decided, so the state is still `from`'s.
                let answers = self.answers::<A>(decisions, from, None);
                *slot = Some(current);
                return Together::Answered(answers);
            }
            if events.len() > MAX_EVENTS_PER_APPEND && decides.len() > 1 {
                return Together::Apart;
            }
            // Each command's key completes with its own share of the
            // events.
            let completions = parts(&decisions)
                .into_iter()
                .zip(keyed)
                .filter(|(part, _)| !part.is_empty())
                .filter_map(|(part, keyed)| {
                    Some(keyed.as_ref()?.completion(self.aggregate_id, part))
                })
                .collect();
            let appended = append_completing(
                &*self.server.store,
                self.stream,
                ExpectedVersion::Exact(from),
                events,
                completions,
            )
            .await;
            match appended {
                Ok(appended) => {
                    let answers = self.answers::<A>(decisions, from, Some(&appended));
                    current.read = true;
                    current.loaded.position = appended.position;
                    *slot = Some(current);
                    return Together::Answered(answers);
                }
                Err(StoreError::WrongExpectedVersion { .. }) => {
                    conflicts += 1;
                    if conflicts > self.server.max_retries {
                        let conflict = || CommandError::Conflict {
                            stream_id: self.stream.to_owned(),
                            attempts: conflicts,
                        };
                        return Together::Answered(
                            decides.iter().map(|_| Err(conflict())).collect(),
                        );
                    }
                    tracing::debug!(stream_id = %self.stream, attempts = conflicts, commands = decides.len(), "concurrency conflict; deciding the round again");
                    crate::metrics::retried(A::CATEGORY);
                    // The state had the round's events applied: read it
                    // again.
                    *slot = None;
                }
                Err(error) if decides.len() == 1 => {
                    return Together::Answered(vec![Err(error.into())]);
                }
                Err(StoreError::IdempotencyKeyLost { key }) => {
                    let lost = keyed
                        .iter()
                        .position(|keyed| keyed.as_ref().is_some_and(|keyed| keyed.key() == key));
                    // The state had the round's events applied.
                    *slot = None;
                    return match lost {
                        Some(member) => {
                            Together::Lost(member, StoreError::IdempotencyKeyLost { key })
                        }
                        None => Together::Apart,
                    };
                }
                Err(_) => return Together::Apart,
            }
        }
    }

    /// One command as a round of its own.
    async fn alone<A: Aggregate>(
        &self,
        slot: &mut Option<Current<A>>,
        decide: &Decide<A>,
        keyed: &Option<Keyed>,
    ) -> Result<CommandOutcome, CommandError> {
        // A round of one always answers (see `together`).
        let round = self.together(
            slot,
            std::slice::from_ref(decide),
            std::slice::from_ref(keyed),
        );
        match round.await {
            Together::Answered(mut answers) if answers.len() == 1 => answers.remove(0),
            _ => Err(CommandError::Panicked(
                "a round left a command unanswered".into(),
            )),
        }
    }

    /// Each command's answer: its share of the events `appended` (when
    /// there was an append) and the version after it, or its refusal.
    fn answers<A: Aggregate>(
        &self,
        decisions: Vec<Result<Decided<A>, CommandError>>,
        from: u64,
        appended: Option<&Appended>,
    ) -> Vec<Result<CommandOutcome, CommandError>> {
        let parts = parts(&decisions);
        decisions
            .into_iter()
            .zip(parts)
            .map(|(decided, part)| {
                decided?;
                Ok(match appended {
                    Some(appended) => CommandOutcome::part(appended, self.aggregate_id, part),
                    // Nothing was appended, so nobody decided any events.
                    None => CommandOutcome {
                        stream_id: self.stream.to_owned(),
                        aggregate_id: self.aggregate_id.to_owned(),
                        version: from,
                        position: None,
                        events: Vec::new(),
                        replayed: false,
                    },
                })
            })
            .collect()
    }
}

/// Each decision's share of a round's append, in order: the range its
/// events take (empty for a refusal or no events).
fn parts<T>(decisions: &[Result<(T, Vec<NewEvent>), CommandError>]) -> Vec<Range<usize>> {
    let mut offset = 0;
    decisions
        .iter()
        .map(|decided| {
            let len = decided.as_ref().map_or(0, |(_, new)| new.len());
            let part = offset..offset + len;
            offset = part.end;
            part
        })
        .collect()
}
