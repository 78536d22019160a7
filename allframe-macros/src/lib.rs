//! Procedural macros for [AllFrame](https://docs.rs/allframe).
//!
//! Use them through the `allframe` crate, which re-exports each macro next
//! to the trait it implements (`allframe::Event` is both the trait and its
//! derive). Generated code refers only to `::allframe::__private`, so a
//! user crate needs no direct `serde` dependency.
//!
//! Each macro goes parse → check → expand: a raw model of what was written,
//! a checked model of what it means, and the generated code. Every mistake
//! is reported at its own span in one pass, and a stub impl is still emitted
//! so the real errors are not buried under "trait not implemented".

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

mod case;
mod command;
mod diagnostics;
mod domain_error;
mod event;
mod handler;
mod projection;
mod query;
mod query_handler;
mod saga;
mod schema;

/// Implements `allframe::Event` for an enum (one stored `type` per variant)
/// or a struct (one stored `type`).
///
/// ```
/// use allframe::{Event, UpcastError};
/// use serde_json::{Value, json};
///
/// #[derive(Event, Debug, PartialEq)]
/// enum Account {
///     Opened { owner: String },
///     #[event(rename = "account.deposited", version = 3, alias = "Deposited",
///             upcast(1 = add_currency, 2 = from(DepositedV2)))]
///     Deposited { cents: u64, currency: String },
///     Closed,
/// }
///
/// /// Version 1 had no currency: every amount was in euros.
/// fn add_currency(mut data: Value) -> Result<Value, UpcastError> {
///     let fields = data.as_object_mut().ok_or_else(|| UpcastError::new("not an object"))?;
///     fields.insert("currency".into(), json!("EUR"));
///     Ok(data)
/// }
///
/// /// Version 2 counted whole units.
/// #[derive(serde::Deserialize)]
/// struct DepositedV2 { amount: u64, currency: String }
///
/// impl From<DepositedV2> for Account {
///     fn from(old: DepositedV2) -> Self {
///         Account::Deposited { cents: old.amount * 100, currency: old.currency }
///     }
/// }
///
/// let event = Account::Deposited { cents: 100, currency: "EUR".into() };
/// assert_eq!(Account::event_types(), ["Opened", "account.deposited", "Closed"]);
/// assert_eq!(event.event_type(), "account.deposited");
/// assert_eq!(event.schema_version(), 3);
/// let data = event.to_data().unwrap();
/// assert_eq!(data.get(), r#"{"cents":100,"currency":"EUR"}"#);
/// assert_eq!(Account::from_data("account.deposited", 3, &data).unwrap(), event);
///
/// // Stored years ago, under the old name, at version 1.
/// let old = serde_json::value::to_raw_value(&json!({"amount": 1})).unwrap();
/// assert_eq!(Account::from_data("Deposited", 1, &old).unwrap(), event);
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
/// # Older versions and names
///
/// Stored events are never rewritten; data stored at an older version
/// decodes into today's shape through steps declared on the variant (or
/// struct), one from each older version:
///
/// - `upcast(N = function)`: `fn(serde_json::Value) -> Result<serde_json::Value,
///   allframe::UpcastError>` turns the JSON of version N into that of
///   version N + 1;
/// - `upcast(N = from(OldShape))`: the data of version N (after the JSON
///   steps before it) deserializes as `OldShape`, and `From<OldShape>` for the
///   event type makes today's value of it — the chain ends there.
///
/// Every version below today's needs its step, so a gap is a compile error
/// naming the variant; steps only go up, so a chain has no cycle or dead
/// end. `alias = "OldName"` (or `alias = ["A", "B"]`) decodes data stored
/// under an earlier name as this variant, through the same steps. A change
/// that old data already fits — a new `Option` field, or one with
/// `#[serde(default)]` — needs no new version at all.
///
/// `data_schemas` gives each stored type's JSON Schema for the OpenAPI
/// document, written from the fields' types, doc comments and serde
/// attributes: every field type (and a newtype variant's inner type)
/// implements utoipa's `ToSchema` or `PartialSchema`, as the standard
/// library's types, `uuid` and `chrono` types already do.
///
/// `from_data` fails with `UnknownType` for a `type` it does not declare
/// (nor alias), `NewerSchemaVersion` for a version past today's (written by
/// a newer release), `UnsupportedSchemaVersion` for version 0,
/// `UpcastFailed` when a step refuses the data, and `InvalidData` when the
/// JSON does not fit.
///
/// Generic types, unions, tuple structs and tuple variants with more than
/// one field are rejected.
#[proc_macro_derive(Event, attributes(event, serde))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    event::derive(&input).into()
}

/// Implements `allframe::Command` for a struct that also derives `Clone`
/// (a retry after a concurrency conflict runs on a clone), `Serialize`,
/// `Deserialize` and `garde::Validate`. The struct is kept as written.
///
/// ```
/// # use allframe::{Aggregate, Event};
/// # #[derive(Event)]
/// # enum AccountEvent { Opened { owner: String } }
/// # #[derive(Default)]
/// # struct Account;
/// # impl Aggregate for Account {
/// #     type Event = AccountEvent;
/// #     const CATEGORY: &'static str = "account";
/// #     fn apply(&mut self, _: &AccountEvent) {}
/// # }
/// use allframe::{Command, command};
/// use serde::{Deserialize, Serialize};
///
/// #[command(aggregate = Account, id = account_id)]
/// #[derive(Clone, Serialize, Deserialize, garde::Validate)]
/// #[serde(rename_all = "camelCase")]
/// struct Deposit {
///     #[garde(length(chars, min = 1))]
///     account_id: String,
///     #[garde(range(min = 1))]
///     amount: u64,
/// }
///
/// #[command(aggregate = Account, create, name = "open")]
/// #[derive(Clone, Serialize, Deserialize, garde::Validate)]
/// struct OpenAccount {
///     #[garde(length(chars, min = 1, max = 100))]
///     owner: String,
/// }
///
/// let deposit = Deposit { account_id: "a1".into(), amount: 5 };
/// assert_eq!((Deposit::NAME, Deposit::CREATE), ("deposit", false));
/// assert_eq!(deposit.aggregate_id().as_deref(), Some("a1"));
/// assert_eq!(Deposit::wire_field("account_id"), "accountId");
/// assert_eq!((OpenAccount::NAME, OpenAccount::CREATE), ("open", true));
/// assert_eq!(OpenAccount { owner: "ada".into() }.aggregate_id(), None);
/// ```
///
/// # Options
///
/// - `aggregate = Type` (required): the aggregate the command changes.
/// - `id = field`: the field holding the aggregate id; its value becomes
///   the id through `ToString` (a `String`, a `Uuid`, …).
/// - `create`: the command creates its aggregate, whose stream must not
///   exist yet. Only a create-command may omit `id`; the server then
///   generates a UUID v7.
/// - `name = "..."`: the name it is dispatched and routed under, in
///   kebab-case. By default the struct's name in kebab-case: a word starts
///   at each capital after a lowercase letter or digit, and at the last
///   capital of an acronym (`OpenAccount` → `open-account`, `HTTPPing` →
///   `http-ping`).
///
/// # Checks
///
/// Validation errors point at fields by their wire names, so
/// `#[serde(rename = "...")]` on fields and `#[serde(rename_all = "...")]`
/// on the struct are read (the `deserialize` name when they differ).
///
/// garde's `length(...)` counts bytes unless told otherwise, while the
/// JSON Schema of the command counts characters; a `length` rule must
/// therefore name its mode (`length(chars, ...)`, or `bytes`, `graphemes`,
/// `utf16`, `simple`). A `length` directly on a field that is plainly a
/// collection (`Vec`, sets, maps, arrays, an `Option` of one) counts items
/// and needs no mode.
///
/// # Schema
///
/// `Command::schema` is the body's JSON Schema for the OpenAPI document,
/// written from the fields' types (each implements utoipa's `ToSchema` or
/// `PartialSchema`), the doc comments (the struct's first paragraph is the
/// operation's summary) and the serde attributes, plus what garde checks:
/// `length(chars, ...)` as `minLength`/`maxLength` (a collection's as
/// `minItems`/`maxItems`; other modes in the description), `range` as
/// `minimum`/`maximum`, `email`, `url`, `ipv4`, `ipv6` as `format`,
/// `pattern("...")` as `pattern` and `required` as required.
///
/// Generic structs, tuple and unit structs, enums and unions are rejected.
#[proc_macro_attribute]
pub fn command(args: TokenStream, item: TokenStream) -> TokenStream {
    command::attribute(args.into(), item.into()).into()
}

/// Registers an `async fn` as the handler of its command.
///
/// ```
/// # use allframe::{Aggregate, Event};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Event)]
/// # enum AccountEvent { Deposited { amount: u64 } }
/// # #[derive(Default)]
/// # struct Account { balance: u64 }
/// # impl Aggregate for Account {
/// #     type Event = AccountEvent;
/// #     const CATEGORY: &'static str = "account";
/// #     fn apply(&mut self, _: &AccountEvent) {}
/// # }
/// # #[allframe::command(aggregate = Account, id = account_id)]
/// # #[derive(Clone, Serialize, Deserialize, garde::Validate)]
/// # struct Deposit {
/// #     #[garde(skip)]
/// #     account_id: String,
/// #     #[garde(range(min = 1))]
/// #     amount: u64,
/// # }
/// use allframe::{Dep, DomainError, command_handler};
///
/// struct Limits { max_balance: u64 }
///
/// #[derive(Debug, thiserror::Error, DomainError)]
/// enum DepositError {
///     #[error("the balance would exceed {0}")]
///     #[domain_error(status = 409)]
///     LimitExceeded(u64),
/// }
///
/// #[command_handler]
/// async fn deposit(
///     command: Deposit,
///     account: &Account,
///     limits: Dep<Limits>,
/// ) -> Result<Vec<AccountEvent>, DepositError> {
///     if account.balance + command.amount > limits.max_balance {
///         return Err(DepositError::LimitExceeded(limits.max_balance));
///     }
///     Ok(vec![AccountEvent::Deposited { amount: command.amount }])
/// }
/// ```
///
/// The function is kept as written and stays callable. Its parameters are
/// the command (by value), the current state of the command's aggregate
/// (by reference), then any number of `Dep<T>` from the dependency
/// container; it returns `Result<Vec<Event>, E>` with the aggregate's
/// events and a [`DomainError`](derive@DomainError) (or
/// `std::convert::Infallible`). Patterns such as `_` are fine.
///
/// The macro adds a hidden handler type and registers it, so every
/// `Dispatcher` built without an explicit handler list runs it; the
/// dispatcher's builder fails when a `Dep<T>` has no provider, and when
/// two handlers handle one command.
///
/// Type mistakes are reported at the parameter that made them: a first
/// parameter that is not a command, a state that is not the command's
/// aggregate, events that are not the aggregate's events, an error that
/// is not a domain error. Methods, generic functions and non-`async`
/// functions are rejected.
#[proc_macro_attribute]
pub fn command_handler(args: TokenStream, item: TokenStream) -> TokenStream {
    handler::attribute(args.into(), item.into()).into()
}

/// Implements `allframe::DomainError` (a stable code and an HTTP status)
/// for an enum, one code per variant, or a struct. `Display` and `Error`
/// come from elsewhere, usually `thiserror`.
///
/// ```
/// use allframe::DomainError;
///
/// #[derive(Debug, thiserror::Error, DomainError)]
/// #[domain_error(status = 409)]
/// enum BankError {
///     #[error("insufficient funds")]
///     #[domain_error(status = 422)]
///     InsufficientFunds { balance: u64 },
///     #[error("the account is closed")]
///     AccountClosed,
///     #[error("too many requests")]
///     #[domain_error(code = "slow-down", status = 429)]
///     RateLimited,
/// }
///
/// let error = BankError::InsufficientFunds { balance: 3 };
/// assert_eq!((error.code(), error.status()), ("insufficient-funds", 422));
/// assert_eq!((BankError::AccountClosed.code(), BankError::AccountClosed.status()), ("account-closed", 409));
/// assert_eq!(BankError::RateLimited.code(), "slow-down");
/// ```
///
/// - `code` is `#[domain_error(code = "...")]` on the variant (or struct),
///   else its name in kebab-case. Codes are kebab-case ASCII and unique
///   within the type.
/// - `status` is `#[domain_error(status = N)]` on the variant, else on the
///   enum, else 422; N is an HTTP error status, 400 to 599.
///
/// Unions are rejected.
#[proc_macro_derive(DomainError, attributes(domain_error))]
pub fn derive_domain_error(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    domain_error::derive(&input).into()
}

/// Declares a struct as the row of a projection: implements
/// `allframe::Row` and registers the projection, so
/// `allframe::Projections` runs it.
///
/// ```
/// # use allframe::{Aggregate, Event, RecordedEvent};
/// # #[derive(Event)]
/// # enum AccountEvent { Opened { owner: String } }
/// # #[derive(Default)]
/// # struct Account;
/// # impl Aggregate for Account {
/// #     type Event = AccountEvent;
/// #     const CATEGORY: &'static str = "account";
/// #     fn apply(&mut self, _: &AccountEvent) {}
/// # }
/// use allframe::{ApplyError, Change, Projection, Row};
/// use serde::{Deserialize, Serialize};
///
/// #[allframe::projection(name = "owners", key = account_id, indexed_by(owner))]
/// #[derive(Serialize, Deserialize)]
/// struct Owner { account_id: String, owner: String }
///
/// impl Projection for Owner {
///     type Source = Account;
///     fn apply(_: Option<&Self>, event: &AccountEvent, recorded: &RecordedEvent)
///         -> Result<Change<Self>, ApplyError> {
///         let AccountEvent::Opened { owner } = event;
///         Ok(Change::Upsert(Owner { account_id: recorded.aggregate_id().into(), owner: owner.clone() }))
///     }
/// }
///
/// assert_eq!((Owner::NAME, Owner::KEY, Owner::INDEXED_BY), ("owners", "account_id", &["owner"][..]));
/// let row = Owner { account_id: "a1".into(), owner: "Ada".into() };
/// assert_eq!((row.key(), row.index()), ("a1".to_owned(), vec![("owner", "Ada".to_owned())]));
/// ```
///
/// # Options
///
/// - `name = "..."` (required): the projection's name, in kebab-case.
/// - `key = field` (required): the field holding the row's key; it becomes
///   a string through `ToString` (a `String`, a `Uuid`, a number, ...).
/// - `indexed_by(field, ...)`: fields rows can be listed by. A field's
///   value is indexed as text (a JSON string as itself, other values as
///   their JSON); a `None` is not indexed.
///
/// The options name fields by their Rust names; clients see them by their
/// serde names (`#[serde(rename)]`, `rename_all`): `Row::KEY`,
/// `Row::INDEXED_BY` and the list filters use those. The struct must be a
/// non-generic struct with named fields deriving `Serialize` and
/// `Deserialize`, and must implement `allframe::Projection`.
///
/// # Schema
///
/// `Row::schema` is the row's JSON Schema for the OpenAPI document,
/// written from the fields' types (each implements utoipa's `ToSchema` or
/// `PartialSchema`), doc comments and serde attributes. The row also
/// implements utoipa's `ToSchema` from it, under the struct's name, so a
/// query's answer can hold rows; do not derive `ToSchema` on it as well.
#[proc_macro_attribute]
pub fn projection(args: TokenStream, item: TokenStream) -> TokenStream {
    projection::attribute(args.into(), item.into()).into()
}

/// Implements `allframe::Query` for a struct that also derives
/// `Deserialize` and `garde::Validate`: the parameters of a read, taken
/// from the query string of `GET /queries/{name}`.
///
/// ```
/// use allframe::query;
/// use allframe::Query as _;
/// use serde::Deserialize;
///
/// /// Accounts holding at least `min_balance`.
/// #[query]
/// #[derive(Deserialize, garde::Validate)]
/// struct AccountsOver {
///     #[garde(skip)]
///     min_balance: u64,
///     #[garde(range(min = 1, max = 1000))]
///     #[serde(default = "fifty")]
///     limit: usize,
/// }
/// fn fifty() -> usize { 50 }
///
/// assert_eq!(AccountsOver::NAME, "accounts-over");
/// assert_eq!(AccountsOver::schema().schema()["properties"]["limit"]["maximum"], 1000);
/// ```
///
/// - `name = "..."`: the name it is routed under, in kebab-case; by
///   default the struct's name in kebab-case.
///
/// Each field is one query-string parameter (serde names it; numbers and
/// booleans parse from their text, `Option` fields may be left out). The
/// parameters' schema, with garde's rules as for `#[command]`, becomes the
/// operation's `in: query` parameters. `length` rules must name their mode.
/// Generic structs, tuple and unit structs, enums and unions are rejected.
#[proc_macro_attribute]
pub fn query(args: TokenStream, item: TokenStream) -> TokenStream {
    query::attribute(args.into(), item.into()).into()
}

/// Registers an `async fn` as the handler of its query, served at
/// `GET /queries/{name}`.
///
/// ```
/// # use allframe::{Aggregate, Event, RecordedEvent};
/// # use allframe::{ApplyError, Change, Projection};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Event)]
/// # enum AccountEvent { Opened { owner: String } }
/// # #[derive(Default)]
/// # struct Account;
/// # impl Aggregate for Account {
/// #     type Event = AccountEvent;
/// #     const CATEGORY: &'static str = "account";
/// #     fn apply(&mut self, _: &AccountEvent) {}
/// # }
/// # #[allframe::projection(name = "owners", key = account_id, indexed_by(owner))]
/// # #[derive(Serialize, Deserialize)]
/// # struct Owner { account_id: String, owner: String }
/// # impl Projection for Owner {
/// #     type Source = Account;
/// #     fn apply(_: Option<&Self>, _: &AccountEvent, _: &RecordedEvent)
/// #         -> Result<Change<Self>, ApplyError> { Ok(Change::Skip) }
/// # }
/// use allframe::ListQuery;
/// use allframe::{Projections, ProjectionError, query, query_handler};
///
/// #[query]
/// #[derive(Deserialize, garde::Validate)]
/// struct AccountsOf {
///     #[garde(length(chars, min = 1))]
///     owner: String,
/// }
///
/// #[derive(Serialize, utoipa::ToSchema)]
/// struct Accounts { items: Vec<Owner> }
///
/// #[query_handler]
/// async fn accounts_of(query: AccountsOf, projections: &Projections)
///     -> Result<Accounts, ProjectionError> {
///     let page = projections
///         .list::<Owner>(&ListQuery::new().filter("owner", query.owner))
///         .await?;
///     Ok(Accounts { items: page.items })
/// }
/// ```
///
/// Its parameters are the query (by value), the projections (by
/// reference, to read rows by key, by index or page by page), then any
/// number of `Dep<T>`; it returns `Result<Output, E>` where `Output` is
/// `Serialize + utoipa::ToSchema` (projection rows implement `ToSchema`)
/// and `E` a [`DomainError`](derive@DomainError), `allframe::ProjectionError`
/// (any failure a 500) or `std::convert::Infallible`. The app refuses to
/// start when a `Dep<T>` has no provider or two handlers answer one query.
#[proc_macro_attribute]
pub fn query_handler(args: TokenStream, item: TokenStream) -> TokenStream {
    query_handler::attribute(args.into(), item.into()).into()
}

/// Registers a saga: put it on the saga's `impl Saga for T` block, and
/// every app built into a program that links it runs it.
///
/// ```
/// use allframe::saga::{Decision, Input};
/// use allframe::{Aggregate, Event, Saga};
///
/// #[derive(Event)]
/// enum TripEvent { Booked {} }
///
/// #[derive(Default)]
/// struct Trip;
///
/// impl Aggregate for Trip {
///     type Event = TripEvent;
///     const CATEGORY: &'static str = "saga-trip";
///     fn apply(&mut self, _: &TripEvent) {}
/// }
///
/// #[allframe::saga]
/// impl Saga for Trip {
///     fn decide(&self, _: Input<'_, Self>) -> Decision<Self> {
///         Decision::end("completed")
///     }
/// }
/// ```
///
/// The type's `CATEGORY` must be `saga-` followed by the saga's name
/// (lowercase letters, digits and `-`, starting with a letter): anything
/// else fails to compile. Generic sagas and options are rejected.
#[proc_macro_attribute]
pub fn saga(args: TokenStream, item: TokenStream) -> TokenStream {
    saga::attribute(args.into(), item.into()).into()
}
