//! `transfer-money` over HTTP on a real socket: `202 {saga_id}` with
//! `Location`, the instance read back at `GET /sagas/{name}/{id}` until it
//! ends, idempotent starts, refusals before a saga starts, and problems
//! for unknown sagas and instances; on SQLite and on the AllSource adapter.

use allframe::store::SqliteStore;
use allframe::{EventStore, EventStreamConfig};
use allframe_tests::server::{Server, serve_bank};
use allframe_tests::{http_request, saga_ended};
use serde_json::{Value, json};

const JSON: (&str, &str) = ("content-type", "application/json");

async fn post(
    server: &Server,
    command: &str,
    body: Value,
    headers: &[(&str, &str)],
) -> (u16, Value, Option<String>) {
    let mut all = vec![JSON];
    all.extend_from_slice(headers);
    let response = http_request(
        server.addr,
        "POST",
        &format!("/commands/{command}"),
        &all,
        body.to_string().as_bytes(),
    )
    .await;
    let location = response.header("location").map(str::to_owned);
    (
        response.status,
        serde_json::from_slice(&response.body).unwrap(),
        location,
    )
}

async fn get(server: &Server, path: &str) -> (u16, Value) {
    let response = http_request(server.addr, "GET", path, &[], b"").await;
    (
        response.status,
        serde_json::from_slice(&response.body).unwrap(),
    )
}

async fn open(server: &Server, initial_deposit: u64) -> String {
    let body =
        json!({"owner": "Ada", "email": "ada@example.com", "initial_deposit": initial_deposit});
    let (status, opened, _) = post(server, "open-account", body, &[]).await;
    assert_eq!(status, 201);
    opened["aggregate_id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("bank.db")).await.unwrap();
    transfers_over_http_on(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_over_http_on_allsource() {
    let dir = tempfile::tempdir().unwrap();
    let store = allframe_allsource::AllSourceStore::open(dir.path())
        .await
        .unwrap();
    transfers_over_http_on(&store).await;
}

async fn transfers_over_http_on(store: &dyn EventStore) {
    let server = serve_bank(store, EventStreamConfig::default()).await;
    let (a, b) = (open(&server, 100).await, open(&server, 0).await);

    let transfer = json!({"from_account_id": a, "to_account_id": b, "amount": 30});
    let key = [("idempotency-key", "transfer-1")];
    let (status, started, location) = post(&server, "transfer-money", transfer.clone(), &key).await;
    assert_eq!(status, 202, "{started}");
    let id = started["saga_id"].as_str().unwrap().to_owned();
    assert_eq!(started, json!({"saga_id": id}));
    let location = location.unwrap();
    assert_eq!(location, format!("/sagas/transfer-money/{id}"));
    let view = saga_ended(server.addr, &location, None).await;
    assert_eq!(view["status"], "completed");
    assert_eq!(view["name"], "transfer-money");
    assert_eq!(view["id"], id.as_str());
    assert!(view["started_at"].is_string() && view["ended_at"].is_string());
    assert!(view.get("reason").is_none());

    // The same key again: the same saga, not a second transfer.
    let (status, again, _) = post(&server, "transfer-money", transfer, &key).await;
    assert_eq!((status, &again), (202, &started));
    let balance = |account: &str| {
        let account = account.to_owned();
        async move {
            let loaded = allframe::load::<bank::domain::Account>(store, &account).await;
            loaded.unwrap().state.balance
        }
    };
    assert_eq!((balance(&a).await, balance(&b).await), (70, 30));

    // Refused sagas say why.
    let too_much = json!({"from_account_id": a, "to_account_id": b, "amount": 1000});
    let (_, started, location) = post(&server, "transfer-money", too_much, &[]).await;
    let view = saga_ended(server.addr, &location.unwrap(), None).await;
    assert_eq!(
        (view["status"].as_str(), view["reason"].as_str()),
        (Some("rejected"), Some("insufficient-funds")),
        "{started}"
    );
    let nowhere = json!({"from_account_id": a, "to_account_id": "nobody", "amount": 5});
    let (_, _, location) = post(&server, "transfer-money", nowhere, &[]).await;
    let view = saga_ended(server.addr, &location.unwrap(), None).await;
    assert_eq!(
        (view["status"].as_str(), view["reason"].as_str()),
        (Some("refunded"), Some("not-found"))
    );

    // Refused before it starts: no saga.
    let same = json!({"from_account_id": a, "to_account_id": a, "amount": 5});
    let (status, problem, location) = post(&server, "transfer-money", same, &[]).await;
    assert_eq!(
        (status, problem["type"].as_str(), location),
        (422, Some("/problems/same-account"), None),
        "{problem}"
    );
    let zero = json!({"from_account_id": a, "to_account_id": b, "amount": 0});
    let (status, problem, _) = post(&server, "transfer-money", zero, &[]).await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (422, Some("/problems/validation-failed")),
        "{problem}"
    );

    let (status, problem) = get(&server, "/sagas/transfer-money/no-such-id").await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (404, Some("/problems/saga-not-found"))
    );
    let (status, problem) = get(&server, &format!("/sagas/no-such-saga/{id}")).await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (404, Some("/problems/unknown-saga"))
    );
    let (status, list) = get(&server, "/admin/sagas").await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["name"], "transfer-money");
    assert_eq!(list[0]["state"], "running");
    assert_eq!(list[0]["overdue"], json!([]));
    assert_eq!(
        list[0]["counts"],
        json!({"completed": 1, "rejected": 1, "refunded": 1}),
        "{list}"
    );
    // The runner writes its checkpoint at most every 100 ms: it may
    // still be on its way.
    let mut list = list;
    for _ in 0..100 {
        if list[0]["checkpoint"].as_u64().unwrap() > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        list = get(&server, "/admin/sagas").await.1;
    }
    assert!(list[0]["checkpoint"].as_u64().unwrap() > 0, "{list}");
    let response = http_request(server.addr, "GET", "/sagas/transfer-money/x", &[], b"").await;
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json")
    );
}
