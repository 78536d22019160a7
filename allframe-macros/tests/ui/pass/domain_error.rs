//! Codes and statuses of enums (unit, tuple, struct variants) and structs,
//! generic ones included, with their defaults and overrides.
use allframe::DomainError;

#[derive(Debug, thiserror::Error, DomainError)]
#[domain_error(status = 409)]
enum BankError {
    #[error("insufficient funds: {balance}")]
    #[domain_error(status = 422)]
    InsufficientFunds { balance: u64 },
    #[error("account closed")]
    AccountClosed,
    #[error("rate limited for {0} s")]
    #[domain_error(code = "slow-down", status = 429)]
    RateLimited(u64),
    #[error("HTTP ping")]
    HTTPPing,
}

#[derive(Debug, thiserror::Error, DomainError)]
#[error("not allowed")]
struct NotAllowed;

#[derive(Debug, thiserror::Error, DomainError)]
#[error("locked until {until}")]
#[domain_error(code = "locked", status = 423)]
struct Lock {
    until: u64,
}

#[derive(Debug, thiserror::Error, DomainError)]
enum Wrapped<T: std::fmt::Debug + std::fmt::Display + Send + Sync + 'static> {
    #[error("inner: {0}")]
    #[domain_error(status = 400)]
    Inner(T),
}

#[derive(Debug, thiserror::Error, DomainError)]
enum Never {}

fn assert_domain_error<E: DomainError>() {}

fn main() {
    let funds = BankError::InsufficientFunds { balance: 3 };
    assert_eq!((funds.code(), funds.status()), ("insufficient-funds", 422));
    let closed = BankError::AccountClosed;
    assert_eq!((closed.code(), closed.status()), ("account-closed", 409));
    let limited = BankError::RateLimited(5);
    assert_eq!((limited.code(), limited.status()), ("slow-down", 429));
    assert_eq!(BankError::HTTPPing.code(), "http-ping");
    assert_eq!((NotAllowed.code(), NotAllowed.status()), ("not-allowed", 422));
    let lock = Lock { until: 1 };
    assert_eq!((lock.code(), lock.status()), ("locked", 423));
    let wrapped = Wrapped::Inner(7_u8);
    assert_eq!((wrapped.code(), wrapped.status()), ("inner", 400));
    assert_domain_error::<Never>();
}
