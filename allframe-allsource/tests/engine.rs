//! What the engine does on its own (allsource-core 0.27.0), the behaviour
//! the adapter is built around. If a release of the engine changes one of
//! these, its test says which, and the adapter's design can be revisited.

use allsource_core::Event;
use allsource_core::embedded::{Config, EmbeddedCore, Query};

async fn open(dir: &std::path::Path) -> EmbeddedCore {
    let config = Config::builder().data_dir(dir).build().unwrap();
    EmbeddedCore::open(config).await.unwrap()
}

fn event(entity: &str, n: u64) -> Event {
    Event::from_strings(
        "noted".into(),
        entity.into(),
        "default".into(),
        serde_json::json!({ "n": n }),
        None,
    )
    .unwrap()
}

/// The engine's events of `entity` as (version, n), in its query order.
async fn versions(core: &EmbeddedCore, entity: &str) -> Vec<(i64, u64)> {
    core.query(Query::new().entity_id(entity))
        .await
        .unwrap()
        .into_iter()
        .map(|view| (view.version, view.payload["n"].as_u64().unwrap()))
        .collect()
}

/// The entity and `n` of every event, in the engine's memory order (what
/// its offsets count).
fn memory_order(core: &EmbeddedCore) -> Vec<(String, u64)> {
    core.inner()
        .snapshot_events()
        .iter()
        .map(|e| {
            (
                e.entity_id_str().to_owned(),
                e.payload()["n"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_several_separately_versioned_writes() {
    let dir = tempfile::tempdir().unwrap();
    let core = open(dir.path()).await;
    // The batch call takes no expected version, and numbers each event as
    // a write of its own (the source writes them to the log one by one).
    core.inner()
        .ingest_batch(vec![
            event("batch", 1),
            event("batch", 2),
            event("batch", 3),
        ])
        .unwrap();
    assert_eq!(versions(&core, "batch").await, [(1, 1), (2, 2), (3, 3)]);
    core.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_reopen_plain_writes_repeat_versions_and_offsets_move() {
    let dir = tempfile::tempdir().unwrap();
    let core = open(dir.path()).await;
    core.inner().ingest(&event("other", 0)).unwrap();
    for n in 1..=2 {
        core.inner().ingest(&event("plain", n)).unwrap();
    }
    core.inner().checkpoint().unwrap();
    for n in 3..=4 {
        core.inner().ingest(&event("plain", n)).unwrap();
    }
    assert_eq!(core.inner().get_entity_version("plain"), 4);
    let written = memory_order(&core);
    core.shutdown().await.unwrap();
    drop(core);

    let core = open(dir.path()).await;
    // The stream's version is counted short after the reopen...
    assert_eq!(core.inner().get_entity_version("plain"), 2);
    // ...so a plain write takes a version that is already used.
    core.inner().ingest(&event("plain", 5)).unwrap();
    assert_eq!(
        versions(&core, "plain").await,
        [(1, 1), (2, 2), (3, 3), (4, 4), (3, 5)]
    );
    // And what was in the engine's log comes first in memory now: offsets
    // into it are no global position that survives a restart.
    let reopened = memory_order(&core);
    assert_ne!(reopened[..written.len()], written[..]);
    assert_eq!(
        reopened[..2],
        [("plain".to_owned(), 3), ("plain".to_owned(), 4)]
    );
    core.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_change_broadcast_drops_what_a_slow_reader_did_not_take() {
    let dir = tempfile::tempdir().unwrap();
    let core = open(dir.path()).await;
    let mut changes = core.subscribe_events();
    for n in 0..1_100 {
        core.inner().ingest(&event("loud", n)).unwrap();
    }
    assert!(matches!(
        changes.recv().await,
        Err(tokio::sync::broadcast::error::RecvError::Lagged(76))
    ));
    core.shutdown().await.unwrap();
}
