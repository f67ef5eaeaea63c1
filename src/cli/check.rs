//! `check`: compiles the flows and says what each serves, or every problem with its place.

use beckn_adapter::compile;
use beckn_adapter::config::ProcessEnv;
use beckn_adapter::config::diagnostic::render_all;

use super::Dirs;

pub fn run(dirs: &Dirs) -> anyhow::Result<()> {
    let layout = dirs.layout();
    match compile::load(&layout, &ProcessEnv) {
        Ok(set) => {
            println!(
                "ok: {} flow{} compiled from {} files (set {})",
                set.flows.len(),
                if set.flows.len() == 1 { "" } else { "s" },
                set.sources.len(),
                set.hash
            );
            for f in &set.flows {
                let mut actions: Vec<_> = f.actions.keys().map(|a| a.as_str()).collect();
                actions.sort();
                if f.role() == beckn_adapter::config::model::Role::Gateway {
                    actions = vec!["forwards search, on_search"];
                }
                let client_api;
                if let Some(bap) = f.bap() {
                    client_api = format!(
                        "sends every action; client API on {}{}",
                        bap.client_listen, bap.client_base_path
                    );
                    actions = vec![client_api.as_str()];
                }
                if f.serve_registry {
                    actions.push("(serves /lookup)");
                }
                let reports;
                if let Some(u) = &f.sinks.ultra {
                    reports = format!(
                        "(reports {} orders to Ultra `{}`)",
                        u.on.join("/"),
                        u.connection.name
                    );
                    actions.push(reports.as_str());
                }
                println!(
                    "  {} ({}, {}) on {}{}: {}",
                    f.name,
                    f.role().as_str(),
                    f.participant.subscriber_id,
                    f.listen,
                    f.base_path,
                    actions.join(" ")
                );
            }
            for c in &set.sinks.ultra {
                println!(
                    "  {} (Flipkart Ultra): client {} at {}, OMS at {}, secureTokens of {}s, timestamps in {}",
                    c.name,
                    c.client_id,
                    c.api_url,
                    c.oms_url,
                    c.tokens.lifetime_secs(),
                    c.unit.as_str()
                );
            }
            Ok(())
        }
        Err(diagnostics) => {
            eprintln!("{}", render_all(&diagnostics));
            std::process::exit(1);
        }
    }
}
