//! What a registry calls while it admits a participant: `POST <base_path>/on_subscribe`, whose
//! encrypted challenge we answer, and `GET /ondc-site-verification.html`, the signed
//! `request_id` proving we own the domain. Both read the flow per request, so reloads apply.

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::connection::nack_response;
use crate::beckn::onboarding::site_verification_page;
use crate::compile::CompiledSet;

/// The flow whose keys answer `on_subscribe`.
pub struct ChallengeEndpoint {
    pub flows: Arc<ArcSwap<CompiledSet>>,
    pub flow_name: String,
}

/// The flows of one listener, in order: the first with a subscription signs the page.
pub struct SiteVerificationEndpoint {
    pub flows: Arc<ArcSwap<CompiledSet>>,
    pub flow_names: Vec<String>,
}

/// The registry's `on_subscribe` body; other fields (ONDC sends `subscriber_id`) are ignored.
#[derive(Deserialize)]
struct OnSubscribe {
    challenge: String,
}

fn bad_request(message: &str) -> Response {
    nack_response(StatusCode::BAD_REQUEST, message).into_response()
}

/// Answers `{ "answer": <plaintext> }` for the registry's encrypted `challenge`.
pub async fn on_subscribe(
    State(ep): State<Arc<ChallengeEndpoint>>,
    body: axum::body::Bytes,
) -> Response {
    let request: OnSubscribe = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return bad_request(&format!(
                "on_subscribe needs a JSON body with a string `challenge`: {e}"
            ));
        }
    };
    let set = ep.flows.load();
    let Some(flow) = set.flow(&ep.flow_name) else {
        return bad_request("this flow is no longer loaded");
    };
    let onboarding = &flow.participant.onboarding;
    let Some(ours) = &onboarding.encryption_key else {
        return bad_request(
            "this participant has no encryption key to answer the challenge with (network.encryption_private_key)",
        );
    };
    let Some(registry) = &onboarding.registry_encryption_key else {
        return bad_request(
            "this participant does not know the registry's encryption public key (network.registry.encryption_public_key)",
        );
    };
    match ours.decrypt_challenge(registry, &request.challenge) {
        Ok(answer) => {
            tracing::info!(flow = %ep.flow_name, "registry challenge answered");
            Json(json!({ "answer": answer })).into_response()
        }
        Err(e) => {
            tracing::warn!(flow = %ep.flow_name, error = %e, "registry challenge refused");
            bad_request(&e.to_string())
        }
    }
}

/// The site verification page of the first flow on this listener with a subscription.
pub async fn site_verification(State(ep): State<Arc<SiteVerificationEndpoint>>) -> Response {
    let set = ep.flows.load();
    let subscribed = ep
        .flow_names
        .iter()
        .filter_map(|name| set.flow(name))
        .find_map(|f| {
            let p = &f.participant;
            p.onboarding.request_id.as_deref().map(|id| (p, id))
        });
    let Some((participant, request_id)) = subscribed else {
        return nack_response(
            StatusCode::NOT_FOUND,
            "no flow on this address has a subscription (network.subscription.request_id)",
        )
        .into_response();
    };
    let Some(key) = &participant.signing_key else {
        return bad_request(
            "the subscribed participant has no signing key to sign its request_id with (network.signing_private_key)",
        );
    };
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        site_verification_page(key, request_id),
    )
        .into_response()
}
