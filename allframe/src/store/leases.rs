//! Leases: one node at a time runs each projection and saga.
//!
//! A lease row names its runner (`projection:accounts`), its owner node,
//! an epoch and an expiry, all decided by the database's clock. A node
//! takes a lease that has expired (or that it held before a restart under
//! the same node id), which adds one to the epoch; the owner renews it well
//! before it expires and gives it back when it stops. Every checkpoint
//! commit of the owner names the epoch it holds
//! ([`Fence`](super::projections::Fence)): once another node has taken the
//! lease, the epoch differs and the commit writes nothing, so a node that
//! was paused or cut off past its expiry cannot commit a batch on top of
//! its successor's. The checkpoint's compare-and-set stays underneath as
//! the guard against applying an event twice.
//!
//! Nodes also say they are alive (`allframe_nodes`), and a node takes a
//! free lease only while it holds fewer than its fair share (the leases
//! divided by the live nodes, rounded up) and gives one back when it holds
//! more, so the runners spread over the live nodes.
//!
//! Only row locks taken by single statements are used, never session-level
//! advisory locks, so the leases work through a connection pooler in
//! transaction mode.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;

use super::Result;

/// One runner's lease as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lease {
    /// The runner (`projection:{name}` or `saga:{name}`).
    pub name: String,
    /// The node that holds or last held it (empty when none ever did).
    pub owner: String,
    /// How many times a node has taken it.
    pub epoch: u64,
    /// Until when the owner holds it.
    pub expires_at: DateTime<Utc>,
}

/// Where leases are kept: a capability of stores that several nodes share
/// ([`EventStore::leases`](super::EventStore::leases)).
pub trait LeaseStore: Send + Sync {
    /// Says node `node` is alive for `ttl`.
    fn heartbeat<'a>(&'a self, node: &'a str, ttl: Duration) -> BoxFuture<'a, Result<()>>;

    /// Takes the lease `name` for `node` for `ttl` if it is free (expired,
    /// or last held by `node` itself) and `node` holds fewer than its fair
    /// share, or it has been free for two `ttl`s whatever the share;
    /// returns it when taken (its epoch one above the last).
    fn try_acquire<'a>(
        &'a self,
        name: &'a str,
        node: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Lease>>>;

    /// Extends `lease` by `ttl` from now if it is still held with its
    /// epoch; `None` when another node has taken it since.
    fn renew<'a>(&'a self, lease: &'a Lease, ttl: Duration)
    -> BoxFuture<'a, Result<Option<Lease>>>;

    /// Gives `lease` back (if it is still held with its epoch), so another
    /// node may take it at once: it has no owner until then.
    fn release<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<()>>;

    /// The lease `node` should give back to even out the load: the last
    /// (by name) of those it holds, when it holds more than its fair
    /// share.
    fn surplus<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Result<Option<String>>>;

    /// Every lease, by name.
    fn list(&self) -> BoxFuture<'_, Result<Vec<Lease>>>;

    /// Says node `node` has left: it is no longer counted as alive, and
    /// every lease it holds is given back (call it once its runners have
    /// stopped).
    fn leave<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Result<()>>;
}

#[cfg(feature = "postgres")]
mod postgres {
    use std::time::Duration;

    use chrono::{DateTime, Utc};
    use futures_util::future::{BoxFuture, FutureExt};
    use sqlx::postgres::PgRow;
    use sqlx::{PgPool, Row};

    use super::{Lease, LeaseStore};
    use crate::store::sql::db_error;
    use crate::store::{PostgresStore, Result};

    /// The fair share of `$1`: the leases divided by the live nodes
    /// (counting `$1` itself), rounded up; and how many `$1` holds.
    const SHARE: &str = "SELECT \
         (SELECT COUNT(*) FROM allframe_leases WHERE owner = $1 AND expires_at > clock_timestamp()), \
         (SELECT COUNT(*) FROM allframe_leases), \
         (SELECT COUNT(*) FROM allframe_nodes WHERE node <> $1 AND seen_until > clock_timestamp())";

    fn lease(row: &PgRow) -> std::result::Result<Lease, sqlx::Error> {
        Ok(Lease {
            name: row.try_get(0)?,
            owner: row.try_get(1)?,
            epoch: row.try_get::<i64, _>(2)? as u64,
            expires_at: row.try_get::<DateTime<Utc>, _>(3)?,
        })
    }

    /// `(held, fair share)` for `node`.
    async fn share(pool: &PgPool, node: &str) -> Result<(i64, i64)> {
        let (held, total, others): (i64, i64, i64) = sqlx::query_as(SHARE)
            .bind(node)
            .fetch_one(pool)
            .await
            .map_err(db_error)?;
        let nodes = others + 1;
        Ok((held, (total + nodes - 1) / nodes))
    }

    fn seconds(ttl: Duration) -> f64 {
        ttl.as_secs_f64()
    }

    impl LeaseStore for PostgresStore {
        fn heartbeat<'a>(&'a self, node: &'a str, ttl: Duration) -> BoxFuture<'a, Result<()>> {
            async move {
                sqlx::query(
                    "INSERT INTO allframe_nodes (node, seen_until) \
                     VALUES ($1, clock_timestamp() + make_interval(secs => $2)) \
                     ON CONFLICT (node) DO UPDATE SET seen_until = EXCLUDED.seen_until",
                )
                .bind(node)
                .bind(seconds(ttl))
                .execute(self.pool())
                .await
                .map_err(db_error)?;
                Ok(())
            }
            .boxed()
        }

        fn try_acquire<'a>(
            &'a self,
            name: &'a str,
            node: &'a str,
            ttl: Duration,
        ) -> BoxFuture<'a, Result<Option<Lease>>> {
            async move {
                let pool = self.pool();
                // Counted in the shares from now on.
                sqlx::query(
                    "INSERT INTO allframe_leases (name, owner, epoch, expires_at) \
                     VALUES ($1, '', 0, 'epoch') ON CONFLICT (name) DO NOTHING",
                )
                .bind(name)
                .execute(pool)
                .await
                .map_err(db_error)?;
                let (held, share) = share(pool, node).await?;
                // Of two nodes taking it at once, the second finds the
                // row changed when the first commits, and takes nothing.
                // Its own lease (held before a restart) a node takes back
                // whatever its share: it is counted in it already. One
                // nobody below their share has taken for two lifetimes
                // (a runner only some nodes know, during a rolling
                // deploy) is taken whatever the share, so none stays
                // unowned.
                let taken = sqlx::query(
                    "UPDATE allframe_leases SET owner = $2, epoch = epoch + 1, \
                     expires_at = clock_timestamp() + make_interval(secs => $3) \
                     WHERE name = $1 \
                     AND ((expires_at <= clock_timestamp() \
                           AND ($4 OR expires_at <= clock_timestamp() - make_interval(secs => $3 * 2))) \
                          OR owner = $2) \
                     RETURNING name, owner, epoch, expires_at",
                )
                .bind(name)
                .bind(node)
                .bind(seconds(ttl))
                .bind(held < share)
                .fetch_optional(pool)
                .await
                .map_err(db_error)?;
                taken.as_ref().map(lease).transpose().map_err(db_error)
            }
            .boxed()
        }

        fn renew<'a>(
            &'a self,
            held: &'a Lease,
            ttl: Duration,
        ) -> BoxFuture<'a, Result<Option<Lease>>> {
            async move {
                let renewed = sqlx::query(
                    "UPDATE allframe_leases \
                     SET expires_at = clock_timestamp() + make_interval(secs => $4) \
                     WHERE name = $1 AND owner = $2 AND epoch = $3 \
                     RETURNING name, owner, epoch, expires_at",
                )
                .bind(&held.name)
                .bind(&held.owner)
                .bind(held.epoch as i64)
                .bind(seconds(ttl))
                .fetch_optional(self.pool())
                .await
                .map_err(db_error)?;
                renewed.as_ref().map(lease).transpose().map_err(db_error)
            }
            .boxed()
        }

        fn release<'a>(&'a self, held: &'a Lease) -> BoxFuture<'a, Result<()>> {
            async move {
                sqlx::query(
                    "UPDATE allframe_leases SET owner = '', expires_at = clock_timestamp() \
                     WHERE name = $1 AND owner = $2 AND epoch = $3",
                )
                .bind(&held.name)
                .bind(&held.owner)
                .bind(held.epoch as i64)
                .execute(self.pool())
                .await
                .map_err(db_error)?;
                Ok(())
            }
            .boxed()
        }

        fn surplus<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Result<Option<String>>> {
            async move {
                let pool = self.pool();
                let (held, share) = share(pool, node).await?;
                if held <= share {
                    return Ok(None);
                }
                sqlx::query_scalar(
                    "SELECT name FROM allframe_leases \
                     WHERE owner = $1 AND expires_at > clock_timestamp() \
                     ORDER BY name DESC LIMIT 1",
                )
                .bind(node)
                .fetch_optional(pool)
                .await
                .map_err(db_error)
            }
            .boxed()
        }

        fn list(&self) -> BoxFuture<'_, Result<Vec<Lease>>> {
            async move {
                let rows = sqlx::query(
                    "SELECT name, owner, epoch, expires_at FROM allframe_leases ORDER BY name",
                )
                .fetch_all(self.pool())
                .await
                .map_err(db_error)?;
                rows.iter()
                    .map(lease)
                    .collect::<std::result::Result<_, _>>()
                    .map_err(db_error)
            }
            .boxed()
        }

        fn leave<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Result<()>> {
            async move {
                sqlx::query("DELETE FROM allframe_nodes WHERE node = $1")
                    .bind(node)
                    .execute(self.pool())
                    .await
                    .map_err(db_error)?;
                sqlx::query(
                    "UPDATE allframe_leases SET owner = '', expires_at = clock_timestamp() \
                     WHERE owner = $1 AND expires_at > clock_timestamp()",
                )
                .bind(node)
                .execute(self.pool())
                .await
                .map_err(db_error)?;
                Ok(())
            }
            .boxed()
        }
    }
}
