//! The seed design's Python API, in Rust: a blocking facade over
//! [`Project`] for programs that want a model on disk and verified.
//!
//! ```no_run
//! // Make sure a model is present and loadable, and get its directory.
//! let (path, info) = mdl::api::ensure_model_available("torchvision:mobilenet_v2")?;
//! println!("{} files in {}", info.files.len(), path.display());
//! # Ok::<(), mdl::Error>(())
//! ```
//!
//! These functions create their own async runtime; from async code, use
//! [`Project::lock`] and [`Project::sync`] (in [`crate::ops`]) directly.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::ops::{Project, SyncOptions};
use crate::registry::{ModelInfo, Registry};
use crate::reporter::{Reporter, Silent};

/// A project's models: the seed's `ModelLoader`/downloader.
pub struct ModelManager {
    project: Project,
    runtime: tokio::runtime::Runtime,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)
}

impl ModelManager {
    /// Opens the project whose config is `config_path` (e.g. `config.yaml`).
    ///
    /// ```no_run
    /// let manager = mdl::api::ModelManager::open("config.yaml")?;
    /// for model in manager.list_available_models() {
    ///     println!("{} ({} bytes)", model.name, model.size);
    /// }
    /// # Ok::<(), mdl::Error>(())
    /// ```
    pub fn open(config_path: impl AsRef<Path>) -> Result<ModelManager> {
        let config = Config::load(config_path.as_ref())?;
        Ok(ModelManager {
            project: Project::new(config, Arc::new(Silent)),
            runtime: runtime()?,
        })
    }

    /// `config.yaml` in `dir` if there is one, else an empty project there
    /// (models in `dir/models/`, `models.lock` in `dir`).
    pub fn in_dir(dir: impl AsRef<Path>) -> Result<ModelManager> {
        let path = dir.as_ref().join("config.yaml");
        if path.is_file() {
            return ModelManager::open(path);
        }
        let config = Config::parse(&path, "", &[])?;
        Ok(ModelManager {
            project: Project::new(config, Arc::new(Silent)),
            runtime: runtime()?,
        })
    }

    /// Reports progress to `reporter` instead of nowhere.
    pub fn with_reporter(mut self, reporter: Arc<dyn Reporter>) -> ModelManager {
        self.project.reporter = reporter;
        self
    }

    pub fn project(&self) -> &Project {
        &self.project
    }

    /// Every model that is synced (as in `model_registry.json`).
    pub fn list_available_models(&self) -> Vec<ModelInfo> {
        Registry::read(&self.project.registry_path())
            .models
            .into_values()
            .collect()
    }

    fn find(&self, name_or_id: &str) -> Option<ModelInfo> {
        let registry = Registry::read(&self.project.registry_path());
        let by_spec = self
            .project
            .config
            .specs
            .iter()
            .find(|s| s.matches(name_or_id))
            .map(|s| s.name.clone());
        let name = by_spec.unwrap_or_else(|| name_or_id.to_string());
        registry.models.get(&name).cloned()
    }

    /// Whether the model is synced, with every locked file in place.
    pub fn is_model_cached(&self, name_or_id: &str) -> bool {
        self.get_model_path(name_or_id).is_some()
    }

    /// The directory holding the synced model (for `local:` models, where it is).
    pub fn get_model_path(&self, name_or_id: &str) -> Option<PathBuf> {
        let info = self.find(name_or_id)?;
        let path = if info.source.used_in_place() {
            self.project.store.project_dir().join(&info.path)
        } else {
            self.project.store.root().join(&info.path)
        };
        let complete = info.files.iter().all(|f| {
            let file = if info.source.used_in_place() && path.is_file() {
                path.clone()
            } else {
                path.join(&f.path)
            };
            std::fs::metadata(file).is_ok_and(|m| m.len() == f.size)
        });
        complete.then_some(path)
    }

    /// Adds `ids` to the wanted models (in memory; `config.yaml` is not
    /// edited — use `mdl add` for that), then locks, fetches and verifies, like
    /// `mdl sync`. Returns a result per id, in order.
    pub fn download_models(&mut self, ids: &[&str]) -> Vec<(String, Result<(PathBuf, ModelInfo)>)> {
        let mut names = Vec::new();
        for id in ids {
            match self.project.config.add_requirement(id) {
                Ok(name) => names.push((id.to_string(), Ok(name))),
                Err(e) => names.push((id.to_string(), Err(Error::from(e)))),
            }
        }
        let options = SyncOptions {
            verify: true,
            ..SyncOptions::default()
        };
        let synced = self.runtime.block_on(self.project.sync(&options));
        // One sync serves every id: each failed result carries the original
        // error (its hint and exit code intact), shared.
        let failure = synced.err().map(Arc::new);
        names
            .into_iter()
            .map(|(id, name)| {
                let result = name.and_then(|name| {
                    if let Some(error) = &failure {
                        return Err(Error::Shared {
                            context: format!("syncing `{id}` failed"),
                            source: error.clone(),
                        });
                    }
                    let info = self.find(&name).ok_or_else(|| Error::Unrecorded {
                        id: id.clone(),
                        what: "is not in the registry",
                    })?;
                    let path = self.get_model_path(&name).ok_or_else(|| Error::Unrecorded {
                        id: id.clone(),
                        what: "is not complete on disk",
                    })?;
                    Ok((path, info))
                });
                (id, result)
            })
            .collect()
    }

    /// Makes sure one model is on disk and verified; returns its directory and info.
    pub fn ensure_model_available(&mut self, id: &str) -> Result<(PathBuf, ModelInfo)> {
        self.download_models(&[id]).pop().expect("one result per id").1
    }
}

/// [`ModelManager::ensure_model_available`] for the project in the current
/// directory (its `config.yaml`, or an empty project with `models/`).
pub fn ensure_model_available(id: &str) -> Result<(PathBuf, ModelInfo)> {
    ModelManager::in_dir(".")?.ensure_model_available(id)
}
