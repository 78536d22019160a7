//! The bank's rules (`bank::rules`, `--jwt-secret`) over a real socket:
//! commands, rows, lists, the query, sagas acting for whoever started
//! them, and the event streams over real WebSocket and SSE clients with
//! `access_token`. Also what handlers see of the principal
//! (`Principal::current`), through a command and a query of this test's
//! own.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use allframe::auth::Principal;
use allframe::{
    Aggregate, Event, EventStore, Projections, command, command_handler, query, query_handler,
};
use allframe_tests::server::{OnSqlite, serve_on_sqlite};
use allframe_tests::tokens::{SECRET, bearer, token};
use allframe_tests::{RawResponse, http_request, saga_ended};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;

// A command and a query that report who they run for.

#[derive(Event, Debug, Clone, PartialEq)]
enum NoteEvent {
    Noted { by: Option<String> },
}

#[derive(Debug, Default)]
struct Note;

impl Aggregate for Note {
    type Event = NoteEvent;
    const CATEGORY: &'static str = "note";

    fn apply(&mut self, _: &NoteEvent) {}
}

/// Writes down who sent it.
#[command(aggregate = Note, create, name = "take-note")]
#[derive(Debug, Clone, Serialize, Deserialize, garde::Validate)]
struct TakeNote {}

#[command_handler]
async fn take_note(_: TakeNote, _: &Note) -> Result<Vec<NoteEvent>, Infallible> {
    let by = Principal::current().map(|principal| principal.subject);
    Ok(vec![NoteEvent::Noted { by }])
}

/// Answers who asks.
#[query(name = "who-am-i")]
#[derive(Debug, Deserialize, garde::Validate)]
struct WhoAmI {}

/// Who asked, and with which roles.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Asker {
    subject: Option<String>,
    roles: Vec<String>,
}

#[query_handler]
async fn who_am_i(_: WhoAmI, _: &Projections) -> Result<Asker, Infallible> {
    let principal = Principal::current();
    Ok(Asker {
        subject: principal.as_ref().map(|p| p.subject.clone()),
        roles: principal.map(|p| p.roles).unwrap_or_default(),
    })
}

async fn bank() -> OnSqlite {
    serve_on_sqlite(|store| bank::rules::secured(bank::app(store), store, SECRET)).await
}

fn ada() -> String {
    bearer(&token("ada", &[]))
}

fn bob() -> String {
    bearer(&token("bob", &[]))
}

fn root() -> String {
    bearer(&token("root", &["admin"]))
}

async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    who: Option<&str>,
    body: Value,
) -> RawResponse {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(who) = who {
        headers.push(("authorization", who));
    }
    let body = if method == "POST" {
        body.to_string()
    } else {
        String::new()
    };
    http_request(addr, method, path, &headers, body.as_bytes()).await
}

fn json_of(response: &RawResponse) -> Value {
    serde_json::from_slice(&response.body).unwrap_or(Value::Null)
}

/// The status and, for a problem, its code (the end of its `type`).
fn outcome(response: &RawResponse) -> (u16, String) {
    let body = json_of(response);
    let code = match response.header("content-type") {
        Some("application/problem+json") => body["type"]
            .as_str()
            .and_then(|t| t.rsplit('/').next())
            .unwrap_or_default()
            .to_owned(),
        _ => String::new(),
    };
    (response.status, code)
}

async fn open(addr: SocketAddr, who: &str, owner: &str, deposit: u64) -> String {
    let body = json!({"owner": owner, "email": "x@example.com", "initial_deposit": deposit});
    let response = call(addr, "POST", "/commands/open-account", Some(who), body).await;
    assert_eq!(
        response.status,
        201,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    json_of(&response)["aggregate_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_follow_the_rules() {
    let bank = bank().await;
    let addr = bank.server.addr;
    let body = |owner: &str| json!({"owner": owner, "email": "x@example.com"});

    // Opening: only for yourself, unless an admin.
    let response = call(addr, "POST", "/commands/open-account", None, body("ada")).await;
    assert_eq!(outcome(&response), (401, "unauthenticated".into()));
    let response = call(
        addr,
        "POST",
        "/commands/open-account",
        Some(&ada()),
        body("bob"),
    )
    .await;
    assert_eq!(outcome(&response), (403, "forbidden".into()));
    assert!(
        json_of(&response)["detail"]
            .as_str()
            .unwrap()
            .contains("`ada`")
    );
    let adas = open(addr, &ada(), "ada", 100).await;
    let bobs = open(addr, &root(), "bob", 0).await;

    // Deposits: anyone signed in.
    let deposit = json!({"account_id": adas, "amount": 5});
    let response = call(
        addr,
        "POST",
        "/commands/deposit",
        Some(&bob()),
        deposit.clone(),
    )
    .await;
    assert_eq!(outcome(&response), (200, String::new()));
    let response = call(addr, "POST", "/commands/deposit", None, deposit).await;
    assert_eq!(outcome(&response), (401, "unauthenticated".into()));

    // Withdrawals and closing: the owner (or an admin).
    let withdraw = json!({"account_id": adas, "amount": 5});
    let response = call(
        addr,
        "POST",
        "/commands/withdraw",
        Some(&bob()),
        withdraw.clone(),
    )
    .await;
    assert_eq!(outcome(&response), (403, "forbidden".into()));
    let response = call(
        addr,
        "POST",
        "/commands/withdraw",
        Some(&ada()),
        withdraw.clone(),
    )
    .await;
    assert_eq!(outcome(&response), (200, String::new()));
    let response = call(addr, "POST", "/commands/withdraw", Some(&root()), withdraw).await;
    assert_eq!(outcome(&response), (200, String::new()));
    let close = json!({"account_id": bobs});
    let response = call(
        addr,
        "POST",
        "/commands/close-account",
        Some(&ada()),
        close.clone(),
    )
    .await;
    assert_eq!(outcome(&response), (403, "forbidden".into()));
    let response = call(addr, "POST", "/commands/close-account", Some(&bob()), close).await;
    assert_eq!(outcome(&response), (200, String::new()));
    // An account that does not exist is a 404 for anyone.
    let missing = json!({"account_id": "nope", "amount": 1});
    let response = call(addr, "POST", "/commands/withdraw", Some(&bob()), missing).await;
    assert_eq!(response.status, 404);

    // Each event records who sent its command, roles too.
    let events = bank
        .store
        .read_stream(&format!("account-{adas}"), 0, 10)
        .await
        .unwrap();
    let who: Vec<(Option<&str>, Option<&Value>)> = events
        .iter()
        .map(|e| {
            (
                e.metadata.extra.get("principal").and_then(Value::as_str),
                e.metadata.extra.get("principal_roles"),
            )
        })
        .collect();
    let admin = json!(["admin"]);
    assert_eq!(
        who,
        [
            (Some("ada"), None),
            (Some("ada"), None),
            (Some("bob"), None),
            (Some("ada"), None),
            (Some("root"), Some(&admin)),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_follow_the_rules() {
    let bank = bank().await;
    let addr = bank.server.addr;
    let adas = open(addr, &ada(), "ada", 10).await;
    open(addr, &bob(), "bob", 10_000).await;
    open(addr, &ada(), "ada", 20).await;
    let row = format!("/projections/accounts/{adas}?min_position=6");

    let response = call(addr, "GET", &row, Some(&ada()), Value::Null).await;
    assert_eq!(outcome(&response), (200, String::new()));
    assert_eq!(json_of(&response)["owner"], "ada");
    let response = call(addr, "GET", &row, Some(&bob()), Value::Null).await;
    assert_eq!(outcome(&response), (403, "forbidden".into()));
    assert!(response.header("allframe-position").is_none());
    let response = call(addr, "GET", &row, Some(&root()), Value::Null).await;
    assert_eq!(outcome(&response), (200, String::new()));
    let response = call(addr, "GET", &row, None, Value::Null).await;
    assert_eq!(outcome(&response), (401, "unauthenticated".into()));
    // A missing row is a 404 whoever asks.
    let response = call(
        addr,
        "GET",
        "/projections/accounts/nope",
        Some(&bob()),
        Value::Null,
    )
    .await;
    assert_eq!(outcome(&response), (404, "row-not-found".into()));

    // Lists: one's own only, by owner.
    let own = call(
        addr,
        "GET",
        "/projections/accounts?owner=ada&min_position=6",
        Some(&ada()),
        Value::Null,
    )
    .await;
    assert_eq!(outcome(&own), (200, String::new()));
    let rows = json_of(&own);
    let owners: Vec<&str> = rows["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["owner"].as_str().unwrap())
        .collect();
    assert_eq!(owners, ["ada", "ada"]);
    for list in [
        "/projections/accounts",
        "/projections/accounts?owner=bob",
        "/projections/accounts?limit=5",
    ] {
        let response = call(addr, "GET", list, Some(&ada()), Value::Null).await;
        assert_eq!(outcome(&response), (403, "forbidden".into()), "{list}");
        assert!(
            json_of(&response)["detail"]
                .as_str()
                .unwrap()
                .contains("owner=ada")
        );
    }
    let all = call(
        addr,
        "GET",
        "/projections/accounts",
        Some(&root()),
        Value::Null,
    )
    .await;
    assert_eq!(json_of(&all)["items"].as_array().unwrap().len(), 3);

    // The query: admins only; its parameters are still checked first.
    let query = "/queries/accounts-over?min_balance=1000&min_position=6";
    let response = call(addr, "GET", query, Some(&ada()), Value::Null).await;
    assert_eq!(outcome(&response), (403, "forbidden".into()));
    let response = call(addr, "GET", query, Some(&root()), Value::Null).await;
    assert_eq!(outcome(&response), (200, String::new()));
    assert_eq!(json_of(&response)["items"][0]["owner"], "bob");
    let response = call(
        addr,
        "GET",
        "/queries/accounts-over?min_balance=x",
        Some(&ada()),
        Value::Null,
    )
    .await;
    assert_eq!(response.status, 400);

    // The admin routes.
    let response = call(addr, "GET", "/admin/projections", Some(&ada()), Value::Null).await;
    assert_eq!(outcome(&response), (403, "forbidden".into()));
    let response = call(
        addr,
        "GET",
        "/admin/projections",
        Some(&root()),
        Value::Null,
    )
    .await;
    assert_eq!(response.status, 200);
}

async fn balance(addr: SocketAddr, account: &str) -> u64 {
    let path = format!("/projections/accounts/{account}");
    let response = call(addr, "GET", &path, Some(&root()), Value::Null).await;
    json_of(&response)["balance"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_is_seen_by_whoever_asked_for_it_and_admins() {
    let bank = bank().await;
    let addr = bank.server.addr;
    let adas = open(addr, &ada(), "ada", 100).await;
    let bobs = open(addr, &bob(), "bob", 100).await;
    let body = json!({"from_account_id": adas, "to_account_id": bobs, "amount": 30});
    let response = call(addr, "POST", "/commands/transfer-money", Some(&ada()), body).await;
    assert_eq!(response.status, 202);
    let location = response.header("location").unwrap().to_owned();

    // Ada started it: she follows it to its end, and so may an admin.
    assert_eq!(
        saga_ended(addr, &location, Some(&ada())).await["status"],
        "completed"
    );
    let seen = call(addr, "GET", &location, Some(&root()), Value::Null).await;
    assert_eq!(outcome(&seen), (200, String::new()));
    assert_eq!(json_of(&seen)["status"], "completed");

    // Bob, the payee, is told no, as problem+json that says why.
    let refused = call(addr, "GET", &location, Some(&bob()), Value::Null).await;
    assert_eq!(outcome(&refused), (403, "forbidden".into()));
    assert_eq!(
        json_of(&refused)["detail"],
        "`bob` did not start this instance of `transfer-money`"
    );
    // Without credentials, nobody learns anything of it.
    let anonymous = call(addr, "GET", &location, None, Value::Null).await;
    assert_eq!(outcome(&anonymous), (401, "unauthenticated".into()));
    // An instance that does not exist is not found, whoever asks.
    let missing = call(
        addr,
        "GET",
        "/sagas/transfer-money/none",
        Some(&bob()),
        Value::Null,
    )
    .await;
    assert_eq!(outcome(&missing), (404, "saga-not-found".into()));

    // An instance started without a principal (by the service itself) is
    // for admins only.
    let first = bank::transfer::TransferEvent::TransferRequested {
        from_account_id: adas.clone(),
        to_account_id: bobs.clone(),
        amount: 1,
    };
    let id = allframe::Sagas::start::<bank::transfer::Transfer>(&bank.store, &first)
        .await
        .unwrap();
    let location = format!("/sagas/transfer-money/{id}");
    let refused = call(addr, "GET", &location, Some(&ada()), Value::Null).await;
    assert_eq!(outcome(&refused), (403, "forbidden".into()));
    // (Its withdrawal is sent for nobody, which the bank's rules refuse.)
    let view = saga_ended(addr, &location, Some(&root())).await;
    assert_eq!(
        (view["status"].as_str(), view["reason"].as_str()),
        (Some("rejected"), Some("forbidden")),
        "{view}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_acts_for_whoever_asked_for_it() {
    let bank = bank().await;
    let addr = bank.server.addr;
    let adas = open(addr, &ada(), "ada", 100).await;
    let bobs = open(addr, &bob(), "bob", 100).await;
    let transfer =
        |from: &str, to: &str| json!({"from_account_id": from, "to_account_id": to, "amount": 30});

    // Bob may ask, but the withdrawal from Ada's account is sent for Bob,
    // and her account's rule refuses it.
    let response = call(
        addr,
        "POST",
        "/commands/transfer-money",
        Some(&bob()),
        transfer(&adas, &bobs),
    )
    .await;
    assert_eq!(response.status, 202);
    let location = response.header("location").unwrap().to_owned();
    let view = saga_ended(addr, &location, Some(&root())).await;
    assert_eq!(
        (view["status"].as_str(), view["reason"].as_str()),
        (Some("rejected"), Some("forbidden")),
        "{view}"
    );

    // Ada's own transfer goes through; its commands are recorded as hers.
    let response = call(
        addr,
        "POST",
        "/commands/transfer-money",
        Some(&ada()),
        transfer(&adas, &bobs),
    )
    .await;
    assert_eq!(response.status, 202);
    let location = response.header("location").unwrap().to_owned();
    assert_eq!(
        saga_ended(addr, &location, Some(&root())).await["status"],
        "completed"
    );
    // An admin moves anyone's money: the roles travel with the saga.
    let response = call(
        addr,
        "POST",
        "/commands/transfer-money",
        Some(&root()),
        transfer(&bobs, &adas),
    )
    .await;
    let location = response.header("location").unwrap().to_owned();
    assert_eq!(
        saga_ended(addr, &location, Some(&root())).await["status"],
        "completed"
    );

    let events = bank
        .store
        .read_stream(&format!("account-{adas}"), 0, 10)
        .await
        .unwrap();
    let senders: Vec<(&str, Option<&str>)> = events
        .iter()
        .map(|e| {
            (
                e.event_type.as_str(),
                e.metadata.extra.get("principal").and_then(Value::as_str),
            )
        })
        .collect();
    assert_eq!(
        senders,
        [
            ("AccountOpened", Some("ada")),
            ("MoneyDeposited", Some("ada")),
            ("MoneyWithdrawn", Some("ada")),
            ("MoneyDeposited", Some("root")),
        ]
    );
    assert_eq!(
        (balance(addr, &adas).await, balance(addr, &bobs).await),
        (100, 100)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_see_the_principal() {
    let bank = bank().await;
    let addr = bank.server.addr;
    let response = call(
        addr,
        "POST",
        "/commands/take-note",
        Some(&root()),
        json!({}),
    )
    .await;
    assert_eq!(response.status, 201);
    let id = json_of(&response)["aggregate_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let events = bank
        .store
        .read_stream(&format!("note-{id}"), 0, 10)
        .await
        .unwrap();
    assert_eq!(
        events[0].decode::<NoteEvent>().unwrap(),
        NoteEvent::Noted {
            by: Some("root".into())
        }
    );

    let response = call(addr, "GET", "/queries/who-am-i", Some(&root()), Value::Null).await;
    assert_eq!(
        json_of(&response),
        json!({"subject": "root", "roles": ["admin"]})
    );
    let response = call(addr, "GET", "/queries/who-am-i", Some(&ada()), Value::Null).await;
    assert_eq!(json_of(&response), json!({"subject": "ada", "roles": []}));
    // Outside any request there is none.
    assert_eq!(Principal::current(), None);
}

/// A WebSocket client's upgrade: its first event's data, or the refusal's
/// status and problem code.
async fn subscribe(addr: SocketAddr, query: &str) -> Result<Value, (u16, String)> {
    let url = format!("ws://{addr}/events/ws{query}");
    match tokio_tungstenite::connect_async(url).await {
        Ok((mut client, _)) => {
            let frame = tokio::time::timeout(Duration::from_secs(30), client.next())
                .await
                .expect("an event within 30 s")
                .expect("the stream stays open")
                .expect("a frame");
            Ok(serde_json::from_str(frame.to_text().unwrap()).unwrap())
        }
        Err(tungstenite::Error::Http(response)) => {
            let body: Value =
                serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap();
            let code = body["type"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned();
            Err((response.status().as_u16(), code))
        }
        Err(error) => panic!("{query}: {error}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_follow_the_rules() {
    let bank = bank().await;
    let addr = bank.server.addr;
    let adas = open(addr, &ada(), "ada", 7).await;
    let bobs = open(addr, &bob(), "bob", 9).await;
    let ada_token = token("ada", &[]);
    let root_token = token("root", &["admin"]);

    // Ada streams her own account, with the token in the query.
    let own = format!("?after=0&stream=account-{adas}&access_token={ada_token}");
    let first = subscribe(addr, &own).await.unwrap();
    assert_eq!(
        (first["stream_id"].as_str(), first["type"].as_str()),
        (
            Some(format!("account-{adas}").as_str()),
            Some("AccountOpened")
        )
    );
    // Not Bob's, not everything, not a category, not without a token.
    for query in [
        format!("?after=0&stream=account-{bobs}&access_token={ada_token}"),
        format!("?after=0&access_token={ada_token}"),
        format!("?after=0&category=account&access_token={ada_token}"),
        format!("?after=0&stream=account-nope&access_token={ada_token}"),
    ] {
        assert_eq!(
            subscribe(addr, &query).await.unwrap_err(),
            (403, "forbidden".into()),
            "{query}"
        );
    }
    assert_eq!(
        subscribe(addr, "?after=0").await.unwrap_err(),
        (401, "unauthenticated".into())
    );
    assert_eq!(
        subscribe(addr, &format!("?after=0&access_token={ada_token}x"))
            .await
            .unwrap_err(),
        (401, "unauthenticated".into())
    );
    // An admin streams everything.
    let first = subscribe(addr, &format!("?after=0&access_token={root_token}"))
        .await
        .unwrap();
    assert_eq!(first["position"], 1);

    // SSE, with the header this time.
    let path = format!("/events/sse?after=0&stream=account-{bobs}");
    let response = call(addr, "GET", &path, Some(&ada()), Value::Null).await;
    assert_eq!(outcome(&response), (403, "forbidden".into()));
}

#[tokio::test]
async fn the_document_says_which_operations_a_rule_may_refuse() {
    let store = allframe::store::MemoryStore::new();
    let app = bank::rules::secured(bank::app(&store), &store, SECRET)
        .build()
        .await
        .unwrap();
    let document = app.openapi();
    for (path, method) in [
        ("/commands/withdraw", "post"),
        ("/commands/open-account", "post"),
        ("/projections/accounts", "get"),
        ("/projections/accounts/{account_id}", "get"),
        ("/queries/accounts-over", "get"),
        ("/events/ws", "get"),
        ("/events/sse", "get"),
        ("/admin/projections", "get"),
    ] {
        let responses = &document["paths"][path][method]["responses"];
        assert!(responses.get("403").is_some(), "{method} {path}");
        assert!(responses.get("401").is_some(), "{method} {path}");
    }
    // A saga instance is for whoever started it, and admins.
    let responses = &document["paths"]["/sagas/{name}/{id}"]["get"]["responses"];
    assert!(responses.get("403").is_some() && responses.get("401").is_some());
}
