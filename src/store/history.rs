//! What happened, read back for the operations console: transactions found by their ids,
//! counterpart, actions and outcome, and one transaction's messages in and out with their
//! acknowledgements, deliveries, sink updates, calls noted and NACKs. Reads only; bodies come from the message
//! log, which is written masked.

use bytes::Bytes;
use futures::future::BoxFuture;
use serde::Serialize;

use super::backend::Backend;
use super::rows::{self, Reader};
use super::{StoreResult, sql};

/// Which transactions to list; an empty text matches anything.
#[derive(Debug, Clone, Default)]
pub struct TransactionFilter {
    pub transaction_id: String,
    /// A Beckn order id noted on the transaction, an OMS update's, or a remembered value
    /// (the ERP's order id).
    pub order_id: String,
    /// The counterpart: the buyer app of a provider's transaction, the BPP of a buyer app's.
    pub subscriber: String,
    /// An action among the transaction's messages (`confirm`, `on_confirm`).
    pub action: String,
    /// `done`, `running`, `pending` or `dead`.
    pub outcome: String,
    /// Changed at or after (Unix ms).
    pub from: Option<i64>,
    /// Opened at or before (Unix ms).
    pub to: Option<i64>,
    pub limit: usize,
}

/// One transaction in a list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransactionSummary {
    pub flow: String,
    pub transaction_id: String,
    pub role: String,
    pub counterpart: Option<String>,
    pub order_id: Option<String>,
    pub order_state: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_action: Option<String>,
    pub messages: i64,
    /// Requests of it answered with a NACK (those kept).
    pub nacks: i64,
    /// The Beckn code of its latest NACK.
    pub nack_code: Option<String>,
    /// `dead` (a message of it is a dead letter), `pending` (one waits to be delivered),
    /// `running` (a request is accepted, not answered), `nack` (its latest request was
    /// NACKed, or it is known only from NACKs) or `done`.
    pub outcome: String,
}

/// An entry of the message log (its body masked).
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedMessage {
    pub id: i64,
    pub direction: String,
    pub action: String,
    pub message_id: String,
    /// Headers as JSON, signatures summarised.
    pub headers: String,
    pub body: Bytes,
    pub created_at: i64,
}

/// A request answered with a NACK, as kept (see `store::nacks`).
#[derive(Debug, Clone, PartialEq)]
pub struct NackedRequest {
    pub id: i64,
    pub action: String,
    pub message_id: String,
    pub counterpart: String,
    pub code: String,
    pub status: i64,
    pub error: String,
    pub path: Option<String>,
    pub headers: String,
    /// Masked and cut short already.
    pub body: String,
    pub body_bytes: i64,
    pub created_at: i64,
}

/// Calls noted of one message: a provider's backend calls while answering a request, a buyer
/// app's send of its request, a gateway's relays (JSON array of `engine::call_log` notes).
#[derive(Debug, Clone, PartialEq)]
pub struct CallNotes {
    pub action: String,
    pub message_id: String,
    pub steps: String,
    pub created_at: i64,
}

/// A request accepted (and so acknowledged) by a provider or gateway.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AcceptedRequest {
    pub action: String,
    pub message_id: String,
    /// `accepted` (running) or `done` (answered).
    pub state: String,
    pub received_at: i64,
    pub done_at: Option<i64>,
}

/// An outbox message, whatever its state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    pub id: i64,
    pub flow: String,
    pub kind: String,
    pub url: String,
    pub action: String,
    pub transaction_id: String,
    pub message_id: String,
    pub state: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub next_attempt_at: i64,
    pub deadline: Option<i64>,
}

/// A buyer app's request as sent, with the recipient's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SentNote {
    pub action: String,
    pub message_id: String,
    pub recipient: String,
    pub url: String,
    /// JSON: the ACK, the NACK with its error, or why sending failed.
    pub ack: Option<String>,
    /// JSON: answers refused, with their codes.
    pub refused: Option<String>,
    pub created_at: i64,
}

/// A callback a buyer app filed, and how.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FiledNote {
    pub action: String,
    pub message_id: String,
    pub bpp_id: String,
    pub disposition: String,
    pub received_at: i64,
}

/// An order state queued for an order sink (its delivery is the outbox message `outbox_id`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SinkUpdate {
    pub order_id: String,
    pub state: String,
    pub outbox_id: i64,
    pub created_at: i64,
}

/// Everything recorded of one transaction of one flow.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TransactionRecord {
    pub messages: Vec<LoggedMessage>,
    pub accepted: Vec<AcceptedRequest>,
    pub deliveries: Vec<Delivery>,
    pub sent: Vec<SentNote>,
    pub filed: Vec<FiledNote>,
    pub sink_updates: Vec<SinkUpdate>,
    /// The calls noted of its messages.
    pub steps: Vec<CallNotes>,
    pub nacks: Vec<NackedRequest>,
}

/// A mark that moves whenever a message is logged or the outbox changes, for live pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ChangeMark {
    pub logged: i64,
    pub nacked: i64,
    pub pending: i64,
    pub dead: i64,
    pub tries: i64,
}

/// Reading what happened.
pub trait HistoryStore: Send + Sync {
    /// Transactions matching `filter`, most recently changed first.
    fn transactions(
        &self,
        filter: &TransactionFilter,
    ) -> BoxFuture<'_, StoreResult<Vec<TransactionSummary>>>;
    /// Everything recorded of a transaction of `flow`.
    fn transaction_record(
        &self,
        flow: &str,
        transaction_id: &str,
    ) -> BoxFuture<'_, StoreResult<TransactionRecord>>;
    /// Messages waiting to be delivered, oldest first.
    fn pending(&self, limit: usize) -> BoxFuture<'_, StoreResult<Vec<Delivery>>>;
    fn change_mark(&self) -> BoxFuture<'_, StoreResult<ChangeMark>>;
}

impl<B: Backend> HistoryStore for B {
    fn transactions(
        &self,
        filter: &TransactionFilter,
    ) -> BoxFuture<'_, StoreResult<Vec<TransactionSummary>>> {
        let remembered = if filter.order_id.is_empty() {
            String::new()
        } else {
            serde_json::Value::from(filter.order_id.as_str()).to_string()
        };
        let args = vec![
            filter.transaction_id.as_str().into(),
            filter.order_id.as_str().into(),
            filter.subscriber.as_str().into(),
            filter.action.as_str().into(),
            filter.from.unwrap_or(0).into(),
            filter.to.unwrap_or(i64::MAX).into(),
            remembered.into(),
            filter.outcome.as_str().into(),
            (filter.limit.clamp(1, 1000) as i64).into(),
        ];
        Box::pin(
            self.reader()
                .rows(sql::TRANSACTIONS, args, rows::transaction_summary),
        )
    }

    fn transaction_record(
        &self,
        flow: &str,
        transaction_id: &str,
    ) -> BoxFuture<'_, StoreResult<TransactionRecord>> {
        let args = || -> Vec<rows::Arg> { vec![flow.into(), transaction_id.into()] };
        let r = self.reader();
        let (a, b, c, d, e, f, g) = (args(), args(), args(), args(), args(), args(), args());
        let h = args();
        Box::pin(async move {
            Ok(TransactionRecord {
                messages: r
                    .rows(sql::TIMELINE_MESSAGES, a, rows::logged_message)
                    .await?,
                accepted: r
                    .rows(sql::TIMELINE_INBOX, b, rows::accepted_request)
                    .await?,
                deliveries: r.rows(sql::TIMELINE_OUTBOX, c, rows::delivery).await?,
                sent: r.rows(sql::TIMELINE_SENT, d, rows::sent_note).await?,
                filed: r.rows(sql::TIMELINE_FILED, e, rows::filed_note).await?,
                sink_updates: r
                    .rows(sql::TIMELINE_SINK_UPDATES, f, rows::sink_update)
                    .await?,
                steps: r.rows(sql::TIMELINE_STEPS, g, rows::action_steps).await?,
                nacks: r.rows(sql::TIMELINE_NACKS, h, rows::nacked_request).await?,
            })
        })
    }

    fn pending(&self, limit: usize) -> BoxFuture<'_, StoreResult<Vec<Delivery>>> {
        let args = vec![(limit as i64).into()];
        Box::pin(self.reader().rows(sql::PENDING, args, rows::delivery))
    }

    fn change_mark(&self) -> BoxFuture<'_, StoreResult<ChangeMark>> {
        Box::pin(async move {
            let mark = self
                .reader()
                .row(sql::CHANGE_MARK, vec![], rows::change_mark);
            Ok(mark.await?.unwrap_or_default())
        })
    }
}
