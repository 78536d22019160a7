//! What the benchmarks share: their settings and how samples are summed up.

/// A number from the environment variable `name`, or `default`.
pub(crate) fn env_number(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Whether `ALLFRAME_BENCH_ONLY` (a comma-separated list; empty: all)
/// selects `part`.
pub(crate) fn selected(part: &str) -> bool {
    let only = std::env::var("ALLFRAME_BENCH_ONLY").unwrap_or_default();
    only.is_empty() || only.split(',').any(|name| name == part)
}

/// The median of the samples (the upper one of an even count).
pub(crate) fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Runs a benchmark on a two-worker runtime, the machine's size.
pub(crate) fn run_on_two_workers<F: std::future::Future>(bench: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(bench)
}
