//! The checks every [`EventStore`] must pass.

mod idempotency;
mod reopen;
mod snapshots;

pub use idempotency::{
    idempotency_claim_complete_replay, idempotency_completion_is_atomic_with_append,
    idempotency_concurrent_claims, idempotency_expiry_and_purge, idempotency_invalid_keys,
    idempotency_lease_take_over, idempotency_mismatch, idempotency_release,
    idempotency_several_completions, idempotency_stale_tokens_are_refused,
    idempotency_unclaimed_completion,
};
pub use reopen::log_survives_reopen;
pub use snapshots::{
    snapshot_concurrent_saves, snapshot_invalid_stream_ids, snapshot_later_version_stays,
    snapshot_of_other_code_is_replaced, snapshot_save_and_load,
};

use std::collections::HashSet;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;

use crate::store::{MAX_EVENTS_PER_APPEND, MAX_STREAM_ID_LEN};
use crate::{
    EventFilter, EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent, StoreError,
};

/// Longest a check waits for a subscription before failing.
const WAIT: Duration = Duration::from_secs(60);

fn event(event_type: &str, n: u64) -> NewEvent {
    NewEvent::new(event_type, &json!({ "n": n }))
}

fn events(event_type: &str, count: u64) -> Vec<NewEvent> {
    (1..=count).map(|n| event(event_type, n)).collect()
}

async fn everything(store: &dyn EventStore) -> Vec<RecordedEvent> {
    store
        .read_all(0, usize::MAX, &EventFilter::all())
        .await
        .expect("read the whole log")
}

async fn collect(
    mut subscription: crate::Subscription,
    count: usize,
    what: &str,
) -> Vec<RecordedEvent> {
    let mut seen = Vec::with_capacity(count);
    while seen.len() < count {
        match tokio::time::timeout(WAIT, subscription.next()).await {
            Ok(Some(Ok(event))) => seen.push(event),
            Ok(Some(Err(error))) => panic!("{what}: subscription failed: {error}"),
            Ok(None) => panic!("{what}: subscription ended after {} events", seen.len()),
            Err(_) => panic!(
                "{what}: subscription stalled after {} of {count} events",
                seen.len()
            ),
        }
    }
    seen
}

fn assert_strictly_ascending(events: &[RecordedEvent], what: &str) {
    for pair in events.windows(2) {
        assert!(
            pair[0].position < pair[1].position,
            "{what}: position {} followed by {}",
            pair[0].position,
            pair[1].position
        );
    }
}

fn assert_conflict(result: crate::store::Result<crate::Appended>, actual_version: u64) {
    match result {
        Err(StoreError::WrongExpectedVersion { actual, .. }) => assert_eq!(
            actual, actual_version,
            "a conflict must carry the stream's actual version"
        ),
        other => panic!("expected a version conflict, got {other:?}"),
    }
}

/// `Any`, `NoStream` and `Exact(n)` accept and refuse as documented, and
/// a conflict reports the actual version.
pub async fn expected_version_semantics(store: &dyn EventStore) {
    let s = "order-1";
    let first = store
        .append(s, ExpectedVersion::NoStream, events("Placed", 2))
        .await
        .expect("NoStream on a new stream");
    assert_eq!((first.version, first.events.len()), (2, 2));
    assert_conflict(
        store
            .append(s, ExpectedVersion::NoStream, events("Placed", 1))
            .await,
        2,
    );
    assert_conflict(
        store
            .append(s, ExpectedVersion::Exact(1), events("Paid", 1))
            .await,
        2,
    );
    assert_conflict(
        store
            .append(s, ExpectedVersion::Exact(3), events("Paid", 1))
            .await,
        2,
    );
    let exact = store
        .append(s, ExpectedVersion::Exact(2), events("Paid", 1))
        .await
        .expect("Exact(current)");
    assert_eq!(exact.version, 3);
    let any = store
        .append(s, ExpectedVersion::Any, events("Shipped", 1))
        .await
        .expect("Any on an existing stream");
    assert_eq!(any.version, 4);
    let any_new = store
        .append("order-2", ExpectedVersion::Any, events("Placed", 1))
        .await
        .expect("Any on a new stream");
    assert_eq!(any_new.version, 1);
    store
        .append("order-3", ExpectedVersion::Exact(0), events("Placed", 1))
        .await
        .expect("Exact(0) on a new stream");
    assert_conflict(
        store
            .append("order-4", ExpectedVersion::Exact(1), events("Placed", 1))
            .await,
        0,
    );
    assert_eq!(store.stream_version(s).await.unwrap(), 4);
    assert_eq!(store.stream_version("order-4").await.unwrap(), 0);
    assert_eq!(
        everything(store).await.len(),
        6,
        "refused appends stored nothing"
    );
}

/// An append returns its events as recorded: contiguous versions and
/// positions, the data and metadata as given, a recent timestamp.
pub async fn append_records_events(store: &dyn EventStore) {
    store
        .append("cart-1", ExpectedVersion::Any, events("Opened", 1))
        .await
        .unwrap();
    let mut metadata = Metadata::new();
    metadata.correlation_id = Some("corr-1".into());
    metadata.causation_id = Some("cause-1".into());
    metadata.command = Some("add-item".into());
    metadata
        .extra
        .insert("tenant".into(), json!({"id": 7, "tags": ["a"]}));
    let before = chrono::Utc::now() - chrono::Duration::seconds(5);
    let appended = store
        .append(
            "cart-2",
            ExpectedVersion::NoStream,
            vec![
                NewEvent::new(
                    "ItemAdded",
                    &json!({"sku": "é-1", "qty": 2, "nested": {"x": [1, 2]}}),
                )
                .with_metadata(metadata.clone())
                .with_schema_version(3),
                event("ItemAdded", 2),
            ],
        )
        .await
        .unwrap();
    assert_eq!(appended.stream_id, "cart-2");
    assert_eq!((appended.version, appended.position), (2, 3));
    let stored = store.read_stream("cart-2", 0, 10).await.unwrap();
    assert_eq!(stored.len(), 2);
    for (returned, read) in appended.events.iter().zip(&stored) {
        assert_eq!(returned.position, read.position);
        assert_eq!(returned.version, read.version);
        assert_eq!(returned.metadata, read.metadata);
        assert_eq!(returned.recorded_at, read.recorded_at);
        assert_eq!(returned.event_type, read.event_type);
    }
    let first = &stored[0];
    assert_eq!((first.version, first.position), (1, 2));
    assert_eq!(first.event_type, "ItemAdded");
    assert_eq!(first.schema_version, 3);
    assert_eq!(first.category(), "cart");
    let data: serde_json::Value = serde_json::from_str(first.data.get()).unwrap();
    assert_eq!(
        data,
        json!({"sku": "é-1", "qty": 2, "nested": {"x": [1, 2]}})
    );
    assert_eq!(first.metadata, metadata);
    assert_eq!(stored[1].metadata.correlation_id, None);
    assert_ne!(stored[1].metadata.event_id, first.metadata.event_id);
    assert!(first.recorded_at >= before && first.recorded_at <= chrono::Utc::now());
    assert_eq!(
        first.recorded_at.timestamp_subsec_nanos() % 1_000_000,
        0,
        "millisecond precision"
    );
    assert_eq!(store.head_position().await.unwrap(), 3);
}

/// `stored_types` lists each `(category, type, schema_version)` of the
/// events appended, once, and nothing of a refused append.
pub async fn stored_types_list_each_kind(store: &dyn EventStore) {
    let kind = |category: &str, event_type: &str, schema_version: u32| crate::StoredType {
        category: category.to_owned(),
        event_type: event_type.to_owned(),
        schema_version,
    };
    assert!(
        store.stored_types().await.unwrap().is_empty(),
        "an empty log"
    );
    store
        .append("acct-1", ExpectedVersion::Any, events("Opened", 2))
        .await
        .unwrap();
    let batch = vec![
        event("Deposited", 1),
        event("Deposited", 2).with_schema_version(3),
        event("Deposited", 3),
    ];
    store
        .append("acct-2", ExpectedVersion::Any, batch)
        .await
        .unwrap();
    store
        .append("ledger-9", ExpectedVersion::Any, events("Opened", 1))
        .await
        .unwrap();
    let refused = store
        .append(
            "acct-1",
            ExpectedVersion::Exact(0),
            vec![event("Closed", 1).with_schema_version(9)],
        )
        .await;
    assert!(refused.is_err(), "a wrong expected version is refused");
    let expected = [
        kind("acct", "Deposited", 1),
        kind("acct", "Deposited", 3),
        kind("acct", "Opened", 1),
        kind("ledger", "Opened", 1),
    ];
    let listed: Vec<_> = store.stored_types().await.unwrap().into_iter().collect();
    assert_eq!(listed, expected);
}

/// A refused append, for any reason, stores nothing at all.
pub async fn failed_append_leaves_nothing(store: &dyn EventStore) {
    store
        .append("acct-1", ExpectedVersion::Any, events("Opened", 3))
        .await
        .unwrap();
    let before = everything(store).await;
    let mut bad_batches = vec![
        vec![event("Deposited", 1), event("bad type", 2)],
        vec![
            event("Deposited", 1),
            NewEvent::new("Deposited", &json!([1, 2])),
        ],
        vec![
            event("Deposited", 1),
            NewEvent::new("Deposited", &json!({"s": "a\u{0}b"})),
        ],
        vec![
            event("Deposited", 1),
            event("Deposited", 2).with_schema_version(0),
        ],
    ];
    let mut reserved = event("Deposited", 3);
    reserved
        .metadata_mut()
        .extra
        .insert("event_id".into(), json!("x"));
    bad_batches.push(vec![event("Deposited", 1), reserved]);
    for batch in bad_batches {
        let result = store.append("acct-1", ExpectedVersion::Any, batch).await;
        let error = result.expect_err("an invalid batch must be refused");
        assert!(error.is_invalid_input(), "typed input error, got {error:?}");
    }
    assert_conflict(
        store
            .append("acct-1", ExpectedVersion::Exact(2), events("Deposited", 5))
            .await,
        3,
    );
    let after = everything(store).await;
    assert_eq!(
        before.len(),
        after.len(),
        "nothing of a failed append is stored"
    );
    assert_eq!(store.head_position().await.unwrap(), 3);
    let next = store
        .append("acct-1", ExpectedVersion::Exact(3), events("Deposited", 1))
        .await
        .unwrap();
    assert_eq!(
        (next.version, next.position),
        (4, 4),
        "no version or position was used up"
    );
}

/// Malformed ids, names, batches and limits are typed errors.
pub async fn invalid_input_is_a_typed_error(store: &dyn EventStore) {
    let long = "s".repeat(MAX_STREAM_ID_LEN + 1);
    for stream_id in ["", long.as_str(), "tab\there", "nul\0"] {
        let error = store
            .append(stream_id, ExpectedVersion::Any, events("Ok", 1))
            .await
            .expect_err("bad stream id");
        assert!(
            matches!(error, StoreError::InvalidStreamId { .. }),
            "{error:?}"
        );
    }
    let max_ok = "s".repeat(MAX_STREAM_ID_LEN);
    store
        .append(&max_ok, ExpectedVersion::Any, events("Ok", 1))
        .await
        .expect("a stream id of exactly the maximum length");
    for event_type in ["", "has space", "ünïcode", &"T".repeat(129)] {
        let error = store
            .append("s-1", ExpectedVersion::Any, vec![event(event_type, 1)])
            .await
            .expect_err("bad event type");
        assert!(
            matches!(error, StoreError::InvalidEventType { .. }),
            "{error:?}"
        );
    }
    let error = store
        .append("s-1", ExpectedVersion::Any, Vec::new())
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::BatchSize(0)), "{error:?}");
    let too_many = events("Ok", MAX_EVENTS_PER_APPEND as u64 + 1);
    let error = store
        .append("s-1", ExpectedVersion::Any, too_many)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::BatchSize(_)), "{error:?}");
    let error = store.read_all(0, 0, &EventFilter::all()).await.unwrap_err();
    assert!(matches!(error, StoreError::ZeroLimit), "{error:?}");
    let error = store.read_stream("s-1", 0, 0).await.unwrap_err();
    assert!(matches!(error, StoreError::ZeroLimit), "{error:?}");
    assert_eq!(everything(store).await.len(), 1);
}

/// Stream reads go in version order from a version, with a limit.
pub async fn stream_reads(store: &dyn EventStore) {
    for round in 0..3 {
        for stream in ["a-1", "a-2"] {
            store
                .append(stream, ExpectedVersion::Any, events("E", 2))
                .await
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
    }
    let all = store.read_stream("a-1", 0, 100).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.version).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
    assert!(all.iter().all(|e| e.stream_id == "a-1"));
    assert_strictly_ascending(&all, "stream read");
    let from_one = store.read_stream("a-1", 1, 100).await.unwrap();
    assert_eq!(
        from_one.len(),
        6,
        "versions are 1-based: from 1 is from the start"
    );
    let first_page = store.read_stream("a-1", 0, 3).await.unwrap();
    assert_eq!(
        first_page.iter().map(|e| e.version).collect::<Vec<_>>(),
        [1, 2, 3],
        "a page from 0 is a whole page from the start"
    );
    let tail = store.read_stream("a-1", 4, 2).await.unwrap();
    assert_eq!(tail.iter().map(|e| e.version).collect::<Vec<_>>(), [4, 5]);
    assert!(store.read_stream("a-1", 7, 10).await.unwrap().is_empty());
    assert!(store.read_stream("a-3", 0, 10).await.unwrap().is_empty());
}

/// The global log is in position order, pages with `after` and `limit`,
/// and filters by stream, category and type.
pub async fn global_reads_and_filters(store: &dyn EventStore) {
    let plan: [(&str, &str); 6] = [
        ("user-1", "Registered"),
        ("order-1", "Placed"),
        ("user-2", "Registered"),
        ("order-1", "Paid"),
        ("user-1", "Renamed"),
        ("orders-x", "Placed"),
    ];
    for (i, (stream, event_type)) in plan.iter().enumerate() {
        store
            .append(
                stream,
                ExpectedVersion::Any,
                vec![event(event_type, i as u64)],
            )
            .await
            .unwrap();
    }
    let all = everything(store).await;
    assert_eq!(
        all.iter().map(|e| e.position).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
    assert_eq!(store.head_position().await.unwrap(), 6);
    let page = store.read_all(2, 3, &EventFilter::all()).await.unwrap();
    assert_eq!(
        page.iter().map(|e| e.position).collect::<Vec<_>>(),
        [3, 4, 5]
    );
    assert!(
        store
            .read_all(6, 10, &EventFilter::all())
            .await
            .unwrap()
            .is_empty()
    );
    let positions = |filter: EventFilter| async move {
        store
            .read_all(0, 100, &filter)
            .await
            .unwrap()
            .iter()
            .map(|e| e.position)
            .collect::<Vec<_>>()
    };
    assert_eq!(positions(EventFilter::all().stream("user-1")).await, [1, 5]);
    assert_eq!(
        positions(EventFilter::all().category("user")).await,
        [1, 3, 5]
    );
    assert_eq!(
        positions(EventFilter::all().category("order")).await,
        [2, 4],
        "category is the prefix before the first `-`, not a string prefix"
    );
    assert_eq!(
        positions(EventFilter::all().event_types(["Placed"])).await,
        [2, 6]
    );
    assert_eq!(
        positions(EventFilter::all().event_types(["Registered", "Paid"])).await,
        [1, 3, 4]
    );
    assert_eq!(
        positions(EventFilter::all().category("user").event_types(["Renamed"])).await,
        [5]
    );
    let limited = store
        .read_all(1, 1, &EventFilter::all().category("user"))
        .await
        .unwrap();
    assert_eq!(limited.iter().map(|e| e.position).collect::<Vec<_>>(), [3]);
}

/// Concurrent writers racing on one stream with `Exact` versions: each
/// version is written exactly once.
pub async fn concurrent_appends_to_one_stream(store: &dyn EventStore) {
    const WRITERS: usize = 16;
    const EACH: usize = 10;
    let writer = |id: usize| async move {
        let mut conflicts = 0;
        for n in 0..EACH {
            loop {
                let version = store.stream_version("hot-1").await.unwrap();
                let new = NewEvent::new("Hit", &json!({"writer": id, "n": n}));
                match store
                    .append("hot-1", ExpectedVersion::Exact(version), vec![new])
                    .await
                {
                    Ok(_) => break,
                    Err(e) if e.is_conflict() => conflicts += 1,
                    Err(e) => panic!("writer {id}: {e}"),
                }
            }
        }
        conflicts
    };
    let results = futures_util::future::join_all((0..WRITERS).map(writer)).await;
    let stream = store.read_stream("hot-1", 0, usize::MAX).await.unwrap();
    assert_eq!(stream.len(), WRITERS * EACH, "conflicts seen: {results:?}");
    let versions: Vec<u64> = stream.iter().map(|e| e.version).collect();
    assert_eq!(versions, (1..=(WRITERS * EACH) as u64).collect::<Vec<_>>());
    let mut seen = HashSet::new();
    for event in &stream {
        let data: serde_json::Value = serde_json::from_str(event.data.get()).unwrap();
        assert!(seen.insert(data.to_string()), "event written twice: {data}");
    }
}

/// A subscription delivers what is stored, then what is appended later,
/// and honours its filter.
pub async fn subscription_catch_up_then_live(store: &dyn EventStore) {
    store
        .append("t-1", ExpectedVersion::Any, events("A", 5))
        .await
        .unwrap();
    let from_start = store.subscribe(0, EventFilter::all());
    let from_three = store.subscribe(3, EventFilter::all());
    let only_b = store.subscribe(0, EventFilter::all().event_types(["B"]));
    store
        .append("t-2", ExpectedVersion::Any, events("B", 3))
        .await
        .unwrap();
    store
        .append("t-1", ExpectedVersion::Any, events("A", 2))
        .await
        .unwrap();
    let all = collect(from_start, 10, "from the start").await;
    assert_eq!(
        all.iter().map(|e| e.position).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    let tail = collect(from_three, 7, "after position 3").await;
    assert_eq!(tail.first().map(|e| e.position), Some(4));
    assert_strictly_ascending(&tail, "after position 3");
    let bs = collect(only_b, 3, "type filter").await;
    assert_eq!(bs.iter().map(|e| e.position).collect::<Vec<_>>(), [6, 7, 8]);
    let mut live = store.subscribe(10, EventFilter::all().stream("t-3"));
    store
        .append("t-1", ExpectedVersion::Any, events("A", 1))
        .await
        .unwrap();
    store
        .append("t-3", ExpectedVersion::Any, events("C", 1))
        .await
        .unwrap();
    let next = tokio::time::timeout(WAIT, live.next())
        .await
        .expect("live event");
    assert_eq!(next.unwrap().unwrap().position, 12);
}

/// Subscribers started before, during and after `writers` concurrent
/// writers append `each` single events each see exactly all
/// `writers × each` events, in position order, with no duplicate.
pub async fn subscription_handover_with_concurrent_writers(
    store: &dyn EventStore,
    writers: usize,
    each: usize,
) {
    let total = writers * each;
    let early = store.subscribe(0, EventFilter::all());
    let early_filtered = store.subscribe(0, EventFilter::all().category("w0"));
    let write = |w: usize| async move {
        let stream = format!("w{w}-1");
        for n in 0..each {
            store
                .append(
                    &stream,
                    ExpectedVersion::Any,
                    vec![event("Wrote", n as u64)],
                )
                .await
                .unwrap_or_else(|e| panic!("writer {w}: {e}"));
            if n == each / 2 {
                tokio::task::yield_now().await;
            }
        }
    };
    let writing = futures_util::future::join_all((0..writers).map(write));
    let during = async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        collect(
            store.subscribe(0, EventFilter::all()),
            total,
            "started mid-way",
        )
        .await
    };
    let (_, mid) = tokio::join!(writing, during);
    let late = collect(
        store.subscribe(0, EventFilter::all()),
        total,
        "started after",
    )
    .await;
    let early = collect(early, total, "started before").await;
    let filtered = collect(early_filtered, each, "filtered, started before").await;
    for (what, seen) in [("before", &early), ("mid-way", &mid), ("after", &late)] {
        assert_eq!(seen.len(), total, "{what}");
        assert_strictly_ascending(seen, what);
        let positions: HashSet<u64> = seen.iter().map(|e| e.position).collect();
        assert_eq!(positions.len(), total, "{what}: duplicates");
        assert_eq!(
            seen.iter().map(|e| e.position).collect::<Vec<_>>(),
            (1..=total as u64).collect::<Vec<_>>(),
            "{what}: every position exactly once"
        );
    }
    assert!(filtered.iter().all(|e| e.stream_id == "w0-1"));
    assert_strictly_ascending(&filtered, "filtered");
    let versions: Vec<u64> = filtered.iter().map(|e| e.version).collect();
    assert_eq!(versions, (1..=each as u64).collect::<Vec<_>>());
}

/// Runs every check, each on a fresh store from `make`.
pub async fn run_all<S, F, Fut>(make: F)
where
    S: EventStore,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = S>,
{
    expected_version_semantics(&make().await).await;
    append_records_events(&make().await).await;
    failed_append_leaves_nothing(&make().await).await;
    invalid_input_is_a_typed_error(&make().await).await;
    stream_reads(&make().await).await;
    global_reads_and_filters(&make().await).await;
    concurrent_appends_to_one_stream(&make().await).await;
    subscription_catch_up_then_live(&make().await).await;
    subscription_handover_with_concurrent_writers(&make().await, 8, 50).await;
    idempotency_claim_complete_replay(&make().await).await;
    idempotency_mismatch(&make().await).await;
    idempotency_lease_take_over(&make().await).await;
    idempotency_expiry_and_purge(&make().await).await;
    idempotency_completion_is_atomic_with_append(&make().await).await;
    idempotency_concurrent_claims(&make().await).await;
    idempotency_release(&make().await).await;
    idempotency_stale_tokens_are_refused(&make().await).await;
    idempotency_unclaimed_completion(&make().await).await;
    idempotency_several_completions(&make().await).await;
    idempotency_invalid_keys(&make().await).await;
}
