//! `serve`: the adapter as configured on the command line, built and run by [`App`].

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::bail;

use beckn_adapter::app::{AdminSettings, App, AppError, Listeners, Settings};
use beckn_adapter::config::ProcessEnv;
use beckn_adapter::config::Secret;
use beckn_adapter::config::diagnostic::render_all;
use beckn_adapter::config::values::HumanDuration;
use beckn_adapter::delivery::DeliverySettings;
use beckn_adapter::server;
use beckn_adapter::telemetry::traces::TraceSettings;

use super::demo::{self, Doubles};
use super::{Dirs, StoreArgs, shutdown_signal};

#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    dirs: Dirs,
    /// Also run the bundled sample lab ERP in this process, on this address.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:7180")]
    sample_erp: Option<SocketAddr>,
    /// Also run the bundled sample LIMS (the bhoomi-lab flow's lab system) in this process, on
    /// this address.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:7181")]
    sample_lims: Option<SocketAddr>,
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
    /// Every listener: an answer the client takes no part of for this long (it does not read)
    /// ends the connection.
    #[arg(long, default_value = "30s", env = "BECKN_WRITE_TIMEOUT")]
    write_timeout: HumanDuration,
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
    /// Export traces (a span per message and per step) to this OTLP/HTTP collector, e.g.
    /// `http://127.0.0.1:4318` (`/v1/traces` is appended). None: no traces.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// The traces' `service.name`.
    #[arg(long, env = "OTEL_SERVICE_NAME", default_value = beckn_adapter::telemetry::traces::SERVICE_NAME)]
    otel_service_name: String,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
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
        write_timeout: args.write_timeout.0,
        max_connections: args.max_connections as usize,
    };
    for (name, value) in [
        ("--header-timeout", limits.header_timeout),
        ("--body-timeout", limits.body_timeout),
        ("--idle-timeout", limits.idle_timeout),
        ("--write-timeout", limits.write_timeout),
    ] {
        if value.is_zero() {
            bail!("{name} must be longer than 0s");
        }
    }
    let doubles = Doubles {
        sample_erp: args.sample_erp,
        sample_lims: args.sample_lims,
        ultra_standin: args.ultra_standin,
    };
    demo::available(&doubles)?;
    beckn_adapter::intake::payloads::configure(args.log_payloads, args.redact_fields.clone());
    let layout = args.dirs.layout();
    let root = layout.root.clone();
    let mut settings = Settings::new(layout, Arc::new(ProcessEnv), args.store.url.clone());
    settings.delivery = DeliverySettings {
        work_lease: args.work_lease.0,
        lease: args.work_lease.0,
        ..DeliverySettings::default()
    };
    settings.retention = args.retention.0;
    settings.admin = Some(AdminSettings {
        listen: args.admin,
        token: args.admin_token.map(Secret::new),
    });
    settings.limits = limits;
    settings.traces = TraceSettings {
        endpoint: args.otlp_endpoint.filter(|e| !e.trim().is_empty()),
        service_name: args.otel_service_name,
    };
    if args.no_watch {
        settings.watch = None;
    }
    let app = match App::build(settings).await {
        Ok(app) => app,
        Err(AppError::Flows(diagnostics)) => {
            eprintln!("{}", render_all(&diagnostics));
            bail!("the flows have errors; nothing was started");
        }
        Err(e) => return Err(e.into()),
    };
    let erp_task = demo::start(&doubles, &root).await?;
    app.run(Listeners::new(), shutdown_signal()).await?;
    if let Some(task) = erp_task {
        task.await??;
    }
    Ok(())
}
