//! HTTP listeners: one axum router per listen address, carrying the endpoints of every flow that
//! listens there, plus `/health`.

pub mod admin;
pub mod lookup;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::beckn::ack::Rejection;
use crate::compile::CompiledSet;
use crate::config::model::Role;
use crate::roles::Services;
use crate::roles::bpp::{self, BppEndpoint};
use crate::roles::events::EventsEndpoint;
use crate::roles::gateway::{self, GatewayEndpoint};
use lookup::LookupEndpoint;

/// Builds the routers for the flows of `set`, keyed by listen address.
pub fn routers(
    flows: &Arc<ArcSwap<CompiledSet>>,
    services: &Arc<Services>,
) -> BTreeMap<SocketAddr, Router> {
    let set = flows.load();
    let mut out: BTreeMap<SocketAddr, Router> = BTreeMap::new();
    for flow in &set.flows {
        let router = match flow.role {
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
                if let Some(webhook) = flow.events.as_ref().and_then(|e| e.webhook.as_ref()) {
                    let ep = Arc::new(EventsEndpoint {
                        flows: flows.clone(),
                        flow_name: flow.name.clone(),
                        services: services.clone(),
                    });
                    router = router.merge(
                        Router::new()
                            .route(
                                &format!("{}{}", flow.base_path, webhook.path),
                                post(crate::roles::events::receive),
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
        let entry = out.remove(&flow.listen).unwrap_or_default();
        out.insert(flow.listen, entry.merge(router));
    }
    out.into_iter()
        .map(|(addr, r)| {
            let r = r
                .route(
                    "/health",
                    get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
                )
                .fallback(|uri: axum::http::Uri| async move {
                    Rejection::UnknownEndpoint(uri.path().trim_start_matches('/').to_string())
                        .into_response()
                });
            (addr, r)
        })
        .collect()
}

/// Serves each router on its listener until `shutdown` resolves.
pub async fn serve(
    listeners: Vec<(TcpListener, Router)>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut tasks = tokio::task::JoinSet::new();
    for (listener, router) in listeners {
        let mut rx = tx.subscribe();
        tasks.spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = rx.recv().await;
                })
                .await
        });
    }
    let stopper = tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(());
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
