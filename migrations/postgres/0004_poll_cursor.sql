-- Flows that poll their backend for order events (`events.poll`): where each poll stands (the
-- backend's cursor, JSON text, saved once a page's events are recorded) and which process
-- polls it until when (Unix ms). Of the processes sharing this store, only the lease holder
-- polls a flow; another takes over when the lease ends.
CREATE TABLE poll_cursors (
    flow            TEXT    PRIMARY KEY,
    cursor          TEXT,
    owner           TEXT    NOT NULL,
    lease_until     BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
);
