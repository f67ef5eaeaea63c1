//! What every store promises about who may act on what, run against SQLite and (where it is
//! up) PostgreSQL alike: a message id names one message, a transaction belongs to the
//! subscriber that opened it, and an order to the buyer app that placed it.

use std::sync::Arc;

use beckn_adapter::store::{Admission, Inbound, InboundKey, NewOutbox, Store, now_ms};
use bytes::Bytes;

use crate::postgres::TestDb;

fn request(message_id: &str, transaction_id: &str, bap_id: &str, body: &'static [u8]) -> Inbound {
    Inbound {
        key: InboundKey {
            flow: "lab".into(),
            action: "status".into(),
            message_id: message_id.into(),
        },
        transaction_id: transaction_id.into(),
        counterpart: bap_id.into(),
        role: "bpp".into(),
        body: Bytes::from_static(body),
        headers: "{}".into(),
        callback_base: format!("http://127.0.0.1:9/{bap_id}"),
        owner: "p1".into(),
        lease_until: now_ms() + 60_000,
    }
}

/// The callback that carries an order, which notes the order on its transaction.
fn order_callback(transaction_id: &str, order_id: &str) -> NewOutbox {
    NewOutbox {
        flow: "lab".into(),
        kind: "callback".into(),
        url: "http://127.0.0.1:9/on_confirm".into(),
        action: "on_confirm".into(),
        transaction_id: transaction_id.into(),
        message_id: "c1".into(),
        body: Bytes::from_static(b"{}"),
        deadline: Some(now_ms() + 60_000),
        completes: None,
        order: Some((order_id.into(), Some("ACTIVE".into()))),
        not_before: None,
        sequence: None,
        claimed_by: None,
    }
}

async fn ownership_contract(store: Arc<dyn Store>) {
    // an identical repeat is a duplicate
    let first = request("m1", "t1", "a.example", b"{\"n\":1}");
    assert_eq!(store.accept(first.clone()).await.unwrap(), Admission::New);
    assert_eq!(store.accept(first).await.unwrap(), Admission::Duplicate);
    // the same message id for other bytes (another body, transaction or sender) is refused
    for reuse in [
        request("m1", "t1", "a.example", b"{\"n\":2}"),
        request("m1", "t9", "a.example", b"{\"n\":3}"),
        request("m1", "t1", "b.example", b"{\"n\":4}"),
    ] {
        assert_eq!(
            store.accept(reuse).await.unwrap(),
            Admission::Reused {
                transaction_id: "t1".into()
            }
        );
    }
    // another subscriber cannot join the transaction, and nothing of its request is kept
    assert_eq!(
        store
            .accept(request("m2", "t1", "b.example", b"{\"n\":5}"))
            .await
            .unwrap(),
        Admission::Foreign
    );
    assert_eq!(
        store
            .accept(request("m2", "t1", "a.example", b"{\"n\":6}"))
            .await
            .unwrap(),
        Admission::New,
        "the refused request left no record under its message id"
    );
    let (body, callback_base) = store.last_request("lab", "t1").await.unwrap().unwrap();
    assert_eq!(&body[..], b"{\"n\":6}");
    assert_eq!(callback_base, "http://127.0.0.1:9/a.example");
    // an order belongs to the buyer app whose transaction carried it
    store.enqueue(order_callback("t1", "ORD-7")).await.unwrap();
    assert!(
        store
            .placed_order("lab", "ORD-7", "a.example")
            .await
            .unwrap()
    );
    assert!(
        !store
            .placed_order("lab", "ORD-7", "b.example")
            .await
            .unwrap()
    );
    assert!(
        !store
            .placed_order("lab", "ORD-8", "a.example")
            .await
            .unwrap()
    );
    assert!(
        !store
            .placed_order("other", "ORD-7", "a.example")
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn sqlite_store_keeps_message_ids_transactions_and_orders_to_their_owners() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    ownership_contract(beckn_adapter::store::open(&url).await.unwrap()).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL (BECKN_TEST_POSTGRES_URL); run with --ignored"]
async fn postgres_store_keeps_message_ids_transactions_and_orders_to_their_owners() {
    let db = TestDb::create().await;
    ownership_contract(beckn_adapter::store::open(&db.url).await.unwrap()).await;
}

/// Refused callbacks are noted under the request they name, a few at most.
async fn refused_callbacks_contract(store: Arc<dyn Store>) {
    use beckn_adapter::store::{RefusedCallback, SentRequest};
    let sent = SentRequest {
        flow: "app".into(),
        message_id: "m1".into(),
        transaction_id: "t1".into(),
        action: "select".into(),
        mode: "sync".into(),
        recipient: "bpp.example".into(),
        url: "http://127.0.0.1:9/select".into(),
        expected: vec!["bpp.example".into()],
        body: Bytes::from_static(b"{}"),
        ack: None,
        expires_at: now_ms() + 30_000,
        created_at: now_ms(),
        refused: None,
    };
    store.record_request(sent, None).await.unwrap();
    let refusal = |n: usize| RefusedCallback {
        bpp_id: "bpp.example".into(),
        action: "on_select".into(),
        received_at: "2026-11-23T10:00:00Z".into(),
        code: "30016".into(),
        reason: format!("signature {n} does not verify"),
    };
    for n in 0..20 {
        let json = serde_json::to_string(&refusal(n)).unwrap();
        store
            .note_refused_callback("app", "m1", json)
            .await
            .unwrap();
    }
    // a request that is not there: nothing to note, and no error
    let json = serde_json::to_string(&refusal(99)).unwrap();
    store
        .note_refused_callback("app", "m9", json)
        .await
        .unwrap();
    let kept = store.sent_request("app", "m1").await.unwrap().unwrap();
    let noted: Vec<RefusedCallback> =
        serde_json::from_str(kept.refused.as_deref().unwrap()).unwrap();
    assert_eq!(noted.len(), 8, "at most a few per request");
    assert_eq!(noted[0], refusal(0));
    assert_eq!(noted[7], refusal(7));
}

#[tokio::test]
async fn sqlite_store_notes_a_few_refused_callbacks_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    refused_callbacks_contract(beckn_adapter::store::open(&url).await.unwrap()).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL (BECKN_TEST_POSTGRES_URL); run with --ignored"]
async fn postgres_store_notes_a_few_refused_callbacks_per_request() {
    let db = TestDb::create().await;
    refused_callbacks_contract(beckn_adapter::store::open(&db.url).await.unwrap()).await;
}
