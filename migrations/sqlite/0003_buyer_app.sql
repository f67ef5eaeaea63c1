-- Buyer-app (BAP) state: every request a buyer app sent (what it waits for, how its answers
-- reach the app) and every callback it received, filed under that request or its transaction.
-- A buyer app's transaction remembers the BPP it is with (`counterpart`, `counterpart_uri`).
-- Times are Unix milliseconds.

ALTER TABLE transactions ADD COLUMN counterpart_uri TEXT;

CREATE TABLE bap_requests (
    flow            TEXT    NOT NULL,
    message_id      TEXT    NOT NULL,
    transaction_id  TEXT    NOT NULL,
    action          TEXT    NOT NULL,
    mode            TEXT    NOT NULL,
    recipient       TEXT    NOT NULL,
    url             TEXT    NOT NULL,
    -- JSON array of the BPP ids expected to answer
    expected        TEXT    NOT NULL,
    body            BLOB    NOT NULL,
    -- JSON: the recipient's synchronous answer (ACK, NACK with its error, or why it failed)
    ack             TEXT,
    expires_at      INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (flow, message_id)
);
CREATE INDEX bap_requests_by_age ON bap_requests (created_at);

-- Callbacks as filed: answers to a request, unsolicited ones of a known transaction, and the
-- late and unknown ones (NACKed, kept for inspection). A repeat of the same message (action,
-- message id, sender and body digest) is filed once.
CREATE TABLE bap_callbacks (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    flow            TEXT    NOT NULL,
    action          TEXT    NOT NULL,
    message_id      TEXT    NOT NULL,
    transaction_id  TEXT    NOT NULL,
    bpp_id          TEXT    NOT NULL,
    via             TEXT,
    digest          TEXT    NOT NULL,
    disposition     TEXT    NOT NULL
                    CHECK (disposition IN ('answer', 'unsolicited', 'late', 'unknown')),
    body            BLOB    NOT NULL,
    received_at     INTEGER NOT NULL,
    UNIQUE (flow, action, message_id, bpp_id, digest)
);
CREATE INDEX bap_callbacks_by_message ON bap_callbacks (flow, message_id);
CREATE INDEX bap_callbacks_by_transaction ON bap_callbacks (flow, transaction_id);
CREATE INDEX bap_callbacks_by_age ON bap_callbacks (received_at);
