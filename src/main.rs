//! The command line: the only place that uses `anyhow` and reads the process environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use arc_swap::ArcSwap;
use clap::{Parser, Subcommand};

use beckn_adapter::backend::HttpTransport;
use beckn_adapter::beckn::signing::PrivateKey;
use beckn_adapter::beckn::trust::RegistryPool;
use beckn_adapter::compile::{self, Layout};
use beckn_adapter::config::ProcessEnv;
use beckn_adapter::config::Secret;
use beckn_adapter::config::diagnostic::render_all;
use beckn_adapter::config::values::HumanDuration;
use beckn_adapter::delivery::{DeliverySettings, Outbox};
use beckn_adapter::reload::Reloader;
use beckn_adapter::roles::Services;
use beckn_adapter::server;
use beckn_adapter::server::admin::Admin;
use beckn_adapter::{roles, store};

/// mimalloc instead of the system allocator: a request allocates and frees many small JSON
/// values across threads, where glibc's malloc took a tenth to a fifth of the CPU (measured,
/// docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "beckn-adapter",
    version,
    about = "Config-driven Beckn protocol adapter"
)]
struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "BECKN_LOG_FORMAT"
    )]
    log_format: LogFormat,
    /// Colours in text logs: `auto` when standard error is a terminal (a file, pipe or journal
    /// gets none), `always` or `never`.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "auto",
        env = "BECKN_LOG_COLOR"
    )]
    color: ColorChoice,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    fn enabled(self) -> bool {
        match self {
            ColorChoice::Auto => std::io::IsTerminal::is_terminal(&std::io::stderr()),
            ColorChoice::Always => true,
            ColorChoice::Never => false,
        }
    }
}

#[derive(clap::Args)]
struct Dirs {
    /// Directory of flow files; `mappings/` and `schemas/` are looked up beside it.
    #[arg(default_value = "flows")]
    flows: PathBuf,
    /// Mappings directory (default: beside the flows directory).
    #[arg(long, global = true)]
    mappings: Option<PathBuf>,
    /// Schemas directory (default: beside the flows directory).
    #[arg(long, global = true)]
    schemas: Option<PathBuf>,
}

impl Dirs {
    fn layout(&self) -> Layout {
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
struct ServeArgs {
    #[command(flatten)]
    dirs: Dirs,
    /// Also run the bundled sample lab ERP in this process, on this address.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:7180")]
    sample_erp: Option<SocketAddr>,
    /// Also run the Ultra stand-in in this process, on this address (trusting the test-only
    /// key of registry/ultra/).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:7120")]
    ultra_standin: Option<SocketAddr>,
    #[command(flatten)]
    store: StoreArgs,
    /// How long the message log and finished work are kept.
    #[arg(long, default_value = "7d", env = "BECKN_RETENTION")]
    retention: HumanDuration,
    /// With a shared (PostgreSQL) store: how long before another process takes over the
    /// accepted requests and messages of one that stopped.
    #[arg(long, default_value = "60s", env = "BECKN_WORK_LEASE")]
    work_lease: HumanDuration,
    /// Address of the admin listener (health, readiness, metrics, status, reload, outbox).
    #[arg(long, default_value = "127.0.0.1:7190", env = "BECKN_ADMIN")]
    admin: SocketAddr,
    /// Bearer token required by /admin/* (needed when the admin address is not loopback).
    #[arg(long, env = "BECKN_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Every listener: the longest a client may take to send a request's headers, from their
    /// first byte (then 408 and the connection is closed).
    #[arg(long, default_value = "10s", env = "BECKN_HEADER_TIMEOUT")]
    header_timeout: HumanDuration,
    /// Every listener: the longest a client may take to send a request's body, from the end
    /// of its headers (then 408 and the connection is closed).
    #[arg(long, default_value = "30s", env = "BECKN_BODY_TIMEOUT")]
    body_timeout: HumanDuration,
    /// Every listener: a kept-alive connection with no request for this long is closed.
    #[arg(long, default_value = "75s", env = "BECKN_IDLE_TIMEOUT")]
    idle_timeout: HumanDuration,
    /// Every listener: connections open at once; more wait to be accepted until one closes.
    #[arg(long, default_value_t = 4096, env = "BECKN_MAX_CONNECTIONS",
          value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Do not reload when files under flows/, mappings/, schemas/ or registry/ change.
    #[arg(long)]
    no_watch: bool,
    /// Log every message received and sent, with headers (signatures reduced to their keyId,
    /// secrets masked) and bodies (personal fields masked).
    #[arg(long, env = "BECKN_LOG_PAYLOADS")]
    log_payloads: bool,
    /// Personal body fields masked in payload logs and in the store's message log: names
    /// (masked at any depth) and dotted paths (`person.name`: a `name` inside a `person`).
    /// An empty value masks nothing.
    #[arg(
        long,
        env = "BECKN_REDACT_FIELDS",
        value_delimiter = ',',
        default_value = beckn_adapter::beckn::redact::DEFAULT_PERSONAL_FIELDS
    )]
    redact_fields: Vec<String>,
}

#[derive(clap::Args)]
struct StoreArgs {
    /// Where durable state lives: sqlite://PATH (created at first start; add
    /// `?synchronous=normal` to skip the fsync of each commit, see docs/operations.md).
    #[arg(
        long = "store",
        global = true,
        env = "BECKN_STORE",
        default_value = "sqlite://.adapter/store.db"
    )]
    url: String,
}

#[derive(Subcommand)]
enum OutboxCommand {
    /// Pending and dead counts, and the dead letters with their last errors.
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Queue a dead letter again, due now, with a fresh deadline.
    Retry {
        id: i64,
        /// How long the revived message may be retried.
        #[arg(long, default_value = "10m")]
        deadline: HumanDuration,
    },
    /// Delete a dead letter.
    Drop { id: i64 },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SchemaKind {
    /// flows/*.yaml (committed as schemas/flow.schema.json)
    Flow,
    /// flows/tests/*.yaml (committed as schemas/mapping-test.schema.json)
    MappingTest,
    /// fixture files (committed as schemas/fixtures.schema.json)
    Fixtures,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the flows: every flow listens on its own `listen` address.
    Serve(ServeArgs),
    /// Inspect and act on the outbox's dead letters.
    Outbox {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: OutboxCommand,
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
        kind: SchemaKind,
    },
    /// Generate an ed25519 signing key pair and print it with a ready registry entry.
    Keys {
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
    /// Play a farmer's journey on the sample network, all in this process (lab ERP, two lab
    /// BPPs, the gateway with the registry, the farmer app's BAP), printing every message.
    Demo {
        #[command(flatten)]
        dirs: Dirs,
    },
    /// Run the sample soil-testing lab ERP (its own REST API, in memory).
    SampleErp {
        #[arg(long, default_value = "127.0.0.1:7180")]
        listen: SocketAddr,
        /// API key callers must send as X-Api-Key (the default is a test-only key).
        #[arg(long, env = "SAMPLE_ERP_API_KEY", default_value = sample_erp::DEFAULT_API_KEY)]
        api_key: String,
    },
    /// Flipkart Ultra connections (files under flows/ with `ultra:`).
    Ultra {
        #[command(flatten)]
        dirs: Dirs,
        #[command(subcommand)]
        command: UltraCommand,
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

#[derive(Subcommand)]
enum UltraCommand {
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

fn main() -> anyhow::Result<()> {
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

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Check { dirs } => check(&dirs),
        Command::Test { dirs, filter } => mapping_tests(&dirs, filter.as_deref()).await,
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
            render(&dirs, &args, live).await
        }
        Command::Schema { kind } => {
            let schema = match kind {
                SchemaKind::Flow => beckn_adapter::config::json_schema::flow_file(),
                SchemaKind::MappingTest => beckn_adapter::mapping_test::format::schema(),
                SchemaKind::Fixtures => beckn_adapter::dry_run::fixtures::schema(),
            };
            print!("{}", beckn_adapter::config::json_schema::to_text(&schema));
            Ok(())
        }
        Command::Sign {
            key,
            key_id,
            validity,
        } => {
            use std::io::Read;
            let key = PrivateKey::from_base64(&key).context("reading the private key")?;
            let mut body = Vec::new();
            std::io::stdin()
                .read_to_end(&mut body)
                .context("reading the body from standard input")?;
            let now = jiff::Timestamp::now().as_second();
            println!("{}", key.sign(&body, &key_id, now, now + validity));
            Ok(())
        }
        Command::Keys {
            subscriber_id,
            key_id,
            kind,
            url,
            domain,
        } => {
            let key = PrivateKey::generate().context("generating a key")?;
            let public = key.public_key().to_base64();
            println!("signing_public_key:  {public}");
            println!("signing_private_key: {}", key.to_base64());
            println!(
                "  (keep the private key secret: give it to the adapter through an environment variable)"
            );
            println!();
            println!("# registry entry");
            println!("- subscriber_id: {subscriber_id}");
            println!("  type: {}", kind.to_ascii_uppercase());
            println!("  url: {url}");
            println!("  domain: {domain}");
            println!("  unique_key_id: {key_id}");
            println!("  signing_public_key: {public}");
            println!("  valid_from: {}", jiff::Timestamp::now());
            println!("  status: SUBSCRIBED");
            Ok(())
        }
        Command::Serve(args) => serve(args).await,
        Command::Outbox { store, command } => outbox(&store.url, command).await,
        Command::Demo { dirs } => demo(&dirs).await,
        Command::Ultra { dirs, command } => match command {
            UltraCommand::Ping { connection } => ultra_ping(&dirs, connection.as_deref()).await,
            UltraCommand::Render {
                flow,
                callback,
                identity_token,
            } => ultra_render(&dirs, &flow, &callback, &identity_token),
        },
        Command::UltraStandin { listen, public_key } => {
            let standin = ultra_standin(&public_key)?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding the Ultra stand-in to {listen}"))?;
            standin.serve(listener, shutdown_signal()).await?;
            Ok(())
        }
        Command::SampleErp { listen, api_key } => {
            let erp = sample_erp::SampleErp::new(sample_erp::ErpConfig {
                api_key,
                ..Default::default()
            });
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding the sample ERP to {listen}"))?;
            erp.serve(listener, shutdown_signal()).await?;
            Ok(())
        }
    }
}

fn check(dirs: &Dirs) -> anyhow::Result<()> {
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
                if f.role == beckn_adapter::config::model::Role::Gateway {
                    actions = vec!["forwards search, on_search"];
                }
                let client_api;
                if let Some(bap) = &f.bap {
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
                    f.role.as_str(),
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

async fn outbox(store_url: &str, command: OutboxCommand) -> anyhow::Result<()> {
    let store = store::open(store_url)
        .await
        .with_context(|| format!("opening the store {store_url}"))?;
    match command {
        OutboxCommand::List { limit } => {
            let counts = store.counts().await?;
            println!("pending: {}  dead: {}", counts.pending, counts.dead);
            for d in store.dead_letters(limit).await? {
                println!(
                    "#{} {} {} -> {} (transaction {}, message {}) after {} attempts: {}",
                    d.id,
                    d.flow,
                    d.action,
                    d.url,
                    d.transaction_id,
                    d.message_id,
                    d.attempts,
                    d.last_error.unwrap_or_default()
                );
            }
        }
        OutboxCommand::Retry { id, deadline } => {
            let now = store::now_ms();
            if !store
                .revive(id, now, now + deadline.0.as_millis() as i64)
                .await?
            {
                bail!("#{id} is not a dead letter");
            }
            println!("#{id} queued again; a running adapter sends it within a second");
        }
        OutboxCommand::Drop { id } => {
            if !store.discard(id).await? {
                bail!("#{id} is not a dead letter");
            }
            println!("#{id} dropped");
        }
    }
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if !args.admin.ip().is_loopback() && args.admin_token.is_none() {
        bail!(
            "the admin listener {} is not on loopback: give --admin-token (or BECKN_ADMIN_TOKEN)",
            args.admin
        );
    }
    let limits = server::ListenerLimits {
        header_timeout: args.header_timeout.0,
        body_timeout: args.body_timeout.0,
        idle_timeout: args.idle_timeout.0,
        max_connections: args.max_connections as usize,
    };
    for (name, value) in [
        ("--header-timeout", limits.header_timeout),
        ("--body-timeout", limits.body_timeout),
        ("--idle-timeout", limits.idle_timeout),
    ] {
        if value.is_zero() {
            bail!("{name} must be longer than 0s");
        }
    }
    let delivery = DeliverySettings {
        work_lease: args.work_lease.0,
        lease: args.work_lease.0,
        protected: vec![args.admin],
        ..DeliverySettings::default()
    };
    let store_url = args.store.url.as_str();
    beckn_adapter::intake::payloads::configure(args.log_payloads, args.redact_fields.clone());
    let layout = args.dirs.layout();
    let set = match compile::load(&layout, &ProcessEnv) {
        Ok(set) => set,
        Err(diagnostics) => {
            eprintln!("{}", render_all(&diagnostics));
            bail!("the flows have errors; nothing was started");
        }
    };
    let flows = Arc::new(ArcSwap::from_pointee(set));
    let reloader = Reloader::new(layout, Arc::new(ProcessEnv), flows.clone());
    let store = store::open(store_url)
        .await
        .with_context(|| format!("opening the store {store_url}"))?;
    tracing::info!(store = %store_url, "store open");
    let outbox = Arc::new(Outbox::new(store.clone(), delivery));
    tokio::spawn(outbox.clone().run(flows.clone(), shutdown_signal()));
    tokio::spawn(purge_periodically(store.clone(), args.retention.0));
    let services = Arc::new(Services {
        transport: Arc::new(HttpTransport::new()),
        outbox: outbox.clone(),
        registries: RegistryPool::default(),
    });
    let mut listeners = Vec::new();
    for (addr, router) in server::routers(&flows, &services) {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        listeners.push((listener, router));
    }
    let admin = Arc::new(Admin {
        reloader: reloader.clone(),
        store,
        token: args.admin_token.map(Secret::new),
    });
    let admin_listener = tokio::net::TcpListener::bind(args.admin)
        .await
        .with_context(|| format!("binding the admin listener {}", args.admin))?;
    if let Ok(bound) = admin_listener.local_addr() {
        outbox.protect(bound);
    }
    listeners.push((admin_listener, server::admin::router(admin)));
    tracing::info!(admin = %args.admin, "admin listener: /health /ready /metrics /admin/status /admin/reload /admin/outbox");
    let _watcher = if args.no_watch {
        None
    } else {
        match reloader.watch(Duration::from_millis(300)) {
            Ok(w) => {
                tracing::info!(dirs = ?reloader.watched(), "reloading on file changes");
                Some(w)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch files; reload with SIGHUP or POST /admin/reload");
                None
            }
        }
    };
    tokio::spawn(reloader.clone().on_sighup(shutdown_signal()));
    let erp_task = match args.sample_erp {
        Some(addr) => {
            let erp = sample_erp::SampleErp::new(sample_erp::ErpConfig {
                webhook: Some(sample_webhooks()),
                ..Default::default()
            });
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the sample ERP to {addr}"))?;
            Some(tokio::spawn(erp.serve(listener, shutdown_signal())))
        }
        None => None,
    };
    if let Some(addr) = args.ultra_standin {
        let standin = ultra_standin(
            &args
                .dirs
                .layout()
                .root
                .join("registry/ultra/partner.pub.pem"),
        )?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the Ultra stand-in to {addr}"))?;
        tokio::spawn(standin.serve(listener, shutdown_signal()));
    }
    for f in &flows.load().flows {
        if !f.participant.verify_signatures {
            tracing::warn!(flow = %f.name, "SIGNATURE VERIFICATION IS OFF for this flow: any sender is accepted and answers go to any bap_uri. For local development only; remove `verify_signatures: false` before joining a network");
        }
        tracing::info!(flow = %f.name, role = f.role.as_str(), subscriber_id = %f.participant.subscriber_id, listen = %f.listen, base_path = %f.base_path, actions = f.actions.len(), "flow serving");
    }
    tokio::spawn(roles::rescue_unfinished(
        flows.clone(),
        services.clone(),
        shutdown_signal(),
    ));
    tokio::spawn(roles::events::poller::run(
        flows.clone(),
        services.clone(),
        shutdown_signal(),
    ));
    tracing::info!(header_timeout = ?limits.header_timeout, body_timeout = ?limits.body_timeout, idle_timeout = ?limits.idle_timeout, max_connections = limits.max_connections, "listener limits");
    server::serve_within(listeners, limits, shutdown_signal()).await?;
    if let Some(task) = erp_task {
        task.await??;
    }
    Ok(())
}

/// The Ultra stand-in of the sample network, trusting the key at `public_key`.
fn ultra_standin(public_key: &std::path::Path) -> anyhow::Result<ultra_standin::UltraStandIn> {
    let pem = std::fs::read_to_string(public_key)
        .with_context(|| format!("reading the partner's public key {}", public_key.display()))?;
    ultra_standin::UltraStandIn::new(ultra_standin::StandInConfig::sample(pem))
        .map_err(anyhow::Error::msg)
}

/// `ultra render`: the OMS order a flow's mapping makes of a callback, offline.
fn ultra_render(
    dirs: &Dirs,
    flow_name: &str,
    callback: &std::path::Path,
    identity: &str,
) -> anyhow::Result<()> {
    let set = match compile::load(&dirs.layout(), &ProcessEnv) {
        Ok(set) => set,
        Err(diagnostics) => {
            eprintln!("{}", render_all(&diagnostics));
            bail!("the flows have errors");
        }
    };
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
async fn ultra_ping(dirs: &Dirs, name: Option<&str>) -> anyhow::Result<()> {
    let set = match compile::load(&dirs.layout(), &ProcessEnv) {
        Ok(set) => set,
        Err(diagnostics) => {
            eprintln!("{}", render_all(&diagnostics));
            bail!("the flows have errors");
        }
    };
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
fn ping_hint(e: &beckn_adapter::sinks::ultra::api::UltraError) -> &'static str {
    use beckn_adapter::sinks::ultra::api::UltraError;
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

/// Where the sample ERP posts each lab's status changes: the `events.webhook` of the sample
/// flow serving that lab, at the same addresses the flows use. Krishi Test House's flow polls
/// the ERP for them instead (`events.poll`), so only GreenField's are posted.
fn sample_webhooks() -> sample_erp::WebhookConfig {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    sample_erp::WebhookConfig {
        url: String::new(),
        // TEST-ONLY default, shared with the sample flows' `events.webhook.secret`.
        secret: var("SAMPLE_ERP_WEBHOOK_SECRET", "test-only-webhook-secret"),
        lab_urls: [("GFSL", var("GFSL_PUBLIC_URL", "http://127.0.0.1:7101"))]
            .into_iter()
            .map(|(lab, base)| (lab.to_string(), format!("{base}/erp/events")))
            .collect(),
    }
}

/// Deletes log entries and finished work older than `retention`, hourly.
async fn purge_periodically(store: Arc<dyn store::Store>, retention: Duration) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let before = store::now_ms() - retention.as_millis() as i64;
        match store.purge(before).await {
            Ok(n) if n > 0 => tracing::info!(deleted = n, "store purged"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "store purge failed"),
        }
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

async fn mapping_tests(dirs: &Dirs, filter: Option<&str>) -> anyhow::Result<()> {
    let layout = dirs.layout();
    let set = load_or_exit(&layout);
    match beckn_adapter::mapping_test::run_all(&layout, &set, filter).await {
        Ok(report) => {
            print!("{report}");
            if report.failed() > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        Err(problem) => {
            eprintln!("{problem}");
            std::process::exit(1);
        }
    }
}

async fn render(
    dirs: &Dirs,
    args: &beckn_adapter::dry_run::RenderArgs,
    live: bool,
) -> anyhow::Result<()> {
    let layout = dirs.layout();
    let set = load_or_exit(&layout);
    let http = HttpTransport::new();
    let live = live.then_some(&http as &dyn beckn_adapter::backend::Transport);
    match beckn_adapter::dry_run::render(&layout, &set, args, live).await {
        Ok(text) => {
            print!("{text}");
            Ok(())
        }
        Err(problem) => {
            eprintln!("{problem}");
            std::process::exit(1);
        }
    }
}

async fn shutdown_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

/// Runs `beckn-adapter demo`: exit 0 when the journey completed, 1 with the failing step.
async fn demo(dirs: &Dirs) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    if let Err(e) = beckn_adapter::demo::run(&dirs.layout(), &mut out).await {
        eprintln!("demo failed: {e}");
        std::process::exit(1);
    }
    Ok(())
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
            assert!(matches!(command, OutboxCommand::List { limit: 50 }));
        }
        let cli = Cli::try_parse_from(["beckn-adapter", "ultra", "ping", "--mappings", "m"])
            .expect("parsed");
        let Command::Ultra { dirs, .. } = cli.command else {
            panic!("not the ultra command");
        };
        assert_eq!(dirs.mappings, Some(PathBuf::from("m")));
    }

    #[test]
    fn ultra_ping_hint_names_token_lifetime() {
        use beckn_adapter::sinks::ultra::api::UltraError;
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
