-- The kinds of events the log holds, for the start-up check that every one
-- of them decodes: each append transaction adds the kinds it writes (in
-- the statement that writes the events), so the check reads this small
-- table rather than the log. Filled here from the events already stored.
CREATE TABLE allframe_event_types (
    category       TEXT    NOT NULL,
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    PRIMARY KEY (category, event_type, schema_version)
);

INSERT INTO allframe_event_types (category, event_type, schema_version)
SELECT DISTINCT category, event_type, schema_version FROM allframe_events;
