//! Projections: read models fed by a checkpointed subscription.
//!
//! A projection is a row type: `#[projection(name = "accounts", key =
//! account_id, indexed_by(owner))]` on the struct implements [`Row`] (its
//! name, key and indexed fields) and registers it; an `impl Projection`
//! says which events it reads ([`Source`]) and how one event changes one
//! row ([`Projection::apply`], returning a [`Change`]).
//!
//! ```
//! use allframe::{ApplyError, Change, Projection};
//! use allframe::{Aggregate, Event, RecordedEvent};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Event)]
//! enum AccountEvent { Opened { owner: String }, Deposited { amount: u64 }, Closed {} }
//!
//! #[derive(Default)]
//! struct Account;
//! impl Aggregate for Account {
//!     type Event = AccountEvent;
//!     const CATEGORY: &'static str = "account";
//!     fn apply(&mut self, _: &AccountEvent) {}
//! }
//!
//! #[allframe::projection(name = "balances", key = account_id, indexed_by(owner))]
//! #[derive(Clone, Serialize, Deserialize)]
//! struct Balance { account_id: String, owner: String, balance: u64 }
//!
//! impl Projection for Balance {
//!     type Source = Account;
//!
//!     fn apply(
//!         row: Option<&Self>,
//!         event: &AccountEvent,
//!         recorded: &RecordedEvent,
//!     ) -> Result<Change<Self>, ApplyError> {
//!         Ok(match (row, event) {
//!             (_, AccountEvent::Opened { owner }) => Change::Upsert(Balance {
//!                 account_id: recorded.aggregate_id().into(),
//!                 owner: owner.clone(),
//!                 balance: 0,
//!             }),
//!             (Some(row), AccountEvent::Deposited { amount }) => Change::Upsert(Balance {
//!                 balance: row.balance + amount,
//!                 ..row.clone()
//!             }),
//!             (_, AccountEvent::Closed {}) => Change::Delete,
//!             (None, _) => return Err("an account that was never opened".into()),
//!         })
//!     }
//! }
//! ```
//!
//! [`Projections`] runs every registered projection (one task each), reads
//! their rows, lists their status and rebuilds or restarts them. Rows are
//! kept by the event store's [`ProjectionStore`]: in the same database as
//! the events, rows and checkpoint in one transaction.
//!
//! [`ProjectionStore`]: crate::store::projections::ProjectionStore

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::event::RecordedEvent;
use crate::schema::WireSchema;

mod apply;
mod error;
mod meter;
mod projections;
mod read;
mod registry;
mod runner;
mod source;

pub use error::ProjectionError;
pub use meter::WorkProgress;
pub use projections::{Projections, ProjectionsBuilder};
pub use read::{DEFAULT_LIMIT, ListQuery, MAX_LIMIT, Page};
pub use registry::ProjectionRegistration;
pub use runner::{DEFAULT_BATCH_SIZE, ProjectionState, ProjectionStatus};
pub use source::{OneOf2, OneOf3, Source};

/// Why [`Projection::apply`] refused an event: any error, boxed. The
/// projection stops and is marked failed with its message.
pub type ApplyError = Box<dyn std::error::Error + Send + Sync>;

/// What one event does to one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<R> {
    /// Store this row (its key must be the key the event targets).
    Upsert(R),
    /// Delete the row.
    Delete,
    /// Leave the row as it is.
    Skip,
}

/// A projection's row type: its projection's name, key and indexed fields.
///
/// Implemented by `#[projection(...)]`; write it by hand only without the
/// `macros` feature.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a projection row",
    note = "add `#[allframe::projection(name = \"...\", key = field)]` to the definition of `{Self}`"
)]
pub trait Row: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The projection's name (kebab-case), as routed and listed.
    const NAME: &'static str;
    /// The name of the field holding the key.
    const KEY: &'static str;
    /// The fields rows can be looked up by, besides the key.
    const INDEXED_BY: &'static [&'static str];
    /// The projection's version (`#[projection(version = N)]`, default 1).
    /// Raise it when `apply` or the row changes what the stored rows
    /// should hold: at start-up, a projection whose rows were built by
    /// another version is rebuilt as a new generation beside the live one,
    /// which keeps serving (so today's row type must still read its rows,
    /// e.g. new fields with `#[serde(default)]`) until the new one has
    /// caught up and is swapped in.
    const VERSION: u32 = 1;

    /// This row's key.
    fn key(&self) -> String;

    /// This row's index entries: `(field, value)` for each field of
    /// [`INDEXED_BY`](Self::INDEXED_BY) that has a value (see
    /// [`index_value`]).
    fn index(&self) -> Vec<(&'static str, String)>;

    /// The JSON Schema of a row, for the OpenAPI document. `#[projection]`
    /// writes it from the fields; by hand it may stay a bare object.
    fn schema() -> WireSchema {
        WireSchema::new(serde_json::json!({ "type": "object" }))
    }
}

/// A read model: rows of `Self`, changed by the events of its [`Source`].
///
/// `apply` is a plain function of the current row and one event, so the
/// runner can replay it any number of times (a rebuild) and always get the
/// same rows. It must not have side effects.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a projection",
    note = "implement `allframe::Projection` for `{Self}`: its `Source` and `apply`"
)]
pub trait Projection: Row {
    /// The events it reads: an aggregate (its events), or a tuple of up to
    /// three aggregates (events as [`OneOf2`] / [`OneOf3`]).
    type Source: Source;

    /// The key of the row `event` changes, or `None` to skip the event.
    /// By default the id of the event's aggregate (its stream id without
    /// the `{category}-` prefix).
    fn row_key(
        event: &<Self::Source as Source>::Event,
        recorded: &RecordedEvent,
    ) -> Option<String> {
        let _ = event;
        Some(recorded.aggregate_id().to_owned())
    }

    /// What `event` does to `row` (the current row under
    /// [`row_key`](Self::row_key), `None` when there is none).
    fn apply(
        row: Option<&Self>,
        event: &<Self::Source as Source>::Event,
        recorded: &RecordedEvent,
    ) -> Result<Change<Self>, ApplyError>;
}

/// The value an indexed field is looked up by: a JSON string as itself,
/// other JSON values (numbers, booleans, arrays, objects) as their JSON
/// text; `None` for `null` (not indexed).
pub fn index_value<T: Serialize + ?Sized>(value: &T) -> Option<String> {
    match serde_json::to_value(value).ok()? {
        serde_json::Value::Null => None,
        serde_json::Value::String(text) => Some(text),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::index_value;

    #[test]
    fn index_values_are_plain_text() {
        assert_eq!(index_value("Ada").as_deref(), Some("Ada"));
        assert_eq!(index_value(&42u64).as_deref(), Some("42"));
        assert_eq!(index_value(&true).as_deref(), Some("true"));
        assert_eq!(index_value(&None::<String>), None);
        assert_eq!(index_value(&Some("x")).as_deref(), Some("x"));
    }
}
