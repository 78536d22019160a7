use allframe::{DecodeErrorKind, Event};

#[derive(Event, Debug, PartialEq)]
#[event(version = 2)]
enum Account {
    Opened { owner: String, limit: Option<u64> },
    #[event(rename = "account.deposited", version = 5)]
    Deposited { amount: u64 },
    Frozen,
    Reviewed {},
    Tagged(Vec<String>),
    Touched(),
}

fn round_trip(event: Account, data: &str) {
    let encoded = event.to_data().unwrap();
    assert_eq!(encoded.get(), data);
    let decoded = Account::from_data(event.event_type(), event.schema_version(), &encoded);
    assert_eq!(decoded.unwrap(), event);
}

fn main() {
    assert_eq!(
        Account::event_types(),
        ["Opened", "account.deposited", "Frozen", "Reviewed", "Tagged", "Touched"]
    );

    let opened = Account::Opened { owner: "ada".into(), limit: None };
    assert_eq!((opened.event_type(), opened.schema_version()), ("Opened", 2));
    round_trip(opened, r#"{"owner":"ada","limit":null}"#);

    let deposited = Account::Deposited { amount: 100 };
    assert_eq!((deposited.event_type(), deposited.schema_version()), ("account.deposited", 5));
    round_trip(deposited, r#"{"amount":100}"#);

    round_trip(Account::Frozen, "{}");
    round_trip(Account::Reviewed {}, "{}");
    round_trip(Account::Touched(), "{}");
    round_trip(Account::Tagged(vec!["vip".into()]), r#"["vip"]"#);

    let data = allframe::__private::serde_json::value::to_raw_value(&()).unwrap();
    let any_object = allframe::__private::RawValue::from_string(r#"{"note":1}"#.into()).unwrap();
    assert_eq!(Account::from_data("Frozen", 2, &any_object).unwrap(), Account::Frozen);
    assert!(matches!(
        Account::from_data("Deposited", 5, &data),
        Err(DecodeErrorKind::UnknownType)
    ));
    assert!(matches!(
        Account::from_data("account.deposited", 2, &data),
        Err(DecodeErrorKind::UnsupportedSchemaVersion { supported: 5 })
    ));
    assert!(matches!(
        Account::from_data("account.deposited", 5, &data),
        Err(DecodeErrorKind::InvalidData(_))
    ));
}
