//! A status is an HTTP error status, 400 to 599.
use allframe::DomainError;

#[derive(Debug, thiserror::Error, DomainError)]
#[domain_error(status = 200)]
enum BankError {
    #[error("closed")]
    #[domain_error(status = 600)]
    Closed,
    #[error("frozen")]
    #[domain_error(status = 99999)]
    Frozen,
    #[error("limited")]
    #[domain_error(status = 399)]
    Limited,
}

#[derive(Debug, thiserror::Error, DomainError)]
#[error("refused")]
#[domain_error(status = 0)]
struct Refused;

fn main() {}
