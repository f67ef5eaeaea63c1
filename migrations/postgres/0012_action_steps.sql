-- The backend calls a provider's action made while answering a request (a JSON array of
-- step, backend, method, path, status or failure, start and duration in ms), one row per
-- answered request, written in the commit that queues its answer. Read by the console's
-- timeline; purged with the message log. Times are Unix milliseconds.
CREATE TABLE action_steps (
    flow            TEXT    NOT NULL,
    transaction_id  TEXT    NOT NULL,
    action          TEXT    NOT NULL,
    message_id      TEXT    NOT NULL,
    steps           TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL
);
CREATE INDEX action_steps_by_transaction ON action_steps (flow, transaction_id);
CREATE INDEX action_steps_by_age ON action_steps (created_at);
