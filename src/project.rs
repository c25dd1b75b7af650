//! A project: a `config.yaml`, its `models.lock` and its models directory, and
//! the operations on them — `lock` and `sync` — that run the pipeline
//! config → resolve → lock → plan → fetch → store → verify.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;

use crate::config::{Config, ModelSpec};
use crate::error::{Error, Result};
use crate::fetch::{Expected, FetchJob, FetchSettings, Fetcher};
use crate::lock::{LockError, LockedFile, LockedModel, Lockfile};
use crate::model_id::Source;
use crate::plan::{self, Plan, MODEL_INFO};
use crate::registry::{self, ModelInfo, Registry, Verification, VerifyStatus};
use crate::reporter::{Event, Reporter};
use crate::resolve::{RemoteFile, ResolvedModel, Resolver};
use crate::store::{Store, StoreState};
use crate::verify;

/// How the lockfile may be used (uv's `LockMode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LockMode {
    /// Resolve and rewrite the lock as needed.
    #[default]
    Write,
    /// The lock must already match the config (`--locked`).
    Locked,
    /// No network resolution (`--offline`); the lock must match.
    Offline,
}

/// Which locked models to re-resolve.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Upgrade {
    #[default]
    None,
    All,
    Names(Vec<String>),
}

impl Upgrade {
    fn wants(&self, spec: &ModelSpec) -> bool {
        match self {
            Upgrade::None => false,
            Upgrade::All => true,
            Upgrade::Names(names) => names.iter().any(|n| spec_matches(spec, n)),
        }
    }
}

/// Whether a user-typed name designates this model (its name, id or directory).
pub fn spec_matches(spec: &ModelSpec, name: &str) -> bool {
    spec.name == name || spec.dir_name() == name || spec.id.to_string() == name || spec.id.locator() == name
}

#[derive(Clone, Debug, Default)]
pub struct SyncOptions {
    pub mode: LockMode,
    pub upgrade: Upgrade,
    pub dry_run: bool,
    pub verify: bool,
    /// Model names to download and verify again.
    pub force: Vec<String>,
    /// Re-hash every file instead of trusting recorded metadata.
    pub rehash: bool,
}

/// What `lock` did.
#[derive(Clone, Debug, Default)]
pub struct LockOutcome {
    pub lock: Lockfile,
    pub written: bool,
    pub resolved: Vec<String>,
    pub kept: Vec<String>,
    pub removed: Vec<String>,
    pub downloaded_files: usize,
    pub downloaded_bytes: u64,
}

/// One model's verification result in a sync.
#[derive(Clone, Debug)]
pub struct ModelCheck {
    pub name: String,
    pub verification: Verification,
    /// Served from the remembered result (no reload).
    pub cached: bool,
}

/// What `sync` did.
#[derive(Clone, Debug, Default)]
pub struct SyncOutcome {
    pub lock: Option<LockOutcome>,
    pub plan: Plan,
    pub fetched_files: usize,
    pub fetched_bytes: u64,
    pub checks: Vec<ModelCheck>,
    pub elapsed_ms: u64,
}

/// A loaded project.
pub struct Project {
    pub config: Config,
    pub store: Store,
    pub settings: FetchSettings,
    pub reporter: Arc<dyn Reporter>,
    /// `HF_ENDPOINT` (or the config's override).
    pub endpoint: String,
    pub token: Option<String>,
}

impl Project {
    pub fn new(config: Config, reporter: Arc<dyn Reporter>) -> Project {
        let download = &config.models.download;
        let url = &download.sources.url;
        let settings = FetchSettings {
            jobs: config.concurrency(),
            attempts: download.retries.unwrap_or(5).max(1),
            stall_timeout: std::time::Duration::from_secs(download.stall_timeout_seconds.unwrap_or(30).max(1)),
            connect_timeout: std::time::Duration::from_secs(url.timeout_seconds.max(1)),
            verify_ssl: url.verify_ssl,
            connections_per_file: download.connections_per_file.unwrap_or(16).max(1),
            ..FetchSettings::default()
        };
        let endpoint = crate::env::hf_endpoint(download.sources.huggingface.endpoint.as_deref());
        Project {
            store: Store::new(config.models_dir()).with_project_dir(config.project_dir()),
            config,
            settings,
            reporter,
            endpoint,
            token: crate::env::hf_token(),
        }
    }

    pub fn lock_path(&self) -> PathBuf {
        self.config.lock_path()
    }

    pub fn read_lock(&self) -> Result<Option<Lockfile>> {
        Ok(Lockfile::read(&self.lock_path())?)
    }

    fn fetcher(&self) -> Fetcher {
        let http = crate::fetch::http_client(&self.settings);
        Fetcher::new(http, self.settings.clone(), self.reporter.clone(), self.store.tmp_dir())
    }

    fn check_names(&self, names: &[String]) -> Result<()> {
        for name in names {
            if !self.config.specs.iter().any(|s| spec_matches(s, name)) {
                let known: Vec<_> = self.config.specs.iter().map(|s| format!("`{}`", s.name)).collect();
                return Err(Error::usage(
                    format!("no model named `{name}` is in `{}`", self.config.path.display()),
                    Some(format!(
                        "models in the config: {}",
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        }
                    )),
                ));
            }
        }
        Ok(())
    }

    /// `mdl lock`: resolves what the lock lacks (or what `upgrade` names),
    /// downloads files whose blake3 is not known yet, and writes `models.lock`.
    pub async fn lock(&self, upgrade: &Upgrade, mode: LockMode) -> Result<LockOutcome> {
        if let Upgrade::Names(names) = upgrade {
            self.check_names(names)?;
        }
        let _guard = self.store.lock()?;
        let mut state = self.store.load_state();
        let outcome = self.lock_with_state(upgrade, mode, &mut state).await;
        self.store.save_state(&state)?;
        outcome
    }

    async fn lock_with_state(&self, upgrade: &Upgrade, mode: LockMode, state: &mut StoreState) -> Result<LockOutcome> {
        let path = self.lock_path();
        let existing = Lockfile::read(&path)?.unwrap_or_default();
        let mut outcome = LockOutcome::default();
        let mut to_resolve: Vec<&ModelSpec> = Vec::new();
        let mut models = BTreeMap::new();
        for spec in &self.config.specs {
            match existing.models.get(&spec.name) {
                Some(entry) if entry.satisfies(spec) && !upgrade.wants(spec) => {
                    outcome.kept.push(spec.name.clone());
                    models.insert(spec.name.clone(), entry.clone());
                }
                _ => to_resolve.push(spec),
            }
        }
        outcome.removed = existing
            .models
            .keys()
            .filter(|n| !self.config.specs.iter().any(|s| &s.name == *n))
            .cloned()
            .collect();
        let needs_change = !to_resolve.is_empty() || !outcome.removed.is_empty();
        if needs_change && mode != LockMode::Write {
            let mut reasons = existing.differences(&self.config.specs);
            if reasons.is_empty() {
                reasons = to_resolve
                    .iter()
                    .map(|s| format!("`{}` would be re-resolved", s.name))
                    .collect();
            }
            return Err(match mode {
                LockMode::Locked => LockError::NeedsUpdate { path, reasons },
                _ => LockError::OfflineNeedsResolve { path, reasons },
            }
            .into());
        }

        // Resolve models concurrently (each is one API call or HEAD).
        let fetcher = self.fetcher();
        let resolver = Resolver {
            http: fetcher.http(),
            endpoint: self.endpoint.clone(),
            token: self.token.clone(),
            reporter: self.reporter.as_ref(),
            attempts: self.settings.attempts,
            sources: &self.config.models.download.sources,
            project_dir: self.config.project_dir(),
        };
        // The futures are built first (not in a `.map` closure over the stream):
        // that keeps the whole sync future `Send` for `tokio::spawn` (`mdl watch`).
        let lookups: Vec<_> = to_resolve
            .iter()
            .copied()
            .enumerate()
            .map(|(i, spec)| {
                let resolver = &resolver;
                async move { (i, resolver.resolve(spec).await) }
            })
            .collect();
        let resolved: Vec<(usize, std::result::Result<ResolvedModel, crate::resolve::ResolveError>)> =
            futures_util::stream::iter(lookups)
                .buffer_unordered(self.settings.jobs)
                .collect()
                .await;
        let mut resolved_models: Vec<(&ModelSpec, ResolvedModel)> = Vec::new();
        let mut errors = Vec::new();
        let mut resolved = resolved;
        resolved.sort_by_key(|(i, _)| *i);
        for (i, result) in resolved {
            match result {
                Ok(r) => resolved_models.push((to_resolve[i], r)),
                Err(e) => errors.push(Error::from(e)),
            }
        }
        if !errors.is_empty() {
            return Err(many(
                "could not resolve every model; the lockfile was not changed",
                errors,
            ));
        }

        // Each file's blake3: from the old lock when upstream still serves the
        // same content (same ETag and size), from the disk when the file there
        // matches upstream's hash, else by downloading it into place.
        let mut jobs: Vec<FetchJob> = Vec::new();
        let mut job_slots: Vec<(usize, usize)> = Vec::new();
        let mut entries: Vec<LockedModel> = Vec::new();
        for (spec, model) in &resolved_models {
            let previous = existing.models.get(&spec.name);
            let dir = crate::config::dir_name(model.source, &spec.name);
            let mut files = Vec::new();
            for remote in &model.files {
                let dest = self.store.file_path(&dir, &remote.path)?;
                let known = previous.and_then(|p| p.files.iter().find(|f| same_upstream(f, remote)));
                let blake3 = match known {
                    Some(f) => Some(f.blake3.clone()),
                    // Local files are hashed where they are; nothing is copied.
                    None if model.source == Source::Local => {
                        let location = self.store.project_dir().join(crate::resolve::expand_home(&remote.url));
                        let blake3 =
                            crate::store::hash_file(&location).map_err(|source| crate::store::StoreError::Io {
                                path: location.clone(),
                                source,
                            })?;
                        if let Ok(record) = crate::store::FileRecord::stat(&location, blake3.clone()) {
                            state.files.insert(Store::key(&dir, &remote.path), record);
                        }
                        Some(blake3)
                    }
                    None => on_disk_matches(&dest, remote, state, &Store::key(&dir, &remote.path)),
                };
                let size = remote.size.unwrap_or(0);
                if blake3.is_none() {
                    job_slots.push((entries.len(), files.len()));
                    jobs.push(FetchJob {
                        label: format!("{}/{}", spec.name, remote.path),
                        url: remote.url.clone(),
                        dest,
                        expect: Expected {
                            size: remote.size,
                            sha256: remote.sha256.clone(),
                            git_oid: remote.git_oid.clone(),
                            sha256_prefix: remote.sha256_prefix.clone(),
                            ..Default::default()
                        },
                        token: if remote.needs_token { self.token.clone() } else { None },
                    });
                }
                files.push(LockedFile {
                    path: remote.path.clone(),
                    size,
                    blake3: blake3.unwrap_or_default(),
                    etag: remote.etag.clone(),
                    sha256: remote.sha256.clone(),
                    url: remote.url.clone(),
                });
            }
            entries.push(LockedModel {
                name: spec.name.clone(),
                source: model.source,
                id: spec.id.locator().to_string(),
                revision: spec.id.revision().map(str::to_string),
                commit: model.commit.clone(),
                weights: (model.source == Source::Torchvision)
                    .then(|| model.revision.clone())
                    .flatten(),
                resolved_url: model.resolved_url.clone(),
                auto: spec.id.source().is_none(),
                include: spec.include.clone(),
                exclude: spec.exclude.clone(),
                files,
            });
        }
        let results = fetcher.fetch_all(jobs).await;
        for ((model_i, file_i), result) in job_slots.into_iter().zip(results) {
            match result {
                Ok(fetched) => {
                    let entry = &mut entries[model_i];
                    let dir = entry.dir_name();
                    let is_url = matches!(entry.source, Source::Url | Source::Torchvision);
                    if is_url {
                        entry.resolved_url = Some(fetched.final_url.clone());
                    }
                    let file = &mut entry.files[file_i];
                    file.blake3 = fetched.blake3.clone();
                    file.size = fetched.size;
                    if file.etag.is_none() {
                        file.etag = fetched.etag.clone();
                    }
                    // A URL's final location is only certain once downloaded (HEAD may be refused).
                    if is_url {
                        file.url = fetched.final_url.clone();
                    }
                    state.files.insert(Store::key(&dir, &file.path), fetched.record);
                    outcome.downloaded_files += 1;
                    outcome.downloaded_bytes += fetched.size;
                }
                Err(e) => errors.push(Error::from(e)),
            }
        }
        if !errors.is_empty() {
            return Err(many(
                "could not download every file to lock; the lockfile was not changed",
                errors,
            ));
        }
        for entry in entries {
            outcome.resolved.push(entry.name.clone());
            models.insert(entry.name.clone(), entry);
        }
        outcome.lock = Lockfile { models };
        outcome.written = outcome.lock.write(&path)?;
        outcome.lock.prime_cache(&self.store.meta_dir());
        Ok(outcome)
    }

    /// `mdl sync`: makes the models dir match the lock (locking first when the
    /// lock is missing or stale), then verifies every model.
    pub async fn sync(&self, options: &SyncOptions) -> Result<SyncOutcome> {
        let started = Instant::now();
        self.check_names(&options.force)?;
        if let Upgrade::Names(names) = &options.upgrade {
            self.check_names(names)?;
        }
        let _guard = self.store.lock()?;
        let mut state = self.store.load_state();
        let mut outcome = SyncOutcome::default();

        let path = self.lock_path();
        let current = Lockfile::read_cached(&path, &self.store.meta_dir())?;
        let stale = match &current {
            None => true,
            Some(lock) => !lock.differences(&self.config.specs).is_empty(),
        };
        let lock = if stale || options.upgrade != Upgrade::None {
            if options.dry_run && options.mode == LockMode::Write {
                return Err(Error::usage(
                    "`--dry-run` cannot show a plan: the lockfile is missing or does not match the config",
                    Some("run `mdl lock` first".to_string()),
                ));
            }
            let result = self.lock_with_state(&options.upgrade, options.mode, &mut state).await;
            self.store.save_state(&state)?;
            let locked = result?;
            let lock = locked.lock.clone();
            outcome.lock = Some(locked);
            lock
        } else {
            current.unwrap_or_default()
        };

        let force: BTreeSet<String> = self
            .config
            .specs
            .iter()
            .filter(|s| options.force.iter().any(|n| spec_matches(s, n)))
            .map(|s| s.name.clone())
            .collect();
        let survey = plan::survey(&self.store, &lock, &mut state, options.rehash)?;
        let plan = Plan::new(&lock, &survey, &force);
        if options.dry_run {
            outcome.plan = plan;
            return Ok(outcome);
        }

        if !plan.fetch.is_empty() {
            if options.mode == LockMode::Offline {
                let errors = plan
                    .fetch
                    .iter()
                    .map(|(f, _)| {
                        Error::from(crate::fetch::FetchError::Offline {
                            label: format!("{}/{}", f.model, f.file.path),
                        })
                    })
                    .collect();
                return Err(many(
                    &format!("{} file(s) must be downloaded, but mdl is offline", plan.fetch.len()),
                    errors,
                ));
            }
            // A local model is used in place: if it changed, there is nothing to fetch.
            let changed_local: Vec<Error> = plan
                .fetch
                .iter()
                .filter(|(f, _)| lock.models[&f.model].source == Source::Local)
                .map(|(f, _)| {
                    Error::from(crate::fetch::FetchError::LocalChanged {
                        model: f.model.clone(),
                        path: f.file.url.clone(),
                    })
                })
                .collect();
            if !changed_local.is_empty() {
                return Err(many("local models changed since they were locked", changed_local));
            }
            let jobs: Vec<FetchJob> = plan
                .fetch
                .iter()
                .map(|(f, _)| {
                    let model = &lock.models[&f.model];
                    Ok(FetchJob {
                        label: format!("{}/{}", f.model, f.file.path),
                        url: self.download_url(model, &f.file),
                        dest: self.store.file_path(&f.dir, &f.file.path)?,
                        expect: Expected {
                            size: Some(f.file.size),
                            // blake3 from the lock covers it; no sha256 pass needed.
                            blake3: Some(f.file.blake3.clone()),
                            ..Default::default()
                        },
                        token: (model.source == crate::model_id::Source::Huggingface)
                            .then(|| self.token.clone())
                            .flatten(),
                    })
                })
                .collect::<Result<_>>()?;
            let results = self.fetcher().fetch_all(jobs).await;
            let mut errors = Vec::new();
            for ((f, _), result) in plan.fetch.iter().zip(results) {
                match result {
                    Ok(fetched) => {
                        state.files.insert(Store::key(&f.dir, &f.file.path), fetched.record);
                        outcome.fetched_files += 1;
                        outcome.fetched_bytes += fetched.size;
                    }
                    Err(e) => errors.push(Error::from(e)),
                }
            }
            self.store.save_state(&state)?;
            if !errors.is_empty() {
                self.write_registry(&lock, &BTreeMap::new())?;
                return Err(many(
                    "some files could not be synced; files already in place were kept",
                    errors,
                ));
            }
        }
        self.store.save_state(&state)?;

        let checks = if options.verify {
            self.verify_models(&lock, &mut state, &force).await?
        } else {
            Vec::new()
        };
        self.store.save_state(&state)?;
        let verifications: BTreeMap<String, (Verification, bool)> = checks
            .iter()
            .map(|c| (c.name.clone(), (c.verification.clone(), c.cached)))
            .collect();
        // Nothing fetched, nothing reloaded, lock unchanged: the registry is
        // already true, unless a model_info.json went missing.
        let unchanged = outcome.lock.is_none()
            && plan.fetch.is_empty()
            && checks.iter().all(|c| c.cached)
            && self.registry_path().is_file()
            && lock
                .models
                .values()
                .all(|m| self.store.model_dir(&m.dir_name()).join(MODEL_INFO).is_file());
        if !unchanged {
            self.write_registry_known(&lock, &verifications, true)?;
        }
        outcome.checks = checks;
        outcome.plan = plan;
        outcome.elapsed_ms = started.elapsed().as_millis() as u64;
        let failed: Vec<Error> = outcome
            .checks
            .iter()
            .filter(|c| c.verification.status == VerifyStatus::Failed)
            .map(|c| {
                Error::from(verify::VerifyError::Model {
                    model: c.name.clone(),
                    reason: c.verification.error.clone().unwrap_or_default(),
                })
            })
            .collect();
        if !failed.is_empty() {
            return Err(many(
                &format!(
                    "{} model(s) failed verification; they will be verified again on the next sync",
                    failed.len()
                ),
                failed,
            ));
        }
        Ok(outcome)
    }

    /// Where to download a locked file from now. Hub files are fetched from the
    /// current endpoint at the locked commit (so a lock made against the Hub
    /// syncs from a mirror named by `HF_ENDPOINT`); URLs from their final URL.
    fn download_url(&self, model: &LockedModel, file: &LockedFile) -> String {
        match (&model.source, &model.commit) {
            (Source::Huggingface, Some(commit)) => {
                crate::resolve::hub_file_url(&self.endpoint, &model.id, commit, &file.path)
            }
            _ => file.url.clone(),
        }
    }

    /// `mdl verify`: loads every model (or the named ones) again, ignoring
    /// remembered results.
    pub async fn verify(&self, names: &[String]) -> Result<Vec<ModelCheck>> {
        self.check_names(names)?;
        let _guard = self.store.lock()?;
        let lock = self.read_lock()?.ok_or_else(|| {
            Error::usage(
                "there is no `models.lock` yet",
                Some("run `mdl sync` first".to_string()),
            )
        })?;
        let mut state = self.store.load_state();
        let wanted: BTreeSet<String> = self
            .config
            .specs
            .iter()
            .filter(|s| names.is_empty() || names.iter().any(|n| spec_matches(s, n)))
            .map(|s| s.name.clone())
            .collect();
        let mut subset = lock.clone();
        subset.models.retain(|n, _| wanted.contains(n));
        let checks = self.verify_models(&subset, &mut state, &wanted).await?;
        self.store.save_state(&state)?;
        let mut all: BTreeMap<String, (Verification, bool)> = Registry::read(&self.registry_path())
            .models
            .into_iter()
            .filter_map(|(n, m)| m.verification.map(|v| (n, (v, true))))
            .collect();
        for c in &checks {
            all.insert(c.name.clone(), (c.verification.clone(), false));
        }
        self.write_registry(&lock, &all)?;
        Ok(checks)
    }

    /// Verifies each locked model on its configured device. Files whose
    /// (blake3, device, forward shape) verified before are not reloaded unless
    /// their model is in `reload`; all others go to the verifier in one batch.
    async fn verify_models(
        &self,
        lock: &Lockfile,
        state: &mut StoreState,
        reload: &BTreeSet<String>,
    ) -> Result<Vec<ModelCheck>> {
        let verifier = verify::Verifier::discover();
        struct Pending {
            model: usize,
            path: String,
            key: String,
        }
        let mut checks = Vec::new();
        let mut requests = Vec::new();
        let mut pending = Vec::new();
        for model in lock.models.values() {
            let Some(spec) = self.config.specs.iter().find(|s| s.name == model.name) else {
                continue;
            };
            let device = spec.device.to_string();
            let mut check = ModelCheck {
                name: model.name.clone(),
                verification: Verification {
                    status: VerifyStatus::Verified,
                    device: device.clone(),
                    files: BTreeMap::new(),
                    error: None,
                },
                cached: true,
            };
            if !spec.verify.load {
                check.verification.status = VerifyStatus::Skipped;
                check.cached = false;
                checks.push(check);
                continue;
            }
            self.reporter.report(Event::Verifying { model: &model.name });
            for file in &model.files {
                let key = format!(
                    "{}@{device}#{}",
                    file.blake3,
                    forward_key(spec.verify.forward.as_deref())
                );
                if !reload.contains(&model.name) {
                    if let Some(record) = state.verified.get(&key) {
                        check.verification.files.insert(file.path.clone(), record.clone());
                        continue;
                    }
                }
                // Only weight files go to the verifier; the rest (configs, tokenizers) need no load.
                let path = self.store.locate(model, file)?;
                if state.not_weights.contains(&file.blake3) {
                    continue;
                }
                if verify::detect(&path)
                    .map(|d| d == verify::Detected::Other)
                    .unwrap_or(false)
                {
                    state.not_weights.insert(file.blake3.clone());
                    continue;
                }
                pending.push(Pending {
                    model: checks.len(),
                    path: file.path.clone(),
                    key,
                });
                requests.push(verify::Request {
                    path,
                    device: device.clone(),
                    forward: spec.verify.forward.clone(),
                });
            }
            checks.push(check);
        }
        if !requests.is_empty() {
            let results = tokio::task::spawn_blocking({
                let verifier = verifier.clone();
                move || verifier.verify(&requests)
            })
            .await
            .map_err(|e| Error::usage(format!("verification thread failed: {e}"), None))?;
            for (p, result) in pending.into_iter().zip(results) {
                let check = &mut checks[p.model];
                check.cached = false;
                match result {
                    Ok(Some(report)) => {
                        state.verified.insert(p.key, report.clone());
                        check.verification.files.insert(p.path, report);
                    }
                    Ok(None) => {}
                    Err(e @ verify::VerifyError::DeviceUnavailable { .. }) => return Err(e.into()),
                    Err(e) => {
                        // Never remembered: the next sync tries again.
                        state.verified.remove(&p.key);
                        check.verification.status = VerifyStatus::Failed;
                        let reason = match &e {
                            verify::VerifyError::Load { reason, .. } => reason.clone(),
                            other => other.to_string(),
                        };
                        let previous = check.verification.error.take();
                        let line = format!("`{}` cannot be loaded: {reason}", p.path);
                        check.verification.error = Some(match previous {
                            Some(prev) => format!("{prev}; {line}"),
                            None => line,
                        });
                    }
                }
            }
        }
        for check in &mut checks {
            let loaded = check.verification.files.values().all(|f| f.loaded);
            if check.verification.status == VerifyStatus::Verified && !loaded {
                check.verification.status = VerifyStatus::FormatChecked;
            }
        }
        Ok(checks)
    }

    pub fn registry_path(&self) -> PathBuf {
        self.store.root().join(self.config.registry_file_name())
    }

    /// Rewrites each model's `model_info.json` and the registry from the lock
    /// and what is on disk. Models whose files are not all in place are left out.
    /// A verification served entirely from remembered results (`true` in the
    /// map) keeps what `model_info.json` already says, so a no-op sync writes nothing.
    pub(crate) fn write_registry(
        &self,
        lock: &Lockfile,
        verifications: &BTreeMap<String, (Verification, bool)>,
    ) -> Result<()> {
        self.write_registry_known(lock, verifications, false)
    }

    /// `all_present`: the caller just checked every locked file is in place
    /// (a sync that fetched everything it planned), so no `stat` is repeated.
    fn write_registry_known(
        &self,
        lock: &Lockfile,
        verifications: &BTreeMap<String, (Verification, bool)>,
        all_present: bool,
    ) -> Result<()> {
        let now = jiff::Timestamp::now()
            .round(jiff::Unit::Second)
            .unwrap_or(jiff::Timestamp::now())
            .to_string();
        let mut registry = Registry {
            version: registry::REGISTRY_VERSION,
            models: BTreeMap::new(),
        };
        for model in lock.models.values() {
            let dir = self.store.model_dir(&model.dir_name());
            let complete = all_present
                || model
                    .files
                    .iter()
                    .all(|f| self.store.locate(model, f).map(|p| p.is_file()).unwrap_or(false));
            if !complete {
                continue;
            }
            let info_path = dir.join(MODEL_INFO);
            let previous = ModelInfo::read(&info_path);
            let mut info = ModelInfo::from_lock(model, previous.as_ref(), &now);
            match (verifications.get(&model.name), &info.verification) {
                (Some((v, true)), Some(old)) if old.status == v.status && old.device == v.device => {}
                (Some((v, _)), _) => info.verification = Some(v.clone()),
                (None, _) => {}
            }
            registry::write_json_if_changed(&info_path, &info)?;
            registry.models.insert(model.name.clone(), info);
        }
        registry::write_json_if_changed(&self.registry_path(), &registry)?;
        Ok(())
    }
}

fn forward_key(forward: Option<&[i64]>) -> String {
    forward
        .map(|s| s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x"))
        .unwrap_or_default()
}

fn many(summary: &str, mut errors: Vec<Error>) -> Error {
    if errors.len() == 1 {
        return errors.pop().unwrap();
    }
    Error::Many {
        summary: summary.to_string(),
        errors,
    }
}

/// Whether a previously locked file is the same upstream content as `remote`.
fn same_upstream(old: &LockedFile, remote: &RemoteFile) -> bool {
    old.path == remote.path
        && remote.etag.is_some()
        && old.etag == remote.etag
        && remote.size.is_none_or(|s| s == old.size)
        && old.sha256 == remote.sha256
        && !old.blake3.is_empty()
}

/// If the file at `dest` already holds what upstream serves (checked against the
/// Hub's sha256 or git blob id), its blake3 — without downloading it again.
fn on_disk_matches(dest: &std::path::Path, remote: &RemoteFile, state: &mut StoreState, key: &str) -> Option<String> {
    use sha1::Digest;
    let meta = std::fs::metadata(dest).ok()?;
    if Some(meta.len()) != remote.size || (remote.sha256.is_none() && remote.git_oid.is_none()) {
        return None;
    }
    let mut blake = blake3::Hasher::new();
    let mut sha = sha2::Sha256::new();
    let mut git = sha1::Sha1::new();
    git.update(format!("blob {}\0", meta.len()).as_bytes());
    let mut file = std::fs::File::open(dest).ok()?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut file, &mut buf).ok()?;
        if n == 0 {
            break;
        }
        blake.update(&buf[..n]);
        if remote.sha256.is_some() {
            sha.update(&buf[..n]);
        } else {
            git.update(&buf[..n]);
        }
    }
    let matches = match (&remote.sha256, &remote.git_oid) {
        (Some(want), _) => hex::encode(sha.finalize()) == *want,
        (None, Some(want)) => hex::encode(git.finalize()) == *want,
        _ => false,
    };
    if !matches {
        return None;
    }
    let blake3 = blake.finalize().to_hex().to_string();
    if let Ok(record) = crate::store::FileRecord::stat(dest, blake3.clone()) {
        state.files.insert(key.to_string(), record);
    }
    Some(blake3)
}
