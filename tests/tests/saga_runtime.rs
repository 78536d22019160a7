//! The saga runtime's failure paths, with a small saga of its own: a
//! refused command is an input, a command that keeps failing times out
//! after the runner's step timeout (counted from when the step was
//! recorded), and a decision that panics, or sends one step twice, ends
//! the instance as `failed` instead of stopping the runner, also when a
//! linked saga's start is decided in the command that starts it; a new
//! linked instance is worked from the log without reading its stream; and
//! a step older than its idempotency key whose events cannot be told
//! apart fails the instance rather than run twice.

use std::sync::Arc;
use std::time::Duration;

use allframe::saga::{Decision, Input, Saga};
use allframe::store::MemoryStore;
use allframe::{Aggregate, Dispatcher, EventStore, Sagas};
use serde::{Deserialize, Serialize};

#[derive(allframe::Event, Debug, PartialEq)]
enum ThingEvent {
    Poked {},
    Noted { text: String },
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
    if command.id.starts_with("nul") {
        // No store keeps U+0000 in an event: the append is refused.
        return Ok(vec![ThingEvent::Noted {
            text: "a\u{0}b".into(),
        }]);
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

/// A command whose events the store refuses as invalid (here, U+0000 in
/// their data) was not carried out, and never will be: a refusal, not a
/// store that does not answer, so the saga decides at once instead of
/// waiting for the store forever.
#[tokio::test]
async fn a_command_whose_events_the_store_refuses_is_refused() {
    let view = run("nul-1").await;
    assert_eq!(view.status, "refused");
    assert_eq!(view.reason.as_deref(), Some("invalid-event"));
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

#[tokio::test]
async fn the_admin_tally_names_overdue_instances_and_a_paused_runner() {
    let store = MemoryStore::new();
    let dispatcher = Arc::new(Dispatcher::builder(&store).build().unwrap());
    let sagas = Sagas::builder(&store, dispatcher.clone())
        .saga::<Chore>()
        .step_timeout(Duration::from_millis(100))
        .start()
        .await
        .unwrap();
    // A runner that is not running leaves a started instance waiting.
    sagas.stop().await;
    let asked = ChoreEvent::Asked {
        what: "fine".into(),
    };
    let id = Sagas::start::<Chore>(&store, &asked).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let status = sagas.status().await.unwrap();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].name, "chore");
    assert_eq!(status[0].overdue, [id]);
    assert_eq!(status[0].counts.get("running"), Some(&1));

    // An instance whose first event is of a newer release pauses the
    // runner, which says so.
    let newer =
        allframe::NewEvent::new("Asked", &serde_json::json!({"what": "x"})).with_schema_version(99);
    store
        .append(
            "saga-chore-from-the-future",
            allframe::ExpectedVersion::NoStream,
            vec![newer],
        )
        .await
        .unwrap();
    let paused = Sagas::builder(&store, dispatcher)
        .saga::<Chore>()
        .start()
        .await
        .unwrap();
    let mut state = String::new();
    for _ in 0..250 {
        let status = paused.status().await.unwrap();
        state = status[0].state.clone();
        if state == "waiting-for-upgrade" {
            assert!(status[0].error.as_deref().unwrap().contains("99"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(state, "waiting-for-upgrade");
    // The event was not skipped: nothing was decided about it.
    let stream = store
        .read_stream("saga-chore-from-the-future", 1, 10)
        .await
        .unwrap();
    assert_eq!(stream.len(), 1);
}

#[tokio::test]
async fn ambiguous_or_misnamed_sagas_are_refused_at_start() {
    #[derive(Default)]
    struct Odd;
    impl Aggregate for Odd {
        type Event = ChoreEvent;
        const CATEGORY: &'static str = "chores";
        fn apply(&mut self, _: &ChoreEvent) {}
    }
    impl Saga for Odd {
        fn decide(&self, _: Input<'_, Self>) -> Decision<Self> {
            Decision::wait()
        }
    }
    #[derive(Default)]
    struct Longer;
    impl Aggregate for Longer {
        type Event = ChoreEvent;
        const CATEGORY: &'static str = "saga-chore-later";
        fn apply(&mut self, _: &ChoreEvent) {}
    }
    impl Saga for Longer {
        fn decide(&self, _: Input<'_, Self>) -> Decision<Self> {
            Decision::wait()
        }
    }
    let store = MemoryStore::new();
    let dispatcher = Arc::new(Dispatcher::builder(&store).build().unwrap());
    let misnamed = Sagas::builder(&store, dispatcher.clone())
        .saga::<Odd>()
        .start()
        .await;
    assert!(matches!(
        misnamed,
        Err(allframe::saga::SagaError::Misnamed("chores"))
    ));
    let ambiguous = Sagas::builder(&store, dispatcher)
        .saga::<Chore>()
        .saga::<Longer>()
        .start()
        .await;
    assert!(
        matches!(ambiguous, Err(allframe::saga::SagaError::Ambiguous(..))),
        "{ambiguous:?}"
    );
}

/// A saga linked with `#[saga]`, started by its create-command: the start
/// decision is made and recorded in the command's append, and one that
/// panics there ends the instance as `failed` in that same append.
#[derive(allframe::Event, Debug)]
enum ErrandEvent {
    Asked { what: String },
}

#[derive(Default)]
struct Errand {
    what: String,
}

impl Aggregate for Errand {
    type Event = ErrandEvent;
    const CATEGORY: &'static str = "saga-errand";
    fn apply(&mut self, event: &ErrandEvent) {
        let ErrandEvent::Asked { what } = event;
        self.what = what.clone();
    }
}

#[allframe::saga]
impl Saga for Errand {
    fn decide(&self, input: Input<'_, Self>) -> Decision<Self> {
        match input {
            Input::Started(_) if self.what == "decide-panic" => panic!("no errands today"),
            Input::Started(_) if self.what == "jot" => Decision::send("jot", &Jot {}),
            Input::Started(_) if self.what == "pair" => {
                let poke = Poke { id: "pair".into() };
                Decision::send("first", &poke).and_send("second", &poke)
            }
            Input::Started(_) => Decision::send(
                "poke",
                &Poke {
                    id: self.what.clone(),
                },
            ),
            Input::Done { .. } => Decision::end("done"),
            _ => Decision::end("failed"),
        }
    }
}

/// A command whose aggregate's id the dispatcher makes up.
#[allframe::command(aggregate = Thing, create, name = "jot")]
#[derive(Clone, Serialize, Deserialize, garde::Validate)]
struct Jot {}

#[allframe::command_handler]
async fn jot(_: Jot, _: &Thing) -> Result<Vec<ThingEvent>, ThingError> {
    Ok(vec![ThingEvent::Poked {}])
}

#[allframe::command(aggregate = Errand, create, name = "ask-errand")]
#[derive(Clone, Serialize, Deserialize, garde::Validate)]
struct AskErrand {
    #[garde(skip)]
    what: String,
}

#[allframe::command_handler]
async fn ask_errand(command: AskErrand, _: &Errand) -> Result<Vec<ErrandEvent>, ThingError> {
    Ok(vec![ErrandEvent::Asked { what: command.what }])
}

/// Asks for the errand `what` through `dispatcher`.
async fn ask(dispatcher: &Dispatcher, what: &str) -> allframe::CommandOutcome {
    dispatcher
        .dispatch(
            AskErrand { what: what.into() },
            allframe::DispatchOptions::default(),
        )
        .await
        .unwrap()
}

/// The step record an errand's command recorded after its first event.
fn start_record(outcome: &allframe::CommandOutcome) -> serde_json::Value {
    let types: Vec<&str> = outcome
        .events
        .iter()
        .map(|e| e.event_type.as_str())
        .collect();
    assert_eq!(types, ["Asked", allframe::saga::STEP_EVENT_TYPE]);
    serde_json::from_str(outcome.events[1].data.get()).unwrap()
}

#[tokio::test]
async fn a_linked_saga_decides_its_start_in_the_command_that_starts_it() {
    let store = MemoryStore::new();
    let dispatcher = Arc::new(Dispatcher::builder(&store).build().unwrap());
    let fine = ask(&dispatcher, "fine").await;
    let record = start_record(&fine);
    assert_eq!(record["input"], "start");
    assert_eq!(record["sends"][0]["step"], "poke", "{record}");
    let panicked = ask(&dispatcher, "decide-panic").await;
    let record = start_record(&panicked);
    assert_eq!(record["end"]["status"], "failed", "{record}");
    assert!(
        record["end"]["reason"]
            .as_str()
            .unwrap()
            .contains("no errands today"),
        "{record}"
    );

    let sagas = Sagas::builder(&store, dispatcher.clone())
        .saga::<Errand>()
        .start()
        .await
        .unwrap();
    for (outcome, status) in [(&fine, "done"), (&panicked, "failed")] {
        let id = &outcome.aggregate_id;
        let mut view = sagas.view("errand", id).await.unwrap().unwrap();
        for _ in 0..250 {
            if view.status != "running" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            view = sagas.view("errand", id).await.unwrap().unwrap();
        }
        assert_eq!(view.status, status, "{view:?}");
    }
    assert_eq!(
        store.stream_version("thing-fine").await.unwrap(),
        1,
        "the errand's command ran once"
    );
    sagas.stop().await;
}

/// Waits until instance `id` of the errand saga has ended: its first
/// event, its start record and the record of the poke's answer. Reads
/// only the stream's version, never its events.
async fn errand_ended(store: &dyn EventStore, id: &str) {
    let stream = format!("saga-errand-{id}");
    for _ in 0..500 {
        if store.stream_version(&stream).await.unwrap() >= 3 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the errand {id} never ended");
}

/// A new instance's first event and start record come from the log
/// together (one append), and the runner sends the start's commands
/// without reading the stream back; an instance started before the runner
/// began is read in full first, as one a runner replays would be.
#[tokio::test]
async fn a_new_linked_instance_is_worked_without_reading_its_stream() {
    let store = allframe_tests::faulty::Faulty::new();
    let dispatcher = Arc::new(Dispatcher::builder(&store).build().unwrap());
    let before = ask(&dispatcher, "before").await;
    let reads = store.stream_reads();
    let sagas = Sagas::builder(&store, dispatcher.clone())
        .saga::<Errand>()
        .start()
        .await
        .unwrap();
    errand_ended(&store, &before.aggregate_id).await;
    assert!(
        store.stream_reads() > reads,
        "an instance from before the runner began is read"
    );
    let reads = store.stream_reads();
    let after = ask(&dispatcher, "after").await;
    errand_ended(&store, &after.aggregate_id).await;
    assert_eq!(
        store.stream_reads(),
        reads,
        "a new instance is worked from the log alone"
    );
    let view = sagas.view("errand", &after.aggregate_id).await.unwrap();
    assert_eq!(view.unwrap().status, "done");
    assert_eq!(store.stream_version("thing-after").await.unwrap(), 1);
    sagas.stop().await;
}

/// A step recorded longer ago than half the idempotency keys' retention,
/// whose answer was not recorded, may have run before a crash under a key
/// purged since. When its command names no aggregate, its events cannot be
/// looked for; when another step of the decision sends the same command to
/// the same aggregate, which events are whose cannot be told. Either way
/// the instance fails instead of sending it again.
#[tokio::test]
async fn an_old_step_whose_events_cannot_be_told_fails() {
    let store = MemoryStore::new();
    let retention = Duration::from_millis(200);
    let config = allframe::DispatchConfig::default().idempotency_retention(retention);
    let dispatcher = Arc::new(Dispatcher::builder(&store).config(config).build().unwrap());
    let unnamed = ask(&dispatcher, "jot").await;
    let paired = ask(&dispatcher, "pair").await;
    tokio::time::sleep(retention).await;
    let sagas = Sagas::builder(&store, dispatcher.clone())
        .saga::<Errand>()
        .start()
        .await
        .unwrap();
    for (asked, why) in [
        (unnamed, "names no aggregate"),
        (
            paired,
            "another step of the same decision sends poke to thing-pair",
        ),
    ] {
        errand_ended(&store, &asked.aggregate_id).await;
        let view = sagas.view("errand", &asked.aggregate_id).await.unwrap();
        let view = view.unwrap();
        assert_eq!(view.status, "failed");
        let reason = view.reason.unwrap_or_default();
        assert!(reason.contains(why), "{reason}");
    }
    let things = store
        .read_all(0, 100, &allframe::EventFilter::all().category("thing"))
        .await
        .unwrap();
    assert!(things.is_empty(), "the command was not sent again");
    sagas.stop().await;
}
