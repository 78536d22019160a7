//! A command is a struct with named fields. (garde rejects the unit struct
//! too; the stub impl adds nothing to that.)
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
struct Ping;

#[allframe::command(aggregate = Account, create)]
#[derive(Clone, Serialize, Deserialize, garde::Validate)]
struct Amount(#[garde(skip)] u64);

#[allframe::command(aggregate = Account, create)]
#[derive(Clone, Serialize, Deserialize, garde::Validate)]
enum Either {
    Left {},
}

#[allframe::command(aggregate = Account, create)]
union Bits {
    word: u64,
}

#[allframe::command(aggregate = Account, create)]
fn open() {}

fn name<C: allframe::Command>() -> &'static str {
    C::NAME
}

fn main() {
    name::<Amount>();
    name::<Either>();
}
