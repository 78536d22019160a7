-- Aggregate snapshots, at most one per stream (see the store's snapshots
-- module): the state after the event at `version` (global `position`),
-- as JSON, with the state version and fingerprint a reader checks before
-- decoding it. `taken_at` is in Unix milliseconds. A cache of the log,
-- never a source of truth: deleting rows only makes loads slower.
CREATE TABLE allframe_snapshots (
    stream_id     TEXT    PRIMARY KEY,
    version       INTEGER NOT NULL,
    position      INTEGER NOT NULL,
    state_version INTEGER NOT NULL,
    fingerprint   TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    taken_at      INTEGER NOT NULL
);
