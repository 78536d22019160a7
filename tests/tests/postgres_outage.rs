//! PostgreSQL going away under load: every connection of the service is
//! killed (`pg_terminate_backend`) again and again while callers deposit.
//! Meanwhile commands answer `200` or a clean `503` problem (never a `500`,
//! never a hang); afterwards the service works again without a restart,
//! and every deposit answered `200` is in the log.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use allframe::store::PostgresStore;
use allframe::{EventFilter, EventStore};
use allframe_tests::{fresh_schema, postgres_options, try_http_request};
use serde_json::{Value, json};

/// A deposit of 1 into `account`, with an idempotency key when `key` is
/// given (its claim goes through the read pool, the rest through the
/// writer's connection: both get killed).
async fn deposit(
    addr: std::net::SocketAddr,
    account: String,
    key: Option<String>,
) -> allframe_tests::RawResponse {
    let body = json!({"account_id": account, "amount": 1}).to_string();
    let mut headers = vec![("content-type", "application/json")];
    if let Some(key) = &key {
        headers.push(("idempotency-key", key.as_str()));
    }
    try_http_request(addr, "POST", "/commands/deposit", &headers, body.as_bytes())
        .await
        .expect("the service answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connections_answer_503_and_the_service_recovers() {
    let Some(options) = postgres_options().await else {
        return;
    };
    let schema = fresh_schema();
    // Its own name, so only this service's connections are killed.
    let name = format!("outage-{}", &schema[schema.len() - 12..]);
    let store = PostgresStore::builder(options.clone().application_name(&name))
        .schema(Some(&schema))
        .connect()
        .await
        .unwrap();
    let app = bank::app(&store)
        .command_timeout(Duration::from_secs(10))
        .build()
        .await
        .unwrap();
    let server = allframe_tests::server::serve(app).await;
    let addr = server.addr;

    let opened = try_http_request(
        addr,
        "POST",
        "/commands/open-account",
        &[("content-type", "application/json")],
        json!({"owner": "Ada", "email": "ada@example.com", "initial_deposit": 0})
            .to_string()
            .as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(opened.status, 201);
    let account = serde_json::from_slice::<Value>(&opened.body).unwrap()["aggregate_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let unavailable = Arc::new(Mutex::new(0usize));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let callers: Vec<_> = (0..8)
        .map(|caller| {
            let (account, acknowledged, unavailable, stop) = (
                account.clone(),
                acknowledged.clone(),
                unavailable.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let key = (caller % 2 == 1).then(|| format!("{caller}-{n}"));
                    let answer = deposit(addr, account.clone(), key).await;
                    match answer.status {
                        200 => {
                            let body: Value = serde_json::from_slice(&answer.body).unwrap();
                            acknowledged
                                .lock()
                                .unwrap()
                                .push(body["position"].as_u64().unwrap());
                        }
                        503 => {
                            let body: Value = serde_json::from_slice(&answer.body).unwrap();
                            assert_eq!(body["type"], "/problems/store-unavailable", "{body}");
                            assert_eq!(answer.header("retry-after"), Some("1"));
                            *unavailable.lock().unwrap() += 1;
                        }
                        status => panic!(
                            "deposit answered {status}: {}",
                            String::from_utf8_lossy(&answer.body)
                        ),
                    }
                }
            })
        })
        .collect();

    let admin = sqlx::PgPool::connect_with(options).await.unwrap();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let pids: Vec<i32> =
            sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE application_name = $1")
                .bind(&name)
                .fetch_all(&admin)
                .await
                .unwrap();
        assert!(!pids.is_empty(), "the service has connections");
        for pid in pids {
            sqlx::query("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .execute(&admin)
                .await
                .unwrap();
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for caller in callers {
        caller.await.unwrap();
    }
    let refused = *unavailable.lock().unwrap();
    eprintln!(
        "{} deposits answered 200, {refused} answered 503 while connections were killed",
        acknowledged.lock().unwrap().len()
    );

    // Working again, without a restart.
    let mut last = 0;
    for _ in 0..20 {
        let answer = deposit(addr, account.clone(), None).await;
        assert_eq!(
            answer.status,
            200,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        last = serde_json::from_slice::<Value>(&answer.body).unwrap()["position"]
            .as_u64()
            .unwrap();
        acknowledged.lock().unwrap().push(last);
    }
    // Every acknowledged deposit is in the log.
    let log = store
        .read_all(
            0,
            100_000,
            &EventFilter::all().stream(format!("account-{account}")),
        )
        .await
        .unwrap();
    let positions: std::collections::HashSet<u64> = log.iter().map(|e| e.position).collect();
    for position in acknowledged.lock().unwrap().iter() {
        assert!(
            positions.contains(position),
            "acknowledged {position} is missing"
        );
    }
    assert!(log.iter().any(|e| e.position == last));
    admin.close().await;
    drop(server);
}
