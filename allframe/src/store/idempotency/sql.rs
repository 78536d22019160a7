//! The idempotency records of the SQL stores: the trait each dialect
//! implements, and the [`IdempotencyStore`] they make of a [`SqlStore`].

use std::future::Future;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::{Claim, Completion, IdempotencyStore, validate_key};
use crate::event::NewEvent;
use crate::store::group_commit::Request;
use crate::store::sql::{Dialect, SqlStore};
use crate::store::{Appended, ExpectedVersion, Result, validate_append};

/// How a SQL database keeps idempotency records: what a [`Dialect`] adds
/// so its [`SqlStore`] offers them. Sealed with the dialects.
pub trait SqlRecords: Dialect {
    /// Claims an idempotency key (already checked).
    fn claim_key(
        store: &SqlStore<Self>,
        key: &str,
        fingerprint: &str,
        lease: Duration,
        retention: Duration,
    ) -> impl Future<Output = Result<Claim>> + Send;

    /// Records the response under a claimed key (already checked).
    fn complete_key(
        store: &SqlStore<Self>,
        key: &str,
        token: &str,
        response: String,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Lets a claimed key go (already checked).
    fn release_key(
        store: &SqlStore<Self>,
        key: &str,
        token: &str,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Deletes expired records; returns how many.
    fn purge_keys(
        store: &SqlStore<Self>,
        retention: Duration,
    ) -> impl Future<Output = Result<u64>> + Send;
}

impl<D: SqlRecords> IdempotencyStore for SqlStore<D> {
    fn append_with<'a>(
        &'a self,
        stream_id: &'a str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        completions: Vec<Completion>,
    ) -> BoxFuture<'a, Result<Appended>> {
        async move {
            validate_append(stream_id, &events, &completions)?;
            let request = Request {
                stream_id: stream_id.to_owned(),
                expected,
                events,
                completions,
            };
            self.inner.writer.append(request).await
        }
        .boxed()
    }

    fn claim_idempotency_key<'a>(
        &'a self,
        key: &'a str,
        fingerprint: &'a str,
        lease: Duration,
        retention: Duration,
    ) -> BoxFuture<'a, Result<Claim>> {
        async move {
            validate_key(key)?;
            D::claim_key(self, key, fingerprint, lease, retention).await
        }
        .boxed()
    }

    fn complete_idempotency_key<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
        response: String,
    ) -> BoxFuture<'a, Result<()>> {
        async move {
            validate_key(key)?;
            D::complete_key(self, key, token, response).await
        }
        .boxed()
    }

    fn release_idempotency_key<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, Result<()>> {
        async move {
            validate_key(key)?;
            D::release_key(self, key, token).await
        }
        .boxed()
    }

    fn purge_idempotency_keys(&self, retention: Duration) -> BoxFuture<'_, Result<u64>> {
        D::purge_keys(self, retention).boxed()
    }
}
