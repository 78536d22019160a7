//! Acknowledged commands survive `kill -9` of the service under load, on
//! SQLite and PostgreSQL: callers deposit over HTTP into a bank process
//! that is killed at a random moment, several times; after each restart
//! every deposit answered `200` is in the log at the position it was
//! answered with, each account's stream has no gap, and the restarted
//! service's rows add up to the log.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use allframe::store::{PostgresStore, SqliteStore};
use allframe::{EventFilter, EventStore};
use allframe_tests::{
    Listening, fresh_schema, http_request, postgres_options, spawn_listening, try_http_request,
};
use serde_json::{Value, json};

/// Callers depositing at once.
const CALLERS: usize = 16;
/// Kills per backend.
const KILLS: usize = 3;

fn start(backend: &str, place: &str) -> Listening {
    spawn_listening(env!("CARGO_BIN_EXE_bank_node"), &[backend, place])
}

async fn open(addr: SocketAddr) -> String {
    let body = json!({"owner": "Ada", "email": "ada@example.com", "initial_deposit": 0});
    let answer = http_request(
        addr,
        "POST",
        "/commands/open-account",
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(answer.status, 201);
    let body: Value = serde_json::from_slice(&answer.body).unwrap();
    body["aggregate_id"].as_str().unwrap().to_owned()
}

/// Deposits until the server stops answering; every `200` is recorded
/// as (account, position).
async fn deposit_until_killed(
    addr: SocketAddr,
    accounts: Arc<Vec<String>>,
    acknowledged: Arc<Mutex<Vec<(String, u64)>>>,
    caller: usize,
) {
    let mut n = caller;
    loop {
        let account = &accounts[n % accounts.len()];
        n += 1;
        let body = json!({"account_id": account, "amount": 1}).to_string();
        let answer = try_http_request(
            addr,
            "POST",
            "/commands/deposit",
            &[("content-type", "application/json")],
            body.as_bytes(),
        )
        .await;
        match answer {
            Ok(answer) if answer.status == 200 => {
                let body: Value = serde_json::from_slice(&answer.body).unwrap();
                let position = body["position"].as_u64().unwrap();
                acknowledged
                    .lock()
                    .unwrap()
                    .push((account.clone(), position));
            }
            // Anything but a broken connection is a failure of its own.
            Ok(answer) => panic!(
                "deposit answered {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            ),
            Err(_) => return,
        }
    }
}

async fn survive_kills(
    backend: &str,
    place: &str,
    store: impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Box<dyn EventStore>>>>,
) {
    let mut node = start(backend, place);
    let mut accounts = Vec::new();
    for _ in 0..8 {
        accounts.push(open(node.addr).await);
    }
    let accounts = Arc::new(accounts);
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    for kill in 0..KILLS {
        let callers: Vec<_> = (0..CALLERS)
            .map(|caller| {
                tokio::spawn(deposit_until_killed(
                    node.addr,
                    accounts.clone(),
                    acknowledged.clone(),
                    caller,
                ))
            })
            .collect();
        // A different moment each time, with writes in flight.
        tokio::time::sleep(Duration::from_millis(300 + 250 * kill as u64)).await;
        let pid = node.child.id();
        std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
        let _ = node.child.wait();
        for caller in callers {
            caller.await.unwrap();
        }
        node = start(backend, place);
    }
    drop(node);

    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 100,
        "only {} deposits were answered",
        acknowledged.len()
    );
    let store = store().await;
    let mut log = Vec::new();
    loop {
        let page = store
            .read_all(log.len() as u64, 10_000, &EventFilter::all())
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        log.extend(page);
    }
    // Positions are 1, 2, 3, … with nothing missing.
    for (index, event) in log.iter().enumerate() {
        assert_eq!(event.position, index as u64 + 1);
    }
    for (account, position) in &acknowledged {
        let event = &log[*position as usize - 1];
        assert_eq!(
            event.stream_id,
            format!("account-{account}"),
            "at {position}"
        );
        assert_eq!(event.event_type, "MoneyDeposited", "at {position}");
    }
    // Each stream's versions run 1, 2, 3, … : no half-written command.
    let mut versions = std::collections::HashMap::<&str, u64>::new();
    for event in &log {
        let version = versions.entry(event.stream_id.as_str()).or_default();
        *version += 1;
        assert_eq!(event.version, *version, "{}", event.stream_id);
    }
    store.close().await;

    // The restarted service's rows add up to the log.
    let node = start(backend, place);
    let head = log.len();
    for account in accounts.iter() {
        let deposits = log
            .iter()
            .filter(|e| {
                e.stream_id == format!("account-{account}") && e.event_type == "MoneyDeposited"
            })
            .count();
        // On PostgreSQL the restarted node (a new node id) takes the
        // projection's lease once the killed node's has expired; until
        // then the read answers 503 with `Retry-After`.
        let path = format!("/projections/accounts/{account}?min_position={head}");
        let mut answer = http_request(node.addr, "GET", &path, &[], b"").await;
        for _ in 0..30 {
            if answer.status != 503 {
                break;
            }
            assert!(answer.header("retry-after").is_some());
            tokio::time::sleep(Duration::from_secs(1)).await;
            answer = http_request(node.addr, "GET", &path, &[], b"").await;
        }
        assert_eq!(
            answer.status,
            200,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        let row: Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(row["balance"], deposits as u64, "{account}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_acknowledged_deposits_survive_kills() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bank.db").display().to_string();
    let opened = path.clone();
    survive_kills("sqlite", &path, move || {
        let path = opened.clone();
        Box::pin(
            async move { Box::new(SqliteStore::open(&path).await.unwrap()) as Box<dyn EventStore> },
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_acknowledged_deposits_survive_kills() {
    let Some(options) = postgres_options().await else {
        return;
    };
    let schema = fresh_schema();
    let opened = schema.clone();
    survive_kills("postgres", &schema, move || {
        let (options, schema) = (options.clone(), opened.clone());
        Box::pin(async move {
            Box::new(
                PostgresStore::connect_with(options, Some(&schema), 16)
                    .await
                    .unwrap(),
            ) as Box<dyn EventStore>
        })
    })
    .await;
}
