//! Accounts: opened with an owner and an email, credited and debited,
//! closed once empty.

use std::convert::Infallible;

use allframe::{Aggregate, DomainError, Event, Snapshots, UpcastError, command, command_handler};
use serde::{Deserialize, Serialize};

/// Everything that can happen to an account.
#[derive(Event, Debug, Clone, PartialEq)]
pub enum AccountEvent {
    /// The account was opened.
    #[event(version = 2, upcast(1 = opened_in_euros))]
    AccountOpened {
        /// Who owns it.
        owner: String,
        /// Where to reach them.
        email: String,
        /// Its currency (ISO 4217, e.g. `EUR`).
        currency: String,
    },
    /// Money was paid in.
    MoneyDeposited {
        /// How much, in cents.
        amount: u64,
    },
    /// Money was paid out.
    MoneyWithdrawn {
        /// How much, in cents.
        amount: u64,
    },
    /// The account was closed.
    AccountClosed {},
}

/// Version 1 of `AccountOpened` had no currency: every account was in
/// euros.
fn opened_in_euros(mut data: serde_json::Value) -> Result<serde_json::Value, UpcastError> {
    data.as_object_mut()
        .ok_or_else(|| UpcastError::new("the data is not a JSON object"))?
        .insert("currency".into(), serde_json::Value::from(DEFAULT_CURRENCY));
    Ok(data)
}

/// The currency of accounts opened without one, and of every account
/// opened before accounts had currencies.
pub const DEFAULT_CURRENCY: &str = "EUR";

/// What the account's history adds up to. Snapshotted every
/// [`SNAPSHOT_EVERY`] events.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Account {
    /// Who owns it.
    pub owner: String,
    /// Whether it is open.
    pub open: bool,
    /// Its balance, in cents.
    pub balance: u64,
}

/// How many events apart an account's state is snapshotted.
pub const SNAPSHOT_EVERY: u64 = 100;

impl Aggregate for Account {
    type Event = AccountEvent;
    const CATEGORY: &'static str = "account";

    fn snapshots() -> Option<Snapshots<Self>> {
        // State version 2 keeps the owner; snapshots of version 1 lack it
        // and are retired.
        Some(Snapshots::every(SNAPSHOT_EVERY).state_version(2))
    }

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::AccountOpened { owner, .. } => {
                self.owner.clone_from(owner);
                self.open = true;
            }
            AccountEvent::MoneyDeposited { amount } => self.balance += amount,
            AccountEvent::MoneyWithdrawn { amount } => self.balance -= amount,
            AccountEvent::AccountClosed {} => self.open = false,
        }
    }
}

/// Why the bank refuses a command.
#[derive(Debug, thiserror::Error, DomainError)]
pub enum BankError {
    /// A withdrawal larger than the balance.
    #[error("insufficient funds: the balance is {balance}, {requested} was requested")]
    InsufficientFunds {
        /// The current balance.
        balance: u64,
        /// The amount asked for.
        requested: u64,
    },
    /// Closing an account that still holds money.
    #[error("the balance must be zero to close the account; it is {0}")]
    BalanceNotZero(u64),
    /// Moving money on a closed account.
    #[error("the account is closed")]
    AccountClosed,
    /// A deposit that would take the balance past [`MAX_BALANCE`].
    #[error("the balance would exceed {MAX_BALANCE}: it is {balance}, {requested} was paid in")]
    BalanceOverflow {
        /// The current balance.
        balance: u64,
        /// The amount paid in.
        requested: u64,
    },
}

/// The largest balance an account may hold, in cents: the largest integer
/// of the documented `int64` schema.
pub const MAX_BALANCE: u64 = i64::MAX as u64;

/// Opens an account; the server picks its id.
#[command(aggregate = Account, create)]
#[derive(Debug, Clone, Serialize, Deserialize, garde::Validate)]
#[serde(deny_unknown_fields)]
pub struct OpenAccount {
    /// The owner's name.
    #[garde(length(chars, min = 1, max = 100))]
    pub owner: String,
    /// The owner's email address.
    #[garde(email)]
    pub email: String,
    /// Money paid in on opening, in cents.
    #[serde(default)]
    #[garde(range(max = 1_000_000_000))]
    pub initial_deposit: u64,
    /// The account's currency (ISO 4217: three capital letters; default
    /// `EUR`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(pattern(r"^[A-Z]{3}$"))]
    pub currency: Option<String>,
}

/// Pays money in.
#[command(aggregate = Account, id = account_id)]
#[derive(Debug, Clone, Serialize, Deserialize, garde::Validate)]
#[serde(deny_unknown_fields)]
pub struct Deposit {
    /// The account.
    #[garde(skip)]
    pub account_id: String,
    /// How much, in cents.
    #[garde(range(min = 1, max = 1_000_000_000))]
    pub amount: u64,
}

/// Pays money out.
#[command(aggregate = Account, id = account_id)]
#[derive(Debug, Clone, Serialize, Deserialize, garde::Validate)]
#[serde(deny_unknown_fields)]
pub struct Withdraw {
    /// The account.
    #[garde(skip)]
    pub account_id: String,
    /// How much, in cents.
    #[garde(range(min = 1, max = 1_000_000_000))]
    pub amount: u64,
}

/// Closes an empty account.
#[command(aggregate = Account, id = account_id)]
#[derive(Debug, Clone, Serialize, Deserialize, garde::Validate)]
#[serde(deny_unknown_fields)]
pub struct CloseAccount {
    /// The account.
    #[garde(skip)]
    pub account_id: String,
}

#[command_handler]
async fn open_account(command: OpenAccount, _: &Account) -> Result<Vec<AccountEvent>, Infallible> {
    let mut events = vec![AccountEvent::AccountOpened {
        owner: command.owner,
        email: command.email,
        currency: command
            .currency
            .unwrap_or_else(|| DEFAULT_CURRENCY.to_owned()),
    }];
    if command.initial_deposit > 0 {
        events.push(AccountEvent::MoneyDeposited {
            amount: command.initial_deposit,
        });
    }
    Ok(events)
}

#[command_handler]
async fn deposit(command: Deposit, account: &Account) -> Result<Vec<AccountEvent>, BankError> {
    if !account.open {
        return Err(BankError::AccountClosed);
    }
    let within = account
        .balance
        .checked_add(command.amount)
        .is_some_and(|balance| balance <= MAX_BALANCE);
    if !within {
        return Err(BankError::BalanceOverflow {
            balance: account.balance,
            requested: command.amount,
        });
    }
    Ok(vec![AccountEvent::MoneyDeposited {
        amount: command.amount,
    }])
}

#[command_handler]
async fn withdraw(command: Withdraw, account: &Account) -> Result<Vec<AccountEvent>, BankError> {
    if !account.open {
        return Err(BankError::AccountClosed);
    }
    if command.amount > account.balance {
        return Err(BankError::InsufficientFunds {
            balance: account.balance,
            requested: command.amount,
        });
    }
    Ok(vec![AccountEvent::MoneyWithdrawn {
        amount: command.amount,
    }])
}

#[command_handler]
async fn close_account(_: CloseAccount, account: &Account) -> Result<Vec<AccountEvent>, BankError> {
    if !account.open {
        return Err(BankError::AccountClosed);
    }
    if account.balance != 0 {
        return Err(BankError::BalanceNotZero(account.balance));
    }
    Ok(vec![AccountEvent::AccountClosed {}])
}

#[cfg(test)]
mod tests {
    use allframe::testing::given;

    use super::*;

    fn opened() -> AccountEvent {
        AccountEvent::AccountOpened {
            owner: "Ada".into(),
            email: "ada@example.com".into(),
            currency: "EUR".into(),
        }
    }

    #[tokio::test]
    async fn an_account_opens_in_the_currency_asked_for() {
        let open = OpenAccount {
            owner: "Ada".into(),
            email: "ada@example.com".into(),
            initial_deposit: 0,
            currency: Some("NOK".into()),
        };
        given::<Account>([])
            .when(open)
            .await
            .then([AccountEvent::AccountOpened {
                owner: "Ada".into(),
                email: "ada@example.com".into(),
                currency: "NOK".into(),
            }]);
    }

    #[test]
    fn accounts_opened_before_currencies_are_in_euros() {
        let v1 = serde_json::value::to_raw_value(
            &serde_json::json!({"owner": "Ada", "email": "ada@example.com"}),
        )
        .unwrap();
        assert_eq!(
            AccountEvent::from_data("AccountOpened", 1, &v1).unwrap(),
            opened()
        );
        assert_eq!(opened().schema_version(), 2);
    }

    fn id() -> String {
        "0193".into()
    }

    #[tokio::test]
    async fn opening_records_the_owner_and_any_initial_deposit() {
        let open = |initial_deposit| OpenAccount {
            owner: "Ada".into(),
            email: "ada@example.com".into(),
            initial_deposit,
            currency: None,
        };
        given::<Account>([]).when(open(0)).await.then([opened()]);
        given::<Account>([])
            .when(open(250))
            .await
            .then([opened(), AccountEvent::MoneyDeposited { amount: 250 }]);
    }

    #[tokio::test]
    async fn opening_validates_owner_and_email() {
        let bad = OpenAccount {
            owner: String::new(),
            email: "not-an-email".into(),
            initial_deposit: 0,
            currency: Some("eur".into()),
        };
        let outcome = given::<Account>([]).when(bad).await.result();
        let Err(allframe::CommandError::Validation(errors)) = outcome else {
            panic!("expected validation errors, got {outcome:?}")
        };
        let mut pointers: Vec<_> = errors.iter().map(|e| e.pointer.as_str()).collect();
        pointers.sort_unstable();
        assert_eq!(pointers, ["/currency", "/email", "/owner"]);
    }

    #[tokio::test]
    async fn deposits_and_withdrawals_move_the_balance() {
        given::<Account>([opened()])
            .when(Deposit {
                account_id: id(),
                amount: 100,
            })
            .await
            .then([AccountEvent::MoneyDeposited { amount: 100 }]);
        given::<Account>([opened(), AccountEvent::MoneyDeposited { amount: 100 }])
            .when(Withdraw {
                account_id: id(),
                amount: 100,
            })
            .await
            .then([AccountEvent::MoneyWithdrawn { amount: 100 }]);
    }

    #[tokio::test]
    async fn refusals_have_stable_codes() {
        given::<Account>([opened(), AccountEvent::MoneyDeposited { amount: 50 }])
            .when(Withdraw {
                account_id: id(),
                amount: 80,
            })
            .await
            .then_error("insufficient-funds");
        given::<Account>([opened(), AccountEvent::MoneyDeposited { amount: 50 }])
            .when(CloseAccount { account_id: id() })
            .await
            .then_error("balance-not-zero");
        given::<Account>([opened(), AccountEvent::AccountClosed {}])
            .when(Deposit {
                account_id: id(),
                amount: 1,
            })
            .await
            .then_error("account-closed");
        given::<Account>([opened(), AccountEvent::AccountClosed {}])
            .when(Withdraw {
                account_id: id(),
                amount: 1,
            })
            .await
            .then_error("account-closed");
        given::<Account>([])
            .when(Deposit {
                account_id: id(),
                amount: 1,
            })
            .await
            .then_error("not-found");
        given::<Account>([opened()])
            .when(Deposit {
                account_id: id(),
                amount: 0,
            })
            .await
            .then_error("validation-failed");
    }

    #[tokio::test]
    async fn money_never_wraps() {
        let rich = AccountEvent::MoneyDeposited {
            amount: MAX_BALANCE - 5,
        };
        let deposit = |amount| Deposit {
            account_id: id(),
            amount,
        };
        given::<Account>([opened(), rich.clone()])
            .when(deposit(10))
            .await
            .then_error("balance-overflow");
        given::<Account>([opened(), rich])
            .when(deposit(5))
            .await
            .then([AccountEvent::MoneyDeposited { amount: 5 }]);
        let huge = OpenAccount {
            owner: "Ada".into(),
            email: "ada@example.com".into(),
            initial_deposit: 18_446_744_073_709_551_610,
            currency: None,
        };
        given::<Account>([])
            .when(huge)
            .await
            .then_error("validation-failed");
    }

    #[tokio::test]
    async fn an_empty_account_closes() {
        given::<Account>([opened()])
            .when(CloseAccount { account_id: id() })
            .await
            .then([AccountEvent::AccountClosed {}]);
    }
}
