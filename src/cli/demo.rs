//! The test doubles on the command line: `demo`, `sample-erp`, `sample-lims`, `ultra-standin`,
//! and `serve`'s `--sample-erp`, `--sample-lims` and `--ultra-standin`. A build without the `demo` feature carries none of
//! them and says so when one is asked for.

use std::net::SocketAddr;
use std::path::Path;

use super::Dirs;

#[cfg(feature = "demo")]
pub use with_demo::*;
#[cfg(not(feature = "demo"))]
pub use without_demo::*;

/// The sample ERP's `--api-key` default (a test-only key).
#[cfg(feature = "demo")]
pub const SAMPLE_ERP_API_KEY: &str = sample_erp::DEFAULT_API_KEY;
#[cfg(not(feature = "demo"))]
pub const SAMPLE_ERP_API_KEY: &str = "";

/// What `serve` runs beside the adapter: the sample ERP, the sample LIMS and the Ultra
/// stand-in, each when given an address.
pub struct Doubles {
    pub sample_erp: Option<SocketAddr>,
    pub sample_lims: Option<SocketAddr>,
    pub ultra_standin: Option<SocketAddr>,
}

#[cfg(feature = "demo")]
mod with_demo {
    use anyhow::Context;

    use super::*;
    use crate::cli::shutdown_signal;

    /// A running test double, awaited when `serve` stops.
    pub type Running = Option<tokio::task::JoinHandle<std::io::Result<()>>>;

    /// Runs `beckn-adapter demo`: exit 0 when the journey completed, 1 with the failing step.
    pub async fn run(dirs: &Dirs) -> anyhow::Result<()> {
        let mut out = std::io::stdout();
        if let Err(e) = beckn_adapter::demo::run(&dirs.layout(), &mut out).await {
            eprintln!("demo failed: {e}");
            std::process::exit(1);
        }
        Ok(())
    }

    /// `sample-erp`: the sample lab ERP alone.
    pub async fn sample_erp_command(listen: SocketAddr, api_key: String) -> anyhow::Result<()> {
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

    /// `sample-lims`: the sample LIMS alone, with the bhoomi-lab flow's TEST-ONLY client.
    pub async fn sample_lims_command(
        listen: SocketAddr,
        token_lifetime: std::time::Duration,
    ) -> anyhow::Result<()> {
        let lims = sample_lims::SampleLims::new(sample_lims::LimsConfig {
            token_lifetime,
            ..Default::default()
        });
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding the sample LIMS to {listen}"))?;
        lims.serve(listener, shutdown_signal()).await?;
        Ok(())
    }

    /// `ultra-standin`: the Ultra stand-in alone.
    pub async fn ultra_standin_command(
        listen: SocketAddr,
        public_key: &Path,
    ) -> anyhow::Result<()> {
        let standin = ultra_standin(public_key)?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding the Ultra stand-in to {listen}"))?;
        standin.serve(listener, shutdown_signal()).await?;
        Ok(())
    }

    /// Whether this build has the doubles `serve` was asked for: it has them all.
    pub fn available(_doubles: &Doubles) -> anyhow::Result<()> {
        Ok(())
    }

    /// Starts the doubles `serve` was asked for; the sample ERP's task is returned.
    pub async fn start(doubles: &Doubles, root: &Path) -> anyhow::Result<Running> {
        let erp_task = match doubles.sample_erp {
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
        if let Some(addr) = doubles.sample_lims {
            let lims = sample_lims::SampleLims::new(sample_lims::LimsConfig::default());
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the sample LIMS to {addr}"))?;
            tokio::spawn(lims.serve(listener, shutdown_signal()));
        }
        if let Some(addr) = doubles.ultra_standin {
            let standin = ultra_standin(&root.join("registry/ultra/partner.pub.pem"))?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the Ultra stand-in to {addr}"))?;
            tokio::spawn(standin.serve(listener, shutdown_signal()));
        }
        Ok(erp_task)
    }

    /// The Ultra stand-in of the sample network, trusting the key at `public_key`.
    fn ultra_standin(public_key: &Path) -> anyhow::Result<ultra_standin::UltraStandIn> {
        let pem = std::fs::read_to_string(public_key).with_context(|| {
            format!("reading the partner's public key {}", public_key.display())
        })?;
        ultra_standin::UltraStandIn::new(ultra_standin::StandInConfig::sample(pem))
            .map_err(anyhow::Error::msg)
    }

    /// Where the sample ERP posts each lab's status changes: the `events.webhook` of the
    /// sample flow serving that lab, at the same addresses the flows use. Krishi Test House's
    /// flow polls the ERP for them instead (`events.poll`), so only GreenField's are posted.
    fn sample_webhooks() -> sample_erp::WebhookConfig {
        let var =
            |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
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
}

#[cfg(not(feature = "demo"))]
mod without_demo {
    use anyhow::bail;

    use super::*;

    /// Nothing runs beside `serve` in this build.
    pub type Running = Option<tokio::task::JoinHandle<std::io::Result<()>>>;

    const MISSING: &str = "this beckn-adapter was built without the `demo` feature (no sample ERP, no sample LIMS, no Ultra stand-in, no demo); build it with default features for them";

    pub async fn run(_dirs: &Dirs) -> anyhow::Result<()> {
        bail!("`demo`: {MISSING}")
    }

    pub async fn sample_erp_command(_listen: SocketAddr, _api_key: String) -> anyhow::Result<()> {
        bail!("`sample-erp`: {MISSING}")
    }

    pub async fn sample_lims_command(
        _listen: SocketAddr,
        _token_lifetime: std::time::Duration,
    ) -> anyhow::Result<()> {
        bail!("`sample-lims`: {MISSING}")
    }

    pub async fn ultra_standin_command(
        _listen: SocketAddr,
        _public_key: &Path,
    ) -> anyhow::Result<()> {
        bail!("`ultra-standin`: {MISSING}")
    }

    /// Whether this build has the doubles `serve` was asked for: it has none.
    pub fn available(doubles: &Doubles) -> anyhow::Result<()> {
        if doubles.sample_erp.is_some() {
            bail!("--sample-erp: {MISSING}");
        }
        if doubles.sample_lims.is_some() {
            bail!("--sample-lims: {MISSING}");
        }
        if doubles.ultra_standin.is_some() {
            bail!("--ultra-standin: {MISSING}");
        }
        Ok(())
    }

    pub async fn start(doubles: &Doubles, _root: &Path) -> anyhow::Result<Running> {
        available(doubles)?;
        Ok(None)
    }
}
