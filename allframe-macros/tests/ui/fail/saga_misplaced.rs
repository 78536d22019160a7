//! `#[saga]` goes on an `impl Saga for …` block, takes no options, and a
//! saga cannot be generic.
use allframe::saga::{Decision, Input};
use allframe::{Aggregate, Event, Saga};

#[derive(Event)]
enum TripEvent {
    Booked {},
}

#[allframe::saga]
#[derive(Default)]
struct Trip;

impl Aggregate for Trip {
    type Event = TripEvent;
    const CATEGORY: &'static str = "saga-trip";
    fn apply(&mut self, _: &TripEvent) {}
}

#[allframe::saga]
impl Trip {
    fn helper(&self) {}
}

#[allframe::saga(name = "trip")]
impl Saga for Trip {
    fn decide(&self, _: Input<'_, Self>) -> Decision<Self> {
        Decision::wait()
    }
}

#[derive(Default)]
struct Any<T>(T);

impl<T: Default + Send + Sync + 'static> Aggregate for Any<T> {
    type Event = TripEvent;
    const CATEGORY: &'static str = "saga-any";
    fn apply(&mut self, _: &TripEvent) {}
}

#[allframe::saga]
impl<T: Default + Send + Sync + 'static> Saga for Any<T> {
    fn decide(&self, _: Input<'_, Self>) -> Decision<Self> {
        Decision::wait()
    }
}

fn main() {}
