//! The child process of the saga crash test: runs the bank's dispatcher
//! and its `transfer-money` saga over a store until it is killed.
//!
//! `saga_child sqlite PATH` or `saga_child postgres SCHEMA`.
//!
//! Idempotency leases are 2 s rather than 30: a command a killed child was
//! running holds its key until the lease runs out, and the next child's
//! saga waits for that before sending it again.

use std::sync::Arc;
use std::time::Duration;

use allframe::{DispatchConfig, Dispatcher, EventStore, Sagas};
use bank::transfer::Transfer;

async fn run_forever(store: &dyn EventStore) {
    let config = DispatchConfig::default().idempotency_lease(Duration::from_secs(2));
    let dispatcher = Arc::new(
        Dispatcher::builder(store)
            .config(config)
            .build()
            .expect("the dispatcher"),
    );
    let node = allframe::node::Node::new(
        store,
        allframe_tests::crash::CHILD_NODE,
        allframe::node::DEFAULT_LEASE_TTL,
    );
    let _sagas = Sagas::builder(store, dispatcher)
        .node(node)
        .saga::<Transfer>()
        .start()
        .await
        .expect("start the saga runner");
    std::future::pending::<()>().await;
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [backend, place] = &args[..] else {
        panic!("usage: saga_child sqlite|postgres PATH|SCHEMA");
    };
    let store = allframe_tests::child_store(backend, place).await;
    run_forever(&*store).await;
}
