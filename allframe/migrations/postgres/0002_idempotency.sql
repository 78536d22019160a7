-- Idempotency records, one per key (see the store's idempotency module).
-- Times come from the server's clock. `fingerprint` is NULL for a key
-- completed without a claim; fingerprint and response are bytes so any
-- string round-trips exactly (text cannot hold U+0000).
CREATE TABLE allframe_idempotency (
    key         TEXT        PRIMARY KEY,
    fingerprint BYTEA,
    state       TEXT        NOT NULL CHECK (state IN ('in_flight', 'completed')),
    response    BYTEA,
    created_at  TIMESTAMPTZ NOT NULL,
    lease_until TIMESTAMPTZ NOT NULL,
    CHECK ((state = 'completed') = (response IS NOT NULL))
);

-- Purging deletes by age.
CREATE INDEX allframe_idempotency_by_age ON allframe_idempotency (created_at);
