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
//!
//! An append may carry idempotency [`Completion`]s (one per command whose
//! events it writes): the writer reads the records of the batch's keys
//! inside the transaction (locked against claims), [`plan`] refuses an
//! append any of whose completions no longer holds its key (like a wrong
//! expected version: that append writes nothing, the rest of the batch
//! commits) and builds the responses of the accepted ones, and the writer
//! stores them in the same transaction as the events. Responses are built anew whenever
//! an append is planned again (the one-by-one retry gives it new
//! positions), so the stored response always describes the events that
//! committed.
//!
//! Backends whose only writing connection is the writer's (SQLite) also
//! queue their other idempotency operations ([`KeyOp`]) here; the operations
//! queued together run in one transaction of their own, ahead of the
//! appends queued with them (all of them were waiting at once, so any order
//! among them is one they could have happened in). Other writes, such as
//! the projections' batches, run on the writer's connection as work
//! ([`GroupCommit::run`]) between the batches of appends, so no writer of
//! the process ever waits for another's database lock.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;

use super::idempotency::{Holder, refused};
use super::{Appended, Claim, Completion, ExpectedVersion, Result, StoreError, record_append};
use crate::event::NewEvent;

/// One append waiting for the writer.
pub(crate) struct Request {
    pub(crate) stream_id: String,
    pub(crate) expected: ExpectedVersion,
    pub(crate) events: Vec<NewEvent>,
    /// The idempotency keys to complete in the same transaction.
    pub(crate) completions: Vec<Completion>,
}

/// An idempotency operation run by the writer (for backends that route
/// them through it).
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
pub(crate) enum KeyOp {
    /// Claim `key` (see [`super::IdempotencyStore::claim_idempotency_key`]).
    Claim {
        key: String,
        fingerprint: String,
        lease: Duration,
        retention: Duration,
    },
    /// Complete `key` without events, if `token` holds it.
    Complete {
        key: String,
        token: String,
        response: String,
    },
    /// Drop the in-flight claim of `key` if `token` holds it.
    Release { key: String, token: String },
    /// Delete the records older than `retention`.
    Purge { retention: Duration },
}

/// The result of a [`KeyOp`].
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
pub(crate) enum KeyOutcome {
    /// The answer to a claim.
    Claimed(Claim),
    /// A completion or release was written (a release whose token did
    /// not hold the key does nothing and is done too).
    Done,
    /// A completion was refused: its token does not hold the key.
    Lost,
    /// How many records a purge deleted.
    Purged(u64),
}

/// What a backend does with one batch: a single transaction.
pub(crate) trait BatchWriter: Send + 'static {
    /// The connection the writer writes on.
    type Connection: Send + 'static;

    /// That connection, for work queued with [`GroupCommit::run`].
    fn connection(&mut self) -> &mut Self::Connection;

    /// Writes the accepted appends of `batch` in one transaction (checking
    /// each with [`plan`]) and returns each append's outcome in order. An
    /// `Err` means the transaction failed and nothing was written.
    fn write<'a>(
        &'a mut self,
        batch: &'a [Request],
    ) -> BoxFuture<'a, Result<Vec<Result<Appended>>>>;

    /// Runs idempotency operations in one transaction and returns their
    /// outcomes in order; an `Err` means nothing was written. Only backends
    /// that queue [`KeyOp`]s (SQLite) override this; the others run them
    /// elsewhere and never queue one.
    fn write_keys<'a>(&'a mut self, ops: &'a [KeyOp]) -> BoxFuture<'a, Result<Vec<KeyOutcome>>> {
        let _ = ops;
        Box::pin(async {
            Err(StoreError::Backend(
                "this store does not run idempotency operations on its writer".into(),
            ))
        })
    }

    /// Closes the writer's connection, cleanly, at shutdown.
    fn close(self) -> BoxFuture<'static, ()>
    where
        Self: Sized,
    {
        Box::pin(async move { drop(self) })
    }

    /// Called after a failed transaction: a writer whose connection broke
    /// replaces it, so one dropped connection does not fail every later
    /// append.
    fn recover(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// One accepted completion: the record of `key` becomes completed with
/// `response` — the record in flight with the holder's token when the
/// batch read it, or a new record when the holder is nobody (the batch
/// read none).
pub(crate) struct Completed<'b> {
    pub(crate) key: &'b str,
    pub(crate) holder: &'b Holder,
    pub(crate) response: String,
}

/// The decisions for one batch: see [`plan`].
pub(crate) struct Plan<'b> {
    /// Each append's outcome, in batch order.
    pub(crate) outcomes: Vec<Result<Appended>>,
    /// The accepted appends' completions, in batch order, each key once (a
    /// completed record is final, so a later completion of the same key in
    /// the batch is refused).
    pub(crate) completions: Vec<Completed<'b>>,
}

/// A completion of a claimed key as a writer stores it: key, token,
/// response.
pub(crate) type ClaimedRow<'p> = (&'p str, &'p str, &'p [u8]);
/// A completion of a key nobody claimed as a writer stores it: key,
/// fingerprint, response.
pub(crate) type UnclaimedRow<'p> = (&'p str, &'p [u8], &'p [u8]);

impl Plan<'_> {
    /// The completions to write, by kind: records to mark completed, and
    /// records to create completed.
    pub(crate) fn completion_rows(&self) -> (Vec<ClaimedRow<'_>>, Vec<UnclaimedRow<'_>>) {
        let (mut claimed, mut unclaimed) = (Vec::new(), Vec::new());
        for c in &self.completions {
            match c.holder {
                Holder::Claim(token) => {
                    claimed.push((c.key, token.as_str(), c.response.as_bytes()))
                }
                Holder::Nobody(fingerprint) => {
                    unclaimed.push((c.key, fingerprint.as_bytes(), c.response.as_bytes()))
                }
            }
        }
        (claimed, unclaimed)
    }
}

/// The distinct idempotency keys the completions of a batch complete, whose
/// records the writer reads (and locks) before planning.
pub(crate) fn completion_keys(batch: &[Request]) -> Vec<&str> {
    let mut seen = HashSet::new();
    batch
        .iter()
        .flat_map(|request| request.completions.iter().map(Completion::key))
        .filter(|key| seen.insert(*key))
        .collect()
}

/// Decides every append of a batch against the stream versions, the log
/// head and the idempotency records of the batch's [`completion_keys`]
/// (`records`: key → the token it is in flight with, `None` when it is not
/// in flight; keys without a record are absent) read inside the
/// transaction, in queue order, so later appends in the batch see the
/// earlier ones, and builds the responses of their completions. An append
/// with a completion that does not hold its key ([`Completion::holds`]),
/// or with two completions of one key, is refused with [`StoreError::IdempotencyKeyLost`] before its expected
/// version is checked; one whose response builder fails is refused too.
/// Refused appends use up no position.
pub(crate) fn plan<'b>(
    batch: &'b [Request],
    mut head: u64,
    mut versions: HashMap<String, u64>,
    mut records: HashMap<String, Option<String>>,
    recorded_at: DateTime<Utc>,
) -> Plan<'b> {
    let mut completions = Vec::new();
    let outcomes = batch
        .iter()
        .map(|request| {
            if let Some(lost) = refused(&request.completions, &records) {
                return Err(lost);
            }
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
            let responses: Vec<String> = request
                .completions
                .iter()
                .map(|completion| completion.respond(&appended))
                .collect::<Result<_>>()?;
            for (completion, response) in request.completions.iter().zip(responses) {
                // Completed now: later completions of the key are refused.
                records.insert(completion.key().to_owned(), None);
                completions.push(Completed {
                    key: completion.key(),
                    holder: completion.holder(),
                    response,
                });
            }
            head = appended.position;
            versions.insert(request.stream_id.clone(), appended.version);
            Ok(appended)
        })
        .collect();
    Plan {
        outcomes,
        completions,
    }
}

/// Work run on the writer's connection: it begins, commits and answers
/// for itself.
type Work<C> = Box<dyn for<'c> FnOnce(&'c mut C) -> BoxFuture<'c, ()> + Send>;

enum Job<C> {
    Append {
        request: Request,
        reply: oneshot::Sender<Result<Appended>>,
    },
    Key {
        op: KeyOp,
        reply: oneshot::Sender<Result<KeyOutcome>>,
    },
    Run(Work<C>),
    /// Write what came before, close the connection and stop.
    Close {
        reply: oneshot::Sender<()>,
    },
}

/// The queue in front of a store's writer task, whose connection is a `C`.
pub(crate) struct GroupCommit<C> {
    jobs: mpsc::Sender<Job<C>>,
}

impl<C> Clone for GroupCommit<C> {
    fn clone(&self) -> Self {
        Self {
            jobs: self.jobs.clone(),
        }
    }
}

impl<C: Send + 'static> GroupCommit<C> {
    /// Starts the writer task. `max_batch` appends at most share one
    /// transaction (1 turns group commit off). `head` is moved to the last
    /// committed position after every commit.
    pub(crate) fn spawn<W: BatchWriter<Connection = C>>(
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
            .send(Job::Append { request, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        outcome.await.map_err(|_| StoreError::Closed)?
    }

    /// Lets the writer write every job queued before this call, close its
    /// connection and stop; later jobs fail with [`StoreError::Closed`].
    pub(crate) async fn close(&self) {
        let (reply, closed) = oneshot::channel();
        if self.jobs.send(Job::Close { reply }).await.is_ok() {
            // An error: the task has stopped already.
            let _ = closed.await;
        }
    }

    /// Runs `work` on the writer's connection, after the jobs queued
    /// before it, and waits for its outcome. `work` begins and commits its
    /// own transaction; while it runs, nothing else of this store writes.
    pub(crate) async fn run<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut C) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        let (reply, outcome) = oneshot::channel();
        let work: Work<C> = Box::new(move |connection| {
            Box::pin(async move {
                // A caller that stopped waiting has nothing to be told.
                let _ = reply.send(work(connection).await);
            })
        });
        self.jobs
            .send(Job::Run(work))
            .await
            .map_err(|_| StoreError::Closed)?;
        outcome.await.map_err(|_| StoreError::Closed)?
    }

    /// Queues an idempotency operation and waits for its outcome.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) async fn key_op(&self, op: KeyOp) -> Result<KeyOutcome> {
        let (reply, outcome) = oneshot::channel();
        self.jobs
            .send(Job::Key { op, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        outcome.await.map_err(|_| StoreError::Closed)?
    }
}

async fn run<W: BatchWriter>(
    mut writer: W,
    mut queue: mpsc::Receiver<Job<W::Connection>>,
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
        let (mut batch, mut replies) = (Vec::new(), Vec::new());
        let (mut ops, mut op_replies) = (Vec::new(), Vec::new());
        let mut works = Vec::new();
        let mut closing = None;
        for job in jobs.drain(..) {
            if closing.is_some() {
                // Queued after the close: dropped, so its caller gets
                // `StoreError::Closed`.
                continue;
            }
            match job {
                Job::Close { reply } => closing = Some(reply),
                Job::Append { request, reply } => {
                    batch.push(request);
                    replies.push(reply);
                }
                Job::Key { op, reply } => {
                    ops.push(op);
                    op_replies.push(reply);
                }
                Job::Run(work) => works.push(work),
            }
        }
        if !ops.is_empty() {
            run_keys(&mut writer, &ops, op_replies).await;
        }
        for work in works {
            work(writer.connection()).await;
        }
        if !batch.is_empty() {
            write(&mut writer, &batch, replies, &head).await;
        }
        if let Some(reply) = closing {
            writer.close().await;
            let _ = reply.send(());
            return;
        }
    }
}

/// Logs a committed batch (at `debug`, target `allframe::store`): how many
/// appends and events it wrote, and the round trips its transaction took
/// (`BEGIN` and `COMMIT` included) — a handful, however many appends
/// share it.
pub(crate) fn log_batch(appends: usize, events: usize, round_trips: u32) {
    tracing::debug!(
        target: "allframe::store",
        appends,
        events,
        round_trips,
        "group commit"
    );
}

/// Writes one batch of appends and answers their callers.
async fn write<W: BatchWriter>(
    writer: &mut W,
    batch: &[Request],
    replies: Vec<oneshot::Sender<Result<Appended>>>,
    head: &watch::Sender<u64>,
) {
    let started = std::time::Instant::now();
    let written = writer
        .write(batch)
        .instrument(tracing::debug_span!(target: "allframe::store", "group_commit"))
        .await;
    crate::metrics::batch(batch.len(), started.elapsed());
    if written.is_err() {
        writer.recover().await;
    }
    match written {
        Ok(outcomes) => finish(head, outcomes, replies),
        // The connection broke while committing: the batch may or may
        // not be in the log, and retrying an append of it could write
        // it twice. Its callers must find out by reading.
        Err(error @ StoreError::CommitUnknown(_)) => {
            tracing::error!(%error, appends = batch.len(), "lost the connection while committing a batch");
            let message = error.to_string();
            for reply in replies {
                let _ = reply.send(Err(StoreError::CommitUnknown(message.clone().into())));
            }
        }
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
                finish(head, vec![outcome], vec![reply]);
            }
        }
    }
}

/// Runs the queued idempotency operations in one transaction; if it fails,
/// each runs in its own so each caller gets its own answer.
async fn run_keys<W: BatchWriter>(
    writer: &mut W,
    ops: &[KeyOp],
    replies: Vec<oneshot::Sender<Result<KeyOutcome>>>,
) {
    match writer.write_keys(ops).await {
        Ok(outcomes) => {
            for (outcome, reply) in outcomes.into_iter().zip(replies) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(error) if ops.len() == 1 => {
            tracing::warn!(%error, "idempotency transaction failed");
            let _ = replies
                .into_iter()
                .next()
                .map(|reply| reply.send(Err(error)));
        }
        Err(error) => {
            tracing::warn!(%error, operations = ops.len(), "idempotency transaction failed; retrying its operations one by one");
            for (op, reply) in ops.iter().zip(replies) {
                let outcome = writer
                    .write_keys(std::slice::from_ref(op))
                    .await
                    .and_then(|mut outcomes| outcomes.pop().ok_or(StoreError::Closed));
                let _ = reply.send(outcome);
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
        advance_head(head, position);
    }
    for (outcome, reply) in outcomes.into_iter().zip(replies) {
        // A caller that stopped waiting still had its events committed.
        let _ = reply.send(outcome);
    }
}

/// Moves `head` to `position` if that is ahead of it (heads only grow;
/// a late report of an older one changes nothing and wakes nobody).
pub(crate) fn advance_head(head: &watch::Sender<u64>, position: u64) {
    head.send_if_modified(|current| {
        let moved = position > *current;
        *current = (*current).max(position);
        moved
    });
}
