//! The shared feed behind `GET /events/ws` and `GET /events/sse`.
//!
//! One [`Hub`] task follows the store through a [`Subscription`] and
//! serializes each event once into a [`Frame`], which a `broadcast` channel
//! hands to every connection as an `Arc`. Each connection has a
//! [`Follower`] that filters that feed, replays history from the store, and
//! reads the store again whenever it falls behind the channel: `broadcast`
//! drops the oldest frames for a slow receiver (`Lagged`), so it is only
//! ever trusted from the moment a follower subscribes, and everything
//! before that moment comes from `read_all`. Writers never wait for any of
//! this; a slow connection costs only its own store reads.
//!
//! [`Subscription`]: crate::Subscription

use std::collections::VecDeque;
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use futures_util::StreamExt;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{Mutex, broadcast, watch};

use crate::event::{RecordedEvent, TodaysShapes};
use crate::store::{EventFilter, EventStore, StoreError};

/// How many events one catch-up read fetches.
const PAGE_SIZE: usize = 256;

/// An event with its wire form, serialized once for every connection.
#[derive(Debug)]
pub(crate) struct Frame {
    /// The event, for filtering and the SSE `id`.
    pub(crate) event: RecordedEvent,
    /// The event as JSON, exactly `RecordedEvent`'s `Serialize` output of
    /// it in today's shape.
    pub(crate) json: Utf8Bytes,
}

impl Frame {
    /// The frame of `event`, sent in today's shape (`shapes`); filters and
    /// the SSE `id` go by the event as stored.
    fn new(event: RecordedEvent, shapes: &TodaysShapes) -> Arc<Self> {
        let json = match shapes.of(&event) {
            Some(today) => serde_json::to_string(&today),
            None => serde_json::to_string(&event),
        }
        .expect("a recorded event always serializes");
        Arc::new(Self {
            event,
            json: json.into(),
        })
    }
}

/// Why a follower cannot go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum FollowError {
    /// A catch-up read failed.
    #[error("reading the event store failed: {0}")]
    Store(#[from] StoreError),
    /// The hub stopped: the app is shutting down.
    #[error("the event feed has stopped")]
    Stopped,
}

/// The one task that reads new events for every connection, started by
/// the first connection at the store's head: where any connection starts
/// reading is its own business, served by its own catch-up reads.
pub(crate) struct Hub {
    store: Arc<dyn EventStore>,
    shapes: Arc<TodaysShapes>,
    capacity: usize,
    /// Ends the task: set on shutdown, and dropped with the app.
    stop: watch::Receiver<bool>,
    /// The task holds the only strong sender, so its receivers see the
    /// channel close when it ends.
    sender: Mutex<Option<broadcast::WeakSender<Arc<Frame>>>>,
}

impl Hub {
    /// A hub that keeps `capacity` frames for receivers that fall behind.
    pub(crate) fn new(
        store: Arc<dyn EventStore>,
        shapes: Arc<TodaysShapes>,
        capacity: usize,
        stop: watch::Receiver<bool>,
    ) -> Self {
        Self {
            store,
            shapes,
            capacity: capacity.max(1),
            stop,
            sender: Mutex::new(None),
        }
    }

    /// A receiver of every frame the hub sends from now on; a closed one
    /// once the hub has stopped. The first call starts the task after the
    /// store's current head, so it only ever reads new events.
    async fn subscribe(&self) -> Result<broadcast::Receiver<Arc<Frame>>, StoreError> {
        let mut weak = self.sender.lock().await;
        if let Some(sender) = weak.as_ref().and_then(broadcast::WeakSender::upgrade) {
            return Ok(sender.subscribe());
        }
        let (sender, receiver) = broadcast::channel(self.capacity);
        if !*self.stop.borrow() {
            let head = self.store.head_position().await?;
            *weak = Some(sender.downgrade());
            let events = self.store.subscribe(head, EventFilter::all());
            tokio::spawn(feed(events, sender, self.shapes.clone(), self.stop.clone()));
        }
        Ok(receiver)
    }
}

async fn feed(
    mut events: crate::Subscription,
    sender: broadcast::Sender<Arc<Frame>>,
    shapes: Arc<TodaysShapes>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            // An error means the app was dropped: stop as well.
            _ = stop.wait_for(|stopped| *stopped) => return,
            next = events.next() => match next {
                // No receiver right now is fine: followers read the store.
                Some(Ok(event)) => drop(sender.send(Frame::new(event, &shapes))),
                // The subscription retries from the same position by itself.
                Some(Err(error)) => tracing::warn!(%error, "event stream feed: store read failed"),
                None => return,
            },
        }
    }
}

/// One connection's ordered view of the log: events after its cursor that
/// pass its filter, with no gap and no duplicate.
pub(crate) struct Follower {
    store: Arc<dyn EventStore>,
    shapes: Arc<TodaysShapes>,
    filter: EventFilter,
    /// The position of the last event handed out (or the start position).
    cursor: u64,
    live: broadcast::Receiver<Arc<Frame>>,
    backlog: VecDeque<Arc<Frame>>,
    /// Whether frames still come from the store rather than the hub.
    catching_up: bool,
    /// How often the channel dropped frames for this follower.
    lags: u64,
}

impl Follower {
    /// Follows the log after position `after` with `filter`; fails when
    /// the hub must start and the store does not answer.
    pub(crate) async fn start(
        hub: &Hub,
        filter: EventFilter,
        after: u64,
    ) -> Result<Self, StoreError> {
        // Subscribing before the first read is what makes the handover
        // safe: every frame the hub sent before now was read from the store
        // by the hub, so it is committed and the catch-up reads will see it.
        let live = hub.subscribe().await?;
        Ok(Self {
            store: hub.store.clone(),
            shapes: hub.shapes.clone(),
            filter,
            cursor: after,
            live,
            backlog: VecDeque::new(),
            catching_up: true,
            lags: 0,
        })
    }

    /// The next event. Cancel-safe: state only changes after an await
    /// completes, so it can be raced in `select!`.
    pub(crate) async fn next(&mut self) -> Result<Arc<Frame>, FollowError> {
        loop {
            if let Some(frame) = self.try_next() {
                return Ok(frame);
            }
            if self.catching_up {
                let page = self
                    .store
                    .read_all(self.cursor, PAGE_SIZE, &self.filter)
                    .await?;
                // A short page read everything committed when it started,
                // which includes everything the hub sent before we
                // subscribed: from here on the live feed has the rest.
                self.catching_up = page.len() == PAGE_SIZE;
                let shapes = &self.shapes;
                self.backlog
                    .extend(page.into_iter().map(|event| Frame::new(event, shapes)));
                continue;
            }
            match self.live.recv().await {
                Ok(frame) => {
                    if self.wanted(&frame) {
                        self.cursor = frame.event.position;
                        return Ok(frame);
                    }
                }
                Err(RecvError::Lagged(skipped)) => self.fell_behind(skipped),
                Err(RecvError::Closed) => return Err(FollowError::Stopped),
            }
        }
    }

    /// The next event if one is ready without waiting, so a connection can
    /// write several frames and flush once.
    pub(crate) fn try_next(&mut self) -> Option<Arc<Frame>> {
        if let Some(frame) = self.backlog.pop_front() {
            self.cursor = frame.event.position;
            return Some(frame);
        }
        while !self.catching_up {
            match self.live.try_recv() {
                Ok(frame) if self.wanted(&frame) => {
                    self.cursor = frame.event.position;
                    return Some(frame);
                }
                Ok(_) => {}
                Err(TryRecvError::Lagged(skipped)) => self.fell_behind(skipped),
                Err(TryRecvError::Empty | TryRecvError::Closed) => return None,
            }
        }
        None
    }

    /// Live frames at or below the cursor were already read from the store.
    fn wanted(&self, frame: &Frame) -> bool {
        frame.event.position > self.cursor && self.filter.matches(&frame.event)
    }

    /// The channel dropped frames this follower had not read: subscribe
    /// afresh and read the missed events from the store, never skip them.
    fn fell_behind(&mut self, skipped: u64) {
        tracing::debug!(
            skipped,
            cursor = self.cursor,
            "event stream connection fell behind; catching up from the store"
        );
        self.lags += 1;
        // A fresh receiver starts at the channel's newest frame; the store
        // holds everything before it.
        self.live = self.live.resubscribe();
        self.catching_up = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use crate::{ExpectedVersion, NewEvent};

    async fn append(store: &MemoryStore, stream: &str, count: usize) {
        for _ in 0..count {
            let event = NewEvent::new("Ticked", &serde_json::json!({}));
            store
                .append(stream, ExpectedVersion::Any, vec![event])
                .await
                .unwrap();
        }
    }

    fn hub(store: &MemoryStore, capacity: usize) -> (watch::Sender<bool>, Arc<Hub>) {
        let (stop, stopped) = watch::channel(false);
        let shapes = Arc::new(TodaysShapes::default());
        (
            stop,
            Arc::new(Hub::new(store.shared(), shapes, capacity, stopped)),
        )
    }

    #[tokio::test]
    async fn a_follower_that_falls_behind_reads_the_store_instead_of_skipping() {
        let store = MemoryStore::new();
        let (_stop, hub) = hub(&store, 2);
        let mut follower = Follower::start(&hub, EventFilter::all(), 0).await.unwrap();
        append(&store, "tick-1", 1).await;
        assert_eq!(follower.next().await.unwrap().event.position, 1);
        assert!(!follower.catching_up, "caught up, so now following the hub");
        // Wait until the hub has sent 100 more frames into a channel that
        // keeps 2, while the follower reads nothing.
        let mut watcher = hub.subscribe().await.unwrap();
        append(&store, "tick-1", 100).await;
        while !matches!(watcher.recv().await, Ok(frame) if frame.event.position == 101) {}
        for expected in 2..=101 {
            assert_eq!(follower.next().await.unwrap().event.position, expected);
        }
        assert!(follower.lags >= 1, "the channel dropped frames");
        append(&store, "tick-1", 1).await;
        assert_eq!(follower.next().await.unwrap().event.position, 102);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn followers_joining_during_writes_get_every_event_once_in_order() {
        let store = MemoryStore::new();
        let (_stop, hub) = hub(&store, 8);
        let writers: Vec<_> = (0..4)
            .map(|writer| {
                let store = store.clone();
                tokio::spawn(async move { append(&store, &format!("w-{writer}"), 200).await })
            })
            .collect();
        let mut readers = Vec::new();
        for joined in 0..6u64 {
            let mut follower = Follower::start(&hub, EventFilter::all(), 0).await.unwrap();
            readers.push(tokio::spawn(async move {
                let mut positions = Vec::new();
                while positions.len() < 800 {
                    positions.push(follower.next().await.unwrap().event.position);
                }
                positions
            }));
            tokio::time::sleep(std::time::Duration::from_millis(joined)).await;
        }
        for writer in writers {
            writer.await.unwrap();
        }
        for reader in readers {
            assert_eq!(reader.await.unwrap(), (1..=800).collect::<Vec<u64>>());
        }
    }

    #[tokio::test]
    async fn filters_apply_to_live_frames() {
        let store = MemoryStore::new();
        let (_stop, hub) = hub(&store, 16);
        let mut follower = Follower::start(&hub, EventFilter::all().category("b"), 0)
            .await
            .unwrap();
        append(&store, "a-1", 3).await;
        append(&store, "b-1", 1).await;
        let frame = follower.next().await.unwrap();
        assert_eq!(
            (frame.event.position, frame.event.stream_id.as_str()),
            (4, "b-1")
        );
        let wire: serde_json::Value = serde_json::from_str(&frame.json).unwrap();
        assert_eq!(wire, serde_json::to_value(&frame.event).unwrap());
    }

    #[tokio::test]
    async fn stopping_the_hub_ends_its_followers() {
        let store = MemoryStore::new();
        let (stop, hub) = hub(&store, 16);
        let mut follower = Follower::start(&hub, EventFilter::all(), 0).await.unwrap();
        append(&store, "a-1", 1).await;
        follower.next().await.unwrap();
        stop.send_replace(true);
        assert!(matches!(follower.next().await, Err(FollowError::Stopped)));
        let mut late = Follower::start(&hub, EventFilter::all(), 1).await.unwrap();
        assert!(matches!(late.next().await, Err(FollowError::Stopped)));
    }
}
