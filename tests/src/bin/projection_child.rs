//! The child process of the projection crash test: runs the crash ledger
//! over a store until it is killed.
//!
//! `projection_child sqlite PATH BATCH` or `projection_child postgres SCHEMA BATCH`.

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [backend, place, batch] = &args[..] else {
        panic!("usage: projection_child sqlite|postgres PATH|SCHEMA BATCH");
    };
    let batch: usize = batch.parse().expect("BATCH is a number");
    let store = allframe_tests::child_store(backend, place).await;
    allframe_tests::crash::run_forever(&*store, batch).await
}
