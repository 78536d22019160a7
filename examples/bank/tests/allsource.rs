//! The bank built with the `allsource` feature, on `allsource://DIR`, over
//! a real socket: commands with idempotency keys and refusals, transfers
//! to each of their ends, projection reads, and all of it still there
//! after a SIGTERM and a restart on the same directory.
#![cfg(feature = "allsource")]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{body, get, post, request, start};

fn open(addr: SocketAddr, owner: &str, initial_deposit: u64) -> String {
    let answer = post(
        addr,
        "/commands/open-account",
        &format!(
            r#"{{"owner": "{owner}", "email": "{owner}@example.com", "initial_deposit": {initial_deposit}}}"#
        ),
    );
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    body(&answer)["aggregate_id"].as_str().unwrap().to_owned()
}

/// The saga at `location` once it has ended.
fn ended(addr: SocketAddr, location: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let view = body(&get(addr, location));
        if view["status"] != "running" {
            return view;
        }
        assert!(Instant::now() < deadline, "the saga ends in time: {view}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts a transfer; returns its saga's location.
fn transfer(addr: SocketAddr, from: &str, to: &str, amount: u64) -> String {
    let answer = post(
        addr,
        "/commands/transfer-money",
        &format!(r#"{{"from_account_id": "{from}", "to_account_id": "{to}", "amount": {amount}}}"#),
    );
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    let id = body(&answer)["saga_id"].as_str().unwrap().to_owned();
    format!("/sagas/transfer-money/{id}")
}

/// The account's row once the projection has seen `position`.
fn row(addr: SocketAddr, account: &str, position: u64) -> serde_json::Value {
    let answer = get(
        addr,
        &format!("/projections/accounts/{account}?min_position={position}"),
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    body(&answer)
}

#[test]
fn the_bank_on_allsource() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("allsource://{}", dir.path().join("bank").display());
    let (bank, addr) = start(&url);

    let ada = open(addr, "ada", 100);
    let bob = open(addr, "bob", 0);
    let deposit = format!(r#"{{"account_id": "{ada}", "amount": 25}}"#);
    let key = "Idempotency-Key: deposit-1\r\n";
    let first = request(addr, "POST", "/commands/deposit", key, &deposit);
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    let again = request(addr, "POST", "/commands/deposit", key, &deposit);
    assert!(
        again
            .to_ascii_lowercase()
            .contains("idempotency-replayed: true"),
        "{again}"
    );
    assert_eq!(body(&again), body(&first));
    let reused = request(
        addr,
        "POST",
        "/commands/deposit",
        key,
        &deposit.replace("25", "26"),
    );
    assert!(reused.starts_with("HTTP/1.1 422"), "{reused}");

    let too_much = post(
        addr,
        "/commands/withdraw",
        &format!(r#"{{"account_id": "{bob}", "amount": 1}}"#),
    );
    assert!(too_much.contains("application/problem+json"), "{too_much}");
    assert_eq!(
        body(&too_much)["type"],
        "/problems/insufficient-funds",
        "{too_much}"
    );

    let completed = ended(addr, &transfer(addr, &ada, &bob, 30));
    assert_eq!(completed["status"], "completed", "{completed}");
    let rejected = ended(addr, &transfer(addr, &bob, &ada, 1_000));
    assert_eq!(
        (rejected["status"].as_str(), rejected["reason"].as_str()),
        (Some("rejected"), Some("insufficient-funds"))
    );
    let refunded = ended(addr, &transfer(addr, &ada, "nobody", 5));
    assert_eq!(
        (refunded["status"].as_str(), refunded["reason"].as_str()),
        (Some("refunded"), Some("not-found"))
    );
    let head = body(&first)["position"].as_u64().unwrap();
    // The projection follows the sagas' last events shortly after.
    let deadline = Instant::now() + Duration::from_secs(60);
    let ada_row = loop {
        let row = row(addr, &ada, head);
        let bob_row = body(&get(addr, &format!("/projections/accounts/{bob}")));
        if row["balance"] == 95 && bob_row["balance"] == 30 {
            break row;
        }
        assert!(Instant::now() < deadline, "balances {row} and {bob_row}");
        std::thread::sleep(Duration::from_millis(20));
    };
    bank.terminate();

    // The same directory after a restart: the log, the keys, the sagas.
    let (bank, addr) = start(&url);
    let replayed = request(addr, "POST", "/commands/deposit", key, &deposit);
    assert!(
        replayed
            .to_ascii_lowercase()
            .contains("idempotency-replayed: true"),
        "{replayed}"
    );
    assert_eq!(body(&replayed), body(&first));
    assert_eq!(
        body(&get(addr, &format!("/projections/accounts/{ada}")))["balance"],
        ada_row["balance"]
    );
    assert_eq!(
        ended(
            addr,
            &format!(
                "/sagas/transfer-money/{}",
                completed["id"].as_str().unwrap()
            )
        )["status"],
        "completed"
    );
    let carl = open(addr, "carl", 1);
    assert_ne!(carl, ada);

    // A second bank on the same directory is refused, saying why.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_bank"))
        .args(["--addr", "127.0.0.1:0", "--database-url", &url])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("another process has this store open"),
        "{stderr}"
    );
    bank.terminate();
}
