-- The adapter's durable state on PostgreSQL, shared by several adapter processes: the same
-- tables as the SQLite store. Times are Unix milliseconds.

CREATE TABLE transactions (
    flow            TEXT    NOT NULL,
    transaction_id  TEXT    NOT NULL,
    role            TEXT    NOT NULL,
    counterpart     TEXT,
    erp_order_id    TEXT,
    state           TEXT,
    identity_token  TEXT,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    PRIMARY KEY (flow, transaction_id)
);

CREATE TABLE messages (
    id              BIGSERIAL PRIMARY KEY,
    flow            TEXT    NOT NULL,
    direction       TEXT    NOT NULL CHECK (direction IN ('in', 'out')),
    action          TEXT    NOT NULL,
    transaction_id  TEXT    NOT NULL,
    message_id      TEXT    NOT NULL,
    headers         TEXT    NOT NULL,
    body            BYTEA   NOT NULL,
    created_at      BIGINT  NOT NULL
);
CREATE INDEX messages_by_transaction ON messages (flow, transaction_id);
CREATE INDEX messages_by_age ON messages (created_at);

CREATE TABLE inbox (
    flow            TEXT    NOT NULL,
    action          TEXT    NOT NULL,
    message_id      TEXT    NOT NULL,
    transaction_id  TEXT    NOT NULL,
    body            BYTEA   NOT NULL,
    callback_base   TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('accepted', 'done')),
    received_at     BIGINT  NOT NULL,
    done_at         BIGINT,
    claimed_by      TEXT,
    claimed_until   BIGINT,
    PRIMARY KEY (flow, action, message_id)
);
CREATE INDEX inbox_unfinished ON inbox (received_at) WHERE state = 'accepted';

CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    flow            TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    url             TEXT    NOT NULL,
    action          TEXT    NOT NULL,
    transaction_id  TEXT    NOT NULL,
    message_id      TEXT    NOT NULL,
    body            BYTEA   NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    deadline        BIGINT,
    claimed_by      TEXT,
    claimed_until   BIGINT,
    last_error      TEXT,
    created_at      BIGINT  NOT NULL,
    finished_at     BIGINT
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX outbox_dead ON outbox (id) WHERE state = 'dead';
