//! Every mistake is reported at once, and using the type as a command adds
//! no "not a command" error on top.
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

#[allframe::command(name = "Deposit!", id = acount_id, colour, name = "x")]
#[derive(Clone, Serialize, Deserialize, garde::Validate)]
struct Deposit {
    #[garde(skip)]
    account_id: String,
    #[garde(length(max = 10))]
    memo: String,
}

fn name<C: allframe::Command>() -> &'static str {
    C::NAME
}

fn main() {
    name::<Deposit>();
}
