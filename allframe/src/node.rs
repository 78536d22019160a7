//! This process as one node of several on a shared store: its id, and the
//! leases under which its projection and saga runners work (see
//! [`store::leases`](crate::store::leases)).
//!
//! On a store without leases (memory, SQLite: one process) every runner
//! works at once and nothing here touches the store.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::store::{EventStore, Lease, LeaseStore};

/// How long a lease lasts unless renewed, by default.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);

/// This node: its id and lease settings. Cloning gives another handle to
/// the same node.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    id: String,
    store: Arc<dyn EventStore>,
    ttl: Duration,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(heartbeat) = &self.heartbeat {
            heartbeat.abort();
        }
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.inner.id)
            .field("lease_ttl", &self.inner.ttl)
            .finish_non_exhaustive()
    }
}

/// The default node id: the host's name and the process id
/// (`web-1-4242`); a second call in the same process adds a number
/// (`web-1-4242-2`), so apps built side by side in one process are nodes
/// of their own.
pub fn default_node_id() -> String {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|host| host.trim().to_owned())
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| "node".to_owned());
    match call {
        0 => format!("{host}-{}", std::process::id()),
        n => format!("{host}-{}-{}", std::process::id(), n + 1),
    }
}

impl Node {
    /// Node `id` on `store`, with leases lasting `ttl` (at least a second)
    /// unless renewed. On a store with leases it says every `ttl / 3` that
    /// it is alive, from now until the last handle is dropped.
    pub fn new(store: &dyn EventStore, id: impl Into<String>, ttl: Duration) -> Self {
        let (id, ttl, store) = (id.into(), ttl.max(Duration::from_secs(1)), store.shared());
        let heartbeat = store.leases().is_some().then(|| {
            let (store, id) = (store.clone(), id.clone());
            tokio::spawn(async move {
                loop {
                    if let Some(leases) = store.leases()
                        && let Err(error) = leases.heartbeat(&id, ttl).await
                    {
                        tracing::warn!(node = %id, %error, "the node could not say it is alive");
                    }
                    tokio::time::sleep(ttl / 3).await;
                }
            })
        });
        Self {
            inner: Arc::new(Inner {
                id,
                store,
                ttl,
                heartbeat,
            }),
        }
    }

    /// Node [`default_node_id`] with [`DEFAULT_LEASE_TTL`].
    pub fn default_for(store: &dyn EventStore) -> Self {
        Self::new(store, default_node_id(), DEFAULT_LEASE_TTL)
    }

    /// Its id.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// How long its leases last unless renewed.
    pub fn lease_ttl(&self) -> Duration {
        self.inner.ttl
    }

    fn leases(&self) -> Option<&dyn LeaseStore> {
        self.inner.store.leases()
    }

    /// Every lease of the store (none without leases).
    pub async fn all_leases(&self) -> crate::store::Result<Vec<Lease>> {
        match self.leases() {
            Some(leases) => leases.list().await,
            None => Ok(Vec::new()),
        }
    }

    /// The leases some node holds or last held, by name: what the admin
    /// lists show as each runner's owner.
    pub(crate) async fn owners(
        &self,
    ) -> crate::store::Result<std::collections::HashMap<String, Lease>> {
        Ok(self
            .all_leases()
            .await?
            .into_iter()
            .filter(|lease| !lease.owner.is_empty())
            .map(|lease| (lease.name.clone(), lease))
            .collect())
    }

    /// Says this node has left and gives back every lease it holds, so
    /// other nodes take its runners at once instead of after the leases
    /// expire. Call it once its runners have stopped.
    pub async fn leave(&self) {
        if let Some(leases) = self.leases()
            && let Err(error) = leases.leave(&self.inner.id).await
        {
            tracing::warn!(node = %self.inner.id, %error, "the node could not say it has left");
        }
    }

    /// Waits until this node holds lease `name` (at once on a store
    /// without leases), then keeps it renewed until the returned [`Held`]
    /// is dropped or reports it lost.
    pub(crate) async fn hold(&self, name: &str) -> Held {
        let Some(leases) = self.leases() else {
            return Held::unleased();
        };
        let ttl = self.inner.ttl;
        let mut backoff = ttl / 3;
        loop {
            match leases.try_acquire(name, &self.inner.id, ttl).await {
                Ok(Some(lease)) => {
                    tracing::info!(node = %self.inner.id, lease = name, epoch = lease.epoch, "took a lease");
                    return self.keep(lease);
                }
                Ok(None) => backoff = ttl / 3,
                Err(error) => {
                    tracing::warn!(node = %self.inner.id, lease = name, %error, "could not ask for a lease");
                }
            }
            // Apart from other nodes' rhythm.
            let jitter = Duration::from_millis(u64::from(rand_below(200)));
            tokio::time::sleep(backoff + jitter).await;
            backoff = (backoff * 2).min(ttl);
        }
    }

    /// Renews `lease` every `ttl / 3` in a task of its own, which reports
    /// it lost when another node took it, when it could not be renewed
    /// before it expired, or when it was given back to even out the load.
    fn keep(&self, lease: Lease) -> Held {
        let (lost_sender, lost) = watch::channel(false);
        let node = self.clone();
        let held = lease.clone();
        let renewer = tokio::spawn(async move {
            let Some(leases) = node.leases() else { return };
            let ttl = node.inner.ttl;
            let mut lease = held;
            loop {
                tokio::time::sleep(ttl / 3).await;
                match leases.renew(&lease, ttl).await {
                    Ok(Some(renewed)) => lease = renewed,
                    Ok(None) => {
                        tracing::warn!(node = %node.inner.id, lease = lease.name, "lost a lease to another node");
                        break;
                    }
                    Err(error) if chrono::Utc::now() < lease.expires_at => {
                        tracing::warn!(node = %node.inner.id, lease = lease.name, %error, "could not renew a lease; trying again");
                        continue;
                    }
                    Err(error) => {
                        tracing::warn!(node = %node.inner.id, lease = lease.name, %error, "a lease expired before it could be renewed");
                        break;
                    }
                }
                if let Ok(Some(surplus)) = leases.surplus(&node.inner.id).await
                    && surplus == lease.name
                {
                    tracing::info!(node = %node.inner.id, lease = lease.name, "giving a lease back to even out the load");
                    // Given back before the runner stops: a commit in
                    // between still holds (the epoch is unchanged until
                    // another node takes it), and the runner asking again
                    // finds this node at its share.
                    if let Err(error) = leases.release(&lease).await {
                        tracing::warn!(node = %node.inner.id, lease = lease.name, %error, "could not give a lease back; it expires instead");
                    }
                    break;
                }
            }
            let _ = lost_sender.send(true);
        });
        Held {
            lease: Some(lease),
            lost,
            renewer: Some(Renewer(renewer, self.clone())),
        }
    }
}

/// A small random number below `bound`, from the clock (spreading retries
/// needs no more).
fn rand_below(bound: u32) -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    nanos % bound.max(1)
}

/// A lease this node holds (or, on a store without leases, the right to
/// run that every node has). Dropping it stops the renewals and gives the
/// lease back.
pub(crate) struct Held {
    lease: Option<Lease>,
    lost: watch::Receiver<bool>,
    renewer: Option<Renewer>,
}

struct Renewer(tokio::task::JoinHandle<()>, Node);

impl Held {
    /// The right to run without a lease (a store without leases, or rows
    /// kept apart from the shared store).
    pub(crate) fn unleased() -> Self {
        Self {
            lease: None,
            lost: watch::channel(false).1,
            renewer: None,
        }
    }

    /// The fence for this lease's commits.
    pub(crate) fn fence(&self) -> Option<crate::store::projections::Fence<'_>> {
        self.lease
            .as_ref()
            .map(|lease| crate::store::projections::Fence::new(&lease.name, lease.epoch))
    }

    /// Resolves when the lease is lost (never, without leases).
    pub(crate) async fn lost(&self) {
        let mut lost = self.lost.clone();
        if lost.wait_for(|lost| *lost).await.is_err() {
            // The renewer ended without saying so (it was aborted):
            // nothing renews the lease any more.
            if self.renewer.is_some() {
                return;
            }
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let Some(Renewer(task, node)) = self.renewer.take() else {
            return;
        };
        let gave_back = task.is_finished();
        task.abort();
        if let Some(lease) = self.lease.take()
            && !gave_back
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                if let Some(leases) = node.leases() {
                    let _ = leases.release(&lease).await;
                }
            });
        }
    }
}
