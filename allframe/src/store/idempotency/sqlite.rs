//! The idempotency records of SQLite.

use std::time::Duration;

use super::Claim;
use super::sql::SqlRecords;
use crate::store::SqliteDialect;
use crate::store::group_commit::{KeyOp, KeyOutcome};
use crate::store::sql::SqlStore;
use crate::store::{Result, StoreError};

impl SqlRecords for SqliteDialect {
    async fn claim_key(
        store: &SqlStore<Self>,
        key: &str,
        fingerprint: &str,
        lease: Duration,
        retention: Duration,
    ) -> Result<Claim> {
        let op = KeyOp::Claim {
            key: key.to_owned(),
            fingerprint: fingerprint.to_owned(),
            lease,
            retention,
        };
        match store.inner.writer.key_op(op).await? {
            KeyOutcome::Claimed(claim) => Ok(claim),
            _ => Err(unexpected_outcome()),
        }
    }

    async fn complete_key(
        store: &SqlStore<Self>,
        key: &str,
        token: &str,
        response: String,
    ) -> Result<()> {
        let op = KeyOp::Complete {
            key: key.to_owned(),
            token: token.to_owned(),
            response,
        };
        match store.inner.writer.key_op(op).await? {
            KeyOutcome::Done => Ok(()),
            KeyOutcome::Lost => Err(StoreError::IdempotencyKeyLost {
                key: key.to_owned(),
            }),
            _ => Err(unexpected_outcome()),
        }
    }

    async fn release_key(store: &SqlStore<Self>, key: &str, token: &str) -> Result<()> {
        let op = KeyOp::Release {
            key: key.to_owned(),
            token: token.to_owned(),
        };
        store.inner.writer.key_op(op).await.map(drop)
    }

    async fn purge_keys(store: &SqlStore<Self>, retention: Duration) -> Result<u64> {
        match store
            .inner
            .writer
            .key_op(KeyOp::Purge { retention })
            .await?
        {
            KeyOutcome::Purged(count) => Ok(count),
            _ => Err(unexpected_outcome()),
        }
    }
}

fn unexpected_outcome() -> StoreError {
    StoreError::Backend("the writer answered a different idempotency operation".into())
}
