-- The last state the order poller (`events.poll_orders`) saw of each open order: its baseline
-- at first sight, then each change once its event is recorded. `changes` counts the changes
-- saved (an event's id is made of it, so a change seen again after a crash is the same
-- event); `settled` marks a final state, after which the order is no longer asked.
CREATE TABLE order_states (
    flow            TEXT    NOT NULL,
    transaction_id  TEXT    NOT NULL,
    erp_order_id    TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    changes         BIGINT  NOT NULL DEFAULT 0,
    settled         BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at      BIGINT  NOT NULL,
    PRIMARY KEY (flow, transaction_id)
);
