-- What a flow remembers of a transaction (`remember:` on an action): one row per name, the
-- value JSON text, read back by later actions and backend events as `transaction.<name>`.
-- Dropped by the retention once not written for the retention period.
CREATE TABLE transaction_memory (
    flow            TEXT    NOT NULL,
    transaction_id  TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    value           TEXT    NOT NULL,
    updated_at      BIGINT  NOT NULL,
    PRIMARY KEY (flow, transaction_id, name)
);
CREATE INDEX transaction_memory_by_age ON transaction_memory (updated_at);
