//! The check for a store that keeps its log across a close and an open.

use std::future::Future;
use std::time::Duration;

use serde_json::json;

use super::everything;
use crate::store::{Claim, Completion};
use crate::{EventStore, ExpectedVersion, NewEvent};

const HOUR: Duration = Duration::from_secs(3600);

/// A store that keeps its log (a file, a journal) gives it back after
/// [`close`](EventStore::close) and an open, as it was: every event with
/// its position, version, data and time, the stored types, completed
/// idempotency keys (completed with events and on their own). The
/// reopened store goes on from where the first stopped. `store` is fresh and empty; `reopen` opens it again
/// once it is closed and dropped.
pub async fn log_survives_reopen<S, R, F>(store: S, reopen: impl FnOnce() -> F)
where
    S: EventStore,
    R: EventStore,
    F: Future<Output = R>,
{
    let note = |n: u64| NewEvent::new("Noted", &json!({ "n": n }));
    store
        .append("note-a", ExpectedVersion::NoStream, vec![note(1), note(2)])
        .await
        .unwrap();
    store
        .append("note-b", ExpectedVersion::NoStream, vec![note(3)])
        .await
        .unwrap();
    let refused = store
        .append("note-a", ExpectedVersion::Exact(1), vec![note(4)])
        .await;
    assert!(refused.is_err(), "a wrong expected version is refused");
    let records = store.idempotency().expect("idempotency records");
    let acquire = async |key: &str, fingerprint: &str| match records
        .claim_idempotency_key(key, fingerprint, HOUR, HOUR)
        .await
        .unwrap()
    {
        Claim::Acquired { token } => token,
        other => panic!("a fresh key is acquired, got {other:?}"),
    };
    let token = acquire("k1", "f1").await;
    let completion = Completion::new("k1", &token, |appended| {
        format!("appended at {}", appended.position)
    });
    records
        .append_with(
            "note-b",
            ExpectedVersion::Exact(1),
            vec![note(5)],
            vec![completion],
        )
        .await
        .unwrap();
    let token = acquire("k2", "f2").await;
    records
        .complete_idempotency_key("k2", &token, "nothing to do".into())
        .await
        .unwrap();
    let log = everything(&store).await;
    let types = store.stored_types().await.unwrap();
    store.close().await;
    drop(store);

    let reopened = reopen().await;
    let after = everything(&reopened).await;
    assert_eq!(
        serde_json::to_value(&after).unwrap(),
        serde_json::to_value(&log).unwrap(),
        "the log comes back as it was"
    );
    assert_eq!(reopened.head_position().await.unwrap(), 4);
    assert_eq!(reopened.stream_version("note-a").await.unwrap(), 2);
    assert_eq!(reopened.stored_types().await.unwrap(), types);
    let records = reopened.idempotency().expect("idempotency records");
    let claim = async |key: &str, fingerprint: &str| {
        records
            .claim_idempotency_key(key, fingerprint, HOUR, HOUR)
            .await
            .unwrap()
    };
    assert_eq!(
        claim("k1", "f1").await,
        Claim::Completed("appended at 4".into())
    );
    assert_eq!(
        claim("k2", "f2").await,
        Claim::Completed("nothing to do".into())
    );
    assert_eq!(claim("k1", "other").await, Claim::Mismatch);
    let next = reopened
        .append("note-a", ExpectedVersion::Exact(2), vec![note(6)])
        .await
        .unwrap();
    assert_eq!((next.position, next.version), (5, 3));
    reopened.close().await;
}
