//! Unknown, duplicate and malformed options, each at its own span.
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

#[allframe::command(aggregate = Account, id = account_id, colour = "red", id = account_id)]
#[derive(Clone, Serialize, Deserialize, garde::Validate)]
struct Deposit {
    #[garde(skip)]
    account_id: String,
}

#[allframe::command(aggregate, create = true, id = "account_id")]
#[derive(Clone, Serialize, Deserialize, garde::Validate)]
struct Withdraw {
    #[garde(skip)]
    account_id: String,
}

#[allframe::command(aggregate = Account, name, id = self.account_id)]
#[derive(Clone, Serialize, Deserialize, garde::Validate)]
struct Close {
    #[garde(skip)]
    account_id: String,
}

fn main() {}
