//! One batch of events through one projection, without I/O: decode each
//! event, find the row it targets, call `apply` on the current row, and
//! turn the final state of every changed row into a [`RowWrite`].
//!
//! `apply` is user code: an error or a panic stops the batch at that event.
//! Everything before it is still returned, so the runner commits the rows
//! up to the event before the failing one and the failure's position is
//! exactly where the projection stopped.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::{Change, Projection, Row, Source};
use crate::event::RecordedEvent;
use crate::store::projections::RowWrite;

/// Why a projection stopped at an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Failure {
    pub(super) position: u64,
    pub(super) error: String,
    /// The event was written by a newer release than this one: the
    /// projection waits for the upgrade rather than having failed.
    pub(super) newer: bool,
}

/// An event this projection reads, decoded, with the key of its row.
pub(super) struct Targeted<'e, P: Projection> {
    recorded: &'e RecordedEvent,
    event: <P::Source as Source>::Event,
    key: String,
}

/// Decodes `events` and finds their rows' keys, up to the first failure.
/// Events the source does not read or `row_key` skips are left out.
pub(super) fn target<P: Projection>(
    events: &[RecordedEvent],
) -> (Vec<Targeted<'_, P>>, Option<Failure>) {
    let mut targeted = Vec::with_capacity(events.len());
    for recorded in events {
        let mut newer = false;
        let outcome = guard(|| {
            let decoded = P::Source::decode(recorded).map_err(|e| {
                newer = e.is_newer_than_known();
                e.to_string()
            });
            let Some(event) = decoded? else {
                return Ok(None);
            };
            Ok(P::row_key(&event, recorded).map(|key| (event, key)))
        });
        match outcome {
            Ok(None) => {}
            Ok(Some((event, key))) => targeted.push(Targeted {
                recorded,
                event,
                key,
            }),
            Err(error) => {
                let failure = Failure {
                    position: recorded.position,
                    error,
                    newer,
                };
                return (targeted, Some(failure));
            }
        }
    }
    (targeted, None)
}

/// The distinct keys the targeted events change, to load their rows.
pub(super) fn keys<P: Projection>(targeted: &[Targeted<'_, P>]) -> Vec<String> {
    let mut seen = std::collections::HashSet::with_capacity(targeted.len());
    targeted
        .iter()
        .filter(|t| seen.insert(t.key.as_str()))
        .map(|t| t.key.clone())
        .collect()
}

/// The outcome of applying a batch.
pub(super) struct Applied {
    /// The final state of every changed row.
    pub(super) writes: Vec<RowWrite>,
    /// The position of the last event fully applied (`None`: none was).
    pub(super) last: Option<u64>,
    pub(super) failure: Option<Failure>,
}

/// A current row and the position of the last event that changed it.
struct Current<P> {
    row: Option<P>,
    changed_at: Option<u64>,
    /// The index entries of the row as it was stored before this batch.
    stored_index: Option<Vec<(&'static str, String)>>,
}

/// Applies the targeted events in order to the rows `loaded` (JSON by key).
pub(super) fn apply<P: Projection>(
    targeted: Vec<Targeted<'_, P>>,
    mut loaded: HashMap<String, String>,
) -> Applied {
    // Current rows, decoded on first use; keys in the order first changed.
    let mut rows: HashMap<String, Current<P>> = HashMap::with_capacity(targeted.len());
    let mut changed: Vec<String> = Vec::new();
    let mut last = None;
    let mut failure = None;
    for Targeted {
        recorded,
        event,
        key,
    } in targeted
    {
        let fail = |error: String| Failure {
            position: recorded.position,
            error,
            newer: false,
        };
        if !rows.contains_key(&key) {
            let row = match loaded
                .remove(&key)
                .map(|json| serde_json::from_str::<P>(&json))
            {
                None => None,
                Some(Ok(row)) => Some(row),
                Some(Err(error)) => {
                    failure = Some(fail(format!(
                        "the stored row `{key}` does not deserialize ({error}); rebuild the projection"
                    )));
                    break;
                }
            };
            let stored_index = match &row {
                Some(row) if !P::INDEXED_BY.is_empty() => guard(|| Ok(Row::index(row))).ok(),
                _ => None,
            };
            let current = Current {
                row,
                changed_at: None,
                stored_index,
            };
            rows.insert(key.clone(), current);
        }
        let current = rows.get_mut(&key).expect("inserted above");
        let change =
            guard(|| P::apply(current.row.as_ref(), &event, recorded).map_err(|e| e.to_string()));
        let new = match change {
            Ok(Change::Skip) => {
                last = Some(recorded.position);
                continue;
            }
            Ok(Change::Delete) => None,
            Ok(Change::Upsert(row)) => match guard(|| Ok(row.key())) {
                Ok(row_key) if row_key == key => Some(row),
                Ok(row_key) => {
                    failure = Some(fail(format!(
                        "apply returned a row keyed `{row_key}` for an event of row `{key}`"
                    )));
                    break;
                }
                Err(error) => {
                    failure = Some(fail(error));
                    break;
                }
            },
            Err(error) => {
                failure = Some(fail(error));
                break;
            }
        };
        if current.changed_at.is_none() {
            changed.push(key);
        }
        current.row = new;
        current.changed_at = Some(recorded.position);
        last = Some(recorded.position);
    }
    match writes(&mut rows, &changed) {
        Ok(writes) => Applied {
            writes,
            last,
            failure,
        },
        // Nothing of the batch is stored: the projection stops at the
        // event that made the row that cannot be stored.
        Err(failure) => Applied {
            writes: Vec::new(),
            last: None,
            failure: Some(failure),
        },
    }
}

fn writes<P: Projection>(
    rows: &mut HashMap<String, Current<P>>,
    changed: &[String],
) -> Result<Vec<RowWrite>, Failure> {
    changed
        .iter()
        .map(|key| {
            let current = rows.remove(key).expect("changed rows are current");
            let Some(row) = current.row else {
                return Ok(RowWrite::delete(key.clone()));
            };
            let stored = guard(|| {
                let json = serde_json::to_string(&row)
                    .map_err(|e| format!("row `{key}` does not serialize: {e}"))?;
                let index = if P::INDEXED_BY.is_empty() {
                    Vec::new()
                } else {
                    Row::index(&row)
                };
                Ok((json, index))
            });
            match stored {
                // The entries are already stored: the store need not touch
                // them (most changes leave the indexed fields alone).
                Ok((json, index)) if current.stored_index.as_ref() == Some(&index) => {
                    Ok(RowWrite::upsert(key.clone(), json, index).index_unchanged())
                }
                Ok((json, index)) => Ok(RowWrite::upsert(key.clone(), json, index)),
                Err(error) => Err(Failure {
                    position: current.changed_at.unwrap_or_default(),
                    error,
                    newer: false,
                }),
            }
        })
        .collect()
}

/// Runs user code, turning a panic into an error message.
fn guard<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(panic) => Err(format!("panicked: {}", crate::panic_message(&*panic))),
    }
}
