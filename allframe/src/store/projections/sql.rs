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

/// Rows per multi-row statement, largest first: a few fixed sizes keep the
/// number of distinct statements (and so of prepared statements) small.
pub(super) const CHUNKS: [usize; 4] = [256, 32, 4, 1];

/// Splits `items` greedily into chunks whose lengths are all in [`CHUNKS`].
pub(super) fn chunks<T>(mut items: &[T]) -> Vec<&[T]> {
    let mut chunks = Vec::new();
    for size in CHUNKS {
        while items.len() >= size {
            let (chunk, rest) = items.split_at(size);
            chunks.push(chunk);
            items = rest;
        }
    }
    chunks
}

/// `u64` positions and generations as SQL `BIGINT`.
pub(super) fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Defines a SQL projection store over a connection pool.
///
/// `begin` starts a writing transaction, `lock` is appended to the select
/// that reads a projection's generations before changing them, `row_in` is
/// appended after each bound JSON row and `row_out` selects one as text.
macro_rules! sql_projection_store {
    (
        $(#[$doc:meta])*
        store: $store:ident,
        database: $db:ty,
        begin: $begin:expr,
        lock: $lock:expr,
        row_in: $row_in:expr,
        row_out: $row_out:expr $(,)?
    ) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub(crate) struct $store {
            pool: ::sqlx::Pool<$db>,
        }

        impl $store {
            pub(crate) fn new(pool: ::sqlx::Pool<$db>) -> Self {
                Self { pool }
            }

            async fn open_now(&self, projection: &str) -> $crate::store::Result<$crate::store::projections::Generations> {
                use $crate::store::sql::db_error;
                let mut tx = self.pool.begin_with($begin).await.map_err(db_error)?;
                let created = ::sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO allframe_projections (name, generation) VALUES (",
                )
                .push_bind(projection)
                .push(", 1) ON CONFLICT (name) DO NOTHING")
                .build()
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
                if created.rows_affected() == 1 {
                    ::sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO allframe_projection_checkpoints (projection, generation, position) VALUES (",
                    )
                    .push_bind(projection)
                    .push(", 1, 0)")
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                }
                let (live, rebuilding, live_at, rebuilding_at): (i64, Option<i64>, Option<i64>, Option<i64>) =
                    ::sqlx::QueryBuilder::<$db>::new(
                        "SELECT p.generation, p.rebuilding, l.position, r.position \
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
                let generation = |number: i64, at: Option<i64>| {
                    $crate::store::projections::Generation::new(number as u64, at.unwrap_or(0) as u64)
                };
                Ok($crate::store::projections::Generations {
                    live: generation(live, live_at),
                    rebuilding: rebuilding.map(|number| generation(number, rebuilding_at)),
                })
            }

            async fn load_now(
                &self,
                projection: &str,
                generation: u64,
                keys: &[String],
            ) -> $crate::store::Result<::std::collections::HashMap<String, String>> {
                let mut rows = ::std::collections::HashMap::with_capacity(keys.len());
                for chunk in $crate::store::projections::sql::chunks(keys) {
                    let mut query = ::sqlx::QueryBuilder::<$db>::new(
                        ::std::format!("SELECT key, {} FROM allframe_projection_rows WHERE projection = ", $row_out),
                    );
                    query
                        .push_bind(projection)
                        .push(" AND generation = ")
                        .push_bind($crate::store::projections::sql::int(generation))
                        .push(" AND key IN (");
                    let mut list = query.separated(", ");
                    for key in chunk {
                        list.push_bind(key.as_str());
                    }
                    query.push(")");
                    let found: Vec<(String, String)> = query
                        .build_query_as()
                        .fetch_all(&self.pool)
                        .await
                        .map_err($crate::store::sql::db_error)?;
                    rows.extend(found);
                }
                Ok(rows)
            }

            async fn commit_now(
                &self,
                batch: $crate::store::projections::Batch<'_>,
            ) -> $crate::store::Result<$crate::store::projections::Committed> {
                use $crate::store::projections::sql::{chunks, int};
                use $crate::store::sql::db_error;
                let mut tx = self.pool.begin_with($begin).await.map_err(db_error)?;
                // First, so the row lock (PostgreSQL) or the write lock
                // (SQLite) is held from here to the commit.
                let moved = ::sqlx::QueryBuilder::<$db>::new(
                    "UPDATE allframe_projection_checkpoints SET position = ",
                )
                .push_bind(int(batch.to))
                .push(" WHERE projection = ")
                .push_bind(batch.projection)
                .push(" AND generation = ")
                .push_bind(int(batch.generation))
                .push(" AND position = ")
                .push_bind(int(batch.from))
                .build()
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
                if moved.rows_affected() != 1 {
                    return Ok($crate::store::projections::Committed::Moved);
                }
                let generation = int(batch.generation);
                let scope = |query: &mut ::sqlx::QueryBuilder<$db>| {
                    query
                        .push(" WHERE projection = ")
                        .push_bind(batch.projection.to_owned())
                        .push(" AND generation = ")
                        .push_bind(generation)
                        .push(" AND key IN (");
                };
                for chunk in chunks(batch.writes) {
                    if batch.indexed {
                        let mut query = ::sqlx::QueryBuilder::<$db>::new("DELETE FROM allframe_projection_index");
                        scope(&mut query);
                        let mut list = query.separated(", ");
                        for write in chunk {
                            list.push_bind(write.key.as_str());
                        }
                        query.push(")").build().execute(&mut *tx).await.map_err(db_error)?;
                    }
                    let deleted: Vec<&str> = chunk
                        .iter()
                        .filter(|write| write.row.is_none())
                        .map(|write| write.key.as_str())
                        .collect();
                    if !deleted.is_empty() {
                        let mut query = ::sqlx::QueryBuilder::<$db>::new("DELETE FROM allframe_projection_rows");
                        scope(&mut query);
                        let mut list = query.separated(", ");
                        for key in deleted {
                            list.push_bind(key);
                        }
                        query.push(")").build().execute(&mut *tx).await.map_err(db_error)?;
                    }
                }
                let upserted: Vec<(&str, &str)> = batch
                    .writes
                    .iter()
                    .filter_map(|write| write.row.as_deref().map(|row| (write.key.as_str(), row)))
                    .collect();
                for chunk in chunks(&upserted) {
                    let mut query = ::sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO allframe_projection_rows (projection, generation, key, row) ",
                    );
                    query.push_values(chunk, |mut values, (key, row)| {
                        values
                            .push_bind(batch.projection)
                            .push_bind(generation)
                            .push_bind(*key)
                            .push_bind(*row)
                            .push_unseparated($row_in);
                    });
                    query
                        .push(" ON CONFLICT (projection, generation, key) DO UPDATE SET row = excluded.row")
                        .build()
                        .execute(&mut *tx)
                        .await
                        .map_err(db_error)?;
                }
                let entries: Vec<(&str, &str, &str)> = batch
                    .writes
                    .iter()
                    .flat_map(|write| {
                        write
                            .index
                            .iter()
                            .map(|(field, value)| (*field, value.as_str(), write.key.as_str()))
                    })
                    .collect();
                for chunk in chunks(&entries) {
                    let mut query = ::sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO allframe_projection_index (projection, generation, field, value, key) ",
                    );
                    query.push_values(chunk, |mut values, (field, value, key)| {
                        values
                            .push_bind(batch.projection)
                            .push_bind(generation)
                            .push_bind(*field)
                            .push_bind(*value)
                            .push_bind(*key);
                    });
                    query.build().execute(&mut *tx).await.map_err(db_error)?;
                }
                tx.commit().await.map_err(db_error)?;
                Ok($crate::store::projections::Committed::Done)
            }

            async fn begin_rebuild_now(
                &self,
                projection: &str,
            ) -> $crate::store::Result<$crate::store::projections::Generation> {
                use $crate::store::sql::db_error;
                self.open_now(projection).await?;
                let mut tx = self.pool.begin_with($begin).await.map_err(db_error)?;
                let (live, rebuilding): (i64, Option<i64>) = ::sqlx::QueryBuilder::<$db>::new(
                    "SELECT generation, rebuilding FROM allframe_projections WHERE name = ",
                )
                .push_bind(projection)
                .push($lock)
                .build_query_as()
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error)?;
                if let Some(number) = rebuilding {
                    let at: i64 = ::sqlx::QueryBuilder::<$db>::new(
                        "SELECT position FROM allframe_projection_checkpoints WHERE projection = ",
                    )
                    .push_bind(projection)
                    .push(" AND generation = ")
                    .push_bind(number)
                    .build_query_scalar()
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db_error)?;
                    tx.commit().await.map_err(db_error)?;
                    return Ok($crate::store::projections::Generation::new(number as u64, at as u64));
                }
                // Every older generation is below the live one, so this
                // number was never used.
                let number = live + 1;
                ::sqlx::QueryBuilder::<$db>::new("UPDATE allframe_projections SET rebuilding = ")
                    .push_bind(number)
                    .push(" WHERE name = ")
                    .push_bind(projection)
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                ::sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO allframe_projection_checkpoints (projection, generation, position) VALUES (",
                )
                .push_bind(projection)
                .push(", ")
                .push_bind(number)
                .push(", 0)")
                .build()
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
                tx.commit().await.map_err(db_error)?;
                Ok($crate::store::projections::Generation::new(number as u64, 0))
            }

            async fn swap_now(&self, projection: &str, generation: u64) -> $crate::store::Result<bool> {
                use $crate::store::sql::db_error;
                let generation = $crate::store::projections::sql::int(generation);
                let mut tx = self.pool.begin_with($begin).await.map_err(db_error)?;
                let swapped = ::sqlx::QueryBuilder::<$db>::new(
                    "UPDATE allframe_projections SET generation = rebuilding, rebuilding = NULL WHERE name = ",
                )
                .push_bind(projection)
                .push(" AND rebuilding = ")
                .push_bind(generation)
                .build()
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
                if swapped.rows_affected() != 1 {
                    return Ok(false);
                }
                // A runner still working an old generation now fails its
                // compare-and-set and starts over on the new one.
                ::sqlx::QueryBuilder::<$db>::new(
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

            async fn drop_old_now(&self, projection: &str) -> $crate::store::Result<()> {
                use $crate::store::sql::db_error;
                for table in ["allframe_projection_index", "allframe_projection_rows"] {
                    ::sqlx::QueryBuilder::<$db>::new(::std::format!("DELETE FROM {table} WHERE projection = "))
                        .push_bind(projection)
                        .push(" AND generation < (SELECT generation FROM allframe_projections WHERE name = ")
                        .push_bind(projection)
                        .push(")")
                        .build()
                        .execute(&self.pool)
                        .await
                        .map_err(db_error)?;
                }
                Ok(())
            }

            async fn get_now(&self, projection: &str, key: &str) -> $crate::store::Result<Option<String>> {
                ::sqlx::QueryBuilder::<$db>::new(::std::format!(
                    "SELECT {} FROM allframe_projection_rows WHERE projection = ",
                    $row_out
                ))
                .push_bind(projection)
                .push(" AND generation = (SELECT generation FROM allframe_projections WHERE name = ")
                .push_bind(projection)
                .push(") AND key = ")
                .push_bind(key)
                .build_query_scalar()
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::store::sql::db_error)
            }

            async fn list_now(
                &self,
                projection: &str,
                rows: &$crate::store::projections::RowQuery,
            ) -> $crate::store::Result<Vec<(String, String)>> {
                $crate::store::validate_read(rows.limit)?;
                // `t` is the table the keys and the filter are read from.
                let mut query = match &rows.index {
                    None => ::sqlx::QueryBuilder::<$db>::new(::std::format!(
                        "SELECT t.key, t.{} FROM allframe_projection_rows t WHERE t.projection = ",
                        $row_out
                    )),
                    Some(_) => ::sqlx::QueryBuilder::<$db>::new(::std::format!(
                        "SELECT t.key, r.{} FROM allframe_projection_index t \
                         JOIN allframe_projection_rows r ON r.projection = t.projection \
                         AND r.generation = t.generation AND r.key = t.key WHERE t.projection = ",
                        $row_out
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
                    .push_bind($crate::store::projections::sql::int(rows.limit as u64));
                query
                    .build_query_as()
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::store::sql::db_error)
            }

            async fn checkpoint_now(&self, projection: &str) -> $crate::store::Result<u64> {
                let position: Option<i64> = ::sqlx::QueryBuilder::<$db>::new(
                    "SELECT c.position FROM allframe_projection_checkpoints c \
                     JOIN allframe_projections p ON c.projection = p.name AND c.generation = p.generation \
                     WHERE p.name = ",
                )
                .push_bind(projection)
                .build_query_scalar()
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::store::sql::db_error)?;
                Ok(position.unwrap_or(0) as u64)
            }
        }

        impl $crate::store::projections::ProjectionStore for $store {
            fn open<'a>(&'a self, projection: &'a str) -> ::futures_util::future::BoxFuture<'a, $crate::store::Result<$crate::store::projections::Generations>> {
                ::futures_util::FutureExt::boxed(self.open_now(projection))
            }

            fn load<'a>(
                &'a self,
                projection: &'a str,
                generation: u64,
                keys: &'a [String],
            ) -> ::futures_util::future::BoxFuture<'a, $crate::store::Result<::std::collections::HashMap<String, String>>> {
                ::futures_util::FutureExt::boxed(self.load_now(projection, generation, keys))
            }

            fn commit<'a>(
                &'a self,
                batch: $crate::store::projections::Batch<'a>,
            ) -> ::futures_util::future::BoxFuture<'a, $crate::store::Result<$crate::store::projections::Committed>> {
                ::futures_util::FutureExt::boxed(self.commit_now(batch))
            }

            fn begin_rebuild<'a>(&'a self, projection: &'a str) -> ::futures_util::future::BoxFuture<'a, $crate::store::Result<$crate::store::projections::Generation>> {
                ::futures_util::FutureExt::boxed(self.begin_rebuild_now(projection))
            }

            fn swap<'a>(&'a self, projection: &'a str, generation: u64) -> ::futures_util::future::BoxFuture<'a, $crate::store::Result<bool>> {
                ::futures_util::FutureExt::boxed(self.swap_now(projection, generation))
            }

            fn drop_old<'a>(&'a self, projection: &'a str) -> ::futures_util::future::BoxFuture<'a, $crate::store::Result<()>> {
                ::futures_util::FutureExt::boxed(self.drop_old_now(projection))
            }

            fn get<'a>(&'a self, projection: &'a str, key: &'a str) -> ::futures_util::future::BoxFuture<'a, $crate::store::Result<Option<String>>> {
                ::futures_util::FutureExt::boxed(self.get_now(projection, key))
            }

            fn list<'a>(
                &'a self,
                projection: &'a str,
                query: &'a $crate::store::projections::RowQuery,
            ) -> ::futures_util::future::BoxFuture<'a, $crate::store::Result<Vec<(String, String)>>> {
                ::futures_util::FutureExt::boxed(self.list_now(projection, query))
            }

            fn checkpoint<'a>(&'a self, projection: &'a str) -> ::futures_util::future::BoxFuture<'a, $crate::store::Result<u64>> {
                ::futures_util::FutureExt::boxed(self.checkpoint_now(projection))
            }
        }
    };
}
pub(super) use sql_projection_store;
