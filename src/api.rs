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

use crate::config::{Config, Requirement};
use crate::error::{Error, Result};
use crate::ops::{Project, SyncOptions};
use crate::registry::{ModelInfo, Registry};
use crate::reporter::{Reporter, Silent};

/// One wanted model's outcome: the id asked for, and its directory and info
/// or the error that stopped it.
pub type Outcome = (String, Result<(PathBuf, ModelInfo)>);

/// A project's models: the seed's `ModelLoader`/downloader.
pub struct ModelManager {
    project: Project,
    runtime: tokio::runtime::Runtime,
    /// `config.yaml` as read (empty for the default project), so that models
    /// and presets wanted through this API are validated as the file's own are.
    raw: String,
    presets: Vec<String>,
    extra: Vec<Requirement>,
    /// Lay Hub models out in the Hugging Face cache too (`download.hf_cache`).
    hf_cache: bool,
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
        let path = config_path.as_ref();
        let raw = Config::read(path)?;
        ModelManager::from_text(path, raw)
    }

    /// `config.yaml` in `dir` if there is one, else the default project there:
    /// no models wanted but those asked for, models in `dir/models/`,
    /// `models.lock` in `dir`.
    pub fn in_dir(dir: impl AsRef<Path>) -> Result<ModelManager> {
        let path = dir.as_ref().join("config.yaml");
        if path.is_file() {
            return ModelManager::open(path);
        }
        ModelManager::from_text(&path, String::new())
    }

    /// The project a program in the current directory means: `$MDL_CONFIG`
    /// when set (as the CLI reads it), else [`ModelManager::in_dir`]`(".")`.
    pub fn discover() -> Result<ModelManager> {
        match std::env::var_os("MDL_CONFIG") {
            Some(path) if !path.is_empty() => ModelManager::open(PathBuf::from(path)),
            _ => ModelManager::in_dir("."),
        }
    }

    fn from_text(path: &Path, raw: String) -> Result<ModelManager> {
        let config = Config::parse(path, &raw, &[])?;
        Ok(ModelManager {
            project: Project::new(config, Arc::new(Silent)),
            runtime: runtime()?,
            raw,
            presets: Vec::new(),
            extra: Vec::new(),
            hf_cache: false,
        })
    }

    /// The config with `presets` and `extra` wanted too.
    fn config_wanting(&self, presets: &[String], extra: &[Requirement]) -> Result<Config> {
        Ok(Config::parse_wanting(
            &self.project.config.path,
            &self.raw,
            presets,
            extra,
        )?)
    }

    /// Makes `config` the project's, keeping the reporter.
    fn replace_config(&mut self, mut config: Config) {
        if self.hf_cache {
            config.models.download.hf_cache = Some(true);
        }
        self.project = Project::new(config, self.project.reporter.clone());
    }

    /// Also lays Hub models out in the Hugging Face cache, as
    /// `download.hf_cache: true` does, for this manager's syncs: the Python
    /// `ModelLoader` downloads this way, so transformers finds the model by
    /// its repo id afterwards too.
    pub fn fill_hf_cache(&mut self) {
        self.hf_cache = true;
        self.replace_config(self.project.config.clone());
    }

    /// Reports progress to `reporter` instead of nowhere.
    pub fn with_reporter(mut self, reporter: Arc<dyn Reporter>) -> ModelManager {
        self.set_reporter(reporter);
        self
    }

    pub fn set_reporter(&mut self, reporter: Arc<dyn Reporter>) {
        self.project = Project::new(self.project.config.clone(), reporter);
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
    pub fn download_models(&mut self, ids: &[&str]) -> Vec<Outcome> {
        let wanted: Vec<Requirement> = ids
            .iter()
            .map(|id| Requirement {
                id: id.to_string(),
                ..Default::default()
            })
            .collect();
        self.download_requirements(&wanted)
    }

    /// [`ModelManager::download_models`] for requirements as `models.require`
    /// holds them (a `name`, a `revision`, `include` globs…).
    pub fn download_requirements(&mut self, wanted: &[Requirement]) -> Vec<Outcome> {
        let mut names = Vec::new();
        for req in wanted {
            names.push((req.id.clone(), self.want(req)));
        }
        if names.iter().all(|(_, name)| name.is_err()) {
            // Nothing valid was asked for: nothing is locked, fetched or created.
            return self.results(names, Ok(()));
        }
        let synced = self.sync();
        self.results(names, synced)
    }

    /// Wants the models of a preset (built in, or from config.yaml's
    /// `presets:`), then syncs; a result per model of the preset.
    pub fn download_preset(&mut self, preset: &str) -> Result<Vec<Outcome>> {
        let mut presets = self.presets.clone();
        if !presets.iter().any(|p| p == preset) {
            presets.push(preset.to_string());
        }
        // An unknown preset is refused here, naming the presets there are.
        let config = self.config_wanting(&presets, &self.extra)?;
        let ids: Vec<String> = match config.presets().get(preset) {
            Some(entries) => entries.iter().map(|r| r.id.clone()).collect(),
            None => crate::config::BUILTIN_PRESETS
                .iter()
                .filter(|(name, _)| *name == preset)
                .flat_map(|(_, ids)| ids.iter().map(|id| id.to_string()))
                .collect(),
        };
        self.presets = presets;
        self.replace_config(config);
        let names = ids
            .into_iter()
            .map(|id| {
                let name = self
                    .project
                    .config
                    .specs
                    .iter()
                    .find(|s| s.matches(&id))
                    .map(|s| s.name.clone())
                    .ok_or_else(|| Error::Unrecorded {
                        id: id.clone(),
                        what: "is not among the wanted models",
                    });
                (id, name)
            })
            .collect();
        let synced = self.sync();
        Ok(self.results(names, synced))
    }

    /// Wants one more model; its name, or why it cannot be wanted.
    fn want(&mut self, req: &Requirement) -> Result<String> {
        let parsed = crate::sources::ModelId::parse(&req.id).ok();
        let already = self.project.config.specs.iter().find(|s| {
            req.name.as_ref().is_none_or(|n| *n == s.name)
                && (parsed.as_ref() == Some(&s.id) || (req.name.is_none() && s.matches(&req.id)))
        });
        if let Some(spec) = already {
            return Ok(spec.name.clone());
        }
        let mut extra = self.extra.clone();
        extra.push(req.clone());
        let config = self.config_wanting(&self.presets, &extra)?;
        let name = config.specs.last().map(|s| s.name.clone()).unwrap_or_default();
        self.extra = extra;
        self.replace_config(config);
        Ok(name)
    }

    fn sync(&mut self) -> Result<()> {
        let options = SyncOptions {
            verify: true,
            ..SyncOptions::default()
        };
        self.runtime.block_on(self.project.sync(&options)).map(drop)
    }

    /// Each wanted model's outcome: its directory and info, or the error that
    /// stopped it.
    fn results(&self, names: Vec<(String, Result<String>)>, synced: Result<()>) -> Vec<Outcome> {
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

    /// [`ModelManager::ensure_model_available`] under a name of the caller's
    /// choosing (the model's directory is `<source>_<name>`).
    pub fn auto_download_model(&mut self, id: &str, name: Option<&str>) -> Result<(PathBuf, ModelInfo)> {
        let req = Requirement {
            id: id.to_string(),
            name: name.map(str::to_string),
            ..Default::default()
        };
        self.download_requirements(&[req]).pop().expect("one result per id").1
    }

    /// The effective configuration, defaults filled in (`mdl config`), as JSON.
    pub fn effective_config(&self) -> serde_json::Value {
        let yaml = self.project.config.effective_yaml();
        serde_yaml_ng::from_str(&yaml).unwrap_or(serde_json::Value::Null)
    }
}

/// [`ModelManager::ensure_model_available`] for the project in the current
/// directory (its `config.yaml`, or an empty project with `models/`).
pub fn ensure_model_available(id: &str) -> Result<(PathBuf, ModelInfo)> {
    ModelManager::in_dir(".")?.ensure_model_available(id)
}
