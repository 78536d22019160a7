//! Codes are kebab-case and unique within the type; the second use of a
//! code is the one reported.
use allframe::DomainError;

#[derive(Debug, thiserror::Error, DomainError)]
enum BankError {
    #[error("closed")]
    AccountClosed,
    #[error("closed")]
    #[domain_error(code = "account-closed")]
    Closed,
    #[error("frozen")]
    #[domain_error(code = "Frozen_Account")]
    Frozen,
    #[error("deleted")]
    #[domain_error(code = "")]
    Deleted,
    #[error("gone")]
    #[domain_error(code = "deleted-account")]
    Gone,
    #[error("deleted")]
    DeletedAccount,
}

#[derive(Debug, thiserror::Error, DomainError)]
#[error("refused")]
#[allow(non_camel_case_types)]
struct Verweigert_Ä;

fn main() {}
