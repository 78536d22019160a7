-- Projections (see the store's projections module). Every projection
-- shares these tables; a rebuild writes a new generation beside the live
-- one and swaps by updating `generation`. Keys and index values are
-- COLLATE "C" so they order bytewise, as in every backend.
CREATE TABLE allframe_projections (
    name       TEXT   PRIMARY KEY,
    generation BIGINT NOT NULL,   -- the generation readers see
    rebuilding BIGINT             -- the generation being rebuilt, if any
);

-- The position of the last event each generation's rows reflect; written
-- in the same transaction as the rows.
CREATE TABLE allframe_projection_checkpoints (
    projection TEXT   NOT NULL,
    generation BIGINT NOT NULL,
    position   BIGINT NOT NULL,
    PRIMARY KEY (projection, generation)
);

CREATE TABLE allframe_projection_rows (
    projection TEXT              NOT NULL,
    generation BIGINT            NOT NULL,
    key        TEXT COLLATE "C"  NOT NULL,
    row        JSONB             NOT NULL,
    PRIMARY KEY (projection, generation, key)
);

-- One entry per indexed field of each row that has a value.
CREATE TABLE allframe_projection_index (
    projection TEXT              NOT NULL,
    generation BIGINT            NOT NULL,
    field      TEXT              NOT NULL,
    value      TEXT COLLATE "C"  NOT NULL,
    key        TEXT COLLATE "C"  NOT NULL,
    PRIMARY KEY (projection, generation, field, value, key)
);

-- Finds a row's entries when the row changes.
CREATE INDEX allframe_projection_index_by_key
    ON allframe_projection_index (projection, generation, key);
