use allframe::{DecodeErrorKind, Event};

#[derive(Event, Debug, PartialEq)]
struct MoneyDeposited {
    amount: u64,
}

#[derive(Event, Debug, PartialEq)]
#[event(rename = "account:closed", version = 3, upcast(1 = same, 2 = same))]
struct AccountClosed;

fn same(
    data: allframe::__private::serde_json::Value,
) -> Result<allframe::__private::serde_json::Value, allframe::UpcastError> {
    Ok(data)
}

/// An empty tuple struct has no fields to object to.
#[derive(Event)]
struct Ticked();

fn main() {
    assert_eq!(Ticked().to_data().unwrap().get(), "{}");

    let event = MoneyDeposited { amount: 100 };
    assert_eq!(MoneyDeposited::event_types(), ["MoneyDeposited"]);
    assert_eq!((event.event_type(), event.schema_version()), ("MoneyDeposited", 1));
    let data = event.to_data().unwrap();
    assert_eq!(data.get(), r#"{"amount":100}"#);
    assert_eq!(MoneyDeposited::from_data("MoneyDeposited", 1, &data).unwrap(), event);
    assert!(matches!(
        MoneyDeposited::from_data("MoneyWithdrawn", 1, &data),
        Err(DecodeErrorKind::UnknownType)
    ));
    assert!(matches!(
        MoneyDeposited::from_data("MoneyDeposited", 2, &data),
        Err(DecodeErrorKind::NewerSchemaVersion { current: 1 })
    ));

    assert_eq!(AccountClosed::event_types(), ["account:closed"]);
    assert_eq!(AccountClosed.schema_version(), 3);
    let data = AccountClosed.to_data().unwrap();
    assert_eq!(data.get(), "{}");
    assert_eq!(AccountClosed::from_data("account:closed", 3, &data).unwrap(), AccountClosed);
    assert_eq!(AccountClosed::from_data("account:closed", 1, &data).unwrap(), AccountClosed);
}
