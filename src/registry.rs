//! The seed design's registry: `model_info.json` in each model directory and
//! `model_registry.json` at the root of the models dir. Both are derived from the
//! lock, the disk and verification results, rewritten atomically and only when
//! their content changes, so they stay true after every command and after a crash.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::lock::LockedModel;
use crate::model_id::Source;
use crate::store::{write_atomic, StoreError};
use crate::verify::FileReport;

pub const REGISTRY_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileInfo {
    pub path: String,
    pub size: u64,
    pub blake3: String,
}

/// Where a model's verification stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyStatus {
    /// Every weight file was loaded with libtorch on the device.
    Verified,
    /// Hashes and file structure checked; this build cannot load with libtorch.
    FormatChecked,
    /// A file failed to load; see `error`.
    Failed,
    /// `--no-verify`, or `verify: false` in the config.
    Skipped,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    pub status: VerifyStatus,
    pub device: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, FileReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What mdl knows about one synced model (`model_info.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub name: String,
    pub source: Source,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The model directory, relative to the models dir.
    pub path: PathBuf,
    pub size: u64,
    pub files: Vec<FileInfo>,
    /// When the model's current files were first all in place (RFC 3339).
    pub downloaded_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
}

impl ModelInfo {
    pub fn from_lock(model: &LockedModel, previous: Option<&ModelInfo>, now: &str) -> ModelInfo {
        let files: Vec<FileInfo> = model
            .files
            .iter()
            .map(|f| FileInfo {
                path: f.path.clone(),
                size: f.size,
                blake3: f.blake3.clone(),
            })
            .collect();
        // Same files as before: keep the original download time.
        let downloaded_at = match previous {
            Some(p) if p.files == files => p.downloaded_at.clone(),
            _ => now.to_string(),
        };
        ModelInfo {
            name: model.name.clone(),
            source: model.source,
            id: model.id.clone(),
            revision: model.revision.clone(),
            commit: model.commit.clone(),
            url: model.resolved_url.clone(),
            // Local models are used where they are.
            path: if model.source == Source::Local {
                PathBuf::from(&model.id)
            } else {
                PathBuf::from(model.dir_name())
            },
            size: model.size(),
            files,
            downloaded_at,
            verification: previous.and_then(|p| p.verification.clone()),
        }
    }

    pub fn read(path: &Path) -> Option<ModelInfo> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }
}

/// `model_registry.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Registry {
    pub version: u32,
    pub models: BTreeMap<String, ModelInfo>,
}

impl Registry {
    pub fn read(path: &Path) -> Registry {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Registry {
                version: REGISTRY_VERSION,
                models: BTreeMap::new(),
            })
    }
}

/// Writes `value` as pretty JSON unless the file already holds exactly that.
pub fn write_json_if_changed<T: Serialize>(path: &Path, value: &T) -> Result<bool, StoreError> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("serialises");
    bytes.push(b'\n');
    if std::fs::read(path).ok().as_deref() == Some(bytes.as_slice()) {
        return Ok(false);
    }
    write_atomic(path, &bytes).map_err(|source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(true)
}
