//! The store's contract, in one place: what every [`Store`] promises, each concern one `async
//! fn` run against SQLite (plain tests) and PostgreSQL (`#[ignore]`d: they need
//! `BECKN_TEST_POSTGRES_URL` and run with `--ignored`; their names say `postgres`). What only
//! one backend does (the SQLite writer's batching, PostgreSQL's announcements and leases shared
//! by processes under load) is tested beside it.

use std::any::Any;
use std::collections::HashSet;
use std::sync::Arc;

use beckn_adapter::sinks::ultra::states::OMS_STATES;
use beckn_adapter::store::{
    Accepted, Admission, BuyerTransaction, Claim, Counterpart, Disposition, HeldRequest, Inbound,
    InboundKey, LedgerEntry, LedgerQueued, NewCallback, NewOutbox, OpenOrder, OrderEvent,
    OutboxCounts, PollPosition, SentRequest, SinkUser, Store, StoreError, now_ms,
};
use bytes::Bytes;

use crate::postgres::TestDb;

/// A database under test. Each [`Db::open`] is a process (or a restart of one) on its data.
struct Db {
    url: String,
    /// Whether several processes may share it (PostgreSQL); SQLite has one process.
    shared: bool,
    _keep: Box<dyn Any + Send>,
}

impl Db {
    async fn sqlite() -> Db {
        let dir = tempfile::tempdir().unwrap();
        Db {
            url: format!("sqlite://{}", dir.path().join("store.db").display()),
            shared: false,
            _keep: Box::new(dir),
        }
    }

    async fn postgres() -> Db {
        let db = TestDb::create().await;
        Db {
            url: db.url.clone(),
            shared: true,
            _keep: Box::new(db),
        }
    }

    async fn open(&self) -> Arc<dyn Store> {
        beckn_adapter::store::open(&self.url).await.unwrap()
    }

    /// A second process beside `store` where the store may be shared; `store` itself where not.
    async fn beside(&self, store: &Arc<dyn Store>) -> Arc<dyn Store> {
        if self.shared {
            self.open().await
        } else {
            store.clone()
        }
    }
}

/// One test per backend for a contract: `$sqlite` runs everywhere, `$postgres` with
/// `--ignored`.
macro_rules! contract {
    ($contract:ident: $sqlite:ident, $postgres:ident) => {
        #[tokio::test]
        async fn $sqlite() {
            $contract(Db::sqlite().await).await;
        }

        #[tokio::test]
        #[ignore = "needs PostgreSQL (BECKN_TEST_POSTGRES_URL); run with --ignored"]
        async fn $postgres() {
            $contract(Db::postgres().await).await;
        }
    };
}

contract!(inbox_contract: sqlite_store_accepts_once_and_hands_unfinished_work_over,
    postgres_store_accepts_once_and_hands_unfinished_work_over);
contract!(outbox_contract: sqlite_store_claims_retries_buries_and_revives_messages,
    postgres_store_claims_retries_buries_and_revives_messages);
contract!(handover_contract: sqlite_store_hands_messages_to_their_worker_and_frees_earlier_claims,
    postgres_store_hands_messages_to_their_worker_and_frees_earlier_claims);
contract!(fencing_contract: sqlite_store_fences_expired_claims_and_keeps_renewed_ones,
    postgres_store_fences_expired_claims_and_keeps_renewed_ones);
contract!(ownership_contract: sqlite_store_keeps_message_ids_transactions_and_orders_to_their_owners,
    postgres_store_keeps_message_ids_transactions_and_orders_to_their_owners);
contract!(buyer_contract: sqlite_store_records_requests_and_files_callbacks_once,
    postgres_store_records_requests_and_files_callbacks_once);
contract!(refused_callbacks_contract: sqlite_store_notes_a_few_refused_callbacks_per_request,
    postgres_store_notes_a_few_refused_callbacks_per_request);
contract!(poll_contract: sqlite_store_leases_a_flow_poll_to_one_process_and_keeps_its_cursor,
    postgres_store_leases_a_flow_poll_to_one_process_and_keeps_its_cursor);
contract!(ultra_users_contract: sqlite_store_keeps_ultra_users_and_identity_tokens,
    postgres_store_keeps_ultra_users_and_identity_tokens);
contract!(oms_queue_contract: sqlite_store_queues_oms_updates_once_and_in_order,
    postgres_store_queues_oms_updates_once_and_in_order);
contract!(memory_contract: sqlite_store_remembers_values_of_a_transaction_durably,
    postgres_store_remembers_values_of_a_transaction_durably);
contract!(erp_orders_contract: sqlite_store_finds_orders_by_erp_id_and_saves_each_state_change_once,
    postgres_store_finds_orders_by_erp_id_and_saves_each_state_change_once);
contract!(held_fulfilment_contract: sqlite_store_replaces_a_held_fulfilment_by_a_cancellation,
    postgres_store_replaces_a_held_fulfilment_by_a_cancellation);

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

/// A search accepted by `owner`, leased to it for a minute.
fn inbound(message_id: &str, owner: &str) -> Inbound {
    Inbound {
        key: InboundKey {
            flow: "lab".into(),
            action: "search".into(),
            message_id: message_id.into(),
        },
        transaction_id: "t1".into(),
        counterpart: "bap.example".into(),
        role: "bpp".into(),
        body: Bytes::from_static(b"{}"),
        headers: "{}".into(),
        callback_base: "http://127.0.0.1:9/bap".into(),
        owner: owner.into(),
        lease_until: now_ms() + 60_000,
    }
}

/// A callback to send, answering `completes` if given.
fn outbox(message_id: &str, completes: Option<HeldRequest>) -> NewOutbox {
    NewOutbox {
        flow: "lab".into(),
        kind: "callback".into(),
        url: "http://127.0.0.1:9/bap/on_search".into(),
        action: "on_search".into(),
        transaction_id: "t1".into(),
        message_id: message_id.into(),
        body: Bytes::from_static(b"{\"x\":1}"),
        deadline: Some(now_ms() + 60_000),
        completes,
        order: Some(("ORD-1".into(), Some("ACTIVE".into()))),
        not_before: None,
        sequence: None,
        claimed_by: None,
        steps: None,
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
        steps: None,
    }
}

/// The claim of `owner` on an item it claimed.
fn held_by(owner: &str, item: &beckn_adapter::store::OutboxItem) -> Claim {
    Claim {
        owner: owner.into(),
        epoch: item.epoch,
    }
}

/// A request is recorded once (a repeat, from any process, is a duplicate); what was accepted
/// and not answered survives a restart and is handed over once its lease ends (at once to a
/// single-process store's next run, `take_all`).
async fn inbox_contract(db: Db) {
    {
        let store = db.open().await;
        assert_eq!(
            store.accept(inbound("m1", "p1")).await.unwrap(),
            Admission::New
        );
        assert_eq!(
            store.accept(inbound("m1", "p1")).await.unwrap(),
            Admission::Duplicate
        );
        assert_eq!(
            store.accept(inbound("m1", "p2")).await.unwrap(),
            Admission::Duplicate,
            "the same message through another process"
        );
        assert_eq!(
            store.accept(inbound("m2", "p1")).await.unwrap(),
            Admission::New
        );
        store
            .enqueue(outbox(
                "m1",
                Some(HeldRequest {
                    key: inbound("m1", "p1").key,
                    claim: Claim::first("p1"),
                }),
            ))
            .await
            .unwrap();
    }
    let store = db.open().await;
    let now = now_ms();
    assert!(
        store
            .claim_unfinished("p2", now, 1000, 10, false)
            .await
            .unwrap()
            .is_empty(),
        "still leased to p1"
    );
    let left = store
        .claim_unfinished("p2", now, 1000, 10, true)
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].key.message_id, "m2");
    assert!(
        store
            .claim_unfinished("p3", now, 1000, 10, false)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .claim_unfinished("p3", now + 1001, 1000, 10, false)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store.counts().await.unwrap(),
        OutboxCounts {
            pending: 1,
            dead: 0
        }
    );
    // A request whose process stops renewing is taken over when its lease ends.
    let mut short = inbound("m3", "p1");
    short.lease_until = now + 1_000;
    assert_eq!(store.accept(short).await.unwrap(), Admission::New);
    assert!(
        store
            .claim_unfinished("p4", now, 1000, 10, false)
            .await
            .unwrap()
            .is_empty()
    );
    let taken = store
        .claim_unfinished("p4", now + 2_000, 1000, 10, false)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].key.message_id, "m3");
}

/// Messages are claimed for a lease, retried no sooner than asked, buried with their last
/// error, revived, delivered, counted and purged; workers claiming at once never share a
/// message.
async fn outbox_contract(db: Db) {
    let store = db.open().await;
    let id = store.enqueue(outbox("m1", None)).await.unwrap();
    let now = now_ms();
    let got = store.claim("w1", now, 10, 30_000).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, id);
    assert!(
        store.claim("w2", now, 10, 30_000).await.unwrap().is_empty(),
        "leased"
    );
    // an expired lease (a crashed worker) makes it claimable again
    let taken = store.claim("w2", now + 31_000, 10, 30_000).await.unwrap();
    assert_eq!(taken.len(), 1);
    let w2 = held_by("w2", &taken[0]);
    assert!(
        store
            .retry_later(id, &w2, now + 1_000, "connection refused".into())
            .await
            .unwrap()
    );
    assert!(
        store.claim("w1", now, 10, 30_000).await.unwrap().is_empty(),
        "not due yet"
    );
    assert_eq!(store.next_due().await.unwrap(), Some(now + 1_000));
    let again = store.claim("w1", now + 1_000, 10, 30_000).await.unwrap();
    assert_eq!(again[0].attempts, 1);
    let w1 = held_by("w1", &again[0]);
    assert!(
        store
            .bury(id, &w1, now, "deadline passed: connection refused".into())
            .await
            .unwrap()
    );
    let dead = store.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 2);
    assert_eq!(
        dead[0].last_error.as_deref(),
        Some("deadline passed: connection refused")
    );
    assert!(store.revive(id, now, now + 60_000).await.unwrap());
    assert_eq!(
        store.counts().await.unwrap(),
        OutboxCounts {
            pending: 1,
            dead: 0
        }
    );
    let claimed = store.claim("w1", now, 10, 1).await.unwrap();
    let w1 = held_by("w1", &claimed[0]);
    assert!(store.delivered(claimed[0].id, &w1, now).await.unwrap());
    assert_eq!(store.counts().await.unwrap(), OutboxCounts::default());
    assert!(
        !store.discard(id).await.unwrap(),
        "only dead letters can be dropped"
    );
    assert!(store.purge(now + 1).await.unwrap() >= 1);

    // Two workers claiming at once never get the same message.
    let other = db.beside(&store).await;
    for i in 0..100 {
        store.enqueue(outbox(&format!("n{i}"), None)).await.unwrap();
    }
    let (a, b) = tokio::join!(
        store.claim("w1", now_ms(), 60, 30_000),
        other.claim("w2", now_ms(), 60, 30_000)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let ids_a: HashSet<i64> = a.iter().map(|i| i.id).collect();
    let ids_b: HashSet<i64> = b.iter().map(|i| i.id).collect();
    assert!(ids_a.is_disjoint(&ids_b));
    assert_eq!(ids_a.len() + ids_b.len(), 100);
    let first = a[0].id;
    assert!(
        store
            .bury(
                first,
                &held_by("w1", &a[0]),
                now_ms(),
                "deadline passed".into()
            )
            .await
            .unwrap()
    );
    assert_eq!(store.dead_letters(10).await.unwrap()[0].id, first);
    assert_eq!(store.counts().await.unwrap().dead, 1);
    assert!(
        store
            .revive(first, now_ms(), now_ms() + 60_000)
            .await
            .unwrap()
    );
    assert!(store.purge(now_ms() + 1).await.unwrap() >= 100);
}

/// What the outbox worker relies on: a message recorded as already claimed is its recorder's
/// until the claim ends (then due again), a message is not due before its time, an answer may
/// be recorded as a dead letter at once, and freeing earlier runs' claims (a single-process
/// store at start) fences them.
async fn handover_contract(db: Db) {
    let store = db.open().await;
    assert_eq!(store.shared(), db.shared);
    let now = now_ms();
    let mut handed = outbox("h1", None);
    handed.claimed_by = Some(("w1".into(), now + 30_000));
    let id = store.enqueue(handed).await.unwrap();
    assert!(
        store.claim("w2", now, 10, 30_000).await.unwrap().is_empty(),
        "held by the process that recorded it"
    );
    assert_eq!(store.next_due().await.unwrap(), Some(now + 30_000));
    let w1 = Claim::first("w1");
    assert!(store.renew_delivery(id, &w1, now + 40_000).await.unwrap());
    assert_eq!(store.next_due().await.unwrap(), Some(now + 40_000));
    // An earlier run's claims are freed, and the freed claim writes nothing.
    assert_eq!(store.release_claims("w9").await.unwrap(), 1);
    assert!(!store.delivered(id, &w1, now).await.unwrap());
    let got = store.claim("w9", now_ms(), 10, 30_000).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, id);
    assert_eq!(
        store.release_claims("w9").await.unwrap(),
        0,
        "its own claims are kept"
    );
    assert!(
        store
            .delivered(id, &held_by("w9", &got[0]), now)
            .await
            .unwrap()
    );
    // Not before its time.
    let mut later = outbox("h2", None);
    later.not_before = Some(now + 5_000);
    let later = store.enqueue(later).await.unwrap();
    assert!(store.claim("w1", now, 10, 30_000).await.unwrap().is_empty());
    assert_eq!(store.next_due().await.unwrap(), Some(now + 5_000));
    let got = store.claim("w1", now + 5_000, 10, 30_000).await.unwrap();
    assert_eq!(got.iter().map(|i| i.id).collect::<Vec<_>>(), [later]);
    // A dead letter at once.
    let dead = store
        .enqueue_dead(outbox("h3", None), "refused".into())
        .await
        .unwrap();
    let letters = store.dead_letters(10).await.unwrap();
    assert_eq!(
        letters
            .iter()
            .map(|d| (d.id, d.last_error.as_deref()))
            .collect::<Vec<_>>(),
        [(dead, Some("refused"))]
    );
    assert_eq!(
        store.counts().await.unwrap(),
        OutboxCounts {
            pending: 1,
            dead: 1
        }
    );
}

/// A claim taken over (its lease ended while its holder was paused) writes nothing: not the
/// answer of its request, not the outcome of its delivery; a renewed claim is not taken over.
/// `a` and `b` are two processes where the store is shared.
async fn fencing_contract(db: Db) {
    let a = db.open().await;
    let b = db.beside(&a).await;
    let mut request = inbound("m1", "p1");
    let now = now_ms();
    request.lease_until = now + 1_000;
    a.accept(request.clone()).await.unwrap();
    let first = Claim::first("p1");
    assert!(
        a.renew_request(&request.key, &first, now + 5_000)
            .await
            .unwrap()
    );
    assert!(
        b.claim_unfinished("p2", now + 2_000, 1_000, 10, false)
            .await
            .unwrap()
            .is_empty(),
        "renewed"
    );
    let taken = b
        .claim_unfinished("p2", now + 6_000, 1_000, 10, false)
        .await
        .unwrap();
    assert_eq!(
        taken[0].claim,
        Claim {
            owner: "p2".into(),
            epoch: 1
        }
    );
    let answer = |claim: &Claim| {
        outbox(
            "m1",
            Some(HeldRequest {
                key: request.key.clone(),
                claim: claim.clone(),
            }),
        )
    };
    assert!(
        !a.renew_request(&request.key, &first, now + 9_000)
            .await
            .unwrap()
    );
    assert!(matches!(
        a.enqueue(answer(&first)).await,
        Err(StoreError::ClaimLost)
    ));
    assert!(matches!(
        a.enqueue_dead(answer(&first), "expired".into()).await,
        Err(StoreError::ClaimLost)
    ));
    assert_eq!(a.counts().await.unwrap(), OutboxCounts::default());
    let id = b.enqueue(answer(&taken[0].claim)).await.unwrap();
    assert!(matches!(
        b.enqueue(answer(&taken[0].claim)).await,
        Err(StoreError::ClaimLost)
    ));
    // The outbox: a delivery attempt that outlived its lease records nothing.
    let now = now_ms();
    let w1 = a.claim("w1", now, 10, 1_000).await.unwrap();
    let w1 = held_by("w1", &w1[0]);
    let w2 = b.claim("w2", now + 2_000, 10, 1_000).await.unwrap();
    let w2 = held_by("w2", &w2[0]);
    assert!(!a.renew_delivery(id, &w1, now + 9_000).await.unwrap());
    assert!(!a.delivered(id, &w1, now).await.unwrap());
    assert!(!a.bury(id, &w1, now, "x".into()).await.unwrap());
    assert!(!a.retry_later(id, &w1, now, "x".into()).await.unwrap());
    assert!(b.renew_delivery(id, &w2, now + 9_000).await.unwrap());
    assert!(b.delivered(id, &w2, now).await.unwrap());
    assert_eq!(b.counts().await.unwrap(), OutboxCounts::default());
}

/// A message id names one message, a transaction belongs to the subscriber that opened it, and
/// an order to the buyer app whose transaction carried it.
async fn ownership_contract(db: Db) {
    let store = db.open().await;
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

/// A buyer app's request is recorded with its transaction and counterpart, its ACK noted; a
/// callback is filed once (a repeat is reported, not filed or forwarded again), its webhook
/// delivery queued in the same commit, and found by message and by transaction.
async fn buyer_contract(db: Db) {
    let store = db.open().await;
    let bpp = Counterpart {
        bpp_id: "bpp.example".into(),
        bpp_uri: "http://127.0.0.1:9/bpp".into(),
    };
    let sent = SentRequest {
        flow: "app".into(),
        message_id: "m1".into(),
        transaction_id: "t1".into(),
        action: "select".into(),
        mode: "sync".into(),
        recipient: "bpp.example".into(),
        url: "http://127.0.0.1:9/bpp/select".into(),
        expected: vec!["bpp.example".into()],
        body: Bytes::from_static(b"{\"n\":1}"),
        ack: None,
        expires_at: now_ms() + 30_000,
        created_at: now_ms(),
        refused: None,
    };
    assert_eq!(store.buyer_transaction("app", "t1").await.unwrap(), None);
    store
        .record_request(sent.clone(), Some(bpp.clone()))
        .await
        .unwrap();
    // Kept as sent; `created_at` is the time of recording (given, or the store's clock).
    let kept = store.sent_request("app", "m1").await.unwrap().unwrap();
    assert!(
        (sent.created_at..=now_ms()).contains(&kept.created_at),
        "{kept:?}"
    );
    assert_eq!(
        SentRequest {
            created_at: sent.created_at,
            ..kept
        },
        sent
    );
    assert_eq!(store.sent_request("app", "m9").await.unwrap(), None);
    assert_eq!(store.sent_request("other", "m1").await.unwrap(), None);
    let ack = r#"{"message":{"ack":{"status":"ACK"}}}"#.to_string();
    store
        .note_ack("app", "m1", ack.clone(), None)
        .await
        .unwrap();
    assert_eq!(
        store.sent_request("app", "m1").await.unwrap().unwrap().ack,
        Some(ack)
    );
    assert_eq!(
        store.buyer_transaction("app", "t1").await.unwrap(),
        Some(BuyerTransaction {
            transaction_id: "t1".into(),
            counterpart: Some(bpp),
        })
    );
    assert_eq!(store.buyer_transaction("other", "t1").await.unwrap(), None);

    let callback = |bpp_id: &str, body: &'static [u8]| NewCallback {
        flow: "app".into(),
        action: "on_select".into(),
        message_id: "m1".into(),
        transaction_id: "t1".into(),
        bpp_id: bpp_id.into(),
        via: None,
        disposition: Disposition::Answer,
        body: Bytes::from_static(body),
        headers: "{}".into(),
    };
    let webhook = || NewOutbox {
        flow: "app".into(),
        kind: "app_webhook".into(),
        url: "http://127.0.0.1:9/app/webhook".into(),
        action: "on_select".into(),
        transaction_id: "t1".into(),
        message_id: "m1".into(),
        body: Bytes::from_static(b"{}"),
        deadline: Some(now_ms() + 60_000),
        completes: None,
        order: None,
        not_before: None,
        sequence: None,
        claimed_by: None,
        steps: None,
    };
    let first = callback("bpp.example", b"{\"on\":1}");
    assert_eq!(
        store
            .file_callback(first.clone(), Some(webhook()))
            .await
            .unwrap(),
        Accepted::New
    );
    assert_eq!(
        store.counts().await.unwrap().pending,
        1,
        "forwarded with it"
    );
    assert_eq!(
        store.file_callback(first, Some(webhook())).await.unwrap(),
        Accepted::Duplicate
    );
    assert_eq!(store.counts().await.unwrap().pending, 1, "forwarded once");
    assert_eq!(
        store
            .file_callback(callback("bpp2.example", b"{\"on\":2}"), None)
            .await
            .unwrap(),
        Accepted::New
    );
    let filed = store.callbacks_for_message("app", "m1").await.unwrap();
    assert_eq!(
        filed
            .iter()
            .map(|c| (c.bpp_id.as_str(), &c.body[..], c.disposition))
            .collect::<Vec<_>>(),
        [
            ("bpp.example", &b"{\"on\":1}"[..], Disposition::Answer),
            ("bpp2.example", &b"{\"on\":2}"[..], Disposition::Answer),
        ],
        "oldest first"
    );
    assert_eq!(
        store.callbacks_for_transaction("app", "t1").await.unwrap(),
        filed
    );
    assert!(
        store
            .callbacks_for_message("other", "m1")
            .await
            .unwrap()
            .is_empty()
    );
}

/// Refused callbacks are noted under the request they name, a few at most.
async fn refused_callbacks_contract(db: Db) {
    let store = db.open().await;
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

/// One process at a time polls a flow: the lease goes to one of several claiming at once, only
/// its holder moves the cursor, a renewed lease is kept and an ended one taken over with the
/// cursor, which survives a restart; flows are polled apart.
async fn poll_contract(db: Db) {
    const FLOW: &str = "lab";
    let now = now_ms();
    {
        let store = db.open().await;
        // Eight processes claim the same flow at the same instant: one gets it.
        let claims = futures::future::join_all((0..8).map(|i| {
            let store = store.clone();
            async move {
                let owner = format!("p{i}");
                let got = store.claim_poll(FLOW, &owner, now, 1_000).await;
                (owner, got.expect("claim"))
            }
        }))
        .await;
        let holders: Vec<_> = claims.iter().filter(|(_, c)| c.is_some()).collect();
        assert_eq!(holders.len(), 1, "{claims:?}");
        let (holder, position) = holders[0];
        assert_eq!(position, &Some(PollPosition { cursor: None }));
        let other = if holder == "p0" { "p1" } else { "p0" };
        assert!(
            store
                .advance_poll(FLOW, holder, "7", now + 10, 1_000)
                .await
                .unwrap()
        );
        assert!(
            !store
                .advance_poll(FLOW, other, "8", now + 10, 1_000)
                .await
                .unwrap()
        );
        // The holder renews its lease; the others wait for it to end, then one takes over.
        assert!(
            store
                .claim_poll(FLOW, holder, now + 500, 1_000)
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(
            store
                .claim_poll(FLOW, other, now + 1_400, 1_000)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store
                .claim_poll(FLOW, other, now + 1_600, 1_000)
                .await
                .unwrap(),
            Some(PollPosition {
                cursor: Some("7".into())
            })
        );
    }
    // The cursor survives a restart.
    const FLOW2: &str = "lab-2";
    {
        let store = db.open().await;
        let first = store.claim_poll(FLOW2, "p1", now, 1_000).await.unwrap();
        assert_eq!(first, Some(PollPosition { cursor: None }));
        assert_eq!(
            store
                .claim_poll(FLOW2, "p2", now + 10, 1_000)
                .await
                .unwrap(),
            None,
            "held by p1"
        );
        assert!(
            store
                .advance_poll(FLOW2, "p1", "42", now + 20, 1_000)
                .await
                .unwrap()
        );
        assert!(
            !store
                .advance_poll(FLOW2, "p2", "43", now + 20, 1_000)
                .await
                .unwrap(),
            "only the holder moves the cursor"
        );
        // another flow is polled on its own
        assert!(
            store
                .claim_poll("other", "p2", now, 1_000)
                .await
                .unwrap()
                .is_some()
        );
    }
    let store = db.open().await;
    // p1's lease (renewed at now + 20) ends at now + 1020; then p2 may take over
    assert_eq!(
        store
            .claim_poll(FLOW2, "p2", now + 500, 1_000)
            .await
            .unwrap(),
        None
    );
    let taken = store
        .claim_poll(FLOW2, "p2", now + 1_100, 1_000)
        .await
        .unwrap();
    assert_eq!(
        taken,
        Some(PollPosition {
            cursor: Some("42".into())
        })
    );
    assert!(
        !store
            .advance_poll(FLOW2, "p1", "44", now + 1_200, 1_000)
            .await
            .unwrap()
    );
}

/// A signed-in Ultra user is kept under their session until signed out; the identity token
/// is noted on a transaction of the flow.
async fn ultra_users_contract(db: Db) {
    let store = db.open().await;
    let user = SinkUser {
        session: "s1".into(),
        connection: "ultra".into(),
        identity_token: "id-1".into(),
        mobile: Some("9000000001".into()),
        email: None,
        created_at: now_ms(),
    };
    store.save_sink_user(user.clone()).await.unwrap();
    assert_eq!(store.sink_user("s1").await.unwrap(), Some(user));
    assert_eq!(store.sink_user("s2").await.unwrap(), None);
    assert!(store.forget_sink_user("s1").await.unwrap());
    assert!(!store.forget_sink_user("s1").await.unwrap(), "unknown now");
    assert_eq!(store.sink_user("s1").await.unwrap(), None);

    let sent = SentRequest {
        flow: "app".into(),
        message_id: "m1".into(),
        transaction_id: "t1".into(),
        action: "search".into(),
        mode: "async".into(),
        recipient: "gateway.example".into(),
        url: "http://127.0.0.1:9/gateway/search".into(),
        expected: Vec::new(),
        body: Bytes::from_static(b"{}"),
        ack: None,
        expires_at: now_ms() + 30_000,
        created_at: now_ms(),
        refused: None,
    };
    store.record_request(sent, None).await.unwrap();
    assert_eq!(store.identity_token("app", "t1").await.unwrap(), None);
    store.note_identity("app", "t1", "id-1").await.unwrap();
    assert_eq!(
        store.identity_token("app", "t1").await.unwrap().as_deref(),
        Some("id-1")
    );
    assert_eq!(store.identity_token("app", "t2").await.unwrap(), None);
    assert_eq!(store.identity_token("other", "t1").await.unwrap(), None);
}

/// OMS updates: a repeat is not queued, a state that may not
/// follow is refused, an order's updates are claimed one at a time, in order, and a dead one
/// holds back the later ones; the same order id of another lab in another transaction is
/// another order; an order event whose mapping failed is a dead letter that keeps the event.
async fn oms_queue_contract(db: Db) {
    let store = db.open().await;
    let order = format!("O-{}", uuid::Uuid::new_v4());
    let event = OrderEvent {
        flow: "farmer-app".into(),
        callback: "on_confirm".into(),
        body: bytes::Bytes::from_static(br#"{"message": {"order": {"id": "O"}}}"#),
    };
    let update = |provider: &str, transaction_id: &str, state: &str| {
        (
            LedgerEntry {
                connection: "ultra".into(),
                provider: provider.into(),
                transaction_id: transaction_id.into(),
                order_id: order.clone(),
                state: state.into(),
                event: event.clone(),
            },
            NewOutbox {
                flow: "ultra".into(),
                kind: "ultra".into(),
                url: "http://127.0.0.1:9/3/oms".into(),
                action: state.into(),
                transaction_id: transaction_id.into(),
                message_id: format!("{order}/{state}"),
                body: bytes::Bytes::from_static(b"{}"),
                deadline: Some(now_ms() + 60_000),
                completes: None,
                order: None,
                not_before: None,
                sequence: Some(beckn_adapter::sinks::ultra::states::sequence_key(
                    "ultra",
                    provider,
                    transaction_id,
                    &order,
                )),
                claimed_by: None,
                steps: None,
            },
        )
    };
    let queue_for = |provider: &str, transaction_id: &str, state: &str| {
        let (r, i) = update(provider, transaction_id, state);
        store.queue_entry(&OMS_STATES, r, i)
    };
    let queue = |state: &str| queue_for("lab-a/A", "t1", state);
    assert!(matches!(
        queue("ORDER_CANCELLED").await.unwrap(),
        LedgerQueued::OutOfOrder(_)
    ));
    let LedgerQueued::Queued(first) = queue("ORDER_CONFIRMED").await.unwrap() else {
        panic!("the confirmation is queued")
    };
    assert_eq!(
        queue("ORDER_CONFIRMED").await.unwrap(),
        LedgerQueued::Repeat
    );
    let LedgerQueued::Queued(second) = queue("ORDER_CANCELLED").await.unwrap() else {
        panic!("the cancellation follows")
    };
    assert!(matches!(
        queue("ORDER_FULFILLED").await.unwrap(),
        LedgerQueued::OutOfOrder(_)
    ));
    let kept = store
        .order_event(first)
        .await
        .unwrap()
        .expect("the event is kept");
    assert_eq!(kept.event, event);
    assert_eq!(
        kept.update.map(|u| (u.order_id, u.state)),
        Some((order.clone(), "ORDER_CONFIRMED".to_string()))
    );
    // One at a time: the cancellation waits while the confirmation is pending...
    let now = now_ms();
    // What worker w1 claims at `at`: the ids, and its claim on each.
    let claimed = |at: i64| {
        let store = store.clone();
        async move {
            store
                .claim("w1", at, 10, 1)
                .await
                .unwrap()
                .iter()
                .map(|i| {
                    let claim = beckn_adapter::store::Claim {
                        owner: "w1".into(),
                        epoch: i.epoch,
                    };
                    (i.id, claim)
                })
                .collect::<std::collections::HashMap<i64, _>>()
        }
    };
    let got = claimed(now).await;
    assert!(
        got.contains_key(&first) && !got.contains_key(&second),
        "{got:?}"
    );
    // ...and while it is dead, until it is retried and delivered.
    assert!(
        store
            .bury(first, &got[&first], now, "code 21".into())
            .await
            .unwrap()
    );
    let got = claimed(now + 10).await;
    assert!(!got.contains_key(&second), "{got:?}");
    assert!(store.revive(first, now, now + 60_000).await.unwrap());
    let got = claimed(now + 20).await;
    assert!(
        got.contains_key(&first) && !got.contains_key(&second),
        "{got:?}"
    );
    assert!(store.delivered(first, &got[&first], now).await.unwrap());
    assert_eq!(
        store.order_event(first).await.unwrap(),
        None,
        "a delivered update keeps no order event"
    );
    let got = claimed(now + 30).await;
    assert!(got.contains_key(&second), "{got:?}");

    // The same order id at another lab, in another transaction, is another order.
    assert!(matches!(
        queue_for("lab-b/B", "t2", "ORDER_CONFIRMED").await.unwrap(),
        LedgerQueued::Queued(_)
    ));

    // An event whose mapping failed: a dead letter, with the event kept for a retry.
    let (_, mut item) = update("lab-a/A", "t3", "ORDER_CONFIRMED");
    item.action = "on_confirm".into();
    let id = store
        .bury_order_event(event.clone(), item, "`o.updated_at` is undefined".into())
        .await
        .unwrap();
    let dead = store.dead_letters(100).await.unwrap();
    let letter = dead.iter().find(|d| d.id == id).expect("listed as dead");
    assert_eq!(
        letter.last_error.as_deref(),
        Some("`o.updated_at` is undefined")
    );
    let kept = store.order_event(id).await.unwrap().expect("kept");
    assert_eq!((kept.event, kept.update), (event.clone(), None));
    assert!(store.discard(id).await.unwrap());
    assert_eq!(
        store.order_event(id).await.unwrap(),
        None,
        "dropped with it"
    );
}

/// A cancellation while the order's ORDER_FULFILLED is held
/// back for its `lastFulfillmentDate`: the held update is dropped and the cancellation queued;
/// a fulfilment already on its way is final.
async fn held_fulfilment_contract(db: Db) {
    let store = db.open().await;
    let order = format!("O-{}", uuid::Uuid::new_v4());
    let held_for = |transaction_id: &str, state: &str, hold: bool| {
        let record = LedgerEntry {
            connection: "ultra".into(),
            provider: "lab-c/C".into(),
            transaction_id: transaction_id.into(),
            order_id: order.clone(),
            state: state.into(),
            event: OrderEvent {
                flow: "farmer-app".into(),
                callback: "on_status".into(),
                body: bytes::Bytes::from_static(b"{}"),
            },
        };
        let item = NewOutbox {
            flow: "ultra".into(),
            kind: "ultra".into(),
            url: "http://127.0.0.1:9/3/oms".into(),
            action: state.into(),
            transaction_id: transaction_id.into(),
            message_id: format!("{order}/{state}"),
            body: bytes::Bytes::from_static(b"{}"),
            deadline: Some(now_ms() + 172_800_000),
            completes: None,
            order: None,
            not_before: hold.then(|| now_ms() + 86_400_000),
            sequence: Some(beckn_adapter::sinks::ultra::states::sequence_key(
                "ultra",
                "lab-c/C",
                transaction_id,
                &order,
            )),
            claimed_by: None,
            steps: None,
        };
        store.queue_entry(&OMS_STATES, record, item)
    };
    for (transaction_id, hold) in [("t4", true), ("t5", false)] {
        assert!(matches!(
            held_for(transaction_id, "ORDER_CONFIRMED", false)
                .await
                .unwrap(),
            LedgerQueued::Queued(_)
        ));
        assert!(matches!(
            held_for(transaction_id, "ORDER_FULFILLED", hold)
                .await
                .unwrap(),
            LedgerQueued::Queued(_)
        ));
        let cancelled = held_for(transaction_id, "ORDER_CANCELLED", false)
            .await
            .unwrap();
        if hold {
            assert!(
                matches!(cancelled, LedgerQueued::Queued(_)),
                "{cancelled:?}"
            );
            assert!(
                matches!(
                    held_for(transaction_id, "ORDER_FULFILLED", false)
                        .await
                        .unwrap(),
                    LedgerQueued::OutOfOrder(_)
                ),
                "the held fulfilment is gone, the cancellation stands"
            );
        } else {
            assert!(
                matches!(cancelled, LedgerQueued::OutOfOrder(_)),
                "{cancelled:?}"
            );
        }
    }
}

/// What a transaction remembers: each value by name (JSON, replaced when remembered again),
/// with the order id its callbacks carried; kept across a restart and by another process,
/// apart from other flows and transactions, and dropped by the retention.
async fn memory_contract(db: Db) {
    use serde_json::{Map, Value, json};
    let store = db.open().await;
    assert!(store.recall("lab", "t1").await.unwrap().is_empty());
    let values = |v: Value| -> Map<String, Value> { v.as_object().unwrap().clone() };
    store
        .remember(
            "lab",
            "t1",
            &values(json!({"quotation_no": "Q-1", "order": {"items": [{"id": "i1"}]}})),
        )
        .await
        .unwrap();
    store
        .remember(
            "lab",
            "t1",
            &values(json!({"quotation_no": "Q-2", "slots": 3})),
        )
        .await
        .unwrap();
    store.remember("lab", "t1", &Map::new()).await.unwrap();
    let expected = json!({"quotation_no": "Q-2", "order": {"items": [{"id": "i1"}]}, "slots": 3});
    assert_eq!(
        Value::Object(store.recall("lab", "t1").await.unwrap()),
        expected
    );
    assert!(store.recall("lab", "t2").await.unwrap().is_empty());
    assert!(store.recall("other", "t1").await.unwrap().is_empty());
    // the order id the transaction's callbacks carried is part of it
    assert_eq!(
        store
            .accept(request("m1", "t1", "a.example", b"{}"))
            .await
            .unwrap(),
        Admission::New
    );
    store.enqueue(order_callback("t1", "ORD-7")).await.unwrap();
    let recalled = store.recall("lab", "t1").await.unwrap();
    assert_eq!(recalled["erp_order_id"], json!("ORD-7"));
    assert_eq!(recalled["quotation_no"], json!("Q-2"));
    // durable: another process, and a restart, read the same
    let other = db.beside(&store).await;
    assert_eq!(other.recall("lab", "t1").await.unwrap(), recalled);
    drop(other);
    drop(store);
    let store = db.open().await;
    assert_eq!(store.recall("lab", "t1").await.unwrap(), recalled);
    // the retention drops memory not written since
    assert!(store.purge(now_ms() + 1).await.unwrap() >= 3);
    let after = store.recall("lab", "t1").await.unwrap();
    assert_eq!(Value::Object(after), json!({"erp_order_id": "ORD-7"}));
}

/// An order callback of `transaction_id` in `state` (a Beckn order status).
fn order_in_state(transaction_id: &str, order_id: &str, state: &str) -> NewOutbox {
    let mut item = order_callback(transaction_id, order_id);
    item.order = Some((order_id.into(), Some(state.into())));
    item
}

/// A transaction is found by its ERP order id within its flow; an order is open from the
/// callback that carries its id until it settles in a final state or is cancelled through
/// Beckn; its first state is saved once, each next one only from the count of changes it was
/// seen at (two pollers save one change once), and kept across a restart.
async fn erp_orders_contract(db: Db) {
    let store = db.open().await;
    for (m, t) in [("m1", "t1"), ("m2", "t2"), ("m3", "t3")] {
        let r = request(m, t, "a.example", b"{}");
        assert_eq!(store.accept(r).await.unwrap(), Admission::New);
    }
    assert!(store.open_orders("lab", 10).await.unwrap().is_empty());
    assert_eq!(
        store.transaction_of_order("lab", "ORD-1").await.unwrap(),
        None
    );
    store.enqueue(order_callback("t1", "ORD-1")).await.unwrap();
    store.enqueue(order_callback("t2", "ORD-2")).await.unwrap();
    store
        .enqueue(order_in_state("t3", "ORD-3", "CANCELLED"))
        .await
        .unwrap();
    assert_eq!(
        store.transaction_of_order("lab", "ORD-2").await.unwrap(),
        Some("t2".into())
    );
    assert_eq!(
        store.transaction_of_order("other", "ORD-2").await.unwrap(),
        None
    );
    let open = store.open_orders("lab", 10).await.unwrap();
    let ids: HashSet<&str> = open.iter().map(|o| o.erp_order_id.as_str()).collect();
    assert_eq!(
        ids,
        HashSet::from(["ORD-1", "ORD-2"]),
        "a cancelled order is not open"
    );
    assert!(open.iter().all(|o| o.seen.is_none()));
    assert_eq!(store.open_orders("lab", 1).await.unwrap().len(), 1);

    let first = open
        .iter()
        .find(|o| o.transaction_id == "t1")
        .unwrap()
        .clone();
    assert!(
        store
            .save_order_state("lab", &first, "BOOKED", false)
            .await
            .unwrap()
    );
    let other = db.beside(&store).await;
    assert!(
        !other
            .save_order_state("lab", &first, "TESTING", false)
            .await
            .unwrap(),
        "a first state is saved once"
    );
    let seen: OpenOrder = store
        .open_orders("lab", 10)
        .await
        .unwrap()
        .into_iter()
        .find(|o| o.transaction_id == "t1")
        .unwrap();
    let at = seen.seen.clone().unwrap();
    assert_eq!((at.state.as_str(), at.changes), ("BOOKED", 0));
    assert!(
        store
            .save_order_state("lab", &seen, "TESTING", false)
            .await
            .unwrap()
    );
    assert!(
        !other
            .save_order_state("lab", &seen, "TESTING", false)
            .await
            .unwrap(),
        "a change is saved once"
    );
    let state = store.order_state("lab", "t1").await.unwrap().unwrap();
    assert_eq!(
        (state.state.as_str(), state.changes, state.settled),
        ("TESTING", 1, false)
    );

    // a final state settles the order: no longer open, and so after a restart
    let seen = store
        .open_orders("lab", 10)
        .await
        .unwrap()
        .into_iter()
        .find(|o| o.transaction_id == "t1")
        .unwrap();
    assert!(
        store
            .save_order_state("lab", &seen, "REPORT_READY", true)
            .await
            .unwrap()
    );
    drop((store, other));
    let store = db.open().await;
    let open = store.open_orders("lab", 10).await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].erp_order_id, "ORD-2");
    let state = store.order_state("lab", "t1").await.unwrap().unwrap();
    assert_eq!(
        (state.state.as_str(), state.changes, state.settled),
        ("REPORT_READY", 2, true)
    );
    assert_eq!(store.order_state("lab", "t9").await.unwrap(), None);

    // the retention purges the settled order's state; the order stays settled
    store.purge(now_ms() + 1).await.unwrap();
    assert_eq!(store.order_state("lab", "t1").await.unwrap(), None);
    let open = store.open_orders("lab", 10).await.unwrap();
    assert_eq!(
        open.len(),
        1,
        "a purged settled order is open again: {open:?}"
    );
    assert_eq!(open[0].erp_order_id, "ORD-2");
}

contract!(nacks_contract: sqlite_store_keeps_nacked_requests_for_the_console_until_purged,
    postgres_store_keeps_nacked_requests_for_the_console_until_purged);

async fn nacks_contract(db: Db) {
    use beckn_adapter::store::{NackRecord, TransactionFilter};
    let store = db.open().await;
    for (m, code) in [("m1", "10001"), ("m2", "30000")] {
        let nack = NackRecord::new(
            "lab",
            "bpp",
            "init",
            ("t-nacked", m, "a.example"),
            (code, 400, "refused", Some("message.order")),
            "{}".into(),
            br#"{"context":{"transaction_id":"t-nacked"},"message":{"phone":"98100"}}"#,
        );
        store.record_nack(nack).await.unwrap();
    }
    let filter = TransactionFilter {
        transaction_id: "t-nacked".into(),
        limit: 10,
        ..Default::default()
    };
    let listed = store.transactions(&filter).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let t = &listed[0];
    assert_eq!(
        (
            t.outcome.as_str(),
            t.nack_code.as_deref(),
            t.nacks,
            t.messages
        ),
        ("nack", Some("30000"), 2, 0)
    );
    assert_eq!(t.counterpart.as_deref(), Some("a.example"));
    assert_eq!(t.last_action.as_deref(), Some("init"));
    let by_outcome = TransactionFilter {
        outcome: "nack".into(),
        action: "init".into(),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(store.transactions(&by_outcome).await.unwrap().len(), 1);
    let record = store.transaction_record("lab", "t-nacked").await.unwrap();
    assert_eq!(record.nacks.len(), 2);
    let n = &record.nacks[0];
    assert_eq!((n.code.as_str(), n.status), ("10001", 400));
    assert_eq!(n.path.as_deref(), Some("message.order"));
    assert!(!n.body.contains("98100"), "{}", n.body);
    assert!(store.change_mark().await.unwrap().nacked > 0);

    store.purge(now_ms() + 1).await.unwrap();
    assert!(store.transactions(&filter).await.unwrap().is_empty());
    assert!(
        store
            .transaction_record("lab", "t-nacked")
            .await
            .unwrap()
            .nacks
            .is_empty()
    );
}

contract!(history_contract: sqlite_store_tells_what_happened_to_a_transaction_in_order,
    postgres_store_tells_what_happened_to_a_transaction_in_order);

/// What the console reads: a transaction's requests, answers, backend calls and deliveries
/// in order, whichever process wrote them; a process whose claim was lost leaves no trace;
/// lists filtered by id, order, counterpart, action and outcome.
async fn history_contract(db: Db) {
    use beckn_adapter::store::TransactionFilter;

    let p1 = db.open().await;
    let p2 = db.beside(&p1).await;
    let held = |m: &str, owner: &str| HeldRequest {
        key: inbound(m, owner).key,
        claim: Claim::first(owner),
    };
    assert_eq!(
        p1.accept(inbound("h1", "p1")).await.unwrap(),
        Admission::New
    );
    let mut answer = outbox("h1", Some(held("h1", "p1")));
    answer.steps =
        Some(r#"[{"step":"quote","method":"POST","path":"/quotes","status":200}]"#.into());
    p1.enqueue(answer).await.unwrap();
    assert_eq!(
        p2.accept(inbound("h2", "p2")).await.unwrap(),
        Admission::New
    );
    // a process that does not hold the request (a lost claim) records nothing, steps included
    let mut stale = outbox("h2", Some(held("h2", "p1")));
    stale.steps = Some(r#"[{"step":"ghost"}]"#.into());
    assert!(p1.enqueue(stale).await.is_err());
    let mut answer = outbox("h2", Some(held("h2", "p2")));
    answer.steps = Some(r#"[{"step":"slots","method":"GET","path":"/slots","status":503}]"#.into());
    let dead_id = p2.enqueue(answer).await.unwrap();
    let claimed = p2.claim("p2", now_ms() + 1, 10, 60_000).await.unwrap();
    let item = claimed.iter().find(|i| i.id == dead_id).expect("claimed");
    let claim = Claim {
        owner: "p2".into(),
        epoch: item.epoch,
    };
    assert!(
        p2.bury(dead_id, &claim, now_ms(), "HTTP 500".into())
            .await
            .unwrap()
    );

    for store in [&p1, &p2] {
        let record = store.transaction_record("lab", "t1").await.unwrap();
        let logged: Vec<(String, String)> = record
            .messages
            .iter()
            .map(|m| (m.direction.clone(), m.message_id.clone()))
            .collect();
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert_eq!(
            logged,
            pairs(&[("in", "h1"), ("out", "h1"), ("in", "h2"), ("out", "h2")])
        );
        let steps: Vec<&str> = record.steps.iter().map(|s| s.steps.as_str()).collect();
        assert_eq!(steps.len(), 2, "{steps:?}");
        assert!(steps.iter().all(|s| !s.contains("ghost")), "{steps:?}");
        assert_eq!(record.accepted.len(), 2);
        assert!(record.accepted.iter().all(|a| a.state == "done"));
        let dead = record.deliveries.iter().find(|d| d.id == dead_id).unwrap();
        assert_eq!(dead.state, "dead");
        assert_eq!(dead.last_error.as_deref(), Some("HTTP 500"));

        let list = |f: TransactionFilter| async move { store.transactions(&f).await.unwrap() };
        let all = list(TransactionFilter {
            limit: 10,
            ..Default::default()
        })
        .await;
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].outcome, "dead");
        assert_eq!(all[0].messages, 4);
        assert_eq!(all[0].counterpart.as_deref(), Some("bap.example"));
        let by = |f: TransactionFilter| list(TransactionFilter { limit: 10, ..f });
        assert_eq!(
            by(TransactionFilter {
                order_id: "ORD-1".into(),
                ..Default::default()
            })
            .await
            .len(),
            1
        );
        assert_eq!(
            by(TransactionFilter {
                action: "on_search".into(),
                ..Default::default()
            })
            .await
            .len(),
            1
        );
        assert_eq!(
            by(TransactionFilter {
                subscriber: "bap.example".into(),
                outcome: "dead".into(),
                ..Default::default()
            })
            .await
            .len(),
            1
        );
        assert!(
            by(TransactionFilter {
                outcome: "done".into(),
                ..Default::default()
            })
            .await
            .is_empty()
        );
        assert!(
            by(TransactionFilter {
                action: "confirm".into(),
                ..Default::default()
            })
            .await
            .is_empty()
        );
        assert!(
            by(TransactionFilter {
                from: Some(now_ms() + 3_600_000),
                ..Default::default()
            })
            .await
            .is_empty()
        );
        let mark = store.change_mark().await.unwrap();
        assert_eq!(mark.dead, 1);
    }
}
