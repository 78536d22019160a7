//! Type errors land on the user's tokens: a non-aggregate on the
//! `aggregate` path, an id that is not `ToString` on its field's type, a
//! missing supertrait derive on the struct's name.
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

struct Ledger;

#[allframe::command(aggregate = Ledger, id = account_id)]
#[derive(Clone, Serialize, Deserialize, garde::Validate)]
struct Deposit {
    #[garde(skip)]
    account_id: Vec<u8>,
}

#[allframe::command(aggregate = Account, id = account_id)]
#[derive(Clone, Serialize, Deserialize)]
struct Withdraw {
    account_id: String,
}

fn main() {}
