//! The state, the events and the error must be the command's aggregate,
//! its events and a domain error; each mistake is reported at its type.
//! Dependencies and the handler's future must be shareable across threads.
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

#[derive(Default)]
struct Ledger;

#[derive(Event)]
enum LedgerEvent {
    Posted,
}

#[derive(Debug, thiserror::Error)]
#[error("refused")]
struct Refused;

#[command_handler]
async fn wrong_state(_: Deposit, _: &Ledger) -> Result<Vec<AccountEvent>, BankError> {
    Ok(vec![])
}

mod events {
    use super::*;

    #[command_handler]
    async fn wrong_events(_: Deposit, _: &Account) -> Result<Vec<LedgerEvent>, BankError> {
        Ok(vec![LedgerEvent::Posted])
    }
}

mod error {
    use super::*;

    #[command_handler]
    async fn wrong_error(_: Deposit, _: &Account) -> Result<Vec<AccountEvent>, Refused> {
        Err(Refused)
    }
}

mod dependency {
    use super::*;

    #[command_handler]
    async fn not_shareable(_: Deposit, _: &Account, _: Dep<std::rc::Rc<u8>>) -> Result<Vec<AccountEvent>, BankError> {
        Ok(vec![])
    }
}

mod not_send {
    use super::*;

    #[command_handler]
    async fn holds_rc(_: Deposit, _: &Account) -> Result<Vec<AccountEvent>, BankError> {
        let shared = std::rc::Rc::new(1);
        std::future::ready(()).await;
        drop(shared);
        Ok(vec![])
    }
}

fn main() {}
