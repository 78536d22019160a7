//! One node of the bank for the tests that run several processes on one
//! database: serves the bank on a free loopback port and prints
//! `listening on http://ADDR` once it accepts connections.
//!
//! `bank_node sqlite PATH` or `bank_node postgres SCHEMA`, optionally
//! followed by `NODE_ID LEASE_TTL_MS`.

use allframe::EventStore;
use allframe::store::{PostgresStore, SqliteStore};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (backend, place, node) = match &args[..] {
        [backend, place] => (backend, place, None),
        [backend, place, id, ttl] => (backend, place, Some((id, ttl))),
        _ => panic!("usage: bank_node sqlite|postgres PATH|SCHEMA [NODE_ID LEASE_TTL_MS]"),
    };
    let store: Box<dyn EventStore> = match backend.as_str() {
        "sqlite" => Box::new(SqliteStore::open(place).await.expect("open SQLite")),
        "postgres" => {
            let options = allframe_tests::postgres_options()
                .await
                .expect("PostgreSQL is reachable");
            Box::new(
                PostgresStore::connect_with(options, Some(place), 16)
                    .await
                    .expect("open PostgreSQL"),
            )
        }
        other => panic!("unknown backend {other}"),
    };
    let mut app = bank::app(&*store);
    if let Some((id, ttl)) = node {
        let ttl = std::time::Duration::from_millis(ttl.parse().expect("a TTL in ms"));
        app = app.node_id(id).lease_ttl(ttl);
    }
    let app = app.build().await.expect("the bank builds");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    println!("listening on http://{}", listener.local_addr().unwrap());
    app.serve(listener).await.expect("serve");
}
