//! A projection row is a struct with named fields, not generic.
use serde::{Deserialize, Serialize};

#[allframe::projection(name = "colours", key = id)]
#[derive(Serialize, Deserialize)]
enum Colour {
    Red,
}

#[allframe::projection(name = "pairs", key = id)]
#[derive(Serialize, Deserialize)]
struct Pair(String, u64);

#[allframe::projection(name = "boxes", key = id)]
#[derive(Serialize, Deserialize)]
struct Boxed<T> {
    id: String,
    value: T,
}

#[allframe::projection(name = "syntax", key = id,, oops)]
#[derive(Serialize, Deserialize)]
struct Syntax {
    id: String,
}

fn main() {}
