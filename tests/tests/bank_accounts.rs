//! The bank's `accounts` projection fed by real commands: every linked
//! projection starts, rows follow commands (read-your-writes after each),
//! and accounts are listed by owner.

use std::time::Duration;

use allframe::ListQuery;
use allframe::store::SqliteStore;
use allframe::{DispatchOptions, Dispatcher, Projections};
use bank::accounts::AccountRow;
use bank::domain::{CloseAccount, Deposit, OpenAccount, Withdraw};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_follow_commands() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("bank.db")).await.unwrap();
    let dispatcher = Dispatcher::builder(&store).build().unwrap();
    let projections = Projections::builder(&store).start().await.unwrap();
    assert!(
        projections.names().contains(&"accounts"),
        "{:?}",
        projections.names()
    );
    let registration = projections.registration("accounts").unwrap();
    assert_eq!(
        (registration.key(), registration.indexed_by()),
        ("account_id", &["owner"][..])
    );

    let mut ids = Vec::new();
    for (owner, deposit) in [("Ada", 100), ("Bob", 0), ("Ada", 7)] {
        let open = OpenAccount {
            owner: owner.into(),
            email: format!("{}@example.com", owner.to_lowercase()),
            initial_deposit: deposit,
            currency: None,
        };
        let opened = dispatcher
            .dispatch(open, DispatchOptions::default())
            .await
            .unwrap();
        let position = opened.position.unwrap();
        projections
            .wait_for("accounts", position, Duration::from_secs(5))
            .await
            .unwrap();
        let row = projections
            .get::<AccountRow>(&opened.aggregate_id)
            .await
            .unwrap();
        assert_eq!(
            row,
            Some(AccountRow {
                account_id: opened.aggregate_id.clone(),
                owner: owner.into(),
                email: format!("{}@example.com", owner.to_lowercase()),
                balance: deposit,
                open: true,
                currency: "EUR".into(),
            })
        );
        ids.push(opened.aggregate_id);
    }

    let account_id = ids[1].clone();
    let deposit = Deposit {
        account_id: account_id.clone(),
        amount: 30,
    };
    dispatcher
        .dispatch(deposit, DispatchOptions::default())
        .await
        .unwrap();
    let withdraw = Withdraw {
        account_id: account_id.clone(),
        amount: 30,
    };
    dispatcher
        .dispatch(withdraw, DispatchOptions::default())
        .await
        .unwrap();
    let close = CloseAccount {
        account_id: account_id.clone(),
    };
    let closed = dispatcher
        .dispatch(close, DispatchOptions::default())
        .await
        .unwrap();
    projections
        .wait_for("accounts", closed.position.unwrap(), Duration::from_secs(5))
        .await
        .unwrap();
    let bob = projections
        .get::<AccountRow>(&account_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((bob.balance, bob.open), (0, false));

    let adas = projections
        .list::<AccountRow>(&ListQuery::new().filter("owner", "Ada"))
        .await
        .unwrap();
    let mut expected = vec![ids[0].clone(), ids[2].clone()];
    expected.sort();
    let listed: Vec<String> = adas.items.into_iter().map(|row| row.account_id).collect();
    assert_eq!(listed, expected);
}
