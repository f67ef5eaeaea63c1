-- Flows that poll their backend for order events (`events.poll`): where each poll stands (the
-- backend's cursor, JSON text, saved once a page's events are recorded) and which process
-- polls it until when (Unix ms).
CREATE TABLE poll_cursors (
    flow            TEXT    PRIMARY KEY,
    cursor          TEXT,
    owner           TEXT    NOT NULL,
    lease_until     INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
