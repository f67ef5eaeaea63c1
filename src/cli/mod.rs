//! The command line: the only place that uses `anyhow` and reads the process environment.
//! One file per command; this one parses the arguments and hands each command to its file.

mod check;
mod demo;
mod keys;
mod mapping_tests;
mod outbox;
mod render;
mod rotate;
mod schema;
mod serve;
mod subscribe;
mod ultra;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use beckn_adapter::compile::{self, Layout};
use beckn_adapter::config::ProcessEnv;
use beckn_adapter::config::diagnostic::render_all;

/// Parses the arguments, starts logging and the async runtime, and runs the command.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The demo prints a timeline on stdout: its logs say only what went wrong.
    let quiet = matches!(cli.command, Command::Demo { .. });
    init_logging(
        cli.log_format,
        cli.color.enabled(),
        if quiet { "warn" } else { "info" },
    );
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(run(cli.command))
}

#[derive(Parser)]
#[command(
    name = "beckn-adapter",
    version,
    about = "Config-driven Beckn protocol adapter"
)]
pub struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "BECKN_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// Colours in text logs: `auto` when standard error is a terminal (a file, pipe or journal
    /// gets none), `always` or `never`.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "auto",
        env = "BECKN_LOG_COLOR"
    )]
    pub color: ColorChoice,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    pub fn enabled(self) -> bool {
        match self {
            ColorChoice::Auto => std::io::IsTerminal::is_terminal(&std::io::stderr()),
            ColorChoice::Always => true,
            ColorChoice::Never => false,
        }
    }
}

#[derive(clap::Args)]
pub struct Dirs {
    /// Directory of flow files; `mappings/` and `schemas/` are looked up beside it.
    #[arg(default_value = "flows")]
    pub flows: PathBuf,
    /// Mappings directory (default: beside the flows directory).
    #[arg(long, global = true)]
    pub mappings: Option<PathBuf>,
    /// Schemas directory (default: beside the flows directory).
    #[arg(long, global = true)]
    pub schemas: Option<PathBuf>,
}

impl Dirs {
    pub fn layout(&self) -> Layout {
        let mut layout = Layout::from_flows_dir(&self.flows);
        if let Some(m) = &self.mappings {
            layout.mappings = m.clone();
        }
        if let Some(s) = &self.schemas {
            layout.schemas = s.clone();
        }
        layout
    }
}

#[derive(clap::Args)]
pub struct StoreArgs {
    /// Where durable state lives: sqlite://PATH (created at first start; add
    /// `?synchronous=normal` to skip the fsync of each commit, see docs/operations.md).
    #[arg(
        long = "store",
        global = true,
        env = "BECKN_STORE",
        default_value = "sqlite://.adapter/store.db"
    )]
    pub url: String,
}
#[derive(Subcommand)]
pub enum Command {
    /// Serve the flows: every flow listens on its own `listen` address.
    Serve(serve::ServeArgs),
    /// Inspect and act on the outbox's dead letters.
    Outbox {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: outbox::OutboxCommand,
    },
    /// Load and compile the flows, report every problem with file:line:col, exit non-zero on any.
    Check {
        #[command(flatten)]
        dirs: Dirs,
    },
    /// Run the mapping tests in FLOWS/tests/*.yaml offline; exit 1 if any fails.
    Test {
        #[command(flatten)]
        dirs: Dirs,
        /// Run only the tests whose file or name contains this text.
        #[arg(long)]
        filter: Option<String>,
    },
    /// Run one action against a request and fixtures (or the live backends) and print every
    /// step's result and the on_* message; nothing is sent to the buyer app.
    Render {
        #[command(flatten)]
        dirs: Dirs,
        /// The flow, by name.
        #[arg(long)]
        flow: String,
        /// The Beckn action (search, select, ...).
        #[arg(long)]
        action: String,
        /// A JSON or YAML file with the request (context fields left out get defaults).
        #[arg(long)]
        request: PathBuf,
        /// A JSON or YAML file of canned backend answers by step name.
        #[arg(long, conflicts_with = "live")]
        fixtures: Option<PathBuf>,
        /// Call the flow's real backends instead of fixtures.
        #[arg(long)]
        live: bool,
    },
    /// Print the JSON Schema of flow files (or of mapping test or fixture files).
    Schema {
        #[arg(value_enum, default_value = "flow")]
        kind: schema::SchemaKind,
    },
    /// Generate an ed25519 signing pair and an X25519 encryption pair, with a ready registry
    /// entry; `keys rotate <flow>` walks a flow's key rotation.
    #[command(args_conflicts_with_subcommands = true)]
    Keys {
        #[command(subcommand)]
        command: Option<KeysCommand>,
        #[command(flatten)]
        new: NewKeys,
    },
    /// Subscribe flows with their registries (Beckn core or ONDC, `network.registry.dialect`)
    /// and print each registry's answer; the flows must be served meanwhile, since the
    /// registry challenges them.
    Subscribe {
        /// A flow file, or a directory of flow files (every flow with a subscription).
        #[arg(default_value = "flows")]
        path: PathBuf,
        /// Only the flow of this name.
        #[arg(long)]
        flow: Option<String>,
    },
    /// Print the Beckn `Authorization` header for a body read from standard input.
    Sign {
        /// The signer's private key (base64); prefer the BECKN_SIGNING_KEY variable.
        #[arg(long, env = "BECKN_SIGNING_KEY", hide_env_values = true)]
        key: String,
        /// `subscriber_id|unique_key_id`.
        #[arg(long)]
        key_id: String,
        /// Seconds the signature stays valid.
        #[arg(long, default_value_t = 60)]
        validity: i64,
    },
    /// Play a farmer's journey on the sample network, all in this process (lab ERP and LIMS,
    /// three lab BPPs, the gateway with the registry, the farmer app's BAP), printing every
    /// message.
    Demo {
        #[command(flatten)]
        dirs: Dirs,
    },
    /// Run the sample soil-testing lab ERP (its own REST API, in memory).
    SampleErp {
        #[arg(long, default_value = "127.0.0.1:7180")]
        listen: SocketAddr,
        /// API key callers must send as X-Api-Key (the default is a test-only key).
        #[arg(long, env = "SAMPLE_ERP_API_KEY", default_value = demo::SAMPLE_ERP_API_KEY)]
        api_key: String,
    },
    /// Run the sample laboratory information system (LIMS) of the bhoomi-lab flow: OAuth2
    /// client credentials, a paged catalog, bookings (in memory).
    SampleLims {
        #[arg(long, default_value = "127.0.0.1:7181")]
        listen: SocketAddr,
        /// How long its access tokens live.
        #[arg(long, default_value = "5m")]
        token_lifetime: beckn_adapter::config::values::HumanDuration,
    },
    /// Flipkart Ultra connections (files under flows/ with `ultra:`).
    Ultra {
        #[command(flatten)]
        dirs: Dirs,
        #[command(subcommand)]
        command: ultra::UltraCommand,
    },
    /// Run a strict stand-in for Flipkart Ultra's partner APIs (tests and demos).
    UltraStandin {
        #[arg(long, default_value = "127.0.0.1:7120")]
        listen: SocketAddr,
        /// The partner's RSA public key (PEM), whose private half signs the secureTokens.
        #[arg(long, default_value = "registry/ultra/partner.pub.pem")]
        public_key: PathBuf,
    },
}

/// `keys` without a subcommand: who the new key pair's registry entry is for.
#[derive(clap::Args)]
pub struct NewKeys {
    /// Subscriber id the entry is for.
    #[arg(long, default_value = "your-subscriber.example.org")]
    subscriber_id: String,
    /// Unique key id to register the key under.
    #[arg(long, default_value = "key-1")]
    key_id: String,
    /// BAP, BPP or BG.
    #[arg(long = "type", default_value = "BPP")]
    kind: String,
    /// The subscriber's URL.
    #[arg(long, default_value = "https://your-subscriber.example.org/beckn")]
    url: String,
    #[arg(long, default_value = "agri.soil")]
    domain: String,
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Rotate a flow's signing key without downtime: prints the five steps (next key pair,
    /// registry entry to publish, the flow's `next_key`, the switch, retiring the old key).
    Rotate(rotate::RotateArgs),
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Check { dirs } => check::run(&dirs),
        Command::Test { dirs, filter } => mapping_tests::run(&dirs, filter.as_deref()).await,
        Command::Render {
            dirs,
            flow,
            action,
            request,
            fixtures,
            live,
        } => {
            let args = beckn_adapter::dry_run::RenderArgs {
                flow,
                action,
                request,
                fixtures,
            };
            render::run(&dirs, &args, live).await
        }
        Command::Schema { kind } => schema::run(kind),
        Command::Sign {
            key,
            key_id,
            validity,
        } => keys::sign(&key, &key_id, validity),
        Command::Keys {
            command: Some(KeysCommand::Rotate(args)),
            ..
        } => rotate::run(&args),
        Command::Keys { command: None, new } => keys::generate(
            &new.subscriber_id,
            &new.key_id,
            &new.kind,
            &new.url,
            &new.domain,
        ),
        Command::Serve(args) => serve::run(args).await,
        Command::Subscribe { path, flow } => subscribe::run(&path, flow.as_deref()).await,
        Command::Outbox { store, command } => outbox::run(&store.url, command).await,
        Command::Demo { dirs } => demo::run(&dirs).await,
        Command::Ultra { dirs, command } => ultra::run(&dirs, command).await,
        Command::UltraStandin { listen, public_key } => {
            demo::ultra_standin_command(listen, &public_key).await
        }
        Command::SampleErp { listen, api_key } => demo::sample_erp_command(listen, api_key).await,
        Command::SampleLims {
            listen,
            token_lifetime,
        } => demo::sample_lims_command(listen, token_lifetime.0).await,
    }
}

/// Loads the flows as `check` does, or prints the problems and exits 1.
fn load_or_exit(layout: &Layout) -> compile::CompiledSet {
    match compile::load(layout, &ProcessEnv) {
        Ok(set) => set,
        Err(diagnostics) => {
            eprintln!("{}", render_all(&diagnostics));
            std::process::exit(1);
        }
    }
}

/// Loads the flows, or prints the problems and fails.
fn load_or_fail(dirs: &Dirs) -> anyhow::Result<compile::CompiledSet> {
    match compile::load(&dirs.layout(), &ProcessEnv) {
        Ok(set) => Ok(set),
        Err(diagnostics) => {
            eprintln!("{}", render_all(&diagnostics));
            anyhow::bail!("the flows have errors");
        }
    }
}

/// Resolves at the first SIGINT (Ctrl-C) or SIGTERM, the signal systemd, Docker and
/// Kubernetes stop a service with: either one stops the adapter the same orderly way (no new
/// connections, the answers under way sent, the last spans exported).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
                _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            },
            Err(e) => {
                tracing::warn!(error = %e, "SIGTERM cannot be caught: only SIGINT stops in order");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn init_logging(format: LogFormat, color: bool, default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("BECKN_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    // By default colours only on a terminal: a log file or journal gets no escape sequences.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(color)
        .with_writer(std::io::stderr);
    match format {
        // Values from outside (paths, context fields) are logged with control characters
        // escaped, so none can forge a line or reach a terminal; JSON escapes them itself.
        LogFormat::Text => builder
            .fmt_fields(beckn_adapter::telemetry::log_format::EscapedFields)
            .init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_takes_the_store_after_its_subcommand() {
        for args in [
            [
                "beckn-adapter",
                "outbox",
                "list",
                "--store",
                "sqlite://x.db",
            ],
            [
                "beckn-adapter",
                "outbox",
                "--store",
                "sqlite://x.db",
                "list",
            ],
        ] {
            let cli = Cli::try_parse_from(args).expect("parsed");
            let Command::Outbox { store, command } = cli.command else {
                panic!("not the outbox command");
            };
            assert_eq!(store.url, "sqlite://x.db");
            assert!(matches!(command, outbox::OutboxCommand::List { limit: 50 }));
        }
        let cli = Cli::try_parse_from(["beckn-adapter", "ultra", "ping", "--mappings", "m"])
            .expect("parsed");
        let Command::Ultra { dirs, .. } = cli.command else {
            panic!("not the ultra command");
        };
        assert_eq!(dirs.mappings, Some(PathBuf::from("m")));
    }
}
