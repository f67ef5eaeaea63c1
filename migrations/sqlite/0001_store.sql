-- The adapter's durable state: transactions, the message log, idempotency records (inbox) and
-- the outbox of messages still to deliver. Times are Unix milliseconds.

CREATE TABLE transactions (
    flow            TEXT    NOT NULL,
    transaction_id  TEXT    NOT NULL,
    role            TEXT    NOT NULL,
    counterpart     TEXT,
    erp_order_id    TEXT,
    state           TEXT,
    identity_token  TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (flow, transaction_id)
);

CREATE TABLE messages (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    flow            TEXT    NOT NULL,
    direction       TEXT    NOT NULL CHECK (direction IN ('in', 'out')),
    action          TEXT    NOT NULL,
    transaction_id  TEXT    NOT NULL,
    message_id      TEXT    NOT NULL,
    headers         TEXT    NOT NULL,
    body            BLOB    NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE INDEX messages_by_transaction ON messages (flow, transaction_id);
CREATE INDEX messages_by_age ON messages (created_at);

-- One row per accepted request: a duplicate message id finds it and is not run again.
CREATE TABLE inbox (
    flow            TEXT    NOT NULL,
    action          TEXT    NOT NULL,
    message_id      TEXT    NOT NULL,
    transaction_id  TEXT    NOT NULL,
    body            BLOB    NOT NULL,
    callback_base   TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('accepted', 'done')),
    received_at     INTEGER NOT NULL,
    done_at         INTEGER,
    PRIMARY KEY (flow, action, message_id)
);
CREATE INDEX inbox_unfinished ON inbox (state) WHERE state = 'accepted';

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    flow            TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    url             TEXT    NOT NULL,
    action          TEXT    NOT NULL,
    transaction_id  TEXT    NOT NULL,
    message_id      TEXT    NOT NULL,
    body            BLOB    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    deadline        INTEGER,
    claimed_by      TEXT,
    claimed_until   INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    finished_at     INTEGER
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX outbox_dead ON outbox (id) WHERE state = 'dead';
