//! The derive implements the codes only; `Display` and `Error` must come
//! from elsewhere (usually `thiserror`), and the trait says so.
use allframe::DomainError;

#[derive(Debug, DomainError)]
enum BankError {
    Closed,
}

fn main() {}
