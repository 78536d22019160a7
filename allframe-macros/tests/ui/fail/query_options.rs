//! `#[query]` mistakes, each at its own span: unknown, duplicate and
//! malformed options, a name that is not kebab-case, shapes that are not a
//! struct with named fields, a `length` without a mode.
use serde::Deserialize;

#[allframe::query(name = "over", colour = "red", name = "again")]
#[derive(Deserialize, garde::Validate)]
struct Unknown {
    #[garde(skip)]
    min: u64,
}

#[allframe::query(name = "Not Kebab")]
#[derive(Deserialize, garde::Validate)]
struct BadName {
    #[garde(skip)]
    min: u64,
}

#[allframe::query(name = 3)]
#[derive(Deserialize, garde::Validate)]
struct NotAString {
    #[garde(length(min = 1))]
    owner: String,
}

#[allframe::query]
#[derive(Deserialize, garde::Validate)]
struct Tuple(#[garde(skip)] u64);

#[allframe::query]
#[derive(Deserialize)]
enum NotAStruct {
    A,
}

fn main() {}
