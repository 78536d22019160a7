//! The `accounts` projection: one row per account with its owner, email,
//! balance and whether it is open, listed by owner; and the
//! `accounts-over` query over it.

use allframe::{ApplyError, Change, ListQuery, MAX_LIMIT, Projection};
use allframe::{ProjectionError, Projections, RecordedEvent, projection, query, query_handler};
use serde::{Deserialize, Serialize};

use crate::domain::{Account, AccountEvent};

/// An account as clients read it: `GET /projections/accounts/{account_id}`.
// Version 2 added `currency`; rows written by version 1 read as euros
// while version 2 rebuilds them.
#[projection(name = "accounts", key = account_id, indexed_by(owner), version = 2)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRow {
    /// The account's id.
    pub account_id: String,
    /// Who owns it.
    pub owner: String,
    /// Where to reach them.
    pub email: String,
    /// Its balance, in cents.
    pub balance: u64,
    /// Whether it is open.
    pub open: bool,
    /// Its currency (ISO 4217).
    #[serde(default = "default_currency")]
    pub currency: String,
}

fn default_currency() -> String {
    crate::domain::DEFAULT_CURRENCY.to_owned()
}

impl Projection for AccountRow {
    type Source = Account;

    fn apply(
        row: Option<&Self>,
        event: &AccountEvent,
        recorded: &RecordedEvent,
    ) -> Result<Change<Self>, ApplyError> {
        if let AccountEvent::AccountOpened {
            owner,
            email,
            currency,
        } = event
        {
            return Ok(Change::Upsert(AccountRow {
                account_id: recorded.aggregate_id().to_owned(),
                owner: owner.clone(),
                email: email.clone(),
                balance: 0,
                open: true,
                currency: currency.clone(),
            }));
        }
        // The aggregate refuses every command on an account that was never
        // opened, so this is a broken log, worth stopping for.
        let mut row = row
            .ok_or_else(|| format!("`{}` before the account was opened", recorded.event_type))?
            .clone();
        match event {
            AccountEvent::MoneyDeposited { amount } => {
                row.balance = row
                    .balance
                    .checked_add(*amount)
                    .ok_or("a deposit past the largest balance")?;
            }
            AccountEvent::MoneyWithdrawn { amount } => {
                row.balance = row
                    .balance
                    .checked_sub(*amount)
                    .ok_or("a withdrawal larger than the balance")?;
            }
            AccountEvent::AccountClosed {} => row.open = false,
            AccountEvent::AccountOpened { .. } => unreachable!("handled above"),
        }
        Ok(Change::Upsert(row))
    }
}

/// Accounts holding at least `min_balance`, in id order.
#[query(name = "accounts-over")]
#[derive(Debug, Deserialize, garde::Validate)]
pub struct AccountsOver {
    /// The least balance, in cents (no balance exceeds `MAX_BALANCE`).
    #[garde(range(max = crate::domain::MAX_BALANCE))]
    pub min_balance: u64,
    /// How many accounts to answer with, at most (default 50).
    #[garde(range(min = 1, max = 1000))]
    #[serde(default = "default_limit")]
    pub limit: usize,
}

fn default_limit() -> usize {
    50
}

/// The accounts a query found.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Accounts {
    /// The accounts, in id order.
    pub items: Vec<AccountRow>,
}

/// Scans the `accounts` rows page by page: balances are not indexed, and
/// a bank this size reads them all faster than it could keep an index.
#[query_handler]
pub async fn accounts_over(
    query: AccountsOver,
    projections: &Projections,
) -> Result<Accounts, ProjectionError> {
    let mut items = Vec::new();
    let mut page = ListQuery::new().limit(MAX_LIMIT);
    loop {
        let rows = projections.list::<AccountRow>(&page).await?;
        items.extend(
            rows.items
                .into_iter()
                .filter(|row| row.balance >= query.min_balance),
        );
        match rows.next_cursor {
            Some(cursor) if items.len() < query.limit => page = page.cursor(Some(cursor)),
            _ => break,
        }
    }
    items.truncate(query.limit);
    Ok(Accounts { items })
}

#[cfg(test)]
mod tests {
    use allframe::{NewEvent, RecordedEvent};

    use super::*;

    fn recorded(event: &AccountEvent) -> RecordedEvent {
        let new = NewEvent::from_event(event).unwrap();
        serde_json::from_value(serde_json::json!({
            "position": 1, "stream_id": "account-a1", "version": 1,
            "type": new.event_type(), "schema_version": 1,
            "data": serde_json::from_str::<serde_json::Value>(new.data().get()).unwrap(),
            "metadata": {"event_id": "0193a4e0-0000-7000-8000-000000000000"},
            "recorded_at": "2026-11-26T12:00:00.123Z"
        }))
        .unwrap()
    }

    fn apply(row: Option<&AccountRow>, event: AccountEvent) -> Change<AccountRow> {
        AccountRow::apply(row, &event, &recorded(&event)).unwrap()
    }

    #[test]
    fn rows_follow_an_account_through_its_life() {
        let opened = AccountEvent::AccountOpened {
            owner: "Ada".into(),
            email: "ada@example.com".into(),
            currency: "NOK".into(),
        };
        let Change::Upsert(row) = apply(None, opened) else {
            panic!("opening stores a row")
        };
        assert_eq!(
            (
                row.account_id.as_str(),
                row.balance,
                row.open,
                row.currency.as_str()
            ),
            ("a1", 0, true, "NOK")
        );
        let Change::Upsert(row) = apply(Some(&row), AccountEvent::MoneyDeposited { amount: 70 })
        else {
            panic!("a deposit updates the row")
        };
        let Change::Upsert(row) = apply(Some(&row), AccountEvent::MoneyWithdrawn { amount: 20 })
        else {
            panic!("a withdrawal updates the row")
        };
        assert_eq!(row.balance, 50);
        let Change::Upsert(row) = apply(Some(&row), AccountEvent::AccountClosed {}) else {
            panic!("closing keeps the row")
        };
        assert!(!row.open);
        let deposit = AccountEvent::MoneyDeposited { amount: 1 };
        assert!(AccountRow::apply(None, &deposit, &recorded(&deposit)).is_err());
    }

    #[test]
    fn rows_of_the_first_version_read_as_euros() {
        let v1: AccountRow = serde_json::from_value(serde_json::json!({
            "account_id": "a1", "owner": "Ada", "email": "ada@example.com",
            "balance": 5, "open": true
        }))
        .unwrap();
        assert_eq!(v1.currency, "EUR");
    }
}
