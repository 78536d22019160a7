//! The `accounts` projection: one row per account with its owner, email,
//! balance and whether it is open, listed by owner.

use allframe::projection::{ApplyError, Change, Projection};
use allframe::{RecordedEvent, projection};
use serde::{Deserialize, Serialize};

use crate::domain::{Account, AccountEvent};

/// An account as clients read it: `GET /projections/accounts/{account_id}`.
#[projection(name = "accounts", key = account_id, indexed_by(owner))]
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
}

impl Projection for AccountRow {
    type Source = Account;

    fn apply(
        row: Option<&Self>,
        event: &AccountEvent,
        recorded: &RecordedEvent,
    ) -> Result<Change<Self>, ApplyError> {
        if let AccountEvent::AccountOpened { owner, email } = event {
            return Ok(Change::Upsert(AccountRow {
                account_id: recorded.aggregate_id().to_owned(),
                owner: owner.clone(),
                email: email.clone(),
                balance: 0,
                open: true,
            }));
        }
        // The aggregate refuses every command on an account that was never
        // opened, so this is a broken log, worth stopping for.
        let mut row = row
            .ok_or_else(|| format!("`{}` before the account was opened", recorded.event_type))?
            .clone();
        match event {
            AccountEvent::MoneyDeposited { amount } => row.balance += amount,
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
        };
        let Change::Upsert(row) = apply(None, opened) else {
            panic!("opening stores a row")
        };
        assert_eq!(
            (row.account_id.as_str(), row.balance, row.open),
            ("a1", 0, true)
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
}
