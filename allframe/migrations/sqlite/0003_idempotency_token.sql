-- The token of the claim that holds an idempotency record (see the store's
-- idempotency module): every claim that acquires a key writes a new random
-- token, and only that token can complete or release the key, so a caller
-- whose lease ran out and was taken over can no longer commit. Records
-- written before this migration have none; an in-flight one can then only
-- be taken over once its lease runs out, never completed. Keys are no longer
-- completed without a claim, so new records always have a fingerprint.
ALTER TABLE allframe_idempotency ADD COLUMN token TEXT;
