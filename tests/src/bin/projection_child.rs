//! The child process of the projection crash test: runs the crash ledger
//! over a store until it is killed.
//!
//! `projection_child sqlite PATH BATCH` or `projection_child postgres SCHEMA BATCH`.

use allframe::store::{PostgresStore, SqliteStore};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [backend, place, batch] = &args[..] else {
        panic!("usage: projection_child sqlite|postgres PATH|SCHEMA BATCH");
    };
    let batch: usize = batch.parse().expect("BATCH is a number");
    match backend.as_str() {
        "sqlite" => {
            let store = SqliteStore::open(place).await.expect("open SQLite");
            allframe_tests::crash::run_forever(&store, batch).await
        }
        "postgres" => {
            let options = allframe_tests::postgres_options()
                .await
                .expect("PostgreSQL is reachable");
            let store = PostgresStore::connect_with(options, Some(place), 16)
                .await
                .expect("open PostgreSQL");
            allframe_tests::crash::run_forever(&store, batch).await
        }
        other => panic!("unknown backend {other}"),
    }
}
