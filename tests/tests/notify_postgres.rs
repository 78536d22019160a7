//! Commits notified between nodes: two PostgreSQL stores on one schema
//! stand for two nodes. A store's head moves on the other's commits only
//! through the notification (its own writer never sees them), so these
//! tests watch the head.

use std::time::Duration;

use allframe::store::PostgresStore;
use allframe::{EventFilter, NewEvent};
use allframe::{EventStore, ExpectedVersion};
use allframe_tests::{fresh_schema, postgres_options};
use futures_util::StreamExt;
use serde_json::json;
use tokio::time::timeout;

async fn node(schema: &str, notifications: bool) -> Option<PostgresStore> {
    let options = postgres_options().await?;
    Some(
        PostgresStore::builder(options)
            .schema(Some(schema))
            .notifications(notifications)
            .connect()
            .await
            .expect("open the PostgreSQL store"),
    )
}

async fn deposit(store: &PostgresStore, stream: impl AsRef<str>) -> u64 {
    store
        .append(
            stream.as_ref(),
            ExpectedVersion::Any,
            vec![NewEvent::new("Deposited", &json!({ "amount": 1 }))],
        )
        .await
        .expect("append")
        .position
}

/// Waits (up to 10 s, far past any notification) until `store`'s head
/// signal reaches `position`.
async fn head_reaches(store: &PostgresStore, position: u64) {
    let mut head = store.watch_head();
    let reached = timeout(Duration::from_secs(10), head.wait_for(|h| *h >= position))
        .await
        .is_ok_and(|waited| waited.is_ok());
    assert!(
        reached,
        "the head signal stayed at {} below {position}",
        *head.borrow()
    );
}

#[tokio::test]
async fn another_nodes_commit_moves_the_head_and_wakes_subscriptions() {
    let schema = fresh_schema();
    let Some(a) = node(&schema, true).await else {
        return;
    };
    let b = node(&schema, true).await.unwrap();
    // Listening has started when the first read of the head is done; a
    // commit before then is read, one after it is notified: both end in
    // the same place, which is what is asserted.
    let mut subscription = b.subscribe(0, EventFilter::all());
    for n in 1..=20u64 {
        let position = deposit(&a, format!("account-{}", n % 3)).await;
        head_reaches(&b, position).await;
        let event = timeout(Duration::from_secs(10), subscription.next())
            .await
            .expect("the subscription delivers")
            .unwrap()
            .unwrap();
        assert_eq!(event.position, position);
    }
    // A batch is one notification with its last position.
    let appends = (0..50).map(|n| deposit(&a, format!("account-{n}")));
    let last = futures_util::future::join_all(appends)
        .await
        .into_iter()
        .max()
        .unwrap();
    head_reaches(&b, last).await;
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn without_notifications_only_its_own_commits_move_the_head() {
    let schema = fresh_schema();
    let Some(quiet) = node(&schema, false).await else {
        return;
    };
    let loud = node(&schema, true).await.unwrap();
    let theirs = deposit(&loud, "account-1").await;
    // The other direction works: `loud` listens, `quiet` does not notify.
    let mine = deposit(&quiet, "account-2").await;
    assert!(mine > theirs);
    assert_eq!(*quiet.watch_head().borrow(), mine);
    let before = deposit(&loud, "account-1").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        *quiet.watch_head().borrow(),
        mine,
        "a store that does not listen saw another node's commit at {before}"
    );
    // Reads and subscriptions still see everything (by polling).
    assert_eq!(quiet.head_position().await.unwrap(), before);
    let seen: Vec<u64> = quiet
        .subscribe(0, EventFilter::all())
        .take(3)
        .map(|event| event.unwrap().position)
        .collect()
        .await;
    assert_eq!(seen, vec![theirs, mine, before]);
    quiet.close().await;
    loud.close().await;
}

#[tokio::test]
async fn a_listener_that_lost_its_connection_reads_the_head_again() {
    let schema = fresh_schema();
    let Some(a) = node(&schema, true).await else {
        return;
    };
    let b = node(&schema, true).await.unwrap();
    let first = deposit(&a, "account-1").await;
    head_reaches(&b, first).await;
    let admin = sqlx::PgPool::connect_with(postgres_options().await.unwrap())
        .await
        .unwrap();
    for round in 0..3 {
        // Every listener of the database (other tests' too: they must
        // recover the same way).
        // (Chosen first, terminated after: in one `WHERE` the server may
        // call the function before it checks the name.)
        let listeners: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'allframe-listener'",
        )
        .fetch_all(&admin)
        .await
        .unwrap();
        assert!(
            !listeners.is_empty(),
            "round {round}: no listener was found"
        );
        for pid in listeners {
            sqlx::query("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .execute(&admin)
                .await
                .unwrap();
        }
        // Committed while `b` is not listening: its notification is lost.
        let missed = deposit(&a, "account-1").await;
        head_reaches(&b, missed).await;
        // And it listens again: later commits are notified.
        let later = deposit(&a, "account-2").await;
        head_reaches(&b, later).await;
    }
    admin.close().await;
    a.close().await;
    b.close().await;
}
