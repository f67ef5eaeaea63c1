//! Reading rows, once for both stores: [`Columns`] is a row of any of the three drivers
//! (PostgreSQL and SQLite through sqlx, the SQLite writer's rusqlite), and the functions here
//! make the store's records of such a row. [`Reader`] runs a query on either store's read pool
//! with [`Arg`]s, so that the statements both dialects agree on are run by one piece of code.

use std::future::Future;

use bytes::Bytes;
use sqlx::Row;

use super::history::{
    AcceptedRequest, CallNotes, ChangeMark, Delivery, FiledNote, LoggedMessage, NackedRequest,
    SentNote, SinkUpdate, TransactionSummary,
};
use super::{
    BuyerTransaction, Claim, Counterpart, DeadLetter, Disposition, FiledCallback, InboundKey,
    OpenOrder, OrderEvent, OrderState, OutboxCounts, OutboxItem, PollPosition, QueuedState,
    SeenState, SentRequest, SinkUser, StoreResult, StoredOrderEvent, Unfinished,
};

/// A row, read by column name.
pub(crate) trait Columns {
    fn text(&self, name: &str) -> StoreResult<String>;
    fn maybe_text(&self, name: &str) -> StoreResult<Option<String>>;
    fn int(&self, name: &str) -> StoreResult<i64>;
    fn maybe_int(&self, name: &str) -> StoreResult<Option<i64>>;
    fn blob(&self, name: &str) -> StoreResult<Bytes>;
    /// A small count (`attempts`: 32 bits on PostgreSQL, 64 on SQLite).
    fn count(&self, name: &str) -> StoreResult<u32>;
}

/// Columns of a driver's row: `$get` reads a column by name, `$count` is the type of a small
/// count on that database.
macro_rules! columns {
    ($row:ty, $get:ident, $count:ty) => {
        impl Columns for $row {
            fn text(&self, name: &str) -> StoreResult<String> {
                Ok(self.$get(name)?)
            }
            fn maybe_text(&self, name: &str) -> StoreResult<Option<String>> {
                Ok(self.$get(name)?)
            }
            fn int(&self, name: &str) -> StoreResult<i64> {
                Ok(self.$get(name)?)
            }
            fn maybe_int(&self, name: &str) -> StoreResult<Option<i64>> {
                Ok(self.$get(name)?)
            }
            fn blob(&self, name: &str) -> StoreResult<Bytes> {
                let bytes: Vec<u8> = self.$get(name)?;
                Ok(Bytes::from(bytes))
            }
            fn count(&self, name: &str) -> StoreResult<u32> {
                let count: $count = self.$get(name)?;
                Ok(count as u32)
            }
        }
    };
}

columns!(sqlx::postgres::PgRow, try_get, i32);
columns!(sqlx::sqlite::SqliteRow, try_get, i64);
columns!(rusqlite::Row<'_>, get, i64);

/// A value bound to a statement's `$n`.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(String),
    MaybeText(Option<String>),
    Int(i64),
    Bool(bool),
}

impl From<&str> for Arg {
    fn from(text: &str) -> Arg {
        Arg::Text(text.to_string())
    }
}

impl From<String> for Arg {
    fn from(text: String) -> Arg {
        Arg::Text(text)
    }
}

impl From<Option<String>> for Arg {
    fn from(text: Option<String>) -> Arg {
        Arg::MaybeText(text)
    }
}

impl From<i64> for Arg {
    fn from(n: i64) -> Arg {
        Arg::Int(n)
    }
}

impl From<bool> for Arg {
    fn from(b: bool) -> Arg {
        Arg::Bool(b)
    }
}

impl rusqlite::ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Arg::Text(text) => text.to_sql(),
            Arg::MaybeText(text) => text.to_sql(),
            Arg::Int(n) => n.to_sql(),
            Arg::Bool(b) => b.to_sql(),
        }
    }
}

/// Binds `args` to `$query`, in order.
macro_rules! bind_args {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for arg in $args {
            query = match arg {
                Arg::Text(text) => query.bind(text),
                Arg::MaybeText(text) => query.bind(text),
                Arg::Int(n) => query.bind(n),
                Arg::Bool(b) => query.bind(b),
            };
        }
        query
    }};
}

pub(crate) use bind_args;

/// A pool that runs the statements both stores share (written with `$n`, which sqlx reads on
/// SQLite too).
pub(crate) trait Reader: Sync {
    /// The rows `sql` returns with `args`, each made a record by `map`.
    fn rows<T: Send>(
        &self,
        sql: &'static str,
        args: Vec<Arg>,
        map: fn(&dyn Columns) -> StoreResult<T>,
    ) -> impl Future<Output = StoreResult<Vec<T>>> + Send;

    /// The first row's record, if any.
    fn row<T: Send>(
        &self,
        sql: &'static str,
        args: Vec<Arg>,
        map: fn(&dyn Columns) -> StoreResult<T>,
    ) -> impl Future<Output = StoreResult<Option<T>>> + Send {
        async move { Ok(self.rows(sql, args, map).await?.into_iter().next()) }
    }
}

macro_rules! sqlx_reader {
    ($pool:ty) => {
        impl Reader for $pool {
            async fn rows<T: Send>(
                &self,
                sql: &'static str,
                args: Vec<Arg>,
                map: fn(&dyn Columns) -> StoreResult<T>,
            ) -> StoreResult<Vec<T>> {
                let rows = bind_args!(sqlx::query(sql), args).fetch_all(self).await?;
                rows.iter().map(|r| map(r)).collect()
            }
        }
    };
}

sqlx_reader!(sqlx::PgPool);
sqlx_reader!(sqlx::SqlitePool);

/// An accepted request's row (`RETURNING` of a take-over).
pub(crate) fn unfinished(r: &dyn Columns) -> StoreResult<Unfinished> {
    Ok(Unfinished {
        key: InboundKey {
            flow: r.text("flow")?,
            action: r.text("action")?,
            message_id: r.text("message_id")?,
        },
        transaction_id: r.text("transaction_id")?,
        body: r.blob("body")?,
        callback_base: r.text("callback_base")?,
        received_at: r.int("received_at")?,
        claim: Claim {
            owner: r.text("claimed_by")?,
            epoch: r.int("claim_epoch")?,
        },
    })
}

/// A claimed outbox message's row (`RETURNING` of a claim).
pub(crate) fn outbox_item(r: &dyn Columns) -> StoreResult<OutboxItem> {
    Ok(OutboxItem {
        id: r.int("id")?,
        flow: r.text("flow")?,
        kind: r.text("kind")?,
        url: r.text("url")?,
        action: r.text("action")?,
        transaction_id: r.text("transaction_id")?,
        message_id: r.text("message_id")?,
        body: r.blob("body")?,
        attempts: r.count("attempts")?,
        deadline: r.maybe_int("deadline")?,
        epoch: r.int("claim_epoch")?,
        claimed_until: r.int("claimed_until")?,
    })
}

pub(crate) fn dead_letter(r: &dyn Columns) -> StoreResult<DeadLetter> {
    Ok(DeadLetter {
        id: r.int("id")?,
        flow: r.text("flow")?,
        kind: r.text("kind")?,
        url: r.text("url")?,
        action: r.text("action")?,
        transaction_id: r.text("transaction_id")?,
        message_id: r.text("message_id")?,
        attempts: r.count("attempts")?,
        last_error: r.maybe_text("last_error")?,
        created_at: r.int("created_at")?,
    })
}

/// The body and answer address of a request (`body`, `callback_base`).
pub(crate) fn request_context(r: &dyn Columns) -> StoreResult<(Bytes, String)> {
    Ok((r.blob("body")?, r.text("callback_base")?))
}

/// Whether there was a row at all.
pub(crate) fn exists(_: &dyn Columns) -> StoreResult<()> {
    Ok(())
}

pub(crate) fn sent_request(r: &dyn Columns) -> StoreResult<SentRequest> {
    Ok(SentRequest {
        flow: r.text("flow")?,
        message_id: r.text("message_id")?,
        transaction_id: r.text("transaction_id")?,
        action: r.text("action")?,
        mode: r.text("mode")?,
        recipient: r.text("recipient")?,
        url: r.text("url")?,
        expected: serde_json::from_str(&r.text("expected")?).unwrap_or_default(),
        body: r.blob("body")?,
        ack: r.maybe_text("ack")?,
        expires_at: r.int("expires_at")?,
        created_at: r.int("created_at")?,
        refused: r.maybe_text("refused")?,
    })
}

/// A buyer app's transaction (`transaction_id`, `counterpart`, `counterpart_uri`).
pub(crate) fn buyer_transaction(r: &dyn Columns) -> StoreResult<BuyerTransaction> {
    let id = r.maybe_text("counterpart")?;
    let uri = r.maybe_text("counterpart_uri")?;
    Ok(BuyerTransaction {
        transaction_id: r.text("transaction_id")?,
        counterpart: id
            .zip(uri)
            .map(|(bpp_id, bpp_uri)| Counterpart { bpp_id, bpp_uri }),
    })
}

pub(crate) fn filed_callback(r: &dyn Columns) -> StoreResult<FiledCallback> {
    Ok(FiledCallback {
        id: r.int("id")?,
        action: r.text("action")?,
        message_id: r.text("message_id")?,
        transaction_id: r.text("transaction_id")?,
        bpp_id: r.text("bpp_id")?,
        via: r.maybe_text("via")?,
        disposition: Disposition::parse(&r.text("disposition")?),
        body: r.blob("body")?,
        received_at: r.int("received_at")?,
    })
}

pub(crate) fn maybe_text(r: &dyn Columns) -> StoreResult<Option<String>> {
    r.maybe_text("value")
}

/// A remembered value: its name and JSON text.
pub(crate) fn remembered(r: &dyn Columns) -> StoreResult<(String, String)> {
    Ok((r.text("name")?, r.text("value")?))
}

pub(crate) fn open_order(r: &dyn Columns) -> StoreResult<OpenOrder> {
    let seen = match (r.maybe_text("state")?, r.maybe_int("changes")?) {
        (Some(state), Some(changes)) => Some(SeenState { state, changes }),
        _ => None,
    };
    Ok(OpenOrder {
        transaction_id: r.text("transaction_id")?,
        erp_order_id: r.text("erp_order_id")?,
        seen,
    })
}

pub(crate) fn order_state(r: &dyn Columns) -> StoreResult<OrderState> {
    Ok(OrderState {
        erp_order_id: r.text("erp_order_id")?,
        state: r.text("state")?,
        changes: r.int("changes")?,
        settled: r.int("settled")? != 0,
    })
}

pub(crate) fn poll_position(r: &dyn Columns) -> StoreResult<PollPosition> {
    Ok(PollPosition {
        cursor: r.maybe_text("cursor")?,
    })
}

pub(crate) fn outbox_counts(r: &dyn Columns) -> StoreResult<OutboxCounts> {
    Ok(OutboxCounts {
        pending: r.int("pending")? as u64,
        dead: r.int("dead")? as u64,
    })
}

pub(crate) fn due(r: &dyn Columns) -> StoreResult<Option<i64>> {
    r.maybe_int("due")
}

pub(crate) fn sink_user(r: &dyn Columns) -> StoreResult<SinkUser> {
    Ok(SinkUser {
        session: r.text("session")?,
        connection: r.text("connection")?,
        identity_token: r.text("identity_token")?,
        mobile: r.maybe_text("mobile")?,
        email: r.maybe_text("email")?,
        created_at: r.int("created_at")?,
    })
}

/// The row of `oms_events` joined with `oms_updates` (`flow`, `callback`, `body`, `order_id`,
/// `state`).
pub(crate) fn stored_order_event(r: &dyn Columns) -> StoreResult<StoredOrderEvent> {
    let order_id = r.maybe_text("order_id")?;
    let state = r.maybe_text("state")?;
    Ok(StoredOrderEvent {
        event: OrderEvent {
            flow: r.text("flow")?,
            callback: r.text("callback")?,
            body: r.blob("body")?,
        },
        update: order_id
            .zip(state)
            .map(|(order_id, state)| QueuedState { order_id, state }),
    })
}

pub(crate) fn transaction_summary(r: &dyn Columns) -> StoreResult<TransactionSummary> {
    Ok(TransactionSummary {
        flow: r.text("flow")?,
        transaction_id: r.text("transaction_id")?,
        role: r.text("role")?,
        counterpart: r.maybe_text("counterpart")?,
        order_id: r.maybe_text("erp_order_id")?,
        order_state: r.maybe_text("order_state")?,
        created_at: r.int("created_at")?,
        updated_at: r.int("updated_at")?,
        last_action: r.maybe_text("last_action")?,
        messages: r.int("messages")?,
        nacks: r.int("nacks")?,
        nack_code: r.maybe_text("nack_code")?,
        outcome: r.text("outcome")?,
    })
}

pub(crate) fn logged_message(r: &dyn Columns) -> StoreResult<LoggedMessage> {
    Ok(LoggedMessage {
        id: r.int("id")?,
        direction: r.text("direction")?,
        action: r.text("action")?,
        message_id: r.text("message_id")?,
        headers: r.text("headers")?,
        body: r.blob("body")?,
        created_at: r.int("created_at")?,
    })
}

pub(crate) fn accepted_request(r: &dyn Columns) -> StoreResult<AcceptedRequest> {
    Ok(AcceptedRequest {
        action: r.text("action")?,
        message_id: r.text("message_id")?,
        state: r.text("state")?,
        received_at: r.int("received_at")?,
        done_at: r.maybe_int("done_at")?,
    })
}

pub(crate) fn delivery(r: &dyn Columns) -> StoreResult<Delivery> {
    Ok(Delivery {
        id: r.int("id")?,
        flow: r.text("flow")?,
        kind: r.text("kind")?,
        url: r.text("url")?,
        action: r.text("action")?,
        transaction_id: r.text("transaction_id")?,
        message_id: r.text("message_id")?,
        state: r.text("state")?,
        attempts: r.count("attempts")?,
        last_error: r.maybe_text("last_error")?,
        created_at: r.int("created_at")?,
        finished_at: r.maybe_int("finished_at")?,
        next_attempt_at: r.int("next_attempt_at")?,
        deadline: r.maybe_int("deadline")?,
    })
}

pub(crate) fn sent_note(r: &dyn Columns) -> StoreResult<SentNote> {
    Ok(SentNote {
        action: r.text("action")?,
        message_id: r.text("message_id")?,
        recipient: r.text("recipient")?,
        url: r.text("url")?,
        ack: r.maybe_text("ack")?,
        refused: r.maybe_text("refused")?,
        created_at: r.int("created_at")?,
    })
}

pub(crate) fn filed_note(r: &dyn Columns) -> StoreResult<FiledNote> {
    Ok(FiledNote {
        action: r.text("action")?,
        message_id: r.text("message_id")?,
        bpp_id: r.text("bpp_id")?,
        disposition: r.text("disposition")?,
        received_at: r.int("received_at")?,
    })
}

pub(crate) fn sink_update(r: &dyn Columns) -> StoreResult<SinkUpdate> {
    Ok(SinkUpdate {
        order_id: r.text("order_id")?,
        state: r.text("state")?,
        outbox_id: r.int("outbox_id")?,
        created_at: r.int("created_at")?,
    })
}

pub(crate) fn change_mark(r: &dyn Columns) -> StoreResult<ChangeMark> {
    Ok(ChangeMark {
        logged: r.int("logged")?,
        nacked: r.int("nacked")?,
        pending: r.int("pending")?,
        dead: r.int("dead")?,
        tries: r.int("tries")?,
    })
}

/// The calls noted of a message.
pub(crate) fn action_steps(r: &dyn Columns) -> StoreResult<CallNotes> {
    Ok(CallNotes {
        action: r.text("action")?,
        message_id: r.text("message_id")?,
        steps: r.text("steps")?,
        created_at: r.int("created_at")?,
    })
}

pub(crate) fn nacked_request(r: &dyn Columns) -> StoreResult<NackedRequest> {
    Ok(NackedRequest {
        id: r.int("id")?,
        action: r.text("action")?,
        message_id: r.text("message_id")?,
        counterpart: r.text("counterpart")?,
        code: r.text("code")?,
        status: r.int("status")?,
        error: r.text("error")?,
        path: r.maybe_text("path")?,
        headers: r.text("headers")?,
        body: r.text("body")?,
        body_bytes: r.int("body_bytes")?,
        created_at: r.int("created_at")?,
    })
}
