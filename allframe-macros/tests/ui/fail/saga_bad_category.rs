//! A saga's category must be `saga-` and its name; the name takes
//! lowercase letters, digits and `-`.
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
    const CATEGORY: &'static str = "trip";
    fn apply(&mut self, _: &TripEvent) {}
}

#[allframe::saga]
impl Saga for Trip {
    fn decide(&self, _: Input<'_, Self>) -> Decision<Self> {
        Decision::wait()
    }
}

#[derive(Default)]
struct Tour;

impl Aggregate for Tour {
    type Event = TripEvent;
    const CATEGORY: &'static str = "saga-Grand_Tour";
    fn apply(&mut self, _: &TripEvent) {}
}

#[allframe::saga]
impl Saga for Tour {
    fn decide(&self, _: Input<'_, Self>) -> Decision<Self> {
        Decision::wait()
    }
}

fn main() {}
