//! Idempotency records: what lets a command carrying an `Idempotency-Key`
//! run once and have its first response replayed to every retry.
//!
//! A record holds the key, a fingerprint of the request that claimed it, a
//! state (in flight or completed), the token of the claim that holds it,
//! the response once completed, when it was created and until when the
//! claim's lease runs. The life of a key:
//!
//! 1. [`IdempotencyStore::claim_idempotency_key`]
//!    atomically decides between running the command
//!    ([`Claim::Acquired`], with a fresh token), replaying
//!    ([`Claim::Completed`]), refusing a concurrent duplicate
//!    ([`Claim::InFlight`]) and refusing a reused key ([`Claim::Mismatch`]).
//! 2. The command's events are appended with a [`Completion`] carrying the
//!    token ([`IdempotencyStore::append_with`]):
//!    the record turns completed in the same transaction as the events, so
//!    a crash can never leave events without their stored response or a
//!    response without its events. A command that decides on no events
//!    completes with
//!    [`complete_idempotency_key`](IdempotencyStore::complete_idempotency_key);
//!    a failed one gives the key back with
//!    [`release_idempotency_key`](IdempotencyStore::release_idempotency_key).
//! 3. [`purge_idempotency_keys`](IdempotencyStore::purge_idempotency_keys)
//!    deletes records older than the retention period; until then an
//!    expired record already counts as absent.
//!
//! # Rules every backend follows
//!
//! - A record older than the retention period (by `created_at`) is treated
//!   as absent: a claim replaces it with a fresh one.
//! - A completed record answers `Completed(response)` to the fingerprint
//!   that claimed it and `Mismatch` to any other. An in-flight record
//!   answers `Mismatch` to another fingerprint, `InFlight` while its lease
//!   runs, and is taken over (`Acquired` with a new token and a new lease,
//!   same `created_at`) once the lease has run out.
//! - Every `Acquired` carries a new random token, and only that token holds
//!   the key: a completion (in an append or on its own) is accepted only
//!   while the record is in flight with exactly its token. Otherwise — the
//!   lease ran out and another caller took the key over, the key was
//!   completed, released, purged or never claimed — it is refused with
//!   [`StoreError::IdempotencyKeyLost`] and nothing is written: neither the
//!   append's events nor the record. So of two callers that both acquired
//!   a key (one after the other's lease ran out) at most one commits its
//!   events, and a completed record is final. The token is checked before
//!   the append's expected version.
//! - A completion that belongs to no claim ([`Completion::unclaimed`])
//!   commits only if its key has no record at all, checked in the append's
//!   transaction, and creates the record completed; otherwise it is
//!   refused with [`StoreError::IdempotencyKeyLost`] and nothing is
//!   written. Of any number of such appends of one key, at most one
//!   commits.
//! - A release deletes the record only while it is in flight with the
//!   releaser's token: a caller whose lease ran out cannot drop the claim
//!   of the caller that took over, and a completed record is never deleted.
//! - Fingerprints and responses are stored as bytes, so any string comes
//!   back exactly as given (PostgreSQL `text` could not hold U+0000).
//! - A record without a fingerprint (written by a version of this crate
//!   that could complete a key nobody claimed) replays to any fingerprint.
//!
//! # Clocks
//!
//! Leases and ages are measured on the one clock everybody writing the
//! records shares: the database server's (`clock_timestamp()`) on
//! PostgreSQL, where nodes with skewed clocks must still agree when a lease
//! ran out; the host's clock on SQLite (one file, one host) and in memory.
//! Durations longer than [`MAX_DURATION`] count as [`MAX_DURATION`]. Leases
//! only decide when a claim may be taken over; safety does not depend on
//! them (a taken-over holder is refused by its token, however late it is).
//!
//! # Locking
//!
//! - Memory: the records live in the log behind its lock, so a claim is one
//!   critical section, and a completion's token is checked and the record
//!   written in the same critical section as its events. A journaled store
//!   checks under the read lock and writes under the write lock, with the
//!   journal write in between; every write (claims, completions, releases,
//!   purges) holds the journal's turn throughout, so nothing changes the
//!   records in between.
//! - SQLite: every idempotency operation goes through the store's writer
//!   task, which owns the only writing connection, in a `BEGIN IMMEDIATE`
//!   transaction (operations queued together share one); SQLite's write
//!   lock also orders them against other processes on the same file.
//!   Completions are checked and written by the group-commit transaction of
//!   the append, which reads the tokens of its keys before inserting any
//!   event.
//! - PostgreSQL: a claim runs on the pool in its own transaction: `INSERT …
//!   ON CONFLICT DO NOTHING` creates a new record, otherwise `SELECT … FOR
//!   UPDATE` locks the existing one while it is decided, so concurrent
//!   claims on any node agree. The group-commit transaction of an append
//!   locks the records of its completions (`SELECT … FOR UPDATE`) and
//!   checks their tokens before inserting any event, so no claim can take a
//!   key over between the check and the commit. A key nobody claimed has
//!   no record to lock: its completed record is inserted `ON CONFLICT DO
//!   NOTHING`, and if a claim inserted one meanwhile, the transaction is
//!   rolled back and the batch planned again, which refuses that append. Completing without events
//!   and releasing are single conditional statements (`… WHERE token = …
//!   AND state = 'in_flight'`).

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) use sql::SqlRecords;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::{Appended, ExpectedVersion, MAX_IDEMPOTENCY_KEY_LEN, Result, StoreError};
use crate::event::NewEvent;

/// A new random claim token (a UUID v7 in its hyphenated form).
pub(crate) fn new_token() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Leases and retention periods are capped at this (about 1,000 years), so
/// time arithmetic never overflows in any backend.
pub const MAX_DURATION: Duration = Duration::from_secs(1_000 * 31_556_952);

/// The outcome of claiming an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Claim {
    /// The key was new (or its record expired, or a previous holder's lease
    /// ran out): the caller holds it now and should run the command,
    /// completing or releasing the key with this token. The token holds the
    /// key until the command completes it, the caller releases it, or
    /// another caller takes it over after the lease ran out.
    Acquired {
        /// Identifies this claim; see [`Completion::new`].
        token: String,
    },
    /// The same key with the same fingerprint completed before (within the
    /// retention period): the stored response.
    Completed(String),
    /// Another caller holds the key and its lease has not run out.
    InFlight,
    /// The key was used (within the retention period) with a different
    /// fingerprint.
    Mismatch,
}

impl Claim {
    /// The token of an [`Acquired`](Claim::Acquired) claim.
    pub fn token(&self) -> Option<&str> {
        match self {
            Self::Acquired { token } => Some(token),
            _ => None,
        }
    }
}

/// Marks an idempotency key completed, written in the same transaction as
/// an append, with a response built from the append's outcome.
///
/// A completion either belongs to a claim ([`Completion::new`]: the append
/// is refused unless the key is still in flight with the claim's token) or
/// to none ([`Completion::unclaimed`]: the append is refused if the key has
/// any record). Refused appends fail with
/// [`StoreError::IdempotencyKeyLost`] and write nothing.
///
/// The response builder may run more than once (a SQL backend retries the
/// appends of a failed group-commit transaction one by one, and the retried
/// append gets new positions); only the response of the append that
/// commits is stored. It runs inside the append's transaction (with the
/// store's write lock held), so it should only format what it is given. If
/// it panics, its append fails with a backend error and nothing of it is
/// stored.
pub struct Completion {
    key: String,
    holder: Holder,
    respond: Box<dyn Fn(&Appended) -> String + Send + Sync>,
}

/// Who a [`Completion`] completes a key for.
#[derive(Debug)]
pub(crate) enum Holder {
    /// The claim that returned this token.
    Claim(String),
    /// Nobody: the key must have no record; this is the request's
    /// fingerprint.
    Nobody(String),
}

impl Completion {
    /// A completion of `key`, held by the claim that returned `token`
    /// ([`Claim::Acquired`]), whose response `respond` builds from the
    /// committed append.
    pub fn new(
        key: impl Into<String>,
        token: impl Into<String>,
        respond: impl Fn(&Appended) -> String + Send + Sync + 'static,
    ) -> Self {
        Self {
            key: key.into(),
            holder: Holder::Claim(token.into()),
            respond: Box::new(respond),
        }
    }

    /// A completion of `key` that nobody claimed: the append commits only
    /// if the key has no record at all (none in flight, completed, or
    /// expired but not yet purged), and then creates it, completed, for a
    /// request with this `fingerprint`, in the same transaction. It saves
    /// the claim's own write where running the command twice concurrently
    /// is harmless and only its effect must happen once: of two appends
    /// completing the same key this way, at most one commits. A refused
    /// caller claims the key to learn its fate (a completed key replays).
    pub fn unclaimed(
        key: impl Into<String>,
        fingerprint: impl Into<String>,
        respond: impl Fn(&Appended) -> String + Send + Sync + 'static,
    ) -> Self {
        Self {
            key: key.into(),
            holder: Holder::Nobody(fingerprint.into()),
            respond: Box::new(respond),
        }
    }

    /// The idempotency key this completes.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The token of the claim this completion belongs to, or `None` when
    /// it belongs to no claim ([`Completion::unclaimed`]).
    pub fn token(&self) -> Option<&str> {
        match &self.holder {
            Holder::Claim(token) => Some(token),
            Holder::Nobody(_) => None,
        }
    }

    /// The fingerprint the record is created with, for a completion that
    /// belongs to no claim ([`Completion::unclaimed`]).
    pub fn fingerprint(&self) -> Option<&str> {
        match &self.holder {
            Holder::Claim(_) => None,
            Holder::Nobody(fingerprint) => Some(fingerprint),
        }
    }

    /// Who it completes the key for.
    pub(crate) fn holder(&self) -> &Holder {
        &self.holder
    }

    /// Whether this completion may commit, given the key's record as the
    /// append's transaction reads it: `None` when there is none, else the
    /// token it is in flight with (`Some(None)` when it is not in flight).
    pub(crate) fn holds(&self, record: Option<Option<&str>>) -> bool {
        match (&self.holder, record) {
            (Holder::Claim(token), Some(Some(held))) => token == held,
            (Holder::Claim(_), _) => false,
            (Holder::Nobody(_), record) => record.is_none(),
        }
    }

    /// The error refusing this completion: its claim no longer holds the key.
    pub(crate) fn lost(&self) -> StoreError {
        StoreError::IdempotencyKeyLost {
            key: self.key.clone(),
        }
    }

    /// Builds the response for `appended`; a panicking builder becomes a
    /// backend error instead of unwinding through the store.
    pub(crate) fn respond(&self, appended: &Appended) -> Result<String> {
        catch_unwind(AssertUnwindSafe(|| (self.respond)(appended))).map_err(|_| {
            tracing::error!(key = %self.key, "idempotency response builder panicked");
            StoreError::Backend(
                format!(
                    "the response builder for idempotency key {:?} panicked",
                    self.key
                )
                .into(),
            )
        })
    }
}

impl std::fmt::Debug for Completion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completion")
            .field("key", &self.key)
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

/// The refusal of an append whose `completions` cannot all commit, given
/// the `records` of their keys as its transaction reads them (key → the
/// token it is in flight with; keys without a record are absent): the
/// first completion that does not hold its key, or that repeats a key of
/// the same append.
pub(crate) fn refused(
    completions: &[Completion],
    records: &std::collections::HashMap<String, Option<String>>,
) -> Option<StoreError> {
    let mut seen = std::collections::HashSet::new();
    completions
        .iter()
        .find(|completion| {
            !seen.insert(completion.key())
                || !completion.holds(records.get(completion.key()).map(|token| token.as_deref()))
        })
        .map(Completion::lost)
}

/// Checks an idempotency key: 1..=255 bytes without control characters.
pub(crate) fn validate_key(key: &str) -> Result<()> {
    let reason = if key.is_empty() {
        "must not be empty"
    } else if key.len() > MAX_IDEMPOTENCY_KEY_LEN {
        "must be at most 255 bytes"
    } else if key.chars().any(char::is_control) {
        "must not contain control characters"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidIdempotencyKey {
        key: key.to_owned(),
        reason,
    })
}

/// A duration in whole milliseconds, capped at [`MAX_DURATION`].
pub(crate) fn millis(duration: Duration) -> i64 {
    duration.min(MAX_DURATION).as_millis() as i64
}

/// A duration in seconds, capped at [`MAX_DURATION`] (PostgreSQL's
/// `make_interval(secs => …)`).
#[cfg(feature = "postgres")]
pub(crate) fn seconds(duration: Duration) -> f64 {
    duration.min(MAX_DURATION).as_secs_f64()
}

/// The host clock in Unix milliseconds (memory and SQLite records).
pub(crate) fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// An existing record as a claim sees it.
pub(crate) struct Seen {
    /// Whether the record's fingerprint is the claimant's (or it has none).
    pub(crate) same_fingerprint: bool,
    /// The response, when the record is completed.
    pub(crate) response: Option<String>,
    /// Whether the record is older than the retention period.
    pub(crate) expired: bool,
    /// Whether an in-flight record's lease has run out.
    pub(crate) lease_over: bool,
}

/// What a claim does to the record.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Write a fresh in-flight record (new or replacing an expired one)
    /// with a new token.
    Take,
    /// Keep the in-flight record and give it a new token and a new lease.
    TakeOver,
    /// Leave the record as it is and answer.
    Answer(Claim),
}

/// The claim rules of the module docs, shared by every backend.
pub(crate) fn decide(seen: Option<Seen>) -> Decision {
    let Some(seen) = seen else {
        return Decision::Take;
    };
    if seen.expired {
        return Decision::Take;
    }
    match seen.response {
        Some(_) if !seen.same_fingerprint => Decision::Answer(Claim::Mismatch),
        Some(response) => Decision::Answer(Claim::Completed(response)),
        None if !seen.same_fingerprint => Decision::Answer(Claim::Mismatch),
        None if !seen.lease_over => Decision::Answer(Claim::InFlight),
        None => Decision::TakeOver,
    }
}

impl Decision {
    /// The answer to the claim; `token` is the one written when it took
    /// the key.
    pub(crate) fn into_claim(self, token: String) -> Claim {
        match self {
            Decision::Take | Decision::TakeOver => Claim::Acquired { token },
            Decision::Answer(claim) => claim,
        }
    }
}

/// Turns stored response bytes back into the string that was stored.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn response_text(key: &str, bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|_| {
        StoreError::Backend(
            format!("stored response of idempotency key {key:?} is not UTF-8").into(),
        )
    })
}

/// The idempotency records a store keeps beside its log, in the same
/// database, so a command's response commits with its events
/// ([`append_with`](Self::append_with)). A capability: a store offers it
/// through [`EventStore::idempotency`](crate::EventStore::idempotency).
pub trait IdempotencyStore: Send + Sync {
    /// [`EventStore::append`](crate::EventStore::append), and marks the
    /// idempotency key of each of `completions` completed with the response
    /// it builds from the append, in the same transaction as the events:
    /// all are stored or none is. Several commands decided together can so
    /// commit their events in one append, each completing its own key (each
    /// response builder picks its command's events out of the append).
    /// Unless every completion holds its key (its claim's token still holds
    /// it in flight, or, for [`Completion::unclaimed`], the key has no
    /// record) and no key is given twice, the append is refused with
    /// [`StoreError::IdempotencyKeyLost`] (checked before the expected
    /// version). A refused append (lost key,
    /// wrong expected version, invalid input) writes no event and leaves
    /// the idempotency record untouched.
    fn append_with<'a>(
        &'a self,
        stream_id: &'a str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        completions: Vec<Completion>,
    ) -> BoxFuture<'a, Result<Appended>>;

    /// Claims an idempotency key for a request with this `fingerprint`,
    /// atomically: of any number of concurrent claims of a new key exactly
    /// one is [`Claim::Acquired`], with a fresh token that completions and
    /// releases of this claim must carry. The claim cannot be taken over
    /// for `lease`; records older than `retention` count as absent. See
    /// the module docs of [`crate::store`] for the rules.
    fn claim_idempotency_key<'a>(
        &'a self,
        key: &'a str,
        fingerprint: &'a str,
        lease: Duration,
        retention: Duration,
    ) -> BoxFuture<'a, Result<Claim>>;

    /// Marks a key completed with `response`, for a command that decided on
    /// no events (others complete through [`append_with`](Self::append_with)).
    /// Refused with [`StoreError::IdempotencyKeyLost`] (nothing written)
    /// unless the key is in flight with `token`: a completed record keeps
    /// its first response, and a key nobody claimed stays unclaimed.
    fn complete_idempotency_key<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
        response: String,
    ) -> BoxFuture<'a, Result<()>>;

    /// Gives up an in-flight claim (after a failed command) so the key can
    /// be claimed again at once. Only the claim that returned `token` is
    /// deleted: if another caller took the key over, or it is completed or
    /// unknown, nothing happens (and it is not an error).
    fn release_idempotency_key<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, Result<()>>;

    /// Deletes the idempotency records created more than `retention` ago
    /// and returns how many were deleted.
    fn purge_idempotency_keys(&self, retention: Duration) -> BoxFuture<'_, Result<u64>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(same: bool, response: Option<&str>, expired: bool, lease_over: bool) -> Option<Seen> {
        Some(Seen {
            same_fingerprint: same,
            response: response.map(str::to_owned),
            expired,
            lease_over,
        })
    }

    #[test]
    fn claim_rules() {
        assert_eq!(decide(None), Decision::Take);
        assert_eq!(decide(seen(false, Some("r"), true, true)), Decision::Take);
        assert_eq!(
            decide(seen(true, Some("r"), false, true)),
            Decision::Answer(Claim::Completed("r".into()))
        );
        assert_eq!(
            decide(seen(false, Some("r"), false, false)),
            Decision::Answer(Claim::Mismatch)
        );
        assert_eq!(
            decide(seen(false, None, false, true)),
            Decision::Answer(Claim::Mismatch)
        );
        assert_eq!(
            decide(seen(true, None, false, false)),
            Decision::Answer(Claim::InFlight)
        );
        assert_eq!(decide(seen(true, None, false, true)), Decision::TakeOver);
    }

    #[test]
    fn keys_are_checked() {
        assert!(validate_key("k").is_ok());
        assert!(validate_key(&"k".repeat(255)).is_ok());
        for bad in ["", "a\nb", "nul\0", &"k".repeat(256)] {
            let error = validate_key(bad).unwrap_err();
            assert!(error.is_invalid_input(), "{error:?}");
        }
    }

    #[test]
    fn durations_are_capped() {
        assert_eq!(millis(Duration::from_millis(1_500)), 1_500);
        assert_eq!(millis(Duration::MAX), millis(MAX_DURATION));
    }

    #[test]
    fn a_panicking_builder_is_an_error() {
        let appended = Appended {
            stream_id: "s".into(),
            version: 1,
            position: 1,
            events: Vec::new(),
        };
        let ok = Completion::new("k", "t", |a| format!("v{}", a.version));
        assert_eq!(ok.respond(&appended).unwrap(), "v1");
        assert_eq!(ok.respond(&appended).unwrap(), "v1", "builders may rerun");
        let bad = Completion::new("k", "t", |_| panic!("boom"));
        assert!(matches!(
            bad.respond(&appended),
            Err(StoreError::Backend(_))
        ));
        assert!(matches!(
            ok.lost(),
            StoreError::IdempotencyKeyLost { key } if key == "k"
        ));
        assert!(!ok.lost().is_invalid_input() && !ok.lost().is_conflict());
    }

    #[test]
    fn tokens_are_fresh() {
        let claim = Decision::Take.into_claim(new_token());
        let again = Decision::TakeOver.into_claim(new_token());
        assert!(claim.token().is_some() && again.token().is_some());
        assert_ne!(claim.token(), again.token());
        assert_eq!(
            Decision::Answer(Claim::InFlight).into_claim(new_token()),
            Claim::InFlight
        );
        assert_eq!(Claim::InFlight.token(), None);
    }
}
