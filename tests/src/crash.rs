//! The projection the crash-consistency test kills mid-batch: a ledger
//! whose rows count and sum every deposit (so an event lost or applied
//! twice shows) and carry a padded history (so each batch commits a lot of
//! data and a kill often lands inside a commit).

use std::time::Duration;

use allframe::{Aggregate, Event, EventStore, RecordedEvent};
use allframe::{ApplyError, Change, Projection, Projections};
use serde::{Deserialize, Serialize};

/// The ledger's events.
#[derive(Event, Debug, Clone)]
pub enum CrashEvent {
    /// An account was opened.
    Opened {},
    /// Money was paid in.
    Deposited {
        /// How much.
        amount: u64,
    },
}

/// The aggregate the events belong to (stream category `crash`).
#[derive(Default, Debug)]
pub struct CrashAccount;

impl Aggregate for CrashAccount {
    type Event = CrashEvent;
    const CATEGORY: &'static str = "crash";
    fn apply(&mut self, _: &CrashEvent) {}
}

/// One account's row.
#[allframe::projection(name = "crash-ledger", key = id, indexed_by(parity))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrashRow {
    /// The account id.
    pub id: String,
    /// The sum of its deposits.
    pub balance: u64,
    /// How many deposits it had.
    pub deposits: u64,
    /// `even` or `odd` number of deposits: an index that changes often.
    pub parity: String,
    /// The positions of its last 16 events, padded to bulk up the row.
    pub history: Vec<String>,
}

impl Projection for CrashRow {
    type Source = CrashAccount;

    fn apply(
        row: Option<&Self>,
        event: &CrashEvent,
        recorded: &RecordedEvent,
    ) -> Result<Change<Self>, ApplyError> {
        let mut row = match (event, row) {
            (CrashEvent::Opened {}, _) => CrashRow {
                id: recorded.aggregate_id().to_owned(),
                balance: 0,
                deposits: 0,
                parity: "even".into(),
                history: Vec::new(),
            },
            (CrashEvent::Deposited { amount }, Some(row)) => CrashRow {
                balance: row.balance + amount,
                deposits: row.deposits + 1,
                parity: if row.deposits % 2 == 0 { "odd" } else { "even" }.into(),
                ..row.clone()
            },
            (CrashEvent::Deposited { .. }, None) => return Err("deposit before opening".into()),
        };
        row.history.push(format!("{:0>48}", recorded.position));
        if row.history.len() > 16 {
            row.history.remove(0);
        }
        Ok(Change::Upsert(row))
    }
}

/// The node id of every crash test child: a child started after a kill
/// takes its predecessor's leases back at once instead of waiting for them
/// to expire.
pub const CHILD_NODE: &str = "crash-child";

/// Runs the crash ledger over `store` with `batch_size` until the process
/// is killed.
pub async fn run_forever(store: &dyn EventStore, batch_size: usize) -> ! {
    let node = allframe::node::Node::new(store, CHILD_NODE, allframe::node::DEFAULT_LEASE_TTL);
    let _projections = Projections::builder(store)
        .node(node)
        .projection::<CrashRow>()
        .batch_size(batch_size)
        .start()
        .await
        .expect("start the crash ledger");
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}
