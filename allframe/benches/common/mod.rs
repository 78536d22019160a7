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

/// A PostgreSQL store in a fresh schema at `ALLFRAME_BENCH_POSTGRES_URL`
/// (default `postgres://postgres@127.0.0.1:5432/test`) and the schema's
/// name; `None`, said loudly, when the server cannot be reached. Drop the
/// schema with [`drop_schema`] when done.
#[cfg(feature = "postgres")]
#[allow(dead_code)] // Only the benchmarks with a PostgreSQL part use it.
pub(crate) async fn postgres_store() -> Option<(allframe::store::PostgresStore, String)> {
    use std::str::FromStr;
    let url = std::env::var("ALLFRAME_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let options = sqlx::postgres::PgConnectOptions::from_str(&url).expect("a PostgreSQL URL");
    let schema = format!("allframe_bench_{}", uuid::Uuid::now_v7().simple());
    match allframe::store::PostgresStore::connect_with(options, Some(&schema), 256).await {
        Ok(store) => Some((store, schema)),
        Err(error) => {
            println!("\n!!! PostgreSQL SKIPPED: cannot reach {url}: {error}");
            None
        }
    }
}

/// Drops a schema [`postgres_store`] made.
#[cfg(feature = "postgres")]
#[allow(dead_code)] // Only the benchmarks with a PostgreSQL part use it.
pub(crate) async fn drop_schema(store: &allframe::store::PostgresStore, schema: &str) {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(store.pool())
    .await
    .expect("drop the bench schema");
}
