//! `mdl sync`: make the models directory match the lock — locking first when
//! the lock is missing or stale — then verify every model and write the
//! registry.

use std::collections::BTreeSet;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::lock::{LockMode, Lockfile, Upgrade};
use crate::plan::{Download, FetchReason, Plan, MODEL_INFO};
use crate::registry::{self, Verifications};
use crate::report::VerifyStatus;
use crate::store::{Store, StoreState};
use crate::verify::{self, ModelCheck};

use super::acquire::{Moved, Want};
use super::{LockOutcome, Project};

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

/// What `sync` did.
#[derive(Clone, Debug, Default)]
pub struct SyncOutcome {
    pub lock: Option<LockOutcome>,
    pub plan: Plan,
    /// What moved to put the plan's files in place (not counting the lock's
    /// own downloads: see [`SyncOutcome::all_moved`]).
    pub moved: Moved,
    /// How they were placed (`download.link_mode`).
    pub link_mode: crate::fs::LinkMode,
    /// Files on disk that had to be read again to know their content.
    pub rehashed_files: usize,
    /// Files recognised by size and mtime in a copied tree (new inodes), not read.
    pub recognised_copies: usize,
    pub checks: Vec<ModelCheck>,
    /// What was pushed to mirrors marked `push: true`.
    pub written_back: Vec<super::push::WriteBack>,
    pub elapsed_ms: u64,
}

impl SyncOutcome {
    /// What moved in the whole sync: its lock's downloads and the plan's.
    pub fn all_moved(&self) -> Moved {
        self.moved + self.lock.as_ref().map(|l| l.moved).unwrap_or_default()
    }
}

impl Project {
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
        let mut outcome = SyncOutcome {
            link_mode: self.caches.mode,
            ..SyncOutcome::default()
        };

        // lock
        let lock = self.lock_for_sync(options, &mut state, &mut outcome).await?;

        // plan
        let force = self.forced(options);
        let survey = self.store.survey(&lock, &mut state, options.rehash, &*self.reporter)?;
        outcome.plan = Plan::new(&lock, &survey, &force);
        outcome.rehashed_files = survey.rehashed;
        outcome.recognised_copies = survey.recognised_copies;
        if options.dry_run {
            return Ok(outcome);
        }
        let mut downloads = outcome.plan.downloads(&lock, options.mode, self.origin())?;

        // confirm: the lock's content addresses, against the source's own word
        // (models this run just resolved were stated a moment ago)
        let fresh = outcome.lock.as_ref().map(|l| l.resolved.clone()).unwrap_or_default();
        let planned: Vec<_> = outcome.plan.fetch.iter().map(|(p, _)| p).collect();
        self.confirm(&lock, &planned, &fresh, &mut downloads, options.mode)
            .await?;

        // acquire: from a cache, a mirror or upstream
        let from_upstream = (self.acquire_planned(&lock, downloads, options, &mut state, &mut outcome)).await?;
        self.store.save_state(&state)?;
        self.share(&lock)?;

        // verify: a sharded checkpoint is complete, then every model loads
        crate::failpoint::kill_point("sync::verifying");
        verify::check_shards(&self.config, &self.store, &lock)?;
        if options.verify {
            outcome.checks =
                verify::verify_models(&self.config, &self.store, &lock, &mut state, &force, &*self.reporter).await?;
        }
        self.store.save_state(&state)?;

        // registry
        crate::failpoint::kill_point("sync::verified");
        self.record_sync(&lock, &outcome)?;

        // write back: what came from upstream and verified, to the mirrors
        // marked `push: true` (a failure there is a warning)
        let verified = fetched_and_verified(&outcome, &from_upstream);
        outcome.written_back = self.write_back(&lock, &verified).await;
        outcome.elapsed_ms = started.elapsed().as_millis() as u64;
        verification_failures(&outcome.checks)?;
        Ok(outcome)
    }

    /// Puts the plan's files in place (`downloads`, in the plan's order) and
    /// counts what came from where; returns the models of which a file came
    /// from upstream. Any failure fails the sync, all of them said.
    async fn acquire_planned(
        &self,
        lock: &Lockfile,
        downloads: Vec<Download>,
        options: &SyncOptions,
        state: &mut StoreState,
        outcome: &mut SyncOutcome,
    ) -> Result<BTreeSet<String>> {
        let wants = (outcome.plan.fetch.iter().zip(downloads))
            .map(|((planned, reason), download)| Want {
                key: Store::key(&planned.dir, &planned.file.path),
                model: Some(planned.model.clone()),
                entry: None,
                download,
                check: options.rehash || *reason == FetchReason::Changed,
            })
            .collect::<Vec<Want>>();
        let acquired = self.acquire(wants, Some(lock), state, options.mode).await?;
        let from_upstream = acquired.models_fetched_upstream();
        outcome.moved = acquired.moved;
        self.fail_on_fetch_errors(acquired.errors, lock, state)?;
        Ok(from_upstream)
    }

    /// The models `--force` names.
    fn forced(&self, options: &SyncOptions) -> BTreeSet<String> {
        (self.config.specs.iter())
            .filter(|s| options.force.iter().any(|n| s.matches(n)))
            .map(|s| s.name.clone())
            .collect()
    }

    /// Downloads that failed end the sync with their own errors; what is
    /// known is saved first, best effort (on a full disk that fails too, and
    /// must not mask the cause).
    fn fail_on_fetch_errors(&self, errors: Vec<Error>, lock: &Lockfile, state: &StoreState) -> Result<()> {
        if errors.is_empty() {
            return Ok(());
        }
        let _ = self.store.save_state(state);
        let _ = registry::write(&self.store, &self.registry_path(), lock, &Verifications::new(), false);
        Err(Error::many(
            "some files could not be synced; files already in place were kept",
            errors,
        ))
    }

    /// The lock to sync: the current one when it matches the config, else a
    /// fresh one (as `mdl lock` would write it, within what `options.mode` allows).
    async fn lock_for_sync(
        &self,
        options: &SyncOptions,
        state: &mut StoreState,
        outcome: &mut SyncOutcome,
    ) -> Result<Lockfile> {
        let current = Lockfile::read_cached(&self.lock_path(), &self.store.meta_dir())?;
        let stale = match &current {
            None => true,
            Some(lock) => !lock.differences(&self.config.specs, self.url_context()).is_empty(),
        };
        if !stale && options.upgrade == Upgrade::None {
            return Ok(current.unwrap_or_default());
        }
        if options.dry_run && options.mode == LockMode::Write {
            return Err(Error::usage(
                "`--dry-run` cannot show a plan: the lockfile is missing or does not match the config",
                Some("run `mdl lock` first".to_string()),
            ));
        }
        let result = self.lock_with_state(&options.upgrade, options.mode, state).await;
        // The first failure is the one reported (see `lock`).
        let locked = match result {
            Ok(locked) => {
                self.store.save_state(state)?;
                locked
            }
            Err(e) => {
                let _ = self.store.save_state(state);
                return Err(e);
            }
        };
        let lock = locked.lock.clone();
        outcome.lock = Some(locked);
        Ok(lock)
    }

    /// What other programs and projects see of this sync: the shared store
    /// learns the project uses it (for `mdl cache prune`), and with
    /// `download.hf_cache: true` the Hub models appear in the Hugging Face cache.
    fn share(&self, lock: &Lockfile) -> Result<()> {
        if let Some(shared) = &self.caches.shared {
            if !lock.models.is_empty() {
                // Best effort: a read-only or full store must not fail a sync
                // whose files are all in place; it only weakens `prune`'s memory.
                let _ = shared.remember(&self.lock_path());
            }
        }
        self.caches.write_hf(&self.store, lock)?;
        self.caches.write_torch_hub(&self.store, lock)?;
        Ok(())
    }

    /// Writes the registry after a sync, unless it is already true: nothing
    /// fetched, nothing reloaded, lock unchanged, every `model_info.json` there.
    fn record_sync(&self, lock: &Lockfile, outcome: &SyncOutcome) -> Result<()> {
        let unchanged = outcome.lock.is_none()
            && outcome.plan.fetch.is_empty()
            && outcome.checks.iter().all(|c| c.cached)
            && self.registry_path().is_file()
            && (lock.models.values()).all(|m| self.store.model_dir(&m.dir_name()).join(MODEL_INFO).is_file());
        if unchanged {
            return Ok(());
        }
        let verifications: Verifications = (outcome.checks.iter())
            .map(|c| (c.name.clone(), (c.verification.clone(), c.cached)))
            .collect();
        registry::write(&self.store, &self.registry_path(), lock, &verifications, true)?;
        Ok(())
    }
}

/// Models that failed verification, as one error (they are verified again
/// on the next sync).
fn verification_failures(checks: &[ModelCheck]) -> Result<()> {
    let failed: Vec<Error> = (checks.iter())
        .filter(|c| c.verification.status == VerifyStatus::Failed)
        .map(|c| {
            let model = c.name.clone();
            let reason = c.verification.error.clone().unwrap_or_default();
            Error::from(if c.verification.hash_only.is_empty() {
                verify::VerifyError::Model { model, reason }
            } else {
                verify::VerifyError::Unverifiable { model, reason }
            })
        })
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    let summary = format!(
        "{} model(s) failed verification; they will be verified again on the next sync",
        failed.len()
    );
    Err(Error::many(summary, failed))
}

/// What may be written back to mirrors: the models this run fetched from
/// upstream or locked, unless their verification failed.
fn fetched_and_verified(outcome: &SyncOutcome, from_upstream: &BTreeSet<String>) -> BTreeSet<String> {
    let locked_now = outcome.lock.iter().flat_map(|l| l.fetched_models.iter());
    (from_upstream.iter().chain(locked_now))
        .filter(|m| !(outcome.checks.iter()).any(|c| &c.name == *m && c.verification.status == VerifyStatus::Failed))
        .cloned()
        .collect()
}
