//! A command without `aggregate`; using it as a command adds no error.
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

#[allframe::command(id = account_id)]
#[derive(Clone, Serialize, Deserialize, garde::Validate)]
struct Deposit {
    #[garde(skip)]
    account_id: String,
}

#[allframe::command()]
#[derive(Clone, Serialize, Deserialize, garde::Validate)]
struct Close {}

fn name<C: allframe::Command>() -> &'static str {
    C::NAME
}

fn main() {
    name::<Deposit>();
    name::<Close>();
}
