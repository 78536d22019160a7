//! What the adapter adds to the engine: the log and its idempotency
//! records survive a close and a SIGKILL, one directory has one store at a
//! time, and commits the adapter cannot read back stop the open.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use allframe::{EventFilter, EventStore, ExpectedVersion, NewEvent, StoreError};
use allframe_allsource::{AllSourceStore, COMMIT_TYPE, LOG_STREAM, MAX_COMMIT_BYTES, OpenError};
use allsource_core::embedded::{Config, EmbeddedCore};

fn event(n: u64) -> NewEvent {
    NewEvent::new("Noted", &serde_json::json!({ "n": n }))
}

/// Data an envelope must give back byte for byte: a number beyond `f64`,
/// a float's spelling, escapes, unicode, nesting.
const EXACT: &str =
    r#"{"big":123456789012345678901234567890,"f":1.50,"s":"\u00e9 é","deep":[[[[1]]]]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_and_its_keys_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = AllSourceStore::open(dir.path()).await.unwrap();
    let reopen = async || AllSourceStore::open(dir.path()).await.unwrap();
    allframe::testing::conformance::log_survives_reopen(store, reopen).await;
    // Opened again after a close that checkpointed: nothing doubled.
    let third = AllSourceStore::open(dir.path()).await.unwrap();
    assert_eq!(third.head_position().await.unwrap(), 5);
    third.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_comes_back_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let store = AllSourceStore::open(dir.path()).await.unwrap();
    let exact = NewEvent::from_raw(
        "Exact",
        serde_json::value::RawValue::from_string(EXACT.to_owned()).unwrap(),
    );
    store
        .append("note-a", ExpectedVersion::NoStream, vec![exact])
        .await
        .unwrap();
    store.close().await;
    drop(store);
    let reopened = AllSourceStore::open(dir.path()).await.unwrap();
    let data = reopened.read_stream("note-a", 1, 1).await.unwrap();
    assert_eq!(data[0].data.get(), EXACT);
    reopened.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_directory_has_one_store_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = AllSourceStore::open(dir.path()).await.unwrap();
    match AllSourceStore::open(dir.path()).await {
        Err(OpenError::Locked(path)) => assert_eq!(path, dir.path()),
        other => panic!("a second open must be refused, got {other:?}"),
    }
    store.close().await;
    drop(store);
    let again = AllSourceStore::open(dir.path()).await.unwrap();
    again.close().await;
}

/// A child process started by any thread holds a copy of every descriptor
/// from its fork to its `exec`: a store dropped in that window must still
/// leave its directory free at once, not when the child gets round to
/// `exec`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_store_frees_its_directory_while_children_start() {
    let dir = tempfile::tempdir().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let spawner = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let mut started = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let status = Command::new("true").status().unwrap();
                assert!(status.success());
                started += 1;
            }
            started
        }
    });
    for _ in 0..REOPENS {
        let store = AllSourceStore::open(dir.path()).await.unwrap();
        store.close().await;
        drop(store);
    }
    stop.store(true, Ordering::Relaxed);
    let started = spawner.join().unwrap();
    assert!(started > 0, "no child started while the store was reopened");
}

/// How many times [`a_dropped_store_frees_its_directory_while_children_start`]
/// opens the store.
const REOPENS: usize = 60;

/// `depth` arrays, one inside the other, around a 1.
fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_data_and_metadata_open_again_or_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = AllSourceStore::open(dir.path()).await.unwrap();
    // Data as deep as a request body may be (serde_json's limit).
    let data = format!(r#"{{"deep":{}}}"#, nested(120));
    let deep = NewEvent::from_raw(
        "Deep",
        serde_json::value::RawValue::from_string(data.clone()).unwrap(),
    );
    store
        .append("note-a", ExpectedVersion::NoStream, vec![deep])
        .await
        .unwrap();
    // Metadata nested too deep to be read back inside a commit is refused
    // rather than written.
    let mut metadata = allframe::Metadata::new();
    metadata
        .extra
        .insert("deep".into(), serde_json::from_str(&nested(120)).unwrap());
    let refused = store
        .append(
            "note-a",
            ExpectedVersion::Exact(1),
            vec![NewEvent::new("Deep", &serde_json::json!({})).with_metadata(metadata)],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StoreError::InvalidEvent { .. }),
        "{refused}"
    );
    store.close().await;
    drop(store);
    let reopened = AllSourceStore::open(dir.path()).await.unwrap();
    let events = reopened.read_stream("note-a", 1, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data.get(), data);
    reopened.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_commit_is_refused_and_the_store_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = AllSourceStore::open(dir.path()).await.unwrap();
    let big = "x".repeat(MAX_COMMIT_BYTES);
    let refused = store
        .append(
            "note-a",
            ExpectedVersion::Any,
            vec![NewEvent::new("Big", &serde_json::json!({ "text": big }))],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, StoreError::InvalidEvent { reason, .. } if reason.contains("at most")),
        "{refused}"
    );
    let appended = store
        .append("note-a", ExpectedVersion::NoStream, vec![event(1)])
        .await
        .unwrap();
    assert_eq!(appended.position, 1);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_the_adapter_cannot_read_back_stop_the_open() {
    // A foreign event on the adapter's engine stream.
    let dir = tempfile::tempdir().unwrap();
    write_raw(
        dir.path(),
        &[(
            "something.else",
            serde_json::json!({ "v": 1, "commit": "{}" }),
        )],
    )
    .await;
    let error = AllSourceStore::open(dir.path()).await.unwrap_err();
    assert!(
        matches!(&error, OpenError::Corrupt(why) if why.contains("not a `allframe.commit`")),
        "{error}"
    );

    // An envelope of a format this release does not know.
    let dir = tempfile::tempdir().unwrap();
    write_raw(
        dir.path(),
        &[(COMMIT_TYPE, serde_json::json!({ "v": 2, "commit": "{}" }))],
    )
    .await;
    let error = AllSourceStore::open(dir.path()).await.unwrap_err();
    assert!(
        matches!(&error, OpenError::Corrupt(why) if why.contains("format 2")),
        "{error}"
    );

    // A commit whose positions do not follow the one before.
    let dir = tempfile::tempdir().unwrap();
    let store = AllSourceStore::open(dir.path()).await.unwrap();
    store
        .append("note-a", ExpectedVersion::NoStream, vec![event(1)])
        .await
        .unwrap();
    let first = store.read_all(0, 10, &EventFilter::all()).await.unwrap();
    store.close().await;
    drop(store);
    let mut repeated = serde_json::to_value(&first).unwrap();
    repeated[0]["version"] = 2.into();
    let commit = serde_json::json!({ "events": repeated, "keys": [] });
    append_raw(
        dir.path(),
        1,
        serde_json::json!({ "v": 1, "commit": commit.to_string() }),
    )
    .await;
    let error = AllSourceStore::open(dir.path()).await.unwrap_err();
    assert!(
        matches!(&error, OpenError::Corrupt(why) if why.contains("does not follow on")),
        "{error}"
    );
}

/// A commit as this release writes it (envelope format 1), checked in so
/// a later release that changes the format finds out it must still read
/// this one.
const FORMAT_1: &str = r#"{"events":[{"position":1,"stream_id":"note-a","version":1,"type":"Noted","schema_version":1,"data":{"n":1},"metadata":{"event_id":"0193a5c0-0000-7000-8000-000000000001","correlation_id":"c-1","ip":"10.0.0.1"},"recorded_at":"2026-12-07T00:00:00.123Z"}],"keys":[{"key":"k1","fingerprint":"f1","response":"{\"position\":1}","created_at":"2026-12-07T00:00:00.123Z"}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_of_format_1_open() {
    let dir = tempfile::tempdir().unwrap();
    write_raw(
        dir.path(),
        &[(
            COMMIT_TYPE,
            serde_json::json!({ "v": 1, "commit": FORMAT_1 }),
        )],
    )
    .await;
    let store = AllSourceStore::open(dir.path()).await.unwrap();
    let events = store.read_all(0, 10, &EventFilter::all()).await.unwrap();
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(
        (event.position, event.stream_id.as_str(), event.version),
        (1, "note-a", 1)
    );
    assert_eq!(
        (event.event_type.as_str(), event.schema_version),
        ("Noted", 1)
    );
    assert_eq!(event.data.get(), r#"{"n":1}"#);
    assert_eq!(event.metadata.correlation_id.as_deref(), Some("c-1"));
    assert_eq!(event.metadata.extra["ip"], "10.0.0.1");
    assert_eq!(
        serde_json::to_value(event).unwrap()["recorded_at"],
        "2026-12-07T00:00:00.123Z"
    );
    let years = std::time::Duration::from_secs(20 * 365 * 24 * 3600);
    let claim = store
        .idempotency()
        .unwrap()
        .claim_idempotency_key("k1", "f1", years, years)
        .await
        .unwrap();
    assert_eq!(
        claim,
        allframe::store::Claim::Completed(r#"{"position":1}"#.into())
    );
    store.close().await;
}

/// Writes events straight to the engine stream of a new store in `dir`.
async fn write_raw(dir: &std::path::Path, events: &[(&str, serde_json::Value)]) {
    for (n, (event_type, payload)) in events.iter().enumerate() {
        ingest(dir, n as u64, event_type, payload.clone()).await;
    }
}

/// Appends one envelope to the engine stream of the store in `dir`, which
/// holds `commits` commits.
async fn append_raw(dir: &std::path::Path, commits: u64, payload: serde_json::Value) {
    ingest(dir, commits, COMMIT_TYPE, payload).await;
}

async fn ingest(
    dir: &std::path::Path,
    expected: u64,
    event_type: &str,
    payload: serde_json::Value,
) {
    let config = Config::builder()
        .data_dir(dir.join("engine"))
        .build()
        .unwrap();
    let core = EmbeddedCore::open(config).await.unwrap();
    let event = allsource_core::Event::from_strings(
        event_type.into(),
        LOG_STREAM.into(),
        "default".into(),
        payload,
        None,
    )
    .unwrap();
    core.inner()
        .ingest_with_expected_version(&event, Some(expected))
        .unwrap();
    core.inner().checkpoint().unwrap();
    core.shutdown().await.unwrap();
}

/// The child of [`acknowledged_appends_survive_sigkill`]: appends one event
/// per command to a few streams of the store in `ALLSOURCE_CHILD_DIR` and
/// prints the position of each as soon as it is acknowledged, until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_child() {
    let Ok(dir) = std::env::var("ALLSOURCE_CHILD_DIR") else {
        // Run only as the child of the SIGKILL test.
        return;
    };
    let store = AllSourceStore::open(&dir).await.unwrap();
    let mut tasks = Vec::new();
    for writer in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0.. {
                let appended = store
                    .append(
                        &format!("note-{writer}"),
                        ExpectedVersion::Any,
                        vec![event(n), event(n)],
                    )
                    .await
                    .unwrap();
                println!("acked {} {}", appended.stream_id, appended.position);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut acknowledged = Vec::new();
    for round in 0..5 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sigkill_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("ALLSOURCE_CHILD_DIR", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let wanted = 40 + round * 17;
        let mut seen = 0;
        for line in stdout.lines() {
            let line = line.unwrap();
            let Some(rest) = line.strip_prefix("acked ") else {
                continue;
            };
            let (stream, position) = rest.split_once(' ').unwrap();
            acknowledged.push((stream.to_owned(), position.parse::<u64>().unwrap()));
            seen += 1;
            if seen == wanted {
                break;
            }
        }
        assert_eq!(seen, wanted, "the child stopped before it was killed");
        child.kill().unwrap();
        child.wait().unwrap();

        let store = AllSourceStore::open(dir.path()).await.unwrap();
        let all = store
            .read_all(0, 100_000, &EventFilter::all())
            .await
            .unwrap();
        // Whole commits, gap-free positions, gap-free versions.
        for (event, position) in all.iter().zip(1u64..) {
            assert_eq!(event.position, position);
        }
        for writer in 0..4 {
            let stream = format!("note-{writer}");
            let events: Vec<_> = all.iter().filter(|e| e.stream_id == stream).collect();
            assert_eq!(
                events.len() % 2,
                0,
                "a commit of two events came back whole"
            );
            for (event, version) in events.iter().zip(1u64..) {
                assert_eq!(event.version, version);
            }
        }
        for (stream, position) in &acknowledged {
            let event = all
                .get(*position as usize - 1)
                .unwrap_or_else(|| panic!("acknowledged position {position} was lost"));
            assert_eq!(&event.stream_id, stream);
        }
        // Closed cleanly here; the next child goes on from this log.
        store.close().await;
    }
}
