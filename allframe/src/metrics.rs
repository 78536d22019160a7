//! Prometheus metrics, served at `GET /metrics` with the `metrics` feature
//! (on by default): recorded through the `metrics` facade into
//! `metrics-exporter-prometheus`'s recorder, which the first app built in a
//! process installs as the global recorder (a process that installed
//! another one gets no `/metrics`, and a warning saying why).
//!
//! Counted as they happen: commands by name and outcome with their
//! latency, concurrency retries, idempotent replays, group-commit batches
//! and their append latency, and live stream clients closed by reason.
//! Read when scraped: the head position, each projection's and saga's
//! checkpoint and lag, sagas by status, open live streams and snapshot
//! use.
//!
//! The recorder is the process's: counters and histograms add up every
//! app in it, while the values read at a scrape describe the app that
//! served it. A service runs one app per process, where the two agree.
//!
//! Without the feature the recording functions do nothing.

use std::time::Duration;

/// Every metric's name, and what it counts.
pub const METRICS: [(&str, &str); 16] = [
    (
        "allframe_commands_total",
        "Commands dispatched, by `command` and `outcome` (`ok` or the problem code).",
    ),
    (
        "allframe_command_duration_seconds",
        "How long commands took, by `command` (histogram).",
    ),
    (
        "allframe_concurrency_retries_total",
        "Commands decided again after a concurrency conflict, by `aggregate` category.",
    ),
    (
        "allframe_idempotent_replays_total",
        "Commands answered from their idempotency record, by `command`.",
    ),
    (
        "allframe_append_batch_size",
        "Appends per group-commit batch (histogram).",
    ),
    (
        "allframe_append_duration_seconds",
        "How long writing a group-commit batch took (histogram).",
    ),
    (
        "allframe_head_position",
        "The position of the last event in the log.",
    ),
    (
        "allframe_projection_checkpoint",
        "Each `projection`'s checkpoint.",
    ),
    (
        "allframe_projection_lag_events",
        "Events each `projection` is behind the head.",
    ),
    (
        "allframe_saga_checkpoint",
        "Each `saga` runner's checkpoint.",
    ),
    (
        "allframe_saga_lag_events",
        "Events each `saga` runner is behind the head.",
    ),
    (
        "allframe_sagas",
        "Saga instances by `saga` and `status` (`running`, `completed`, ...).",
    ),
    (
        "allframe_live_streams",
        "Open live event streams (WebSocket and SSE).",
    ),
    (
        "allframe_live_streams_closed_total",
        "Live streams closed, by `kind` (`ws`, `sse`) and `reason`.",
    ),
    (
        "allframe_snapshot_loads_total",
        "Aggregate loads by `result`: `hit` (from a snapshot), `miss` (none), `ignored` (one that did not fit).",
    ),
    (
        "allframe_snapshot_writes_total",
        "Aggregate snapshot writes by `result`: `written` or `failed` (logged; the command succeeded all the same).",
    ),
];

/// A command named `name` finished with `outcome` after `elapsed`.
pub(crate) fn command(name: &'static str, outcome: &'static str, elapsed: Duration) {
    #[cfg(feature = "metrics")]
    {
        metrics::counter!("allframe_commands_total", "command" => name, "outcome" => outcome)
            .increment(1);
        metrics::histogram!("allframe_command_duration_seconds", "command" => name)
            .record(elapsed.as_secs_f64());
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (name, outcome, elapsed);
}

/// A command named `name` was answered from its idempotency record.
pub(crate) fn replayed(name: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("allframe_idempotent_replays_total", "command" => name).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = name;
}

/// A command on an aggregate of `category` is decided again after a
/// concurrency conflict.
pub(crate) fn retried(category: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("allframe_concurrency_retries_total", "aggregate" => category).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = category;
}

/// A group-commit batch of `appends` was written in `elapsed`.
#[cfg_attr(
    not(any(feature = "sqlite", feature = "postgres")),
    allow(dead_code, reason = "group commit serves the SQL backends only")
)]
pub(crate) fn batch(appends: usize, elapsed: Duration) {
    #[cfg(feature = "metrics")]
    {
        metrics::histogram!("allframe_append_batch_size").record(appends as f64);
        metrics::histogram!("allframe_append_duration_seconds").record(elapsed.as_secs_f64());
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (appends, elapsed);
}

/// A live stream of `kind` (`ws`, `sse`) closed for `reason`.
pub(crate) fn stream_closed(kind: &'static str, reason: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("allframe_live_streams_closed_total", "kind" => kind, "reason" => reason)
        .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (kind, reason);
}

#[cfg(feature = "metrics")]
pub(crate) use exporter::{Scraped, handle, render};

#[cfg(feature = "metrics")]
mod exporter {
    use std::sync::OnceLock;
    use std::time::Duration;

    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

    use super::METRICS;

    /// Latency buckets, in seconds: 0.5 ms to 10 s.
    const SECONDS: [f64; 14] = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    /// Batch size buckets, in appends.
    const SIZES: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
    /// How often histograms are drained into their buckets when nobody
    /// scrapes, so samples never pile up.
    const UPKEEP: Duration = Duration::from_secs(5);

    /// The process's recorder, installed by the first call; `None` when
    /// another recorder was installed first.
    pub(crate) fn handle() -> Option<&'static PrometheusHandle> {
        static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
        HANDLE
            .get_or_init(|| {
                let installed = PrometheusBuilder::new()
                    .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS)
                    .and_then(|builder| {
                        builder.set_buckets_for_metric(
                            Matcher::Full("allframe_append_batch_size".into()),
                            &SIZES,
                        )
                    })
                    .and_then(PrometheusBuilder::install_recorder);
                match installed {
                    Ok(handle) => {
                        for (name, help) in METRICS {
                            if name.ends_with("_total") {
                                metrics::describe_counter!(name, help);
                            } else if name.ends_with("_seconds") || name.ends_with("_size") {
                                metrics::describe_histogram!(name, help);
                            } else {
                                metrics::describe_gauge!(name, help);
                            }
                        }
                        let upkeep = handle.clone();
                        std::thread::Builder::new()
                            .name("allframe-metrics".into())
                            .spawn(move || {
                                loop {
                                    std::thread::sleep(UPKEEP);
                                    upkeep.run_upkeep();
                                }
                            })
                            .ok();
                        Some(handle)
                    }
                    Err(error) => {
                        tracing::warn!(%error, "GET /metrics is off: another metrics recorder is installed in this process");
                        None
                    }
                }
            })
            .as_ref()
    }

    /// What a scrape reads from the app's parts.
    #[derive(Default)]
    pub(crate) struct Scraped {
        pub(crate) head: u64,
        pub(crate) projections: Vec<crate::projection::ProjectionStatus>,
        pub(crate) sagas: Vec<crate::saga::SagaStatus>,
        pub(crate) live_streams: usize,
        pub(crate) snapshots: crate::command::SnapshotStats,
    }

    /// Sets the gauges from `scraped` and renders every metric in the
    /// Prometheus text format.
    pub(crate) fn render(handle: &PrometheusHandle, scraped: Scraped) -> String {
        let head = scraped.head;
        metrics::gauge!("allframe_head_position").set(head as f64);
        for status in scraped.projections {
            let name = status.name;
            metrics::gauge!("allframe_projection_checkpoint", "projection" => name.clone())
                .set(status.checkpoint as f64);
            metrics::gauge!("allframe_projection_lag_events", "projection" => name)
                .set(status.lag as f64);
        }
        for status in scraped.sagas {
            let name = status.name;
            metrics::gauge!("allframe_saga_checkpoint", "saga" => name.clone())
                .set(status.checkpoint as f64);
            metrics::gauge!("allframe_saga_lag_events", "saga" => name.clone())
                .set(head.saturating_sub(status.checkpoint) as f64);
            for (state, count) in status.counts {
                metrics::gauge!("allframe_sagas", "saga" => name.clone(), "status" => state)
                    .set(count as f64);
            }
        }
        metrics::gauge!("allframe_live_streams").set(scraped.live_streams as f64);
        let stats = scraped.snapshots;
        for (result, count) in [
            ("hit", stats.used),
            ("miss", stats.missing),
            ("ignored", stats.ignored),
        ] {
            metrics::counter!("allframe_snapshot_loads_total", "result" => result).absolute(count);
        }
        for (result, count) in [("written", stats.written), ("failed", stats.failed)] {
            metrics::counter!("allframe_snapshot_writes_total", "result" => result).absolute(count);
        }
        handle.render()
    }
}
