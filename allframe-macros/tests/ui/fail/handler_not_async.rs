//! A handler is an `async fn`.
use allframe::{Aggregate, DomainError, Event, command, command_handler};
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
fn deposit(command: Deposit, _: &Account) -> Result<Vec<AccountEvent>, BankError> {
    Ok(vec![AccountEvent::Deposited { amount: command.amount }])
}

fn main() {}
