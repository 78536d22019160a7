//! garde's `length` must say what it counts: bytes by default, while JSON
//! Schema counts characters. Collections count items and are left alone.
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

#[allframe::command(aggregate = Account, create)]
#[derive(Clone, Serialize, Deserialize, garde::Validate)]
struct OpenAccount {
    #[garde(length(min = 1, max = 100))]
    owner: String,
    #[garde(ascii, length(max = 20))]
    nickname: String,
    #[garde(length(max = 3), inner(length(max = 10)))]
    tags: Vec<String>,
    #[garde(length(chars, max = 10))]
    city: String,
}

fn main() {}
