//! `keys rotate <flow>`: walks a signing key rotation without downtime, printing each step and
//! what it needs: the next key pair, its registry entry to publish, the flow's `next_key`
//! block, the switch (`sign_from`) and the old key's retirement. Prints by default; `--write`
//! also puts the entry into a registry file the flow reads and the block into the flow file,
//! each written whole. A flow in the middle of a rotation is told where it stands instead.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use beckn_adapter::beckn::participant::Participant;
use beckn_adapter::beckn::registry::{LookupQuery, RegistrySource, Subscriber, SubscriberType};
use beckn_adapter::beckn::rotation::{Listing, entry_yaml, next_entry, retire_after};
use beckn_adapter::beckn::signing::PrivateKey;
use beckn_adapter::compile::CompiledFlow;
use beckn_adapter::config::ProcessEnv;
use beckn_adapter::config::model::Role;
use beckn_adapter::config::rotation::{
    KeyRef, NextKeyBlock, append_subscriber, insert_next_key, next_key_id, write_whole,
};

use super::Dirs;

/// How long after publication the switch is suggested: peers that asked for the new key id
/// before it was published may hold that "unknown" answer for their negative cache period.
const SUGGESTED_LEAD: jiff::SignedDuration = jiff::SignedDuration::from_hours(1);

#[derive(clap::Args)]
pub struct RotateArgs {
    /// The flow whose signing key is rotated, by name.
    pub flow: String,
    #[command(flatten)]
    pub dirs: Dirs,
    /// The next key's unique key id (default: the current one's number plus one).
    #[arg(long)]
    pub key_id: Option<String>,
    /// When signing switches to the next key (RFC 3339); default: left for step 4.
    #[arg(long)]
    pub sign_from: Option<String>,
    /// Write the next private key to this new file (mode 0600) and name it in the flow as
    /// `{ file: ... }`, which a reload reads again; otherwise the key is printed once and the
    /// flow names an environment variable.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// The environment variable the flow reads the next key from (without --key-file).
    #[arg(long)]
    pub key_env: Option<String>,
    /// Also append the registry entry to the flow's registry file (when it reads one) and
    /// insert the `next_key` block into the flow file.
    #[arg(long)]
    pub write: bool,
}

pub fn run(args: &RotateArgs) -> anyhow::Result<()> {
    let layout = args.dirs.layout();
    let set = super::load_or_fail(&args.dirs)?;
    let Some(flow) = set.flow(&args.flow) else {
        let mut names: Vec<_> = set.flows.iter().map(|f| f.name.clone()).collect();
        names.sort();
        bail!(
            "no flow named `{}` (flows: {})",
            args.flow,
            names.join(", ")
        );
    };
    let me = &flow.participant;
    let Some(current) = me.key_id.clone() else {
        bail!(
            "{}: the flow has no `network.key_id`: there is no key to rotate",
            flow.file.display()
        );
    };
    // Whole seconds, as signatures and registry times are compared.
    let now = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())?;
    if me.next_key.is_some() {
        return under_way(flow, &current, now);
    }
    let sign_from = args
        .sign_from
        .as_deref()
        .map(|t| {
            t.trim()
                .parse::<jiff::Timestamp>()
                .with_context(|| format!("--sign-from `{t}` is not an RFC 3339 time"))
        })
        .transpose()?;
    let next_id = args.key_id.clone().unwrap_or_else(|| next_key_id(&current));
    if next_id == current {
        bail!("the next key id must differ from the current `{current}`");
    }

    println!(
        "Rotating the signing key of flow `{}` ({}), now {current}.\n",
        flow.name, me.subscriber_id
    );
    println!("Step 1 of 5: the next key pair.");
    let key = PrivateKey::generate().context("generating a key")?;
    let public = key.public_key();
    let key_ref = match &args.key_file {
        Some(path) => {
            write_private_key(path, &key)?;
            let absolute = std::fs::canonicalize(path)
                .with_context(|| format!("resolving {}", path.display()))?;
            println!(
                "  private key written to {} (0600); the flow reads it at every load.",
                absolute.display()
            );
            KeyRef::File(absolute.display().to_string())
        }
        None => {
            let name = args.key_env.clone().unwrap_or_else(|| {
                format!(
                    "{}_NEXT_SIGNING_KEY",
                    flow.name.to_ascii_uppercase().replace(['-', '.'], "_")
                )
            });
            println!("  signing_private_key: {}", key.to_base64());
            println!(
                "  Keep it secret: set it as {name} where the adapter runs. A variable is read when\n  \
                 the adapter starts, so set it and restart once, or use --key-file (or a\n  \
                 {{ command: [...] }} source) to take the key by a reload."
            );
            KeyRef::Env(name)
        }
    };
    println!("  signing_public_key: {}\n", public.to_base64());

    println!("Step 2 of 5: publish the next key to the registry, beside the current one.");
    let listing = listing(flow, me, &current);
    let entry = next_entry(&listing, &next_id, &public, now);
    let registry_file = registry_file(flow, &layout.root)?;
    print!("{}", indent(&publish_text(&entry), 2));
    let block = NextKeyBlock {
        key_id: next_id.clone(),
        key: key_ref,
        sign_from,
    };
    if args.write {
        if let Some(path) = &registry_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let edited = append_subscriber(path, &text, |n| entry_yaml(&entry, n))?;
            write_whole(path, &edited)?;
            println!("  written: the entry is appended to {}", path.display());
        } else {
            println!("  (the flow's registry is remote: --write cannot publish there)");
        }
    }
    println!();

    println!("Step 3 of 5: give the flow its next key (under `network:`).");
    print!("{}", block.to_yaml(2));
    if args.write {
        let text = std::fs::read_to_string(&flow.file)
            .with_context(|| format!("reading {}", flow.file.display()))?;
        let edited = insert_next_key(&flow.file, &text, &block)?;
        write_whole(&flow.file, &edited)?;
        println!(
            "  written: {} (a running adapter takes it on its next reload)",
            flow.file.display()
        );
    } else {
        println!(
            "  Paste it under `network:` in {}, or run again with --write.",
            flow.file.display()
        );
    }
    println!("  `beckn-adapter check` refuses a next key its registry file does not hold.\n");

    let switch = sign_from.unwrap_or_else(|| now.saturating_add(SUGGESTED_LEAD).unwrap_or(now));
    switch_step(me, &next_id, sign_from.is_some(), switch);
    retire_step(me, &current, &next_id, switch);
    Ok(())
}

/// A flow with a `next_key` already: where the rotation stands, and the steps left.
fn under_way(flow: &CompiledFlow, current: &str, now: jiff::Timestamp) -> anyhow::Result<()> {
    let me = &flow.participant;
    let Some(next) = &me.next_key else {
        return Ok(());
    };
    let signing = me
        .signer_at(now.as_second())
        .map_or("nothing (unsigned)", |(id, _)| id);
    println!(
        "Flow `{}` is rotating from {current} to {}; it signs with {signing} now.",
        flow.name, next.key_id
    );
    println!("Steps 1 to 3 are done (the next key is in the flow).\n");
    match next.sign_from {
        Some(from) if from <= now => {
            println!("Step 4 of 5: done, the next key signs since {from}.\n");
            retire_step(me, current, &next.key_id, from);
        }
        Some(from) => {
            println!("Step 4 of 5: the next key signs from {from} on (by the adapter's clock).\n");
            retire_step(me, current, &next.key_id, from);
        }
        None => {
            let switch = now.saturating_add(SUGGESTED_LEAD).unwrap_or(now);
            switch_step(me, &next.key_id, false, switch);
            retire_step(me, current, &next.key_id, switch);
        }
    }
    Ok(())
}

fn switch_step(me: &Participant, next_id: &str, given: bool, switch: jiff::Timestamp) {
    println!("Step 4 of 5: switch signing to {next_id}.");
    if given {
        println!(
            "  The next key signs from {switch} on, by the adapter's clock: no restart and no reload."
        );
    } else {
        println!(
            "  Once the registry serves the next key, set in the flow's next_key:\n    sign_from: {switch}\n  \
             (a time: the switch then happens by the clock, every process at once; a time already\n  \
             past switches at the reload that reads it). Leave peers time to see the new entry."
        );
    }
    println!(
        "  Until then {} signs with the current key, and peers go on verifying it.\n",
        me.subscriber_id
    );
}

fn retire_step(me: &Participant, current: &str, next_id: &str, switch: jiff::Timestamp) {
    let until = retire_after(switch, me.signature_validity, me.signature_skew);
    println!("Step 5 of 5: retire {current}.");
    println!(
        "  Keep its registry entry valid until at least {until} (the last signature it makes\n  \
         stays checkable); then set its valid_until (or remove it) at the registry. Afterwards make\n  \
         the next key the current one in the flow: key_id: {next_id}, signing_private_key: the\n  \
         next key's source, and delete the next_key block."
    );
}

/// How the flow appears in the registry: its current entry's listing when a registry file has
/// it, else what the flow says.
fn listing(flow: &CompiledFlow, me: &Participant, current: &str) -> Listing {
    let kind = match flow.role() {
        Role::Bpp => SubscriberType::Bpp,
        Role::Bap => SubscriberType::Bap,
        Role::Gateway => SubscriberType::Bg,
    };
    let registered: Option<Subscriber> = match &me.registry {
        Some(RegistrySource::Embedded(reg)) => reg
            .find(&LookupQuery::key(&me.subscriber_id, current))
            .into_iter()
            .next(),
        _ => None,
    };
    match registered {
        Some(s) => Listing {
            subscriber_id: s.subscriber_id,
            kind: s.kind,
            url: s.url,
            domain: s.domain,
            city: s.city,
            country: s.country,
        },
        None => Listing {
            subscriber_id: me.subscriber_id.clone(),
            kind,
            url: me.subscriber_uri.clone(),
            domain: flow.domain.clone(),
            city: None,
            country: None,
        },
    }
}

/// The entry as a registry file holds it, and what to do with it.
fn publish_text(entry: &Subscriber) -> String {
    format!(
        "# registry entry of the next key (keep the current key's entry)\n{}",
        entry_yaml(entry, 0)
    )
}

fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

/// The registry file the flow reads, when its registry is one (`network.registry.source`
/// read again from the flow file, with the environment, as the loader reads it).
fn registry_file(flow: &CompiledFlow, root: &Path) -> anyhow::Result<Option<PathBuf>> {
    if !matches!(flow.participant.registry, Some(RegistrySource::Embedded(_))) {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&flow.file)
        .with_context(|| format!("reading {}", flow.file.display()))?;
    let (doc, _) = beckn_adapter::config::yaml::parse(&flow.file, &text, &ProcessEnv)
        .map_err(|d| anyhow::anyhow!("{}", d.message))?;
    Ok(doc.value["network"]["registry"]["source"]
        .as_str()
        .map(|s| root.join(s.trim())))
}

/// Writes the private key to a new file only its owner may read.
fn write_private_key(path: &Path, key: &PrivateKey) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
    file.write_all(format!("{}\n", key.to_base64()).as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}
