//! `GET /events/ws`: recorded events over a WebSocket, one text frame per
//! event (the `RecordedEvent` JSON), in ascending position.
//!
//! Each connection is one task that writes what its [`Follower`] yields,
//! pings the client and listens to it. Close codes, chosen so a client
//! knows whether to come back:
//!
//! - **1000** normal: the client closed first; its close frame is echoed
//!   and flushed before the socket closes;
//! - **1001** going away: the server is shutting down;
//! - **1008** policy violation: the client stopped reading (a write stayed
//!   blocked for `write_timeout`) or went silent (no frame, not even a
//!   pong, for `idle_timeout`);
//! - **1009** message too big: the client sent a message over 64 KiB;
//! - **1011** internal error: the event store failed (logged).
//!
//! In every case the client resumes with `after` = the last position it
//! received, and gets exactly the events it missed.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use futures_util::SinkExt;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior, timeout};

use super::fanout::{FollowError, Follower};
use super::{EventStreamConfig, EventStreams};
use crate::auth::Principal;
use crate::http::errors::RequestError;
use crate::http::problem::Problem;

/// Close code for a server that is going away.
pub(crate) const GOING_AWAY: u16 = 1001;
/// Close code for a client that stopped reading or went silent.
pub(crate) const POLICY_VIOLATION: u16 = 1008;
/// Close code for a client message over the size limit.
pub(crate) const MESSAGE_TOO_BIG: u16 = 1009;
/// Close code for a failing event store.
pub(crate) const INTERNAL_ERROR: u16 = 1011;

/// Most events written before one flush: a connection that is behind
/// catches up in large writes, one that is current writes each at once.
const BATCH: usize = 64;
/// Clients send only pongs and a close frame: a small read buffer, and a
/// small limit on what they may send.
const READ_BUFFER: usize = 4 * 1024;
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// How long a close frame waits for the client's reply. The client has the
/// close frame already; this only keeps a client that never answers from
/// holding up a shutdown.
const CLOSE_REPLY_WAIT: Duration = Duration::from_secs(2);

/// The route handler: checks everything before upgrading.
pub(crate) async fn stream(
    State(streams): State<Arc<EventStreams>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    principal: Option<Principal>,
) -> Response {
    let params = match super::params(query) {
        Ok(params) => params,
        Err(problem) => return problem.into_response(),
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            let error = RequestError::NotAWebSocketRequest {
                status: rejection.status().as_u16(),
                detail: rejection.body_text(),
            };
            return Problem::from(error).into_response();
        }
    };
    let ticket = match streams.admit(&params, params.after, principal).await {
        Ok(ticket) => ticket,
        Err(refusal) => return refusal,
    };
    upgrade
        .read_buffer_size(READ_BUFFER)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_failed_upgrade(
            |error| tracing::debug!(%error, "event stream: WebSocket upgrade failed"),
        )
        .on_upgrade(move |mut socket| async move {
            let super::Ticket {
                mut follower,
                mut shutdown,
                permit,
            } = ticket;
            let end = run(&mut socket, &mut follower, &mut shutdown, &streams.config).await;
            close(socket, end, &streams.config).await;
            drop(permit);
        })
}

/// Why a connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The connection failed or ended without a close frame.
    ClientLeft,
    /// The client sent a close frame, which the socket has queued its echo of.
    ClientClosed,
    TooBig,
    GoingAway,
    TooSlow,
    Idle,
    StoreFailed,
}

impl End {
    /// The reason as metrics name it.
    fn label(&self) -> &'static str {
        match self {
            Self::ClientLeft => "client-left",
            Self::ClientClosed => "client-closed",
            Self::TooBig => "too-big",
            Self::GoingAway => "shutdown",
            Self::TooSlow => "too-slow",
            Self::Idle => "idle",
            Self::StoreFailed => "store-failed",
        }
    }
}

async fn run(
    socket: &mut WebSocket,
    follower: &mut Follower,
    shutdown: &mut watch::Receiver<bool>,
    config: &EventStreamConfig,
) -> End {
    let mut ping =
        tokio::time::interval_at(Instant::now() + config.ping_interval, config.ping_interval);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut heard = Instant::now();
    loop {
        // Every branch is cancel-safe; shutdown wins over everything.
        let message = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stopping| *stopping) => return End::GoingAway,
            received = socket.recv() => match received {
                Some(Ok(Message::Close(_))) => return End::ClientClosed,
                Some(Err(error)) => return read_failed(error),
                None => return End::ClientLeft,
                // Anything the client sends proves it is there; the stream
                // has nothing to say back to it.
                Some(Ok(_)) => {
                    heard = Instant::now();
                    continue;
                }
            },
            () = tokio::time::sleep_until(heard + config.idle_timeout) => return End::Idle,
            _ = ping.tick() => Message::Ping(Bytes::new()),
            next = follower.next() => match next {
                Ok(frame) => Message::Text(frame.json.clone()),
                Err(FollowError::Stopped) => return End::GoingAway,
                Err(error) => {
                    tracing::error!(%error, "event stream: closing a WebSocket");
                    return End::StoreFailed;
                }
            },
        };
        let batch = matches!(message, Message::Text(_));
        let write = async {
            socket.feed(message).await?;
            if batch {
                for _ in 1..BATCH {
                    let Some(frame) = follower.try_next() else {
                        break;
                    };
                    socket.feed(Message::Text(frame.json.clone())).await?;
                }
            }
            socket.flush().await
        };
        tokio::select! {
            biased;
            _ = shutdown.wait_for(|stopping| *stopping) => return End::GoingAway,
            written = timeout(config.write_timeout, write) => match written {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return End::ClientLeft,
                Err(_) => return End::TooSlow,
            },
        }
    }
}

/// A failed read: a message over the limit, or a connection gone.
fn read_failed(error: axum::Error) -> End {
    let capacity = error
        .into_inner()
        .downcast::<tungstenite::Error>()
        .is_ok_and(|error| matches!(*error, tungstenite::Error::Capacity(_)));
    if capacity {
        End::TooBig
    } else {
        End::ClientLeft
    }
}

/// Sends the close frame `end` calls for and waits, bounded, for the
/// client's reply.
async fn close(mut socket: WebSocket, end: End, config: &EventStreamConfig) {
    crate::metrics::stream_closed("ws", end.label());
    let (code, reason, grace) = match end {
        End::ClientLeft => return,
        // The echo is queued; sending it is all that is left.
        End::ClientClosed => {
            let _ = timeout(config.write_timeout, socket.flush()).await;
            return;
        }
        End::TooBig => (
            MESSAGE_TOO_BIG,
            "message too big: the limit is 64 KiB",
            config.write_timeout,
        ),
        End::GoingAway => (
            GOING_AWAY,
            "the server is shutting down",
            config.write_timeout,
        ),
        // The close frame queues behind what the client has not read; it
        // gets as long as a silent client is kept to read it.
        End::TooSlow => (
            POLICY_VIOLATION,
            "too slow: the client stopped reading",
            config.idle_timeout,
        ),
        End::Idle => (
            POLICY_VIOLATION,
            "idle: no frame from the client in time",
            config.write_timeout,
        ),
        End::StoreFailed => (
            INTERNAL_ERROR,
            "the event store failed",
            config.write_timeout,
        ),
    };
    let frame = Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }));
    if let Ok(Ok(())) = timeout(grace, socket.send(frame)).await {
        let drain = async { while let Some(Ok(_)) = socket.recv().await {} };
        let _ = timeout(CLOSE_REPLY_WAIT.min(config.write_timeout), drain).await;
    }
}
