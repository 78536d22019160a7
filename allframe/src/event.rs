//! Events: the [`Event`] trait that user types implement (normally through
//! `#[derive(Event)]`), what an append carries ([`NewEvent`]) and what the
//! store hands back ([`RecordedEvent`]).
//!
//! Every stored event is decoded through [`RecordedEvent::decode`], the one
//! place where a stored `(type, schema_version, data)` triple becomes a typed
//! value: data stored at an older version, or under an older name, goes
//! through the upcast chain its type declares (see `#[derive(Event)]`), so
//! every reader sees today's shape.

use std::collections::HashMap;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::schema::WireSchema;

/// A domain event type: an enum with one stored `type` per variant, or a
/// struct stored under one `type`.
///
/// Implement it with `#[derive(Event)]`. The stored `data` is the variant's
/// fields as a JSON object; `type` is the variant (or struct) name unless
/// renamed with `#[event(rename = "...")]`; `schema_version` is 1 unless set
/// with `#[event(version = N)]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an AllFrame event",
    label = "not an event",
    note = "add `#[derive(allframe::Event)]` to the definition of `{Self}`"
)]
pub trait Event: Sized + Send + Sync + 'static {
    /// Every `type` name values of this type are stored under, in
    /// declaration order.
    fn event_types() -> &'static [&'static str];

    /// The stored `type` of this value.
    fn event_type(&self) -> &'static str;

    /// The schema version this value is written with.
    fn schema_version(&self) -> u32;

    /// Today's schema version of the stored `type` `event_type`, or `None`
    /// when that is not one of today's names (an alias, another type's).
    fn current_version(event_type: &str) -> Option<u32>;

    /// Today's schema version of the variant that decodes data stored as
    /// `event_type` — under today's name or an alias — or `None` when no
    /// variant does. Data stored at any version from 1 to that one decodes.
    fn version_of(event_type: &str) -> Option<u32>;

    /// The stored `data`: this value's fields as a JSON object.
    fn to_data(&self) -> Result<Box<RawValue>, serde_json::Error>;

    /// Rebuilds a value from a stored `type`, `schema_version` and `data`.
    fn from_data(
        event_type: &str,
        schema_version: u32,
        data: &RawValue,
    ) -> Result<Self, DecodeErrorKind>;

    /// The JSON Schema of the `data` stored under each of
    /// [`Event::event_types`], in the same order, for the OpenAPI document.
    fn data_schemas() -> Vec<(&'static str, WireSchema)>;
}

/// Who and what caused an event. Serialized as one flat JSON object: the
/// named fields plus every caller-defined entry of `extra`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Metadata {
    /// Unique id of this event (UUID v7, so ids sort by creation time).
    pub event_id: Uuid,
    /// Groups every event caused by one original request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub correlation_id: Option<String>,
    /// The id of the message (command or event) that directly caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub causation_id: Option<String>,
    /// The name of the command that recorded this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub command: Option<String>,
    /// Caller-defined fields. Keys must not repeat the names above.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Metadata {
    /// Names reserved for the fields of [`Metadata`]; `extra` may not use them.
    pub const RESERVED_KEYS: [&'static str; 4] =
        ["event_id", "correlation_id", "causation_id", "command"];

    /// Metadata with a fresh event id and nothing else.
    pub fn new() -> Self {
        Self {
            event_id: Uuid::now_v7(),
            correlation_id: None,
            causation_id: None,
            command: None,
            extra: serde_json::Map::new(),
        }
    }
}

impl Default for Metadata {
    fn default() -> Self {
        Self::new()
    }
}

/// An event to append: its stored `type`, `schema_version`, `data` and
/// [`Metadata`]. The store assigns position, version and time.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub(crate) event_type: String,
    pub(crate) schema_version: u32,
    pub(crate) data: Box<RawValue>,
    pub(crate) metadata: Metadata,
}

impl NewEvent {
    /// An untyped event from a type name and a JSON object.
    ///
    /// The store rejects `data` that is not a JSON object and type names that
    /// are empty, longer than 128 bytes or use characters other than ASCII
    /// letters, digits, `_`, `-`, `.` and `:`.
    pub fn new(event_type: impl Into<String>, data: &serde_json::Value) -> Self {
        let data =
            serde_json::value::to_raw_value(data).expect("a serde_json::Value always serializes");
        Self::from_raw(event_type, data)
    }

    /// An untyped event whose `data` is already serialized JSON.
    pub fn from_raw(event_type: impl Into<String>, data: Box<RawValue>) -> Self {
        Self {
            event_type: event_type.into(),
            schema_version: 1,
            data,
            metadata: Metadata::new(),
        }
    }

    /// A new event from a typed [`Event`] value.
    pub fn from_event<E: Event>(event: &E) -> Result<Self, serde_json::Error> {
        Ok(Self {
            event_type: event.event_type().to_owned(),
            schema_version: event.schema_version(),
            data: event.to_data()?,
            metadata: Metadata::new(),
        })
    }

    /// Sets the schema version (default 1).
    pub fn with_schema_version(mut self, schema_version: u32) -> Self {
        self.schema_version = schema_version;
        self
    }

    /// Replaces the metadata.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// The stored `type`.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The schema version.
    pub fn schema_version(&self) -> u32 {
        self.schema_version
    }

    /// The stored `data`.
    pub fn data(&self) -> &RawValue {
        &self.data
    }

    /// The metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Mutable access to the metadata, to add correlation or extra fields.
    pub fn metadata_mut(&mut self) -> &mut Metadata {
        &mut self.metadata
    }

    /// Turns this into the stored record at the given place in the log.
    pub(crate) fn record(
        self,
        stream_id: &str,
        version: u64,
        position: u64,
        recorded_at: DateTime<Utc>,
    ) -> RecordedEvent {
        RecordedEvent {
            position,
            stream_id: stream_id.to_owned(),
            version,
            event_type: self.event_type,
            schema_version: self.schema_version,
            data: self.data,
            metadata: self.metadata,
            recorded_at,
        }
    }
}

/// An event as stored and as sent over the wire.
///
/// ```json
/// { "position": 42, "stream_id": "account-0193…", "version": 3,
///   "type": "MoneyDeposited", "schema_version": 1, "data": { "amount": 100 },
///   "metadata": { "event_id": "…", "correlation_id": "…" },
///   "recorded_at": "2026-11-26T12:00:00.123Z" }
/// ```
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecordedEvent {
    /// Global position in the log: strictly increasing, gap-safe.
    #[schema(minimum = 1)]
    pub position: u64,
    /// The stream this event belongs to, `{category}-{id}`.
    pub stream_id: String,
    /// 1-based version of the event within its stream.
    #[schema(minimum = 1)]
    pub version: u64,
    /// The stored type name.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The schema version the data was written with.
    #[schema(minimum = 1)]
    pub schema_version: u32,
    /// The event's fields as a JSON object, kept as written.
    #[schema(value_type = Object)]
    pub data: Box<RawValue>,
    /// Who and what caused the event.
    pub metadata: Metadata,
    /// When the store committed the event (UTC, millisecond precision).
    #[serde(with = "millis")]
    pub recorded_at: DateTime<Utc>,
}

impl RecordedEvent {
    /// The stream category: the part of the stream id before its first `-`
    /// (the whole id when it has none).
    pub fn category(&self) -> &str {
        category_of(&self.stream_id)
    }

    /// The id of the aggregate the event belongs to: the part of the stream
    /// id after its first `-` (the whole id when it has none).
    pub fn aggregate_id(&self) -> &str {
        self.stream_id
            .split_once('-')
            .map_or(&self.stream_id, |(_, id)| id)
    }

    /// Decodes the stored data into a typed event.
    pub fn decode<E: Event>(&self) -> Result<E, DecodeError> {
        E::from_data(&self.event_type, self.schema_version, &self.data).map_err(|kind| {
            DecodeError {
                stream_id: self.stream_id.clone(),
                position: self.position,
                event_type: self.event_type.clone(),
                schema_version: self.schema_version,
                kind,
            }
        })
    }
}

/// `recorded` in `E`'s shape of today, when that differs from the stored
/// one: an event stored at an older version or under an older name goes
/// through its upcast chain and is written again with today's `type`,
/// `schema_version` and `data` (position, metadata and the rest as
/// stored). `None` when it is already in today's shape (found without
/// decoding) or `E` cannot decode it (a version newer than this code,
/// data that does not fit): readers of raw events then see it as stored.
pub(crate) fn in_todays_shape<E: Event>(recorded: &RecordedEvent) -> Option<RecordedEvent> {
    if E::current_version(&recorded.event_type) == Some(recorded.schema_version) {
        return None;
    }
    let event = recorded.decode::<E>().ok()?;
    Some(RecordedEvent {
        event_type: event.event_type().to_owned(),
        schema_version: event.schema_version(),
        data: event.to_data().ok()?,
        ..recorded.clone()
    })
}

/// [`in_todays_shape`] for each category whose event type the app knows,
/// for readers of raw events (the WebSocket and SSE streams).
#[derive(Default)]
pub(crate) struct TodaysShapes(HashMap<&'static str, ShapeFn>);

type ShapeFn = fn(&RecordedEvent) -> Option<RecordedEvent>;

impl TodaysShapes {
    /// Knows `category`'s events as `shape` makes them.
    pub(crate) fn insert(&mut self, category: &'static str, shape: ShapeFn) {
        self.0.insert(category, shape);
    }

    /// `recorded` in today's shape, when its category is known and the
    /// shape differs from the stored one.
    pub(crate) fn of(&self, recorded: &RecordedEvent) -> Option<RecordedEvent> {
        self.0.get(recorded.category())?(recorded)
    }
}

/// The category of a stream id: the part before its first `-`.
pub(crate) fn category_of(stream_id: &str) -> &str {
    stream_id
        .split_once('-')
        .map_or(stream_id, |(category, _)| category)
}

/// The current time at the millisecond precision every backend stores.
pub(crate) fn now_millis() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// Why a stored event could not be decoded into a typed event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The event type has no variant with this `type`.
    #[error("unknown event type")]
    UnknownType,
    /// The stored schema version has no decoder.
    #[error("schema version not supported (supported: {supported})")]
    UnsupportedSchemaVersion {
        /// The version the type currently decodes.
        supported: u32,
    },
    /// The event was written by a newer release than this one (a rolling
    /// deploy): its schema version is past the one this code knows.
    #[error("schema version newer than this release knows (current: {current})")]
    NewerSchemaVersion {
        /// The newest version this code decodes.
        current: u32,
    },
    /// An upcast step refused the data stored at an older version.
    #[error("upcasting from schema version {from} failed: {error}")]
    UpcastFailed {
        /// The version the failing step reads.
        from: u32,
        /// What the step said.
        #[source]
        error: UpcastError,
    },
    /// The data does not fit the variant's fields.
    #[error("invalid data: {0}")]
    InvalidData(#[source] serde_json::Error),
}

/// Why an upcast step could not turn the data of an older schema version
/// into the next one: returned by the functions named in
/// `#[event(upcast(N = function))]`.
///
/// ```
/// use allframe::UpcastError;
/// use serde_json::{Value, json};
///
/// /// Version 1 had no currency: every account was in euros.
/// fn opened_v1_to_v2(mut data: Value) -> Result<Value, UpcastError> {
///     let fields = data
///         .as_object_mut()
///         .ok_or_else(|| UpcastError::new("the data is not an object"))?;
///     fields.insert("currency".into(), json!("EUR"));
///     Ok(data)
/// }
/// # assert_eq!(opened_v1_to_v2(json!({})).unwrap(), json!({"currency": "EUR"}));
/// # assert!(opened_v1_to_v2(json!(1)).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UpcastError(String);

impl UpcastError {
    /// An error saying `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// What generated decoders call to walk an upcast chain.
#[doc(hidden)]
pub mod upcast {
    use serde::de::DeserializeOwned;
    use serde_json::Value;
    use serde_json::value::RawValue;

    use super::{DecodeErrorKind, UpcastError};

    /// The data as it stands in the chain: the result of the last JSON
    /// step, or the stored data.
    pub fn json(value: Option<Value>, data: &RawValue) -> Result<Value, DecodeErrorKind> {
        match value {
            Some(value) => Ok(value),
            None => serde_json::from_str(data.get()).map_err(DecodeErrorKind::InvalidData),
        }
    }

    /// Runs the JSON step from version `from`.
    pub fn step(
        from: u32,
        value: Value,
        step: fn(Value) -> Result<Value, UpcastError>,
    ) -> Result<Value, DecodeErrorKind> {
        step(value).map_err(|error| DecodeErrorKind::UpcastFailed { from, error })
    }

    /// Deserializes the data as it stands in the chain.
    pub fn decode<T: DeserializeOwned>(
        value: Option<Value>,
        data: &RawValue,
    ) -> Result<T, DecodeErrorKind> {
        match value {
            Some(value) => serde_json::from_value(value),
            None => serde_json::from_str(data.get()),
        }
        .map_err(DecodeErrorKind::InvalidData)
    }
}

/// A stored event that could not be decoded, with where it was found.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot decode event `{event_type}` (schema version {schema_version}) at position {position} in stream `{stream_id}`: {kind}"
)]
#[non_exhaustive]
pub struct DecodeError {
    /// The stream the event belongs to.
    pub stream_id: String,
    /// The event's global position.
    pub position: u64,
    /// The stored type name.
    pub event_type: String,
    /// The stored schema version.
    pub schema_version: u32,
    /// What went wrong.
    #[source]
    pub kind: DecodeErrorKind,
}

impl DecodeError {
    /// Whether the event was written by a newer release than this one: its
    /// schema version is past the one this code knows (a rolling deploy).
    pub fn is_newer_than_known(&self) -> bool {
        matches!(self.kind, DecodeErrorKind::NewerSchemaVersion { .. })
    }
}

/// `recorded_at` on the wire: RFC 3339 in UTC with exactly three fractional
/// digits, e.g. `2026-11-26T12:00:00.123Z`.
mod millis {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|at| at.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_is_the_prefix_before_the_first_dash() {
        assert_eq!(category_of("account-0193-abc"), "account");
        assert_eq!(category_of("singleton"), "singleton");
        assert_eq!(category_of("-x"), "");
    }

    #[test]
    fn recorded_event_has_the_wire_shape() {
        let at = DateTime::parse_from_rfc3339("2026-11-26T12:00:00.123Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut metadata = Metadata::new();
        metadata.correlation_id = Some("c-1".into());
        metadata.command = Some("deposit".into());
        metadata.extra.insert("tenant".into(), "acme".into());
        let event = NewEvent::new("MoneyDeposited", &serde_json::json!({"amount": 100}))
            .with_metadata(metadata.clone())
            .record("account-1", 3, 42, at);
        let wire = serde_json::to_value(&event).unwrap();
        assert_eq!(
            wire,
            serde_json::json!({
                "position": 42, "stream_id": "account-1", "version": 3,
                "type": "MoneyDeposited", "schema_version": 1,
                "data": {"amount": 100},
                "metadata": {"event_id": metadata.event_id.to_string(), "correlation_id": "c-1",
                             "command": "deposit", "tenant": "acme"},
                "recorded_at": "2026-11-26T12:00:00.123Z"
            })
        );
        let back: RecordedEvent = serde_json::from_str(&wire.to_string()).unwrap();
        assert_eq!(back.recorded_at, at);
        assert_eq!(back.metadata, metadata);
        assert_eq!(back.data.get(), r#"{"amount":100}"#);
    }
}
