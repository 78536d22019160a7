//! The runner: one task per projection, reading the global log through the
//! store's gap-safe `read_all` and committing each batch of row changes
//! with its checkpoint in one transaction.
//!
//! Each step reads the head position, then up to a batch of events after
//! the checkpoint that pass the source's filter. Everything at or below
//! that head was committed before the read began, so when the read comes
//! back short, no event up to the head is missing from it: the projection
//! then *covers* the head even if none of those events were its own, and
//! `wait_for` on a position of another category returns at once. The
//! covered position is only kept in memory (re-reading events that are not
//! the projection's after a restart changes nothing); what the rows reflect
//! is always committed with them.
//!
//! A rebuild is a second generation worked by the same task, one batch at a
//! time between the live generation's steps. Once it covers at least what
//! the live one does, the store swaps it in, so readers go from one
//! complete generation to the next and positions never go backwards.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::{Notify, watch};

use super::apply::{self, Failure};
use super::meter::Meter;
use super::registry::ProjectionRegistration;
use super::{Projection, Source};
use crate::event::RecordedEvent;
use crate::store::projections::{Batch, Committed, Fence, Generation, ProjectionStore};
use crate::store::{EventFilter, EventStore, StoreError};

/// Events one step reads and commits at most, by default.
pub const DEFAULT_BATCH_SIZE: usize = 1_000;
/// How often an idle runner looks for events written by other processes.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How often a node that does not run a projection looks at its stored
/// checkpoint while the owner has events to apply.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(50);
/// How often the node that runs a projection under a lease looks for a
/// rebuild asked for on another node.
const REBUILD_LOOK_INTERVAL: Duration = Duration::from_secs(1);
/// The longest wait before a runner retries after a store error.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What a projection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ProjectionState {
    /// Following the log.
    Running,
    /// Following the log while a new generation is built beside it.
    Rebuilding,
    /// Stopped at an event its `apply` refused or panicked on.
    Failed,
    /// Paused at an event written by a newer release than this one (a
    /// rolling deploy): the event is never skipped, and a node running the
    /// new release carries on from it.
    #[serde(rename = "waiting-for-upgrade")]
    WaitingForUpgrade,
    /// Run by another node (the lease's owner); this one follows its
    /// checkpoint.
    Standby,
}

/// A projection's progress, as the registry lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct ProjectionStatus {
    /// The projection's name.
    pub name: String,
    /// What it is doing.
    pub state: ProjectionState,
    /// The position readers' rows reflect.
    pub checkpoint: u64,
    /// The position of the last event in the store.
    pub head: u64,
    /// `head - checkpoint`.
    pub lag: u64,
    /// While rebuilding: how far the new generation has read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebuild_checkpoint: Option<u64>,
    /// When failed: why, and at which event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When failed: the position of the event it stopped at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_position: Option<u64>,
    /// On a store shared by several nodes: the node that runs it (holds
    /// its lease).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Until when the owner holds the lease, unless it renews it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// While rebuilding, or catching up a batch or more behind the head:
    /// how fast it goes and how long it has left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<super::WorkProgress>,
}

/// Everything about one projection that its task and the registry share.
pub(crate) struct Slot {
    pub(super) registration: ProjectionRegistration,
    pub(super) store: Arc<dyn EventStore>,
    pub(super) storage: Arc<dyn ProjectionStore>,
    pub(super) batch_size: usize,
    /// The live generation's covered position; only ever grows.
    pub(super) checkpoint: watch::Sender<u64>,
    pub(super) progress: Mutex<Progress>,
    /// Wakes the task when a rebuild was requested.
    pub(super) wake: Notify,
    pub(super) task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The node it runs on, and whether it runs under a lease (where the
    /// store has leases and keeps the rows).
    pub(super) node: crate::node::Node,
    pub(super) leased: bool,
}

/// The parts of a status only the task knows.
#[derive(Debug, Default)]
pub(super) struct Progress {
    pub(super) rebuild: Option<u64>,
    pub(super) failure: Option<Failure>,
    /// A rebuild was requested and the task has not picked it up yet.
    pub(super) rebuild_requested: bool,
    /// Another node holds the lease: this one follows the stored
    /// checkpoint.
    pub(super) standby: bool,
    /// How fast the live generation moves.
    pub(super) live_meter: Meter,
    /// How fast the rebuild under way moves.
    pub(super) rebuild_meter: Meter,
}

impl Slot {
    fn name(&self) -> &'static str {
        self.registration.name()
    }

    /// The name of its lease.
    pub(super) fn lease(&self) -> String {
        format!("projection:{}", self.name())
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes where a generation (the rebuild's, or the live one) got to,
    /// and logs its progress every [`LOG_EVERY`](super::meter::LOG_EVERY) while it is a batch or
    /// more behind `head`.
    fn measure(&self, rebuilding: bool, covered: u64, head: u64) {
        let mut progress = self.progress();
        let meter = match rebuilding {
            true => &mut progress.rebuild_meter,
            false => &mut progress.live_meter,
        };
        meter.record(covered);
        let behind = head.saturating_sub(covered) >= self.batch_size as u64;
        if !behind || !meter.log_due() {
            return;
        }
        let Some(report) = meter.progress(head) else {
            return;
        };
        drop(progress);
        tracing::info!(
            projection = self.name(),
            work = if rebuilding { "rebuild" } else { "catch-up" },
            covered,
            head,
            events_per_second = report.events_per_second,
            eta_seconds = report.eta_seconds,
            "projection progress"
        );
    }

    fn publish(&self, covered: u64) {
        self.checkpoint.send_if_modified(|checkpoint| {
            let moved = covered > *checkpoint;
            *checkpoint = (*checkpoint).max(covered);
            moved
        });
    }
}

/// One generation as the task works it.
struct Cursor {
    number: u64,
    /// The checkpoint stored with its rows.
    stored: u64,
    /// Everything up to here is reflected (see the module docs).
    covered: u64,
    /// The next page, read while the last one was committed.
    ahead: Option<Page>,
}

impl From<Generation> for Cursor {
    fn from(generation: Generation) -> Self {
        Self {
            number: generation.number,
            stored: generation.checkpoint,
            covered: generation.checkpoint,
            ahead: None,
        }
    }
}

/// Why a task's work loop ended without a failure of the projection.
enum Interrupt {
    Store(StoreError),
    /// Another runner moved a checkpoint (or took the lease over): start
    /// over from the stored state.
    Moved,
    /// The node lost the projection's lease.
    Lost,
}

impl From<StoreError> for Interrupt {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

/// The task of projection `P`: works until `apply` fails, retrying store
/// errors with backoff.
pub(super) fn run<P: Projection>(slot: Arc<Slot>) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let mut backoff = Duration::from_millis(50);
        let (lease, filter) = (slot.lease(), P::Source::filter());
        loop {
            let held = match slot.leased {
                true => tokio::select! {
                    held = slot.node.hold(&lease) => held,
                    never = follow(&slot, &filter) => match never {},
                },
                false => crate::node::Held::unleased(),
            };
            slot.progress().standby = false;
            let worked = tokio::select! {
                worked = work::<P>(&slot, held.fence()) => worked,
                () = held.lost() => Err(Interrupt::Lost),
            };
            match worked {
                Ok(failure) => {
                    let (position, error) = (failure.position, &failure.error);
                    if failure.newer {
                        tracing::warn!(
                            projection = slot.name(),
                            position,
                            %error,
                            "projection paused at an event of a newer release; waiting for the upgrade"
                        );
                    } else {
                        tracing::error!(
                            projection = slot.name(),
                            position,
                            %error,
                            "projection failed and stopped"
                        );
                    }
                    slot.progress().failure = Some(failure);
                    // Readers waiting for a position learn at once that
                    // it will not come.
                    slot.checkpoint.send_modify(|_| {});
                    return;
                }
                Err(Interrupt::Lost) => {
                    tracing::warn!(
                        projection = slot.name(),
                        "the node no longer holds the projection's lease; following it from another node"
                    );
                }
                Err(Interrupt::Moved) => {
                    tracing::warn!(
                        projection = slot.name(),
                        "another runner moved the checkpoint; starting over from the stored state"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(Interrupt::Store(error)) => {
                    tracing::warn!(projection = slot.name(), %error, "projection store error; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    })
}

/// While another node runs the projection: publishes what its stored rows
/// cover (the stored checkpoint, or the head when no event of the
/// projection lies between them), so reads waiting for a position work on
/// every node. Looks again on every new head (at most every
/// [`FOLLOW_INTERVAL`]), and that often while the owner still has events
/// to apply.
async fn follow(slot: &Slot, filter: &EventFilter) -> std::convert::Infallible {
    slot.progress().standby = true;
    let mut head = slot.store.watch_head();
    loop {
        let covered = async {
            let head = slot.store.head_position().await?;
            let stored = slot.storage.checkpoint(slot.name()).await?;
            let pending = slot.store.read_all(stored, 1, filter).await?;
            let covered = if pending.is_empty() { head } else { stored };
            Ok::<_, StoreError>((covered, head))
        };
        let behind = match covered.await {
            Ok((covered, head)) => {
                slot.publish(covered);
                covered < head
            }
            Err(error) => {
                tracing::debug!(projection = slot.name(), %error, "could not read the stored checkpoint");
                true
            }
        };
        let checked = tokio::time::Instant::now();
        let wait = if behind {
            FOLLOW_INTERVAL
        } else {
            POLL_INTERVAL
        };
        tokio::select! {
            _ = head.changed() => {}
            () = tokio::time::sleep(wait) => {}
        }
        // At most one look per interval, however fast the head moves.
        tokio::time::sleep_until(checked + FOLLOW_INTERVAL).await;
    }
}

async fn work<P: Projection>(slot: &Slot, fence: Option<Fence<'_>>) -> Result<Failure, Interrupt> {
    let name = slot.name();
    let filter = P::Source::filter();
    let mut head = slot.store.watch_head();
    let version = slot.registration.version();
    let generations = slot.storage.open(name, version).await?;
    // Rows of generations a swap left behind when the process died.
    slot.storage.drop_old(name).await?;
    let mut live = Cursor::from(generations.live);
    // A rebuild is worked only by the version it is built for: rows built
    // by other code must not be swapped in under its version.
    let ours = |generation: &Generation| generation.version == version;
    let mut rebuild = generations.rebuilding.filter(ours).map(Cursor::from);
    slot.progress().rebuild_meter.clear();
    slot.publish(live.covered);
    slot.progress().rebuild = rebuild.as_ref().map(|r| r.covered);
    let mut looked_for_rebuild = tokio::time::Instant::now();
    loop {
        let took_request = std::mem::take(&mut slot.progress().rebuild_requested);
        // Under a lease, a rebuild may have been asked for on another
        // node: the stored generations say so.
        let asked_elsewhere = slot.leased && looked_for_rebuild.elapsed() >= REBUILD_LOOK_INTERVAL;
        if (took_request || asked_elsewhere) && rebuild.is_none() {
            looked_for_rebuild = tokio::time::Instant::now();
            rebuild = slot
                .storage
                .open(name, version)
                .await?
                .rebuilding
                .filter(ours)
                .map(Cursor::from);
        }
        let live_moved = step::<P>(slot, &mut live, &filter, fence).await?;
        // Published even on a failure: the rows before it were committed.
        slot.publish(live.covered);
        slot.measure(false, live.covered, *head.borrow());
        if let Step::Failed(failure) = live_moved {
            return Ok(failure);
        }
        let Some(building) = rebuild.as_mut() else {
            if live_moved == Step::Idle {
                // Either wake-up is only a hint to read again.
                tokio::select! {
                    _ = head.changed() => {}
                    () = slot.wake.notified() => {}
                    () = tokio::time::sleep(POLL_INTERVAL) => {}
                }
            }
            continue;
        };
        let rebuilt = step::<P>(slot, building, &filter, fence).await?;
        slot.progress().rebuild = Some(building.covered);
        slot.measure(true, building.covered, *head.borrow());
        if let Step::Failed(failure) = rebuilt {
            return Ok(failure);
        }
        if building.covered >= live.covered {
            if !slot.storage.swap(name, building.number).await? {
                return Err(Interrupt::Moved);
            }
            live = rebuild.take().expect("a rebuild is under way");
            slot.publish(live.covered);
            {
                let mut progress = slot.progress();
                progress.rebuild = None;
                progress.rebuild_meter.clear();
            }
            tracing::info!(
                projection = name,
                checkpoint = live.covered,
                "rebuild swapped in"
            );
            slot.storage.drop_old(name).await?;
        }
    }
}

/// What one step did.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Nothing new to read.
    Idle,
    /// Read and committed events.
    Moved,
    Failed(Failure),
}

/// Events read ahead for a cursor: the page after `after`, and the head
/// read before it.
struct Page {
    after: u64,
    head: u64,
    events: Vec<RecordedEvent>,
}

/// Reads the page after `after`, with the head read before it (see the
/// module docs).
async fn read_page(slot: &Slot, after: u64, filter: &EventFilter) -> Result<Page, StoreError> {
    let head = slot.store.head_position().await?;
    let events = slot.store.read_all(after, slot.batch_size, filter).await?;
    Ok(Page {
        after,
        head,
        events,
    })
}

/// Reads, applies and commits one batch of `cursor`'s generation. While a
/// full batch is applied and committed, the next one is already being read,
/// so reading (the larger cost) overlaps with the rest.
async fn step<P: Projection>(
    slot: &Slot,
    cursor: &mut Cursor,
    filter: &EventFilter,
    fence: Option<Fence<'_>>,
) -> Result<Step, Interrupt> {
    let page = match cursor.ahead.take() {
        Some(page) if page.after == cursor.covered => page,
        _ => read_page(slot, cursor.covered, filter).await?,
    };
    let Page { head, events, .. } = page;
    let Some(last_read) = events.last().map(|e| e.position) else {
        cursor.covered = cursor.covered.max(head);
        return Ok(Step::Idle);
    };
    let full = events.len() >= slot.batch_size;
    let read_ahead = async {
        if full {
            Some(read_page(slot, last_read, filter).await)
        } else {
            None
        }
    };
    let (outcome, ahead) = futures_util::future::join(
        apply_and_commit::<P>(slot, cursor, &events, last_read, fence),
        read_ahead,
    )
    .await;
    let step = outcome?;
    if step == Step::Moved {
        // A failed read ahead is simply done again by the next step.
        cursor.ahead = ahead.and_then(Result::ok);
        if !full {
            cursor.covered = cursor.covered.max(head);
        }
    }
    Ok(step)
}

/// Applies `events` (read after the cursor, the last at `last_read`) and
/// commits the rows with the new checkpoint.
async fn apply_and_commit<P: Projection>(
    slot: &Slot,
    cursor: &mut Cursor,
    events: &[RecordedEvent],
    last_read: u64,
    fence: Option<Fence<'_>>,
) -> Result<Step, Interrupt> {
    let (targeted, target_failure) = apply::target::<P>(events);
    let keys = apply::keys(&targeted);
    let loaded = if keys.is_empty() {
        HashMap::new()
    } else {
        slot.storage.load(slot.name(), cursor.number, &keys).await?
    };
    let applied = apply::apply::<P>(targeted, loaded);
    // An apply failure comes before any decode failure: only the events
    // before the decode failure were applied.
    let failure = applied.failure.or(target_failure);
    let to = match &failure {
        None => last_read,
        Some(failure) => events
            .iter()
            .map(|e| e.position)
            .take_while(|&position| position < failure.position)
            .last()
            .unwrap_or(cursor.covered)
            .max(cursor.covered),
    };
    debug_assert!(applied.last.is_none_or(|last| last <= to));
    if to > cursor.stored || !applied.writes.is_empty() {
        let batch = Batch::new(
            slot.name(),
            cursor.number,
            cursor.stored,
            to,
            !slot.registration.indexed_by().is_empty(),
            &applied.writes,
        )
        .fenced(fence);
        if slot.storage.commit(batch).await? == Committed::Moved {
            return Err(Interrupt::Moved);
        }
        cursor.stored = to;
    }
    cursor.covered = cursor.covered.max(to);
    Ok(match failure {
        Some(failure) => Step::Failed(failure),
        None => Step::Moved,
    })
}
