//! A projection over two aggregates, with a raw-identifier key and an
//! optional indexed field that serde renames (clients filter by the serde
//! name), run for real over the memory store.
use std::time::Duration;

use allframe::{ApplyError, ListQuery, OneOf2, Projection, Row};
use allframe::store::MemoryStore;
use allframe::{
    Aggregate, Change, Event, EventStore, ExpectedVersion, NewEvent, Projections, RecordedEvent,
};
use serde::{Deserialize, Serialize};

#[derive(Event)]
enum UserEvent {
    Registered { team: Option<String> },
}

#[derive(Event)]
enum BadgeEvent {
    Awarded { user: u64 },
}

#[derive(Default)]
struct User;
impl Aggregate for User {
    type Event = UserEvent;
    const CATEGORY: &'static str = "user";
    fn apply(&mut self, _: &UserEvent) {}
}

#[derive(Default)]
struct Badge;
impl Aggregate for Badge {
    type Event = BadgeEvent;
    const CATEGORY: &'static str = "badge";
    fn apply(&mut self, _: &BadgeEvent) {}
}

#[allframe::projection(name = "user-badges", key = r#user, indexed_by(team, badges))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct UserBadges {
    r#user: u64,
    #[serde(rename = "squad")]
    team: Option<String>,
    badges: u32,
}

impl Projection for UserBadges {
    type Source = (User, Badge);

    fn row_key(event: &OneOf2<UserEvent, BadgeEvent>, recorded: &RecordedEvent) -> Option<String> {
        match event {
            OneOf2::A(_) => Some(recorded.aggregate_id().to_owned()),
            OneOf2::B(BadgeEvent::Awarded { user }) => Some(user.to_string()),
        }
    }

    fn apply(
        row: Option<&Self>,
        event: &OneOf2<UserEvent, BadgeEvent>,
        recorded: &RecordedEvent,
    ) -> Result<Change<Self>, ApplyError> {
        Ok(match (event, row) {
            (OneOf2::A(UserEvent::Registered { team }), _) => Change::Upsert(UserBadges {
                r#user: recorded.aggregate_id().parse()?,
                team: team.clone(),
                badges: 0,
            }),
            (OneOf2::B(_), Some(row)) => Change::Upsert(UserBadges {
                badges: row.badges + 1,
                ..row.clone()
            }),
            (OneOf2::B(_), None) => Change::Skip,
        })
    }
}

#[tokio::main]
async fn main() {
    assert_eq!(UserBadges::KEY, "user");
    assert_eq!(UserBadges::INDEXED_BY, ["squad", "badges"]);
    let store = MemoryStore::new();
    let registered = |team: Option<&str>| {
        NewEvent::from_event(&UserEvent::Registered { team: team.map(Into::into) }).unwrap()
    };
    store.append("user-7", ExpectedVersion::Any, vec![registered(Some("red"))]).await.unwrap();
    store.append("user-8", ExpectedVersion::Any, vec![registered(None)]).await.unwrap();
    let awarded = NewEvent::from_event(&BadgeEvent::Awarded { user: 7 }).unwrap();
    let head = store.append("badge-1", ExpectedVersion::Any, vec![awarded]).await.unwrap();

    let projections = Projections::builder(&store)
        .projection::<UserBadges>()
        .start()
        .await
        .unwrap();
    projections
        .wait_for("user-badges", head.position, Duration::from_secs(5))
        .await
        .unwrap();
    let seven = projections.get::<UserBadges>("7").await.unwrap().unwrap();
    assert_eq!((seven.badges, seven.team.as_deref()), (1, Some("red")));
    let red = projections
        .list::<UserBadges>(&ListQuery::new().filter("squad", "red"))
        .await
        .unwrap();
    assert_eq!(red.items, [seven]);
    let one_badge = projections
        .list::<UserBadges>(&ListQuery::new().filter("badges", "1"))
        .await
        .unwrap();
    assert_eq!(one_badge.items.len(), 1);
}
