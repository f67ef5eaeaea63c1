//! `subscribe`: registers flows' participants with their registries and prints what each
//! registry answered, with a hint for each refusal we know. The adapter must be serving the
//! flows meanwhile: the registry challenges them at `on_subscribe` before it answers.

use std::path::{Path, PathBuf};

use anyhow::Context;

use beckn_adapter::beckn::subscribe;
use beckn_adapter::compile::Layout;

/// The flows directory of `path` and, when `path` is a flow file, that file.
fn layout_of(path: &Path) -> (Layout, Option<PathBuf>) {
    if path.is_file() {
        let dir = path.parent().unwrap_or(Path::new("."));
        (Layout::from_flows_dir(dir), Some(path.to_path_buf()))
    } else {
        (Layout::from_flows_dir(path), None)
    }
}

pub async fn run(path: &Path, flow: Option<&str>) -> anyhow::Result<()> {
    let (layout, file) = layout_of(path);
    let set = super::load_or_exit(&layout);
    let same_file = |f: &Path| {
        file.as_deref().is_none_or(|want| {
            f.canonicalize().ok() == want.canonicalize().ok() || f.ends_with(want)
        })
    };
    let chosen: Vec<_> = set
        .flows
        .iter()
        .filter(|f| same_file(&f.file))
        .filter(|f| flow.is_none_or(|name| f.name == name))
        .filter(|f| flow.is_some() || file.is_some() || f.participant.registration.is_some())
        .collect();
    if chosen.is_empty() {
        anyhow::bail!(
            "{}: no flow to subscribe{} (a flow subscribes when it has `network.subscription` and a registry URL)",
            path.display(),
            flow.map(|n| format!(" named `{n}`")).unwrap_or_default()
        );
    }
    let mut refused = 0;
    for f in chosen {
        let now = jiff::Timestamp::now();
        let (request, outcome) = subscribe::subscribe(&f.participant, now)
            .await
            .with_context(|| format!("{}: flow `{}`", f.file.display(), f.name))?;
        let dialect = f
            .participant
            .registration
            .as_ref()
            .map_or("", |r| r.dialect.as_str());
        println!(
            "{} ({}) -> {} [{dialect}]",
            f.name, f.participant.subscriber_id, request.url
        );
        if outcome.accepted {
            println!("  accepted: {}", outcome.said);
        } else {
            refused += 1;
            println!("  refused: {}", outcome.said);
            if let Some(hint) = outcome.hint {
                println!("  hint: {hint}");
            }
        }
    }
    if refused > 0 {
        anyhow::bail!("{refused} subscription(s) refused");
    }
    Ok(())
}
