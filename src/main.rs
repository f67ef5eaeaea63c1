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
use beckn_adapter::config::diagnostic::render_all;
use beckn_adapter::delivery::DirectSender;
use beckn_adapter::roles::Services;
use beckn_adapter::server;

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
struct Dirs {
    /// Directory of flow files; `mappings/` and `schemas/` are looked up beside it.
    #[arg(default_value = "flows")]
    flows: PathBuf,
    /// Mappings directory (default: beside the flows directory).
    #[arg(long)]
    mappings: Option<PathBuf>,
    /// Schemas directory (default: beside the flows directory).
    #[arg(long)]
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

#[derive(Subcommand)]
enum Command {
    /// Serve the flows: every flow listens on its own `listen` address.
    Serve {
        #[command(flatten)]
        dirs: Dirs,
        /// Also run the bundled sample lab ERP in this process, on this address.
        #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:7180")]
        sample_erp: Option<SocketAddr>,
    },
    /// Load and compile the flows, report every problem with file:line:col, exit non-zero on any.
    Check {
        #[command(flatten)]
        dirs: Dirs,
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
    /// Run the sample soil-testing lab ERP (its own REST API, in memory).
    SampleErp {
        #[arg(long, default_value = "127.0.0.1:7180")]
        listen: SocketAddr,
        /// API key callers must send as X-Api-Key (the default is a test-only key).
        #[arg(long, env = "SAMPLE_ERP_API_KEY", default_value = sample_erp::DEFAULT_API_KEY)]
        api_key: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(run(cli.command))
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Check { dirs } => check(&dirs),
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
        Command::Serve { dirs, sample_erp } => serve(&dirs, sample_erp).await,
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
                if f.serve_registry {
                    actions.push("(serves /lookup)");
                }
                println!(
                    "  {} ({}, {}) on {}{}: {}",
                    f.name,
                    f.role.as_str(),
                    f.subscriber_id,
                    f.listen,
                    f.base_path,
                    actions.join(" ")
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

async fn serve(dirs: &Dirs, sample_erp: Option<SocketAddr>) -> anyhow::Result<()> {
    let layout = dirs.layout();
    let set = match compile::load(&layout, &ProcessEnv) {
        Ok(set) => set,
        Err(diagnostics) => {
            eprintln!("{}", render_all(&diagnostics));
            bail!("the flows have errors; nothing was started");
        }
    };
    let flows = Arc::new(ArcSwap::from_pointee(set));
    let services = Arc::new(Services {
        transport: Arc::new(HttpTransport::new()),
        sender: Arc::new(DirectSender::new(4, Duration::from_millis(500))),
        registries: RegistryPool::default(),
    });
    let mut listeners = Vec::new();
    for (addr, router) in server::routers(&flows, &services) {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        listeners.push((listener, router));
    }
    let erp_task = match sample_erp {
        Some(addr) => {
            let erp = sample_erp::SampleErp::new(sample_erp::ErpConfig::default());
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the sample ERP to {addr}"))?;
            Some(tokio::spawn(erp.serve(listener, shutdown_signal())))
        }
        None => None,
    };
    for f in &flows.load().flows {
        if !f.verify_signatures {
            tracing::warn!(flow = %f.name, "SIGNATURE VERIFICATION IS OFF for this flow: any sender is accepted and answers go to any bap_uri. For local development only; remove `verify_signatures: false` before joining a network");
        }
        tracing::info!(flow = %f.name, role = f.role.as_str(), subscriber_id = %f.subscriber_id, listen = %f.listen, base_path = %f.base_path, actions = f.actions.len(), "flow serving");
    }
    server::serve(listeners, shutdown_signal()).await?;
    if let Some(task) = erp_task {
        task.await??;
    }
    Ok(())
}

async fn shutdown_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("BECKN_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
