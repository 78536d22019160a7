-- Idempotency records, one per key (see the store's idempotency module).
-- Times are Unix milliseconds of the host clock. `fingerprint` is NULL for
-- a key completed without a claim; fingerprint and response are bytes so
-- any string round-trips exactly.
CREATE TABLE allframe_idempotency (
    key         TEXT    PRIMARY KEY,
    fingerprint BLOB,
    state       TEXT    NOT NULL CHECK (state IN ('in_flight', 'completed')),
    response    BLOB,
    created_at  INTEGER NOT NULL,
    lease_until INTEGER NOT NULL,
    CHECK ((state = 'completed') = (response IS NOT NULL))
);

-- Purging deletes by age.
CREATE INDEX allframe_idempotency_by_age ON allframe_idempotency (created_at);
