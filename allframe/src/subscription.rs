//! Subscriptions: catch up from the store, then follow it live.
//!
//! A subscription never receives events pushed by writers. It reads pages
//! of the global log after its cursor and, when it has read everything,
//! waits for the store's head signal (a `watch` channel, which never blocks
//! the writer and never queues) or a fallback poll for writers in other
//! processes. Because delivery always goes through `read_all`, catch-up and
//! live are the same code path: there is no handover where an event could
//! be skipped or repeated, and a subscriber that falls behind simply reads
//! more from the store.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use futures_util::stream::{self, BoxStream, StreamExt};
use tokio::sync::watch;

use crate::event::RecordedEvent;
use crate::store::{EventFilter, EventStore, StoreError};

/// How many events one read of a subscription fetches.
const PAGE_SIZE: usize = 512;
/// How often a subscription looks for events written by other processes,
/// which do not move this process's head signal.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// A live, ordered stream of recorded events from an [`EventStore`].
///
/// Yields `Ok(event)` in strictly ascending position. A read error is
/// yielded once as `Err` and the subscription then retries from the same
/// cursor, so a transient database failure loses nothing.
pub struct Subscription {
    inner: BoxStream<'static, Result<RecordedEvent, StoreError>>,
}

struct State {
    store: Arc<dyn EventStore>,
    head: watch::Receiver<u64>,
    filter: EventFilter,
    /// The position after which the next read starts.
    cursor: u64,
    buffer: VecDeque<RecordedEvent>,
    /// Whether the last read returned less than a page, so the next read
    /// should wait for new events first.
    caught_up: bool,
}

impl Subscription {
    pub(crate) fn new(store: Arc<dyn EventStore>, after: u64, filter: EventFilter) -> Self {
        let head = store.watch_head();
        let state = State {
            store,
            head,
            filter,
            cursor: after,
            buffer: VecDeque::new(),
            caught_up: false,
        };
        Self {
            inner: stream::unfold(state, next).boxed(),
        }
    }
}

async fn next(mut state: State) -> Option<(Result<RecordedEvent, StoreError>, State)> {
    loop {
        if let Some(event) = state.buffer.pop_front() {
            state.cursor = event.position;
            return Some((Ok(event), state));
        }
        if state.caught_up {
            // Either signal is only a hint to read again; a missed or
            // spurious wake-up costs one query, never an event.
            tokio::select! {
                changed = state.head.changed() => {
                    if changed.is_err() {
                        // The store is gone: poll only.
                        tokio::time::sleep(POLL_INTERVAL).await;
                    }
                }
                () = tokio::time::sleep(POLL_INTERVAL) => {}
            }
        }
        // Everything at or below this head was committed before the read
        // below starts, so the read is guaranteed to see it.
        let head = *state.head.borrow_and_update();
        let read = state
            .store
            .read_all(state.cursor, PAGE_SIZE, &state.filter)
            .await;
        match read {
            Ok(events) => {
                state.caught_up = events.len() < PAGE_SIZE;
                if events.is_empty() && !state.filter.is_all() {
                    // Nothing else matching up to `head`: skip the rows the
                    // filter rejected so later reads do not rescan them.
                    state.cursor = state.cursor.max(head);
                }
                state.buffer.extend(events);
            }
            Err(error) => {
                state.caught_up = true;
                return Some((Err(error), state));
            }
        }
    }
}

impl Stream for Subscription {
    type Item = Result<RecordedEvent, StoreError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}
