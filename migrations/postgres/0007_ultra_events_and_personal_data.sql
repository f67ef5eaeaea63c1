-- Flipkart Ultra and personal data. Times are Unix milliseconds.

-- An OMS update belongs to one order of one provider in one transaction: two labs may number
-- their orders alike. Rows written before the provider was recorded keep an empty one.
ALTER TABLE oms_updates ADD COLUMN provider TEXT NOT NULL DEFAULT '';
ALTER TABLE oms_updates DROP CONSTRAINT oms_updates_pkey;
ALTER TABLE oms_updates ADD PRIMARY KEY (connection, provider, transaction_id, order_id, state);
CREATE INDEX oms_updates_by_outbox ON oms_updates (outbox_id);

-- The order event (a Beckn callback, personal data included) each pending or dead OMS update
-- was made from, so that sending it again rebuilds it with the mapping and connection of the
-- time; an event whose mapping failed is kept under its dead letter. Deleted once the update
-- is delivered or its dead letter dropped.
CREATE TABLE oms_events (
    outbox_id       BIGINT  PRIMARY KEY,
    flow            TEXT    NOT NULL,
    callback        TEXT    NOT NULL,
    body            BYTEA   NOT NULL,
    created_at      BIGINT  NOT NULL
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
CREATE FUNCTION inbox_done_keeps_the_masked_body() RETURNS trigger AS $$
BEGIN
    IF NEW.state = 'done' AND OLD.state <> 'done' THEN
        NEW.body := coalesce((SELECT m.body FROM messages AS m
            WHERE m.flow = NEW.flow AND m.transaction_id = NEW.transaction_id
            AND m.message_id = NEW.message_id AND m.direction = 'in' AND m.action = NEW.action
            ORDER BY m.id DESC LIMIT 1), convert_to('{}', 'UTF8'));
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER inbox_done_keeps_the_masked_body BEFORE UPDATE OF state ON inbox
    FOR EACH ROW EXECUTE FUNCTION inbox_done_keeps_the_masked_body();

CREATE FUNCTION outbox_delivered_keeps_the_masked_body() RETURNS trigger AS $$
BEGIN
    IF NEW.state = 'delivered' AND OLD.state <> 'delivered' THEN
        NEW.body := coalesce((SELECT m.body FROM messages AS m
            WHERE m.flow = NEW.flow AND m.transaction_id = NEW.transaction_id
            AND m.message_id = NEW.message_id AND m.direction = 'out' AND m.action = NEW.action
            ORDER BY m.id DESC LIMIT 1), ''::bytea);
        DELETE FROM oms_events WHERE outbox_id = NEW.id;
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER outbox_delivered_keeps_the_masked_body BEFORE UPDATE OF state ON outbox
    FOR EACH ROW EXECUTE FUNCTION outbox_delivered_keeps_the_masked_body();

CREATE FUNCTION outbox_dropped_forgets_its_order_event() RETURNS trigger AS $$
BEGIN
    DELETE FROM oms_events WHERE outbox_id = OLD.id;
    RETURN OLD;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER outbox_dropped_forgets_its_order_event AFTER DELETE ON outbox
    FOR EACH ROW EXECUTE FUNCTION outbox_dropped_forgets_its_order_event();
