use allframe::{DecodeErrorKind, Event};

#[derive(Event, Debug, PartialEq)]
enum Account {
    #[event(version = 2, alias = "Created", upcast(1 = from(Created)))]
    Opened { owner: String, limit: Option<u64> },
    #[event(rename = "account.deposited", version = 3, upcast(1 = same, 2 = same))]
    Deposited { amount: u64 },
    Frozen,
    Reviewed {},
    Tagged(Vec<String>),
    Touched(),
}

#[derive(allframe::__private::serde::Deserialize)]
#[serde(crate = "allframe::__private::serde")]
struct Created {
    owner: String,
}

impl From<Created> for Account {
    fn from(created: Created) -> Self {
        Account::Opened { owner: created.owner, limit: None }
    }
}

fn same(
    data: allframe::__private::serde_json::Value,
) -> Result<allframe::__private::serde_json::Value, allframe::UpcastError> {
    Ok(data)
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
    assert_eq!((deposited.event_type(), deposited.schema_version()), ("account.deposited", 3));
    round_trip(deposited, r#"{"amount":100}"#);

    round_trip(Account::Frozen, "{}");
    round_trip(Account::Reviewed {}, "{}");
    round_trip(Account::Touched(), "{}");
    round_trip(Account::Tagged(vec!["vip".into()]), r#"["vip"]"#);

    let data = allframe::__private::serde_json::value::to_raw_value(&()).unwrap();
    let any_object = allframe::__private::RawValue::from_string(r#"{"note":1}"#.into()).unwrap();
    assert_eq!(Account::from_data("Frozen", 1, &any_object).unwrap(), Account::Frozen);
    let created = allframe::__private::RawValue::from_string(r#"{"owner":"bo"}"#.into()).unwrap();
    assert_eq!(
        Account::from_data("Created", 1, &created).unwrap(),
        Account::Opened { owner: "bo".into(), limit: None }
    );
    assert!(matches!(
        Account::from_data("Deposited", 3, &data),
        Err(DecodeErrorKind::UnknownType)
    ));
    assert!(matches!(
        Account::from_data("account.deposited", 4, &data),
        Err(DecodeErrorKind::NewerSchemaVersion { current: 3 })
    ));
    assert!(matches!(
        Account::from_data("account.deposited", 1, &data),
        Err(DecodeErrorKind::InvalidData(_))
    ));
}
