//! `mdl watch`: keeps the models directory in sync while `config.yaml` (or
//! `models.lock`, edited by hand or by `git checkout`) changes.
//!
//! * The config's *directory* is watched, not the file: editors that save by
//!   writing a temporary file and renaming it over the original (vim, many IDEs)
//!   replace the inode, which a watch on the file itself would lose.
//! * Bursts of events are debounced into one run, and a file whose bytes did
//!   not change (a touch, mdl's own rewrite of an unchanged lock) runs nothing.
//!   A config that reads differently twice in a row is still being written
//!   and is not acted on: an empty file read between an editor's truncate and
//!   its write would otherwise be a valid config with no models.
//! * An invalid config is reported once, with its line and column, and the last
//!   good state stays in place until the file is fixed.
//! * A change during a run cancels that run: its downloads stop where they are
//!   and stay resumable (`models/.mdl/tmp`), and the new run continues them.
//! * Models removed from the config stay on disk unless `prune` is set.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{Project, SyncOptions};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::lock::Lockfile;
use crate::reporter::Reporter;

/// The bytes of the config and the lock (each `None` when absent).
type Snapshot = (Option<Vec<u8>>, Option<Vec<u8>>);

#[derive(Clone, Debug)]
pub struct WatchOptions {
    pub prune: bool,
    pub verify: bool,
    /// Quiet time after the last event before a run starts.
    pub debounce: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            prune: false,
            verify: true,
            debounce: Duration::from_millis(250),
        }
    }
}

/// What one run did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunSummary {
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
    pub pruned: Vec<String>,
    pub verified: Vec<String>,
    pub fetched_files: usize,
    pub fetched_bytes: u64,
    pub ms: u64,
    /// The lock as this run left it, so its own write is not taken for a change.
    #[serde(skip)]
    pub lock_after: Option<Vec<u8>>,
}

/// What the watcher reports, one per run or problem.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WatchEvent {
    Watching {
        config: PathBuf,
    },
    Synced(RunSummary),
    /// The config does not parse; the last good state is kept.
    InvalidConfig {
        message: String,
    },
    /// The run failed (network, verification, …); the next change retries.
    Failed {
        message: String,
    },
    /// A newer change arrived; this run was stopped, its downloads resumable.
    Cancelled,
    Stopped,
}

fn read_bytes(path: &Path) -> Option<Vec<u8>> {
    std::fs::read(path).ok()
}

fn error_text(e: &Error) -> String {
    let mut text = e.to_string();
    if let Error::Many { errors, .. } = e {
        for sub in errors {
            text.push_str(&format!("\n  - {sub}"));
        }
    }
    if let Some(hint) = e.hint() {
        text.push_str(&format!("\nhint: {hint}"));
    }
    text
}

async fn run_once(config: Config, reporter: Arc<dyn Reporter>, options: WatchOptions) -> Result<RunSummary> {
    crate::failpoint::kill_point("watch::run");
    let started = Instant::now();
    let project = Project::new(config, reporter);
    let before = project.read_lock()?.unwrap_or_default();
    let sync = SyncOptions {
        verify: options.verify,
        ..SyncOptions::default()
    };
    let outcome = project.sync(&sync).await?;
    let after = project.read_lock()?.unwrap_or_default();
    let mut summary = diff(&before, &after);
    if options.prune {
        summary.pruned = project.clean(false)?.into_iter().map(|(p, _)| p).collect();
    }
    summary.verified = outcome
        .checks
        .iter()
        .filter(|c| !c.cached)
        .map(|c| c.name.clone())
        .collect();
    let fetched = outcome.all_moved().fetched;
    (summary.fetched_files, summary.fetched_bytes) = (fetched.files, fetched.bytes);
    summary.ms = started.elapsed().as_millis() as u64;
    summary.lock_after = read_bytes(&project.lock_path());
    Ok(summary)
}

fn diff(before: &Lockfile, after: &Lockfile) -> RunSummary {
    let mut summary = RunSummary::default();
    for (name, model) in &after.models {
        match before.models.get(name) {
            None => summary.added.push(name.clone()),
            Some(old) if old != model => summary.updated.push(name.clone()),
            Some(_) => {}
        }
    }
    summary.removed = before
        .models
        .keys()
        .filter(|n| !after.models.contains_key(*n))
        .cloned()
        .collect();
    summary
}

/// Watches until `shutdown` resolves, reporting each run to `on_event`.
pub async fn watch(
    config_path: &Path,
    options: WatchOptions,
    reporter: Arc<dyn Reporter>,
    mut on_event: impl FnMut(&WatchEvent),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let config_path = std::path::absolute(config_path).unwrap_or_else(|_| config_path.to_path_buf());
    let (_watcher, mut rx) = start_watching(&config_path)?;
    on_event(&WatchEvent::Watching {
        config: config_path.clone(),
    });
    let mut st = State::new(config_path, options);
    tokio::pin!(shutdown);
    loop {
        let wait_until = st.due.map(tokio::time::Instant::from_std);
        tokio::select! {
            // Polled in this order: a file event already delivered always
            // postpones a run that is due, so a run never starts between an
            // editor's truncate and its write.
            biased;
            _ = &mut shutdown => {
                st.cancel_run().await;
                on_event(&WatchEvent::Stopped);
                return Ok(());
            }
            event = rx.recv() => match event {
                Some(event) => st.file_event(event),
                None => return Ok(()),
            },
            result = async { st.running.as_mut().expect("checked").await }, if st.running.is_some() => {
                st.run_ended(result, &mut on_event);
            }
            _ = async { tokio::time::sleep_until(wait_until.expect("checked")).await }, if wait_until.is_some() => {
                if let Some(config) = st.changed_config(&mut on_event).await {
                    if st.cancel_run().await {
                        on_event(&WatchEvent::Cancelled);
                    }
                    st.running = Some(tokio::spawn(run_once(config, reporter.clone(), st.options.clone())));
                }
            }
        }
    }
}

/// A watcher on the config's directory (the lock sits beside the config),
/// its events sent to the returned channel.
#[allow(clippy::type_complexity)]
fn start_watching(
    config_path: &Path,
) -> Result<(
    notify::RecommendedWatcher,
    tokio::sync::mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
)> {
    use notify::Watcher;
    let dir = config_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<notify::Result<notify::Event>>();
    let watch_error = |source| Error::Watch {
        path: dir.clone(),
        source,
    };
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })
    .map_err(watch_error)?;
    watcher
        .watch(&dir, notify::RecursiveMode::NonRecursive)
        .map_err(watch_error)?;
    Ok((watcher, rx))
}

/// What the watch loop knows between events.
struct State {
    config_path: PathBuf,
    lock_path: PathBuf,
    options: WatchOptions,
    /// What the last completed (or started) run saw, to ignore no-change events.
    seen: Option<Snapshot>,
    last_invalid: Option<String>,
    /// When to look at the files next (a debounced change, or the first run).
    due: Option<Instant>,
    running: Option<tokio::task::JoinHandle<Result<RunSummary>>>,
    /// A lock-only change seen during a run: looked at again when the run ends.
    recheck: bool,
}

impl State {
    fn new(config_path: PathBuf, options: WatchOptions) -> State {
        let dir = config_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        State {
            lock_path: dir.join("models.lock"),
            config_path,
            options,
            seen: None,
            last_invalid: None,
            due: Some(Instant::now()),
            running: None,
            recheck: false,
        }
    }

    /// A change to the config or the lock makes a look due after the debounce.
    fn file_event(&mut self, event: notify::Result<notify::Event>) {
        let Ok(event) = event else { return };
        let relevant = |path: &PathBuf| {
            path.file_name() == self.config_path.file_name() || path.file_name() == self.lock_path.file_name()
        };
        if event.paths.iter().any(relevant) && !matches!(event.kind, notify::EventKind::Access(_)) {
            self.due = Some(Instant::now() + self.options.debounce);
        }
    }

    /// A run ended: remember the lock it wrote (its own write is not a
    /// change, a user's later edit still is) and report it.
    fn run_ended(
        &mut self,
        result: std::result::Result<Result<RunSummary>, tokio::task::JoinError>,
        on_event: &mut impl FnMut(&WatchEvent),
    ) {
        self.running = None;
        if let Some(s) = &mut self.seen {
            s.1 = match &result {
                Ok(Ok(summary)) => summary.lock_after.clone(),
                _ => read_bytes(&self.lock_path),
            };
        }
        if std::mem::take(&mut self.recheck) {
            self.due = Some(Instant::now());
        }
        match result {
            Ok(Ok(summary)) => on_event(&WatchEvent::Synced(summary)),
            Ok(Err(e)) => on_event(&WatchEvent::Failed {
                message: error_text(&e),
            }),
            Err(join) if join.is_cancelled() => {}
            Err(join) => on_event(&WatchEvent::Failed {
                message: format!("the sync task failed: {join}"),
            }),
        }
    }

    /// The look that was due: the config to run now, if the files changed
    /// since the last run saw them and the config is valid (an invalid one is
    /// said once).
    async fn changed_config(&mut self, on_event: &mut impl FnMut(&WatchEvent)) -> Option<Config> {
        self.due = None;
        let now = (read_bytes(&self.config_path), read_bytes(&self.lock_path));
        // A file still being written reads differently a moment later: wait
        // for the next quiet period instead of acting on half a file.
        tokio::time::sleep(Duration::from_millis(25)).await;
        if read_bytes(&self.config_path) != now.0 {
            self.due = Some(Instant::now() + self.options.debounce);
            return None;
        }
        if self.seen.as_ref() == Some(&now) {
            return None; // touched, or our own lock write: nothing changed
        }
        if self.running.is_some() && self.seen.as_ref().map(|s| &s.0) == Some(&now.0) {
            // Only the lock moved, most likely the running sync's own write.
            self.recheck = true;
            return None;
        }
        let text = String::from_utf8_lossy(now.0.as_deref().unwrap_or_default()).into_owned();
        let parsed = Config::parse(&self.config_path, &text, &[]);
        self.seen = Some(now);
        match parsed {
            Ok(config) => {
                self.last_invalid = None;
                Some(config)
            }
            Err(e) => {
                let message = error_text(&Error::from(e));
                if self.last_invalid.as_ref() != Some(&message) {
                    on_event(&WatchEvent::InvalidConfig {
                        message: message.clone(),
                    });
                    self.last_invalid = Some(message);
                }
                None
            }
        }
    }

    /// Stops the run under way, if any; whether there was one.
    async fn cancel_run(&mut self) -> bool {
        let Some(task) = self.running.take() else {
            return false;
        };
        task.abort();
        let _ = task.await;
        true
    }
}
