//! A buyer app's records on SQLite: written through the writer (bodies masked for the log
//! on the caller's task), read through the read pool.

use futures::future::BoxFuture;
use rusqlite::{Connection, params};

use super::SqliteStore;
use super::outbox::enqueue;
use super::writer::{Logged, Outcome, Work, log_entry, log_message, numbered};
use crate::store::buyer::MAX_REFUSED_NOTED;
use crate::store::{
    Accepted, BuyerStore, BuyerTransaction, Counterpart, FiledCallback, NewCallback, NewOutbox,
    SentRequest, StoreError, StoreResult, now_ms, reads, sql,
};

impl BuyerStore for SqliteStore {
    fn record_request(
        &self,
        request: SentRequest,
        counterpart: Option<Counterpart>,
    ) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(self.done(Work::RecordRequest(Box::new((request, counterpart)))))
    }

    fn note_ack(
        &self,
        flow: &str,
        message_id: &str,
        ack: String,
    ) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(self.done(Work::NoteAck {
            flow: flow.to_string(),
            message_id: message_id.to_string(),
            ack,
        }))
    }

    fn sent_request(
        &self,
        flow: &str,
        message_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<SentRequest>>> {
        Box::pin(reads::sent_request(
            &self.read,
            flow.into(),
            message_id.into(),
        ))
    }

    fn note_refused_callback(
        &self,
        flow: &str,
        message_id: &str,
        refused: String,
    ) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(self.done(Work::NoteRefused {
            flow: flow.to_string(),
            message_id: message_id.to_string(),
            refused,
        }))
    }

    fn buyer_transaction(
        &self,
        flow: &str,
        transaction_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<BuyerTransaction>>> {
        Box::pin(reads::buyer_transaction(
            &self.read,
            flow.into(),
            transaction_id.into(),
        ))
    }

    fn file_callback(
        &self,
        callback: NewCallback,
        forward: Option<NewOutbox>,
    ) -> BoxFuture<'_, StoreResult<Accepted>> {
        Box::pin(async move {
            // Masked for the log here, on the caller's task, rather than in the writer.
            let logged = Logged::of(&callback, forward.as_ref());
            let work = Work::FileCallback(Box::new((callback, forward, logged)));
            match self.write(work).await? {
                Outcome::Accepted(a) => Ok(a),
                _ => Err(StoreError::Closed),
            }
        })
    }

    fn callbacks_for_message(
        &self,
        flow: &str,
        message_id: &str,
    ) -> BoxFuture<'_, StoreResult<Vec<FiledCallback>>> {
        Box::pin(reads::callbacks(
            &self.read,
            flow.into(),
            message_id.into(),
            false,
        ))
    }

    fn callbacks_for_transaction(
        &self,
        flow: &str,
        transaction_id: &str,
    ) -> BoxFuture<'_, StoreResult<Vec<FiledCallback>>> {
        Box::pin(reads::callbacks(
            &self.read,
            flow.into(),
            transaction_id.into(),
            true,
        ))
    }
}

pub(super) fn record_request(
    tx: &Connection,
    r: &SentRequest,
    counterpart: Option<&Counterpart>,
) -> StoreResult<()> {
    let now = now_ms();
    let expected = serde_json::to_string(&r.expected).unwrap_or_else(|_| "[]".into());
    tx.prepare_cached(&numbered(sql::INSERT_BAP_REQUEST))?
        .execute(params![
            r.flow,
            r.message_id,
            r.transaction_id,
            r.action,
            r.mode,
            r.recipient,
            r.url,
            expected,
            &r.body[..],
            r.ack,
            r.expires_at,
            now,
        ])?;
    tx.prepare_cached(&numbered(sql::OPEN_BAP_TRANSACTION))?
        .execute(params![
            r.flow,
            r.transaction_id,
            counterpart.map(|c| &c.bpp_id),
            counterpart.map(|c| &c.bpp_uri),
            now,
        ])?;
    let entry = (
        &r.flow[..],
        "out",
        &r.action[..],
        &r.transaction_id[..],
        &r.message_id[..],
        "{}",
    );
    log_message(tx, entry, &r.body, now)
}

/// Notes a refused callback on its request, up to [`MAX_REFUSED_NOTED`].
pub(super) fn note_refused(
    tx: &Connection,
    flow: &str,
    message_id: &str,
    refused: &str,
) -> StoreResult<()> {
    tx.prepare_cached(
        "UPDATE bap_requests SET refused = json_insert(coalesce(refused, '[]'), '$[#]', json(?1)) \
         WHERE flow = ?2 AND message_id = ?3 \
         AND json_array_length(coalesce(refused, '[]')) < ?4",
    )?
    .execute(params![refused, flow, message_id, MAX_REFUSED_NOTED])?;
    Ok(())
}

pub(super) fn file_callback(
    tx: &Connection,
    c: &NewCallback,
    forward: Option<&NewOutbox>,
    logged: &Logged,
) -> StoreResult<Accepted> {
    let now = now_ms();
    let inserted = tx
        .prepare_cached(&numbered(sql::INSERT_CALLBACK))?
        .execute(params![
            c.flow,
            c.action,
            c.message_id,
            c.transaction_id,
            c.bpp_id,
            c.via,
            c.digest(),
            c.disposition.as_str(),
            &c.body[..],
            now,
        ])?;
    if inserted == 0 {
        return Ok(Accepted::Duplicate);
    }
    let entry = (
        &c.flow[..],
        "in",
        &c.action[..],
        &c.transaction_id[..],
        &c.message_id[..],
        &c.headers[..],
    );
    log_entry(tx, entry, &logged.callback, now)?;
    if let Some(item) = forward {
        enqueue(tx, item, logged.forward.as_ref(), None)?.ok_or(StoreError::ClaimLost)?;
    }
    Ok(Accepted::New)
}
