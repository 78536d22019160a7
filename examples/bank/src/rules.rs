//! Who may do what once callers sign in: [`secured`] turns on HS256
//! bearer tokens (`sub`, `exp`, optional `roles`) and the bank's rules.
//!
//! - `open-account` only for yourself (`owner` = `sub`);
//! - `deposit` for anyone signed in;
//! - `withdraw`, `close-account` and `transfer-money` for the account's
//!   owner — a transfer's withdrawal is sent for whoever asked for the
//!   transfer, so one from somebody else's account ends `rejected` with
//!   the code `forbidden`; following it (`GET /sagas/transfer-money/{id}`)
//!   is for whoever asked for it (the framework's rule for every saga);
//! - an `accounts` row for its owner, lists of them only with
//!   `owner=<sub>`;
//! - `accounts-over`, `/admin/*` and the unfiltered event streams for
//!   admins; a user may stream `stream=account-{id}` of an account they
//!   own.
//!
//! Admins (role `admin`) may do everything.

use std::sync::Arc;

use allframe::auth::{Denied, JwtAuthenticator, Principal};
use allframe::{AppBuilder, EventFilter, EventStore, ListQuery, Row};
use futures_util::FutureExt;

use crate::accounts::{AccountRow, AccountsOver};
use crate::domain::{Account, AccountEvent, CloseAccount, Deposit, OpenAccount, Withdraw};
use crate::transfer::TransferMoney;

/// The fewest bytes a token secret may have: HS256 keys shorter than its
/// 256-bit hash are guessable.
pub const MIN_SECRET_BYTES: usize = 32;

/// `app` with callers signing in by HS256 tokens made with `secret`, and
/// the bank's rules. `store` is the app's store: the event streams' rule
/// reads who owns an account from it.
pub fn secured(app: AppBuilder, store: &dyn EventStore, secret: &[u8]) -> AppBuilder {
    let store = store.shared();
    app.authenticator(JwtAuthenticator::hs256(secret))
        .authorize::<OpenAccount>(|principal, command, _| yourself(principal, &command.owner))
        .authorize::<Deposit>(|principal, _, _| signed_in(principal).map(drop))
        .authorize::<Withdraw>(|principal, _, account| owner(principal, account))
        .authorize::<CloseAccount>(|principal, _, account| owner(principal, account))
        // The payer is checked where its account is loaded: the transfer's
        // withdrawal, sent for this principal.
        .authorize::<TransferMoney>(|principal, _, _| signed_in(principal).map(drop))
        .authorize_row::<AccountRow>(|principal, row| yourself(principal, &row.owner))
        .authorize_list::<AccountRow>(own_list)
        .authorize_query::<AccountsOver>(|principal, _| admin(principal))
        .authorize_events(move |principal, filter| {
            own_stream(store.clone(), principal, filter).boxed()
        })
}

/// The principal, or why there must be one.
fn signed_in(principal: Option<&Principal>) -> Result<&Principal, String> {
    principal.ok_or_else(|| "sign in first".to_owned())
}

fn admin(principal: Option<&Principal>) -> Result<(), String> {
    let principal = signed_in(principal)?;
    match principal.is_admin() {
        true => Ok(()),
        false => Err(format!("`{}` is not an admin", principal.subject)),
    }
}

/// Lets `owner` (or an admin) through.
fn yourself(principal: Option<&Principal>, owner: &str) -> Result<(), String> {
    let principal = signed_in(principal)?;
    match principal.subject == owner || principal.is_admin() {
        true => Ok(()),
        false => Err(format!(
            "`{}` may act only for themselves, not for `{owner}`",
            principal.subject
        )),
    }
}

fn owner(principal: Option<&Principal>, account: &Account) -> Result<(), String> {
    yourself(principal, &account.owner).map_err(|_| "only the account's owner may do this".into())
}

/// A list of `accounts` rows only of the caller's own.
fn own_list(principal: Option<&Principal>, query: &ListQuery) -> Result<(), String> {
    let principal = signed_in(principal)?;
    let own = matches!(&query.filter, Some((field, value)) if field == "owner" && *value == principal.subject);
    match own || principal.is_admin() {
        true => Ok(()),
        false => Err(format!(
            "list your own accounts: `{}?owner={}`",
            AccountRow::NAME,
            principal.subject
        )),
    }
}

/// The event streams: everything for admins, one of their own accounts'
/// streams for the others.
async fn own_stream(
    store: Arc<dyn EventStore>,
    principal: Option<Principal>,
    filter: EventFilter,
) -> Result<(), Denied> {
    let principal = signed_in(principal.as_ref())?;
    if principal.is_admin() {
        return Ok(());
    }
    let refused = || {
        Denied::from(
            "only admins may stream more than one account; others may stream `stream=account-{id}` of an account they own",
        )
    };
    let stream = filter.stream_id.as_deref().ok_or_else(refused)?;
    if stream.strip_prefix("account-").is_none_or(str::is_empty) {
        return Err(refused());
    }
    // An account's first event says who owns it.
    let first = store.read_stream(stream, 0, 1).await?;
    let owner = first
        .first()
        .and_then(|event| match event.decode::<AccountEvent>() {
            Ok(AccountEvent::AccountOpened { owner, .. }) => Some(owner),
            _ => None,
        });
    match owner {
        Some(owner) if owner == principal.subject => Ok(()),
        _ => Err(format!("`{stream}` is not an account of `{}`", principal.subject).into()),
    }
}
