//! `version` takes a positive integer, as `version = N`.
use serde::{Deserialize, Serialize};

#[allframe::projection(name = "zero", key = id, version = 0)]
#[derive(Serialize, Deserialize)]
struct Zero {
    id: String,
}

#[allframe::projection(name = "text", key = id, version = "2")]
#[derive(Serialize, Deserialize)]
struct Text {
    id: String,
}

#[allframe::projection(name = "list", key = id, version(2))]
#[derive(Serialize, Deserialize)]
struct List {
    id: String,
}

fn main() {}
