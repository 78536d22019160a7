//! A registered saga: `#[saga]` on its `impl Saga` block links it into
//! every app of the program.
use allframe::saga::{Decision, Input};
use allframe::{Aggregate, Event, Saga};

#[derive(Event)]
enum TripEvent {
    Booked {},
}

#[derive(Default)]
struct Trip;

impl Aggregate for Trip {
    type Event = TripEvent;
    const CATEGORY: &'static str = "saga-trip-2";
    fn apply(&mut self, _: &TripEvent) {}
}

#[allframe::saga]
impl Saga for Trip {
    fn decide(&self, _: Input<'_, Self>) -> Decision<Self> {
        Decision::end("completed")
    }
}

fn main() {
    let linked: Vec<&str> = allframe::__private::inventory::iter::<allframe::__private::SagaRegistration>
        .into_iter()
        .map(|registration| registration.category())
        .collect();
    assert_eq!(linked, ["saga-trip-2"]);
}
