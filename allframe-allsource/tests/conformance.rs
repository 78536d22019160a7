//! AllFrame's conformance suite on the AllSource adapter, each case on a
//! fresh directory (under cargo's temporary directory for this target).

use allframe_allsource::AllSourceStore;

/// A store in a new directory of its own.
async fn fresh() -> AllSourceStore {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("allsource-conformance")
        .join(uuid_like());
    AllSourceStore::open(&dir).await.unwrap()
}

/// A name no other case of this run uses.
fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

allframe::store_conformance_tests!(fresh());
