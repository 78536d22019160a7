//! Checks of everything about a store call that does not need the
//! database, shared by every backend so they refuse exactly the same input.

use super::{Completion, idempotency};
use super::{MAX_EVENT_TYPE_LEN, MAX_EVENTS_PER_APPEND, MAX_STREAM_ID_LEN, Result, StoreError};
use crate::event::{Metadata, NewEvent};

/// Checks a stream id: 1..=255 bytes without control characters.
pub(crate) fn validate_stream_id(stream_id: &str) -> Result<()> {
    let reason = if stream_id.is_empty() {
        "must not be empty"
    } else if stream_id.len() > MAX_STREAM_ID_LEN {
        "must be at most 255 bytes"
    } else if stream_id.chars().any(char::is_control) {
        "must not contain control characters"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidStreamId {
        stream_id: stream_id.to_owned(),
        reason,
    })
}

/// Checks an event type name: 1..=128 ASCII letters, digits, `_-.:`.
pub(crate) fn validate_event_type(event_type: &str) -> Result<()> {
    let reason = if event_type.is_empty() {
        "must not be empty"
    } else if event_type.len() > MAX_EVENT_TYPE_LEN {
        "must be at most 128 bytes"
    } else if !event_type
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
    {
        "may only contain ASCII letters, digits, `_`, `-`, `.` and `:`"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidEventType {
        event_type: event_type.to_owned(),
        reason,
    })
}

/// Checks everything about an append that does not need the database.
pub(crate) fn validate_append(
    stream_id: &str,
    events: &[NewEvent],
    completions: &[Completion],
) -> Result<()> {
    validate_stream_id(stream_id)?;
    for completion in completions {
        idempotency::validate_key(completion.key())?;
    }
    if events.is_empty() || events.len() > MAX_EVENTS_PER_APPEND {
        return Err(StoreError::BatchSize(events.len()));
    }
    for event in events {
        validate_event_type(&event.event_type)?;
        let invalid = |reason: String| StoreError::InvalidEvent {
            event_type: event.event_type.clone(),
            reason,
        };
        if event.schema_version == 0 {
            return Err(invalid("schema_version must be at least 1".into()));
        }
        if !event.data.get().trim_start().starts_with('{') {
            return Err(invalid("data must be a JSON object".into()));
        }
        if has_nul(event.data.get()) || metadata_has_nul(&event.metadata) {
            // PostgreSQL text cannot hold U+0000; refusing it everywhere
            // keeps every backend storing exactly the same events.
            return Err(invalid("data and metadata must not contain U+0000".into()));
        }
        if let Some(key) = Metadata::RESERVED_KEYS
            .iter()
            .find(|key| event.metadata.extra.contains_key(**key))
        {
            return Err(invalid(format!(
                "metadata extra field `{key}` repeats a reserved name"
            )));
        }
    }
    Ok(())
}

/// Whether JSON text contains the escape `\u0000` (an escaped backslash
/// followed by `u0000` does not count).
fn has_nul(json: &str) -> bool {
    let bytes = json.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if bytes[i + 1..].starts_with(b"u0000") {
                return true;
            }
            // Skip the escaped character, so `\\\\u0000` is not a match.
            i += 2;
        } else {
            i += 1;
        }
    }
    json.contains('\0')
}

fn metadata_has_nul(metadata: &Metadata) -> bool {
    [
        &metadata.correlation_id,
        &metadata.causation_id,
        &metadata.command,
    ]
    .into_iter()
    .flatten()
    .any(|text| text.contains('\0'))
        || metadata
            .extra
            .iter()
            .any(|(key, value)| key.contains('\0') || has_nul(&value.to_string()))
}

/// Checks the arguments of a read.
pub(crate) fn validate_read(limit: usize) -> Result<()> {
    if limit == 0 {
        return Err(StoreError::ZeroLimit);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_and_type_names_are_checked() {
        assert!(validate_stream_id("account-1").is_ok());
        assert!(validate_stream_id("").is_err());
        assert!(validate_stream_id(&"a".repeat(256)).is_err());
        assert!(validate_stream_id("a\nb").is_err());
        assert!(validate_event_type("MoneyDeposited.v2:x_y-z").is_ok());
        assert!(validate_event_type("has space").is_err());
        assert!(validate_event_type(&"T".repeat(129)).is_err());
    }

    #[test]
    fn nul_escapes_are_found_but_escaped_backslashes_are_not() {
        assert!(has_nul(r#"{"a":"x\u0000"}"#));
        assert!(!has_nul(r#"{"a":"x\\u0000"}"#));
        assert!(has_nul(r#"{"a":"\\\u0000"}"#));
        assert!(!has_nul(r#"{"a":"\u0001"}"#));
    }
}
