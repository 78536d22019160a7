//! `#[derive(Event)]` at run time: stored names, versions and data, and the
//! way back from them.

use allframe::{DecodeErrorKind, Event};
use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_json::value::RawValue;

#[derive(Event, Debug, Clone, PartialEq)]
enum Account {
    Opened {
        owner: String,
        #[serde(
            rename = "creditLimit",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        credit_limit: Option<u64>,
    },
    #[event(rename = "account.deposited", version = 2, upcast(1 = deposited_v1))]
    Deposited {
        amount: u64,
        r#type: String,
    },
    Frozen,
    Reviewed {},
    Moved(Address),
}

/// Version 1 deposits were all in cash.
fn deposited_v1(mut data: serde_json::Value) -> Result<serde_json::Value, allframe::UpcastError> {
    data.as_object_mut()
        .ok_or_else(|| allframe::UpcastError::new("not an object"))?
        .insert("type".into(), json!("cash"));
    Ok(data)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
struct Address {
    city: String,
}

/// A struct event that also derives serde for other uses: both derives read
/// the same `#[serde]` attributes.
#[derive(Event, Serialize, Deserialize, Debug, PartialEq)]
#[event(rename = "money-withdrawn")]
struct MoneyWithdrawn {
    #[serde(rename = "cents")]
    amount: u64,
}

#[derive(Event, Debug, PartialEq)]
struct Pinged;

fn raw(json: serde_json::Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(&json).unwrap()
}

fn round_trip<E: Event + std::fmt::Debug + PartialEq>(event: &E) -> serde_json::Value {
    let data = event.to_data().unwrap();
    let back = E::from_data(event.event_type(), event.schema_version(), &data).unwrap();
    assert_eq!(&back, event);
    serde_json::from_str(data.get()).unwrap()
}

#[test]
fn event_types_are_listed_in_declaration_order() {
    assert_eq!(
        Account::event_types(),
        ["Opened", "account.deposited", "Frozen", "Reviewed", "Moved"]
    );
    assert_eq!(MoneyWithdrawn::event_types(), ["money-withdrawn"]);
    assert_eq!(Pinged::event_types(), ["Pinged"]);
}

#[test]
fn each_value_reports_its_type_and_version() {
    let cases = [
        (
            Account::Opened {
                owner: "ada".into(),
                credit_limit: None,
            },
            "Opened",
            1,
        ),
        (
            Account::Deposited {
                amount: 5,
                r#type: "cash".into(),
            },
            "account.deposited",
            2,
        ),
        (Account::Frozen, "Frozen", 1),
        (Account::Reviewed {}, "Reviewed", 1),
        (
            Account::Moved(Address {
                city: "Oslo".into(),
            }),
            "Moved",
            1,
        ),
    ];
    for (event, event_type, version) in cases {
        assert_eq!(event.event_type(), event_type);
        assert_eq!(event.schema_version(), version);
    }
    assert_eq!(MoneyWithdrawn { amount: 1 }.schema_version(), 1);
}

#[test]
fn named_fields_are_stored_as_an_object() {
    let deposited = Account::Deposited {
        amount: 100,
        r#type: "cash".into(),
    };
    assert_eq!(
        deposited.to_data().unwrap().get(),
        r#"{"amount":100,"type":"cash"}"#
    );
    assert_eq!(
        round_trip(&deposited),
        json!({"amount": 100, "type": "cash"})
    );
}

#[test]
fn serde_field_attributes_are_honoured() {
    let without = Account::Opened {
        owner: "ada".into(),
        credit_limit: None,
    };
    assert_eq!(round_trip(&without), json!({"owner": "ada"}));
    let with = Account::Opened {
        owner: "ada".into(),
        credit_limit: Some(50),
    };
    assert_eq!(
        round_trip(&with),
        json!({"owner": "ada", "creditLimit": 50})
    );

    let decoded = Account::from_data("Opened", 1, &raw(json!({"owner": "bob"}))).unwrap();
    assert_eq!(
        decoded,
        Account::Opened {
            owner: "bob".into(),
            credit_limit: None
        }
    );

    let withdrawn = MoneyWithdrawn { amount: 9 };
    assert_eq!(round_trip(&withdrawn), json!({"cents": 9}));
    assert_eq!(
        serde_json::to_value(&withdrawn).unwrap(),
        json!({"cents": 9})
    );
}

#[test]
fn fieldless_variants_store_an_empty_object_and_accept_any_object() {
    assert_eq!(round_trip(&Account::Frozen), json!({}));
    assert_eq!(round_trip(&Account::Reviewed {}), json!({}));
    assert_eq!(round_trip(&Pinged), json!({}));
    let extra = raw(json!({"reason": "audit"}));
    assert_eq!(
        Account::from_data("Frozen", 1, &extra).unwrap(),
        Account::Frozen
    );
    assert_eq!(
        Account::from_data("Reviewed", 1, &extra).unwrap(),
        Account::Reviewed {}
    );
}

#[test]
fn newtype_variants_store_the_inner_value_as_is() {
    let moved = Account::Moved(Address {
        city: "Oslo".into(),
    });
    assert_eq!(round_trip(&moved), json!({"city": "Oslo"}));
}

#[test]
fn unknown_types_are_rejected() {
    let data = raw(json!({"amount": 1}));
    // The variant name no longer counts once the variant is renamed.
    let error = Account::from_data("Deposited", 2, &data).unwrap_err();
    assert!(matches!(error, DecodeErrorKind::UnknownType), "{error:?}");
    let error = MoneyWithdrawn::from_data("MoneyWithdrawn", 1, &data).unwrap_err();
    assert!(matches!(error, DecodeErrorKind::UnknownType), "{error:?}");
}

#[test]
fn older_schema_versions_are_upcast() {
    // More cases, and the errors of versions past today's: tests/upcast.rs.
    let old = Account::from_data("account.deposited", 1, &raw(json!({"amount": 4}))).unwrap();
    assert_eq!(
        old,
        Account::Deposited {
            amount: 4,
            r#type: "cash".into()
        }
    );
}

#[test]
fn data_that_does_not_fit_is_invalid() {
    for data in [
        json!({"amount": "many", "type": "cash"}),
        json!({"type": "cash"}),
        json!(3),
    ] {
        let error = Account::from_data("account.deposited", 2, &raw(data)).unwrap_err();
        assert!(
            matches!(error, DecodeErrorKind::InvalidData(_)),
            "{error:?}"
        );
    }
    let error = Account::from_data("Frozen", 1, &raw(json!("frozen"))).unwrap_err();
    assert!(
        matches!(error, DecodeErrorKind::InvalidData(_)),
        "{error:?}"
    );
}

#[test]
fn recorded_events_decode_through_the_derive() {
    let event = Account::Deposited {
        amount: 3,
        r#type: "card".into(),
    };
    let new = allframe::NewEvent::from_event(&event).unwrap();
    assert_eq!(new.event_type(), "account.deposited");
    assert_eq!(new.schema_version(), 2);
    let recorded: allframe::RecordedEvent = serde_json::from_value(json!({
        "position": 1, "stream_id": "account-1", "version": 1,
        "type": new.event_type(), "schema_version": new.schema_version(),
        "data": serde_json::from_str::<serde_json::Value>(new.data().get()).unwrap(),
        "metadata": new.metadata(),
        "recorded_at": "2026-11-26T12:00:00.000Z",
    }))
    .unwrap();
    assert_eq!(recorded.decode::<Account>().unwrap(), event);
}

#[derive(Event)]
enum Nothing {}

#[test]
fn an_enum_without_variants_decodes_nothing() {
    assert!(Nothing::event_types().is_empty());
    let error = Nothing::from_data("Anything", 1, &raw(json!({})))
        .err()
        .unwrap();
    assert!(matches!(error, DecodeErrorKind::UnknownType), "{error:?}");
}

#[test]
fn each_stored_type_has_a_data_schema() {
    let schemas = Account::data_schemas();
    let names: Vec<&str> = schemas.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, Account::event_types());
    let deposited = schemas[1].1.schema();
    assert_eq!(deposited["properties"]["amount"]["type"], "integer");
    assert_eq!(deposited["properties"]["type"]["type"], "string");
    // A newtype variant is its inner type's schema, which names its parts.
    let moved = schemas.last().unwrap().1.schema();
    assert_eq!(moved["properties"]["city"]["type"], "string");
}
