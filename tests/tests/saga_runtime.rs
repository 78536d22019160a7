//! The saga runtime's failure paths, with a small saga of its own: a
//! refused command is an input, a command that keeps failing times out
//! after the runner's step timeout (counted from when the step was
//! recorded), and a decision that panics, or sends one step twice, ends
//! the instance as `failed` instead of stopping the runner.

use std::sync::Arc;
use std::time::Duration;

use allframe::saga::{Decision, Input, Saga};
use allframe::store::MemoryStore;
use allframe::{Aggregate, Dispatcher, EventStore, Sagas};
use serde::{Deserialize, Serialize};

#[derive(allframe::Event, Debug, PartialEq)]
enum ThingEvent {
    Poked {},
}

#[derive(Default)]
struct Thing;

impl Aggregate for Thing {
    type Event = ThingEvent;
    const CATEGORY: &'static str = "thing";
    fn apply(&mut self, _: &ThingEvent) {}
}

#[derive(Debug, thiserror::Error, allframe::DomainError)]
enum ThingError {
    #[error("this thing will not be poked")]
    Unpokeable,
}

#[allframe::command(aggregate = Thing, id = id, create, name = "poke")]
#[derive(Clone, Serialize, Deserialize, garde::Validate)]
struct Poke {
    #[garde(skip)]
    id: String,
}

#[allframe::command_handler]
async fn poke(command: Poke, _: &Thing) -> Result<Vec<ThingEvent>, ThingError> {
    if command.id.starts_with("panic") {
        panic!("the poke handler panics for {}", command.id);
    }
    if command.id.starts_with("refuse") {
        return Err(ThingError::Unpokeable);
    }
    Ok(vec![ThingEvent::Poked {}])
}

#[derive(allframe::Event, Debug)]
enum ChoreEvent {
    Asked { what: String },
}

#[derive(Default)]
struct Chore {
    what: String,
}

impl Aggregate for Chore {
    type Event = ChoreEvent;
    const CATEGORY: &'static str = "saga-chore";
    fn apply(&mut self, event: &ChoreEvent) {
        let ChoreEvent::Asked { what } = event;
        self.what = what.clone();
    }
}

impl Saga for Chore {
    fn decide(&self, input: Input<'_, Self>) -> Decision<Self> {
        let poke = Poke {
            id: self.what.clone(),
        };
        match input {
            Input::Started(_) if self.what == "decide-panic" => panic!("no decision today"),
            Input::Started(_) if self.what == "twice" => {
                Decision::send("poke", &poke).and_send("poke", &poke)
            }
            Input::Started(_) => Decision::send("poke", &poke),
            Input::Done { .. } => Decision::end("done"),
            Input::Refused { code, .. } => Decision::end("refused").because(code),
            Input::TimedOut { step } => Decision::end("gave-up").because(step),
            _ => Decision::end("failed"),
        }
    }
}

async fn run(what: &str) -> allframe::saga::SagaView {
    let store = MemoryStore::new();
    let dispatcher = Arc::new(Dispatcher::builder(&store).build().unwrap());
    let sagas = Sagas::builder(&store, dispatcher)
        .saga::<Chore>()
        .step_timeout(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    let asked = ChoreEvent::Asked { what: what.into() };
    let id = Sagas::start::<Chore>(&store, &asked).await.unwrap();
    for _ in 0..500 {
        let view = sagas.view("chore", &id).await.unwrap().unwrap();
        if view.status != "running" {
            assert!(store.head_position().await.unwrap() > 0);
            return view;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the chore {what} never ended");
}

#[tokio::test]
async fn a_carried_out_command_is_an_input() {
    let view = run("fine").await;
    assert_eq!((view.status.as_str(), view.reason), ("done", None));
}

#[tokio::test]
async fn a_refused_command_is_an_input() {
    let view = run("refuse-1").await;
    assert_eq!(view.status, "refused");
    assert_eq!(view.reason.as_deref(), Some("unpokeable"));
}

#[tokio::test]
async fn a_command_that_keeps_failing_times_out() {
    let started = std::time::Instant::now();
    let view = run("panic-1").await;
    assert_eq!(view.status, "gave-up");
    assert_eq!(view.reason.as_deref(), Some("poke"));
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "not before the step timeout"
    );
}

#[tokio::test]
async fn a_decision_that_panics_fails_the_instance_only() {
    let view = run("decide-panic").await;
    assert_eq!(view.status, "failed");
    assert!(
        view.reason
            .as_deref()
            .unwrap()
            .contains("no decision today"),
        "{view:?}"
    );
}

#[tokio::test]
async fn a_step_sent_twice_fails_the_instance() {
    let view = run("twice").await;
    assert_eq!(view.status, "failed");
    assert!(
        view.reason
            .as_deref()
            .unwrap()
            .contains("step `poke` twice"),
        "{view:?}"
    );
}

#[test]
fn decisions_can_be_read_back() {
    let mut chore = Chore::default();
    chore.apply(&ChoreEvent::Asked { what: "x".into() });
    let asked = ChoreEvent::Asked { what: "x".into() };
    let decision = chore.decide(Input::Started(&asked));
    let sends: Vec<_> = decision.sends().collect();
    assert_eq!(
        sends,
        vec![("poke", "poke", &serde_json::json!({"id": "x"}))]
    );
    assert_eq!(decision.ending(), None);
    let refused = chore.decide(Input::Refused {
        step: "poke",
        code: "unpokeable",
        message: "no",
    });
    assert_eq!(refused.ending(), Some(("refused", Some("unpokeable"))));
    assert!(refused.events().is_empty());
    assert!(refused.invalid().is_none());
}
