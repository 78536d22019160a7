//! A small bank for the integration tests: an aggregate, its events,
//! commands of every kind, handlers with and without `Dep`, domain errors.

use std::convert::Infallible;

use allframe::store::MemoryStore;
use allframe::{
    Aggregate, Container, Dep, Dispatcher, DomainError, Event, command, command_handler,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Event, Debug, Clone, PartialEq)]
pub(crate) enum AccountEvent {
    Opened { owner: String },
    Deposited { amount: u64 },
    Closed,
}

#[derive(Default)]
pub(crate) struct Account {
    pub(crate) open: bool,
    pub(crate) balance: u64,
}

impl Aggregate for Account {
    type Event = AccountEvent;
    const CATEGORY: &'static str = "account";

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { .. } => self.open = true,
            AccountEvent::Deposited { amount } => self.balance += amount,
            AccountEvent::Closed => self.open = false,
        }
    }
}

/// A create-command whose id the server generates.
#[command(aggregate = Account, create)]
#[derive(Debug, Clone, Serialize, Deserialize, garde::Validate)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OpenAccount {
    #[garde(length(chars, min = 1, max = 100))]
    pub(crate) owner_name: String,
}

/// A create-command that brings its own id.
#[command(aggregate = Account, id = account_id, create, name = "import")]
#[derive(Debug, Clone, Serialize, Deserialize, garde::Validate)]
pub(crate) struct ImportAccount {
    #[garde(skip)]
    pub(crate) account_id: Uuid,
    #[garde(length(chars, min = 1))]
    pub(crate) owner: String,
}

#[command(aggregate = Account, id = account_id)]
#[derive(Debug, Clone, Serialize, Deserialize, garde::Validate)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct Deposit {
    #[garde(skip)]
    pub(crate) account_id: String,
    #[serde(rename = "sum")]
    #[garde(range(min = 1))]
    pub(crate) amount_cents: u64,
    #[garde(length(bytes, max = 8))]
    pub(crate) memo_text: String,
}

#[command(aggregate = Account, id = account_id)]
#[derive(Debug, Clone, Serialize, Deserialize, garde::Validate)]
pub(crate) struct CloseAccount {
    #[garde(skip)]
    pub(crate) account_id: String,
}

#[derive(Debug, PartialEq, thiserror::Error, DomainError)]
pub(crate) enum BankError {
    #[error("the account is closed")]
    #[domain_error(status = 409)]
    AccountClosed,
    #[error("a deposit may not exceed {limit}")]
    #[domain_error(code = "over-limit")]
    OverLimit { limit: u64 },
}

#[derive(Debug, thiserror::Error, DomainError)]
#[error("the balance is not zero")]
#[domain_error(status = 412)]
pub(crate) struct BalanceNotZero;

/// The most one deposit may carry.
pub(crate) struct DepositLimit(pub(crate) u64);

#[command_handler]
pub(crate) async fn open_account(
    command: OpenAccount,
    _: &Account,
) -> Result<Vec<AccountEvent>, Infallible> {
    Ok(vec![AccountEvent::Opened {
        owner: command.owner_name,
    }])
}

#[command_handler]
pub(crate) async fn import(
    ImportAccount { owner, .. }: ImportAccount,
    _account: &Account,
) -> Result<Vec<AccountEvent>, Infallible> {
    Ok(vec![AccountEvent::Opened { owner }])
}

#[command_handler]
pub(crate) async fn deposit(
    command: Deposit,
    account: &Account,
    limit: Dep<DepositLimit>,
) -> Result<Vec<AccountEvent>, BankError> {
    if !account.open {
        return Err(BankError::AccountClosed);
    }
    if command.amount_cents > limit.0 {
        return Err(BankError::OverLimit { limit: limit.0 });
    }
    Ok(vec![AccountEvent::Deposited {
        amount: command.amount_cents,
    }])
}

#[command_handler]
pub(crate) async fn close_account(
    _: CloseAccount,
    account: &Account,
) -> Result<Vec<AccountEvent>, BalanceNotZero> {
    if account.balance > 0 {
        return Err(BalanceNotZero);
    }
    Ok(vec![AccountEvent::Closed])
}

/// A dispatcher over `store` with every handler and its dependencies.
pub(crate) async fn dispatcher(store: &MemoryStore) -> Dispatcher {
    let container = Container::builder()
        .provide(DepositLimit(1_000))
        .build()
        .await
        .unwrap();
    Dispatcher::builder(store)
        .container(container)
        .build()
        .unwrap()
}

/// A deposit with no memo.
pub(crate) fn deposit_of(account_id: &str, amount_cents: u64) -> Deposit {
    Deposit {
        account_id: account_id.into(),
        amount_cents,
        memo_text: String::new(),
    }
}
