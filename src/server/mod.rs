//! HTTP listeners: one axum router per listen address, carrying the endpoints of every flow that
//! listens there, plus `/health`.

pub mod admin;
pub mod connection;
pub mod console;
pub mod lookup;
pub mod onboarding;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::beckn::ack::Rejection;
use crate::compile::CompiledSet;
use crate::config::model::Role;
use crate::roles::Services;
use crate::roles::bpp::{self, BppEndpoint};
use crate::roles::events::webhook::EventsEndpoint;
use crate::roles::gateway::{self, GatewayEndpoint};
pub use connection::ListenerLimits;
use lookup::LookupEndpoint;
use onboarding::{ChallengeEndpoint, SiteVerificationEndpoint};

/// Builds the routers for the flows of `set`, keyed by listen address.
pub fn routers(
    flows: &Arc<ArcSwap<CompiledSet>>,
    services: &Arc<Services>,
) -> BTreeMap<SocketAddr, Router> {
    let set = flows.load();
    let mut out: BTreeMap<SocketAddr, Router> = BTreeMap::new();
    let mut names_by_listener: BTreeMap<SocketAddr, Vec<String>> = BTreeMap::new();
    for flow in &set.flows {
        let router = match flow.role() {
            Role::Bpp => {
                let ep = Arc::new(BppEndpoint {
                    flows: flows.clone(),
                    flow_name: flow.name.clone(),
                    services: services.clone(),
                    in_flight: Arc::new(Semaphore::new(flow.max_in_flight)),
                });
                let mut router = Router::new()
                    .route(&format!("{}/{{action}}", flow.base_path), post(bpp::handle))
                    .with_state(ep);
                if let Some(webhook) = flow.events().and_then(|e| e.webhook.as_ref()) {
                    let ep = Arc::new(EventsEndpoint {
                        flows: flows.clone(),
                        flow_name: flow.name.clone(),
                        services: services.clone(),
                    });
                    router = router.merge(
                        Router::new()
                            .route(
                                &format!("{}{}", flow.base_path, webhook.path),
                                post(crate::roles::events::webhook::receive),
                            )
                            .with_state(ep),
                    );
                }
                router
            }
            Role::Gateway => {
                let ep = Arc::new(GatewayEndpoint {
                    flows: flows.clone(),
                    flow_name: flow.name.clone(),
                    services: services.clone(),
                    client: reqwest::Client::new(),
                });
                Router::new()
                    .route(&format!("{}/search", flow.base_path), post(gateway::search))
                    .route(
                        &format!("{}/on_search", flow.base_path),
                        post(gateway::on_search),
                    )
                    .with_state(ep)
            }
            Role::Bap => {
                let (router, client_api) = crate::roles::bap::routers(flows, flow, services);
                if let Some((addr, client_api)) = client_api {
                    let entry = out.remove(&addr).unwrap_or_default();
                    out.insert(addr, entry.merge(client_api));
                }
                router
            }
        };
        let router = if flow.serve_registry {
            let ep = Arc::new(LookupEndpoint {
                flows: flows.clone(),
                flow_name: flow.name.clone(),
            });
            router.merge(
                Router::new()
                    .route(&format!("{}/lookup", flow.base_path), post(lookup::lookup))
                    .with_state(ep),
            )
        } else {
            router
        };
        let challenge = Arc::new(ChallengeEndpoint {
            flows: flows.clone(),
            flow_name: flow.name.clone(),
        });
        let router = router.merge(
            Router::new()
                .route(
                    &format!("{}/on_subscribe", flow.base_path),
                    post(onboarding::on_subscribe),
                )
                .with_state(challenge),
        );
        names_by_listener
            .entry(flow.listen)
            .or_default()
            .push(flow.name.clone());
        let entry = out.remove(&flow.listen).unwrap_or_default();
        out.insert(flow.listen, entry.merge(router));
    }
    out.into_iter()
        .map(|(addr, r)| {
            let r = match names_by_listener.remove(&addr) {
                Some(flow_names) => r.route(
                    "/ondc-site-verification.html",
                    get(onboarding::site_verification).with_state(Arc::new(
                        SiteVerificationEndpoint {
                            flows: flows.clone(),
                            flow_names,
                        },
                    )),
                ),
                None => r,
            };
            let r = r
                .route(
                    "/health",
                    get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
                )
                .fallback(|uri: axum::http::Uri| async move {
                    Rejection::UnknownEndpoint(uri.path().trim_start_matches('/').to_string())
                        .into_response()
                })
                .layer(axum::middleware::map_response(nack_bodies));
            (addr, r)
        })
        .collect()
}

/// Serves each router on its listener, within the default [`ListenerLimits`], until
/// `shutdown` resolves.
pub async fn serve(
    listeners: Vec<(TcpListener, Router)>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_within(listeners, ListenerLimits::default(), shutdown).await
}

/// Serves each router on its listener, every listener within `limits`, until `shutdown`
/// resolves; then lets requests in progress finish.
pub async fn serve_within(
    listeners: Vec<(TcpListener, Router)>,
    limits: ListenerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for (listener, router) in listeners {
        tasks.spawn(connection::run(listener, router, limits, rx.clone()));
    }
    let stopper = tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    let mut result = Ok(());
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Err(e)) => result = Err(e),
            Err(e) => result = Err(std::io::Error::other(e)),
            Ok(Ok(())) => {}
        }
    }
    stopper.abort();
    result
}

/// Gives every error answer of a Beckn listener a NACK body: axum's own answers (a method
/// not allowed, a path that cannot be decoded) come as plain text or empty.
async fn nack_bodies(response: Response) -> Response {
    let status = response.status();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = match (status, parts.headers.get(header::ALLOW)) {
        (StatusCode::METHOD_NOT_ALLOWED, Some(allow)) => format!(
            "method not allowed here; allowed: {}",
            allow.to_str().unwrap_or("POST")
        ),
        // axum adds `Allow` after this layer has run.
        (StatusCode::METHOD_NOT_ALLOWED, None) => {
            "method not allowed here (Beckn endpoints take POST)".to_string()
        }
        _ if !text.is_empty() => text,
        _ => status
            .canonical_reason()
            .unwrap_or("the request was refused")
            .to_string(),
    };
    let mut out = connection::nack_response(status, &message);
    for name in [header::ALLOW, header::WWW_AUTHENTICATE, header::RETRY_AFTER] {
        if let Some(v) = parts.headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}
