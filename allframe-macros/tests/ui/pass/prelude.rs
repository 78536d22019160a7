//! The prelude brings the macros with their traits; types come from the root.
use allframe::prelude::*;
use allframe::{DispatchOptions, Dispatcher};
use serde::{Deserialize, Serialize};

#[derive(Event)]
enum CounterEvent {
    Incremented { by: u64 },
}

#[derive(Default)]
struct Counter {
    total: u64,
}

impl Aggregate for Counter {
    type Event = CounterEvent;
    const CATEGORY: &'static str = "counter";

    fn apply(&mut self, event: &CounterEvent) {
        match event {
            CounterEvent::Incremented { by } => self.total += by,
        }
    }
}

#[command(aggregate = Counter, id = counter_id, create)]
#[derive(Clone, Serialize, Deserialize, garde::Validate)]
struct Increment {
    #[garde(length(chars, min = 1))]
    counter_id: String,
    #[garde(range(max = 10))]
    by: u64,
}

#[derive(Debug, thiserror::Error, DomainError)]
#[error("the counter is full")]
struct Full;

#[command_handler]
pub(crate) async fn increment(
    command: Increment,
    counter: &Counter,
) -> Result<Vec<CounterEvent>, Full> {
    if counter.total > 0 {
        return Err(Full);
    }
    Ok(vec![CounterEvent::Incremented { by: command.by }])
}

fn main() {
    let state: allframe::AggregateOf<Increment> = Counter::default();
    assert_eq!(state.total, 0);
    assert_eq!((Increment::NAME, Full.code()), ("increment", "full"));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let store = allframe::store::MemoryStore::new();
    let dispatcher = Dispatcher::builder(&store).build().unwrap();
    let command = Increment { counter_id: "c1".into(), by: 2 };
    let outcome = runtime.block_on(dispatcher.dispatch(command, DispatchOptions::default())).unwrap();
    assert_eq!((outcome.stream_id.as_str(), outcome.version), ("counter-c1", 1));
}
