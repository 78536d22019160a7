-- The event log. `position` is the global order (the rowid), assigned by
-- the single writer inside its transaction.
CREATE TABLE allframe_events (
    position       INTEGER PRIMARY KEY,
    stream_id      TEXT    NOT NULL,
    category       TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    data           TEXT    NOT NULL,
    event_id       BLOB    NOT NULL,
    correlation_id TEXT,
    causation_id   TEXT,
    command        TEXT,
    extra          TEXT,
    recorded_at    INTEGER NOT NULL,
    UNIQUE (stream_id, version)
);

CREATE INDEX allframe_events_by_category ON allframe_events (category, position);
CREATE INDEX allframe_events_by_type ON allframe_events (event_type, position);
