//! What can go wrong when starting, managing or reading projections.

use crate::store::StoreError;

/// An error of the projection registry or its read API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// No projection has this name.
    #[error("there is no projection named `{0}`")]
    Unknown(String),
    /// Two row types registered one name.
    #[error("projection `{name}` is defined twice: by `{first}` and by `{second}`; rename one")]
    Duplicate {
        /// The name.
        name: &'static str,
        /// One row type.
        first: &'static str,
        /// The other row type.
        second: &'static str,
    },
    /// A list filtered by a field that is not indexed.
    #[error("projection `{projection}` is not indexed by `{field}` (indexed: {indexed})")]
    NotIndexed {
        /// The projection.
        projection: String,
        /// The field asked for.
        field: String,
        /// The indexed fields, comma-separated.
        indexed: String,
    },
    /// A list limit of 0 or above [`MAX_LIMIT`](super::MAX_LIMIT).
    #[error("limit must be between 1 and {max}, got {got}")]
    InvalidLimit {
        /// The limit asked for.
        got: usize,
        /// The largest allowed.
        max: usize,
    },
    /// A cursor that this API did not hand out.
    #[error("invalid cursor")]
    InvalidCursor,
    /// A row key, a list filter's value or the key a cursor continues
    /// after holds a control character (U+0000–U+001F, U+007F–U+009F):
    /// keys are text without them, and some databases refuse the bytes.
    #[error(
        "the {what} contains the control character {found:?}; keys and filter values are text without control characters"
    )]
    ControlCharacter {
        /// What held it: `key`, `value of filter \`{field}\`` or `cursor`.
        what: String,
        /// The first control character found.
        found: char,
    },
    /// `wait_for` ran out of time before the checkpoint reached the
    /// position.
    #[error("projection `{projection}` reached position {checkpoint}, not {wanted}, in time")]
    NotReached {
        /// The projection.
        projection: String,
        /// Its checkpoint when the wait ended.
        checkpoint: u64,
        /// The position waited for.
        wanted: u64,
    },
    /// `wait_for` was asked for a position past the log's head: no command
    /// has produced it, so no wait can reach it.
    #[error("position {wanted} is beyond the event log's head ({head})")]
    BeyondHead {
        /// The position waited for.
        wanted: u64,
        /// The log's head when asked.
        head: u64,
    },
    /// `wait_for` cannot reach the position: the projection failed and
    /// stopped before it (see `Projections::status`; rebuild or restart it).
    #[error("projection `{projection}` failed at position {position}: {reason}")]
    Failed {
        /// The projection.
        projection: String,
        /// The position of the event it failed on.
        position: u64,
        /// Why it failed, in short.
        reason: String,
    },
    /// `wait_for` cannot reach the position yet: the projection is paused
    /// at an event written by a newer release than this one (a rolling
    /// deploy); a node running that release will carry on.
    #[error(
        "projection `{projection}` waits for an upgrade: the event at position {position} was written by a newer release"
    )]
    WaitingForUpgrade {
        /// The projection.
        projection: String,
        /// The position of the event it paused at.
        position: u64,
    },
    /// A stored row does not deserialize into the row type (it changed
    /// since the row was written: rebuild the projection).
    #[error("a stored row of projection `{projection}` does not fit its type: {source}")]
    Row {
        /// The projection.
        projection: String,
        /// Why it did not deserialize.
        #[source]
        source: serde_json::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ProjectionError {
    /// Whether the caller asked for something invalid or unknown (as
    /// opposed to the system failing or being slow).
    pub fn is_bad_request(&self) -> bool {
        matches!(
            self,
            Self::NotIndexed { .. }
                | Self::InvalidLimit { .. }
                | Self::InvalidCursor
                | Self::ControlCharacter { .. }
                | Self::BeyondHead { .. }
        )
    }
}
