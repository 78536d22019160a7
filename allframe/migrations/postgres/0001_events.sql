-- The event log. `position` is assigned from `allframe_head` while its row
-- is locked, so positions commit in order (see the postgres module docs).
CREATE TABLE allframe_events (
    position       BIGINT      PRIMARY KEY,
    stream_id      TEXT        NOT NULL,
    category       TEXT        NOT NULL,
    version        BIGINT      NOT NULL,
    event_type     TEXT        NOT NULL,
    schema_version INTEGER     NOT NULL,
    data           JSONB       NOT NULL,
    event_id       UUID        NOT NULL,
    correlation_id TEXT,
    causation_id   TEXT,
    command        TEXT,
    extra          JSONB,
    recorded_at    TIMESTAMPTZ NOT NULL,
    UNIQUE (stream_id, version)
);

CREATE INDEX allframe_events_by_category ON allframe_events (category, position);
CREATE INDEX allframe_events_by_type ON allframe_events (event_type, position);

-- One row: the last committed position. Every append transaction locks it
-- first, which serializes writers across all nodes.
CREATE TABLE allframe_head (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    position  BIGINT  NOT NULL
);
INSERT INTO allframe_head (singleton, position) VALUES (TRUE, 0);
