//! A handler cannot be generic, openly or through `impl Trait`.
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
async fn deposit<T: Send>(command: Deposit, _: &Account, _: Dep<T>) -> Result<Vec<AccountEvent>, BankError> {
    Ok(vec![AccountEvent::Deposited { amount: command.amount }])
}

#[command_handler]
async fn withdraw(command: Deposit, _: &Account, _: impl Send) -> Result<Vec<AccountEvent>, BankError> {
    Ok(vec![AccountEvent::Deposited { amount: command.amount }])
}

#[command_handler]
async fn close<'a>(_: Deposit, _: &'a Account) -> Result<Vec<AccountEvent>, BankError> {
    Ok(vec![])
}

fn main() {}
