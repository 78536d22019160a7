//! The idempotency records of PostgreSQL.

use std::time::Duration;

use super::sql::SqlRecords;
use super::{self as idempotency, Claim, Decision, Seen, response_text, seconds};
use crate::store::PostgresDialect;
use crate::store::postgres::COMPLETE_KEYS;
use crate::store::sql::db_error;
use crate::store::sql::{Dialect, SqlStore};
use crate::store::{Result, StoreError};

/// An idempotency record as a claim reads it: fingerprint, response,
/// whether it expired, whether its lease ran out.
type KeyRow = (Option<Vec<u8>>, Option<Vec<u8>>, bool, bool);
/// How often a claim starts over when the record it found is deleted before
/// it could lock it.
const CLAIM_ATTEMPTS: usize = 5;

impl SqlRecords for PostgresDialect {
    async fn claim_key(
        store: &SqlStore<Self>,
        key: &str,
        fingerprint: &str,
        lease: Duration,
        retention: Duration,
    ) -> Result<Claim> {
        for _ in 0..CLAIM_ATTEMPTS {
            if let Some(claim) = store.try_claim(key, fingerprint, lease, retention).await? {
                return Ok(claim);
            }
        }
        Err(StoreError::Backend(
            format!("idempotency key {key:?} kept changing while it was claimed").into(),
        ))
    }

    /// One claim transaction; `None` when the record was deleted between
    /// the insert that found it and the lock.
    async fn complete_key(
        store: &SqlStore<Self>,
        key: &str,
        token: &str,
        response: String,
    ) -> Result<()> {
        let written = sqlx::query(COMPLETE_KEYS)
            .bind([key])
            .bind([token])
            .bind([response.as_bytes()])
            .execute(&store.inner.reads)
            .await
            .map_err(db_error)?;
        if written.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::IdempotencyKeyLost {
                key: key.to_owned(),
            })
        }
    }

    async fn release_key(store: &SqlStore<Self>, key: &str, token: &str) -> Result<()> {
        sqlx::query(
            "DELETE FROM allframe_idempotency \
             WHERE key = $1 AND token = $2 AND state = 'in_flight'",
        )
        .bind(key)
        .bind(token)
        .execute(&store.inner.reads)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn purge_keys(store: &SqlStore<Self>, retention: Duration) -> Result<u64> {
        // Records locked right now are being claimed or completed, i.e.
        // rewritten; skipping them avoids waiting on (or deadlocking with)
        // those transactions, and the next purge finds them if still old.
        let purged = sqlx::query(
            // The cutoff is a stable value (`statement_timestamp`, not the
            // volatile `clock_timestamp`) so the age index serves the inner
            // select, and the keys come back as an array so the delete
            // finds each by the primary key instead of scanning the table.
            "DELETE FROM allframe_idempotency WHERE key = ANY(ARRAY(\
               SELECT key FROM allframe_idempotency \
               WHERE created_at < statement_timestamp() - make_interval(secs => $1) \
               FOR UPDATE SKIP LOCKED))",
        )
        .bind(seconds(retention))
        .execute(&store.inner.reads)
        .await
        .map_err(db_error)?;
        Ok(purged.rows_affected())
    }
}

impl SqlStore<PostgresDialect> {
    async fn try_claim(
        &self,
        key: &str,
        fingerprint: &str,
        lease: Duration,
        retention: Duration,
    ) -> Result<Option<Claim>> {
        let mut tx = self
            .inner
            .reads
            .begin_with(PostgresDialect::BEGIN)
            .await
            .map_err(db_error)?;
        let token = idempotency::new_token();
        let inserted = sqlx::query(
            "INSERT INTO allframe_idempotency \
             (key, fingerprint, state, response, created_at, lease_until, token) \
             VALUES ($1, $2, 'in_flight', NULL, clock_timestamp(), \
                     clock_timestamp() + make_interval(secs => $3), $4) \
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(fingerprint.as_bytes())
        .bind(seconds(lease))
        .bind(token.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if inserted.rows_affected() == 1 {
            tx.commit().await.map_err(db_error)?;
            return Ok(Some(Claim::Acquired { token }));
        }
        let row: Option<KeyRow> = sqlx::query_as(
            "SELECT fingerprint, response, \
                    created_at < clock_timestamp() - make_interval(secs => $2), \
                    lease_until <= clock_timestamp() \
             FROM allframe_idempotency WHERE key = $1 FOR UPDATE",
        )
        .bind(key)
        .bind(seconds(retention))
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        let Some((stored, response, expired, lease_over)) = row else {
            return Ok(None);
        };
        let decision = idempotency::decide(Some(Seen {
            same_fingerprint: stored.is_none_or(|stored| stored == fingerprint.as_bytes()),
            response: response.map(|r| response_text(key, r)).transpose()?,
            expired,
            lease_over,
        }));
        match decision {
            Decision::Take => {
                sqlx::query(
                    "UPDATE allframe_idempotency SET fingerprint = $2, state = 'in_flight', \
                     response = NULL, created_at = clock_timestamp(), \
                     lease_until = clock_timestamp() + make_interval(secs => $3), token = $4 \
                     WHERE key = $1",
                )
                .bind(key)
                .bind(fingerprint.as_bytes())
                .bind(seconds(lease))
                .bind(token.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            }
            Decision::TakeOver => {
                sqlx::query(
                    "UPDATE allframe_idempotency \
                     SET lease_until = clock_timestamp() + make_interval(secs => $2), token = $3 \
                     WHERE key = $1",
                )
                .bind(key)
                .bind(seconds(lease))
                .bind(token.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            }
            Decision::Answer(_) => {}
        }
        tx.commit().await.map_err(db_error)?;
        Ok(Some(decision.into_claim(token)))
    }
}
