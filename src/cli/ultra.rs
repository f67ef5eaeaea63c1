//! `ultra`: the Flipkart Ultra connections of the flows, checked (`ping`) and their order
//! mapping tried offline (`render`).

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;

use beckn_adapter::sinks::ultra::api::UltraError;

use super::{Dirs, load_or_fail};

#[derive(Subcommand)]
pub enum UltraCommand {
    /// Call `GET /1/dummy` with a secureToken and say whether Flipkart accepts it.
    Ping {
        /// The connection, by name (default: the only one).
        #[arg(long)]
        connection: Option<String>,
    },
    /// Run a flow's `ultra:` mapping on a callback (JSON or YAML file) and print the OMS order
    /// it makes, checked; nothing is sent. Exit 1 if the mapping fails or the order is invalid.
    Render {
        /// The flow, by name.
        #[arg(long)]
        flow: String,
        /// A callback carrying an order (`{"context": {"action": "on_confirm", ...}, "message": {"order": ...}}`).
        #[arg(long)]
        callback: PathBuf,
        /// The user's identity token the order is made for.
        #[arg(long, default_value = "IDENTITY-TOKEN")]
        identity_token: String,
    },
}

/// `ultra render`: the OMS order a flow's mapping makes of a callback, offline.
fn render(
    dirs: &Dirs,
    flow_name: &str,
    callback: &std::path::Path,
    identity: &str,
) -> anyhow::Result<()> {
    let set = load_or_fail(dirs)?;
    let flow = set
        .flow(flow_name)
        .with_context(|| format!("no flow `{flow_name}` under {}", dirs.flows.display()))?;
    let body = beckn_adapter::dry_run::input::read_data(callback)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .value;
    let action = body
        .pointer("/context/action")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("on_confirm")
        .to_string();
    match beckn_adapter::sinks::ultra::report::build_order(flow, &action, &body, identity) {
        Ok(Some(order)) => {
            println!("{}", serde_json::to_string_pretty(&order.body)?);
            Ok(())
        }
        Ok(None) => {
            println!("null: the mapping says there is nothing to tell Ultra for this {action}");
            Ok(())
        }
        Err(e) => bail!("{e}"),
    }
}

/// `ultra ping`: does Ultra accept this connection's secureToken?
async fn ping(dirs: &Dirs, name: Option<&str>) -> anyhow::Result<()> {
    let set = load_or_fail(dirs)?;
    let conn = match name {
        Some(n) => set
            .sinks
            .ultra(n)
            .with_context(|| format!("no Ultra connection `{n}` under {}", dirs.flows.display()))?,
        None => match set.sinks.ultra.as_slice() {
            [one] => one,
            [] => bail!("no Ultra connection under {}", dirs.flows.display()),
            many => bail!(
                "several Ultra connections ({}): name one with --connection",
                many.iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    };
    let http = reqwest::Client::new();
    match beckn_adapter::sinks::ultra::api::ping(&http, conn).await {
        Ok(()) => {
            println!(
                "OK: {} accepts the secureToken of {} (connection `{}`)",
                conn.api_url, conn.client_id, conn.name
            );
            Ok(())
        }
        Err(e) => {
            println!("FAILED: {e}");
            println!("hint: {}", ping_hint(&e));
            bail!("Ultra does not accept the token")
        }
    }
}

/// What to check when Ultra does not accept a connection's secureToken, by what it said.
fn ping_hint(e: &UltraError) -> &'static str {
    match e {
        UltraError::Refused { message, .. }
            if message.contains("exp - iat") || message.contains("lifetime") =>
        {
            "Flipkart refuses tokens that live this long: lower `token_lifetime` in the connection's file (exp - iat, 30s to 1000s)"
        }
        UltraError::Refused {
            status: 401 | 403, ..
        } => {
            "check that Flipkart holds the public half of `private_key`, that `client_id` is the one Flipkart issued, that `token_lifetime` is within what Flipkart allows, and that this machine's clock is right"
        }
        UltraError::Unreachable { .. } => "check `api_url` and the network path to it",
        _ => "see the message above",
    }
}

pub async fn run(dirs: &Dirs, command: UltraCommand) -> anyhow::Result<()> {
    match command {
        UltraCommand::Ping { connection } => ping(dirs, connection.as_deref()).await,
        UltraCommand::Render {
            flow,
            callback,
            identity_token,
        } => render(dirs, &flow, &callback, &identity_token),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ultra_ping_hint_names_token_lifetime() {
        let too_long = UltraError::Refused {
            call: "ping",
            status: 401,
            message: "code 12: exp - iat is 900 s, more than 600".into(),
        };
        assert!(ping_hint(&too_long).contains("`token_lifetime`"));
        let refused = UltraError::Refused {
            call: "ping",
            status: 401,
            message: "code 12: iss `x` is not the client id".into(),
        };
        assert!(ping_hint(&refused).contains("`token_lifetime`"));
        assert!(ping_hint(&refused).contains("public half of `private_key`"));
    }
}
