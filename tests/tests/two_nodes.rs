//! Two bank processes on one database, each with its own aggregate state
//! cache: a state cached by one goes stale when the other writes, and that
//! must cost a retry, never a wrong answer. On SQLite (one file) and
//! PostgreSQL (one schema).

use allframe_tests::{
    Listening, RawResponse, fresh_schema, http_request, postgres_options, spawn_listening,
};
use serde_json::{Value, json};

/// A bank node; killed when dropped.
type Node = Listening;

fn node(backend: &str, place: &str) -> Node {
    spawn_listening(env!("CARGO_BIN_EXE_bank_node"), &[backend, place])
}

async fn command(node: &Node, name: &str, body: Value) -> RawResponse {
    http_request(
        node.addr,
        "POST",
        &format!("/commands/{name}"),
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    )
    .await
}

fn json_of(response: &RawResponse) -> Value {
    serde_json::from_slice(&response.body).unwrap()
}

/// Expects a success (201 for a create, 200 otherwise) and returns the
/// aggregate's version after it.
fn version(response: &RawResponse) -> u64 {
    assert!(
        response.status == 200 || response.status == 201,
        "{} {}",
        response.status,
        String::from_utf8_lossy(&response.body)
    );
    json_of(response)["version"].as_u64().unwrap()
}

async fn two_nodes_keep_one_account_right(a: Node, b: Node) {
    let opened = command(
        &a,
        "open-account",
        json!({"owner": "Ada", "email": "ada@example.com", "initial_deposit": 0}),
    )
    .await;
    assert_eq!(version(&opened), 1);
    let id = json_of(&opened)["aggregate_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deposit = |amount: u64| json!({"account_id": id, "amount": amount});
    let withdraw = |amount: u64| json!({"account_id": id, "amount": amount});

    // A caches the account at balance 10.
    assert_eq!(version(&command(&a, "deposit", deposit(10)).await), 2);
    // B writes behind A's back.
    assert_eq!(version(&command(&b, "deposit", deposit(100)).await), 3);
    // On A's cached state (10) this would be refused; A reads the tail
    // before it answers a refusal, and finds 110.
    assert_eq!(version(&command(&a, "withdraw", withdraw(50)).await), 4);
    // B's cached state (version 3) is stale: its append conflicts, it reads
    // the tail and retries.
    assert_eq!(version(&command(&b, "deposit", deposit(1)).await), 5);
    // A refusal that stands after reading the tail: the balance is 61.
    let refused = command(&a, "withdraw", withdraw(62)).await;
    assert_eq!(
        refused.status,
        422,
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
    assert_eq!(json_of(&refused)["type"], "/problems/insufficient-funds");

    // Alternating, every answer is the next version.
    let mut expected = 6;
    for round in 0..20 {
        let node = if round % 2 == 0 { &a } else { &b };
        assert_eq!(
            version(&command(node, "deposit", deposit(1)).await),
            expected
        );
        expected += 1;
    }
    // Concurrently on both: each 2xx is one event, and nothing else is
    // written; conflicts past the retries are 409s and write nothing.
    let calls = (0..40).map(|i| {
        let node = if i % 2 == 0 { &a } else { &b };
        command(node, "deposit", deposit(1))
    });
    let answers = futures_util::future::join_all(calls).await;
    let accepted = answers.iter().filter(|r| r.status == 200).count() as u64;
    for answer in &answers {
        assert!(
            answer.status == 200 || answer.status == 409,
            "{} {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
    }
    let balance = 61 + 20 + accepted;
    // Withdrawing exactly the balance on either node succeeds, and one
    // cent more is refused on the other: both see every committed deposit.
    let last = command(&b, "withdraw", withdraw(balance)).await;
    assert_eq!(version(&last), expected + accepted);
    let refused = command(&a, "withdraw", withdraw(1)).await;
    assert_eq!(
        refused.status,
        422,
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
}

#[tokio::test]
async fn two_sqlite_processes_on_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bank.db");
    let path = path.to_str().unwrap();
    let a = node("sqlite", path);
    let b = node("sqlite", path);
    two_nodes_keep_one_account_right(a, b).await;
}

#[tokio::test]
async fn two_postgres_processes_on_one_schema() {
    if postgres_options().await.is_none() {
        return;
    }
    let schema = fresh_schema();
    let a = node("postgres", &schema);
    let b = node("postgres", &schema);
    two_nodes_keep_one_account_right(a, b).await;
}
