//! Commands on one busy aggregate are decided together, one after another
//! on the state the ones before left, and appended in one append: every
//! caller gets exactly its own events and the answer it would have had one
//! by one, refusals included, each unclaimed idempotency key completes
//! with its own command's outcome, and nothing is written for a round
//! whose append fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use allframe::{CommandError, Container, Dep, DispatchOptions, Dispatcher, EventStore};
use allframe_tests::faulty::{Fault, Faulty};
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};

#[derive(allframe::Event, Debug, PartialEq)]
enum JarEvent {
    Opened {},
    Added { coins: u64 },
    Taken { coins: u64 },
}

/// A jar of coins that never holds fewer than none.
#[derive(Default, Debug)]
struct Jar {
    coins: u64,
}

impl allframe::Aggregate for Jar {
    type Event = JarEvent;
    const CATEGORY: &'static str = "jar";
    fn apply(&mut self, event: &JarEvent) {
        match event {
            JarEvent::Opened {} => {}
            JarEvent::Added { coins } => self.coins += coins,
            JarEvent::Taken { coins } => self.coins -= coins,
        }
    }
}

#[derive(Debug, thiserror::Error, allframe::DomainError)]
enum JarError {
    #[error("the jar holds too few coins")]
    TooFew,
}

#[allframe::command(aggregate = Jar, id = id, create, name = "open-jar")]
#[derive(Clone, Serialize, Deserialize, garde::Validate)]
struct OpenJar {
    #[garde(skip)]
    id: String,
}

#[allframe::command(aggregate = Jar, id = id, name = "add")]
#[derive(Clone, Serialize, Deserialize, garde::Validate)]
struct Add {
    #[garde(skip)]
    id: String,
    #[garde(skip)]
    coins: u64,
}

#[allframe::command(aggregate = Jar, id = id, name = "take")]
#[derive(Clone, Serialize, Deserialize, garde::Validate)]
struct Take {
    #[garde(skip)]
    id: String,
    #[garde(skip)]
    coins: u64,
}

/// How many times the `add` handler ran.
#[derive(Default)]
struct Calls(AtomicU64);

#[allframe::command_handler]
async fn open_jar(_: OpenJar, _: &Jar) -> Result<Vec<JarEvent>, std::convert::Infallible> {
    Ok(vec![JarEvent::Opened {}])
}

#[allframe::command_handler]
async fn add(
    command: Add,
    _: &Jar,
    calls: Dep<Calls>,
) -> Result<Vec<JarEvent>, std::convert::Infallible> {
    calls.0.fetch_add(1, Ordering::SeqCst);
    if command.coins == 13 {
        panic!("unlucky");
    }
    Ok(vec![JarEvent::Added {
        coins: command.coins,
    }])
}

#[allframe::command_handler]
async fn take(command: Take, jar: &Jar) -> Result<Vec<JarEvent>, JarError> {
    if command.coins > jar.coins {
        return Err(JarError::TooFew);
    }
    Ok(vec![JarEvent::Taken {
        coins: command.coins,
    }])
}

async fn dispatcher(store: &Faulty) -> (Arc<Dispatcher>, Arc<Calls>) {
    let calls = Arc::new(Calls::default());
    let container = Container::builder()
        .provide_shared(calls.clone())
        .build()
        .await
        .unwrap();
    let dispatcher = Dispatcher::builder(store)
        .container(container)
        .build()
        .unwrap();
    (Arc::new(dispatcher), calls)
}

async fn open(dispatcher: &Dispatcher, id: &str) {
    dispatcher
        .dispatch(OpenJar { id: id.into() }, DispatchOptions::default())
        .await
        .unwrap();
}

async fn coins(store: &Faulty, id: &str) -> u64 {
    allframe::load::<Jar>(store, id).await.unwrap().state.coins
}

/// Runs `count` commands at once, each built by `command(i)`.
async fn at_once<C: allframe::Command + Send + 'static>(
    dispatcher: &Arc<Dispatcher>,
    count: u64,
    command: impl Fn(u64) -> C,
) -> Vec<Result<allframe::CommandOutcome, CommandError>> {
    let calls = (0..count).map(|i| {
        let (dispatcher, command) = (dispatcher.clone(), command(i));
        tokio::spawn(async move {
            dispatcher
                .dispatch(command, DispatchOptions::default())
                .await
        })
    });
    join_all(calls)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_on_one_aggregate_share_appends_and_each_gets_its_own_events() {
    let store = Faulty::new();
    let (dispatcher, _) = dispatcher(&store).await;
    open(&dispatcher, "j").await;
    let before = store.appends();
    // Appends wait until every command has been sent, as behind a slow
    // disk: the ones that arrive while a round is being written must be
    // decided together in the next.
    store.hold_appends();
    let answers = tokio::spawn({
        let dispatcher = dispatcher.clone();
        async move {
            at_once(&dispatcher, 200, |i| Add {
                id: "j".into(),
                coins: 100 + i,
            })
            .await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    store.release_appends();
    let answers = answers.await.unwrap();
    let mut versions = Vec::new();
    for (i, answer) in answers.iter().enumerate() {
        let outcome = answer.as_ref().unwrap();
        assert_eq!(outcome.events.len(), 1, "{outcome:?}");
        let event = &outcome.events[0];
        assert_eq!(event.version, outcome.version);
        assert_eq!(Some(event.position), outcome.position);
        assert_eq!(
            event.data.get(),
            format!(r#"{{"coins":{}}}"#, 100 + i),
            "each caller gets its own event"
        );
        versions.push(outcome.version);
    }
    versions.sort();
    assert_eq!(versions, (2..=201).collect::<Vec<u64>>());
    assert_eq!(coins(&store, "j").await, (100..300).sum::<u64>());
    let appends = store.appends() - before;
    assert!(
        appends < 100,
        "{appends} appends for 200 commands: they were not decided together"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_in_a_round_see_the_commands_before_them() {
    let store = Faulty::new();
    let (dispatcher, _) = dispatcher(&store).await;
    open(&dispatcher, "j").await;
    dispatcher
        .dispatch(
            Add {
                id: "j".into(),
                coins: 100,
            },
            DispatchOptions::default(),
        )
        .await
        .unwrap();
    let answers = at_once(&dispatcher, 30, |_| Take {
        id: "j".into(),
        coins: 10,
    })
    .await;
    let taken = answers.iter().filter(|answer| answer.is_ok()).count();
    let refused: Vec<&CommandError> = answers
        .iter()
        .filter_map(|answer| answer.as_ref().err())
        .collect();
    assert_eq!(taken, 10);
    assert_eq!(refused.len(), 20);
    assert!(
        refused.iter().all(|error| error.code() == "too-few"),
        "{refused:?}"
    );
    assert_eq!(coins(&store, "j").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_answers_only_its_own_command() {
    let store = Faulty::new();
    let (dispatcher, _) = dispatcher(&store).await;
    open(&dispatcher, "j").await;
    let answers = at_once(&dispatcher, 40, |i| Add {
        id: "j".into(),
        coins: if i == 20 { 13 } else { 1 },
    })
    .await;
    for (i, answer) in answers.iter().enumerate() {
        match (i, answer) {
            (20, Err(CommandError::Panicked(message))) => assert!(message.contains("unlucky")),
            (20, other) => panic!("the unlucky command: {other:?}"),
            (_, answer) => assert!(answer.is_ok(), "{answer:?}"),
        }
    }
    assert_eq!(coins(&store, "j").await, 39);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_whose_append_fails_writes_nothing_and_the_next_goes_on() {
    let store = Faulty::new();
    let (dispatcher, _) = dispatcher(&store).await;
    open(&dispatcher, "j").await;
    store.set(Some(Fault::Unreachable));
    let answers = at_once(&dispatcher, 20, |_| Add {
        id: "j".into(),
        coins: 1,
    })
    .await;
    assert!(
        answers
            .iter()
            .all(|answer| matches!(answer, Err(CommandError::Store(_) | CommandError::Load(_)))),
        "{answers:?}"
    );
    store.set(Some(Fault::Conflict));
    let answers = at_once(&dispatcher, 20, |_| Add {
        id: "j".into(),
        coins: 1,
    })
    .await;
    assert!(
        answers
            .iter()
            .all(|answer| matches!(answer, Err(CommandError::Conflict { .. }))),
        "{answers:?}"
    );
    store.set(None);
    assert_eq!(coins(&store, "j").await, 0);
    let answers = at_once(&dispatcher, 20, |_| Add {
        id: "j".into(),
        coins: 1,
    })
    .await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    assert_eq!(coins(&store, "j").await, 20);
    assert_eq!(store.head_position().await.unwrap(), 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_that_conflicts_with_another_writer_is_decided_again() {
    let store = Faulty::new();
    let (one, _) = dispatcher(&store).await;
    let (other, _) = dispatcher(&store).await;
    open(&one, "j").await;
    one.dispatch(
        Add {
            id: "j".into(),
            coins: 10,
        },
        DispatchOptions::default(),
    )
    .await
    .unwrap();
    // The other writes behind one's cached state.
    other
        .dispatch(
            Take {
                id: "j".into(),
                coins: 10,
            },
            DispatchOptions::default(),
        )
        .await
        .unwrap();
    let answers = at_once(&one, 10, |_| Take {
        id: "j".into(),
        coins: 1,
    })
    .await;
    // On the stale state (10 coins) all ten would be taken; on the real
    // one (0) each is refused.
    assert!(
        answers
            .iter()
            .all(|answer| answer.as_ref().is_err_and(|e| e.code() == "too-few")),
        "{answers:?}"
    );
    assert_eq!(coins(&store, "j").await, 0);
    let answers = at_once(&one, 10, |_| Add {
        id: "j".into(),
        coins: 2,
    })
    .await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    assert_eq!(coins(&store, "j").await, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_with_unclaimed_keys_share_appends_and_each_key_keeps_its_own_outcome() {
    let store = Faulty::new();
    let (dispatcher, _) = dispatcher(&store).await;
    open(&dispatcher, "j").await;
    let before = store.appends();
    let keyed = |key: u64| DispatchOptions::default().unclaimed_idempotency_key(format!("k-{key}"));
    let command = |key: u64| Add {
        id: "j".into(),
        coins: 1000 + key,
    };
    // 100 keys, the first 20 sent twice at once (as a saga's command is
    // sent again after a crash): one of each pair is carried out, the
    // other answers with its outcome.
    store.hold_appends();
    let calls = (0..120u64).map(|i| {
        let (dispatcher, key) = (dispatcher.clone(), i % 100);
        tokio::spawn(async move {
            let outcome = dispatcher.dispatch(command(key), keyed(key)).await;
            (key, outcome)
        })
    });
    let calls = tokio::spawn(join_all(calls));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    store.release_appends();
    let answers: Vec<(u64, allframe::CommandOutcome)> = calls
        .await
        .unwrap()
        .into_iter()
        .map(|call| {
            let (key, outcome) = call.unwrap();
            (key, outcome.unwrap_or_else(|e| panic!("k-{key}: {e:?}")))
        })
        .collect();
    assert_eq!(coins(&store, "j").await, (1000..1100).sum::<u64>());
    let appends = store.appends() - before;
    assert!(
        appends < 60,
        "{appends} appends for 120 commands: they were not decided together"
    );
    for key in 0..100 {
        let outcomes: Vec<&allframe::CommandOutcome> = answers
            .iter()
            .filter(|(of, _)| *of == key)
            .map(|(_, outcome)| outcome)
            .collect();
        assert_eq!(
            outcomes.iter().filter(|o| !o.replayed).count(),
            1,
            "k-{key} was carried out once: {outcomes:?}"
        );
        // The key's stored outcome is this command's own share of its
        // round's append.
        let again = dispatcher.dispatch(command(key), keyed(key)).await.unwrap();
        assert!(again.replayed, "k-{key}");
        for outcome in outcomes.iter().copied().chain([&again]) {
            assert_eq!(outcome.events.len(), 1, "k-{key}: {outcome:?}");
            let event = &outcome.events[0];
            assert_eq!(event.data.get(), format!(r#"{{"coins":{}}}"#, 1000 + key));
            assert_eq!(
                (outcome.version, outcome.position),
                (event.version, Some(event.position))
            );
            assert_eq!(event.metadata.event_id, again.events[0].metadata.event_id);
        }
    }
    assert_eq!(store.stream_version("jar-j").await.unwrap(), 101);
    assert_eq!(store.head_position().await.unwrap(), 101);
}
