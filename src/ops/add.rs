//! `mdl add`: append models (or presets) to `config.yaml` as text, keeping its
//! comments, then lock; if locking fails the config is restored.

use std::path::Path;
use std::sync::Arc;

use crate::config::Config;
use crate::config_edit;
use crate::error::{Error, Result};
use crate::fs::write_atomic;
use crate::lock::{LockMode, Upgrade};
use crate::reporter::Reporter;
use crate::sources::{IdError, ModelId};
use crate::store::StoreError;

use super::{LockOutcome, Project};

/// `mdl add`: appends `id` (or a preset name) to `config.yaml`, keeping its
/// comments, then locks. If locking fails, the config is restored: nothing is
/// left half-done.
pub async fn add(
    config_path: &Path,
    ids: &[String],
    presets: &[String],
    reporter: Arc<dyn Reporter>,
) -> Result<LockOutcome> {
    let existed = config_path.exists();
    let original = match fs_err::read_to_string(config_path) {
        Ok(raw) => raw,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => return Err(StoreError::io(config_path)(source).into()),
    };
    let mut edited = original.clone();
    for id in ids {
        ModelId::parse(id).map_err(|e| Error::usage(e.to_string(), Some(IdError::accepted())))?;
        edited = config_edit::add_to_list(&edited, "require", id);
    }
    for preset in presets {
        edited = config_edit::add_to_list(&edited, "presets", preset);
    }
    let config = Config::parse(config_path, &edited, &[])?;
    write_atomic(config_path, edited.as_bytes()).map_err(StoreError::io(config_path))?;
    let project = Project::new(config, reporter);
    match project.lock(&Upgrade::None, LockMode::Write).await {
        Ok(outcome) => Ok(outcome),
        Err(e) => {
            let restore = if existed {
                write_atomic(config_path, original.as_bytes())
            } else {
                std::fs::remove_file(config_path)
            };
            restore.map_err(StoreError::io(config_path))?;
            Err(e)
        }
    }
}
