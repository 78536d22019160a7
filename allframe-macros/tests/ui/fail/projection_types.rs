//! A row without `impl Projection`, and a key that cannot become a string,
//! reported at the struct and at the key's type.
use serde::{Deserialize, Serialize};

#[allframe::projection(name = "orphans", key = id)]
#[derive(Serialize, Deserialize)]
struct Orphan {
    id: String,
}

#[allframe::projection(name = "listed", key = id)]
#[derive(Serialize, Deserialize)]
struct Listed {
    id: Vec<u8>,
}

impl allframe::Projection for Listed {
    type Source = Counter;
    fn apply(
        _: Option<&Self>,
        _: &CounterEvent,
        _: &allframe::RecordedEvent,
    ) -> Result<allframe::Change<Self>, allframe::ApplyError> {
        Ok(allframe::Change::Skip)
    }
}

#[derive(allframe::Event)]
enum CounterEvent {
    Counted {},
}

#[derive(Default)]
struct Counter;

impl allframe::Aggregate for Counter {
    type Event = CounterEvent;
    const CATEGORY: &'static str = "counter";
    fn apply(&mut self, _: &CounterEvent) {}
}

fn main() {}
