//! Moving money between two accounts: the `transfer-money` saga.
//!
//! It withdraws from the payer, then deposits to the payee. A refused
//! withdrawal (insufficient funds, a closed or unknown payer) ends it as
//! `rejected` with the refusal's code; a refused deposit (a closed or
//! unknown payee) pays the money back to the payer and ends it as
//! `refunded` with the deposit's refusal code; otherwise it ends as
//! `completed`. A step that gets no answer within its timeout counts as
//! refused with the code `timed-out`.

use allframe::saga::{Decision, Input, Saga};
use allframe::{Aggregate, DomainError, Event, command, command_handler};
use serde::{Deserialize, Serialize};

use crate::domain::{Deposit, Withdraw};

/// What a transfer records in its own stream.
#[derive(Event, Debug, Clone, PartialEq)]
pub enum TransferEvent {
    /// A transfer was asked for: its first event.
    TransferRequested {
        /// The payer.
        from_account_id: String,
        /// The payee.
        to_account_id: String,
        /// How much, in cents.
        amount: u64,
    },
    /// The payee refused the deposit: the money goes back.
    DepositRefused {
        /// The refusal's code.
        code: String,
    },
}

/// What a transfer's history adds up to.
#[derive(Debug, Default)]
pub struct Transfer {
    /// The payer, the payee and the amount.
    pub requested: Option<(String, String, u64)>,
    /// Why the payee refused the deposit, once it has.
    pub refused: Option<String>,
}

/// The reason a step that timed out is given.
pub const TIMED_OUT: &str = "timed-out";

impl Aggregate for Transfer {
    type Event = TransferEvent;
    const CATEGORY: &'static str = "saga-transfer-money";

    fn apply(&mut self, event: &TransferEvent) {
        match event {
            TransferEvent::TransferRequested {
                from_account_id,
                to_account_id,
                amount,
            } => {
                self.requested = Some((from_account_id.clone(), to_account_id.clone(), *amount));
            }
            TransferEvent::DepositRefused { code } => self.refused = Some(code.clone()),
        }
    }
}

#[allframe::saga]
impl Saga for Transfer {
    fn decide(&self, input: Input<'_, Self>) -> Decision<Self> {
        let Some((from, to, amount)) = &self.requested else {
            return Decision::end("failed").because("no transfer was requested");
        };
        let withdraw = || Withdraw {
            account_id: from.clone(),
            amount: *amount,
        };
        let deposit = |account_id: &String| Deposit {
            account_id: account_id.clone(),
            amount: *amount,
        };
        let refund = |code: &str| {
            Decision::send("refund", &deposit(from)).record(TransferEvent::DepositRefused {
                code: code.to_owned(),
            })
        };
        match input {
            Input::Started(_) => Decision::send("withdraw", &withdraw()),
            Input::Done {
                step: "withdraw", ..
            } => Decision::send("deposit", &deposit(to)),
            Input::Refused {
                step: "withdraw",
                code,
                ..
            } => Decision::end("rejected").because(code),
            Input::TimedOut { step: "withdraw" } => Decision::end("rejected").because(TIMED_OUT),
            Input::Done {
                step: "deposit", ..
            } => Decision::end("completed"),
            Input::Refused {
                step: "deposit",
                code,
                ..
            } => refund(code),
            Input::TimedOut { step: "deposit" } => refund(TIMED_OUT),
            Input::Done { step: "refund", .. } => {
                let reason = self.refused.clone().unwrap_or_default();
                Decision::end("refunded").because(reason)
            }
            Input::Refused {
                step: "refund",
                code,
                ..
            } => Decision::end("failed").because(format!("the refund was refused: {code}")),
            Input::TimedOut { step: "refund" } => {
                Decision::end("failed").because("the refund timed out")
            }
            _ => Decision::end("failed").because("an answer to a step it never sent"),
        }
    }
}

/// Moves money from one account to another: starts a `transfer-money`
/// saga. Over HTTP it answers `202` with the saga's id.
#[command(aggregate = Transfer, create, name = "transfer-money")]
#[derive(Debug, Clone, Serialize, Deserialize, garde::Validate)]
#[serde(deny_unknown_fields)]
pub struct TransferMoney {
    /// The payer.
    #[garde(length(chars, min = 1, max = 100))]
    pub from_account_id: String,
    /// The payee.
    #[garde(length(chars, min = 1, max = 100))]
    pub to_account_id: String,
    /// How much, in cents.
    #[garde(range(min = 1, max = 1_000_000_000))]
    pub amount: u64,
}

/// Why a transfer is refused before it starts.
#[derive(Debug, thiserror::Error, DomainError)]
pub enum TransferError {
    /// Paying an account into itself.
    #[error("the payer and the payee are the same account")]
    SameAccount,
}

#[command_handler]
async fn transfer_money(
    command: TransferMoney,
    _: &Transfer,
) -> Result<Vec<TransferEvent>, TransferError> {
    if command.from_account_id == command.to_account_id {
        return Err(TransferError::SameAccount);
    }
    Ok(vec![TransferEvent::TransferRequested {
        from_account_id: command.from_account_id,
        to_account_id: command.to_account_id,
        amount: command.amount,
    }])
}

#[cfg(test)]
mod tests {
    use allframe::testing::given_saga;

    use super::*;

    fn requested() -> TransferEvent {
        TransferEvent::TransferRequested {
            from_account_id: "a".into(),
            to_account_id: "b".into(),
            amount: 5,
        }
    }

    fn withdraw() -> Withdraw {
        Withdraw {
            account_id: "a".into(),
            amount: 5,
        }
    }

    fn deposit(account_id: &str) -> Deposit {
        Deposit {
            account_id: account_id.into(),
            amount: 5,
        }
    }

    #[test]
    fn it_withdraws_then_deposits_then_completes() {
        given_saga::<Transfer>([requested()])
            .when_started()
            .then_sends("withdraw", &withdraw())
            .then_records([])
            .then_goes_on();
        given_saga::<Transfer>([requested()])
            .when_done("withdraw")
            .then_sends("deposit", &deposit("b"))
            .then_goes_on();
        given_saga::<Transfer>([requested()])
            .when_done("deposit")
            .then_sends_nothing()
            .then_ends("completed", None);
    }

    #[test]
    fn a_refused_or_unanswered_withdrawal_rejects_it() {
        given_saga::<Transfer>([requested()])
            .when_refused("withdraw", "insufficient-funds")
            .then_sends_nothing()
            .then_ends("rejected", Some("insufficient-funds"));
        given_saga::<Transfer>([requested()])
            .when_timed_out("withdraw")
            .then_ends("rejected", Some(TIMED_OUT));
    }

    #[test]
    fn a_refused_or_unanswered_deposit_pays_the_money_back() {
        for (when, code) in [("refused", "account-closed"), ("timed out", TIMED_OUT)] {
            let scenario = given_saga::<Transfer>([requested()]);
            let then = match when {
                "refused" => scenario.when_refused("deposit", code),
                _ => scenario.when_timed_out("deposit"),
            };
            then.then_sends("refund", &deposit("a"))
                .then_records([TransferEvent::DepositRefused { code: code.into() }])
                .then_goes_on();
        }
        let refused = TransferEvent::DepositRefused {
            code: "not-found".into(),
        };
        given_saga::<Transfer>([requested(), refused.clone()])
            .when_done("refund")
            .then_ends("refunded", Some("not-found"));
        given_saga::<Transfer>([requested(), refused])
            .when_refused("refund", "account-closed")
            .then_ends("failed", Some("the refund was refused: account-closed"));
    }

    #[test]
    fn an_answer_to_a_step_it_never_sent_fails_it() {
        given_saga::<Transfer>([requested()])
            .when_done("lottery")
            .then_ends("failed", Some("an answer to a step it never sent"));
        given_saga::<Transfer>([])
            .when_done("withdraw")
            .then_ends("failed", Some("no transfer was requested"));
    }
}
