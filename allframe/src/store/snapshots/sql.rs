//! Snapshots in the `allframe_snapshots` table of a SQL store, one
//! definition for SQLite and PostgreSQL. Reads use the pool; a save is one
//! upsert, on the store's writer where the database has one write lock
//! (SQLite), else on a connection of the pool.

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, QueryBuilder, Type};

use super::{Snapshot, SnapshotStore};
use crate::store::sql::{Dialect, SqlStore, db_error, to_i64, write_on};
use crate::store::{Result, StoreError, validate_stream_id};

/// Keeps the new row unless the kept one outranks it
/// ([`Snapshot::outranks`]).
const UPSERT_END: &str = " ON CONFLICT (stream_id) DO UPDATE SET \
     version = excluded.version, position = excluded.position, \
     state_version = excluded.state_version, fingerprint = excluded.fingerprint, \
     state = excluded.state, taken_at = excluded.taken_at \
     WHERE NOT (allframe_snapshots.state_version = excluded.state_version \
     AND allframe_snapshots.fingerprint = excluded.fingerprint \
     AND allframe_snapshots.version > excluded.version)";

/// A stored row: version, position, state version, fingerprint, state,
/// taken at.
type Row = (i64, i64, i64, String, String, i64);

fn snapshot(stream_id: &str, row: Row) -> Result<Snapshot> {
    let (version, position, state_version, fingerprint, state, taken_at) = row;
    let corrupt =
        |what: &str| StoreError::Backend(format!("snapshot of `{stream_id}`: {what}").into());
    Ok(Snapshot {
        stream_id: stream_id.to_owned(),
        version: u64::try_from(version).map_err(|_| corrupt("negative version"))?,
        position: u64::try_from(position).map_err(|_| corrupt("negative position"))?,
        state_version: u32::try_from(state_version)
            .map_err(|_| corrupt("state version out of range"))?,
        fingerprint,
        state,
        taken_at: chrono::DateTime::from_timestamp_millis(taken_at)
            .ok_or_else(|| corrupt("time out of range"))?,
    })
}

impl<D: Dialect> SnapshotStore for SqlStore<D>
where
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    for<'t> &'t str: Encode<'t, D::Db> + Type<D::Db>,
    for<'t> i64: Encode<'t, D::Db> + Decode<'t, D::Db> + Type<D::Db>,
    for<'t> String: Encode<'t, D::Db> + Decode<'t, D::Db> + Type<D::Db>,
    usize: ColumnIndex<<D::Db as Database>::Row>,
{
    fn load_snapshot<'a>(&'a self, stream_id: &'a str) -> BoxFuture<'a, Result<Option<Snapshot>>> {
        async move {
            validate_stream_id(stream_id)?;
            let row: Option<Row> = QueryBuilder::<D::Db>::new(
                "SELECT version, position, state_version, fingerprint, state, taken_at \
                 FROM allframe_snapshots WHERE stream_id = ",
            )
            .push_bind(stream_id)
            .build_query_as()
            .fetch_optional(self.pool())
            .await
            .map_err(db_error)?;
            row.map(|row| snapshot(stream_id, row)).transpose()
        }
        .boxed()
    }

    fn save_snapshot(&self, snapshot: Snapshot) -> BoxFuture<'_, Result<bool>> {
        async move {
            validate_stream_id(&snapshot.stream_id)?;
            let writer = D::ONE_WRITER.then_some(&self.inner.writer);
            write_on::<D, _, _>(self.pool(), writer, move |connection| {
                async move {
                    let mut query = QueryBuilder::<D::Db>::new(
                        "INSERT INTO allframe_snapshots \
                         (stream_id, version, position, state_version, fingerprint, state, taken_at) \
                         VALUES (",
                    );
                    let mut values = query.separated(", ");
                    values
                        .push_bind(snapshot.stream_id.as_str())
                        .push_bind(to_i64(snapshot.version))
                        .push_bind(to_i64(snapshot.position))
                        .push_bind(i64::from(snapshot.state_version))
                        .push_bind(snapshot.fingerprint.as_str())
                        .push_bind(snapshot.state.as_str())
                        .push_bind(snapshot.taken_at.timestamp_millis());
                    let done = query
                        .push(")")
                        .push(UPSERT_END)
                        .build()
                        .execute(connection)
                        .await
                        .map_err(db_error)?;
                    Ok(D::rows_affected(&done) > 0)
                }
                .boxed()
            })
            .await
        }
        .boxed()
    }
}
