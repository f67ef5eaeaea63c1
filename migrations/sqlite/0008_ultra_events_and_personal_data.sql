-- Flipkart Ultra and personal data. Times are Unix milliseconds.

-- An OMS update belongs to one order of one provider in one transaction: two labs may number
-- their orders alike. Rows written before the provider was recorded keep an empty one.
CREATE TABLE oms_updates_keyed (
    connection      TEXT    NOT NULL,
    provider        TEXT    NOT NULL,
    transaction_id  TEXT    NOT NULL,
    order_id        TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    flow            TEXT    NOT NULL,
    outbox_id       INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (connection, provider, transaction_id, order_id, state)
);
INSERT INTO oms_updates_keyed
    SELECT connection, '', transaction_id, order_id, state, flow, outbox_id, created_at FROM oms_updates;
DROP TABLE oms_updates;
ALTER TABLE oms_updates_keyed RENAME TO oms_updates;
CREATE INDEX oms_updates_by_outbox ON oms_updates (outbox_id);

-- The order event (a Beckn callback, personal data included) each pending or dead OMS update
-- was made from, so that sending it again rebuilds it with the mapping and connection of the
-- time; an event whose mapping failed is kept under its dead letter. Deleted once the update
-- is delivered or its dead letter dropped.
CREATE TABLE oms_events (
    outbox_id       INTEGER PRIMARY KEY,
    flow            TEXT    NOT NULL,
    callback        TEXT    NOT NULL,
    body            BLOB    NOT NULL,
    created_at      INTEGER NOT NULL
);

-- A dead message holds back the later messages of its sequence, as a pending one does.
DROP INDEX outbox_sequence;
CREATE INDEX outbox_sequence ON outbox (sequence_key, id)
    WHERE state <> 'delivered' AND sequence_key IS NOT NULL;

-- The message log (personal fields masked) is found by message id within a transaction.
DROP INDEX messages_by_transaction;
CREATE INDEX messages_by_transaction ON messages (flow, transaction_id, message_id);

-- A request's body stays as received only until it is answered, a message's only until it is
-- delivered: then each keeps the masked copy of the message log (`{}` or nothing once that
-- has aged out).
CREATE TRIGGER inbox_done_keeps_the_masked_body AFTER UPDATE OF state ON inbox
WHEN NEW.state = 'done' AND OLD.state <> 'done'
BEGIN
    UPDATE inbox SET body = coalesce((SELECT m.body FROM messages AS m
            WHERE m.flow = NEW.flow AND m.transaction_id = NEW.transaction_id
            AND m.message_id = NEW.message_id AND m.direction = 'in' AND m.action = NEW.action
            ORDER BY m.id DESC LIMIT 1), CAST('{}' AS BLOB))
        WHERE flow = NEW.flow AND action = NEW.action AND message_id = NEW.message_id;
END;

CREATE TRIGGER outbox_delivered_keeps_the_masked_body AFTER UPDATE OF state ON outbox
WHEN NEW.state = 'delivered' AND OLD.state <> 'delivered'
BEGIN
    UPDATE outbox SET body = coalesce((SELECT m.body FROM messages AS m
            WHERE m.flow = NEW.flow AND m.transaction_id = NEW.transaction_id
            AND m.message_id = NEW.message_id AND m.direction = 'out' AND m.action = NEW.action
            ORDER BY m.id DESC LIMIT 1), X'')
        WHERE id = NEW.id;
    DELETE FROM oms_events WHERE outbox_id = NEW.id;
END;

CREATE TRIGGER outbox_dropped_forgets_its_order_event AFTER DELETE ON outbox
BEGIN
    DELETE FROM oms_events WHERE outbox_id = OLD.id;
END;
