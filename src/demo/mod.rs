//! `beckn-adapter demo`: the sample network in one process (lab ERP and LIMS, three lab BPPs, the
//! gateway, the farmer app's BAP, each subscribed with a stand-in registry) and a farmer's journey through the
//! farmer app's client API, printed as a timeline of every message with its business content.
//!
//! Nothing is faked: every message crosses a real loopback HTTP connection, signed by its
//! sender and verified by its receiver against the registry, exactly as `serve` runs them.

pub mod app;
pub mod journey;
pub mod network;
pub mod subscriptions;
pub mod timeline;

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use crate::compile::Layout;
use crate::store::StoreError;
pub use journey::JourneyReport;
pub use network::{NetworkOptions, SampleNetwork};
use timeline::Timeline;

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("the flows do not compile:\n{0}")]
    Flows(String),
    #[error("the demo needs the sample flow `{flow}` in {}", dir.display())]
    MissingFlow { flow: String, dir: PathBuf },
    #[error("cannot listen on loopback: {0}")]
    Bind(std::io::Error),
    #[error("the store cannot be opened: {0}")]
    Store(#[from] StoreError),
    #[error("the adapter cannot run: {0}")]
    App(crate::app::AppError),
    #[error("{flow} could not subscribe with the registry: {reason}")]
    Subscribe { flow: String, reason: String },
    #[error("step {step} ({name}) failed: {reason}")]
    Step {
        step: usize,
        name: String,
        reason: String,
    },
}

/// Starts the sample network from the flows under `layout`, plays the journey and writes the
/// timeline to `out`.
pub async fn run(
    layout: &Layout,
    out: &mut (dyn Write + Send),
) -> Result<JourneyReport, DemoError> {
    let started = Instant::now();
    let net = SampleNetwork::start(
        layout,
        NetworkOptions {
            subscribe: true,
            ..NetworkOptions::default()
        },
    )
    .await?;
    let names: HashMap<String, String> = net
        .flows
        .load()
        .flows
        .iter()
        .map(|f| (f.participant.subscriber_id.clone(), f.name.clone()))
        .collect();
    let mut timeline = Timeline::new(out, names);
    timeline.say("beckn-adapter demo: a farmer books a soil test through the adapter");
    timeline.say("");
    for f in &net.flows.load().flows {
        let role = match f.role() {
            crate::config::model::Role::Bap => "BAP, the farmer's app",
            crate::config::model::Role::Bpp if f.name == network::LIMS_FLOW => {
                "BPP, a lab on the sample LIMS"
            }
            crate::config::model::Role::Bpp => "BPP, a lab on the sample ERP",
            crate::config::model::Role::Gateway => "gateway",
        };
        timeline.say(&format!(
            "  {:<15} {:<29} {}",
            f.name, f.participant.subscriber_uri, role
        ));
    }
    timeline.say(&format!(
        "  {:<15} {:<29} the farmer app's client API",
        "client API", net.client_api
    ));
    timeline.say(&format!(
        "  {:<15} {:<29} the labs' own system",
        "sample ERP",
        net.urls.get("sample-erp").cloned().unwrap_or_default()
    ));
    timeline.say(&format!(
        "  {:<15} {:<29} Bhoomi's own system: OAuth2, a paged catalog, no webhook",
        "sample LIMS",
        net.urls.get("sample-lims").cloned().unwrap_or_default()
    ));
    timeline.say(&format!(
        "  {:<15} {:<29} Flipkart Ultra stand-in: sign-in and My Orders (OMS)",
        "ultra",
        net.urls.get("ultra").cloned().unwrap_or_default()
    ));
    timeline.say(&format!(
        "  {:<15} {:<29} stand-in registry, keys generated at start",
        "registry",
        net.urls.get("registry").cloned().unwrap_or_default()
    ));
    timeline.say("  every message is signed (ed25519) by its sender and verified by its receiver against the registry");
    timeline.say("");
    if let Some(registry) = &net.registry {
        timeline
            .say("joining the network: each participant subscribes, the registry challenges it");
        for event in registry.events() {
            timeline.say(&format!("  registry: {event}"));
        }
        for (flow, outcome) in &net.subscriptions {
            timeline.say(&format!(
                "  {flow}: subscription accepted ({})",
                outcome.said
            ));
        }
        timeline.say("");
    }
    let (report, mut timeline) = journey::Journey::new(&net, timeline).play().await?;
    timeline.say("");
    timeline.say(&format!(
        "journey complete in {:.1} s: {} steps, {} Beckn messages signed and verified, {} webhook deliveries with a valid HMAC, {} order states on Flipkart Ultra",
        started.elapsed().as_secs_f64(),
        report.steps,
        report.messages,
        report.webhooks,
        report.ultra_updates
    ));
    Ok(report)
}
