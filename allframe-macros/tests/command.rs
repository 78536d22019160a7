//! `#[command]`, `#[command_handler]` and `#[derive(DomainError)]` at run
//! time: the generated constants and methods, and handlers registered and
//! dispatched for real over the memory store.

use allframe::store::MemoryStore;
use allframe::{Command, CommandError, Dep, DispatchOptions, Dispatcher, DomainError};
use uuid::Uuid;

mod common;

use common::{
    Account, AccountEvent, BalanceNotZero, BankError, CloseAccount, Deposit, DepositLimit,
    ImportAccount, OpenAccount, deposit, deposit_of, dispatcher,
};

#[test]
fn names_default_to_kebab_case_unless_given() {
    assert_eq!(OpenAccount::NAME, "open-account");
    assert_eq!(ImportAccount::NAME, "import");
    assert_eq!(Deposit::NAME, "deposit");
    assert_eq!(CloseAccount::NAME, "close-account");
}

#[test]
fn create_commands_are_marked() {
    let create = [
        OpenAccount::CREATE,
        ImportAccount::CREATE,
        Deposit::CREATE,
        CloseAccount::CREATE,
    ];
    assert_eq!(create, [true, true, false, false]);
}

#[test]
fn the_id_field_is_the_aggregate_id() {
    let open = OpenAccount {
        owner_name: "ada".into(),
    };
    assert_eq!(open.aggregate_id(), None);
    let id = Uuid::now_v7();
    let import = ImportAccount {
        account_id: id,
        owner: "ada".into(),
    };
    assert_eq!(import.aggregate_id(), Some(id.to_string()));
    assert_eq!(deposit_of("a-1", 5).aggregate_id().as_deref(), Some("a-1"));
}

#[test]
fn wire_fields_follow_serde_renames() {
    assert_eq!(OpenAccount::wire_field("owner_name"), "ownerName");
    assert_eq!(Deposit::wire_field("account_id"), "account-id");
    assert_eq!(Deposit::wire_field("amount_cents"), "sum");
    assert_eq!(Deposit::wire_field("memo_text"), "memo-text");
    assert_eq!(Deposit::wire_field("not_a_field"), "not_a_field");
    // Without renames the default method answers.
    assert_eq!(ImportAccount::wire_field("account_id"), "account_id");
}

#[test]
fn domain_errors_have_codes_and_statuses() {
    let closed = BankError::AccountClosed;
    assert_eq!((closed.code(), closed.status()), ("account-closed", 409));
    let over = BankError::OverLimit { limit: 1 };
    assert_eq!((over.code(), over.status()), ("over-limit", 422));
    assert_eq!(
        (BalanceNotZero.code(), BalanceNotZero.status()),
        ("balance-not-zero", 412)
    );
}

#[tokio::test]
async fn handlers_stay_callable_directly() {
    let account = Account {
        open: true,
        balance: 0,
    };
    let events = deposit(
        deposit_of("a-1", 5),
        &account,
        Dep::new(DepositLimit(9).into()),
    )
    .await
    .unwrap();
    assert_eq!(events, [AccountEvent::Deposited { amount: 5 }]);
    let refused = deposit(
        deposit_of("a-1", 10),
        &account,
        Dep::new(DepositLimit(9).into()),
    )
    .await;
    assert_eq!(refused.unwrap_err(), BankError::OverLimit { limit: 9 });
}

#[tokio::test]
async fn every_handler_is_registered_under_its_command_name() {
    let store = MemoryStore::new();
    let dispatcher = dispatcher(&store).await;
    assert_eq!(
        dispatcher.commands().collect::<Vec<_>>(),
        ["close-account", "deposit", "import", "open-account"]
    );
}

#[tokio::test]
async fn a_missing_dependency_fails_the_build_naming_its_type() {
    let store = MemoryStore::new();
    let error = Dispatcher::builder(&store).build().unwrap_err();
    assert!(error.to_string().contains("DepositLimit"), "{error}");
}

#[tokio::test]
async fn commands_run_through_their_handlers() {
    let store = MemoryStore::new();
    let dispatcher = dispatcher(&store).await;
    let open = OpenAccount {
        owner_name: "ada".into(),
    };
    let opened = dispatcher
        .dispatch(open, DispatchOptions::default())
        .await
        .unwrap();
    let id: Uuid = opened.aggregate_id.parse().unwrap();
    assert_eq!(id.get_version_num(), 7);
    assert_eq!(opened.stream_id, format!("account-{id}"));
    assert_eq!(opened.version, 1);
    assert_eq!(
        opened.events[0].decode::<AccountEvent>().unwrap(),
        AccountEvent::Opened {
            owner: "ada".into()
        }
    );

    let body = format!(r#"{{"account-id": "{id}", "sum": 250, "memo-text": ""}}"#);
    let deposited = dispatcher
        .dispatch_json("deposit", body.as_bytes(), DispatchOptions::default())
        .await
        .unwrap();
    assert_eq!(deposited.version, 2);
    assert_eq!(
        deposited.events[0].decode::<AccountEvent>().unwrap(),
        AccountEvent::Deposited { amount: 250 }
    );

    let refused = dispatcher
        .dispatch(
            CloseAccount {
                account_id: id.to_string(),
            },
            DispatchOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(refused, CommandError::Domain(_)), "{refused:?}");
    assert_eq!(
        (refused.code(), refused.status()),
        ("balance-not-zero", 412)
    );
}

#[tokio::test]
async fn domain_refusals_keep_their_code_and_status() {
    let store = MemoryStore::new();
    let dispatcher = dispatcher(&store).await;
    let id = Uuid::now_v7();
    let import = ImportAccount {
        account_id: id,
        owner: "bob".into(),
    };
    let imported = dispatcher
        .dispatch(import, DispatchOptions::default())
        .await
        .unwrap();
    assert_eq!(imported.aggregate_id, id.to_string());

    let over = dispatcher
        .dispatch(
            deposit_of(&imported.aggregate_id, 1_001),
            DispatchOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!((over.code(), over.status()), ("over-limit", 422));

    let close = CloseAccount {
        account_id: id.to_string(),
    };
    dispatcher
        .dispatch(close, DispatchOptions::default())
        .await
        .unwrap();
    let closed = dispatcher
        .dispatch(
            deposit_of(&imported.aggregate_id, 1),
            DispatchOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!((closed.code(), closed.status()), ("account-closed", 409));
}

#[tokio::test]
async fn validation_errors_point_at_wire_names() {
    let store = MemoryStore::new();
    let dispatcher = dispatcher(&store).await;
    let mut invalid = deposit_of("a-1", 0);
    invalid.memo_text = "ééééé".into();
    let error = dispatcher
        .dispatch(invalid, DispatchOptions::default())
        .await
        .unwrap_err();
    let CommandError::Validation(errors) = &error else {
        panic!("{error:?}")
    };
    let mut pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
    pointers.sort_unstable();
    assert_eq!(pointers, ["/memo-text", "/sum"]);
}

#[tokio::test]
async fn a_command_for_a_missing_aggregate_is_not_found() {
    let store = MemoryStore::new();
    let dispatcher = dispatcher(&store).await;
    let error = dispatcher
        .dispatch(deposit_of("nobody", 1), DispatchOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, CommandError::NotFound { stream_id } if stream_id == "account-nobody"),
        "{error:?}"
    );
}

#[test]
fn the_schema_shows_wire_names_docs_and_garde_rules() {
    let schema = common::Deposit::schema();
    let schema = schema.schema();
    let properties = &schema["properties"];
    // kebab-case names, and `sum` from the field's own rename.
    assert_eq!(properties["account-id"]["type"], "string");
    assert_eq!(properties["sum"]["minimum"], 1);
    assert!(properties["sum"].get("maximum").is_none());
    assert_eq!(
        properties["memo-text"]["description"],
        "Length: at most 8 UTF-8 bytes."
    );
    assert!(properties["memo-text"].get("maxLength").is_none());
    assert_eq!(
        schema["required"],
        serde_json::json!(["account-id", "sum", "memo-text"])
    );

    let open = common::OpenAccount::schema();
    let owner = &open.schema()["properties"]["ownerName"];
    assert_eq!(
        (&owner["minLength"], &owner["maxLength"]),
        (&1.into(), &100.into())
    );
    assert_eq!(
        open.schema()["description"],
        "A create-command whose id the server generates."
    );
}
