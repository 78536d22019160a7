//! Malformed attribute syntax is reported, and nothing on top of it.
use allframe::{Aggregate, Event};
use serde::{Deserialize, Serialize};

#[derive(Event)]
enum AccountEvent {
    Deposited { amount: u64 },
}

#[derive(Default)]
struct Account;

impl Aggregate for Account {
    type Event = AccountEvent;
    const CATEGORY: &'static str = "account";
    fn apply(&mut self, _: &AccountEvent) {}
}

#[allframe::command(aggregate = , id = account_id)]
#[derive(Clone, Serialize, Deserialize, garde::Validate)]
struct Deposit {
    #[garde(skip)]
    account_id: String,
}

fn main() {}
