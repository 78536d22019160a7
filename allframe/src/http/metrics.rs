//! `GET /metrics`: the Prometheus text format (see [`crate::metrics`]).
//! The gauges are read from the app's parts as the scrape arrives; a part
//! that cannot be read (the store is down) leaves its gauges as they were,
//! logged, and the scrape still answers.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;

use super::stream::EventStreams;
use crate::command::Dispatcher;
use crate::metrics::{Scraped, render};
use crate::projection::Projections;
use crate::saga::Sagas;

/// The content type of the Prometheus text format.
pub(crate) const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a scrape reads.
#[derive(Clone)]
pub(crate) struct MetricsRoute {
    pub(crate) handle: &'static PrometheusHandle,
    pub(crate) projections: Projections,
    pub(crate) sagas: Arc<Sagas>,
    pub(crate) dispatcher: Arc<Dispatcher>,
    pub(crate) streams: Arc<EventStreams>,
}

pub(crate) async fn metrics(State(route): State<MetricsRoute>) -> Response {
    let mut scraped = Scraped {
        live_streams: route.streams.open(),
        snapshots: route.dispatcher.snapshot_stats(),
        ..Scraped::default()
    };
    match route.projections.health().await {
        Ok((head, statuses)) => {
            scraped.head = head;
            scraped.projections = statuses;
        }
        Err(error) => tracing::warn!(%error, "metrics: the head and projections could not be read"),
    }
    match route.sagas.status().await {
        Ok(statuses) => scraped.sagas = statuses,
        Err(error) => tracing::warn!(%error, "metrics: the sagas could not be read"),
    }
    let text = render(route.handle, scraped);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROMETHEUS_TEXT),
        )],
        text,
    )
        .into_response()
}
