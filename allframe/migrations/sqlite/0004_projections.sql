-- Projections (see the store's projections module). Every projection
-- shares these tables; a rebuild writes a new generation beside the live
-- one and swaps by updating `generation`.
CREATE TABLE allframe_projections (
    name       TEXT    PRIMARY KEY,
    generation INTEGER NOT NULL,   -- the generation readers see
    rebuilding INTEGER             -- the generation being rebuilt, if any
);

-- The position of the last event each generation's rows reflect; written
-- in the same transaction as the rows.
CREATE TABLE allframe_projection_checkpoints (
    projection TEXT    NOT NULL,
    generation INTEGER NOT NULL,
    position   INTEGER NOT NULL,
    PRIMARY KEY (projection, generation)
) WITHOUT ROWID;

-- Rows as JSON text, clustered by key for key-ordered pages.
CREATE TABLE allframe_projection_rows (
    projection TEXT    NOT NULL,
    generation INTEGER NOT NULL,
    key        TEXT    NOT NULL,
    row        TEXT    NOT NULL,
    PRIMARY KEY (projection, generation, key)
) WITHOUT ROWID;

-- One entry per indexed field of each row that has a value.
CREATE TABLE allframe_projection_index (
    projection TEXT    NOT NULL,
    generation INTEGER NOT NULL,
    field      TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    PRIMARY KEY (projection, generation, field, value, key)
) WITHOUT ROWID;

-- Finds a row's entries when the row changes.
CREATE INDEX allframe_projection_index_by_key
    ON allframe_projection_index (projection, generation, key);
