//! The query parameters shared by `GET /events/ws` and `GET /events/sse`:
//! `after`, `stream`, `category` and `type` (repeatable, or
//! comma-separated), checked before a connection is accepted.

use crate::http::kinds;
use crate::http::problem::{HttpError, ProblemKind};
use crate::store::{EventFilter, MAX_STREAM_ID_LEN, validate_event_type, validate_stream_id};

/// The parameters with what they mean, in documentation order.
pub(crate) const PARAMETERS: [(&str, &str); 5] = [
    (
        "after",
        "Events with a greater position, first from the store, then live; absent: only events committed after the connection opens.",
    ),
    ("stream", "Only the events of this stream."),
    (
        "category",
        "Only the events of streams in this category (`{category}-…`).",
    ),
    (
        "type",
        "Only events of these types: repeat it, or separate types with commas.",
    ),
    (
        "access_token",
        "The bearer token, where an authenticator reads it here: for clients that cannot set `Authorization` (browsers' WebSocket and EventSource).",
    ),
];
/// Most event types one `type` filter may list.
pub(crate) const MAX_TYPES: usize = 64;

/// What a client asks an event stream for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StreamParams {
    /// `after`: events with a greater position, first from the store; absent:
    /// only events committed after the connection opens.
    pub(crate) after: Option<u64>,
    /// `stream`: only this stream's events.
    pub(crate) stream: Option<String>,
    /// `category`: only events of streams `{category}-…`.
    pub(crate) category: Option<String>,
    /// `type`: only events of these types (empty: any).
    pub(crate) types: Vec<String>,
}

/// Why an event stream request was refused before it was accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ParamError {
    /// The query string is not `name=value` pairs.
    #[error("the query string is malformed: {0}")]
    Malformed(String),
    /// A name outside [`PARAMETERS`].
    #[error("unknown parameter `{0}`; the parameters are {names}", names = parameter_names())]
    Unknown(String),
    /// `after`, `stream` or `category` given twice.
    #[error("`{0}` may be given only once")]
    Repeated(&'static str),
    /// `after` is not a position.
    #[error("`after` must be a position, a whole number from 0 (got `{0}`)")]
    After(String),
    /// `stream` is not a valid stream id.
    #[error("`stream` {0}")]
    Stream(&'static str),
    /// `category` cannot name a category.
    #[error("`category` {0}")]
    Category(&'static str),
    /// One of the `type` values is not an event type name.
    #[error("`type` value `{value}` {reason}")]
    Type {
        /// The rejected name.
        value: String,
        /// Why.
        reason: &'static str,
    },
    /// `type` lists more than [`MAX_TYPES`] names.
    #[error("`type` may list at most {MAX_TYPES} event types")]
    TooManyTypes,
    /// The SSE `Last-Event-ID` header is not a position.
    #[error("`Last-Event-ID` must be a position, a whole number from 0")]
    LastEventId,
}

impl HttpError for ParamError {
    fn kind(&self) -> ProblemKind {
        match self {
            ParamError::LastEventId => kinds::INVALID_HEADER,
            _ => kinds::INVALID_PARAMETER,
        }
    }
}

impl StreamParams {
    /// Parses the decoded `name=value` pairs of a query string.
    pub(crate) fn parse(pairs: &[(String, String)]) -> Result<Self, ParamError> {
        let mut params = Self::default();
        for (name, value) in pairs {
            match name.as_str() {
                "after" => {
                    let after = value
                        .parse::<u64>()
                        .map_err(|_| ParamError::After(value.clone()))?;
                    once(&mut params.after, after, "after")?;
                }
                "stream" => {
                    validate_stream_id(value).map_err(|error| match error {
                        crate::StoreError::InvalidStreamId { reason, .. } => {
                            ParamError::Stream(reason)
                        }
                        _ => ParamError::Stream("is not a stream id"),
                    })?;
                    once(&mut params.stream, value.clone(), "stream")?;
                }
                "category" => {
                    check_category(value)?;
                    once(&mut params.category, value.clone(), "category")?;
                }
                "type" => {
                    for name in value.split(',') {
                        validate_event_type(name).map_err(|error| ParamError::Type {
                            value: name.to_owned(),
                            reason: match error {
                                crate::StoreError::InvalidEventType { reason, .. } => reason,
                                _ => "is not an event type",
                            },
                        })?;
                        if !params.types.iter().any(|known| known == name) {
                            params.types.push(name.to_owned());
                        }
                    }
                    if params.types.len() > MAX_TYPES {
                        return Err(ParamError::TooManyTypes);
                    }
                }
                // The authenticator's (see `auth`), not a filter.
                "access_token" => {}
                other => return Err(ParamError::Unknown(other.to_owned())),
            }
        }
        Ok(params)
    }

    /// The store filter these parameters select.
    pub(crate) fn filter(&self) -> EventFilter {
        let mut filter = EventFilter::all().event_types(self.types.iter().cloned());
        filter.stream_id.clone_from(&self.stream);
        filter.category.clone_from(&self.category);
        filter
    }
}

/// Parses an SSE `Last-Event-ID` header value.
pub(crate) fn last_event_id(value: &[u8]) -> Result<u64, ParamError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .ok_or(ParamError::LastEventId)
}

fn parameter_names() -> String {
    let names: Vec<String> = PARAMETERS
        .iter()
        .map(|(name, _)| format!("`{name}`"))
        .collect();
    names.join(", ")
}

fn once<T>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), ParamError> {
    if slot.replace(value).is_some() {
        return Err(ParamError::Repeated(name));
    }
    Ok(())
}

/// A category is what a stream id holds before its first `-`.
fn check_category(category: &str) -> Result<(), ParamError> {
    let reason = if category.is_empty() {
        "must not be empty"
    } else if category.len() > MAX_STREAM_ID_LEN {
        "must be at most 255 bytes"
    } else if category.contains('-') {
        "must not contain `-`: it is the part of a stream id before the first `-`"
    } else if category.chars().any(char::is_control) {
        "must not contain control characters"
    } else {
        return Ok(());
    };
    Err(ParamError::Category(reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &[(&str, &str)]) -> Result<StreamParams, ParamError> {
        let pairs: Vec<(String, String)> = query
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        StreamParams::parse(&pairs)
    }

    #[test]
    fn types_repeat_and_split_on_commas() {
        let params = parse(&[
            ("after", "7"),
            ("category", "account"),
            ("type", "A,B"),
            ("type", "C"),
            ("type", "A"),
        ])
        .unwrap();
        assert_eq!(params.after, Some(7));
        assert_eq!(params.types, ["A", "B", "C"]);
        let filter = params.filter();
        assert_eq!(filter.category.as_deref(), Some("account"));
        assert_eq!(filter.event_types, ["A", "B", "C"]);
        assert_eq!(parse(&[]).unwrap().filter(), EventFilter::all());
    }

    #[test]
    fn bad_parameters_are_named() {
        let cases: [(&[(&str, &str)], ParamError); 8] = [
            (&[("after", "-1")], ParamError::After("-1".into())),
            (&[("after", "")], ParamError::After(String::new())),
            (
                &[("after", "1"), ("after", "2")],
                ParamError::Repeated("after"),
            ),
            (&[("stream", "")], ParamError::Stream("must not be empty")),
            (
                &[("category", "a-b")],
                ParamError::Category(
                    "must not contain `-`: it is the part of a stream id before the first `-`",
                ),
            ),
            (
                &[("type", "A,,B")],
                ParamError::Type {
                    value: String::new(),
                    reason: "must not be empty",
                },
            ),
            (&[("streams", "x")], ParamError::Unknown("streams".into())),
            (
                &[("category", "a"), ("category", "b")],
                ParamError::Repeated("category"),
            ),
        ];
        for (query, expected) in cases {
            assert_eq!(parse(query).unwrap_err(), expected, "{query:?}");
        }
        let many = (0..=MAX_TYPES).map(|n| format!("T{n}")).collect::<Vec<_>>();
        assert_eq!(
            parse(&[("type", &many.join(","))]).unwrap_err(),
            ParamError::TooManyTypes
        );
        let problem = crate::http::Problem::from(ParamError::After("x".into()));
        assert_eq!(
            (problem.status, problem.problem_type.as_str()),
            (400, "/problems/invalid-parameter")
        );
    }

    #[test]
    fn last_event_id_is_a_position() {
        assert_eq!(last_event_id(b"42"), Ok(42));
        assert_eq!(last_event_id(b"x"), Err(ParamError::LastEventId));
        assert_eq!(last_event_id(b"\xff"), Err(ParamError::LastEventId));
    }
}
