//! The SQL projection stores: one definition for SQLite and PostgreSQL,
//! which differ only in how a writing transaction begins, how a row is
//! locked, and how JSON rows go in and come out.
//!
//! Tables (see the `0004_projections` migrations):
//! `allframe_projections (name, generation, rebuilding)` names the live
//! generation and the one being rebuilt; `allframe_projection_checkpoints
//! (projection, generation, position)`; `allframe_projection_rows
//! (projection, generation, key, row)`; `allframe_projection_index
//! (projection, generation, field, value, key)`. Reads name the live
//! generation with a subquery in the same statement, so a statement sees
//! either the old or the new generation, never a mix.

use std::collections::HashMap;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sqlx::{
    ColumnIndex, Connection, Database, Decode, Encode, Executor, IntoArguments, Pool, QueryBuilder,
    Type,
};
use tracing::Instrument;

use super::{Batch, Committed, Fence, Generation, Generations, ProjectionStore, RowQuery};
use crate::store::Result;
use crate::store::group_commit::GroupCommit;
use crate::store::sql::{Conn, Dialect, db_error, write_on};

/// `u64` positions and generations as SQL `BIGINT`.
pub(super) fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A projection store over a SQL connection pool: the one definition for
/// SQLite and PostgreSQL, which differ only in the [`Dialect`] strings.
/// Reads use the pool. Writing transactions run on the event store's
/// writer where the database has one write lock for everything (SQLite:
/// see [`Dialect::ONE_WRITER`]), otherwise on a connection of the pool.
pub(crate) struct SqlProjectionStore<D: Dialect> {
    pool: Pool<D::Db>,
    writer: Option<GroupCommit<Conn<D>>>,
}

impl<D: Dialect> std::fmt::Debug for SqlProjectionStore<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlProjectionStore")
            .field("dialect", &D::NAME)
            .finish_non_exhaustive()
    }
}

impl<D: Dialect> SqlProjectionStore<D>
where
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    for<'t> &'t str: Encode<'t, D::Db> + Type<D::Db>,
    for<'t> i64: Encode<'t, D::Db> + Decode<'t, D::Db> + Type<D::Db>,
    for<'t> String: Encode<'t, D::Db> + Decode<'t, D::Db> + Type<D::Db>,
    usize: ColumnIndex<<D::Db as Database>::Row>,
{
    pub(crate) fn new(pool: Pool<D::Db>, writer: Option<GroupCommit<Conn<D>>>) -> Self {
        Self { pool, writer }
    }

    /// Runs `work` (which begins and commits its own transaction) on the
    /// writer's connection if the store writes through its writer, else on
    /// a connection of the pool.
    async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Conn<D>) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        write_on::<D, _, _>(&self.pool, self.writer.as_ref(), work).await
    }

    /// Starts `generation` of `projection`, built by `version`, with its
    /// checkpoint at 0.
    async fn start_generation(
        connection: &mut <D::Db as Database>::Connection,
        projection: &str,
        generation: i64,
        version: u32,
    ) -> Result<()> {
        QueryBuilder::<D::Db>::new(
            "INSERT INTO allframe_projection_checkpoints (projection, generation, position, version) \
             VALUES (",
        )
        .push_bind(projection)
        .push(", ")
        .push_bind(generation)
        .push(", 0, ")
        .push_bind(i64::from(version))
        .push(")")
        .build()
        .execute(connection)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn open_now(&self, projection: &str, version: u32) -> Result<Generations> {
        let projection = projection.to_owned();
        self.write(move |connection| Self::open_in(connection, projection, version).boxed())
            .await
    }

    async fn open_in(
        connection: &mut Conn<D>,
        projection: String,
        version: u32,
    ) -> Result<Generations> {
        let projection = projection.as_str();
        let mut tx = connection.begin_with(D::BEGIN).await.map_err(db_error)?;
        let created = QueryBuilder::<D::Db>::new(
            "INSERT INTO allframe_projections (name, generation) VALUES (",
        )
        .push_bind(projection)
        .push(", 1) ON CONFLICT (name) DO NOTHING")
        .build()
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if D::rows_affected(&created) == 1 {
            Self::start_generation(&mut tx, projection, 1, version).await?;
        }
        #[allow(clippy::type_complexity)]
        let (live, rebuilding, live_at, rebuilding_at, live_version, rebuilding_version): (
            i64,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
        ) = QueryBuilder::<D::Db>::new(
            "SELECT p.generation, p.rebuilding, l.position, r.position, l.version, r.version \
                     FROM allframe_projections p \
                     LEFT JOIN allframe_projection_checkpoints l \
                       ON l.projection = p.name AND l.generation = p.generation \
                     LEFT JOIN allframe_projection_checkpoints r \
                       ON r.projection = p.name AND r.generation = p.rebuilding \
                     WHERE p.name = ",
        )
        .push_bind(projection)
        .build_query_as()
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        let generation = |number: i64, at: Option<i64>, version: Option<i64>| {
            Generation::new(
                number as u64,
                at.unwrap_or(0) as u64,
                version.map_or(1, |v| u32::try_from(v).unwrap_or(u32::MAX)),
            )
        };
        Ok(Generations {
            live: generation(live, live_at, live_version),
            rebuilding: rebuilding
                .map(|number| generation(number, rebuilding_at, rebuilding_version)),
        })
    }

    async fn load_now(
        &self,
        projection: &str,
        generation: u64,
        keys: &[String],
    ) -> Result<HashMap<String, String>> {
        let mut query = QueryBuilder::<D::Db>::new(std::format!(
            "SELECT key, {} FROM allframe_projection_rows WHERE ",
            D::ROW_OUT
        ));
        D::push_keyed(
            &mut query,
            "allframe_projection_rows",
            projection,
            int(generation),
            keys.iter().map(String::as_str).collect(),
        );
        let found: Vec<(String, String)> = query
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(found.into_iter().collect())
    }

    async fn commit_now(&self, batch: Batch<'_>) -> Result<Committed> {
        // Owned, for the writer task.
        let projection = batch.projection.to_owned();
        let writes = batch.writes.to_vec();
        let (generation, from, to, indexed) =
            (batch.generation, batch.from, batch.to, batch.indexed);
        let fence = batch
            .fence
            .map(|fence| (fence.lease.to_owned(), fence.epoch));
        self.write(move |connection| {
            async move {
                let fence = fence
                    .as_ref()
                    .map(|(lease, epoch)| Fence::new(lease, *epoch));
                let batch =
                    Batch::new(&projection, generation, from, to, indexed, &writes).fenced(fence);
                Self::commit_in(connection, batch)
                    .instrument(tracing::debug_span!(
                        target: "allframe::store",
                        "projection_commit"
                    ))
                    .await
            }
            .boxed()
        })
        .await
    }

    async fn commit_in(connection: &mut Conn<D>, batch: Batch<'_>) -> Result<Committed> {
        let mut tx = connection.begin_with(D::BEGIN).await.map_err(db_error)?;
        // First, so the row lock (PostgreSQL) or the write lock
        // (SQLite) is held from here to the commit.
        let mut checkpoint =
            QueryBuilder::<D::Db>::new("UPDATE allframe_projection_checkpoints SET position = ");
        checkpoint
            .push_bind(int(batch.to))
            .push(" WHERE projection = ")
            .push_bind(batch.projection)
            .push(" AND generation = ")
            .push_bind(int(batch.generation))
            .push(" AND position = ")
            .push_bind(int(batch.from));
        if let Some(fence) = batch.fence {
            checkpoint
                .push(" AND EXISTS (SELECT 1 FROM allframe_leases WHERE name = ")
                .push_bind(fence.lease)
                .push(" AND epoch = ")
                .push_bind(int(fence.epoch))
                // Locked to the commit: a node taking the lease over waits
                // for it, then reads the checkpoint it wrote.
                .push(D::LOCK)
                .push(")");
        }
        let moved = checkpoint
            .build()
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        if D::rows_affected(&moved) != 1 {
            return Ok(Committed::Moved);
        }
        // BEGIN, the checkpoint, COMMIT, and each statement below that runs.
        let mut round_trips: u32 = 3;
        // Each statement takes the whole batch as bound columns (one
        // statement, one round trip, whatever the batch's size).
        let generation = int(batch.generation);
        let delete = |table: &str, keys: Vec<&str>| {
            let mut query = QueryBuilder::<D::Db>::new(std::format!("DELETE FROM {table} WHERE "));
            D::push_keyed(&mut query, table, batch.projection, generation, keys);
            query
        };
        let keys: Vec<&str> = batch
            .writes
            .iter()
            .filter(|write| write.reindex)
            .map(|write| write.key.as_str())
            .collect();
        if batch.indexed && !keys.is_empty() {
            round_trips += 1;
            let mut query = delete("allframe_projection_index", keys);
            query.build().execute(&mut *tx).await.map_err(db_error)?;
        }
        let deleted: Vec<&str> = batch
            .writes
            .iter()
            .filter(|write| write.row.is_none())
            .map(|write| write.key.as_str())
            .collect();
        if !deleted.is_empty() {
            round_trips += 1;
            let mut query = delete("allframe_projection_rows", deleted);
            query.build().execute(&mut *tx).await.map_err(db_error)?;
        }
        let (keys, rows): (Vec<&str>, Vec<&str>) = batch
            .writes
            .iter()
            .filter_map(|write| write.row.as_deref().map(|row| (write.key.as_str(), row)))
            .unzip();
        if !keys.is_empty() {
            round_trips += 1;
            let mut query = QueryBuilder::<D::Db>::new(
                "INSERT INTO allframe_projection_rows (projection, generation, key, row) SELECT ",
            );
            query
                .push_bind(batch.projection)
                .push(", ")
                .push_bind(generation)
                .push(std::format!(", c0, c1{} FROM ", D::ROW_IN));
            D::push_columns(&mut query, vec![keys, rows]);
            // `WHERE true` lets SQLite tell the upsert clause from a join.
            query
                .push(" r WHERE true ON CONFLICT (projection, generation, key) DO UPDATE SET row = excluded.row")
                .build()
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        let (mut fields, mut values, mut keys) = (Vec::new(), Vec::new(), Vec::new());
        for write in batch.writes.iter().filter(|write| write.reindex) {
            for (field, value) in &write.index {
                fields.push(*field);
                values.push(value.as_str());
                keys.push(write.key.as_str());
            }
        }
        if !keys.is_empty() {
            round_trips += 1;
            let mut query = QueryBuilder::<D::Db>::new(
                "INSERT INTO allframe_projection_index (projection, generation, field, value, key) SELECT ",
            );
            query
                .push_bind(batch.projection)
                .push(", ")
                .push_bind(generation)
                .push(", c0, c1, c2 FROM ");
            D::push_columns(&mut query, vec![fields, values, keys]);
            query
                .push(" e")
                .build()
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)?;
        tracing::debug!(
            target: "allframe::store",
            projection = batch.projection,
            to = batch.to,
            rows = batch.writes.len(),
            round_trips,
            "projection batch committed"
        );
        Ok(Committed::Done)
    }

    async fn begin_rebuild_now(&self, projection: &str, version: u32) -> Result<Generation> {
        self.open_now(projection, version).await?;
        let projection = projection.to_owned();
        self.write(move |connection| {
            Self::begin_rebuild_in(connection, projection, version).boxed()
        })
        .await
    }

    async fn begin_rebuild_in(
        connection: &mut Conn<D>,
        projection: String,
        version: u32,
    ) -> Result<Generation> {
        let projection = projection.as_str();
        let mut tx = connection.begin_with(D::BEGIN).await.map_err(db_error)?;
        let (live, rebuilding): (i64, Option<i64>) = QueryBuilder::<D::Db>::new(
            "SELECT generation, rebuilding FROM allframe_projections WHERE name = ",
        )
        .push_bind(projection)
        .push(D::LOCK)
        .build_query_as()
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        if let Some(number) = rebuilding {
            let (at, built_by): (i64, i64) = QueryBuilder::<D::Db>::new(
                "SELECT position, version FROM allframe_projection_checkpoints WHERE projection = ",
            )
            .push_bind(projection)
            .push(" AND generation = ")
            .push_bind(number)
            .build_query_as()
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
            if built_by == i64::from(version) {
                tx.commit().await.map_err(db_error)?;
                return Ok(Generation::new(number as u64, at as u64, version));
            }
            // Built by another version: dropped; a runner still working
            // it fails its checkpoint's compare-and-set and starts over.
            for table in [
                "allframe_projection_index",
                "allframe_projection_rows",
                "allframe_projection_checkpoints",
            ] {
                QueryBuilder::<D::Db>::new(std::format!("DELETE FROM {table} WHERE projection = "))
                    .push_bind(projection)
                    .push(" AND generation = ")
                    .push_bind(number)
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
            }
        }
        // Every older generation is below the live one (or the rebuild
        // just dropped), so this number was never used.
        let number = live.max(rebuilding.unwrap_or(0)) + 1;
        QueryBuilder::<D::Db>::new("UPDATE allframe_projections SET rebuilding = ")
            .push_bind(number)
            .push(" WHERE name = ")
            .push_bind(projection)
            .build()
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        Self::start_generation(&mut tx, projection, number, version).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(Generation::new(number as u64, 0, version))
    }

    async fn swap_now(&self, projection: &str, generation: u64) -> Result<bool> {
        let projection = projection.to_owned();
        self.write(move |connection| Self::swap_in(connection, projection, generation).boxed())
            .await
    }

    async fn swap_in(
        connection: &mut Conn<D>,
        projection: String,
        generation: u64,
    ) -> Result<bool> {
        let projection = projection.as_str();
        let generation = int(generation);
        let mut tx = connection.begin_with(D::BEGIN).await.map_err(db_error)?;
        let swapped = QueryBuilder::<D::Db>::new(
                "UPDATE allframe_projections SET generation = rebuilding, rebuilding = NULL WHERE name = ",
            )
            .push_bind(projection)
            .push(" AND rebuilding = ")
            .push_bind(generation)
            .build()
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        if D::rows_affected(&swapped) != 1 {
            return Ok(false);
        }
        // A runner still working an old generation now fails its
        // compare-and-set and starts over on the new one.
        QueryBuilder::<D::Db>::new(
            "DELETE FROM allframe_projection_checkpoints WHERE projection = ",
        )
        .push_bind(projection)
        .push(" AND generation < ")
        .push_bind(generation)
        .build()
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn drop_old_now(&self, projection: &str) -> Result<()> {
        let projection = projection.to_owned();
        self.write(move |connection| Self::drop_old_in(connection, projection).boxed())
            .await
    }

    async fn drop_old_in(connection: &mut Conn<D>, projection: String) -> Result<()> {
        let projection = projection.as_str();
        let mut tx = connection.begin_with(D::BEGIN).await.map_err(db_error)?;
        for table in ["allframe_projection_index", "allframe_projection_rows"] {
            QueryBuilder::<D::Db>::new(std::format!("DELETE FROM {table} WHERE projection = "))
                .push_bind(projection)
                .push(
                    " AND generation < (SELECT generation FROM allframe_projections WHERE name = ",
                )
                .push_bind(projection)
                .push(")")
                .build()
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn get_now(&self, projection: &str, key: &str) -> Result<Option<String>> {
        QueryBuilder::<D::Db>::new(std::format!(
            "SELECT {} FROM allframe_projection_rows WHERE projection = ",
            D::ROW_OUT
        ))
        .push_bind(projection)
        .push(" AND generation = (SELECT generation FROM allframe_projections WHERE name = ")
        .push_bind(projection)
        .push(") AND key = ")
        .push_bind(key)
        .build_query_scalar()
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)
    }

    async fn list_now(&self, projection: &str, rows: &RowQuery) -> Result<Vec<(String, String)>> {
        crate::store::validate_read(rows.limit)?;
        // `t` is the table the keys and the filter are read from.
        let mut query = match &rows.index {
            None => QueryBuilder::<D::Db>::new(std::format!(
                "SELECT t.key, t.{} FROM allframe_projection_rows t WHERE t.projection = ",
                D::ROW_OUT
            )),
            Some(_) => QueryBuilder::<D::Db>::new(std::format!(
                "SELECT t.key, r.{} FROM allframe_projection_index t \
                     JOIN allframe_projection_rows r ON r.projection = t.projection \
                     AND r.generation = t.generation AND r.key = t.key WHERE t.projection = ",
                D::ROW_OUT
            )),
        };
        query
            .push_bind(projection)
            .push(" AND t.generation = (SELECT generation FROM allframe_projections WHERE name = ")
            .push_bind(projection)
            .push(")");
        if let Some((field, value)) = &rows.index {
            query
                .push(" AND t.field = ")
                .push_bind(field.as_str())
                .push(" AND t.value = ")
                .push_bind(value.as_str());
        }
        if let Some(after) = &rows.after {
            query.push(" AND t.key > ").push_bind(after.as_str());
        }
        query
            .push(" ORDER BY t.key LIMIT ")
            .push(int(rows.limit as u64));
        query
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)
    }

    async fn checkpoint_now(&self, projection: &str) -> Result<u64> {
        let position: Option<i64> = QueryBuilder::<D::Db>::new(
                "SELECT c.position FROM allframe_projection_checkpoints c \
                 JOIN allframe_projections p ON c.projection = p.name AND c.generation = p.generation \
                 WHERE p.name = ",
            )
            .push_bind(projection)
            .build_query_scalar()
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(position.unwrap_or(0) as u64)
    }
}

impl<D: Dialect> ProjectionStore for SqlProjectionStore<D>
where
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    for<'t> &'t str: Encode<'t, D::Db> + Type<D::Db>,
    for<'t> i64: Encode<'t, D::Db> + Decode<'t, D::Db> + Type<D::Db>,
    for<'t> String: Encode<'t, D::Db> + Decode<'t, D::Db> + Type<D::Db>,
    usize: ColumnIndex<<D::Db as Database>::Row>,
{
    fn open<'a>(&'a self, projection: &'a str, version: u32) -> BoxFuture<'a, Result<Generations>> {
        FutureExt::boxed(self.open_now(projection, version))
    }

    fn load<'a>(
        &'a self,
        projection: &'a str,
        generation: u64,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<HashMap<String, String>>> {
        FutureExt::boxed(self.load_now(projection, generation, keys))
    }

    fn commit<'a>(&'a self, batch: Batch<'a>) -> BoxFuture<'a, Result<Committed>> {
        FutureExt::boxed(self.commit_now(batch))
    }

    fn begin_rebuild<'a>(
        &'a self,
        projection: &'a str,
        version: u32,
    ) -> BoxFuture<'a, Result<Generation>> {
        FutureExt::boxed(self.begin_rebuild_now(projection, version))
    }

    fn swap<'a>(&'a self, projection: &'a str, generation: u64) -> BoxFuture<'a, Result<bool>> {
        FutureExt::boxed(self.swap_now(projection, generation))
    }

    fn drop_old<'a>(&'a self, projection: &'a str) -> BoxFuture<'a, Result<()>> {
        FutureExt::boxed(self.drop_old_now(projection))
    }

    fn get<'a>(
        &'a self,
        projection: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>>> {
        FutureExt::boxed(self.get_now(projection, key))
    }

    fn list<'a>(
        &'a self,
        projection: &'a str,
        query: &'a RowQuery,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>>> {
        FutureExt::boxed(self.list_now(projection, query))
    }

    fn checkpoint<'a>(&'a self, projection: &'a str) -> BoxFuture<'a, Result<u64>> {
        FutureExt::boxed(self.checkpoint_now(projection))
    }
}
