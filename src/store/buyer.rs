//! What a buyer app (`role: bap`) keeps: the requests it sent, each with the BPPs expected to
//! answer and when answers stop being accepted, and every callback it received, filed as an
//! answer, an unsolicited update, or (NACKed, kept for inspection) late or unknown.

use blake2::{Blake2b512, Digest};
use bytes::Bytes;
use futures::future::BoxFuture;

use super::backend::{Backend, Logged, Outcome, Work, done, written};
use super::rows::{self, Reader};
use super::{NewOutbox, StoreResult, sql};

/// The notification channel a shared (PostgreSQL) store announces filed callbacks on, so that
/// a caller waiting in one process wakes when its callback lands in another.
pub const CALLBACK_CHANNEL: &str = "beckn_adapter_callbacks";

/// A request a buyer app sent (or is about to send).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentRequest {
    pub flow: String,
    pub message_id: String,
    pub transaction_id: String,
    pub action: String,
    /// `sync`, `async` or `webhook`: how the app hears of the answers.
    pub mode: String,
    /// Who it went to: a gateway or a BPP (subscriber id, or the gateway's URL when the flow
    /// names it by URL), and where.
    pub recipient: String,
    pub url: String,
    /// The BPPs expected to answer.
    pub expected: Vec<String>,
    /// The request as sent.
    pub body: Bytes,
    /// The recipient's synchronous answer as JSON text: ACK, NACK with its error, or why it
    /// could not be reached. None until the send returned.
    pub ack: Option<String>,
    /// `timestamp + ttl`, Unix ms: answers after it are late.
    pub expires_at: i64,
    pub created_at: i64,
    /// Callbacks naming this request that were refused before filing, as a JSON array of
    /// [`RefusedCallback`] (None: none was).
    pub refused: Option<String>,
}

/// A callback that named a request of ours and was refused (NACKed before it was filed).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RefusedCallback {
    /// The `context.bpp_id` it claimed (unproven when its signature was the problem).
    pub bpp_id: String,
    pub action: String,
    /// RFC 3339.
    pub received_at: String,
    /// The Beckn error code of the NACK.
    pub code: String,
    pub reason: String,
}

/// Most refused callbacks noted per request: enough to say why, too few to fill the store.
pub const MAX_REFUSED_NOTED: i64 = 8;

/// The BPP a buyer app's transaction is with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Counterpart {
    pub bpp_id: String,
    pub bpp_uri: String,
}

/// A transaction a buyer app took part in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuyerTransaction {
    pub transaction_id: String,
    /// Known once a request went to one BPP (not for a search through a gateway).
    pub counterpart: Option<Counterpart>,
}

/// How a received callback was filed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// Answers a request of ours, in time.
    Answer,
    /// An `on_status`, `on_update` or `on_cancel` of a known transaction that no request asked
    /// for.
    Unsolicited,
    /// Answers a request of ours whose ttl had ended: NACKed, kept.
    Late,
    /// Answers nothing we know of: NACKed, kept.
    Unknown,
}

impl Disposition {
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Answer => "answer",
            Disposition::Unsolicited => "unsolicited",
            Disposition::Late => "late",
            Disposition::Unknown => "unknown",
        }
    }

    /// The disposition stored as `text`; an unexpected value reads as `Unknown`.
    pub fn parse(text: &str) -> Disposition {
        match text {
            "answer" => Disposition::Answer,
            "unsolicited" => Disposition::Unsolicited,
            "late" => Disposition::Late,
            _ => Disposition::Unknown,
        }
    }
}

/// A callback to file.
#[derive(Debug, Clone)]
pub struct NewCallback {
    pub flow: String,
    pub action: String,
    pub message_id: String,
    pub transaction_id: String,
    /// The BPP that signed it (its `context.bpp_id`).
    pub bpp_id: String,
    /// The gateway that countersigned it, when it came through one.
    pub via: Option<String>,
    pub disposition: Disposition,
    /// The raw body as received.
    pub body: Bytes,
    /// Headers as JSON, signatures reduced to their key id.
    pub headers: String,
}

impl NewCallback {
    /// Identifies the body among repeats: the same message delivered again has the same bytes.
    pub fn digest(&self) -> String {
        hex::encode(&Blake2b512::digest(&self.body)[..16])
    }
}

/// A callback as filed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiledCallback {
    pub id: i64,
    pub action: String,
    pub message_id: String,
    pub transaction_id: String,
    pub bpp_id: String,
    pub via: Option<String>,
    pub disposition: Disposition,
    pub body: Bytes,
    pub received_at: i64,
}

/// The payload announcing a filed callback on [`CALLBACK_CHANNEL`]: flow and message id.
pub fn signal_payload(flow: &str, message_id: &str) -> String {
    format!("{flow}\t{message_id}")
}

/// The flow and message id of a [`signal_payload`].
pub fn parse_signal(payload: &str) -> Option<(&str, &str)> {
    payload.split_once('\t')
}

/// Whether a received callback is new or a repeat of one already filed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    New,
    Duplicate,
}

/// Calls made for one message (a JSON array of `engine::call_log` notes), kept with the
/// backend calls of answered requests for the message's transaction's timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct NotedCalls {
    pub transaction_id: String,
    pub action: String,
    pub message_id: String,
    pub calls: String,
}

impl NotedCalls {
    fn statement(self, flow: &str, now: i64) -> (&'static str, Vec<super::rows::Arg>) {
        let args = vec![
            flow.into(),
            self.transaction_id.into(),
            self.action.into(),
            self.message_id.into(),
            self.calls.into(),
            now.into(),
        ];
        (sql::INSERT_ACTION_STEPS, args)
    }
}

/// What a buyer app keeps: its requests, its transactions' counterparts, the callbacks filed.
pub trait BuyerStore: Send + Sync {
    /// Records a request a buyer app is about to send, with its transaction (noting
    /// `counterpart`, the BPP the transaction is with, when it is known) and its log entry, in
    /// one commit. Recorded before sending, so that the fastest callback finds it.
    fn record_request(
        &self,
        request: SentRequest,
        counterpart: Option<Counterpart>,
    ) -> BoxFuture<'_, StoreResult<()>>;
    /// Notes the recipient's synchronous answer to a sent request (JSON text), with the send
    /// as a call of the request for its transaction's timeline.
    fn note_ack(
        &self,
        flow: &str,
        message_id: &str,
        ack: String,
        calls: Option<NotedCalls>,
    ) -> BoxFuture<'_, StoreResult<()>>;
    /// Notes calls made for a message (a gateway's relays), for its transaction's timeline.
    fn note_calls(&self, flow: &str, calls: NotedCalls) -> BoxFuture<'_, StoreResult<()>>;
    fn sent_request(
        &self,
        flow: &str,
        message_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<SentRequest>>>;
    /// Notes a callback refused before filing that names the request `message_id` (JSON of a
    /// [`RefusedCallback`]); past [`MAX_REFUSED_NOTED`] for a request, nothing more.
    fn note_refused_callback(
        &self,
        flow: &str,
        message_id: &str,
        refused: String,
    ) -> BoxFuture<'_, StoreResult<()>>;
    /// The transaction if the buyer app `flow` took part in it.
    fn buyer_transaction(
        &self,
        flow: &str,
        transaction_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<BuyerTransaction>>>;
    /// Files a received callback (and its log entry) and queues `forward`, its delivery to the
    /// app, in the same commit. A repeat (same action, message id, sender and body) is
    /// reported, not filed or forwarded again.
    fn file_callback(
        &self,
        callback: NewCallback,
        forward: Option<NewOutbox>,
    ) -> BoxFuture<'_, StoreResult<Accepted>>;
    /// The callbacks filed with `message_id` (answers to that request, or kept ones), oldest
    /// first.
    fn callbacks_for_message(
        &self,
        flow: &str,
        message_id: &str,
    ) -> BoxFuture<'_, StoreResult<Vec<FiledCallback>>>;
    /// The callbacks filed under a transaction, oldest first.
    fn callbacks_for_transaction(
        &self,
        flow: &str,
        transaction_id: &str,
    ) -> BoxFuture<'_, StoreResult<Vec<FiledCallback>>>;

    /// Announcements of callbacks filed by any process sharing the store
    /// ([`signal_payload`]); None where only this process writes (it knows already).
    fn callback_signals(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        None
    }
}

impl<B: Backend> BuyerStore for B {
    fn record_request(
        &self,
        request: SentRequest,
        counterpart: Option<Counterpart>,
    ) -> BoxFuture<'_, StoreResult<()>> {
        let expected = serde_json::to_string(&request.expected).unwrap_or_else(|_| "[]".into());
        let work = Work::RecordRequest(Box::new((request, counterpart, expected)));
        Box::pin(done(self, work))
    }

    fn note_ack(
        &self,
        flow: &str,
        message_id: &str,
        ack: String,
        calls: Option<NotedCalls>,
    ) -> BoxFuture<'_, StoreResult<()>> {
        let args = vec![ack.into(), flow.into(), message_id.into()];
        let mut statements = vec![(sql::NOTE_ACK, args)];
        if let Some(calls) = calls {
            statements.push(calls.statement(flow, self.clock().now_ms()));
        }
        Box::pin(done(self, Work::Execute(statements)))
    }

    fn note_calls(&self, flow: &str, calls: NotedCalls) -> BoxFuture<'_, StoreResult<()>> {
        let statement = calls.statement(flow, self.clock().now_ms());
        Box::pin(done(self, Work::Execute(vec![statement])))
    }

    fn sent_request(
        &self,
        flow: &str,
        message_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<SentRequest>>> {
        let args = vec![flow.into(), message_id.into()];
        Box::pin(
            self.reader()
                .row(sql::SENT_REQUEST, args, rows::sent_request),
        )
    }

    fn note_refused_callback(
        &self,
        flow: &str,
        message_id: &str,
        refused: String,
    ) -> BoxFuture<'_, StoreResult<()>> {
        let args = vec![
            refused.into(),
            flow.into(),
            message_id.into(),
            MAX_REFUSED_NOTED.into(),
        ];
        let work = Work::Execute(vec![(sql::NOTE_REFUSED.of(B::DIALECT), args)]);
        Box::pin(done(self, work))
    }

    fn buyer_transaction(
        &self,
        flow: &str,
        transaction_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<BuyerTransaction>>> {
        let args = vec![flow.into(), transaction_id.into()];
        Box::pin(
            self.reader()
                .row(sql::BUYER_TRANSACTION, args, rows::buyer_transaction),
        )
    }

    fn file_callback(
        &self,
        callback: NewCallback,
        forward: Option<NewOutbox>,
    ) -> BoxFuture<'_, StoreResult<Accepted>> {
        // Masked for the log here, on the caller's task, rather than in a writer.
        let logged = Logged::of(&callback, forward.as_ref());
        let work = Work::FileCallback(Box::new((callback, forward, logged)));
        Box::pin(written!(self, work, Outcome::Accepted))
    }

    fn callbacks_for_message(
        &self,
        flow: &str,
        message_id: &str,
    ) -> BoxFuture<'_, StoreResult<Vec<FiledCallback>>> {
        let args = vec![flow.into(), message_id.into()];
        let statement = sql::CALLBACKS_FOR_MESSAGE;
        Box::pin(self.reader().rows(statement, args, rows::filed_callback))
    }

    fn callbacks_for_transaction(
        &self,
        flow: &str,
        transaction_id: &str,
    ) -> BoxFuture<'_, StoreResult<Vec<FiledCallback>>> {
        let args = vec![flow.into(), transaction_id.into()];
        let statement = sql::CALLBACKS_FOR_TRANSACTION;
        Box::pin(self.reader().rows(statement, args, rows::filed_callback))
    }

    fn callback_signals(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        Backend::callback_signals(self)
    }
}
