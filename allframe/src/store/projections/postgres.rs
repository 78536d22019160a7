//! Projection rows in the PostgreSQL database of the events.
//!
//! Batches are written on the store's pool in READ COMMITTED transactions
//! that start by updating their generation's checkpoint row, a
//! compare-and-set that also locks it: two nodes running one projection
//! serialize on that row, and the second one's update matches nothing once
//! the first has committed. Rows are `JSONB`; keys are `COLLATE "C"` so
//! they compare bytewise, as in every backend.

use std::sync::Arc;

use super::ProjectionStore;
use super::sql::SqlProjectionStore;
use crate::store::PostgresStore;
use crate::store::postgres::PostgresDialect;

impl PostgresStore {
    /// This store's projection storage: tables in the same schema.
    pub(crate) fn projection_rows(&self) -> Arc<dyn ProjectionStore> {
        Arc::new(SqlProjectionStore::<PostgresDialect>::new(
            self.pool().clone(),
        ))
    }
}
