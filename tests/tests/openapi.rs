//! The bank's OpenAPI document: committed, regenerated and compared, and
//! every status it lists produced by a real request (and no other).

// The bank's handlers register themselves; link them.
#[allow(unused_extern_crates)]
extern crate bank;

use allframe::store::MemoryStore;
use serde_json::Value;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/bank.json");

async fn document() -> String {
    let store = MemoryStore::new();
    let app = bank::app(&store).build().await.unwrap();
    serde_json::to_string_pretty(app.openapi()).unwrap() + "\n"
}

#[tokio::test]
async fn the_committed_document_is_current() {
    let current = document().await;
    if std::env::var_os("ALLFRAME_UPDATE_OPENAPI").is_some() {
        std::fs::write(COMMITTED, &current).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed == current,
        "openapi/bank.json is out of date with the code; regenerate it with\n\n    \
         ALLFRAME_UPDATE_OPENAPI=1 cargo test -p allframe-tests --test openapi\n\n\
         and commit the result"
    );
    let _: Value = serde_json::from_str(&committed).unwrap();
}
