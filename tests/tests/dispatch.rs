//! Dispatch semantics with hand-written `Command` and `CommandHandler`
//! impls (no macros): validation, existence rules, retries, preconditions,
//! metadata, and start-up checks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use allframe::Container;
use allframe::store::MemoryStore;
use allframe::{
    Aggregate, Command, CommandError, Dep, DispatchConfig, DispatchOptions, Dispatcher,
    DomainError, Event, EventStore, ExpectedVersion, IfMatch, NewEvent,
};
use allframe::{BuildError, CommandHandler, EventOf, HandlerRegistration};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

#[derive(Event, Debug, PartialEq)]
enum CounterEvent {
    Created { owner: String },
    Added { by: u64 },
}

#[derive(Default)]
struct Counter {
    total: u64,
}

impl Aggregate for Counter {
    type Event = CounterEvent;
    const CATEGORY: &'static str = "counter";
    fn apply(&mut self, event: &CounterEvent) {
        if let CounterEvent::Added { by } = event {
            self.total += by;
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum CounterError {
    #[error("the counter would pass 1000")]
    TooBig,
}

impl DomainError for CounterError {
    const CODES: &'static [(&'static str, u16)] = &[("too-big", 422)];

    fn code(&self) -> &'static str {
        "too-big"
    }
}

#[derive(Clone, Serialize, Deserialize, garde::Validate)]
struct CreateCounter {
    #[garde(skip)]
    id: Option<String>,
    #[garde(length(chars, min = 1, max = 5))]
    owner: String,
}

impl Command for CreateCounter {
    const NAME: &'static str = "create-counter";
    const CREATE: bool = true;
    type Aggregate = Counter;
    fn aggregate_id(&self) -> Option<String> {
        self.id.clone()
    }
    fn schema() -> allframe::WireSchema {
        allframe::WireSchema::new(serde_json::json!({
            "type": "object",
            "properties": {"id": {"type": ["string", "null"]}, "owner": {"type": "string"}},
            "required": ["owner"],
        }))
    }
}

#[derive(Clone, Serialize, Deserialize, garde::Validate)]
struct Add {
    #[garde(skip)]
    counter_id: String,
    #[garde(range(min = 1, max = 100))]
    #[serde(rename = "amountToAdd")]
    by: u64,
}

impl Command for Add {
    const NAME: &'static str = "add";
    const CREATE: bool = false;
    type Aggregate = Counter;
    fn aggregate_id(&self) -> Option<String> {
        Some(self.counter_id.clone())
    }
    fn wire_field(rust_field: &str) -> &str {
        match rust_field {
            "by" => "amountToAdd",
            other => other,
        }
    }
    fn schema() -> allframe::WireSchema {
        allframe::WireSchema::new(serde_json::json!({
            "type": "object",
            "properties": {"counter_id": {"type": "string"}, "amountToAdd": {"type": "integer"}},
            "required": ["counter_id", "amountToAdd"],
        }))
    }
}

/// Counts handler calls and, when `interfere` is set, appends to the
/// counter's stream behind the handler's back to force a conflict.
struct Probe {
    calls: AtomicU32,
    interfere: Option<Arc<dyn EventStore>>,
}

#[derive(Default)]
struct CreateHandler;

impl CommandHandler for CreateHandler {
    type Command = CreateCounter;
    type Error = std::convert::Infallible;
    const DEPENDENCIES: &'static [allframe::Dependency] = &[];
    fn handle<'a>(
        &'a self,
        command: CreateCounter,
        _state: &'a Counter,
        _dependencies: &'a Container,
    ) -> BoxFuture<'a, Result<Vec<EventOf<CreateCounter>>, CommandError<Self::Error>>> {
        Box::pin(async move {
            Ok(vec![CounterEvent::Created {
                owner: command.owner,
            }])
        })
    }
}

#[derive(Default)]
struct AddHandler;

impl CommandHandler for AddHandler {
    type Command = Add;
    type Error = CounterError;
    const DEPENDENCIES: &'static [allframe::Dependency] = &[allframe::Dependency::of::<Probe>()];
    fn handle<'a>(
        &'a self,
        command: Add,
        state: &'a Counter,
        dependencies: &'a Container,
    ) -> BoxFuture<'a, Result<Vec<EventOf<Add>>, CommandError<Self::Error>>> {
        Box::pin(async move {
            let probe: Dep<Probe> = dependencies
                .get()
                .ok_or(CommandError::MissingDependency("Probe"))?;
            probe.calls.fetch_add(1, Ordering::SeqCst);
            if let Some(store) = &probe.interfere {
                let stream = format!("counter-{}", command.counter_id);
                let noise = NewEvent::from_event(&CounterEvent::Added { by: 0 }).unwrap();
                store
                    .append(&stream, ExpectedVersion::Any, vec![noise])
                    .await
                    .unwrap();
            }
            if state.total + command.by > 1000 {
                return Err(CommandError::Domain(CounterError::TooBig));
            }
            if command.by == 42 {
                return Ok(Vec::new());
            }
            Ok(vec![CounterEvent::Added { by: command.by }])
        })
    }
}

static CREATE: HandlerRegistration = HandlerRegistration::new::<CreateHandler>("dispatch::create");
static ADD: HandlerRegistration = HandlerRegistration::new::<AddHandler>("dispatch::add");
static ADD_AGAIN: HandlerRegistration =
    HandlerRegistration::new::<AddHandler>("dispatch::add_again");

async fn dispatcher(
    store: &MemoryStore,
    probe: Probe,
    config: DispatchConfig,
) -> (Dispatcher, Arc<Probe>) {
    let probe = Arc::new(probe);
    let container = Container::builder()
        .provide_shared(probe.clone())
        .build()
        .await
        .unwrap();
    let dispatcher = Dispatcher::builder(store)
        .handlers(vec![&CREATE, &ADD])
        .container(container)
        .config(config)
        .build()
        .unwrap();
    (dispatcher, probe)
}

fn probe() -> Probe {
    Probe {
        calls: AtomicU32::new(0),
        interfere: None,
    }
}

async fn create(dispatcher: &Dispatcher, id: &str) {
    let command = CreateCounter {
        id: Some(id.into()),
        owner: "ada".into(),
    };
    dispatcher
        .dispatch(command, DispatchOptions::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_create_then_a_change() {
    let store = MemoryStore::new();
    let (dispatcher, _) = dispatcher(&store, probe(), DispatchConfig::default()).await;
    assert_eq!(
        dispatcher.commands().collect::<Vec<_>>(),
        ["add", "create-counter"]
    );
    let created = dispatcher
        .dispatch(
            CreateCounter {
                id: None,
                owner: "ada".into(),
            },
            DispatchOptions::default(),
        )
        .await
        .unwrap();
    let generated = uuid::Uuid::parse_str(&created.aggregate_id).expect("a server-generated UUID");
    assert_eq!(generated.get_version_num(), 7);
    assert_eq!(
        created.stream_id,
        format!("counter-{}", created.aggregate_id)
    );
    assert_eq!((created.version, created.position), (1, Some(1)));
    let added = dispatcher
        .dispatch_json(
            "add",
            format!(
                r#"{{"counter_id":"{}","amountToAdd":5}}"#,
                created.aggregate_id
            )
            .as_bytes(),
            DispatchOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!((added.version, added.position), (2, Some(2)));
    assert_eq!(
        added.events[0].decode::<CounterEvent>().unwrap(),
        CounterEvent::Added { by: 5 }
    );
}

#[tokio::test]
async fn metadata_carries_ids_command_and_extra_fields() {
    let store = MemoryStore::new();
    let (dispatcher, _) = dispatcher(&store, probe(), DispatchConfig::default()).await;
    create(&dispatcher, "m").await;
    let options = DispatchOptions::default()
        .correlation_id("corr-7")
        .metadata("tenant", "acme");
    let first = dispatcher
        .dispatch(
            Add {
                counter_id: "m".into(),
                by: 1,
            },
            options,
        )
        .await
        .unwrap();
    let second = dispatcher
        .dispatch(
            Add {
                counter_id: "m".into(),
                by: 2,
            },
            DispatchOptions::default(),
        )
        .await
        .unwrap();
    let meta = &first.events[0].metadata;
    assert_eq!(meta.correlation_id.as_deref(), Some("corr-7"));
    assert_eq!(meta.command.as_deref(), Some("add"));
    assert_eq!(meta.extra.get("tenant"), Some(&serde_json::json!("acme")));
    let causation = meta.causation_id.clone().expect("causation id");
    assert_ne!(
        Some(causation.clone()),
        second.events[0].metadata.causation_id
    );
    let second_meta = &second.events[0].metadata;
    assert_eq!(
        second_meta.correlation_id, second_meta.causation_id,
        "without a given correlation id, the command id starts the chain"
    );
    assert_ne!(meta.event_id, second_meta.event_id);
}

#[tokio::test]
async fn validation_reports_every_error_with_wire_pointers() {
    let store = MemoryStore::new();
    let (dispatcher, probe) = dispatcher(&store, probe(), DispatchConfig::default()).await;
    let error = dispatcher
        .dispatch_json(
            "create-counter",
            r#"{"owner":"ééééééé"}"#.as_bytes(),
            DispatchOptions::default(),
        )
        .await
        .unwrap_err();
    let CommandError::Validation(errors) = &error else {
        panic!("{error:?}")
    };
    assert_eq!(errors.len(), 1);
    assert_eq!(
        errors[0].pointer, "/owner",
        "7 characters > 5, counted in characters"
    );
    assert!(
        dispatcher
            .dispatch_json(
                "create-counter",
                r#"{"owner":"ééééé"}"#.as_bytes(),
                DispatchOptions::default()
            )
            .await
            .is_ok(),
        "5 two-byte characters are within max = 5"
    );
    create(&dispatcher, "v").await;
    let error = dispatcher
        .dispatch_json(
            "add",
            br#"{"counter_id":"v","amountToAdd":0}"#,
            DispatchOptions::default(),
        )
        .await
        .unwrap_err();
    let CommandError::Validation(errors) = &error else {
        panic!("{error:?}")
    };
    assert_eq!(errors[0].pointer, "/amountToAdd");
    assert_eq!((error.status(), error.code()), (422, "validation-failed"));
    assert_eq!(
        probe.calls.load(Ordering::SeqCst),
        0,
        "invalid commands never reach the handler"
    );
}

#[tokio::test]
async fn bad_bodies_and_names() {
    let store = MemoryStore::new();
    let (dispatcher, _) = dispatcher(&store, probe(), DispatchConfig::default()).await;
    let options = DispatchOptions::default;
    let error = dispatcher
        .dispatch_json("add", b"{not json", options())
        .await
        .unwrap_err();
    assert_eq!((error.status(), error.code()), (400, "malformed-json"));
    let error = dispatcher
        .dispatch_json("add", br#"{"counter_id":1}"#, options())
        .await
        .unwrap_err();
    assert_eq!((error.status(), error.code()), (422, "invalid-command"));
    let error = dispatcher
        .dispatch_json("nope", b"{}", options())
        .await
        .unwrap_err();
    assert_eq!((error.status(), error.code()), (404, "unknown-command"));
    let error = dispatcher
        .dispatch_json("create-counter", br#"{"id":"","owner":"a"}"#, options())
        .await
        .unwrap_err();
    assert_eq!(
        error.code(),
        "invalid-command",
        "an empty aggregate id: {error}"
    );
    let error = dispatcher
        .dispatch_json("create-counter", br#"{"id":"a\nb","owner":"a"}"#, options())
        .await
        .unwrap_err();
    assert_eq!((error.status(), error.code()), (422, "invalid-command"));
}

#[tokio::test]
async fn existence_rules() {
    let store = MemoryStore::new();
    let (dispatcher, _) = dispatcher(&store, probe(), DispatchConfig::default()).await;
    let error = dispatcher
        .dispatch(
            Add {
                counter_id: "ghost".into(),
                by: 1,
            },
            DispatchOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!((error.status(), error.code()), (404, "not-found"));
    create(&dispatcher, "once").await;
    let error = dispatcher
        .dispatch(
            CreateCounter {
                id: Some("once".into()),
                owner: "b".into(),
            },
            DispatchOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!((error.status(), error.code()), (409, "already-exists"));
    assert_eq!(store.stream_version("counter-once").await.unwrap(), 1);
}

#[tokio::test]
async fn domain_errors_and_empty_decisions() {
    let store = MemoryStore::new();
    let (dispatcher, _) = dispatcher(&store, probe(), DispatchConfig::default()).await;
    create(&dispatcher, "d").await;
    for _ in 0..10 {
        dispatcher
            .dispatch(
                Add {
                    counter_id: "d".into(),
                    by: 100,
                },
                DispatchOptions::default(),
            )
            .await
            .unwrap();
    }
    let error = dispatcher
        .dispatch(
            Add {
                counter_id: "d".into(),
                by: 1,
            },
            DispatchOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!((error.status(), error.code()), (422, "too-big"));
    assert_eq!(error.to_string(), "the counter would pass 1000");
    let (dispatcher, _) = self::dispatcher(&store, probe(), DispatchConfig::default()).await;
    create(&dispatcher, "e").await;
    let nothing = dispatcher
        .dispatch(
            Add {
                counter_id: "e".into(),
                by: 42,
            },
            DispatchOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        (nothing.version, nothing.position, nothing.events.len()),
        (1, None, 0)
    );
}

#[tokio::test]
async fn conflicts_are_retried_then_reported() {
    let store = MemoryStore::new();
    let interfering = Probe {
        calls: AtomicU32::new(0),
        interfere: Some(store.shared()),
    };
    let (dispatcher, probe) = dispatcher(
        &store,
        interfering,
        DispatchConfig::default().max_retries(2),
    )
    .await;
    create(&dispatcher, "hot").await;
    let error = dispatcher
        .dispatch(
            Add {
                counter_id: "hot".into(),
                by: 1,
            },
            DispatchOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, CommandError::Conflict { attempts: 3, .. }),
        "{error:?}"
    );
    assert_eq!((error.status(), error.code()), (409, "conflict"));
    assert_eq!(
        probe.calls.load(Ordering::SeqCst),
        3,
        "1 attempt + 2 retries, each ran the handler"
    );
    let error = dispatcher
        .dispatch_json(
            "add",
            br#"{"counter_id":"hot","amountToAdd":1}"#,
            DispatchOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, CommandError::Conflict { attempts: 3, .. }),
        "{error:?}"
    );
    assert_eq!(
        probe.calls.load(Ordering::SeqCst),
        6,
        "retries of a JSON command run on clones of it"
    );
}

#[tokio::test]
async fn an_expected_version_fails_fast_without_retry() {
    let store = MemoryStore::new();
    let (dispatcher, probe) = dispatcher(&store, probe(), DispatchConfig::default()).await;
    create(&dispatcher, "p").await;
    let stale = DispatchOptions::default().expected_version(0);
    let error = dispatcher
        .dispatch(
            Add {
                counter_id: "p".into(),
                by: 1,
            },
            stale,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            CommandError::PreconditionFailed {
                expected: IfMatch::OneOf(ref versions),
                actual: 1
            } if versions == &[0]
        ),
        "{error:?}"
    );
    assert_eq!(error.status(), 412);
    assert_eq!(probe.calls.load(Ordering::SeqCst), 0);
    let fresh = DispatchOptions::default().expected_version(1);
    let ok = dispatcher
        .dispatch(
            Add {
                counter_id: "p".into(),
                by: 1,
            },
            fresh,
        )
        .await
        .unwrap();
    assert_eq!(ok.version, 2);

    // A writer slipping in between load and append: the retry's load finds
    // another version, so a precondition error before the handler runs again.
    let interfering = Probe {
        calls: AtomicU32::new(0),
        interfere: Some(store.shared()),
    };
    let (dispatcher, probe) =
        self::dispatcher(&store, interfering, DispatchConfig::default()).await;
    let error = dispatcher
        .dispatch(
            Add {
                counter_id: "p".into(),
                by: 1,
            },
            DispatchOptions::default().expected_version(2),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            CommandError::PreconditionFailed {
                expected: IfMatch::OneOf(ref versions),
                actual: 3
            } if versions == &[2]
        ),
        "{error:?}"
    );
    assert_eq!(probe.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn start_up_names_every_missing_dependency_and_duplicate_handlers() {
    let store = MemoryStore::new();
    let error = Dispatcher::builder(&store)
        .handlers(vec![&CREATE, &ADD])
        .build()
        .unwrap_err();
    let BuildError::Dependencies(missing) = &error else {
        panic!("{error:?}")
    };
    assert!(missing.to_string().contains("Probe"), "{missing}");
    let error = Dispatcher::builder(&store)
        .handlers(vec![&ADD_AGAIN, &CREATE, &ADD])
        .build()
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("`add`")
            && message.contains("dispatch::add`")
            && message.contains("dispatch::add_again"),
        "{message}"
    );
}
