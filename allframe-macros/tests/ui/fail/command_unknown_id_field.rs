//! `id` must name a field of the struct.
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

#[allframe::command(aggregate = Account, id = acount_id)]
#[derive(Clone, Serialize, Deserialize, garde::Validate)]
struct Deposit {
    #[garde(skip)]
    account_id: String,
}

fn main() {
    let _ = <Deposit as allframe::Command>::NAME;
}
