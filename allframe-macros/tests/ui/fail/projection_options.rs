//! Unknown, duplicate and malformed options, and fields that do not exist,
//! each at its own span.
use serde::{Deserialize, Serialize};

#[allframe::projection(name = "rows", key = id, colour = "red", name = "again")]
#[derive(Serialize, Deserialize)]
struct Unknown {
    id: String,
}

#[allframe::projection(name = "Bad Name", key = "id", indexed_by(owner, owner, id, nope, 3))]
#[derive(Serialize, Deserialize)]
struct Malformed {
    id: String,
    owner: String,
}

#[allframe::projection(name, key = missing, indexed_by = owner)]
#[derive(Serialize, Deserialize)]
struct WrongForms {
    id: String,
    owner: String,
}

#[allframe::projection(indexed_by(owner))]
#[derive(Serialize, Deserialize)]
struct Missing {
    id: String,
    owner: String,
}

fn main() {}
