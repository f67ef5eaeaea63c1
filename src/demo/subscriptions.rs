//! The demo's participants join the network as a real one is joined: a stand-in registry runs
//! on loopback, every participant flow is pointed at it with a subscription and an encryption
//! key generated now (never written to the project), and each subscribes through
//! [`crate::beckn::subscribe`], answering the registry's challenge on its own listener.
//!
//! The flow files themselves are not changed: they are copied to a temporary directory with
//! their `network.registry` replaced, so `serve` keeps its registry file.

use std::collections::HashMap;
use std::path::Path;

use super::DemoError;
use crate::beckn::onboarding::EncryptionKey;
use crate::beckn::subscribe::{self, Outcome};
use crate::compile::CompiledSet;

/// What the registry side of a flow becomes in the demo.
struct Joining<'a> {
    registry_url: &'a str,
    registry_key: &'a str,
}

/// Copies the flow files (`*.yaml`) of `flows` into `into`, each participant's registry replaced
/// by the stand-in with a subscription; the generated encryption keys go to `env`.
pub fn rewrite_flows(
    flows: &Path,
    into: &Path,
    registry_url: &str,
    registry_key: &str,
    env: &mut HashMap<String, String>,
) -> Result<(), DemoError> {
    let io = |e: std::io::Error| DemoError::Flows(format!("{}: {e}", flows.display()));
    std::fs::create_dir_all(into).map_err(io)?;
    let joining = Joining {
        registry_url,
        registry_key,
    };
    let mut entries: Vec<_> = std::fs::read_dir(flows)
        .map_err(io)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    entries.sort();
    for (n, path) in entries.iter().enumerate() {
        let text = std::fs::read_to_string(path).map_err(io)?;
        let var = format!("DEMO_ENCRYPTION_KEY_{n}");
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (text, joined) = rewrite(&text, &joining, &var, &stem);
        if joined {
            let key = EncryptionKey::generate()
                .map_err(|e| DemoError::Flows(format!("cannot make an encryption key: {e}")))?;
            env.insert(var, key.to_pkcs8_base64());
        }
        let name = path.file_name().unwrap_or_default();
        std::fs::write(into.join(name), text).map_err(io)?;
    }
    Ok(())
}

/// `text` with the `registry:` entry of its top-level `network:` replaced; whether it was.
fn rewrite(text: &str, joining: &Joining, key_var: &str, stem: &str) -> (String, bool) {
    let mut out = String::with_capacity(text.len() + 256);
    let mut in_network = false;
    let mut skipping = false;
    let mut joined = false;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let blank = line.trim().is_empty() || line.trim_start().starts_with('#');
        if skipping {
            if blank || indent > 2 {
                continue;
            }
            skipping = false;
        }
        if !blank && indent == 0 {
            in_network = line.trim_end() == "network:";
        }
        if in_network && !joined && indent == 2 && line.trim_start().starts_with("registry:") {
            out.push_str(&format!(
                "  registry: {{ source: \"{}\", encryption_public_key: \"{}\" }}\n  encryption_private_key: {{ env: {key_var} }}\n  subscription: {{ request_id: \"{stem}-demo-{}\" }}\n",
                joining.registry_url,
                joining.registry_key,
                uuid::Uuid::new_v4()
            ));
            skipping = true;
            joined = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    (out, joined)
}

/// Subscribes every flow of `set` that has a registration (but those in `down`), one after
/// another; each answers the registry's challenge on its own listener, so the flows must be
/// served already.
pub async fn subscribe_all(
    set: &CompiledSet,
    down: &[String],
) -> Result<Vec<(String, Outcome)>, DemoError> {
    let mut outcomes = Vec::new();
    for flow in &set.flows {
        if flow.participant.registration.is_none() || down.contains(&flow.name) {
            continue;
        }
        let refused = |reason: String| DemoError::Subscribe {
            flow: flow.name.clone(),
            reason,
        };
        let (_, outcome) = subscribe::subscribe(&flow.participant, jiff::Timestamp::now())
            .await
            .map_err(|e| refused(e.to_string()))?;
        if !outcome.accepted {
            return Err(refused(format!(
                "{} ({})",
                outcome.said,
                outcome.hint.unwrap_or_default()
            )));
        }
        outcomes.push((flow.name.clone(), outcome));
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATEWAY: &str = "name: g\nnetwork:\n  subscriber_id: g.example\n  registry:\n    source: \"registry/local.yaml\"\n    serve: true\ndomain: agri.soil\n";

    #[test]
    fn a_multi_line_registry_is_replaced_whole_and_the_rest_kept() {
        let joining = Joining {
            registry_url: "http://127.0.0.1:1",
            registry_key: "PUB",
        };
        let (text, joined) = rewrite(GATEWAY, &joining, "K0", "g");
        assert!(joined);
        assert!(!text.contains("serve: true"), "{text}");
        assert!(!text.contains("registry/local.yaml"), "{text}");
        assert!(text.contains("source: \"http://127.0.0.1:1\", encryption_public_key: \"PUB\""));
        assert!(text.contains("encryption_private_key: { env: K0 }"));
        assert!(text.contains("subscriber_id: g.example"));
        assert!(text.ends_with("domain: agri.soil\n"), "{text}");
    }

    #[test]
    fn a_file_without_a_network_registry_is_left_as_it_is() {
        let joining = Joining {
            registry_url: "http://127.0.0.1:1",
            registry_key: "PUB",
        };
        let ultra = "name: ultra\nultra:\n  registry: x\n";
        let (text, joined) = rewrite(ultra, &joining, "K0", "ultra");
        assert!(!joined);
        assert_eq!(text, ultra);
    }
}
