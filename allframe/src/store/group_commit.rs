//! Group commit for the SQL backends.
//!
//! Appends are queued to one writer task per store. The task takes every
//! append waiting at that moment (up to a limit) and writes them in a single
//! transaction, so the cost of a commit (a WAL flush) is shared by all of
//! them. Each append is still checked on its own: one with a wrong expected
//! version is refused without writing anything, and the rest of the batch
//! commits. If the transaction itself fails, nothing of the batch was
//! written, and the appends are retried one per transaction so each caller
//! gets its own answer.
//!
//! Writes never interleave inside a process, and each backend takes a
//! database lock in its transaction so writers in other processes are
//! serialized too; positions are therefore assigned in commit order.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, oneshot, watch};

use super::{Appended, ExpectedVersion, Result, StoreError, record_append};
use crate::event::NewEvent;

/// One append waiting for the writer.
pub(crate) struct Request {
    pub(crate) stream_id: String,
    pub(crate) expected: ExpectedVersion,
    pub(crate) events: Vec<NewEvent>,
}

/// What a backend does with one batch: a single transaction.
pub(crate) trait BatchWriter: Send + 'static {
    /// Writes the accepted appends of `batch` in one transaction (checking
    /// each with [`plan`]) and returns each append's outcome in order. An
    /// `Err` means the transaction failed and nothing was written.
    fn write<'a>(
        &'a mut self,
        batch: &'a [Request],
    ) -> BoxFuture<'a, Result<Vec<Result<Appended>>>>;
}

/// Decides every append of a batch against the stream versions and the log
/// head read inside the transaction, in queue order, so later appends in the
/// batch see the earlier ones.
pub(crate) fn plan(
    batch: &[Request],
    mut head: u64,
    mut versions: HashMap<String, u64>,
    recorded_at: DateTime<Utc>,
) -> Vec<Result<Appended>> {
    batch
        .iter()
        .map(|request| {
            let actual = versions.get(&request.stream_id).copied().unwrap_or(0);
            if !request.expected.accepts(actual) {
                return Err(StoreError::WrongExpectedVersion {
                    stream_id: request.stream_id.clone(),
                    expected: request.expected,
                    actual,
                });
            }
            let appended = record_append(
                &request.stream_id,
                request.events.clone(),
                actual,
                head,
                recorded_at,
            );
            head = appended.position;
            versions.insert(request.stream_id.clone(), appended.version);
            Ok(appended)
        })
        .collect()
}

struct Job {
    request: Request,
    reply: oneshot::Sender<Result<Appended>>,
}

/// The queue in front of a store's writer task.
#[derive(Clone)]
pub(crate) struct GroupCommit {
    jobs: mpsc::Sender<Job>,
}

impl GroupCommit {
    /// Starts the writer task. `max_batch` appends at most share one
    /// transaction (1 turns group commit off). `head` is moved to the last
    /// committed position after every commit.
    pub(crate) fn spawn<W: BatchWriter>(
        writer: W,
        max_batch: usize,
        head: watch::Sender<u64>,
    ) -> Self {
        let (jobs, queue) = mpsc::channel(max_batch.max(1) * 4);
        tokio::spawn(run(writer, queue, max_batch.max(1), head));
        Self { jobs }
    }

    /// Queues an append and waits for its outcome.
    pub(crate) async fn append(&self, request: Request) -> Result<Appended> {
        let (reply, outcome) = oneshot::channel();
        self.jobs
            .send(Job { request, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        outcome.await.map_err(|_| StoreError::Closed)?
    }
}

async fn run<W: BatchWriter>(
    mut writer: W,
    mut queue: mpsc::Receiver<Job>,
    max_batch: usize,
    head: watch::Sender<u64>,
) {
    let mut jobs = Vec::with_capacity(max_batch);
    while queue.recv_many(&mut jobs, max_batch).await > 0 {
        if jobs.len() < max_batch {
            // Callers answered by the last commit are usually about to queue
            // their next append; letting them run first fills this batch
            // instead of leaving them for the next transaction.
            tokio::task::yield_now().await;
            while jobs.len() < max_batch {
                let Ok(job) = queue.try_recv() else { break };
                jobs.push(job);
            }
        }
        let (batch, replies): (Vec<Request>, Vec<_>) =
            jobs.drain(..).map(|job| (job.request, job.reply)).unzip();
        match writer.write(&batch).await {
            Ok(outcomes) => finish(&head, outcomes, replies),
            Err(error) if batch.len() == 1 => {
                tracing::warn!(%error, "append transaction failed");
                let _ = replies
                    .into_iter()
                    .next()
                    .map(|reply| reply.send(Err(error)));
            }
            Err(error) => {
                tracing::warn!(%error, appends = batch.len(), "batch transaction failed; retrying its appends one by one");
                for (request, reply) in batch.iter().zip(replies) {
                    let outcome = writer
                        .write(std::slice::from_ref(request))
                        .await
                        .and_then(|mut outcomes| outcomes.pop().ok_or(StoreError::Closed)?);
                    finish(&head, vec![outcome], vec![reply]);
                }
            }
        }
    }
}

/// Publishes the new head, then answers the callers, so a caller that reads
/// right after its append always finds the head at or past its events.
fn finish(
    head: &watch::Sender<u64>,
    outcomes: Vec<Result<Appended>>,
    replies: Vec<oneshot::Sender<Result<Appended>>>,
) {
    let last = outcomes
        .iter()
        .filter_map(|outcome| outcome.as_ref().ok().map(|appended| appended.position))
        .max();
    if let Some(position) = last {
        head.send_if_modified(|current| {
            let moved = position > *current;
            *current = (*current).max(position);
            moved
        });
    }
    for (outcome, reply) in outcomes.into_iter().zip(replies) {
        // A caller that stopped waiting still had its events committed.
        let _ = reply.send(outcome);
    }
}
