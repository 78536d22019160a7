//! Listing rows: key-ordered pages with opaque cursors.
//!
//! A cursor is the last key of a page, encoded; the next page starts
//! strictly after it. Keys never change, so while rows are written a row
//! that exists throughout is listed exactly once, and no row is ever listed
//! twice, even across a rebuild's swap.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::ProjectionError;

/// The page size when none is asked for.
pub const DEFAULT_LIMIT: usize = 50;
/// The largest page size.
pub const MAX_LIMIT: usize = 1_000;

/// Which page of rows to list.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListQuery {
    /// Rows per page, 1 to [`MAX_LIMIT`].
    pub limit: usize,
    /// Where the previous page ended ([`Page::next_cursor`]).
    pub cursor: Option<String>,
    /// Only rows whose indexed field (first) has this value (second).
    pub filter: Option<(String, String)>,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            limit: DEFAULT_LIMIT,
            cursor: None,
            filter: None,
        }
    }
}

impl ListQuery {
    /// The first page of [`DEFAULT_LIMIT`] rows.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the page size.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Continues after a previous page.
    pub fn cursor(mut self, cursor: Option<String>) -> Self {
        self.cursor = cursor;
        self
    }

    /// Only rows whose indexed `field` has `value` (as
    /// [`index_value`](super::index_value) renders it).
    pub fn filter(mut self, field: impl Into<String>, value: impl Into<String>) -> Self {
        self.filter = Some((field.into(), value.into()));
        self
    }
}

/// One page of rows.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Page<T = Box<RawValue>> {
    /// The rows, in key order.
    pub items: Vec<T>,
    /// The cursor of the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    pub(super) fn new(items: Vec<T>, next_cursor: Option<String>) -> Self {
        Self { items, next_cursor }
    }
}

/// Encodes a key as a cursor: `k` and the key's bytes in hex, so it is
/// safe in a URL and says nothing a client should rely on.
pub(super) fn encode_cursor(key: &str) -> String {
    let mut cursor = String::with_capacity(1 + key.len() * 2);
    cursor.push('k');
    for byte in key.bytes() {
        cursor.push_str(&format!("{byte:02x}"));
    }
    cursor
}

/// `text` (a key, or a filter's value: `what`) when it holds no control
/// character, which every backend refuses the same way.
pub(super) fn plain_text(
    what: impl FnOnce() -> String,
    text: &str,
) -> Result<&str, ProjectionError> {
    match text.chars().find(|c| c.is_control()) {
        None => Ok(text),
        Some(found) => Err(ProjectionError::ControlCharacter {
            what: what(),
            found,
        }),
    }
}

/// The key a cursor continues after.
pub(super) fn decode_cursor(cursor: &str) -> Result<String, ProjectionError> {
    let hex = cursor
        .strip_prefix('k')
        .filter(|hex| hex.len() % 2 == 0 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or(ProjectionError::InvalidCursor)?;
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| ProjectionError::InvalidCursor)?;
    let key = String::from_utf8(bytes).map_err(|_| ProjectionError::InvalidCursor)?;
    plain_text(|| "cursor".to_owned(), &key)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_forgeries() {
        for key in ["", "a", "account-0193", "ünïcode/&?="] {
            assert_eq!(decode_cursor(&encode_cursor(key)).unwrap(), key);
        }
        for bad in ["", "x61", "k6", "kzz", "kff"] {
            assert!(
                matches!(decode_cursor(bad), Err(ProjectionError::InvalidCursor)),
                "{bad}"
            );
        }
        // Well formed, but the key holds a NUL or a C1 control (U+0085).
        for (cursor, found) in [("k610062", '\0'), ("kc285", '\u{85}')] {
            assert!(
                matches!(
                    decode_cursor(cursor),
                    Err(ProjectionError::ControlCharacter { found: f, .. }) if f == found
                ),
                "{cursor}"
            );
        }
    }
}
