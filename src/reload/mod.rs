//! Hot reload: the flows, mappings, schemas and registry files are compiled again, in full, and
//! swapped in atomically; requests already running finish on the set they started with. A set
//! with errors is rejected whole: the old one keeps serving and every diagnostic is logged.
//!
//! Triggers: file changes (debounced), SIGHUP, and `POST /admin/reload`.
//!
//! Only changes trigger: the watcher also reports files being opened and read, and a reload
//! reads every file it watches, so reacting to reads would reload again after every reload.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use arc_swap::ArcSwap;
use notify::Watcher as _;
use serde::Serialize;

use crate::compile::{self, CompiledSet, Layout};
use crate::config::{Diagnostic, EnvLookup};
use crate::telemetry;

/// A reload that was refused, kept for `/admin/status`.
#[derive(Debug, Clone, Serialize)]
pub struct RejectedReload {
    pub at: String,
    pub trigger: String,
    pub diagnostics: Vec<Diagnostic>,
}

/// A reload that ran, and what came of it, for the console.
#[derive(Debug, Clone, Serialize)]
pub struct LastReload {
    pub at: String,
    pub trigger: String,
    #[serde(flatten)]
    pub outcome: ReloadOutcome,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ReloadOutcome {
    Applied { hash: String },
    Unchanged { hash: String },
    Rejected { diagnostics: Vec<Diagnostic> },
}

pub struct Reloader {
    layout: Layout,
    env: Arc<dyn EnvLookup>,
    pub flows: Arc<ArcSwap<CompiledSet>>,
    last_rejected: Mutex<Option<RejectedReload>>,
    /// The last reload's outcome, whatever it was.
    last: Mutex<Option<LastReload>>,
    /// One reload at a time.
    running: Mutex<()>,
    /// Reloads finished, whatever their outcome.
    runs: AtomicU64,
}

/// Watches the flow files; dropping it stops the watching.
pub struct FileWatcher {
    _watcher: notify::RecommendedWatcher,
}

/// Whether a watcher's event means a file changed: opening, reading and closing a file
/// unwritten do not (a reload does all three to every file it watches).
fn is_change(kind: &notify::EventKind) -> bool {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// What routing was built from at start: a reload may not change it (listeners are bound).
fn shape(set: &CompiledSet) -> BTreeSet<String> {
    set.flows
        .iter()
        .map(|f| {
            format!(
                "{} {} {}{} {} {}",
                f.name,
                f.role().as_str(),
                f.listen,
                f.base_path,
                f.events()
                    .and_then(|e| e.webhook.as_ref())
                    .map_or("", |w| w.path.as_str()),
                f.bap().map_or(String::new(), |b| format!(
                    "{}{}",
                    b.client_listen, b.client_base_path
                ))
            )
        })
        .collect()
}

impl Reloader {
    pub fn new(
        layout: Layout,
        env: Arc<dyn EnvLookup>,
        flows: Arc<ArcSwap<CompiledSet>>,
    ) -> Arc<Self> {
        Arc::new(Reloader {
            layout,
            env,
            flows,
            last_rejected: Mutex::new(None),
            last: Mutex::new(None),
            running: Mutex::new(()),
            runs: AtomicU64::new(0),
        })
    }

    /// Compiles everything again and swaps it in, or keeps the current set and says why.
    pub fn reload(&self, trigger: &str) -> ReloadOutcome {
        let _one = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.flows.load_full();
        let outcome = match compile::load(&self.layout, self.env.as_ref()) {
            Ok(set) if set.hash == current.hash => ReloadOutcome::Unchanged { hash: set.hash },
            Ok(set) if shape(&set) != shape(&current) => ReloadOutcome::Rejected {
                diagnostics: vec![
                    Diagnostic::new(
                        &self.layout.flows,
                        "flows were added, removed, renamed or moved to another address",
                    )
                    .hint("a reload changes what flows do; listeners, flow names and roles change with a restart"),
                ],
            },
            Ok(set) => {
                let hash = set.hash.clone();
                self.flows.store(Arc::new(set));
                ReloadOutcome::Applied { hash }
            }
            Err(diagnostics) => ReloadOutcome::Rejected { diagnostics },
        };
        match &outcome {
            ReloadOutcome::Applied { hash } => {
                telemetry::reloaded("applied");
                tracing::info!(%trigger, set = %hash, "flows reloaded");
            }
            ReloadOutcome::Unchanged { .. } => telemetry::reloaded("unchanged"),
            ReloadOutcome::Rejected { diagnostics } => {
                telemetry::reloaded("rejected");
                for d in diagnostics {
                    tracing::error!(%trigger, file = %d.file.display(), line = d.line, col = d.col, at = %d.yaml_path, problem = %d.message, hint = d.hint.as_deref().unwrap_or(""), "reload rejected: {d}");
                }
                tracing::error!(%trigger, problems = diagnostics.len(), set = %current.hash, "reload rejected; the previous flows keep serving");
                *self.last_rejected.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(RejectedReload {
                        // for operators reading the status: the system's time
                        at: jiff::Timestamp::now().to_string(),
                        trigger: trigger.to_string(),
                        diagnostics: diagnostics.clone(),
                    });
            }
        }
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(LastReload {
            at: jiff::Timestamp::now().to_string(),
            trigger: trigger.to_string(),
            outcome: outcome.clone(),
        });
        self.runs.fetch_add(1, Ordering::Relaxed);
        outcome
    }

    /// The last reload since start, whatever its outcome (None: none ran).
    pub fn last(&self) -> Option<LastReload> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The directories this reloader compiles.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// How many reloads ran (applied, unchanged or rejected) since start.
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    pub fn last_rejected(&self) -> Option<RejectedReload> {
        self.last_rejected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Directories whose changes trigger a reload.
    pub fn watched(&self) -> Vec<PathBuf> {
        [
            self.layout.flows.clone(),
            self.layout.mappings.clone(),
            self.layout.schemas.clone(),
            self.layout.root.join("registry"),
        ]
        .into_iter()
        .filter(|p| p.is_dir())
        .collect()
    }

    /// Reloads on file changes, `debounce` after the last one, once per burst of changes.
    /// Keep the returned watcher alive.
    pub fn watch(self: &Arc<Self>, debounce: Duration) -> Result<FileWatcher, notify::Error> {
        let (tx, rx) = mpsc::channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
                Ok(event) if is_change(&event.kind) => {
                    let _ = tx.send(());
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "file watcher error; still watching"),
            })?;
        for dir in self.watched() {
            watcher.watch(&dir, notify::RecursiveMode::Recursive)?;
        }
        let me = self.clone();
        std::thread::Builder::new()
            .name("flow-watcher".into())
            .spawn(move || {
                // Ends when the watcher, and with it the sender, is dropped.
                while rx.recv().is_ok() {
                    loop {
                        match rx.recv_timeout(debounce) {
                            Ok(()) => continue,
                            Err(mpsc::RecvTimeoutError::Timeout) => break,
                            Err(mpsc::RecvTimeoutError::Disconnected) => return,
                        }
                    }
                    me.reload("file change");
                }
            })
            .map_err(notify::Error::io)?;
        Ok(FileWatcher { _watcher: watcher })
    }

    /// Reloads on every SIGHUP until `shutdown`.
    pub async fn on_sighup(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP; reload with POST /admin/reload");
            return;
        };
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                got = hup.recv() => {
                    if got.is_none() {
                        return;
                    }
                    let me = self.clone();
                    let _ = tokio::task::spawn_blocking(move || me.reload("SIGHUP")).await;
                }
            }
        }
    }
}
