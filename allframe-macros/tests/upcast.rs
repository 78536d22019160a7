//! Upcasting at run time: data stored at older schema versions (and under
//! older type names) decodes into today's event through the declared steps.

use allframe::{DecodeErrorKind, Event, RecordedEvent, UpcastError};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// Today (version 3): `owner` is an object and there is a `currency`.
/// Version 1 had a plain `name`; version 2 renamed it `owner` (a string).
#[derive(Event, Debug, Clone, PartialEq)]
enum Account {
    #[event(
        version = 3,
        alias = ["AccountCreated", "account.created"],
        upcast(1 = name_to_owner, 2 = from(OpenedV2))
    )]
    Opened {
        owner: Owner,
        currency: String,
    },
    /// Three JSON steps; the last can refuse.
    #[event(version = 4, upcast(1 = add_note, 2 = add_note, 3 = checked_amount))]
    Deposited {
        amount: u64,
        note: String,
    },
    Closed,
}

#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize, utoipa::ToSchema)]
struct Owner {
    name: String,
}

/// Version 2 of `Opened`, as it was stored.
#[derive(Deserialize)]
struct OpenedV2 {
    owner: String,
}

impl From<OpenedV2> for Account {
    fn from(old: OpenedV2) -> Self {
        Account::Opened {
            owner: Owner { name: old.owner },
            currency: "EUR".into(),
        }
    }
}

fn object(data: &mut Value) -> Result<&mut serde_json::Map<String, Value>, UpcastError> {
    data.as_object_mut()
        .ok_or_else(|| UpcastError::new("the data is not a JSON object"))
}

fn name_to_owner(mut data: Value) -> Result<Value, UpcastError> {
    let fields = object(&mut data)?;
    let name = fields
        .remove("name")
        .ok_or_else(|| UpcastError::new("no `name`"))?;
    fields.insert("owner".into(), name);
    Ok(data)
}

fn add_note(mut data: Value) -> Result<Value, UpcastError> {
    let fields = object(&mut data)?;
    let note = match fields.get("note") {
        Some(Value::String(note)) => format!("{note}+"),
        _ => "+".into(),
    };
    fields.insert("note".into(), json!(note));
    Ok(data)
}

fn checked_amount(data: Value) -> Result<Value, UpcastError> {
    match data.get("amount").and_then(Value::as_u64) {
        Some(0) | None => Err(UpcastError::new("a deposit of nothing")),
        Some(_) => Ok(data),
    }
}

/// An enum whose default version covers every variant: each has its chain.
#[derive(Event, Debug, PartialEq)]
#[event(version = 2)]
enum Tick {
    #[event(upcast(1 = from(u64)))]
    Counted(u64),
    #[event(upcast(1 = to_object))]
    Reset {},
}

impl From<u64> for Tick {
    fn from(n: u64) -> Self {
        Tick::Counted(n * 10)
    }
}

fn to_object(_: Value) -> Result<Value, UpcastError> {
    Ok(json!({}))
}

/// A struct event with a JSON step.
#[derive(Event, Debug, PartialEq)]
#[event(rename = "money.moved", version = 2, alias = "MoneyMoved", upcast(1 = cents))]
struct Moved {
    cents: u64,
}

fn cents(data: Value) -> Result<Value, UpcastError> {
    let euros = data
        .get("euros")
        .and_then(Value::as_u64)
        .ok_or_else(|| UpcastError::new("no `euros`"))?;
    Ok(json!({ "cents": euros * 100 }))
}

fn raw(json: Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(&json).unwrap()
}

fn opened(name: &str) -> Account {
    Account::Opened {
        owner: Owner { name: name.into() },
        currency: "EUR".into(),
    }
}

#[test]
fn each_older_version_reaches_todays_shape() {
    let v1 = Account::from_data("Opened", 1, &raw(json!({"name": "ada"}))).unwrap();
    assert_eq!(v1, opened("ada"));
    let v2 = Account::from_data("Opened", 2, &raw(json!({"owner": "bob"}))).unwrap();
    assert_eq!(v2, opened("bob"));
    let today = json!({"owner": {"name": "cy"}, "currency": "NOK"});
    let v3 = Account::from_data("Opened", 3, &raw(today)).unwrap();
    assert_eq!(
        v3,
        Account::Opened {
            owner: Owner { name: "cy".into() },
            currency: "NOK".into()
        }
    );
}

#[test]
fn json_steps_run_in_order_from_the_stored_version() {
    let deposited = |version, data| Account::from_data("Deposited", version, &raw(data));
    assert_eq!(
        deposited(1, json!({"amount": 5})).unwrap(),
        Account::Deposited {
            amount: 5,
            note: "++".into()
        }
    );
    assert_eq!(
        deposited(2, json!({"amount": 5, "note": "x"})).unwrap(),
        Account::Deposited {
            amount: 5,
            note: "x+".into()
        }
    );
    assert_eq!(
        deposited(4, json!({"amount": 5, "note": "x"})).unwrap(),
        Account::Deposited {
            amount: 5,
            note: "x".into()
        }
    );
}

#[test]
fn old_type_names_are_aliases() {
    for name in ["AccountCreated", "account.created"] {
        let old = Account::from_data(name, 1, &raw(json!({"name": "ada"}))).unwrap();
        assert_eq!(old, opened("ada"));
        // Re-encoded, an aliased event takes today's name and version.
        assert_eq!((old.event_type(), old.schema_version()), ("Opened", 3));
    }
    assert_eq!(Account::event_types(), ["Opened", "Deposited", "Closed"]);
    let moved = Moved::from_data("MoneyMoved", 1, &raw(json!({"euros": 2}))).unwrap();
    assert_eq!(moved, Moved { cents: 200 });
    assert_eq!(Moved::event_types(), ["money.moved"]);
}

#[test]
fn a_failing_step_names_the_version_it_read() {
    let error = Account::from_data("Deposited", 3, &raw(json!({"amount": 0}))).unwrap_err();
    match error {
        DecodeErrorKind::UpcastFailed { from, error } => {
            assert_eq!(from, 3);
            assert_eq!(error.to_string(), "a deposit of nothing");
        }
        other => panic!("{other:?}"),
    }
    let error = Account::from_data("Opened", 1, &raw(json!({"owner": "x"}))).unwrap_err();
    assert!(
        matches!(error, DecodeErrorKind::UpcastFailed { from: 1, .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("schema version 1") && message.contains("no `name`"),
        "{message}"
    );
}

#[test]
fn a_typed_step_reads_what_the_json_steps_before_it_made() {
    // Version 1 goes through `name_to_owner`, then `from(OpenedV2)`.
    let error = Account::from_data("Opened", 1, &raw(json!({"name": 7}))).unwrap_err();
    assert!(
        matches!(error, DecodeErrorKind::InvalidData(_)),
        "{error:?}"
    );
    assert_eq!(
        Tick::from_data("Counted", 1, &raw(json!(4))).unwrap(),
        Tick::Counted(40)
    );
    assert_eq!(
        Tick::from_data("Counted", 2, &raw(json!(4))).unwrap(),
        Tick::Counted(4)
    );
    assert_eq!(
        Tick::from_data("Reset", 1, &raw(json!("anything"))).unwrap(),
        Tick::Reset {}
    );
}

#[test]
fn versions_past_todays_wait_for_an_upgrade() {
    let error = Account::from_data("Opened", 4, &raw(json!({}))).unwrap_err();
    assert!(
        matches!(error, DecodeErrorKind::NewerSchemaVersion { current: 3 }),
        "{error:?}"
    );
    let error = Account::from_data("AccountCreated", 9, &raw(json!({}))).unwrap_err();
    assert!(
        matches!(error, DecodeErrorKind::NewerSchemaVersion { current: 3 }),
        "{error:?}"
    );
    let error = Account::from_data("Closed", 0, &raw(json!({}))).unwrap_err();
    assert!(
        matches!(
            error,
            DecodeErrorKind::UnsupportedSchemaVersion { supported: 1 }
        ),
        "{error:?}"
    );
}

#[test]
fn recorded_events_decode_through_the_chain() {
    let recorded: RecordedEvent = serde_json::from_value(json!({
        "position": 9, "stream_id": "account-1", "version": 1,
        "type": "AccountCreated", "schema_version": 1,
        "data": {"name": "ada"},
        "metadata": {"event_id": "0193a0a0-0000-7000-8000-000000000000"},
        "recorded_at": "2026-11-26T12:00:00.000Z",
    }))
    .unwrap();
    assert_eq!(recorded.decode::<Account>().unwrap(), opened("ada"));
}
