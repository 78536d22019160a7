//! The conformance suite on the in-memory backend.

use allframe::store::MemoryStore;

allframe::store_conformance_tests!(async { MemoryStore::new() });
