-- The projection version (`#[projection(version = N)]`) each generation's
-- rows were built by; a changed version rebuilds the projection beside the
-- live generation. Generations built before versions existed are version 1.
ALTER TABLE allframe_projection_checkpoints ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
