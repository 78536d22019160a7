//! Projection rows in the SQLite file of the events.
//!
//! Batches are written on the store's read pool in `BEGIN IMMEDIATE`
//! transactions: SQLite's single write lock orders them against the event
//! writer and any other process on the file, and WAL readers never wait
//! for them. Rows are JSON text; keys compare bytewise (`BINARY`).

use std::sync::Arc;

use super::ProjectionStore;
use super::sql::SqlProjectionStore;
use crate::store::SqliteStore;
use crate::store::sqlite::SqliteDialect;

impl SqliteStore {
    /// This store's projection storage: tables in the same file.
    pub(crate) fn projection_rows(&self) -> Arc<dyn ProjectionStore> {
        Arc::new(SqlProjectionStore::<SqliteDialect>::new(
            self.pool().clone(),
        ))
    }
}
