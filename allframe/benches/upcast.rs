//! Decoding cost of upcasting: `cargo bench -p allframe --bench upcast`.
//!
//! Decodes an event stored at today's version and the same event stored
//! at version 1, which goes through a two-step chain (a JSON step to
//! version 2, a typed `From` step to today's), in interleaved rounds of
//! `ALLFRAME_BENCH_DECODES` decodes each (default 200,000), and prints
//! decodes/s and the ratio of the medians (`ALLFRAME_BENCH_ROUNDS`,
//! default 5).

// This bench runs no store: it leaves the helpers for those unused.
#[allow(dead_code)]
mod common;

use std::hint::black_box;
use std::time::Instant;

use allframe::{Event, UpcastError};
use common::{env_number, median};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// Today (version 3): a deposit in cents with its currency. Version 1 was
/// whole euros as `amount`; version 2 had cents as `amount` and a currency.
#[derive(Event, Debug, PartialEq)]
enum AccountEvent {
    #[event(version = 3, upcast(1 = euros_to_cents, 2 = from(DepositedV2)))]
    Deposited { cents: u64, currency: String },
}

fn euros_to_cents(data: Value) -> Result<Value, UpcastError> {
    let euros = data
        .get("amount")
        .and_then(Value::as_u64)
        .ok_or_else(|| UpcastError::new("no `amount`"))?;
    Ok(json!({ "amount": euros * 100, "currency": "EUR" }))
}

#[derive(Deserialize)]
struct DepositedV2 {
    amount: u64,
    currency: String,
}

impl From<DepositedV2> for AccountEvent {
    fn from(old: DepositedV2) -> Self {
        AccountEvent::Deposited {
            cents: old.amount,
            currency: old.currency,
        }
    }
}

/// Decodes/s of `data` stored at `version`.
fn rate(version: u32, data: &RawValue, decodes: usize) -> f64 {
    let started = Instant::now();
    for _ in 0..decodes {
        black_box(AccountEvent::from_data("Deposited", version, black_box(data)).unwrap());
    }
    decodes as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let decodes = env_number("ALLFRAME_BENCH_DECODES", 200_000.0) as usize;
    let rounds = env_number("ALLFRAME_BENCH_ROUNDS", 5.0) as usize;
    let today =
        serde_json::value::to_raw_value(&json!({"cents": 1250, "currency": "NOK"})).expect("JSON");
    let v1 = serde_json::value::to_raw_value(&json!({"amount": 12})).expect("JSON");
    assert_eq!(
        AccountEvent::from_data("Deposited", 1, &v1).expect("the chain decodes"),
        AccountEvent::Deposited {
            cents: 1200,
            currency: "EUR".into()
        }
    );
    let (mut current, mut upcast) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        current.push(rate(3, &today, decodes));
        upcast.push(rate(1, &v1, decodes));
    }
    let (current, upcast) = (median(&mut current), median(&mut upcast));
    println!("## Decoding (decodes/s, median of {rounds} interleaved rounds of {decodes})\n");
    println!("| today's version | version 1 through a two-step chain | cost ratio |");
    println!("|---|---|---|");
    println!("| {current:.0} | {upcast:.0} | {:.2}× |", current / upcast);
}
