//! Commands cannot be generic.
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
struct Open<T> {
    #[garde(skip)]
    owner: T,
}

fn name<C: allframe::Command>() -> &'static str {
    C::NAME
}

fn main() {
    name::<Open<String>>();
}
