//! The parameters are `(command, &state, Dep<T>...)`.
use allframe::{Aggregate, Dep, DomainError, Event, command, command_handler};
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

#[command(aggregate = Account, id = account_id)]
#[derive(Clone, Serialize, Deserialize, garde::Validate)]
struct Deposit {
    #[garde(skip)]
    account_id: String,
    #[garde(range(min = 1))]
    amount: u64,
}

#[derive(Debug, thiserror::Error, DomainError)]
enum BankError {
    #[error("account closed")]
    Closed,
}

struct Clock;

#[command_handler]
async fn nothing() -> Result<Vec<AccountEvent>, BankError> {
    Ok(vec![])
}

#[command_handler]
async fn no_state(_: Deposit) -> Result<Vec<AccountEvent>, BankError> {
    Ok(vec![])
}

#[command_handler]
async fn borrowed_command(_: &Deposit, _: &Account) -> Result<Vec<AccountEvent>, BankError> {
    Ok(vec![])
}

#[command_handler]
async fn owned_state(_: Deposit, _: Account) -> Result<Vec<AccountEvent>, BankError> {
    Ok(vec![])
}

#[command_handler]
async fn mutable_state(_: Deposit, _: &mut Account) -> Result<Vec<AccountEvent>, BankError> {
    Ok(vec![])
}

#[command_handler]
async fn plain_dependency(_: Deposit, _: &Account, _: Dep<Clock>, _: Clock, _: Option<Dep<Clock>>) -> Result<Vec<AccountEvent>, BankError> {
    Ok(vec![])
}

fn main() {}
