//! [`Projections`]: the registry of running projections and their read
//! API.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::value::RawValue;
use tokio::sync::{Notify, watch};

use super::read::{Page, decode_cursor, encode_cursor, plain_text};
use super::registry::{self, ProjectionRegistration};
use super::runner::{DEFAULT_BATCH_SIZE, Progress, ProjectionState, ProjectionStatus, Slot};
use super::{ListQuery, MAX_LIMIT, Projection, ProjectionError};
use crate::node::Node;
use crate::store::projections::{ProjectionStore, RowQuery};
use crate::store::{EventStore, Lease};

/// The running projections: one task each, started by
/// [`ProjectionsBuilder::start`] and stopped when the last clone of this
/// handle is dropped.
#[derive(Clone)]
pub struct Projections {
    inner: Arc<Inner>,
}

struct Inner {
    slots: BTreeMap<&'static str, Arc<Slot>>,
    store: Arc<dyn EventStore>,
    node: Node,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for slot in self.slots.values() {
            if let Some(task) = slot.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
                task.abort();
            }
        }
    }
}

/// Configures [`Projections`].
pub struct ProjectionsBuilder {
    store: Arc<dyn EventStore>,
    storage: Option<Arc<dyn ProjectionStore>>,
    registrations: Option<Vec<ProjectionRegistration>>,
    batch_size: usize,
    node: Option<Node>,
}

impl ProjectionsBuilder {
    /// Keeps rows here instead of in the event store's own
    /// [`projection_store`](EventStore::projection_store).
    pub fn storage(mut self, storage: Arc<dyn ProjectionStore>) -> Self {
        self.storage = Some(storage);
        self
    }

    /// Runs exactly these projections instead of every `#[projection]`
    /// linked into the program.
    pub fn projections(mut self, registrations: Vec<ProjectionRegistration>) -> Self {
        self.registrations = Some(registrations);
        self
    }

    /// Runs projection `P`, and only the projections added this way (or
    /// with [`projections`](Self::projections)), instead of every
    /// `#[projection]` linked into the program.
    pub fn projection<P: Projection>(mut self) -> Self {
        self.registrations
            .get_or_insert_with(Vec::new)
            .push(ProjectionRegistration::new::<P>(std::any::type_name::<P>()));
        self
    }

    /// Events read and committed per transaction, at most (default
    /// [`DEFAULT_BATCH_SIZE`]; at least 1).
    pub fn batch_size(mut self, events: usize) -> Self {
        self.batch_size = events.max(1);
        self
    }

    /// Runs the projections as `node` (default: [`Node::default_for`] the
    /// store). On a store with leases that keeps the rows, each projection
    /// runs on one node at a time; the others follow its checkpoint.
    pub fn node(mut self, node: Node) -> Self {
        self.node = Some(node);
        self
    }

    /// [`node`](Self::node), unless one was given.
    pub(crate) fn default_node(mut self, node: Node) -> Self {
        self.node.get_or_insert(node);
        self
    }

    /// Checks the registry (one projection per name), opens every
    /// projection's storage and starts one task per projection. Must be
    /// called inside a Tokio runtime.
    pub async fn start(self) -> Result<Projections, ProjectionError> {
        let registrations = registry::collect(self.registrations.unwrap_or_else(registry::linked))?;
        let mut slots = BTreeMap::new();
        let node = self.node.unwrap_or_else(|| Node::default_for(&*self.store));
        // Leases guard rows every node shares: the store's own.
        let leased = self.storage.is_none()
            && self.store.leases().is_some()
            && self.store.projection_store().is_some();
        // A store that keeps no projection rows (it offers the log alone)
        // still serves projections: from memory, rebuilt from the log at
        // every start.
        let storage = match self.storage.or_else(|| self.store.projection_store()) {
            Some(storage) => storage,
            None => {
                if !registrations.is_empty() {
                    tracing::info!(
                        "the event store keeps no projection rows: projections live in memory and are rebuilt from the log at start"
                    );
                }
                Arc::new(crate::store::projections::MemoryProjectionStore::new())
                    as Arc<dyn crate::store::projections::ProjectionStore>
            }
        };
        for (name, registration) in registrations {
            let storage = storage.clone();
            let version = registration.version();
            let mut generations = storage.open(name, version).await?;
            // Rows built by another version of the projection are rebuilt
            // beside the live generation, which keeps serving meanwhile.
            let rebuilt_by = generations.rebuilding.map(|g| g.version);
            if generations.live.version != version && rebuilt_by != Some(version) {
                tracing::info!(
                    projection = name,
                    from = generations.live.version,
                    to = version,
                    "the projection's version changed: rebuilding it beside the live rows"
                );
                generations.rebuilding = Some(storage.begin_rebuild(name, version).await?);
            }
            let slot = Arc::new(Slot {
                registration,
                store: self.store.clone(),
                storage: storage.clone(),
                batch_size: self.batch_size,
                checkpoint: watch::Sender::new(generations.live.checkpoint),
                progress: Mutex::new(Progress {
                    rebuild: generations
                        .rebuilding
                        .filter(|g| g.version == version)
                        .map(|g| g.checkpoint),
                    ..Progress::default()
                }),
                wake: Notify::new(),
                task: Mutex::new(None),
                node: node.clone(),
                leased,
            });
            spawn(&slot);
            slots.insert(name, slot);
        }
        Ok(Projections {
            inner: Arc::new(Inner {
                slots,
                store: self.store,
                node,
            }),
        })
    }
}

impl std::fmt::Debug for ProjectionsBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionsBuilder")
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

/// Starts (or starts again) the task of `slot`, forgetting any failure.
fn spawn(slot: &Arc<Slot>) {
    let mut task = slot.task.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(old) = task.take() {
        old.abort();
    }
    lock(&slot.progress).failure = None;
    *task = Some(tokio::spawn((slot.registration.run)(slot.clone())));
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Projections {
    /// Starts configuring the projections that read `store`.
    pub fn builder(store: &dyn EventStore) -> ProjectionsBuilder {
        ProjectionsBuilder {
            store: store.shared(),
            storage: None,
            registrations: None,
            batch_size: DEFAULT_BATCH_SIZE,
            node: None,
        }
    }

    /// The names of the running projections, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        self.inner.slots.keys().copied().collect()
    }

    /// The registration of projection `name`.
    pub fn registration(&self, name: &str) -> Result<&ProjectionRegistration, ProjectionError> {
        Ok(&self.slot(name)?.registration)
    }

    fn slot(&self, name: &str) -> Result<&Arc<Slot>, ProjectionError> {
        self.inner
            .slots
            .get(name)
            .ok_or_else(|| ProjectionError::Unknown(name.to_owned()))
    }

    /// Every projection's status, sorted by name.
    pub async fn status(&self) -> Result<Vec<ProjectionStatus>, ProjectionError> {
        Ok(self.health().await?.1)
    }

    /// The store's head and every projection's status at it.
    pub(crate) async fn health(&self) -> Result<(u64, Vec<ProjectionStatus>), ProjectionError> {
        let head = self.inner.store.head_position().await?;
        let leases = self.leases().await?;
        let status = self
            .inner
            .slots
            .values()
            .map(|slot| status_of(slot, head, &leases));
        Ok((head, status.collect()))
    }

    /// The status of projection `name`.
    pub async fn status_of(&self, name: &str) -> Result<ProjectionStatus, ProjectionError> {
        let slot = self.slot(name)?;
        let head = self.inner.store.head_position().await?;
        Ok(status_of(slot, head, &self.leases().await?))
    }

    /// The owned leases of the store (none without leases), by name.
    async fn leases(&self) -> Result<HashMap<String, Lease>, ProjectionError> {
        Ok(self.inner.node.owners().await?)
    }

    /// The node the projections run on.
    pub fn node(&self) -> &Node {
        &self.inner.node
    }

    /// Starts rebuilding projection `name`: a new generation is built from
    /// the first event beside the live one, which readers keep seeing until
    /// the new one has caught up and is swapped in. A failed projection is
    /// restarted. Rebuilding one already being rebuilt changes nothing.
    pub async fn rebuild(&self, name: &str) -> Result<(), ProjectionError> {
        let slot = self.slot(name)?;
        let generation = slot
            .storage
            .begin_rebuild(name, slot.registration.version())
            .await?;
        {
            let mut progress = lock(&slot.progress);
            progress.rebuild.get_or_insert(generation.checkpoint);
            progress.rebuild_requested = true;
        }
        if lock(&slot.progress).failure.is_some() {
            spawn(slot);
        } else {
            slot.wake.notify_one();
        }
        Ok(())
    }

    /// Stops every projection's task and waits until each has stopped
    /// (for a shutdown: a batch cut short is rolled back and read again
    /// from the checkpoint at the next start). [`restart`](Self::restart)
    /// or [`rebuild`](Self::rebuild) starts one again.
    pub async fn stop(&self) {
        for slot in self.inner.slots.values() {
            let task = slot.task.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(task) = task {
                task.abort();
                // An error says it was cancelled (or had panicked): stopped.
                let _ = task.await;
            }
        }
    }

    /// Restarts projection `name` from its stored checkpoint (after a
    /// failure, once the cause is fixed, e.g. the data it needed exists).
    pub fn restart(&self, name: &str) -> Result<(), ProjectionError> {
        spawn(self.slot(name)?);
        Ok(())
    }

    /// The position the rows of projection `name` reflect: every event up
    /// to it and none after. Read it before the rows to label them.
    pub fn checkpoint(&self, name: &str) -> Result<u64, ProjectionError> {
        Ok(*self.slot(name)?.checkpoint.borrow())
    }

    /// Waits until the checkpoint of projection `name` reaches `position`
    /// (read-your-writes: pass the position a command returned), at most
    /// `timeout`. Returns the checkpoint. A position past the log's head
    /// is [`ProjectionError::BeyondHead`] and a projection that failed
    /// before reaching it [`ProjectionError::Failed`], both at once.
    pub async fn wait_for(
        &self,
        name: &str,
        position: u64,
        timeout: Duration,
    ) -> Result<u64, ProjectionError> {
        let slot = self.slot(name)?;
        self.check_reachable(position).await?;
        wait(slot, position, tokio::time::Instant::now() + timeout).await
    }

    /// [`wait_for`](Self::wait_for) every projection, at most `timeout` in
    /// all.
    pub async fn wait_for_all(
        &self,
        position: u64,
        timeout: Duration,
    ) -> Result<(), ProjectionError> {
        self.check_reachable(position).await?;
        let deadline = tokio::time::Instant::now() + timeout;
        for slot in self.inner.slots.values() {
            wait(slot, position, deadline).await?;
        }
        Ok(())
    }

    /// Refuses a position no command has produced yet.
    async fn check_reachable(&self, position: u64) -> Result<(), ProjectionError> {
        // Positions a command returned are committed, so at most the head.
        if position == 0 {
            return Ok(());
        }
        let head = self.inner.store.head_position().await?;
        if position > head {
            return Err(ProjectionError::BeyondHead {
                wanted: position,
                head,
            });
        }
        Ok(())
    }

    /// The row of projection `name` under `key`, as JSON.
    pub async fn get_json(
        &self,
        name: &str,
        key: &str,
    ) -> Result<Option<Box<RawValue>>, ProjectionError> {
        let slot = self.slot(name)?;
        let key = plain_text(|| "key".to_owned(), key)?;
        let row = slot.storage.get(name, key).await?;
        row.map(|json| raw(name, json)).transpose()
    }

    /// The row of projection `name` under `key`, as the JSON text the
    /// store keeps: what HTTP sends, without parsing it again.
    pub(crate) async fn get_text(
        &self,
        name: &str,
        key: &str,
    ) -> Result<Option<String>, ProjectionError> {
        let slot = self.slot(name)?;
        let key = plain_text(|| "key".to_owned(), key)?;
        Ok(slot.storage.get(name, key).await?)
    }

    /// The row of projection `P` under `key`.
    pub async fn get<P: Projection>(&self, key: &str) -> Result<Option<P>, ProjectionError> {
        let slot = self.slot(P::NAME)?;
        let key = plain_text(|| "key".to_owned(), key)?;
        let row = slot.storage.get(P::NAME, key).await?;
        row.map(|json| typed(P::NAME, &json)).transpose()
    }

    /// A page of rows of projection `name`, as JSON, in key order.
    pub async fn list_json(
        &self,
        name: &str,
        query: &ListQuery,
    ) -> Result<Page<Box<RawValue>>, ProjectionError> {
        let (rows, next_cursor) = self.list_rows(name, query).await?;
        let items = rows
            .into_iter()
            .map(|json| raw(name, json))
            .collect::<Result<_, _>>()?;
        Ok(Page::new(items, next_cursor))
    }

    /// A page of rows of projection `P`, in key order.
    pub async fn list<P: Projection>(&self, query: &ListQuery) -> Result<Page<P>, ProjectionError> {
        let (rows, next_cursor) = self.list_rows(P::NAME, query).await?;
        let items = rows
            .iter()
            .map(|json| typed(P::NAME, json))
            .collect::<Result<_, _>>()?;
        Ok(Page::new(items, next_cursor))
    }

    async fn list_rows(
        &self,
        name: &str,
        query: &ListQuery,
    ) -> Result<(Vec<String>, Option<String>), ProjectionError> {
        let slot = self.slot(name)?;
        if query.limit == 0 || query.limit > MAX_LIMIT {
            return Err(ProjectionError::InvalidLimit {
                got: query.limit,
                max: MAX_LIMIT,
            });
        }
        // One more row than asked for tells whether there is a next page.
        let mut rows_query = RowQuery::first(query.limit + 1);
        if let Some(cursor) = &query.cursor {
            rows_query = rows_query.after(decode_cursor(cursor)?);
        }
        if let Some((field, value)) = &query.filter {
            let indexed = slot.registration.indexed_by();
            if !indexed.contains(&field.as_str()) {
                return Err(ProjectionError::NotIndexed {
                    projection: name.to_owned(),
                    field: field.clone(),
                    indexed: indexed.join(", "),
                });
            }
            let value = plain_text(|| format!("value of filter `{field}`"), value)?;
            rows_query = rows_query.indexed(field.clone(), value.to_owned());
        }
        let mut rows = slot.storage.list(name, &rows_query).await?;
        let next_cursor = if rows.len() > query.limit {
            rows.truncate(query.limit);
            rows.last().map(|(key, _)| encode_cursor(key))
        } else {
            None
        };
        Ok((
            rows.into_iter().map(|(_, json)| json).collect(),
            next_cursor,
        ))
    }
}

/// Waits until `slot`'s checkpoint reaches `position` or it fails, until
/// `deadline`.
async fn wait(
    slot: &Slot,
    position: u64,
    deadline: tokio::time::Instant,
) -> Result<u64, ProjectionError> {
    let failed = || {
        lock(&slot.progress)
            .failure
            .as_ref()
            .map(|failure| match failure.newer {
                true => ProjectionError::WaitingForUpgrade {
                    projection: slot.registration.name().to_owned(),
                    position: failure.position,
                },
                false => ProjectionError::Failed {
                    projection: slot.registration.name().to_owned(),
                    position: failure.position,
                    reason: failure.error.clone(),
                },
            })
    };
    let mut checkpoint = slot.checkpoint.subscribe();
    // The runner wakes the checkpoint's watchers when it fails.
    // Ends at the position, at a failure or at the deadline; which one is
    // read below.
    let _ = tokio::time::timeout_at(
        deadline,
        checkpoint.wait_for(|c| *c >= position || failed().is_some()),
    )
    .await;
    let reached = *checkpoint.borrow();
    if reached >= position {
        return Ok(reached);
    }
    if let Some(failure) = failed() {
        return Err(failure);
    }
    // Out of time (or restarted just after failing: still not there).
    Err(ProjectionError::NotReached {
        projection: slot.registration.name().to_owned(),
        checkpoint: reached,
        wanted: position,
    })
}

fn status_of(slot: &Slot, head: u64, leases: &HashMap<String, Lease>) -> ProjectionStatus {
    let checkpoint = *slot.checkpoint.borrow();
    let progress = lock(&slot.progress);
    let lease = leases.get(&slot.lease()).filter(|_| slot.leased);
    let state = if progress.standby {
        ProjectionState::Standby
    } else if let Some(failure) = &progress.failure {
        match failure.newer {
            true => ProjectionState::WaitingForUpgrade,
            false => ProjectionState::Failed,
        }
    } else if progress.rebuild.is_some() {
        ProjectionState::Rebuilding
    } else {
        ProjectionState::Running
    };
    ProjectionStatus {
        name: slot.registration.name().to_owned(),
        state,
        checkpoint,
        head,
        lag: head.saturating_sub(checkpoint),
        rebuild_checkpoint: progress.rebuild,
        error: progress.failure.as_ref().map(|f| f.error.clone()),
        failed_position: progress.failure.as_ref().map(|f| f.position),
        owner: lease.map(|lease| lease.owner.clone()),
        lease_expires_at: lease.map(|lease| lease.expires_at),
        progress: work_progress(slot, &progress, checkpoint, head),
    }
}

/// What a rebuild under way, or a running projection a batch or more
/// behind the head, reports of its pace.
fn work_progress(
    slot: &Slot,
    progress: &Progress,
    checkpoint: u64,
    head: u64,
) -> Option<super::WorkProgress> {
    if progress.standby || progress.failure.is_some() {
        return None;
    }
    match progress.rebuild {
        Some(_) => progress.rebuild_meter.progress(head),
        None if head.saturating_sub(checkpoint) >= slot.batch_size as u64 => {
            progress.live_meter.progress(head)
        }
        None => None,
    }
}

fn raw(projection: &str, json: String) -> Result<Box<RawValue>, ProjectionError> {
    RawValue::from_string(json).map_err(|source| ProjectionError::Row {
        projection: projection.to_owned(),
        source,
    })
}

fn typed<P: Projection>(projection: &str, json: &str) -> Result<P, ProjectionError> {
    serde_json::from_str(json).map_err(|source| ProjectionError::Row {
        projection: projection.to_owned(),
        source,
    })
}

impl std::fmt::Debug for Projections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projections")
            .field("names", &self.names())
            .finish_non_exhaustive()
    }
}
