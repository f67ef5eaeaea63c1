-- Requests answered with a NACK, for the console: what was refused, why (Beckn code, HTTP
-- status, message, path), by whom it claimed to come, and its body masked as the message log
-- masks it, cut short. Anyone can cause a NACK, so the adapter keeps a bounded number of these
-- (the newest; older ones deleted as new ones come), writes them at a bounded rate, and purges
-- them with the message log. Times are Unix milliseconds.
CREATE TABLE nacks (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    flow            TEXT    NOT NULL,
    role            TEXT    NOT NULL,
    action          TEXT    NOT NULL,
    transaction_id  TEXT    NOT NULL,
    message_id      TEXT    NOT NULL,
    counterpart     TEXT    NOT NULL,
    code            TEXT    NOT NULL,
    status          INTEGER NOT NULL,
    error           TEXT    NOT NULL,
    path            TEXT,
    headers         TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    body_bytes      INTEGER NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE INDEX nacks_by_transaction ON nacks (flow, transaction_id);
CREATE INDEX nacks_by_age ON nacks (created_at);

-- An order the order poller saw settle, once its state row is purged with the other finished
-- data: still never asked again.
ALTER TABLE transactions ADD COLUMN order_settled BOOLEAN NOT NULL DEFAULT FALSE;
