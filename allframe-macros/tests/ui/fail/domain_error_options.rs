//! Unknown, duplicate and malformed options, each at its own span.
use allframe::DomainError;

#[derive(Debug, thiserror::Error, DomainError)]
#[domain_error(code = "bank", colour = "red")]
enum BankError {
    #[error("closed")]
    #[domain_error(status = 409, status = 410)]
    Closed,
    #[error("frozen")]
    #[domain_error(code = frozen, status = "423")]
    Frozen,
    #[error("limited")]
    #[domain_error(code, retry::after = 3)]
    Limited,
    #[error("gone")]
    #[domain_error]
    Gone,
}

#[derive(Debug, thiserror::Error, DomainError)]
#[error("refused")]
struct Refused {
    #[domain_error(code = "reason")]
    reason: String,
}

fn code<E: DomainError>(error: &E) -> &'static str {
    error.code()
}

fn main() {
    code(&BankError::Closed);
    code(&Refused { reason: String::new() });
}
