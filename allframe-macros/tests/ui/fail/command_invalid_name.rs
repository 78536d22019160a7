//! Command names are kebab-case, whether written or derived.
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

#[allframe::command(aggregate = Account, create, name = "Open_Account")]
#[derive(Clone, Serialize, Deserialize, garde::Validate)]
struct OpenAccount {}

#[allframe::command(aggregate = Account, create, name = "")]
#[derive(Clone, Serialize, Deserialize, garde::Validate)]
struct Reopen {}

#[allframe::command(aggregate = Account, create, name = "close--account")]
#[derive(Clone, Serialize, Deserialize, garde::Validate)]
struct Close {}

#[allframe::command(aggregate = Account, create, name = open)]
#[derive(Clone, Serialize, Deserialize, garde::Validate)]
struct Open {}

#[allframe::command(aggregate = Account, create)]
#[derive(Clone, Serialize, Deserialize, garde::Validate)]
#[allow(non_camel_case_types)]
struct Überweisung {}

fn main() {}
