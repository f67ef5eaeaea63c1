//! The inbox on PostgreSQL: a request is accepted in one statement (one round trip, one
//! commit) that opens or joins its transaction, records the request and logs it. Joining takes
//! the transaction's row lock, so two first requests of different counterparts cannot both
//! pass; take-overs skip what another process is claiming.

use sqlx::Row;
use sqlx::postgres::PgPool;

use crate::store::{Admission, Inbound, StoreResult, body_digest, sql};

/// Accepts a request: `$1`-`$3` its key, `$4` transaction, `$5` body, `$6` answer address,
/// `$7` now, `$8`/`$9` the claim and its lease, `$10` digest, `$11` role, `$12` counterpart,
/// `$13` headers and `$14` the body as the log keeps it.
///
/// Nothing is written for a message id already in the snapshot (a repeat) or a transaction of
/// another counterpart: the transaction is joined first (row-locked, so a concurrent first
/// request of another counterpart waits and then finds it taken), and the request and its log
/// entry are written only if that passed. Nothing needs undoing, so no explicit transaction.
const ACCEPT: &str = "WITH earlier AS (\
     SELECT digest, transaction_id FROM inbox WHERE flow = $1 AND action = $2 AND message_id = $3), \
     joined AS (INSERT INTO transactions (flow, transaction_id, role, counterpart, created_at, \
     updated_at) SELECT $1, $4, $11, $12, $7, $7 WHERE NOT EXISTS (SELECT 1 FROM earlier) \
     ON CONFLICT (flow, transaction_id) DO UPDATE SET updated_at = excluded.updated_at \
     WHERE transactions.counterpart IS NULL OR transactions.counterpart = excluded.counterpart \
     RETURNING 1), \
     accepted AS (INSERT INTO inbox (flow, action, message_id, transaction_id, body, \
     callback_base, state, received_at, claimed_by, claimed_until, digest) \
     SELECT $1, $2, $3, $4, $5, $6, 'accepted', $7, $8, $9, $10 \
     WHERE EXISTS (SELECT 1 FROM joined) ON CONFLICT DO NOTHING RETURNING 1), \
     logged AS (INSERT INTO messages (flow, direction, action, transaction_id, message_id, \
     headers, body, created_at) SELECT $1, 'in', $2, $4, $3, $13, $14, $7 \
     WHERE EXISTS (SELECT 1 FROM accepted)) \
     SELECT EXISTS (SELECT 1 FROM accepted) AS accepted, EXISTS (SELECT 1 FROM joined) AS ours, \
     EXISTS (SELECT 1 FROM earlier) AS seen, (SELECT digest FROM earlier) AS digest, \
     (SELECT transaction_id FROM earlier) AS earlier_transaction";

pub(super) async fn accept(pool: &PgPool, inbound: &Inbound, now: i64) -> StoreResult<Admission> {
    let key = &inbound.key;
    let digest = body_digest(&inbound.body);
    let logged = crate::beckn::redact::for_the_log(&inbound.body);
    let row = sqlx::query(ACCEPT)
        .bind(&key.flow)
        .bind(&key.action)
        .bind(&key.message_id)
        .bind(&inbound.transaction_id)
        .bind(inbound.body.as_ref())
        .bind(&inbound.callback_base)
        .bind(now)
        .bind(&inbound.owner)
        .bind(inbound.lease_until)
        .bind(&digest)
        .bind(&inbound.role)
        .bind(&inbound.counterpart)
        .bind(&inbound.headers)
        .bind(logged.as_ref())
        .fetch_one(pool)
        .await?;
    if row.try_get("accepted")? {
        return Ok(Admission::New);
    }
    if row.try_get("seen")? {
        return Ok(repeat(
            row.try_get("digest")?,
            row.try_get("earlier_transaction")?,
            &digest,
        ));
    }
    if !row.try_get::<bool, _>("ours")? {
        return Ok(Admission::Foreign);
    }
    // The same message id committed by another process while this statement ran: the
    // request is known now.
    let earlier = sqlx::query(sql::INBOX_DIGEST)
        .bind(&key.flow)
        .bind(&key.action)
        .bind(&key.message_id)
        .fetch_one(pool)
        .await?;
    Ok(repeat(
        earlier.try_get("digest")?,
        earlier.try_get("transaction_id")?,
        &digest,
    ))
}

/// A message id seen before: the same message again, unless its bytes differ. Requests
/// recorded before digests were kept count as repeats.
fn repeat(earlier: Option<String>, transaction_id: String, digest: &str) -> Admission {
    match earlier {
        Some(d) if d != digest => Admission::Reused { transaction_id },
        _ => Admission::Duplicate,
    }
}
