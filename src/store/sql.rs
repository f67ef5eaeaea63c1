//! The store's statements, written once with `$n` parameters (sqlx reads them on both
//! databases; the SQLite writer turns them into `?n`). Where the dialects differ (row locks
//! with `SKIP LOCKED`, `GREATEST` or `max`, JSON, counting by a condition), a [`ByDialect`]
//! holds both texts side by side, built from one template where they share most of it.

/// The SQL dialect of a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

/// A statement each dialect says its own way, with the same parameters.
pub struct ByDialect {
    pub postgres: &'static str,
    pub sqlite: &'static str,
}

impl ByDialect {
    pub fn of(&self, dialect: Dialect) -> &'static str {
        match dialect {
            Dialect::Postgres => self.postgres,
            Dialect::Sqlite => self.sqlite,
        }
    }
}

// The inbox.

pub const INSERT_INBOX: &str = "INSERT INTO inbox (flow, action, message_id, transaction_id, body, \
     callback_base, state, received_at, claimed_by, claimed_until, digest) \
     VALUES ($1, $2, $3, $4, $5, $6, 'accepted', $7, $8, $9, $10) ON CONFLICT DO NOTHING";

pub const INBOX_DIGEST: &str = "SELECT digest, transaction_id FROM inbox \
     WHERE flow = $1 AND action = $2 AND message_id = $3";

/// The transaction is opened by its first request and stays its counterpart's.
pub const OPEN_TRANSACTION: &str = "INSERT INTO transactions (flow, transaction_id, role, \
     counterpart, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5) \
     ON CONFLICT (flow, transaction_id) DO UPDATE SET updated_at = excluded.updated_at \
     WHERE transactions.counterpart IS NULL OR transactions.counterpart = excluded.counterpart";

/// Takes over unfinished requests (lease ended, or all with `$3`): `$1` owner, `$2` lease end,
/// `$4` now, `$5` limit. `$key` names a row; PostgreSQL locks what it takes (`$lock`) and skips
/// what another process is taking.
macro_rules! take_over {
    ($key:literal, $columns:literal, $lock:literal) => {
        concat!(
            "UPDATE inbox SET claimed_by = $1, claimed_until = $2, claim_epoch = claim_epoch + 1 \
             WHERE ",
            $key,
            " IN (SELECT ",
            $columns,
            " FROM inbox WHERE state = 'accepted' \
             AND ($3 OR claimed_until IS NULL OR claimed_until < $4) \
             ORDER BY received_at LIMIT $5",
            $lock,
            ") \
             RETURNING flow, action, message_id, transaction_id, body, callback_base, \
             received_at, claimed_by, claim_epoch"
        )
    };
}

pub const TAKE_OVER: ByDialect = ByDialect {
    postgres: take_over!(
        "(flow, action, message_id)",
        "flow, action, message_id",
        " FOR UPDATE SKIP LOCKED"
    ),
    sqlite: take_over!("rowid", "rowid", ""),
};

/// Extends an accepted request's claim to `$1` (`$greatest`: the larger of two values) while
/// `$5` holds it at epoch `$6`; `$2`-`$4` its key.
macro_rules! renew_request {
    ($greatest:literal) => {
        concat!(
            "UPDATE inbox SET claimed_until = ",
            $greatest,
            "(coalesce(claimed_until, 0), $1) \
             WHERE flow = $2 AND action = $3 AND message_id = $4 AND state = 'accepted' \
             AND claimed_by = $5 AND claim_epoch = $6"
        )
    };
}

pub const RENEW_REQUEST: ByDialect = ByDialect {
    postgres: renew_request!("GREATEST"),
    sqlite: renew_request!("max"),
};

pub const PLACED_ORDER: &str = "SELECT 1 AS found FROM transactions WHERE flow = $1 \
     AND erp_order_id = $2 AND counterpart = $3 LIMIT 1";

pub const LAST_REQUEST: &str = "SELECT body, callback_base FROM inbox WHERE flow = $1 \
     AND transaction_id = $2 AND action <> 'event' ORDER BY received_at DESC LIMIT 1";

/// Marks an accepted request answered, fenced: only the claim that holds it may.
pub const COMPLETE_REQUEST: &str = "UPDATE inbox SET state = 'done', done_at = $1 \
     WHERE flow = $2 AND action = $3 AND message_id = $4 AND state = 'accepted' \
     AND claimed_by = $5 AND claim_epoch = $6";

pub const INSERT_MESSAGE: &str = "INSERT INTO messages (flow, direction, action, transaction_id, \
     message_id, headers, body, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// The backend calls an action made while answering a request, kept with its answer.
pub const INSERT_ACTION_STEPS: &str = "INSERT INTO action_steps (flow, transaction_id, action, \
     message_id, steps, created_at) VALUES ($1, $2, $3, $4, $5, $6)";

// The outbox.

pub const INSERT_OUTBOX: &str = "INSERT INTO outbox (flow, kind, url, action, transaction_id, \
     message_id, body, state, attempts, next_attempt_at, deadline, created_at, sequence_key, \
     claimed_by, claimed_until, last_error, finished_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $14, 0, $8, $9, $10, $11, $12, $13, $15, $16) \
     RETURNING id";

/// Order facts of a callback, noted on its transaction.
/// Claims due messages: `$1` owner, `$2` lease end, `$3` now, `$4` limit. A message waits
/// while an older one of its sequence is not delivered; PostgreSQL locks what it claims
/// (`$lock`) and skips what another process is claiming.
macro_rules! claim {
    ($lock:literal) => {
        concat!(
            "UPDATE outbox SET claimed_by = $1, claimed_until = $2, claim_epoch = claim_epoch + 1 \
             WHERE id IN (SELECT id FROM outbox WHERE state = 'pending' AND next_attempt_at <= $3 \
             AND (claimed_until IS NULL OR claimed_until < $3) \
             AND (sequence_key IS NULL OR NOT EXISTS (SELECT 1 FROM outbox AS earlier \
             WHERE earlier.sequence_key = outbox.sequence_key \
             AND earlier.state <> 'delivered' AND earlier.id < outbox.id)) \
             ORDER BY next_attempt_at LIMIT $4", $lock, ") \
             RETURNING id, flow, kind, url, action, transaction_id, message_id, body, attempts, \
             deadline, claim_epoch, claimed_until"
        )
    };
}

pub const CLAIM: ByDialect = ByDialect {
    postgres: claim!(" FOR UPDATE SKIP LOCKED"),
    sqlite: claim!(""),
};

/// Extends a message's claim to `$1` (`$greatest`: the larger of two values) while `$3` holds
/// it at epoch `$4`; `$2` its id.
macro_rules! renew_delivery {
    ($greatest:literal) => {
        concat!(
            "UPDATE outbox SET claimed_until = ",
            $greatest,
            "(coalesce(claimed_until, 0), $1) \
             WHERE id = $2 AND state = 'pending' AND claimed_by = $3 AND claim_epoch = $4"
        )
    };
}

pub const RENEW_DELIVERY: ByDialect = ByDialect {
    postgres: renew_delivery!("GREATEST"),
    sqlite: renew_delivery!("max"),
};

/// When the earliest pending message falls due (`due`): its next attempt, or the end of its
/// claim. A message waiting behind an older one of its sequence (pending or dead) is not due
/// on its own.
macro_rules! next_due {
    ($greatest:literal) => {
        concat!(
            "SELECT min(",
            $greatest,
            "(next_attempt_at, coalesce(claimed_until, 0))) AS due \
             FROM outbox WHERE state = 'pending' \
             AND (sequence_key IS NULL OR NOT EXISTS (SELECT 1 FROM outbox AS earlier \
             WHERE earlier.sequence_key = outbox.sequence_key \
             AND earlier.state <> 'delivered' AND earlier.id < outbox.id))"
        )
    };
}

pub const NEXT_DUE: ByDialect = ByDialect {
    postgres: next_due!("GREATEST"),
    sqlite: next_due!("max"),
};

/// The outbox's `pending` and `dead` counts.
pub const COUNTS: ByDialect = ByDialect {
    postgres: "SELECT count(*) FILTER (WHERE state = 'pending') AS pending, \
               count(*) FILTER (WHERE state = 'dead') AS dead FROM outbox",
    sqlite: "SELECT coalesce(sum(state = 'pending'), 0) AS pending, \
             coalesce(sum(state = 'dead'), 0) AS dead FROM outbox",
};

pub const NOTE_ORDER: &str = "UPDATE transactions SET erp_order_id = $1, \
     state = coalesce($2, state), updated_at = $3 WHERE flow = $4 AND transaction_id = $5";

pub const DELIVERED: &str = "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, \
     finished_at = $1, claimed_by = NULL, claimed_until = NULL, last_error = NULL \
     WHERE id = $2 AND state = 'pending' AND claimed_by = $3 AND claim_epoch = $4";

pub const RETRY_LATER: &str = "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1, \
     last_error = $2, claimed_by = NULL, claimed_until = NULL \
     WHERE id = $3 AND state = 'pending' AND claimed_by = $4 AND claim_epoch = $5";

pub const BURY: &str = "UPDATE outbox SET state = 'dead', attempts = attempts + 1, \
     last_error = $1, finished_at = $2, claimed_by = NULL, claimed_until = NULL \
     WHERE id = $3 AND state = 'pending' AND claimed_by = $4 AND claim_epoch = $5";

pub const REVIVE: &str = "UPDATE outbox SET state = 'pending', next_attempt_at = $1, \
     deadline = $2, finished_at = NULL WHERE id = $3 AND state = 'dead'";

pub const RELEASE_CLAIMS: &str = "UPDATE outbox SET claimed_by = NULL, claimed_until = NULL, \
     claim_epoch = claim_epoch + 1 \
     WHERE state = 'pending' AND claimed_by IS NOT NULL AND claimed_by <> $1";

pub const DISCARD: &str = "DELETE FROM outbox WHERE id = $1 AND state = 'dead'";

pub const DEAD_LETTERS: &str = "SELECT id, flow, kind, url, action, transaction_id, message_id, \
     attempts, last_error, created_at FROM outbox WHERE state = 'dead' ORDER BY id LIMIT $1";

/// What [`super::Store::purge`] deletes, each older than `$1`.
pub const PURGE: [&str; 11] = [
    "DELETE FROM messages WHERE created_at < $1",
    "DELETE FROM nacks WHERE created_at < $1",
    "DELETE FROM action_steps WHERE created_at < $1",
    "DELETE FROM outbox WHERE state = 'delivered' AND finished_at < $1",
    "DELETE FROM inbox WHERE state = 'done' AND done_at < $1",
    "DELETE FROM bap_requests WHERE created_at < $1",
    "DELETE FROM bap_callbacks WHERE received_at < $1",
    "DELETE FROM ultra_users WHERE created_at < $1",
    "DELETE FROM transaction_memory WHERE updated_at < $1",
    // A settled order's state goes; its transaction keeps that it settled, so that it is
    // never asked again.
    "UPDATE transactions SET order_settled = TRUE WHERE EXISTS (SELECT 1 FROM order_states AS s \
     WHERE s.flow = transactions.flow AND s.transaction_id = transactions.transaction_id \
     AND s.settled AND s.updated_at < $1)",
    "DELETE FROM order_states WHERE settled AND updated_at < $1",
];

// NACKs.

pub const INSERT_NACK: &str = "INSERT INTO nacks (flow, role, action, transaction_id, \
     message_id, counterpart, code, status, error, path, headers, body, body_bytes, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";

/// Keeps the newest `$1` NACK records (by id: ids only grow).
pub const TRIM_NACKS: &str = "DELETE FROM nacks WHERE id <= (SELECT max(id) FROM nacks) - $1";

// Transaction memory.

/// Remembers one value (`$4`, JSON text) under its name, replacing what it held.
pub const REMEMBER: &str = "INSERT INTO transaction_memory (flow, transaction_id, name, value, \
     updated_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (flow, transaction_id, name) \
     DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at";

pub const RECALL: &str = "SELECT name, value FROM transaction_memory \
     WHERE flow = $1 AND transaction_id = $2 ORDER BY name";

pub const ERP_ORDER_ID: &str = "SELECT erp_order_id AS value FROM transactions \
     WHERE flow = $1 AND transaction_id = $2";

// ERP orders.

pub const TRANSACTION_OF_ORDER: &str = "SELECT transaction_id AS value FROM transactions \
     WHERE flow = $1 AND erp_order_id = $2 ORDER BY updated_at DESC LIMIT 1";

/// Orders still asked for their state: the order id known, not cancelled through Beckn (the
/// status its last callback gave), not settled in a final state; `$2` at most.
pub const OPEN_ORDERS: &str = "SELECT t.transaction_id, t.erp_order_id, s.state, s.changes \
     FROM transactions AS t LEFT JOIN order_states AS s \
     ON s.flow = t.flow AND s.transaction_id = t.transaction_id \
     WHERE t.flow = $1 AND t.erp_order_id IS NOT NULL AND coalesce(t.state, '') <> 'CANCELLED' \
     AND NOT t.order_settled AND (s.settled IS NULL OR NOT s.settled) ORDER BY t.created_at LIMIT $2";

/// An order's first state seen, unless another poller saved one.
pub const FIRST_ORDER_STATE: &str = "INSERT INTO order_states (flow, transaction_id, \
     erp_order_id, state, changes, settled, updated_at) VALUES ($1, $2, $3, $4, 0, $5, $6) \
     ON CONFLICT (flow, transaction_id) DO NOTHING";

/// An order's next state, while it is still at the count of changes `$6` the poller saw.
pub const NEXT_ORDER_STATE: &str = "UPDATE order_states SET state = $1, changes = changes + 1, \
     settled = $2, updated_at = $3 WHERE flow = $4 AND transaction_id = $5 AND changes = $6";

pub const ORDER_STATE: &str = "SELECT erp_order_id, state, changes, \
     CAST(CASE WHEN settled THEN 1 ELSE 0 END AS BIGINT) AS settled FROM order_states \
     WHERE flow = $1 AND transaction_id = $2";

// Buyer apps.

pub const INSERT_BAP_REQUEST: &str = "INSERT INTO bap_requests (flow, message_id, transaction_id, \
     action, mode, recipient, url, expected, body, ack, expires_at, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

pub const OPEN_BAP_TRANSACTION: &str = "INSERT INTO transactions (flow, transaction_id, role, \
     counterpart, counterpart_uri, created_at, updated_at) VALUES ($1, $2, 'bap', $3, $4, $5, $5) \
     ON CONFLICT (flow, transaction_id) DO UPDATE SET \
     counterpart = coalesce(excluded.counterpart, transactions.counterpart), \
     counterpart_uri = coalesce(excluded.counterpart_uri, transactions.counterpart_uri), \
     updated_at = excluded.updated_at";

pub const NOTE_ACK: &str = "UPDATE bap_requests SET ack = $1 WHERE flow = $2 AND message_id = $3";

/// Appends a refused callback (`$1`, JSON) to a request (`$2` flow, `$3` message id) that has
/// fewer than `$4`.
pub const NOTE_REFUSED: ByDialect = ByDialect {
    postgres: "UPDATE bap_requests \
               SET refused = (coalesce(refused, '[]')::jsonb || jsonb_build_array($1::jsonb))::text \
               WHERE flow = $2 AND message_id = $3 \
               AND jsonb_array_length(coalesce(refused, '[]')::jsonb) < $4",
    sqlite: "UPDATE bap_requests \
             SET refused = json_insert(coalesce(refused, '[]'), '$[#]', json($1)) \
             WHERE flow = $2 AND message_id = $3 \
             AND json_array_length(coalesce(refused, '[]')) < $4",
};

pub const SENT_REQUEST: &str = "SELECT * FROM bap_requests WHERE flow = $1 AND message_id = $2";

pub const BUYER_TRANSACTION: &str = "SELECT transaction_id, counterpart, counterpart_uri \
     FROM transactions WHERE flow = $1 AND transaction_id = $2 AND role = 'bap'";

pub const INSERT_CALLBACK: &str = "INSERT INTO bap_callbacks (flow, action, message_id, \
     transaction_id, bpp_id, via, digest, disposition, body, received_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING";

pub const CALLBACKS_FOR_MESSAGE: &str = "SELECT id, action, message_id, transaction_id, bpp_id, \
     via, disposition, body, received_at FROM bap_callbacks \
     WHERE flow = $1 AND message_id = $2 ORDER BY id";

pub const CALLBACKS_FOR_TRANSACTION: &str = "SELECT id, action, message_id, transaction_id, \
     bpp_id, via, disposition, body, received_at FROM bap_callbacks \
     WHERE flow = $1 AND transaction_id = $2 ORDER BY id";

// Polling.

/// One statement: of processes claiming at once, one gets through.
pub const CLAIM_POLL: &str = "INSERT INTO poll_cursors (flow, cursor, owner, lease_until, \
     updated_at) VALUES ($1, NULL, $2, $3, $4) ON CONFLICT (flow) DO UPDATE SET \
     owner = excluded.owner, lease_until = excluded.lease_until \
     WHERE poll_cursors.owner = excluded.owner OR poll_cursors.lease_until < $4 \
     RETURNING cursor";

pub const ADVANCE_POLL: &str = "UPDATE poll_cursors SET cursor = $1, lease_until = $2, \
     updated_at = $3 WHERE flow = $4 AND owner = $5";

// The ledger.

pub const INSERT_SINK_USER: &str = "INSERT INTO ultra_users (session, connection, \
     identity_token, mobile, email, created_at) VALUES ($1, $2, $3, $4, $5, $6)";

pub const FORGET_SINK_USER: &str = "DELETE FROM ultra_users WHERE session = $1";

pub const SINK_USER: &str = "SELECT session, connection, identity_token, mobile, email, \
     created_at FROM ultra_users WHERE session = $1";

pub const NOTE_IDENTITY: &str = "UPDATE transactions SET identity_token = $1, updated_at = $2 \
     WHERE flow = $3 AND transaction_id = $4";

pub const IDENTITY_TOKEN: &str = "SELECT identity_token AS value FROM transactions \
     WHERE flow = $1 AND transaction_id = $2";

/// The states an order reported, oldest first.
pub const REPORTED_STATES: &str = "SELECT state FROM oms_updates WHERE connection = $1 \
     AND provider = $2 AND transaction_id = $3 AND order_id = $4 ORDER BY created_at";

/// The order's update in state `$5` while it is still held back (not yet tried, not claimed,
/// due later than `$6`); PostgreSQL locks it (`$lock`), so that no worker claims it before it
/// is dropped.
macro_rules! held_update {
    ($lock:literal) => {
        concat!(
            "SELECT o.id FROM oms_updates AS u JOIN outbox AS o ON o.id = u.outbox_id \
             WHERE u.connection = $1 AND u.provider = $2 AND u.transaction_id = $3 \
             AND u.order_id = $4 AND u.state = $5 AND o.state = 'pending' \
             AND o.attempts = 0 AND o.claimed_by IS NULL AND o.next_attempt_at > $6",
            $lock
        )
    };
}

pub const HELD_UPDATE: ByDialect = ByDialect {
    postgres: held_update!(" FOR UPDATE OF o"),
    sqlite: held_update!(""),
};

/// Drops a held update: its event, its message, its state.
pub const DROP_UPDATE: [&str; 3] = [
    "DELETE FROM oms_events WHERE outbox_id = $1",
    "DELETE FROM outbox WHERE id = $1",
    "DELETE FROM oms_updates WHERE outbox_id = $1",
];

pub const INSERT_UPDATE: &str = "INSERT INTO oms_updates (connection, provider, transaction_id, \
     order_id, state, flow, outbox_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

pub const INSERT_ORDER_EVENT: &str = "INSERT INTO oms_events (outbox_id, flow, callback, body, \
     created_at) VALUES ($1, $2, $3, $4, $5)";

/// An order event that gave no update, as a dead letter at once.
pub const INSERT_BURIED_EVENT: &str = "INSERT INTO outbox (flow, kind, url, action, \
     transaction_id, message_id, body, state, attempts, next_attempt_at, deadline, created_at, \
     sequence_key, last_error, finished_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, 'dead', 0, $8, $9, $8, $10, $11, $8) RETURNING id";

pub const ORDER_EVENT: &str = "SELECT e.flow, e.callback, e.body, u.order_id, u.state \
     FROM oms_events AS e LEFT JOIN oms_updates AS u ON u.outbox_id = e.outbox_id \
     WHERE e.outbox_id = $1";

// What happened, for the console (reads only).

/// Transactions newest first, filtered: `$1` transaction id, `$2` order id (the Beckn one
/// noted on the transaction, an OMS update's, or `$7`, the same as remembered JSON text),
/// `$3` counterpart, `$4` an action among its messages or NACKed requests, `$5`..`$6` a time
/// range, `$8` the outcome; `''` means any. `$9` the limit. A transaction known only from
/// NACKed requests is listed too (outcome `nack`), as is one whose latest request was NACKed.
pub const TRANSACTIONS: &str = "SELECT * FROM (SELECT t.flow, t.transaction_id, t.role, \
     t.counterpart, t.erp_order_id, t.state AS order_state, t.created_at, t.updated_at, \
     coalesce((SELECT m.action FROM messages AS m WHERE m.flow = t.flow \
      AND m.transaction_id = t.transaction_id ORDER BY m.id DESC LIMIT 1), \
      (SELECT n.action FROM nacks AS n WHERE n.flow = t.flow \
      AND n.transaction_id = t.transaction_id ORDER BY n.id DESC LIMIT 1)) AS last_action, \
     (SELECT count(*) FROM messages AS m WHERE m.flow = t.flow \
      AND m.transaction_id = t.transaction_id) AS messages, \
     (SELECT count(*) FROM nacks AS n WHERE n.flow = t.flow \
      AND n.transaction_id = t.transaction_id) AS nacks, \
     (SELECT n.code FROM nacks AS n WHERE n.flow = t.flow \
      AND n.transaction_id = t.transaction_id ORDER BY n.id DESC LIMIT 1) AS nack_code, \
     CASE WHEN EXISTS (SELECT 1 FROM outbox AS o WHERE o.flow = t.flow \
          AND o.transaction_id = t.transaction_id AND o.state = 'dead') THEN 'dead' \
     WHEN EXISTS (SELECT 1 FROM outbox AS o WHERE o.flow = t.flow \
          AND o.transaction_id = t.transaction_id AND o.state = 'pending') THEN 'pending' \
     WHEN EXISTS (SELECT 1 FROM inbox AS i WHERE i.flow = t.flow \
          AND i.transaction_id = t.transaction_id AND i.state = 'accepted') THEN 'running' \
     WHEN EXISTS (SELECT 1 FROM nacks AS n WHERE n.flow = t.flow \
          AND n.transaction_id = t.transaction_id AND n.created_at >= coalesce((SELECT \
          max(m.created_at) FROM messages AS m WHERE m.flow = t.flow \
          AND m.transaction_id = t.transaction_id), 0)) THEN 'nack' \
     ELSE 'done' END AS outcome \
     FROM (SELECT flow, transaction_id, role, counterpart, erp_order_id, state, created_at, \
           updated_at FROM transactions \
           UNION ALL SELECT n.flow, n.transaction_id, min(n.role), min(n.counterpart), NULL, \
           NULL, min(n.created_at), max(n.created_at) FROM nacks AS n \
           WHERE NOT EXISTS (SELECT 1 FROM transactions AS k WHERE k.flow = n.flow \
           AND k.transaction_id = n.transaction_id) \
           GROUP BY n.flow, n.transaction_id) AS t \
     WHERE ($1 = '' OR t.transaction_id = $1) \
     AND ($2 = '' OR t.erp_order_id = $2 \
          OR EXISTS (SELECT 1 FROM oms_updates AS u WHERE u.flow = t.flow \
             AND u.transaction_id = t.transaction_id AND u.order_id = $2) \
          OR EXISTS (SELECT 1 FROM transaction_memory AS r WHERE r.flow = t.flow \
             AND r.transaction_id = t.transaction_id AND r.value = $7)) \
     AND ($3 = '' OR t.counterpart = $3) \
     AND ($4 = '' OR EXISTS (SELECT 1 FROM messages AS m WHERE m.flow = t.flow \
          AND m.transaction_id = t.transaction_id AND m.action = $4) \
          OR EXISTS (SELECT 1 FROM nacks AS n WHERE n.flow = t.flow \
          AND n.transaction_id = t.transaction_id AND n.action = $4)) \
     AND t.updated_at >= $5 AND t.created_at <= $6) AS x \
     WHERE ($8 = '' OR x.outcome = $8) ORDER BY x.updated_at DESC, x.transaction_id LIMIT $9";

/// A transaction's NACKed requests, in the order recorded.
pub const TIMELINE_NACKS: &str = "SELECT id, action, message_id, counterpart, code, status, \
     error, path, headers, body, body_bytes, created_at FROM nacks \
     WHERE flow = $1 AND transaction_id = $2 ORDER BY id";

/// A transaction's log of messages in and out, in the order they were recorded.
pub const TIMELINE_MESSAGES: &str = "SELECT id, direction, action, message_id, headers, body, \
     created_at FROM messages WHERE flow = $1 AND transaction_id = $2 ORDER BY id";

pub const TIMELINE_STEPS: &str = "SELECT action, message_id, steps, created_at \
     FROM action_steps WHERE flow = $1 AND transaction_id = $2 ORDER BY created_at";

pub const TIMELINE_INBOX: &str = "SELECT action, message_id, state, received_at, done_at \
     FROM inbox WHERE flow = $1 AND transaction_id = $2 ORDER BY received_at";

pub const TIMELINE_OUTBOX: &str = "SELECT id, flow, kind, url, action, transaction_id, \
     message_id, state, attempts, last_error, created_at, finished_at, next_attempt_at, deadline \
     FROM outbox WHERE flow = $1 AND transaction_id = $2 ORDER BY id";

pub const TIMELINE_SENT: &str = "SELECT action, message_id, recipient, url, ack, refused, \
     created_at FROM bap_requests WHERE flow = $1 AND transaction_id = $2 ORDER BY created_at";

pub const TIMELINE_FILED: &str = "SELECT action, message_id, bpp_id, disposition, received_at \
     FROM bap_callbacks WHERE flow = $1 AND transaction_id = $2 ORDER BY id";

pub const TIMELINE_SINK_UPDATES: &str = "SELECT order_id, state, outbox_id, created_at \
     FROM oms_updates WHERE flow = $1 AND transaction_id = $2 ORDER BY created_at, outbox_id";

/// Pending messages, oldest first, at most `$1`.
pub const PENDING: &str = "SELECT id, flow, kind, url, action, transaction_id, message_id, \
     state, attempts, last_error, created_at, finished_at, next_attempt_at, deadline \
     FROM outbox WHERE state = 'pending' ORDER BY id LIMIT $1";

/// What changes when anything happens: the newest log entry and the outbox's figures.
pub const CHANGE_MARK: &str = "SELECT (SELECT coalesce(max(id), 0) FROM messages) AS logged, \
     (SELECT coalesce(max(id), 0) FROM nacks) AS nacked, \
     (SELECT count(*) FROM outbox WHERE state = 'pending') AS pending, \
     (SELECT count(*) FROM outbox WHERE state = 'dead') AS dead, \
     (SELECT coalesce(sum(attempts), 0) FROM outbox WHERE state = 'pending') AS tries";
