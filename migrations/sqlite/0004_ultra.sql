-- Flipkart Ultra: ordered delivery of an order's OMS updates, the states reported per order,
-- and users signed in through a buyer app. Times are Unix milliseconds.

-- Messages sharing a sequence key are sent one at a time, oldest first.
ALTER TABLE outbox ADD COLUMN sequence_key TEXT;
CREATE INDEX outbox_sequence ON outbox (sequence_key, id)
    WHERE state = 'pending' AND sequence_key IS NOT NULL;

-- One row per OMS state queued for an order: a repeat finds it, and the order of states is
-- checked against it. Kept beyond the message retention: it is the order's history at Ultra.
CREATE TABLE oms_updates (
    connection      TEXT    NOT NULL,
    order_id        TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    flow            TEXT    NOT NULL,
    transaction_id  TEXT    NOT NULL,
    outbox_id       INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (connection, order_id, state)
);

CREATE TABLE ultra_users (
    session         TEXT    PRIMARY KEY,
    connection      TEXT    NOT NULL,
    identity_token  TEXT    NOT NULL,
    mobile          TEXT,
    email           TEXT,
    created_at      INTEGER NOT NULL
);
