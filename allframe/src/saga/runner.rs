//! The runner of each saga type and the read side of instances.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use futures_util::future::{BoxFuture, FutureExt};
use serde::Serialize;
use uuid::Uuid;

use super::{
    CATEGORY, DEFAULT_STEP_TIMEOUT, Decision, End, Input, Record, STEP_EVENT_TYPE, Saga, Sent,
    name, stream_id,
};
use crate::Aggregate;
use crate::auth::Principal;
use crate::command::{CommandError, CommandOutcome, DispatchOptions, Dispatcher};
use crate::event::{Metadata, NewEvent, RecordedEvent};
use crate::node::{Held, Node};
use crate::store::projections::{Batch, Committed, Fence, ProjectionStore};
use crate::store::{EventFilter, EventStore, ExpectedVersion, StoreError};

/// How many instances a runner works at once.
const IN_FLIGHT: usize = 512;
/// How many events a runner holds at once, being worked or queued behind
/// the one before of their instance. An instance is worked from one event
/// on: it sends its commands and records its steps in that one task, and
/// the steps it records arrive from the log meanwhile and wait behind it
/// (to be skipped), so a running instance holds several events. Bounding
/// events by [`IN_FLIGHT`] would bound the instances worked at once to a
/// fraction of it, and keep new ones waiting in the log.
const HELD: usize = 8 * IN_FLIGHT;
/// How often, at most, a runner writes its checkpoint (a checkpoint that
/// is behind is written this long after the last write at the latest).
const COMMIT_EVERY: Duration = Duration::from_millis(100);
/// The longest a runner waits between attempts after a failure.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The first wait before sending a command again.
const FIRST_RETRY: Duration = Duration::from_millis(20);

/// Why sagas could not be started or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SagaError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A saga's category is not `saga-{name}`.
    #[error(
        "saga `{0}`: its category must be `saga-` and a name of lowercase letters, digits and `-`"
    )]
    Misnamed(&'static str),
    /// One saga's name starts another's stream ids (`transfer` and
    /// `transfer-money`): their runners could not tell their streams apart.
    #[error("sagas `{0}` and `{1}`: one name followed by `-` starts the other")]
    Ambiguous(&'static str, &'static str),
    /// No saga is registered under this name.
    #[error("there is no saga `{0}`")]
    UnknownSaga(String),
    /// The instance is not for this principal to see
    /// ([`Sagas::view_for`]); says why.
    #[error("{0}")]
    Forbidden(String),
    /// The first event does not encode.
    #[error("the saga's first event does not encode: {0}")]
    Encoding(#[from] serde_json::Error),
}

/// One saga instance as `GET /sagas/{name}/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct SagaView {
    /// The instance's id.
    pub id: String,
    /// The saga's name.
    pub name: String,
    /// `running` until it ends; then the status its last decision named
    /// (`completed`, `refunded`, `rejected`, …), or `failed` when it could
    /// not go on (see `reason`).
    pub status: String,
    /// How many decisions it has recorded.
    pub steps: u64,
    /// When it was started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub ended_at: Option<DateTime<Utc>>,
    /// Why it ended so (a refusal's code, what failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub reason: Option<String>,
}

/// One saga's runner and instances, as `GET /admin/sagas` lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct SagaStatus {
    /// The saga's name.
    pub name: String,
    /// Its runner: `running`, `waiting-for-upgrade` (it met an event of a
    /// newer release and waits for a node that knows it), `retrying` (the
    /// store failed; it starts over from its checkpoint) or `standby`
    /// (another node's runner works it: see `owner`).
    pub state: String,
    /// Why it is not `running`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub error: Option<String>,
    /// The position up to which the runner has done everything the log
    /// asked of it.
    pub checkpoint: u64,
    /// How many instances have each status (`running`, `completed`, …).
    pub counts: BTreeMap<String, u64>,
    /// Running instances whose latest step has waited longer than the
    /// step timeout, oldest first (at most 100).
    pub overdue: Vec<String>,
    /// On a store several nodes share (PostgreSQL): the node whose runner
    /// works it (holding its lease).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub owner: Option<String>,
    /// Until when the owner holds the lease unless it renews it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub lease_expires_at: Option<DateTime<Utc>>,
}

/// What a runner last said about itself.
#[derive(Debug, Clone)]
struct RunnerState {
    state: &'static str,
    error: Option<String>,
}

type Run = fn(Arc<Shared>) -> BoxFuture<'static, ()>;

/// Which sagas to run: [`Sagas::builder`].
pub struct SagasBuilder {
    store: Arc<dyn EventStore>,
    dispatcher: Arc<Dispatcher>,
    runners: Vec<(&'static str, Run)>,
    step_timeout: Duration,
    node: Option<Node>,
}

impl SagasBuilder {
    /// How long a step's command may go unanswered before the saga gets
    /// [`Input::TimedOut`](super::Input::TimedOut), unless its decision
    /// set a timeout of its own (default [`DEFAULT_STEP_TIMEOUT`]).
    pub fn step_timeout(mut self, timeout: Duration) -> Self {
        self.step_timeout = timeout;
        self
    }

    /// Runs the sagas as `node` (default: [`Node::default_for`] the
    /// store). On a store with leases (and checkpoints) each saga's runner
    /// works on one node at a time.
    pub fn node(mut self, node: Node) -> Self {
        self.node = Some(node);
        self
    }

    /// Runs saga `S` (once, however often it is named).
    pub fn saga<S: Saga>(mut self) -> Self {
        if !self
            .runners
            .iter()
            .any(|(category, _)| *category == S::CATEGORY)
        {
            self.runners
                .push((S::CATEGORY, |shared| run::<S>(shared).boxed()));
        }
        self
    }

    /// Starts a runner per saga, each from its stored checkpoint.
    pub async fn start(self) -> Result<Sagas, SagaError> {
        if let Some((misnamed, _)) = self
            .runners
            .iter()
            .find(|(category, _)| !super::is_saga_category(category))
        {
            return Err(SagaError::Misnamed(misnamed));
        }
        for (a, _) in &self.runners {
            for (b, _) in &self.runners {
                if b.len() > a.len() && b.starts_with(a) && b[a.len()..].starts_with('-') {
                    return Err(SagaError::Ambiguous(a, b));
                }
            }
        }
        // A store without projection storage keeps the checkpoints in
        // memory, like its projections' rows: after a restart the runners
        // read the log from the start again, which decides and sends
        // nothing twice, only takes longer.
        let kept = self.store.projection_store();
        let leased = kept.is_some() && self.store.leases().is_some();
        let storage = kept
            .unwrap_or_else(|| Arc::new(crate::store::projections::MemoryProjectionStore::new()));
        let node = self.node.unwrap_or_else(|| Node::default_for(&*self.store));
        let shared = Arc::new(Shared {
            node,
            leased,
            store: self.store,
            dispatcher: self.dispatcher,
            storage,
            step_timeout: self.step_timeout,
            states: Mutex::default(),
        });
        let tasks = self
            .runners
            .iter()
            .map(|(_, run)| tokio::spawn(run(shared.clone())))
            .collect();
        Ok(Sagas {
            shared,
            names: self
                .runners
                .iter()
                .map(|(category, _)| &category[super::STREAM_PREFIX.len()..])
                .collect(),
            tasks: Mutex::new(tasks),
        })
    }
}

/// What every runner shares.
struct Shared {
    /// The node the runners work on, under leases when `leased`.
    node: Node,
    leased: bool,
    store: Arc<dyn EventStore>,
    dispatcher: Arc<Dispatcher>,
    storage: Arc<dyn ProjectionStore>,
    step_timeout: Duration,
    /// Each runner's state, by saga name.
    states: Mutex<HashMap<&'static str, RunnerState>>,
}

impl Shared {
    fn set_state(&self, name: &'static str, state: &'static str, error: Option<String>) {
        self.states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name, RunnerState { state, error });
    }
}

/// The running sagas. Dropping it (or [`stop`](Self::stop)) stops their
/// runners; what they were doing is done again from the checkpoint at the
/// next start.
pub struct Sagas {
    shared: Arc<Shared>,
    names: Vec<&'static str>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Sagas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sagas")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl Drop for Sagas {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().unwrap_or_else(|e| e.into_inner()) {
            task.abort();
        }
    }
}

impl Sagas {
    /// Sagas over `store`, sending their commands through `dispatcher`.
    pub fn builder(store: &dyn EventStore, dispatcher: Arc<Dispatcher>) -> SagasBuilder {
        SagasBuilder {
            store: store.shared(),
            dispatcher,
            runners: Vec::new(),
            step_timeout: DEFAULT_STEP_TIMEOUT,
            node: None,
        }
    }

    /// Starts an instance of `S` by recording `first` as the first event
    /// of a new stream; returns the instance's id. A runner of `S` (in
    /// this process or another on the same store) takes it from there.
    pub async fn start<S: Saga>(
        store: &dyn EventStore,
        first: &S::Event,
    ) -> Result<String, SagaError> {
        let id = Uuid::now_v7().to_string();
        let mut event = NewEvent::from_event(first)?;
        event.metadata_mut().correlation_id = Some(id.clone());
        store
            .append(&stream_id::<S>(&id), ExpectedVersion::NoStream, vec![event])
            .await?;
        Ok(id)
    }

    /// The names of the sagas it runs.
    pub fn names(&self) -> &[&'static str] {
        &self.names
    }

    /// Instance `id` of saga `name` ([`view`]), for a saga this runs.
    pub async fn view(&self, name: &str, id: &str) -> Result<Option<SagaView>, SagaError> {
        self.view_for(name, id, None).await
    }

    /// [`view`](Self::view), as `principal` may see it: an instance is for
    /// whoever started it (the principal its first event names) and for
    /// admins; anyone else gets [`SagaError::Forbidden`], and so does
    /// everyone but admins for an instance started without a principal.
    /// Without a principal (no authenticator is set) every instance is
    /// open. This is what `GET /sagas/{name}/{id}` answers.
    pub async fn view_for(
        &self,
        name: &str,
        id: &str,
        principal: Option<&Principal>,
    ) -> Result<Option<SagaView>, SagaError> {
        if !self.names.contains(&name) {
            return Err(SagaError::UnknownSaga(name.to_owned()));
        }
        let Some((view, starter)) = instance(&*self.shared.store, name, id).await? else {
            return Ok(None);
        };
        match principal {
            Some(principal)
                if !principal.is_admin()
                    && starter
                        .as_ref()
                        .is_none_or(|s| s.subject != principal.subject) =>
            {
                Err(SagaError::Forbidden(format!(
                    "`{}` did not start this instance of `{name}`",
                    principal.subject
                )))
            }
            _ => Ok(Some(view)),
        }
    }

    /// Every saga's runner and a tally of its instances, sorted by name.
    ///
    /// The tally reads every saga stream of the log (an admin's view, not
    /// for a hot path).
    pub async fn status(&self) -> Result<Vec<SagaStatus>, SagaError> {
        let mut tallies: BTreeMap<&str, Tally> = self
            .names
            .iter()
            .map(|name| (*name, Tally::default()))
            .collect();
        let filter = EventFilter::all().category(CATEGORY);
        let mut after = 0;
        loop {
            let page = self.shared.store.read_all(after, 1_000, &filter).await?;
            let Some(last) = page.last() else { break };
            after = last.position;
            for event in &page {
                let Some(rest) = event.stream_id.strip_prefix(super::STREAM_PREFIX) else {
                    continue;
                };
                // The longest name that fits: `transfer-money` before `transfer`.
                let name = self
                    .names
                    .iter()
                    .filter(|name| {
                        rest.strip_prefix(**name)
                            .is_some_and(|r| r.starts_with('-'))
                    })
                    .max_by_key(|name| name.len());
                if let Some(name) = name
                    && let Some(tally) = tallies.get_mut(name)
                {
                    tally.add(&rest[name.len() + 1..], event);
                }
            }
        }
        let now = Utc::now();
        let timeout =
            chrono::TimeDelta::from_std(self.shared.step_timeout).unwrap_or(chrono::TimeDelta::MAX);
        let states = self
            .shared
            .states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let leases = match self.shared.leased {
            true => self.shared.node.owners().await?,
            false => HashMap::new(),
        };
        let mut list = Vec::new();
        for (name, tally) in tallies {
            let runner = states.get(name).cloned().unwrap_or(RunnerState {
                state: "running",
                error: None,
            });
            let checkpoint = self
                .shared
                .storage
                .checkpoint(&format!("saga:{name}"))
                .await?;
            let mut status = tally.status(name, runner, checkpoint, now, timeout);
            if let Some(lease) = leases.get(&format!("saga:{name}")) {
                status.owner = Some(lease.owner.clone());
                status.lease_expires_at = Some(lease.expires_at);
            }
            list.push(status);
        }
        Ok(list)
    }

    /// Stops every runner and waits until each has stopped.
    pub async fn stop(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            task.abort();
            // An error says it was cancelled (or had panicked): stopped.
            let _ = task.await;
        }
    }
}

/// Instance `id` of saga `name` as its stream has it, or `None` when
/// there is no such instance.
pub async fn view(
    store: &dyn EventStore,
    name: &str,
    id: &str,
) -> Result<Option<SagaView>, StoreError> {
    Ok(instance(store, name, id).await?.map(|(view, _)| view))
}

/// [`view`], with the principal that started the instance, if its first
/// event names one.
async fn instance(
    store: &dyn EventStore,
    name: &str,
    id: &str,
) -> Result<Option<(SagaView, Option<Principal>)>, StoreError> {
    let stream = format!("{CATEGORY}-{name}-{id}");
    if crate::store::validate_stream_id(&stream).is_err() {
        return Ok(None);
    }
    let events = read_stream(store, &stream).await?;
    let Some(first) = events.first() else {
        return Ok(None);
    };
    let mut view = SagaView {
        id: id.to_owned(),
        name: name.to_owned(),
        status: "running".into(),
        steps: 0,
        started_at: first.recorded_at,
        ended_at: None,
        reason: None,
    };
    for event in events.iter().filter(|e| e.event_type == STEP_EVENT_TYPE) {
        view.steps += 1;
        if let Ok(Record { end: Some(end), .. }) = serde_json::from_str(event.data.get()) {
            view.status = end.status;
            view.reason = end.reason;
            view.ended_at = Some(event.recorded_at);
        }
    }
    Ok(Some((view, Principal::recorded(&first.metadata.extra))))
}

/// The instances of one saga, as [`Sagas::status`] reads them.
#[derive(Default)]
struct Tally {
    /// Each instance's status and when its latest step was recorded.
    instances: HashMap<String, (String, DateTime<Utc>)>,
}

impl Tally {
    fn add(&mut self, id: &str, event: &RecordedEvent) {
        let entry = self
            .instances
            .entry(id.to_owned())
            .or_insert_with(|| ("running".to_owned(), event.recorded_at));
        if event.event_type != STEP_EVENT_TYPE {
            return;
        }
        entry.1 = event.recorded_at;
        if let Ok(Record { end: Some(end), .. }) = serde_json::from_str(event.data.get()) {
            entry.0 = end.status;
        }
    }

    fn status(
        self,
        name: &str,
        runner: RunnerState,
        checkpoint: u64,
        now: DateTime<Utc>,
        timeout: chrono::TimeDelta,
    ) -> SagaStatus {
        let mut counts = BTreeMap::new();
        let mut overdue = Vec::new();
        for (id, (status, latest)) in self.instances {
            if status == "running" && latest + timeout < now {
                overdue.push((latest, id));
            }
            *counts.entry(status).or_insert(0) += 1;
        }
        overdue.sort();
        SagaStatus {
            name: name.to_owned(),
            state: runner.state.to_owned(),
            error: runner.error,
            checkpoint,
            counts,
            overdue: overdue.into_iter().take(100).map(|(_, id)| id).collect(),
            owner: None,
            lease_expires_at: None,
        }
    }
}

/// Every event of `stream`, in order.
async fn read_stream(
    store: &dyn EventStore,
    stream: &str,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut events = Vec::new();
    loop {
        let page = store
            .read_stream(stream, events.len() as u64 + 1, 1_000)
            .await?;
        let done = page.len() < 1_000;
        events.extend(page);
        if done {
            return Ok(events);
        }
    }
}

/// Why working an event stopped short.
#[derive(Debug, thiserror::Error)]
enum Interrupt {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("another runner moved the checkpoint")]
    Moved,
    #[error("{0}")]
    WaitingForUpgrade(String),
    #[error("a saga's task failed: {0}")]
    Panicked(String),
    #[error("the node no longer holds the saga's lease")]
    Lost,
}

/// The runner of saga `S`: works until stopped, starting over from the
/// stored checkpoint after any interruption.
async fn run<S: Saga>(shared: Arc<Shared>) {
    let mut backoff = Duration::from_millis(50);
    let lease = format!("saga:{}", name::<S>());
    loop {
        let held = match shared.leased {
            true => {
                shared.set_state(name::<S>(), "standby", None);
                shared.node.hold(&lease).await
            }
            false => Held::unleased(),
        };
        shared.set_state(name::<S>(), "running", None);
        let Err(interrupt) = tokio::select! {
            worked = work::<S>(&shared, held.fence()) => worked,
            () = held.lost() => Err(Interrupt::Lost),
        };
        drop(held);
        if matches!(interrupt, Interrupt::Lost) {
            tracing::warn!(
                saga = name::<S>(),
                "the node no longer holds the saga's lease"
            );
            continue;
        }
        let state = match interrupt {
            Interrupt::WaitingForUpgrade(_) => "waiting-for-upgrade",
            _ => "retrying",
        };
        shared.set_state(name::<S>(), state, Some(interrupt.to_string()));
        match &interrupt {
            Interrupt::WaitingForUpgrade(_) => {
                tracing::warn!(saga = name::<S>(), %interrupt, "saga runner paused at an event of a newer release; waiting for the upgrade");
            }
            _ => {
                tracing::warn!(saga = name::<S>(), %interrupt, "saga runner interrupted; starting over from its checkpoint")
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Follows the saga category from the checkpoint. Each instance's events
/// are worked in order by a task of its own, instances concurrently (at
/// most [`IN_FLIGHT`] instances and [`HELD`] events at once), so a slow
/// instance holds up only
/// itself. The checkpoint moves to just before the oldest event still
/// being worked (or to the last one read, when none is), so everything
/// before it is done.
async fn work<S: Saga>(
    shared: &Arc<Shared>,
    fence: Option<Fence<'_>>,
) -> Result<std::convert::Infallible, Interrupt> {
    let checkpoint = format!("saga:{}", name::<S>());
    let live = shared.storage.open(&checkpoint, 1).await?.live;
    let mut stored = live.checkpoint;
    let mut subscription = shared
        .store
        .subscribe(stored, EventFilter::all().category(CATEGORY));
    let prefix = format!("{CATEGORY}-{}-", name::<S>());
    // Dropped on any return, which cancels the tasks still working.
    let mut workers = tokio::task::JoinSet::new();
    let mut queues: HashMap<String, std::collections::VecDeque<RecordedEvent>> = HashMap::new();
    let mut pending = std::collections::BTreeSet::new();
    let mut read = stored;
    let mut committed_at = Instant::now();
    let followed = Followed::default();
    // Every event after this one was appended after this runner began, so
    // no runner has worked it before (see `begin`).
    let fresh_after = shared.store.head_position().await?;
    let spawn = |workers: &mut tokio::task::JoinSet<_>,
                 id: String,
                 event: RecordedEvent,
                 start: Option<RecordedEvent>| {
        let (shared, followed) = (shared.clone(), followed.clone());
        workers.spawn(async move {
            let worked = match start {
                Some(start) => {
                    let position = start.position;
                    let begun = begin::<S>(&shared, &followed, &id, &event, start).await;
                    begun.map(|()| Some(position))
                }
                None => handle::<S>(&shared, &followed, &id, &event)
                    .await
                    .map(|()| None),
            };
            worked.map(|start| (id, event.position, start))
        });
    };
    loop {
        tokio::select! {
            next = subscription.next(), if queues.len() < IN_FLIGHT && pending.len() < HELD => {
                let Some(event) = next else {
                    return Err(StoreError::Closed.into());
                };
                let event = event?;
                // A new instance's start record, when it came in the same
                // append as its first event and is already here.
                let mut next = None;
                if event.version == 1 && event.position > fresh_after && event.stream_id.starts_with(&prefix) {
                    next = match subscription.next().now_or_never() {
                        Some(Some(next)) => Some(next?),
                        Some(None) => return Err(StoreError::Closed.into()),
                        None => None,
                    };
                }
                let (start, next) = match next {
                    Some(next) if next.stream_id == event.stream_id && next.version == 2 && next.event_type == STEP_EVENT_TYPE => (Some(next), None),
                    next => (None, next),
                };
                for (event, start) in std::iter::once((event, start)).chain(next.map(|next| (next, None))) {
                    read = start.as_ref().unwrap_or(&event).position;
                    let Some(id) = event.stream_id.strip_prefix(&prefix) else {
                        continue;
                    };
                    pending.insert(event.position);
                    pending.extend(start.as_ref().map(|start| start.position));
                    match queues.get_mut(id) {
                        // Its worker takes it when done with the one before.
                        Some(queue) => queue.extend(std::iter::once(event).chain(start)),
                        None => {
                            queues.insert(id.to_owned(), Default::default());
                            spawn(&mut workers, id.to_owned(), event, start);
                        }
                    }
                }
            }
            Some(done) = workers.join_next() => {
                let (id, position, start) = match done {
                    Ok(worked) => worked?,
                    Err(panic) => return Err(Interrupt::Panicked(panic.to_string())),
                };
                pending.remove(&position);
                if let Some(start) = start {
                    pending.remove(&start);
                }
                match queues.get_mut(&id).and_then(|queue| queue.pop_front()) {
                    Some(next) => spawn(&mut workers, id, next, None),
                    None => {
                        queues.remove(&id);
                    }
                }
            }
            // A checkpoint that is behind is written at the latest this
            // long after the last one.
            () = tokio::time::sleep_until((committed_at + COMMIT_EVERY).into()), if done_up_to(&pending, read) > stored => {}
            // Never: what is pending is being worked or queued behind work.
            else => return Err(Interrupt::Panicked("a runner with nothing to do and no room".into())),
        }
        let done_up_to = done_up_to(&pending, read);
        if done_up_to > stored && committed_at.elapsed() >= COMMIT_EVERY {
            let moved =
                Batch::new(&checkpoint, live.number, stored, done_up_to, false, &[]).fenced(fence);
            if shared.storage.commit(moved).await? == Committed::Moved {
                return Err(Interrupt::Moved);
            }
            stored = done_up_to;
            committed_at = Instant::now();
        }
    }
}

/// The position up to which every event read is done: just before the
/// oldest still `pending`, or the last `read` when none is.
fn done_up_to(pending: &std::collections::BTreeSet<u64>, read: u64) -> u64 {
    pending.first().map_or(read, |oldest| oldest - 1)
}

/// The positions of step records that [`follow`] appended and worked in
/// full: the runner skips them when it reads them from the log.
type Followed = Arc<Mutex<HashSet<u64>>>;

/// Works the first event of a new instance `id` together with the step
/// record `start` that came in the same append (a linked saga's start,
/// decided by its create-command): the instance is those two events, so
/// the start's commands are sent without reading the stream back.
///
/// Only for events appended after the runner began (`fresh_after` in
/// [`work`]): one that replays the log from its start (a store whose
/// checkpoints live in memory) must read each instance in full, or it
/// would send again commands whose answers are recorded further on, under
/// keys that may have expired since.
async fn begin<S: Saga>(
    shared: &Shared,
    followed: &Followed,
    id: &str,
    first: &RecordedEvent,
    start: RecordedEvent,
) -> Result<(), Interrupt> {
    let mut instance = Instance::new();
    instance.fold(first)?;
    instance.fold(&start)?;
    follow::<S>(shared, followed, id, Some(instance), start, false).await
}

/// Works one event of instance `id`: the first event is decided on; a
/// step record's commands are sent and their answers decided on.
async fn handle<S: Saga>(
    shared: &Shared,
    followed: &Followed,
    id: &str,
    event: &RecordedEvent,
) -> Result<(), Interrupt> {
    if event.event_type == STEP_EVENT_TYPE {
        let worked = followed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&event.position);
        if worked {
            return Ok(());
        }
        follow::<S>(shared, followed, id, None, event.clone(), false).await
    } else if event.version == 1 {
        // A create-command of a linked saga recorded the start decision
        // with the first event: its commands are sent now (and the record,
        // read later, is skipped as followed).
        let recorded = read_stream(&*shared.store, &stream_id::<S>(id)).await?;
        let start = recorded.iter().find(|event| {
            event.event_type == STEP_EVENT_TYPE
                && serde_json::from_str::<Record>(event.data.get())
                    .is_ok_and(|record| record.input == "start")
        });
        if let Some(start) = start {
            let mut instance = Instance::new();
            for event in &recorded {
                instance.fold(event)?;
            }
            let start = start.clone();
            return follow::<S>(shared, followed, id, Some(instance), start, true).await;
        }
        // The instance as its first event makes it: a stream that has more
        // (its start was decided meanwhile) fails the record's expected
        // version, which reads it in full.
        let mut instance = Instance::new();
        instance.fold(event)?;
        let first = match event.decode::<<S as Aggregate>::Event>() {
            Ok(first) => first,
            Err(error) if error.is_newer_than_known() => {
                return Err(Interrupt::WaitingForUpgrade(error.to_string()));
            }
            Err(error) => {
                let reason = format!("its first event does not decode: {error}");
                let failed = |_: &S| Decision::end("failed").because(reason.clone());
                record::<S>(shared, id, &mut instance, event, "start", failed).await?;
                return Ok(());
            }
        };
        let recorded = record::<S>(shared, id, &mut instance, event, "start", |saga| {
            saga.decide(Input::Started(&first))
        })
        .await?;
        match recorded {
            Some(step) => follow::<S>(shared, followed, id, Some(instance), step, true).await,
            None => Ok(()),
        }
    } else {
        // The saga's own events, recorded with a decision.
        Ok(())
    }
}

/// Sends the commands of the step record `step`, records the decisions
/// about their answers, and goes on with the steps those record, until
/// the instance waits or ends. `instance` is the instance as it is known
/// (it is read from the store when not); `appended` says whether `step`
/// was appended by this task. The runner reads the records appended here
/// from the log later too; working them here saves that round through the
/// log, and marking them [`Followed`] saves reading them again.
async fn follow<S: Saga>(
    shared: &Shared,
    followed: &Followed,
    id: &str,
    instance: Option<Instance<S>>,
    step: RecordedEvent,
    appended: bool,
) -> Result<(), Interrupt> {
    let mut instance = match instance {
        Some(instance) => instance,
        None => Instance::load(&*shared.store, &stream_id::<S>(id)).await?,
    };
    let mut steps = std::collections::VecDeque::from([(step, appended)]);
    while let Some((step, appended)) = steps.pop_front() {
        match serde_json::from_str::<Record>(step.data.get()) {
            Ok(record) => {
                for send in &record.sends {
                    let answered = answer::<S>(shared, id, &mut instance, &step, &record, send);
                    if let Some(next) = answered.await? {
                        steps.push_back((next, true));
                    }
                }
            }
            Err(error) => {
                tracing::error!(saga = name::<S>(), id, position = step.position, %error, "an unreadable saga step record; skipped");
            }
        }
        if appended {
            followed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(step.position);
        }
    }
    Ok(())
}

/// An instance as its stream has it.
struct Instance<S> {
    state: S,
    version: u64,
    /// The inputs already decided on.
    handled: HashSet<String>,
    /// The step names already used.
    steps: HashSet<String>,
    ended: bool,
    /// Why its own events cannot be folded, if they cannot.
    broken: Option<String>,
}

impl<S: Saga> Instance<S> {
    /// An instance before its first event.
    fn new() -> Self {
        Self {
            state: S::default(),
            version: 0,
            handled: HashSet::new(),
            steps: HashSet::new(),
            ended: false,
            broken: None,
        }
    }

    /// The instance as its stream has it.
    async fn load(store: &dyn EventStore, stream: &str) -> Result<Self, Interrupt> {
        let mut instance = Self::new();
        for event in read_stream(store, stream).await? {
            instance.fold(&event)?;
        }
        Ok(instance)
    }

    /// Folds the instance's next event in.
    fn fold(&mut self, event: &RecordedEvent) -> Result<(), Interrupt> {
        self.version = event.version;
        if event.event_type == STEP_EVENT_TYPE {
            if let Ok(record) = serde_json::from_str::<Record>(event.data.get()) {
                self.handled.insert(record.input);
                self.steps
                    .extend(record.sends.into_iter().map(|send| send.step));
                self.ended |= record.end.is_some();
            }
            return Ok(());
        }
        match event.decode::<<S as Aggregate>::Event>() {
            Ok(own) if self.broken.is_none() => self.state.apply(&own),
            Ok(_) => {}
            Err(error) if error.is_newer_than_known() => {
                return Err(Interrupt::WaitingForUpgrade(error.to_string()));
            }
            Err(error) => self.broken = Some(error.to_string()),
        }
        Ok(())
    }
}

/// The answer to a command a saga sent.
enum Answer {
    Done(CommandOutcome),
    Refused {
        code: &'static str,
        message: String,
    },
    TimedOut,
    /// Whether the command ran cannot be told (see [`earlier_answer`]).
    Unknown(String),
}

/// Sends the command of `send` (one of those `step_event` recorded in
/// `decided`) and records the saga's decision about its answer, unless that
/// is recorded already; returns the step record it appended.
async fn answer<S: Saga>(
    shared: &Shared,
    id: &str,
    instance: &mut Instance<S>,
    step_event: &RecordedEvent,
    decided: &Record,
    send: &Sent,
) -> Result<Option<RecordedEvent>, Interrupt> {
    let input = format!("answer:{}", send.step);
    if instance.ended || instance.handled.contains(&input) {
        return Ok(None);
    }
    let body = serde_json::to_vec(&send.body).unwrap_or_default();
    let answer = match earlier_answer(shared, step_event, decided, send).await? {
        Some(answer) => answer,
        None => dispatch::<S>(shared, id, step_event, send, &body).await?,
    };
    let step = send.step.as_str();
    record::<S>(
        shared,
        id,
        instance,
        step_event,
        &input,
        |saga| match &answer {
            Answer::Done(outcome) => saga.decide(Input::Done { step, outcome }),
            Answer::Refused { code, message } => saga.decide(Input::Refused {
                step,
                code,
                message,
            }),
            Answer::TimedOut => saga.decide(Input::TimedOut { step }),
            Answer::Unknown(reason) => Decision::end("failed").because(reason.clone()),
        },
    )
    .await
}

/// Sends a step's command under its idempotency key until it is answered
/// or its timeout (counted from when the step was recorded) has passed.
async fn dispatch<S: Saga>(
    shared: &Shared,
    id: &str,
    step_event: &RecordedEvent,
    send: &Sent,
    body: &[u8],
) -> Result<Answer, Interrupt> {
    let timeout = send
        .timeout_ms
        .map_or(shared.step_timeout, Duration::from_millis);
    let deadline = chrono::TimeDelta::from_std(timeout)
        .ok()
        .and_then(|timeout| step_event.recorded_at.checked_add_signed(timeout));
    let mut backoff = FIRST_RETRY;
    loop {
        let mut options = DispatchOptions::default()
            .service_idempotency_key(format!("saga:{}:{id}:{}", name::<S>(), send.step))
            .correlation_id(id)
            .causation_id(step_event.metadata.event_id.to_string());
        // Sent for whoever started the instance, so its commands' hooks
        // judge them as they would that principal's own.
        if let Some(principal) = Principal::recorded(&step_event.metadata.extra) {
            options = options.principal(principal);
        }
        let error = match shared
            .dispatcher
            .dispatch_json(&send.command, body, options)
            .await
        {
            Ok(outcome) => return Ok(Answer::Done(outcome)),
            Err(error) => error,
        };
        match &error {
            // Nothing can be recorded while the store is down, and a key
            // in flight is another attempt's (a crashed process's, until
            // its lease runs out): its outcome is not known yet. Events the
            // store refuses as invalid are a refusal like any other: the
            // command was not carried out, and never will be.
            CommandError::Store(store) if !store.is_invalid_input() => {}
            CommandError::IdempotencyInFlight(_) => {}
            error if error.code() == "conflict" || error.is_internal() => {
                if deadline.is_some_and(|deadline| Utc::now() >= deadline) {
                    tracing::warn!(saga = name::<S>(), id, step = send.step, %error, "a saga step timed out");
                    return Ok(Answer::TimedOut);
                }
            }
            refusal => {
                return Ok(Answer::Refused {
                    code: refusal.code(),
                    message: refusal.to_string(),
                });
            }
        }
        tracing::debug!(saga = name::<S>(), id, step = send.step, %error, "a saga's command failed; sending it again");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The answer to `send` (recorded by `step_event` in `decided`) when its
/// idempotency key may be gone: the record is older than half the keys'
/// retention ([`DispatchConfig::idempotency_retention`](crate::DispatchConfig::idempotency_retention)),
/// so a command that ran before a crash (its answer not recorded) could
/// run again under a purged key. Its events name the step record as their
/// cause, so the command's stream is searched for them: found, they are
/// its answer. `None` when the key is surely kept or nothing was found
/// (the command never ran, and is sent). When the command's body names no
/// aggregate, or another step of the decision sends it to the same stream
/// under the same name, which events are whose cannot be told, and the
/// answer is [`Answer::Unknown`]: the instance fails rather than risk
/// running it twice.
async fn earlier_answer(
    shared: &Shared,
    step_event: &RecordedEvent,
    decided: &Record,
    send: &Sent,
) -> Result<Option<Answer>, Interrupt> {
    let age = Utc::now().signed_duration_since(step_event.recorded_at);
    let kept = chrono::TimeDelta::from_std(shared.dispatcher.idempotency_retention() / 2)
        .unwrap_or(chrono::TimeDelta::MAX);
    if age < kept {
        return Ok(None);
    }
    let target = |send: &Sent| {
        let body = serde_json::to_vec(&send.body).unwrap_or_default();
        shared.dispatcher.target_json(&send.command, &body)
    };
    let (stream_id, aggregate_id) = match target(send) {
        Ok(Some(target)) => target,
        // Not registered or not valid: sent, to be refused as such.
        Err(_) => return Ok(None),
        Ok(None) => {
            return Ok(Some(Answer::Unknown(format!(
                "step {} was sent {} s ago and its answer was not recorded; its command names no \
                 aggregate, so whether it ran cannot be told",
                send.step,
                age.num_seconds()
            ))));
        }
    };
    let shared_stream = decided.sends.iter().any(|other| {
        other.step != send.step
            && other.command == send.command
            && target(other).is_ok_and(|other| other.is_some_and(|(s, _)| s == stream_id))
    });
    if shared_stream {
        return Ok(Some(Answer::Unknown(format!(
            "step {} was sent {} s ago and its answer was not recorded; another step of the same \
             decision sends {} to {stream_id}, so whether it ran cannot be told",
            send.step,
            age.num_seconds(),
            send.command
        ))));
    }
    let cause = step_event.metadata.event_id.to_string();
    let events: Vec<RecordedEvent> = read_stream(&*shared.store, &stream_id)
        .await?
        .into_iter()
        .filter(|event| {
            event.metadata.causation_id.as_deref() == Some(cause.as_str())
                && event.metadata.command.as_deref() == Some(send.command.as_str())
        })
        .collect();
    let Some(last) = events.last() else {
        return Ok(None);
    };
    tracing::info!(
        saga = %step_event.stream_id,
        step = send.step,
        "a step older than its idempotency key ran before; answered from its events"
    );
    Ok(Some(Answer::Done(CommandOutcome {
        stream_id,
        aggregate_id,
        version: last.version,
        position: Some(last.position),
        replayed: true,
        events,
    })))
}

/// Records the decision `decide` makes about `input` (caused by `cause`)
/// on `instance`, unless the input was decided on already or the instance
/// has ended; on a concurrent append, reads the instance again and
/// retries. Returns the step record it appended; `instance` then includes
/// what it appended.
async fn record<S: Saga>(
    shared: &Shared,
    id: &str,
    instance: &mut Instance<S>,
    cause: &RecordedEvent,
    input: &str,
    decide: impl Fn(&S) -> Decision<S>,
) -> Result<Option<RecordedEvent>, Interrupt> {
    let stream = stream_id::<S>(id);
    loop {
        if instance.ended || instance.handled.contains(input) {
            return Ok(None);
        }
        let decision = decide_on(instance, &cause.metadata, &decide);
        let events = encode::<S>(decision, instance, input, id, &cause.metadata);
        match shared
            .store
            .append(&stream, ExpectedVersion::Exact(instance.version), events)
            .await
        {
            Ok(appended) => {
                for event in &appended.events {
                    instance.fold(event)?;
                }
                return Ok(appended.events.into_iter().last());
            }
            Err(error) if error.is_conflict() => {
                *instance = Instance::load(&*shared.store, &stream).await?;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// What `decide` decides on `instance`, for whoever started it (the
/// principal `cause` carries); a decision that panics, or an instance whose
/// events do not decode, ends it as `failed`.
fn decide_on<S: Saga>(
    instance: &Instance<S>,
    cause: &Metadata,
    decide: impl Fn(&S) -> Decision<S>,
) -> Decision<S> {
    if let Some(broken) = &instance.broken {
        return Decision::end("failed").because(format!("its events do not decode: {broken}"));
    }
    std::panic::catch_unwind(AssertUnwindSafe(|| {
        Principal::acting_sync(Principal::recorded(&cause.extra), || {
            decide(&instance.state)
        })
    }))
    .unwrap_or_else(|panic| {
        Decision::end("failed").because(format!(
            "its decision panicked: {}",
            crate::panic_message(&*panic)
        ))
    })
}

/// The start decision of instance `id` of `S`, created by `events` (a
/// `Vec` of `S`'s events, as a create-command decided them; the first
/// carries `first`'s metadata), to record in the same append: its own
/// events and step record. `None` when `events` are not `S`'s, or folding
/// them panics: then only the events are recorded, and the runner decides
/// the start when it reads them, as for an instance started otherwise.
pub(crate) fn start_decision<S: Saga>(
    events: &dyn std::any::Any,
    first: &Metadata,
    id: &str,
) -> Option<Vec<NewEvent>> {
    let events = events.downcast_ref::<Vec<<S as Aggregate>::Event>>()?;
    let started = events.first()?;
    let instance = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let mut instance = Instance::<S>::new();
        for event in events {
            instance.state.apply(event);
        }
        instance.version = events.len() as u64;
        instance
    }))
    .ok()?;
    let decision = decide_on(&instance, first, |saga| {
        saga.decide(Input::Started(started))
    });
    Some(encode::<S>(decision, &instance, "start", id, first))
}

/// The events that record `decision`: its own events, then the step
/// record. A decision that cannot be recorded as it is (a command that
/// does not encode, a step name used before, an event that does not
/// encode) ends the instance as `failed` instead, saying why.
fn encode<S: Saga>(
    decision: Decision<S>,
    instance: &Instance<S>,
    input: &str,
    id: &str,
    cause: &Metadata,
) -> Vec<NewEvent> {
    let mut seen = HashSet::new();
    let reused = decision
        .sends
        .iter()
        .find(|send| instance.steps.contains(&send.step) || !seen.insert(send.step.as_str()))
        .map(|send| format!("it sent step `{}` twice", send.step));
    let own: Result<Vec<NewEvent>, _> = decision.events.iter().map(NewEvent::from_event).collect();
    let invalid = decision.invalid.or(reused).or_else(|| {
        own.as_ref()
            .err()
            .map(|error| format!("an event does not encode: {error}"))
    });
    let (mut events, record) = match invalid {
        Some(why) => (
            Vec::new(),
            Record {
                input: input.to_owned(),
                sends: Vec::new(),
                end: Some(End {
                    status: "failed".into(),
                    reason: Some(why),
                }),
            },
        ),
        None => (
            own.unwrap_or_default(),
            Record {
                input: input.to_owned(),
                sends: decision.sends,
                end: decision.end,
            },
        ),
    };
    let record = serde_json::to_value(&record).expect("a step record always serializes");
    events.push(NewEvent::new(STEP_EVENT_TYPE, &record));
    for event in &mut events {
        let metadata = event.metadata_mut();
        metadata.correlation_id = Some(id.to_owned());
        metadata.causation_id = Some(cause.event_id.to_string());
        // The instance acts for whoever started it: each record carries
        // that principal on to the next step.
        Principal::carry(&cause.extra, &mut metadata.extra);
    }
    events
}
