//! Idempotency keys in dispatch: the key a command holds, claiming it
//! again when the store says it was lost, fingerprints, and the stored
//! response that a repeat replays.

use crate::auth::Principal;
use std::ops::Range;
use std::time::Instant;

use super::dispatch::Dispatcher;
use super::{Command, CommandError, CommandOutcome, IfMatch};
use crate::store::log::records;
use crate::store::{Appended, Claim, Completion, StoreError};

/// The idempotency key a dispatch holds: what its completion and release
/// carry, and what it needs to claim the key again.
pub(super) struct Hold {
    /// The key as recorded ([`scoped_key`]).
    pub(super) key: String,
    /// The key as the caller sent it, for errors.
    pub(super) given: String,
    pub(super) fingerprint: String,
    /// The token of the claim that holds the key; `None` when it was not
    /// claimed ([`DispatchOptions::unclaimed_idempotency`](super::DispatchOptions::unclaimed_idempotency)):
    /// the append then creates its record.
    pub(super) token: Option<String>,
    /// When the key was claimed, to tell whether the lease may have run out.
    pub(super) claimed_at: Instant,
    /// Whether the key was already claimed again after it was lost: a
    /// dispatch does that at most once.
    pub(super) reclaimed: bool,
}

/// What became of a key whose completion was refused, by claiming it again.
pub(super) enum Reclaimed {
    /// The key completed (the caller that took it over committed): its
    /// stored outcome.
    Replay(CommandOutcome),
    /// The key was free (the caller that took it over gave up): this
    /// dispatch holds it again, under the new token in its [`Hold`].
    Acquired,
}

/// What a completion of a held key needs: a copy of the [`Hold`]'s key and
/// holder, for a command that is appended by a round.
#[derive(Clone)]
pub(super) struct Keyed {
    key: String,
    token: Option<String>,
    fingerprint: String,
}

impl Keyed {
    /// The key as recorded.
    pub(super) fn key(&self) -> &str {
        &self.key
    }

    /// A completion of the key, whose stored response is the outcome of
    /// the command whose events are `part` of the append.
    pub(super) fn completion(&self, aggregate_id: &str, part: Range<usize>) -> Completion {
        let aggregate_id = aggregate_id.to_owned();
        let respond = move |appended: &Appended| {
            response(&CommandOutcome::part(appended, &aggregate_id, part.clone()))
        };
        match &self.token {
            Some(token) => Completion::new(self.key.clone(), token.clone(), respond),
            None => Completion::unclaimed(self.key.clone(), self.fingerprint.clone(), respond),
        }
    }
}

impl Hold {
    /// The key and holder as a completion needs them.
    pub(super) fn keyed(&self) -> Keyed {
        Keyed {
            key: self.key.clone(),
            token: self.token.clone(),
            fingerprint: self.fingerprint.clone(),
        }
    }

    /// A completion of this hold's key by an append of the command's
    /// `events` alone, with the response stored for replays.
    pub(super) fn completion(&self, aggregate_id: &str, events: usize) -> Completion {
        self.keyed().completion(aggregate_id, 0..events)
    }

    /// Claims the key again after a completion was refused with `lost`
    /// ([`StoreError::IdempotencyKeyLost`]): its lease ran out and another
    /// dispatch took it over, or (unclaimed) the key has a record. A key
    /// completed meanwhile replays; one still in flight is
    /// [`CommandError::IdempotencyInFlight`]; one used by another request
    /// is [`CommandError::IdempotencyMismatch`]; one that is free (again)
    /// is held anew. A second time, it is `lost`.
    pub(super) async fn reclaim(
        &mut self,
        dispatcher: &Dispatcher,
        lost: StoreError,
    ) -> Result<Reclaimed, CommandError> {
        if std::mem::replace(&mut self.reclaimed, true) {
            return Err(lost.into());
        }
        tracing::debug!(key = %self.key, "idempotency key was taken over; claiming it again");
        let config = &dispatcher.config;
        let claim = records(&*dispatcher.store)?
            .claim_idempotency_key(
                &self.key,
                &self.fingerprint,
                config.idempotency_lease,
                config.idempotency_retention,
            )
            .await?;
        match claim {
            Claim::Completed(response) => Ok(Reclaimed::Replay(replay(&response)?)),
            Claim::InFlight => Err(CommandError::IdempotencyInFlight(self.given.clone())),
            Claim::Acquired { token } => {
                self.token = Some(token);
                self.claimed_at = Instant::now();
                Ok(Reclaimed::Acquired)
            }
            Claim::Mismatch => Err(CommandError::IdempotencyMismatch(self.given.clone())),
        }
    }

    /// Gives the key back after a failed command. If the lease may have
    /// run out meanwhile, another dispatch may have taken the key over and
    /// completed it: then its outcome is the answer, not `error`.
    ///
    /// A key that was never claimed is claimed now, because the command
    /// may have been carried out before under it (by a dispatch that
    /// crashed before its caller heard), and its effects may be what fails
    /// it now: a completed key replays, one in flight or used by another
    /// request is that error, and a free one is released and `error`
    /// stands.
    pub(super) async fn give_up(
        mut self,
        dispatcher: &Dispatcher,
        error: CommandError,
    ) -> Result<CommandOutcome, CommandError> {
        let store = &*dispatcher.store;
        let lost = StoreError::IdempotencyKeyLost {
            key: self.key.clone(),
        };
        if self.token.is_none() {
            // Claimed once already (and found in flight or used by another
            // request, which is `error`): nothing more to learn.
            if self.reclaimed {
                return Err(error);
            }
            if let Reclaimed::Replay(outcome) = self.reclaim(dispatcher, lost).await? {
                return Ok(outcome);
            }
        } else if !self.reclaimed
            && self.claimed_at.elapsed() >= dispatcher.config.idempotency_lease
        {
            match self.reclaim(dispatcher, lost).await {
                Ok(Reclaimed::Replay(outcome)) => return Ok(outcome),
                // Held again (under a new token): released below.
                Ok(Reclaimed::Acquired) => {}
                // Another dispatch holds the key, or the claim failed:
                // nothing of ours to release.
                Err(_) => return Err(error),
            }
        }
        let released = match (records(store), &self.token) {
            (Ok(records), Some(token)) => records.release_idempotency_key(&self.key, token).await,
            (Ok(_), None) => Ok(()),
            (Err(error), _) => Err(error),
        };
        if let Err(release) = released {
            tracing::warn!(%release, key = %self.key, "could not release an idempotency key; it frees up when its lease runs out");
        }
        Err(error)
    }
}

/// The outcome stored for an idempotency key, replayed.
pub(super) fn replay(response: &str) -> Result<CommandOutcome, CommandError> {
    let mut outcome: CommandOutcome = serde_json::from_str(response).map_err(|error| {
        StoreError::Backend(format!("stored idempotent response is unreadable: {error}").into())
    })?;
    outcome.replayed = true;
    Ok(outcome)
}

/// Identifies a request for idempotency: a hash of the command name, its
/// fields in serialized form and its `If-Match`, so formatting and field
/// order of the body do not matter, but any difference that can change
/// the outcome does.
///
/// The fields are hashed as a JSON value with every object's keys sorted,
/// so maps whose iteration order varies (`HashMap`) hash the same way each
/// time, whatever `serde_json` features are enabled.
pub(super) fn fingerprint<C: Command>(
    command: &C,
    if_match: Option<&IfMatch>,
) -> Result<String, CommandError> {
    use sha2::Digest;
    let value = serde_json::to_value(command).map_err(CommandError::EventEncoding)?;
    let fields = serde_json::to_vec(&sorted(value)).map_err(CommandError::EventEncoding)?;
    let mut hash = sha2::Sha256::new();
    hash.update(C::NAME.as_bytes());
    hash.update([0]);
    hash.update(&fields);
    if let Some(if_match) = if_match {
        let if_match = serde_json::to_vec(if_match).map_err(CommandError::EventEncoding)?;
        hash.update([0]);
        hash.update(&if_match);
    }
    Ok(crate::hex(&hash.finalize()))
}

/// `value` with the keys of every object in sorted order. `serde_json`'s
/// maps are sorted already unless its `preserve_order` feature is on
/// (anywhere in the build), in which case they keep insertion order.
pub(super) fn sorted(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> =
                map.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// The stored form of an outcome, replayed for a repeated idempotency key.
pub(super) fn response(outcome: &CommandOutcome) -> String {
    serde_json::to_string(outcome).expect("a command outcome always serializes")
}

/// The key a command sent by `principal` with idempotency key `key` is
/// recorded under: each subject has keys of its own, so nobody replays
/// (or blocks) another subject's command by sending the same key. The
/// client's key must be valid on its own; the recorded one names the
/// subject by a hash, and names a long key by its hash too, so it stays
/// within the length limit.
pub(super) fn scoped_key(principal: Option<&Principal>, key: &str) -> Result<String, CommandError> {
    use sha2::Digest;
    let Some(principal) = principal else {
        return Ok(key.to_owned());
    };
    crate::store::validate_idempotency_key(key)?;
    let subject = crate::hex(&sha2::Sha256::digest(principal.subject.as_bytes()));
    let scoped = format!("principal:{}:{key}", &subject[..32]);
    Ok(if scoped.len() <= crate::store::MAX_IDEMPOTENCY_KEY_LEN {
        scoped
    } else {
        let key = crate::hex(&sha2::Sha256::digest(key.as_bytes()));
        format!("principal:{}:#{key}", &subject[..32])
    })
}
