//! `mdl list`: every wanted or locked model, with what is on disk.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::Serialize;

use crate::error::Result;
use crate::lock::{LockedModel, Lockfile};
use crate::plan::{Observed, Plan, Survey};
use crate::registry::{Registry, VerifyStatus};
use crate::sources::Source;
use crate::store::Store;

use super::Project;

/// Where one model stands.
#[derive(Clone, Debug, Serialize)]
pub struct ModelStatus {
    pub name: String,
    /// The detected or written source (`None`: a bare name not locked yet).
    pub source: Option<Source>,
    pub id: String,
    pub wanted: bool,
    pub locked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub files: usize,
    pub files_present: usize,
    pub size: u64,
    pub state: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerifyStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Every locked file is in place with the locked content.
    Synced,
    /// Locked, but some files are missing or differ: `mdl sync` fetches them.
    Incomplete,
    /// Wanted but not in the lock yet: `mdl lock` / `mdl sync`.
    NotLocked,
    /// In the lock but no longer wanted by the config.
    Unwanted,
}

impl Project {
    /// The plan a sync would make now (no network, no re-hash of recorded files).
    pub(super) fn plan_now(&self, lock: &Lockfile) -> Result<(Plan, Survey)> {
        let mut state = self.store.load_state();
        let survey = self.store.survey(lock, &mut state, false, &*self.reporter)?;
        Ok((Plan::new(lock, &survey, &BTreeSet::new()), survey))
    }

    /// Every wanted or locked model, with what is on disk (`mdl list`).
    pub fn status(&self) -> Result<Vec<ModelStatus>> {
        let lock = self.read_lock()?.unwrap_or_default();
        let (_, survey) = self.plan_now(&lock)?;
        let registry = Registry::read(&self.registry_path());
        let mut out = Vec::new();
        for spec in &self.config.specs {
            let locked = lock.models.get(&spec.name).filter(|m| m.satisfies(spec));
            out.push(match locked {
                None => ModelStatus {
                    name: spec.name.clone(),
                    source: spec.id.source(),
                    id: spec.id.to_string(),
                    wanted: true,
                    locked: false,
                    revision: spec.id.revision().map(str::to_string),
                    commit: None,
                    files: 0,
                    files_present: 0,
                    size: 0,
                    state: State::NotLocked,
                    verification: None,
                    path: None,
                },
                Some(model) => self.locked_status(model, &survey, &registry, true),
            });
        }
        for model in lock.models.values() {
            if !self.config.specs.iter().any(|s| s.name == model.name) {
                out.push(self.locked_status(model, &survey, &registry, false));
            }
        }
        Ok(out)
    }

    fn locked_status(&self, model: &LockedModel, survey: &Survey, registry: &Registry, wanted: bool) -> ModelStatus {
        let dir = model.dir_name();
        let present = model
            .files
            .iter()
            .filter(|f| matches!(survey.files.get(&Store::key(&dir, &f.path)), Some(Observed::Present { blake3 }) if *blake3 == f.blake3))
            .count();
        let state = match (wanted, present == model.files.len()) {
            (false, _) => State::Unwanted,
            (true, true) => State::Synced,
            (true, false) => State::Incomplete,
        };
        ModelStatus {
            name: model.name.clone(),
            source: Some(model.source),
            id: model.id.clone(),
            wanted,
            locked: true,
            revision: model.revision.clone().or_else(|| model.weights.clone()),
            commit: model.commit.clone(),
            files: model.files.len(),
            files_present: present,
            size: model.size(),
            state,
            verification: registry
                .models
                .get(&model.name)
                .and_then(|m| m.verification.as_ref())
                .map(|v| v.status),
            path: Some(if model.source.used_in_place() {
                PathBuf::from(&model.id)
            } else {
                self.store.model_dir(&dir)
            }),
        }
    }
}
