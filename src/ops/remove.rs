//! `mdl remove`: take a model out of the config (keeping its comments), the
//! lock and the disk, together; the edited config is validated before
//! anything changes.

use crate::config::Config;
use crate::config_edit;
use crate::error::{Error, Result};
use crate::fs::write_atomic;
use crate::registry;
use crate::store::StoreError;

use super::Project;

impl Project {
    /// Removes a model from the config, the lock and the disk (`mdl remove`).
    pub fn remove(&self, name: &str) -> Result<String> {
        let spec = self.config.specs.iter().find(|s| s.matches(name)).ok_or_else(|| {
            Error::usage(
                format!("no model named `{name}` is in `{}`", self.config.path.display()),
                None,
            )
        })?;
        let raw = fs_err::read_to_string(&self.config.path).map_err(StoreError::io(&self.config.path))?;
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
        write_atomic(&self.config.path, edited.as_bytes()).map_err(StoreError::io(&self.config.path))?;
        lock.write(&self.lock_path())?;
        if let Some(model) = removed {
            self.store.remove_model_dir(&model)?;
        }
        registry::refresh(&self.store, &self.registry_path(), &lock)?;
        Ok(spec.name.clone())
    }
}
