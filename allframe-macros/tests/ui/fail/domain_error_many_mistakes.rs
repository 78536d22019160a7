//! Every mistake is reported at once, and using the type as a domain error
//! adds no "not a domain error" error on top.
use allframe::DomainError;

#[derive(Debug, thiserror::Error, DomainError)]
#[domain_error(code = "bank", status = 200)]
enum BankError {
    #[error("closed")]
    #[domain_error(status = 409, status = 410, colour = "red")]
    Closed,
    #[error("frozen")]
    #[domain_error(code = "Frozen")]
    Frozen { since: u64 },
    #[error("closed")]
    #[domain_error(code = "closed")]
    ClosedAgain(u8),
}

fn code<E: DomainError>(error: &E) -> &'static str {
    error.code()
}

fn main() {
    code(&BankError::Closed);
}
