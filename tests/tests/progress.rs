//! Long work reports its pace: a projection catching up over a long log,
//! and then rebuilding, shows events a second, the positions left and the
//! time left in its status (what `GET /admin/projections` lists), drops
//! the report once caught up, and logs its progress every few seconds
//! rather than per event.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use allframe::store::MemoryStore;
use allframe::{
    Aggregate, ApplyError, Change, Event, EventStore, ExpectedVersion, NewEvent, Projection,
    ProjectionState, ProjectionStatus, Projections, RecordedEvent,
};
use serde::{Deserialize, Serialize};
use tracing_subscriber::layer::SubscriberExt;

/// Events in the log; the projection takes about a millisecond each, so
/// a pass takes several seconds.
const EVENTS: u64 = 6_000;
const BATCH: usize = 50;

#[derive(Event, Debug, Clone)]
enum TickEvent {
    Ticked {},
}

#[derive(Default)]
struct Clock;

impl Aggregate for Clock {
    type Event = TickEvent;
    const CATEGORY: &'static str = "clock";
    fn apply(&mut self, _: &TickEvent) {}
}

#[allframe::projection(name = "ticks", key = id)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Ticks {
    id: String,
    count: u64,
}

impl Projection for Ticks {
    type Source = Clock;

    fn apply(
        row: Option<&Self>,
        _: &TickEvent,
        recorded: &RecordedEvent,
    ) -> Result<Change<Self>, ApplyError> {
        // Slow work, so the pass lasts long enough to be reported on.
        std::thread::sleep(Duration::from_millis(1));
        Ok(Change::Upsert(Ticks {
            id: recorded.aggregate_id().to_owned(),
            count: row.map_or(0, |row| row.count) + 1,
        }))
    }
}

/// The `projection progress` log lines seen, as their fields.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Lines {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={value:?} ", field.name()));
            }
        }
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        if fields.0.contains("projection progress") {
            self.0.lock().unwrap().push(fields.0);
        }
    }
}

/// Watches `ticks` until `done`, collecting every progress report seen.
async fn watch(
    projections: &Projections,
    done: impl Fn(&ProjectionStatus) -> bool,
) -> Vec<allframe::WorkProgress> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut reports = Vec::new();
    loop {
        let status = projections.status_of("ticks").await.unwrap();
        reports.extend(status.progress);
        if done(&status) {
            return reports;
        }
        assert!(tokio::time::Instant::now() < deadline, "{status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reports that saw the work moving, with time left and positions left.
fn moving(reports: &[allframe::WorkProgress]) -> Vec<allframe::WorkProgress> {
    reports
        .iter()
        .copied()
        .filter(|report| {
            report.events_per_second > 0
                && report.remaining_events > 0
                && report.eta_seconds.is_some()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_and_rebuild_report_their_pace() {
    let lines = Lines::default();
    // Global: the projection's task logs from the runtime's threads.
    let subscriber = tracing_subscriber::registry().with(lines.clone());
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let store = MemoryStore::new();
    for chunk in 0..EVENTS / 100 {
        let events = (0..100)
            .map(|_| NewEvent::from_event(&TickEvent::Ticked {}).unwrap())
            .collect();
        store
            .append(&format!("clock-{chunk}"), ExpectedVersion::Any, events)
            .await
            .unwrap();
    }
    let projections = Projections::builder(&store)
        .projection::<Ticks>()
        .batch_size(BATCH)
        .start()
        .await
        .unwrap();

    // The first pass is a catch-up of the whole log.
    let reports = watch(&projections, |status| status.lag == 0).await;
    let seen = moving(&reports);
    assert!(
        !seen.is_empty(),
        "the catch-up reported its pace: {reports:?}"
    );
    for pair in seen.windows(2) {
        assert!(
            pair[1].remaining_events <= pair[0].remaining_events,
            "{pair:?}"
        );
    }
    let caught_up = projections.status_of("ticks").await.unwrap();
    assert_eq!(caught_up.progress, None, "nothing left, nothing reported");
    let logged = lines.0.lock().unwrap().clone();
    assert!(
        !logged.is_empty() && logged.len() <= 4,
        "a line every five seconds, not per event: {logged:?}"
    );
    assert!(logged[0].contains("work=\"catch-up\"") && logged[0].contains("eta_seconds"));

    // A rebuild reports on the new generation while the live one serves.
    projections.rebuild("ticks").await.unwrap();
    let reports = watch(&projections, |status| {
        status.state == ProjectionState::Running && status.rebuild_checkpoint.is_none()
    })
    .await;
    let seen = moving(&reports);
    assert!(
        !seen.is_empty(),
        "the rebuild reported its pace: {reports:?}"
    );
    assert!(seen.iter().all(|report| report.remaining_events < EVENTS));
    assert_eq!(projections.status_of("ticks").await.unwrap().progress, None);
    projections.stop().await;
}
