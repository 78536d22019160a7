//! Testing support: the given/when/then harnesses for command handlers
//! and for sagas, and the event store conformance suite.
//!
//! Every backend in this crate passes the same checks, and a new backend can
//! prove itself the same way. Each check takes a fresh, empty store and
//! panics with a description of the first broken rule:
//!
//! ```
//! # async fn demo() {
//! use allframe::store::MemoryStore;
//! allframe::testing::conformance::expected_version_semantics(&MemoryStore::new()).await;
//! # }
//! ```
//!
//! [`store_conformance_tests!`](crate::store_conformance_tests) writes one
//! `#[tokio::test]` per check.

mod saga_scenario;
mod scenario;

pub use saga_scenario::{SagaScenario, SagaThen, given_saga};
pub use scenario::{Scenario, Then, given};

pub mod conformance;

/// Writes one `#[tokio::test]` per conformance check for a backend.
///
/// The argument is an async expression that yields a fresh, empty store
/// (`Option<store>` after `optional:`, where `None` skips the test — the
/// expression should say why on stderr).
///
/// ```
/// allframe::store_conformance_tests!(async { allframe::store::MemoryStore::new() });
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! store_conformance_tests {
    (optional: $make:expr) => {
        $crate::store_conformance_tests!(@tests $make;
            expected_version_semantics,
            append_records_events,
            failed_append_leaves_nothing,
            stored_types_list_each_kind,
            invalid_input_is_a_typed_error,
            stream_reads,
            global_reads_and_filters,
            concurrent_appends_to_one_stream,
            subscription_catch_up_then_live,
            idempotency_claim_complete_replay,
            idempotency_mismatch,
            idempotency_lease_take_over,
            idempotency_expiry_and_purge,
            idempotency_completion_is_atomic_with_append,
            idempotency_concurrent_claims,
            idempotency_release,
            idempotency_stale_tokens_are_refused,
            idempotency_unclaimed_completion,
            idempotency_several_completions,
            idempotency_invalid_keys,
            snapshot_save_and_load,
            snapshot_later_version_stays,
            snapshot_of_other_code_is_replaced,
            snapshot_concurrent_saves,
            snapshot_invalid_stream_ids,
        );
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn subscription_handover_with_concurrent_writers() {
            if let Some(store) = $make.await {
                $crate::testing::conformance::subscription_handover_with_concurrent_writers(
                    &store, 8, 50,
                )
                .await;
            }
        }
    };
    (@tests $make:expr; $($check:ident,)*) => {$(
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            if let Some(store) = $make.await {
                $crate::testing::conformance::$check(&store).await;
            }
        }
    )*};
    ($make:expr) => {
        $crate::store_conformance_tests!(optional: async { Some($make.await) });
    };
}
