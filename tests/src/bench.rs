//! What the benchmarks share.

use std::sync::Arc;
use std::time::{Duration, Instant};

use allframe::{DispatchOptions, Dispatcher};
use bank::domain::Deposit;

/// A number from environment variable `name`, or `default`.
pub fn env_number(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Deposits per second: `callers` tasks each deposit 1 cent through
/// `dispatcher`, one after another, into the `accounts` in turn (each
/// starting at its own), for `seconds`.
pub async fn deposits_per_second(
    dispatcher: &Arc<Dispatcher>,
    accounts: &Arc<Vec<String>>,
    callers: usize,
    seconds: f64,
) -> f64 {
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..callers)
        .map(|caller| {
            let (dispatcher, accounts) = (dispatcher.clone(), accounts.clone());
            tokio::spawn(async move {
                let mut done = 0usize;
                while Instant::now() < until {
                    let deposit = Deposit {
                        account_id: accounts[(caller + done) % accounts.len()].clone(),
                        amount: 1,
                    };
                    dispatcher
                        .dispatch(deposit, DispatchOptions::default())
                        .await
                        .expect("a deposit succeeds");
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("a caller finishes");
    }
    total as f64 / seconds
}

/// Opens `count` accounts through `dispatcher`, each with
/// `initial_deposit` cents; their ids.
pub async fn open_accounts(
    dispatcher: &Dispatcher,
    count: usize,
    initial_deposit: u64,
) -> Vec<String> {
    let mut accounts = Vec::with_capacity(count);
    for _ in 0..count {
        let open = bank::domain::OpenAccount {
            owner: "Ada".into(),
            email: "ada@example.com".into(),
            initial_deposit,
            currency: None,
        };
        let opened = dispatcher
            .dispatch(open, DispatchOptions::default())
            .await
            .expect("an account opens");
        accounts.push(opened.aggregate_id);
    }
    accounts
}
