//! `mdl lock`: resolve what the lock lacks (or what `--upgrade` names), learn
//! each new file's blake3 — from the old lock, from the disk, or by
//! downloading it into place — and write `models.lock`.

use crate::error::{Error, Result};
use crate::lock::{LockDelta, LockMode, LockedModel, Lockfile, Upgrade};
use crate::plan::Download;
use crate::store::{Store, StoreState};

use super::acquire::{Got, Moved, Want};
use super::Project;

/// What `lock` did.
#[derive(Clone, Debug, Default)]
pub struct LockOutcome {
    pub lock: Lockfile,
    pub written: bool,
    pub resolved: Vec<String>,
    pub kept: Vec<String>,
    pub removed: Vec<String>,
    /// Files downloaded to lock them, and files placed from the shared
    /// store or the Hugging Face cache.
    pub moved: Moved,
    /// Models with a file downloaded from upstream to lock it (a sync writes
    /// them back to mirrors marked `push: true`).
    pub fetched_models: std::collections::BTreeSet<String>,
}

impl Project {
    /// `mdl lock`: resolves what the lock lacks (or what `upgrade` names),
    /// downloads files whose blake3 is not known yet, and writes `models.lock`.
    pub async fn lock(&self, upgrade: &Upgrade, mode: LockMode) -> Result<LockOutcome> {
        if let Upgrade::Names(names) = upgrade {
            self.check_names(names)?;
        }
        let _guard = self.store.lock()?;
        let mut state = self.store.load_state();
        let outcome = self.lock_with_state(upgrade, mode, &mut state).await;
        // The first failure is the one reported: saving what is known is then
        // best effort (on a full disk it would fail too, and mask the cause).
        match outcome {
            Ok(outcome) => {
                self.store.save_state(&state)?;
                Ok(outcome)
            }
            Err(e) => {
                let _ = self.store.save_state(&state);
                Err(e)
            }
        }
    }

    pub(super) async fn lock_with_state(
        &self,
        upgrade: &Upgrade,
        mode: LockMode,
        state: &mut StoreState,
    ) -> Result<LockOutcome> {
        let path = self.lock_path();
        let existing = Lockfile::read(&path)?.unwrap_or_default();
        let delta = LockDelta::new(&existing, &self.config.specs, upgrade, self.url_context());
        // Offline, what the Hugging Face cache holds is resolved from it, as
        // huggingface_hub's offline mode does; anything else needs the network.
        let from_cache = mode == LockMode::Offline && self.hf_cache_holds(&delta.to_resolve);
        if !from_cache {
            delta.allowed(mode, &existing, &self.config.specs, &path, self.url_context())?;
        }

        // resolve
        let resolved = self.resolve_delta(&delta, mode).await?;

        // lock entries; files whose blake3 is unknown are hashed in place or acquired
        let (mut entries, wants) = self.new_entries(&delta, resolved, &existing, state)?;

        // acquire: from a cache, else upstream
        let acquired = self.acquire(wants, None, &mut *state, mode).await?;
        if !acquired.errors.is_empty() {
            return Err(Error::many(
                "could not download every file to lock; the lockfile was not changed",
                acquired.errors,
            ));
        }
        let fetched_models = fill_entries(&mut entries, acquired.got);
        let mut outcome = LockOutcome {
            kept: delta.kept.keys().cloned().collect(),
            removed: delta.removed.clone(),
            moved: acquired.moved,
            fetched_models,
            ..LockOutcome::default()
        };

        // write
        let mut models = delta.kept;
        for entry in entries {
            outcome.resolved.push(entry.name.clone());
            models.insert(entry.name.clone(), entry);
        }
        outcome.lock = Lockfile { models };
        outcome.written = outcome.lock.write(&path)?;
        crate::failpoint::kill_point("lock::written");
        outcome.lock.prime_cache(&self.store.meta_dir());
        Ok(outcome)
    }
}

impl Project {
    /// The lock entries of freshly resolved models, their blake3 filled in
    /// from the old lock or the disk where known; the rest as files to
    /// acquire, each with its (entry, file) slot.
    #[allow(clippy::type_complexity)]
    fn new_entries(
        &self,
        delta: &LockDelta<'_>,
        resolved: Vec<crate::sources::ResolvedModel>,
        existing: &Lockfile,
        state: &mut StoreState,
    ) -> Result<(Vec<LockedModel>, Vec<Want>)> {
        let mut entries = Vec::new();
        let mut wants = Vec::new();
        for (spec, model) in delta.to_resolve.iter().zip(resolved) {
            let mut entry = LockedModel::from_resolved(spec, &model, existing.models.get(&spec.name));
            for (i, remote) in model.files.iter().enumerate() {
                if !entry.files[i].blake3.is_empty() {
                    continue;
                }
                if let Some(blake3) = self.store.known_content(&entry, remote, state)? {
                    entry.files[i].blake3 = blake3;
                    continue;
                }
                wants.push(Want {
                    key: Store::key(&entry.dir_name(), &remote.path),
                    model: None,
                    entry: Some((entries.len(), i)),
                    download: Download::to_lock(&entry, remote, self.origin())?,
                    check: false,
                });
            }
            entries.push(entry);
        }
        Ok((entries, wants))
    }
}

impl Project {
    /// Resolves what the delta names; any failure fails the lock, all said.
    async fn resolve_delta(&self, delta: &LockDelta<'_>, mode: LockMode) -> Result<Vec<crate::sources::ResolvedModel>> {
        let fetcher = self.fetcher()?;
        let mut resolver = self.resolver(&fetcher);
        resolver.offline = mode.offline();
        let wants: Vec<_> = delta.to_resolve.iter().map(|s| s.want()).collect();
        let resolved = resolver.resolve_all(&wants, self.settings.jobs).await;
        crate::failpoint::kill_point("lock::resolved");
        let (resolved, errors): (Vec<_>, Vec<_>) = resolved.into_iter().partition(|r| r.is_ok());
        if !errors.is_empty() {
            let errors = errors.into_iter().filter_map(|r| r.err()).map(Error::from).collect();
            return Err(Error::many(
                "could not resolve every model; the lockfile was not changed",
                errors,
            ));
        }
        Ok(resolved.into_iter().filter_map(Result::ok).collect())
    }

    /// Whether the Hugging Face cache holds every one of `specs` (all Hub
    /// models) at its revision: then an offline lock resolves them from it.
    fn hf_cache_holds(&self, specs: &[&crate::config::ModelSpec]) -> bool {
        specs
            .iter()
            .all(|spec| (spec.id.source()).is_some_and(|source| source.kind().held_offline(&self.caches.hf, &spec.id)))
    }
}

/// What acquiring each slot's file (`(model, file)` indices into `entries`)
/// established; returns the models of which a file was downloaded.
fn fill_entries(entries: &mut [LockedModel], got: Vec<(Want, Got)>) -> std::collections::BTreeSet<String> {
    let mut fetched_models = std::collections::BTreeSet::new();
    for (want, got) in got {
        let (model_i, file_i) = want.entry.expect("a file being locked names its entry");
        if matches!(got, Got::Fetched { .. }) {
            fetched_models.insert(entries[model_i].name.clone());
        }
        fill(&mut entries[model_i], file_i, got);
    }
    fetched_models
}

/// What acquiring file `i` of `entry` established.
fn fill(entry: &mut LockedModel, i: usize, got: Got) {
    match got {
        Got::Placed(placed) => entry.files[i].blake3 = placed.blake3,
        Got::Fetched { fetched, .. } => entry.record_download(i, fetched.blake3, fetched.size, fetched.etag),
    }
}
