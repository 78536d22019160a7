//! `GET /events/sse`: the stream of `GET /events/ws` as server-sent
//! events, for clients that only speak HTTP (`EventSource`, `curl -N`).
//!
//! Each event is `id: <position>` and `data: <RecordedEvent JSON>`, with no
//! `event:` field, so `EventSource.onmessage` receives every event (a named
//! event would only reach listeners registered for that name); the type is
//! in the JSON. Idle responses carry a `: keep-alive` comment every
//! `ping_interval`.
//!
//! A `Last-Event-ID` header takes precedence over `after`: a reconnecting
//! `EventSource` repeats its original URL, `after` included, and sends the
//! id of the last event it received, which is where it must resume.
//!
//! A task per connection moves events from its [`Follower`](super::fanout::Follower) into a short
//! queue the response body drains. When the client stops reading, the
//! queue stays full; after `write_timeout` the task ends, the response ends
//! once the client reads again, and an `EventSource` reconnects with
//! `Last-Event-ID`. On shutdown every response ends, so axum's graceful
//! shutdown does not wait for them.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;
use tokio::time::timeout;

use super::fanout::FollowError;
use super::params::last_event_id;
use super::{EventStreamConfig, EventStreams, Ticket};
use crate::auth::Principal;

/// `Last-Event-ID`: where a reconnecting SSE client resumes.
pub(crate) const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// How many events wait between a connection's task and its response.
const QUEUE: usize = 16;

/// The route handler: checks everything before the response starts.
pub(crate) async fn stream(
    State(streams): State<Arc<EventStreams>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
    principal: Option<Principal>,
) -> Response {
    let params = match super::params(query) {
        Ok(params) => params,
        Err(problem) => return problem.into_response(),
    };
    let resume = match headers
        .get(LAST_EVENT_ID)
        .map(|id| last_event_id(id.as_bytes()))
    {
        Some(Ok(position)) => Some(position),
        Some(Err(error)) => return crate::http::problem::Problem::from(error).into_response(),
        None => None,
    };
    let ticket = match streams
        .admit(&params, resume.or(params.after), principal)
        .await
    {
        Ok(ticket) => ticket,
        Err(refusal) => return refusal,
    };
    let (sender, receiver) = mpsc::channel(QUEUE);
    tokio::spawn(pump(ticket, sender, streams.config.clone()));
    let events = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let event = receiver.recv().await?;
        Some((Ok::<_, Infallible>(event), receiver))
    });
    Sse::new(events)
        .keep_alive(
            KeepAlive::new()
                .interval(streams.config.ping_interval)
                .text("keep-alive"),
        )
        .into_response()
}

/// The connection's task: follows the log into the response's queue until
/// the client leaves, stops reading, or the server shuts down.
async fn pump(ticket: Ticket, sender: mpsc::Sender<Event>, config: EventStreamConfig) {
    let Ticket {
        mut follower,
        mut shutdown,
        permit,
    } = ticket;
    let reason = loop {
        let frame = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stopping| *stopping) => break "shutdown",
            () = sender.closed() => break "client-left",
            next = follower.next() => match next {
                Ok(frame) => frame,
                Err(FollowError::Stopped) => break "shutdown",
                Err(error) => {
                    tracing::error!(%error, "event stream: ending an SSE response");
                    break "store-failed";
                }
            },
        };
        let event = Event::default()
            .id(frame.event.position.to_string())
            .data(frame.json.as_str());
        tokio::select! {
            biased;
            _ = shutdown.wait_for(|stopping| *stopping) => break "shutdown",
            sent = timeout(config.write_timeout, sender.send(event)) => match sent {
                Ok(Ok(())) => {}
                // The response was dropped: the client left.
                Ok(Err(_)) => break "client-left",
                Err(_) => {
                    tracing::debug!(
                        position = frame.event.position,
                        "event stream: an SSE client stopped reading; ending its response"
                    );
                    break "too-slow";
                }
            },
        }
    };
    crate::metrics::stream_closed("sse", reason);
    drop(permit);
}
