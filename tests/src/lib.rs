//! Shared set-up for the workspace integration tests.
//!
//! PostgreSQL tests use the server at `ALLFRAME_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`), each store in a
//! schema of its own so parallel tests and parallel runs never collide.
//! When the server cannot be reached the tests are skipped with a message on
//! stderr — unless `CI=true`, where that is a failure.

use std::io::Write;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use allframe::store::PostgresStore;
use sqlx::postgres::PgConnectOptions;

/// Where the PostgreSQL tests connect.
pub fn postgres_url() -> String {
    std::env::var("ALLFRAME_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Connection options for [`postgres_url`], or `None` (after saying why)
/// when the server is unreachable outside CI.
pub async fn postgres_options() -> Option<PgConnectOptions> {
    let url = postgres_url();
    let options = PgConnectOptions::from_str(&url).expect("ALLFRAME_TEST_POSTGRES_URL parses");
    match sqlx::PgPool::connect_with(options.clone()).await {
        Ok(pool) => {
            drop_stale_schemas(&pool).await;
            pool.close().await;
            Some(options)
        }
        Err(error) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("PostgreSQL at {url} is unreachable and CI=true: {error}")
        }
        Err(error) => {
            // Written to stderr directly, past the test harness's capture,
            // so a skipped run is impossible to miss.
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED: PostgreSQL test — cannot reach {url}: {error}. \
                 Start PostgreSQL (see .ci/run) to run it. ***\n"
            );
            None
        }
    }
}

/// A schema name no other test or run uses; it starts with the current time
/// so leftovers of killed runs can be recognised and dropped.
pub fn fresh_schema() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    format!("allframe_test_{secs}_{}", uuid::Uuid::now_v7().simple())
}

/// A fresh PostgreSQL store in its own schema, or `None` when skipped.
pub async fn postgres_store() -> Option<PostgresStore> {
    postgres_store_in(
        &fresh_schema(),
        allframe::store::postgres::DEFAULT_MAX_BATCH,
    )
    .await
}

/// A PostgreSQL store in `schema` (created if missing), or `None` when
/// skipped.
pub async fn postgres_store_in(schema: &str, max_batch: usize) -> Option<PostgresStore> {
    let options = postgres_options().await?;
    Some(
        PostgresStore::connect_with(options, Some(schema), max_batch)
            .await
            .expect("open the PostgreSQL store"),
    )
}

/// Drops test schemas more than an hour old, left by runs that were killed
/// before they could clean up.
async fn drop_stale_schemas(pool: &sqlx::PgPool) {
    let cutoff = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
        - 3600;
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'allframe\\_test\\_%'",
    )
    .fetch_all(pool)
    .await
    .unwrap_or_default();
    for schema in schemas {
        let created = schema
            .split('_')
            .nth(2)
            .and_then(|secs| secs.parse::<u64>().ok());
        if created.is_some_and(|secs| secs < cutoff) {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
            )))
            .execute(pool)
            .await;
        }
    }
}
