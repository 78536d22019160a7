//! A query, its handler reading a projection, and the handler run by name
//! over HTTP-shaped parameters.
use allframe::{ApplyError, Change, ListQuery, Projection};
use allframe::Query as _;
use allframe::store::MemoryStore;
use allframe::{Aggregate, Dep, DomainError, Event, Projections, RecordedEvent};
use serde::{Deserialize, Serialize};

#[derive(Event)]
enum Noted {
    Noted { text: String },
}

#[derive(Default)]
struct Note;

impl Aggregate for Note {
    type Event = Noted;
    const CATEGORY: &'static str = "note";
    fn apply(&mut self, _: &Noted) {}
}

#[allframe::projection(name = "notes", key = id, indexed_by(text))]
#[derive(Clone, Serialize, Deserialize)]
struct NoteRow {
    id: String,
    text: String,
}

impl Projection for NoteRow {
    type Source = Note;
    fn apply(_: Option<&Self>, event: &Noted, recorded: &RecordedEvent) -> Result<Change<Self>, ApplyError> {
        let Noted::Noted { text } = event;
        Ok(Change::Upsert(NoteRow { id: recorded.aggregate_id().into(), text: text.clone() }))
    }
}

/// Notes with this text.
#[allframe::query]
#[derive(Deserialize, garde::Validate)]
#[serde(rename_all = "camelCase")]
struct NotesWithText {
    #[garde(length(chars, min = 1))]
    the_text: String,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Found {
    items: Vec<NoteRow>,
    greeting: String,
}

struct Greeting(&'static str);

#[derive(Debug, thiserror::Error, DomainError)]
enum NotesError {
    #[error("nothing is blank")]
    Blank,
}

#[allframe::query_handler]
pub(crate) async fn notes_with_text(
    query: NotesWithText,
    projections: &Projections,
    greeting: Dep<Greeting>,
) -> Result<Found, NotesError> {
    let page = projections
        .list::<NoteRow>(&ListQuery::new().filter("text", query.the_text))
        .await
        .map_err(|_| NotesError::Blank)?;
    Ok(Found { items: page.items, greeting: greeting.0.to_owned() })
}

#[tokio::main]
async fn main() {
    assert_eq!(NotesWithText::NAME, "notes-with-text");
    assert_eq!(NotesWithText::wire_field("the_text"), "theText");
    assert_eq!(NotesWithText::schema().schema()["properties"]["theText"]["minLength"], 1);
    let store = MemoryStore::new();
    let app = allframe::App::builder(&store).provide(Greeting("hi")).build().await.unwrap();
    let answer = app.queries().run("notes-with-text", "theText=x").await.unwrap();
    assert_eq!(answer.get(), r#"{"items":[],"greeting":"hi"}"#);
    let invalid = app.queries().run("notes-with-text", "theText=").await.unwrap_err();
    assert_eq!(invalid.status(), 422);
}
