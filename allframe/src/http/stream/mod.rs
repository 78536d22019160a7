//! Live event streams, `GET /events/ws` ([`ws`]) and
//! `GET /events/sse` ([`sse`]): their settings, and the state both
//! share — the connection limit, the shutdown signal and the fan-out
//! [`Hub`] — with the checks every connection passes before it is
//! accepted.

mod fanout;
pub(crate) mod params;
pub(super) mod sse;
pub(super) mod ws;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::auth::guards::ReadGuards;
use crate::auth::{Denied, Principal};
use crate::event::TodaysShapes;
use crate::http::errors::{self, RequestError};
use crate::http::kinds;
use crate::http::problem::Problem;
use crate::store::{EventStore, StoreError};
use fanout::{Follower, Hub};
use params::{ParamError, StreamParams};

/// What a refused connection is told to wait before trying again.
const RETRY_AFTER_SECONDS: &str = "5";

/// Settings of the live event streams (`GET /events/ws`, `GET /events/sse`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EventStreamConfig {
    /// Most WebSocket and SSE connections open at once, both kinds counted
    /// together (default 1024). More are refused with 503 and `Retry-After`.
    pub max_connections: usize,
    /// How often WebSocket clients are pinged and idle SSE responses get a
    /// keep-alive comment (default 15 s; at least 1 ms).
    pub ping_interval: Duration,
    /// A WebSocket client that sends nothing, not even a pong, for this long
    /// is closed with 1008 (default 60 s).
    pub idle_timeout: Duration,
    /// A client whose connection accepts no data for this long has stopped
    /// reading: a WebSocket is closed with 1008, an SSE response ends
    /// (default 10 s).
    pub write_timeout: Duration,
    /// How many new events are kept for connections that are behind; one
    /// further behind reads the missed events from the store (default 1024).
    pub buffer: usize,
}

impl Default for EventStreamConfig {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            ping_interval: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
            buffer: 1024,
        }
    }
}

impl EventStreamConfig {
    /// Sets the connection limit.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max;
        self
    }

    /// Sets the ping and keep-alive interval.
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval;
        self
    }

    /// Sets how long a silent WebSocket client is kept.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets how long a write may wait for a client that does not read.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// Sets how many events are kept for connections that are behind.
    pub fn buffer(mut self, events: usize) -> Self {
        self.buffer = events;
        self
    }
}

/// The state of the event stream routes.
pub(crate) struct EventStreams {
    pub(crate) config: EventStreamConfig,
    store: Arc<dyn EventStore>,
    hub: Arc<Hub>,
    /// One permit per open connection, held until it has closed.
    permits: Arc<Semaphore>,
    max_connections: u32,
    shutdown: watch::Sender<bool>,
    /// Holds the streams' authorization hook, if any.
    guards: ReadGuards,
}

/// An accepted connection: its slot, its events and the shutdown signal.
pub(crate) struct Ticket {
    pub(crate) follower: Follower,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// The connection's slot, given back when it is dropped.
    pub(crate) permit: OwnedSemaphorePermit,
}

impl EventStreams {
    /// The streams of `store`'s events, each sent in today's shape
    /// (`shapes`).
    pub(crate) fn new(
        store: Arc<dyn EventStore>,
        shapes: TodaysShapes,
        mut config: EventStreamConfig,
        guards: ReadGuards,
    ) -> Arc<Self> {
        // Timers cannot tick at a zero interval; the smallest one stands in.
        config.ping_interval = config.ping_interval.max(Duration::from_millis(1));
        let max_connections = u32::try_from(config.max_connections).unwrap_or(u32::MAX);
        let (shutdown, stop) = watch::channel(false);
        Arc::new(Self {
            hub: Arc::new(Hub::new(
                store.clone(),
                Arc::new(shapes),
                config.buffer,
                stop,
            )),
            store,
            permits: Arc::new(Semaphore::new(max_connections as usize)),
            max_connections,
            shutdown,
            config,
            guards,
        })
    }

    /// Accepts a connection of `principal` that starts after `after`
    /// (absent: after the current head) or says why not: 403 when the
    /// streams' authorization hook refuses it, 503 while shutting down,
    /// when full or when the store does not answer.
    pub(crate) async fn admit(
        &self,
        params: &StreamParams,
        after: Option<u64>,
        principal: Option<Principal>,
    ) -> Result<Ticket, Response> {
        match self.guards.check_events(principal, params.filter()).await {
            Ok(()) => {}
            Err(Denied::Forbidden(reason)) => {
                return Err(Problem::of(kinds::FORBIDDEN, reason).into_response());
            }
            Err(Denied::Store(error)) => return Err(store_unavailable(error)),
        }
        if *self.shutdown.borrow() {
            return Err(unavailable(RequestError::ShuttingDown.into()));
        }
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            return Err(unavailable(
                RequestError::TooManyConnections(self.max_connections as usize).into(),
            ));
        };
        let after = match after {
            Some(after) => after,
            None => self
                .store
                .head_position()
                .await
                .map_err(store_unavailable)?,
        };
        let follower = Follower::start(&self.hub, params.filter(), after)
            .await
            .map_err(store_unavailable)?;
        Ok(Ticket {
            follower,
            shutdown: self.shutdown.subscribe(),
            permit,
        })
    }

    /// Tells every connection to close and waits until they have, or until
    /// they have had twice the write timeout to flush their goodbyes.
    pub(crate) async fn shutdown(&self) {
        self.shutdown.send_replace(true);
        // Every open connection holds a permit: all of them back means
        // every connection has closed.
        let wait = self.config.write_timeout * 2 + Duration::from_secs(1);
        let all_closed = self.permits.acquire_many(self.max_connections);
        if tokio::time::timeout(wait, all_closed).await.is_err() {
            tracing::warn!("event streams: some connections were still closing at shutdown");
        }
    }
}

impl EventStreams {
    /// How many connections are open.
    pub(crate) fn open(&self) -> usize {
        self.max_connections as usize - self.permits.available_permits()
    }
}

impl std::fmt::Debug for EventStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStreams")
            .field("config", &self.config)
            .field("open", &self.open())
            .finish_non_exhaustive()
    }
}

/// The parameters of a request, or the 400 that refuses it.
pub(crate) fn params(
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<StreamParams, Problem> {
    let Query(pairs) = query.map_err(|rejection| ParamError::Malformed(rejection.body_text()))?;
    Ok(StreamParams::parse(&pairs)?)
}

/// The 503 for a store that does not answer, logged.
fn store_unavailable(error: StoreError) -> Response {
    unavailable(errors::store_unavailable("event stream", &error))
}

/// A 503 problem with `Retry-After`.
fn unavailable(problem: Problem) -> Response {
    let mut response = problem.into_response();
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_static(RETRY_AFTER_SECONDS),
    );
    response
}
