//! Procedural macros for [AllFrame](https://docs.rs/allframe).
//!
//! Use them through the `allframe` crate, which re-exports each macro next
//! to the trait it implements (`allframe::Event` is both the trait and its
//! derive). Generated code refers only to `::allframe::__private`, so a
//! user crate needs no direct `serde` dependency.
//!
//! Each derive goes parse → check → expand: a raw model of what was written,
//! a checked model of what it means, and the generated impl. Every mistake
//! is reported at its own span in one pass, and a stub impl is still emitted
//! so the real errors are not buried under "trait not implemented".

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

mod event;

/// Implements `allframe::Event` for an enum (one stored `type` per variant)
/// or a struct (one stored `type`).
///
/// ```
/// use allframe::Event;
///
/// #[derive(Event, Debug, PartialEq)]
/// #[event(version = 2)]
/// enum Account {
///     Opened { owner: String },
///     #[event(rename = "account.deposited", version = 3)]
///     Deposited { amount: u64 },
///     Closed,
/// }
///
/// let event = Account::Deposited { amount: 100 };
/// assert_eq!(Account::event_types(), ["Opened", "account.deposited", "Closed"]);
/// assert_eq!(event.event_type(), "account.deposited");
/// assert_eq!(event.schema_version(), 3);
/// let data = event.to_data().unwrap();
/// assert_eq!(data.get(), r#"{"amount":100}"#);
/// assert_eq!(Account::from_data("account.deposited", 3, &data).unwrap(), event);
/// ```
///
/// # Stored form
///
/// - `type` is the variant (or struct) name, or `#[event(rename = "...")]`
///   on it: 1 to 128 ASCII letters, digits, `_`, `-`, `.` or `:`. Names must
///   be unique within the type.
/// - `schema_version` is 1, or `#[event(version = N)]` on the enum (default
///   for every variant), the variant or the struct.
/// - `data` is a JSON object of the variant's named fields; unit and `{}`
///   variants store `{}`. A newtype variant `V(Inner)` stores `Inner`'s own
///   serde form. `#[serde(...)]` attributes on named fields (`rename`,
///   `default`, `skip_serializing_if`, …) are honoured without the type
///   deriving serde itself.
///
/// `from_data` fails with `UnknownType` for a `type` it does not declare,
/// `UnsupportedSchemaVersion` when the stored version differs from the
/// declared one, and `InvalidData` when the JSON does not fit.
///
/// Generic types, unions, tuple structs and tuple variants with more than
/// one field are rejected.
#[proc_macro_derive(Event, attributes(event, serde))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    event::derive(&input).into()
}
