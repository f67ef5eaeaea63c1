//! Key rotation without downtime: the provider switches to its next key under signed load with
//! no failed request and callbacks signed by the new key from the switch on; a key taken out
//! of the registry is refused; a key published after the verifier cached its absence is found
//! by one refresh, and invented key ids cannot make the adapter flood the registry.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use beckn_adapter::beckn::registry::{LookupQuery, Subscriber, SubscriberType};
use beckn_adapter::beckn::rotation::{Listing, entry_yaml, next_entry};
use beckn_adapter::beckn::signing::{PrivateKey, PublicKey, SignatureHeader};
use beckn_adapter::compile::RegistrySource;
use beckn_adapter::config::rotation::{
    KeyRef, NextKeyBlock, append_subscriber, insert_next_key, write_whole,
};
use beckn_adapter::reload::ReloadOutcome;
use serde_json::{Value, json};

use crate::common::{BAP_ID, BAP_KEY_ID, BAP_TEST_KEY, GFSL_ID, Network, bind, temp_tree};

/// Waits until `done`, failing after `limit`.
async fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn second(at: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(at).unwrap()
}

fn reload(net: &Network) {
    match net.reloader.reload("test") {
        ReloadOutcome::Applied { .. } => {}
        ReloadOutcome::Unchanged { .. } => panic!("the edit was not seen"),
        ReloadOutcome::Rejected { diagnostics } => panic!(
            "reload rejected:\n{}",
            beckn_adapter::config::diagnostic::render_all(&diagnostics)
        ),
    }
}

/// Appends `entry` to the registry file of the tree at `root`.
fn publish_to_file(root: &Path, entry: &Subscriber) {
    let path = root.join("registry/local.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = append_subscriber(&path, &text, |n| entry_yaml(entry, n)).unwrap();
    write_whole(&path, &edited).unwrap();
}

fn listing(id: &str, kind: SubscriberType, url: &str) -> Listing {
    Listing {
        subscriber_id: id.into(),
        kind,
        url: url.into(),
        domain: "agri.soil".into(),
        city: None,
        country: Some("IND".into()),
    }
}

/// A signed search from the farmer app with `key`/`key_id`; the HTTP status and answer.
async fn search_signed(net: &Network, key: &PrivateKey, key_id: &str) -> (u16, Value) {
    let body = net.request("search", &uuid::Uuid::new_v4().to_string(), json!({}));
    let bytes = serde_json::to_vec(&body).unwrap();
    let auth = key.sign(&bytes, key_id, now(), now() + 60);
    net.post_with(
        "search",
        "application/json",
        bytes,
        &[("authorization", auth.as_str())],
    )
    .await
}

#[tokio::test]
async fn rotation_under_signed_load_fails_no_request_and_signs_callbacks_with_the_new_key() {
    let tree = temp_tree(&["greenfield-lab.yaml"]);
    let root = tree.path().to_path_buf();
    let next = PrivateKey::generate().unwrap();
    let key_file = root.join("next-signing.key");
    std::fs::write(&key_file, next.to_base64()).unwrap();
    let net = Arc::new(Network::start_tree(&root.join("flows"), None).await);

    // Signed load from the farmer app: searches from four tasks until stopped, each counted
    // as failed unless ACKed.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (net, stop, sent, failed) = (net.clone(), stop.clone(), sent.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) && sent.load(Ordering::SeqCst) < 3_000 {
                let body = net.request("search", &uuid::Uuid::new_v4().to_string(), json!({}));
                let (status, ack) = net
                    .post_raw(
                        "search",
                        "application/json",
                        serde_json::to_vec(&body).unwrap(),
                    )
                    .await;
                sent.fetch_add(1, Ordering::SeqCst);
                if status != 200 || ack["message"]["ack"]["status"] != "ACK" {
                    eprintln!("refused during the rotation: {status} {ack}");
                    failed.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    let limit = Duration::from_secs(20);
    until("load to start", limit, || sent.load(Ordering::SeqCst) >= 50).await;

    // Steps 2 and 3 under load: the next key published in the registry file, the flow given
    // it with a switch a little ahead, both taken by a reload.
    let gfsl = listing(GFSL_ID, SubscriberType::Bpp, &net.bpp_url);
    publish_to_file(
        &root,
        &next_entry(
            &gfsl,
            "gfsl-key-2",
            &next.public_key(),
            jiff::Timestamp::now(),
        ),
    );
    let sign_from = second(now() + 2);
    let flow_file = root.join("flows/greenfield-lab.yaml");
    let text = std::fs::read_to_string(&flow_file).unwrap();
    let block = NextKeyBlock {
        key_id: "gfsl-key-2".into(),
        key: KeyRef::File(key_file.display().to_string()),
        sign_from: Some(sign_from),
    };
    write_whole(
        &flow_file,
        &insert_next_key(&flow_file, &text, &block).unwrap(),
    )
    .unwrap();
    reload(&net);
    let reloaded_at = sent.load(Ordering::SeqCst);

    // The switch happens by the clock: the load goes on past it, to 300 requests at least.
    let signed_by = |key_id: &str| {
        net.bap
            .raw
            .lock()
            .unwrap()
            .iter()
            .filter(|r| {
                r.authorization
                    .as_deref()
                    .is_some_and(|a| a.contains(&format!("|{key_id}|")))
            })
            .count()
    };
    // (a generous deadline: a debug build on a busy machine answers a few dozen a second)
    until(
        "300 requests and callbacks signed with the new key",
        limit * 6,
        || sent.load(Ordering::SeqCst) >= 300 && signed_by("gfsl-key-2") >= 20,
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let total = sent.load(Ordering::SeqCst);
    until("every request answered", limit, || net.answered() >= total).await;
    eprintln!(
        "{total} signed searches ({reloaded_at} before the reload): {} callbacks with gfsl-key-1, {} with gfsl-key-2",
        signed_by("gfsl-key-1"),
        signed_by("gfsl-key-2")
    );
    assert_eq!(failed.load(Ordering::SeqCst), 0, "no request failed");

    // The receiver's view: every callback verifies against the registry's key of the key id
    // it names; the old key signed before the switch only, the new one from it on.
    let registry = {
        let set = net.flows.load();
        match set
            .flow("greenfield-lab")
            .and_then(|f| f.participant.registry.clone())
        {
            Some(RegistrySource::Embedded(reg)) => reg,
            _ => panic!("the flow reads the registry file"),
        }
    };
    let received = net.bap.raw.lock().unwrap().clone();
    assert!(received.len() >= total);
    for r in &received {
        let header = SignatureHeader::parse(r.authorization.as_deref().expect("signed")).unwrap();
        assert_eq!(header.subscriber_id, GFSL_ID);
        let entry = &registry.find(&LookupQuery::key(GFSL_ID, &header.unique_key_id))[0];
        let key = PublicKey::from_base64(&entry.signing_public_key).unwrap();
        header.verify_signature(&r.raw, &key).unwrap();
        match header.unique_key_id.as_str() {
            "gfsl-key-1" => assert!(header.created < sign_from.as_second()),
            "gfsl-key-2" => assert!(header.created >= sign_from.as_second()),
            other => panic!("signed with {other}"),
        }
    }
    assert!(
        signed_by("gfsl-key-1") > 0,
        "the old key signed before the switch"
    );
}

#[tokio::test]
async fn a_request_signed_with_a_retired_key_is_refused() {
    let tree = temp_tree(&["greenfield-lab.yaml"]);
    let root = tree.path().to_path_buf();
    let (expired, removed) = (
        PrivateKey::generate().unwrap(),
        PrivateKey::generate().unwrap(),
    );
    let net = Network::start_tree(&root.join("flows"), None).await;
    let farmer = listing(BAP_ID, SubscriberType::Bap, &net.bap_url);
    // one key past its valid_until, one valid
    let mut past = next_entry(
        &farmer,
        "farmer-app-key-0",
        &expired.public_key(),
        "2026-01-01T00:00:00Z".parse().unwrap(),
    );
    past.valid_until = Some(jiff::Timestamp::now() - jiff::SignedDuration::from_secs(60));
    publish_to_file(&root, &past);
    let registry_file = root.join("registry/local.yaml");
    let before = std::fs::read_to_string(&registry_file).unwrap();
    publish_to_file(
        &root,
        &next_entry(
            &farmer,
            "farmer-app-key-2",
            &removed.public_key(),
            jiff::Timestamp::now(),
        ),
    );
    reload(&net);

    let (status, ack) = search_signed(&net, &removed, &format!("{BAP_ID}|farmer-app-key-2")).await;
    assert_eq!(status, 200, "a published key is accepted: {ack}");
    let (status, nack) = search_signed(&net, &expired, &format!("{BAP_ID}|farmer-app-key-0")).await;
    assert_eq!(status, 401, "{nack}");
    let message = nack["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("is not usable"), "{message}");

    // the key taken out of the registry: refused from the reload on
    write_whole(&registry_file, &before).unwrap();
    reload(&net);
    let (status, nack) = search_signed(&net, &removed, &format!("{BAP_ID}|farmer-app-key-2")).await;
    assert_eq!(status, 401, "{nack}");
    let message = nack["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("unknown key"), "{message}");
    // the current key is untouched
    let current = PrivateKey::from_base64(BAP_TEST_KEY).unwrap();
    let (status, ack) = search_signed(&net, &current, BAP_KEY_ID).await;
    assert_eq!(status, 200, "{ack}");
}

/// A Beckn registry stand-in answering core `/lookup` from a list the test changes, noting
/// every query.
struct RegistryStandin {
    url: String,
    /// Answer every key of the subscriber, whatever key id the query names (as some
    /// registries do).
    ignore_key_id: Arc<AtomicBool>,
    subscribers: Arc<Mutex<Vec<Subscriber>>>,
    queries: Arc<Mutex<Vec<LookupQuery>>>,
}

impl RegistryStandin {
    async fn start() -> RegistryStandin {
        let subscribers: Arc<Mutex<Vec<Subscriber>>> = Arc::default();
        let queries: Arc<Mutex<Vec<LookupQuery>>> = Arc::default();
        let ignore_key_id: Arc<AtomicBool> = Arc::default();
        let (list, noted, ignore) = (subscribers.clone(), queries.clone(), ignore_key_id.clone());
        let app = Router::new().route(
            "/lookup",
            post(move |axum::Json(mut q): axum::Json<LookupQuery>| {
                noted.lock().unwrap().push(q.clone());
                if ignore.load(Ordering::SeqCst) {
                    q.unique_key_id = None;
                }
                let found: Vec<Subscriber> = list
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|s| q.matches(s))
                    .cloned()
                    .collect();
                async move { axum::Json(found) }
            }),
        );
        let (listener, addr) = bind().await;
        tokio::spawn(async move { axum::serve(listener, app).await });
        RegistryStandin {
            url: format!("http://{addr}"),
            ignore_key_id,
            subscribers,
            queries,
        }
    }

    /// Lookups of `subscriber_id`'s keys asked so far (`key_id`: of that key only).
    fn key_lookups(&self, subscriber_id: &str, key_id: Option<&str>) -> usize {
        self.queries
            .lock()
            .unwrap()
            .iter()
            .filter(|q| {
                q.subscriber_id.as_deref() == Some(subscriber_id)
                    && q.unique_key_id.is_some()
                    && key_id.is_none_or(|k| q.unique_key_id.as_deref() == Some(k))
            })
            .count()
    }

    fn all_lookups(&self) -> usize {
        self.queries.lock().unwrap().len()
    }
}

/// The network with its provider looking keys up in `registry`, which holds the farmer app.
async fn on_remote_registry(registry: &RegistryStandin) -> Network {
    let net = Network::start_env(
        &crate::common::repo().join("flows"),
        None,
        HashMap::from([("BECKN_REGISTRY".to_string(), registry.url.clone())]),
    )
    .await;
    let farmer = listing(BAP_ID, SubscriberType::Bap, &net.bap_url);
    let current = PrivateKey::from_base64(BAP_TEST_KEY).unwrap();
    registry.subscribers.lock().unwrap().push(next_entry(
        &farmer,
        "farmer-app-key-1",
        &current.public_key(),
        "2026-01-01T00:00:00Z".parse().unwrap(),
    ));
    net
}

#[tokio::test]
async fn a_key_published_after_its_absence_was_cached_is_found_by_one_refresh() {
    let registry = RegistryStandin::start().await;
    let net = on_remote_registry(&registry).await;
    let next = PrivateKey::generate().unwrap();
    let next_id = format!("{BAP_ID}|farmer-app-key-2");

    // The farmer app signs with its next key before the registry has it: refused, and the
    // registry's "no such key" is cached.
    let (status, nack) = search_signed(&net, &next, &next_id).await;
    assert_eq!(status, 401, "{nack}");
    assert_eq!(registry.key_lookups(BAP_ID, Some("farmer-app-key-2")), 1);

    // Published now: the next request finds it by one refresh, not after the cache's 30s.
    let farmer = listing(BAP_ID, SubscriberType::Bap, &net.bap_url);
    registry.subscribers.lock().unwrap().push(next_entry(
        &farmer,
        "farmer-app-key-2",
        &next.public_key(),
        second(now()),
    ));
    let (status, ack) = search_signed(&net, &next, &next_id).await;
    assert_eq!(status, 200, "{ack}");
    assert_eq!(
        registry.key_lookups(BAP_ID, Some("farmer-app-key-2")),
        2,
        "one refresh"
    );
    // and is cached as any known key
    for _ in 0..10 {
        let (status, _) = search_signed(&net, &next, &next_id).await;
        assert_eq!(status, 200);
    }
    assert_eq!(registry.key_lookups(BAP_ID, Some("farmer-app-key-2")), 2);
    // the current key still verifies beside it
    let current = PrivateKey::from_base64(BAP_TEST_KEY).unwrap();
    let (status, ack) = search_signed(&net, &current, BAP_KEY_ID).await;
    assert_eq!(status, 200, "{ack}");
}

#[tokio::test]
async fn random_unknown_key_ids_cannot_flood_the_registry() {
    let registry = RegistryStandin::start().await;
    let net = on_remote_registry(&registry).await;
    let current = PrivateKey::from_base64(BAP_TEST_KEY).unwrap();
    let (status, ack) = search_signed(&net, &current, BAP_KEY_ID).await;
    assert_eq!(status, 200, "{ack}");

    // The same few invented key ids again and again: each asked once, then one refresh for
    // the subscriber in its period (10s by default), however many requests name them.
    let ghosts = ["ghost-1", "ghost-2", "ghost-3"];
    let before = registry.key_lookups(BAP_ID, None);
    for i in 0..150 {
        let key_id = format!("{BAP_ID}|{}", ghosts[i % ghosts.len()]);
        let (status, nack) = search_signed(&net, &current, &key_id).await;
        assert_eq!(status, 401, "{nack}");
        assert_eq!(nack["error"]["code"], "30016");
    }
    let asked = registry.key_lookups(BAP_ID, None) - before;
    assert!(
        asked <= ghosts.len() + 1,
        "150 requests naming 3 unknown keys cost {asked} lookups"
    );

    // Fresh invented key ids each time: lookups bounded by the registry's rate (20 a second).
    let started = Instant::now();
    let before = registry.all_lookups();
    for i in 0..200 {
        let key_id = format!("{BAP_ID}|random-{i}-{}", uuid::Uuid::new_v4());
        let (status, _) = search_signed(&net, &current, &key_id).await;
        assert_eq!(status, 401);
    }
    let asked = registry.all_lookups() - before;
    let bound = 20.0 + 20.0 * started.elapsed().as_secs_f64() + 1.0;
    eprintln!(
        "200 random key ids in {:.2}s: {asked} lookups",
        started.elapsed().as_secs_f64()
    );
    assert!(
        (asked as f64) <= bound,
        "{asked} lookups (bound {bound:.0})"
    );

    // The farmer app's real key is not held up.
    let (status, ack) = search_signed(&net, &current, BAP_KEY_ID).await;
    assert_eq!(status, 200, "{ack}");
}

#[tokio::test]
async fn a_registry_answering_every_key_of_a_subscriber_checks_the_named_one() {
    let registry = RegistryStandin::start().await;
    registry.ignore_key_id.store(true, Ordering::SeqCst);
    let net = on_remote_registry(&registry).await;
    // the subscriber's next key listed first: a verifier taking the first entry would check
    // the current key's signature against it
    let next = PrivateKey::generate().unwrap();
    let farmer = listing(BAP_ID, SubscriberType::Bap, &net.bap_url);
    registry.subscribers.lock().unwrap().insert(
        0,
        next_entry(
            &farmer,
            "farmer-app-key-2",
            &next.public_key(),
            second(now()),
        ),
    );
    let current = PrivateKey::from_base64(BAP_TEST_KEY).unwrap();
    let (status, ack) = search_signed(&net, &current, BAP_KEY_ID).await;
    assert_eq!(status, 200, "{ack}");
    let (status, ack) = search_signed(&net, &next, &format!("{BAP_ID}|farmer-app-key-2")).await;
    assert_eq!(status, 200, "{ack}");
    // and a key id it does not list is unknown, not checked against another key
    let (status, nack) = search_signed(&net, &current, &format!("{BAP_ID}|farmer-app-key-9")).await;
    assert_eq!(status, 401, "{nack}");
    let message = nack["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("unknown key"), "{message}");
}

#[test]
fn check_refuses_a_next_key_that_cannot_take_over() {
    let tree = temp_tree(&["greenfield-lab.yaml"]);
    let flow = tree.path().join("flows/greenfield-lab.yaml");
    let original = std::fs::read_to_string(&flow).unwrap();
    let unpublished = PrivateKey::generate().unwrap().to_base64();
    let cases = [
        (
            "the current key id",
            format!("    key_id: gfsl-key-1\n    signing_private_key: \"{unpublished}\"\n"),
            "network.next_key.key_id",
            "is the current `key_id`",
        ),
        (
            "a sign_from that is no time",
            format!(
                "    key_id: gfsl-key-2\n    signing_private_key: \"{unpublished}\"\n    sign_from: tomorrow\n"
            ),
            "network.next_key.sign_from",
            "is not an RFC 3339 time",
        ),
        (
            "a key the registry file does not hold",
            format!("    key_id: gfsl-key-2\n    signing_private_key: \"{unpublished}\"\n"),
            "network.next_key",
            "the registry has no entry for soil.greenfield-labs.example|gfsl-key-2",
        ),
        (
            "a key that is no key",
            "    key_id: gfsl-key-2\n    signing_private_key: not-a-key\n".to_string(),
            "network.next_key.signing_private_key",
            "",
        ),
    ];
    for (name, block, path, says) in cases {
        let edited = original.replacen(
            "  key_id: gfsl-key-1\n",
            &format!("  key_id: gfsl-key-1\n  next_key:\n{block}"),
            1,
        );
        assert_ne!(edited, original);
        std::fs::write(&flow, edited).unwrap();
        let layout = beckn_adapter::compile::Layout::from_flows_dir(tree.path().join("flows"));
        let Err(diagnostics) = beckn_adapter::compile::load(&layout, &HashMap::new()) else {
            panic!("[{name}] accepted");
        };
        assert!(
            diagnostics
                .iter()
                .any(|d| d.yaml_path == path && d.message.contains(says) && d.line > 0),
            "[{name}] {diagnostics:?}"
        );
    }
}

/// Runs the binary in `dir` with `args`; its exit status and standard output.
fn run_cli(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_beckn-adapter"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run beckn-adapter");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn keys_rotate_writes_a_rotation_that_check_accepts_and_refuses_a_second() {
    let tree = temp_tree(&["greenfield-lab.yaml"]);
    let root = tree.path();
    let (ok, printed) = run_cli(root, &["keys", "rotate", "greenfield-lab"]);
    assert!(ok, "{printed}");
    for step in 1..=5 {
        assert!(printed.contains(&format!("Step {step} of 5")), "{printed}");
    }
    let untouched = std::fs::read_to_string(root.join("flows/greenfield-lab.yaml")).unwrap();
    assert!(!untouched.contains("next_key"), "printing writes nothing");

    let (ok, printed) = run_cli(
        root,
        &[
            "keys",
            "rotate",
            "greenfield-lab",
            "--key-file",
            "next.key",
            "--sign-from",
            "2030-06-01T00:00:00Z",
            "--write",
        ],
    );
    assert!(ok, "{printed}");
    let key = std::fs::read_to_string(root.join("next.key")).unwrap();
    assert!(
        !printed.contains(key.trim()),
        "a key written to a file is not printed"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(root.join("next.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (ok, checked) = run_cli(root, &["check", "flows"]);
    assert!(ok, "the written rotation passes check: {checked}");
    let set = crate::common::load_flows(&root.join("flows"), &HashMap::new());
    let me = &set.flow("greenfield-lab").unwrap().participant;
    let next = me.next_key.as_ref().expect("the flow has its next key");
    assert_eq!(next.key_id, "gfsl-key-2");
    assert_eq!(next.signing_key.to_base64(), key.trim());
    let switch: jiff::Timestamp = "2030-06-01T00:00:00Z".parse().unwrap();
    assert_eq!(next.sign_from, Some(switch));
    assert_eq!(
        me.signer_at(switch.as_second() - 1).unwrap().0,
        "gfsl-key-1"
    );
    assert_eq!(me.signer_at(switch.as_second()).unwrap().0, "gfsl-key-2");

    // a second run tells where the rotation stands and writes nothing
    let before = std::fs::read_to_string(root.join("flows/greenfield-lab.yaml")).unwrap();
    let (ok, printed) = run_cli(root, &["keys", "rotate", "greenfield-lab", "--write"]);
    assert!(ok, "{printed}");
    assert!(
        printed.contains("is rotating from gfsl-key-1 to gfsl-key-2"),
        "{printed}"
    );
    let after = std::fs::read_to_string(root.join("flows/greenfield-lab.yaml")).unwrap();
    assert_eq!(before, after);
}
