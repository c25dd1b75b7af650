//! `mdl lock`: resolve what the lock lacks (or what `--upgrade` names), learn
//! each new file's blake3 — from the old lock, from the disk, or by
//! downloading it into place — and write `models.lock`.

use crate::error::{Error, Result};
use crate::lock::{LockDelta, LockMode, LockedModel, Lockfile, Upgrade};
use crate::plan::Download;
use crate::store::{Store, StoreState};

use super::Project;

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
    /// Files placed from the shared store or the Hugging Face cache.
    pub linked_files: usize,
    pub linked_bytes: u64,
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
        delta.allowed(mode, &existing, &self.config.specs, &path, self.url_context())?;

        // resolve
        let fetcher = self.fetcher()?;
        let resolved = self
            .resolver(&fetcher)
            .resolve_all(&delta.to_resolve, self.settings.jobs)
            .await;
        crate::failpoint::kill_point("lock::resolved");
        let (resolved, errors): (Vec<_>, Vec<_>) = resolved.into_iter().partition(|r| r.is_ok());
        if !errors.is_empty() {
            let errors = errors.into_iter().filter_map(|r| r.err()).map(Error::from).collect();
            return Err(Error::many(
                "could not resolve every model; the lockfile was not changed",
                errors,
            ));
        }

        // lock entries; files whose blake3 is unknown are hashed in place or planned
        let mut entries = Vec::new();
        let mut downloads: Vec<(usize, usize, Download)> = Vec::new();
        let mut linked = (0, 0);
        for (spec, model) in delta.to_resolve.iter().zip(resolved.into_iter().flatten()) {
            let mut entry = LockedModel::from_resolved(spec, &model, existing.models.get(&spec.name));
            for (i, remote) in model.files.iter().enumerate() {
                if !entry.files[i].blake3.is_empty() {
                    continue;
                }
                if let Some(blake3) = self.store.known_content(&entry, remote, state)? {
                    entry.files[i].blake3 = blake3;
                    continue;
                }
                let download = Download::to_lock(&entry, remote, self.origin())?;
                match self.caches.place_for_lock(&download)? {
                    Some(placed) => {
                        state
                            .files
                            .insert(Store::key(&entry.dir_name(), &remote.path), placed.record);
                        entry.files[i].blake3 = placed.blake3;
                        linked.0 += 1;
                        linked.1 += remote.size.unwrap_or(0);
                    }
                    None => downloads.push((entries.len(), i, download)),
                }
            }
            entries.push(entry);
        }

        // fetch, if it fits and stays inside the models directory
        self.check_space(downloads.iter().map(|(_, _, d)| d))?;
        for (_, _, download) in &downloads {
            self.store.check_contained(&download.dest)?;
        }
        let (slots, jobs): (Vec<_>, Vec<_>) = downloads
            .into_iter()
            .map(|(m, f, d)| ((m, f, d.dest.clone()), d))
            .unzip();
        let mut outcome = LockOutcome {
            kept: delta.kept.keys().cloned().collect(),
            removed: delta.removed.clone(),
            linked_files: linked.0,
            linked_bytes: linked.1,
            ..LockOutcome::default()
        };
        let mut errors = Vec::new();
        for ((model_i, file_i, dest), result) in slots.into_iter().zip(fetcher.fetch_all(jobs).await) {
            match result {
                Ok(fetched) => {
                    self.caches.keep(&dest, &fetched.blake3)?;
                    let entry = &mut entries[model_i];
                    state
                        .files
                        .insert(Store::key(&entry.dir_name(), &entry.files[file_i].path), fetched.record);
                    entry.record_download(file_i, fetched.blake3, fetched.size, fetched.etag);
                    outcome.downloaded_files += 1;
                    outcome.downloaded_bytes += fetched.size;
                }
                Err(e) => errors.push(Error::from(e)),
            }
        }
        if !errors.is_empty() {
            return Err(Error::many(
                "could not download every file to lock; the lockfile was not changed",
                errors,
            ));
        }

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
