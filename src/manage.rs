//! Managing a project's models: status (`mdl list`), adding and removing models
//! (config, lock and disk together), cleaning what no locked model references,
//! and disk usage.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::Config;
use crate::config_edit;
use crate::error::{Error, Result};
use crate::lock::Lockfile;
use crate::model_id::Source;
use crate::plan::{self, Observed, Plan};
use crate::project::{spec_matches, LockMode, Project, Upgrade};
use crate::registry::{Registry, VerifyStatus};
use crate::store::{write_atomic, Store, StoreError};

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

/// Disk usage of the models directory.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DiskUsage {
    pub models: BTreeMap<String, u64>,
    pub extraneous: u64,
    pub partial_downloads: u64,
    pub total: u64,
}

fn dir_size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_file() {
        return meta.len();
    }
    if !meta.is_dir() {
        return 0;
    }
    std::fs::read_dir(path)
        .map(|d| d.flatten().map(|e| dir_size(&e.path())).sum())
        .unwrap_or(0)
}

impl Project {
    fn plan_now(&self, lock: &Lockfile) -> Result<(Plan, plan::Survey)> {
        let mut state = self.store.load_state();
        let survey = plan::survey(&self.store, lock, &mut state, false)?;
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

    fn locked_status(
        &self,
        model: &crate::lock::LockedModel,
        survey: &plan::Survey,
        registry: &Registry,
        wanted: bool,
    ) -> ModelStatus {
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
            path: Some(if model.source == Source::Local {
                PathBuf::from(&model.id)
            } else {
                self.store.model_dir(&dir)
            }),
        }
    }

    /// Paths under the models directory that no locked model references, with
    /// their sizes (`mdl clean`). Only mdl's own model directories and files
    /// inside them are considered; other files in the directory are the user's.
    pub fn extraneous(&self) -> Result<Vec<(String, u64)>> {
        let lock = self.read_lock()?.unwrap_or_default();
        let (plan, _) = self.plan_now(&lock)?;
        let sources = [Source::Huggingface, Source::Url, Source::Torchvision, Source::Local];
        Ok(plan
            .extraneous
            .into_iter()
            .filter(|p| sources.iter().any(|s| p.starts_with(&format!("{}_", s.as_str()))))
            .map(|p| {
                let size = dir_size(&self.store.root().join(&p));
                (p, size)
            })
            .collect())
    }

    /// Deletes what [`Project::extraneous`] lists; returns it.
    pub fn clean(&self, dry_run: bool) -> Result<Vec<(String, u64)>> {
        let _guard = self.store.lock()?;
        let extra = self.extraneous()?;
        if !dry_run {
            for (rel, _) in &extra {
                let path = self.store.root().join(rel);
                let result = if path.is_dir() {
                    fs_err::remove_dir_all(&path)
                } else {
                    fs_err::remove_file(&path)
                };
                result.map_err(|source| StoreError::Io {
                    path: path.clone(),
                    source,
                })?;
            }
            let lock = self.read_lock()?.unwrap_or_default();
            self.refresh_registry(&lock)?;
        }
        Ok(extra)
    }

    /// Bytes on disk per locked model, extraneous paths and partial downloads.
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let lock = self.read_lock()?.unwrap_or_default();
        let mut usage = DiskUsage::default();
        for model in lock.models.values() {
            if model.source != Source::Local {
                usage
                    .models
                    .insert(model.name.clone(), dir_size(&self.store.model_dir(&model.dir_name())));
            }
        }
        usage.extraneous = self.extraneous()?.iter().map(|(_, s)| s).sum();
        usage.partial_downloads = dir_size(&self.store.tmp_dir());
        usage.total = dir_size(self.store.root());
        Ok(usage)
    }

    /// Removes a model from the config, the lock and the disk (`mdl remove`).
    pub fn remove(&self, name: &str) -> Result<String> {
        let spec = self
            .config
            .specs
            .iter()
            .find(|s| spec_matches(s, name))
            .ok_or_else(|| {
                Error::usage(
                    format!("no model named `{name}` is in `{}`", self.config.path.display()),
                    None,
                )
            })?;
        let raw = fs_err::read_to_string(&self.config.path).map_err(|source| StoreError::Io {
            path: self.config.path.clone(),
            source,
        })?;
        let written = [spec.id.to_string(), spec.id.locator().to_string()];
        let edited = written
            .iter()
            .chain(std::iter::once(&spec.name))
            .find_map(|id| config_edit::remove_from_list(&raw, "require", id))
            .ok_or_else(|| {
                Error::usage(
                    format!("`{}` comes from a preset, not from `models.require`", spec.name),
                    Some("remove the preset from `models.presets`, or edit the preset".to_string()),
                )
            })?;
        // The edited config must still be valid before anything changes.
        Config::parse(&self.config.path, &edited, &[])?;
        let _guard = self.store.lock()?;
        let mut lock = self.read_lock()?.unwrap_or_default();
        let removed = lock.models.remove(&spec.name);
        write_atomic(&self.config.path, edited.as_bytes()).map_err(|source| StoreError::Io {
            path: self.config.path.clone(),
            source,
        })?;
        lock.write(&self.lock_path())?;
        if let Some(model) = removed.filter(|m| m.source != Source::Local) {
            let dir = self.store.model_dir(&model.dir_name());
            if dir.exists() {
                fs_err::remove_dir_all(&dir).map_err(|source| StoreError::Io {
                    path: dir.clone(),
                    source,
                })?;
            }
        }
        self.refresh_registry(&lock)?;
        Ok(spec.name.clone())
    }

    /// Rewrites the registry from the lock, keeping recorded verifications.
    pub fn refresh_registry(&self, lock: &Lockfile) -> Result<()> {
        let kept: BTreeMap<_, _> = Registry::read(&self.registry_path())
            .models
            .into_iter()
            .filter_map(|(n, m)| m.verification.map(|v| (n, (v, true))))
            .collect();
        self.write_registry(lock, &kept)
    }
}

/// `mdl add`: appends `id` (or a preset name) to `config.yaml`, keeping its
/// comments, then locks. If locking fails, the config is restored: nothing is
/// left half-done.
pub async fn add(
    config_path: &Path,
    ids: &[String],
    presets: &[String],
    reporter: std::sync::Arc<dyn crate::reporter::Reporter>,
) -> Result<crate::project::LockOutcome> {
    let existed = config_path.exists();
    let original = match fs_err::read_to_string(config_path) {
        Ok(raw) => raw,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(StoreError::Io {
                path: config_path.to_path_buf(),
                source,
            }
            .into())
        }
    };
    let mut edited = original.clone();
    for id in ids {
        crate::model_id::ModelId::parse(id)
            .map_err(|e| Error::usage(e.to_string(), Some(crate::model_id::IdError::ACCEPTED.to_string())))?;
        edited = config_edit::add_to_list(&edited, "require", id);
    }
    for preset in presets {
        edited = config_edit::add_to_list(&edited, "presets", preset);
    }
    let config = Config::parse(config_path, &edited, &[])?;
    write_atomic(config_path, edited.as_bytes()).map_err(|source| StoreError::Io {
        path: config_path.to_path_buf(),
        source,
    })?;
    let project = Project::new(config, reporter);
    match project.lock(&Upgrade::None, LockMode::Write).await {
        Ok(outcome) => Ok(outcome),
        Err(e) => {
            let restore = if existed {
                write_atomic(config_path, original.as_bytes())
            } else {
                std::fs::remove_file(config_path)
            };
            restore.map_err(|source| StoreError::Io {
                path: config_path.to_path_buf(),
                source,
            })?;
            Err(e)
        }
    }
}
