//! A small bank: commands (create with and without an id, renamed fields),
//! handlers (with and without `Dep`), a domain error; dispatched for real.
use allframe::store::MemoryStore;
use allframe::{
    Aggregate, Command, CommandError, Container, Dep, DispatchOptions, Dispatcher, DomainError,
    Event, command, command_handler,
};
use serde::{Deserialize, Serialize};

#[derive(Event, Debug, PartialEq)]
enum AccountEvent {
    Opened { owner: String },
    Deposited { amount: u64 },
}

#[derive(Default)]
struct Account {
    open: bool,
    balance: u64,
}

impl Aggregate for Account {
    type Event = AccountEvent;
    const CATEGORY: &'static str = "account";

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { .. } => self.open = true,
            AccountEvent::Deposited { amount } => self.balance += amount,
        }
    }
}

#[command(aggregate = Account, create)]
#[derive(Clone, Serialize, Deserialize, garde::Validate)]
#[serde(rename_all = "SCREAMING-KEBAB-CASE")]
struct OpenAccount {
    #[garde(length(chars, min = 1, max = 100))]
    owner_name: String,
    #[serde(rename = "tags")]
    #[garde(length(max = 3), inner(length(utf16, max = 10)))]
    labels: Vec<String>,
}

#[command(aggregate = Account, id = account_id, name = "deposit-money")]
#[derive(Clone, Serialize, Deserialize, garde::Validate)]
#[serde(rename_all = "camelCase")]
struct Deposit {
    #[garde(skip)]
    account_id: uuid::Uuid,
    #[garde(range(min = 1))]
    amount_cents: u64,
}

/// The attribute may also follow the derives.
#[derive(Clone, Serialize, Deserialize, garde::Validate)]
#[serde(rename_all = "camelCase")]
#[command(aggregate = Account, id = account_id)]
struct Close {
    #[garde(skip)]
    #[serde(rename = "id")]
    account_id: String,
    #[garde(length(chars, max = 100))]
    close_reason: String,
}

#[derive(Debug, thiserror::Error, DomainError)]
#[domain_error(status = 409)]
enum BankError {
    #[error("over the limit of {limit}")]
    OverLimit { limit: u64 },
    #[error("no such account")]
    #[domain_error(code = "no-account", status = 404)]
    Missing,
}

struct Limit(u64);

#[command_handler]
async fn open_account(command: OpenAccount, _: &Account) -> Result<Vec<AccountEvent>, BankError> {
    Ok(vec![AccountEvent::Opened { owner: command.owner_name }])
}

#[command_handler]
async fn deposit(
    Deposit { amount_cents, .. }: Deposit,
    account: &Account,
    limit: Dep<Limit>,
) -> Result<Vec<AccountEvent>, BankError> {
    if account.balance + amount_cents > limit.0 {
        return Err(BankError::OverLimit { limit: limit.0 });
    }
    Ok(vec![AccountEvent::Deposited { amount: amount_cents }])
}

fn main() {
    assert_eq!((OpenAccount::NAME, OpenAccount::CREATE), ("open-account", true));
    assert_eq!((Deposit::NAME, Deposit::CREATE), ("deposit-money", false));
    let open = OpenAccount { owner_name: "ada".into(), labels: vec![] };
    assert_eq!(open.aggregate_id(), None);
    assert_eq!(OpenAccount::wire_field("owner_name"), "OWNER-NAME");
    assert_eq!(OpenAccount::wire_field("labels"), "tags");
    assert_eq!(Deposit::wire_field("amount_cents"), "amountCents");
    assert_eq!(Deposit::wire_field("unknown"), "unknown");
    assert_eq!((Close::NAME, Close::wire_field("account_id")), ("close", "id"));
    assert_eq!(Close::wire_field("close_reason"), "closeReason");
    let id = uuid::Uuid::now_v7();
    let deposit = Deposit { account_id: id, amount_cents: 5 };
    assert_eq!(deposit.aggregate_id(), Some(id.to_string()));

    let over = BankError::OverLimit { limit: 1 };
    assert_eq!((over.code(), over.status()), ("over-limit", 409));
    assert_eq!((BankError::Missing.code(), BankError::Missing.status()), ("no-account", 404));

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let store = MemoryStore::new();
        let error = Dispatcher::builder(&store).build().unwrap_err();
        assert!(error.to_string().contains("Limit"), "{error}");

        let container = Container::builder().provide(Limit(100)).build().await.unwrap();
        let dispatcher = Dispatcher::builder(&store).container(container).build().unwrap();
        assert_eq!(dispatcher.commands().collect::<Vec<_>>(), ["deposit-money", "open-account"]);

        let opened = dispatcher.dispatch(open, DispatchOptions::default()).await.unwrap();
        assert_eq!(opened.version, 1);
        let account_id: uuid::Uuid = opened.aggregate_id.parse().unwrap();
        let body = format!(r#"{{"accountId": "{account_id}", "amountCents": 60}}"#);
        let deposited = dispatcher
            .dispatch_json("deposit-money", body.as_bytes(), DispatchOptions::default())
            .await
            .unwrap();
        assert_eq!((deposited.stream_id.as_str(), deposited.version), (opened.stream_id.as_str(), 2));
        let event = deposited.events[0].decode::<AccountEvent>().unwrap();
        assert_eq!(event, AccountEvent::Deposited { amount: 60 });

        let refused = Deposit { account_id, amount_cents: 41 };
        let error = dispatcher.dispatch(refused, DispatchOptions::default()).await.unwrap_err();
        assert_eq!((error.code(), error.status()), ("over-limit", 409));
        assert!(matches!(error, CommandError::Domain(_)));
    });
}
