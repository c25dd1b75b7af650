//! The seed design's registry: `model_info.json` in each model directory and
//! `model_registry.json` at the root of the models dir. Both are derived from the
//! lock, the disk and verification results, rewritten atomically and only when
//! their content changes, so they stay true after every command and after a crash.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fs::write_atomic;
use crate::lock::{LockedModel, Lockfile};
use crate::plan::MODEL_INFO;
pub use crate::report::{Verification, VerifyStatus};
use crate::sources::Source;
use crate::store::{Store, StoreError};

pub const REGISTRY_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileInfo {
    pub path: String,
    pub size: u64,
    pub blake3: String,
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
            url: model.source.id_is_the_file_url().then(|| model.id.clone()),
            // Local models are used where they are.
            path: if model.source.used_in_place() {
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

/// A model's verification to record: the result, and whether it was served
/// entirely from remembered results (then `model_info.json` keeps what it
/// already says, so a no-op sync writes nothing).
pub type Verifications = BTreeMap<String, (Verification, bool)>;

/// Rewrites each model's `model_info.json` and the registry at `path` from the
/// lock and what is on disk. Models whose files are not all in place are left
/// out. `all_present`: the caller just checked every locked file is in place (a
/// sync that fetched everything it planned), so no `stat` is repeated.
pub fn write(
    store: &Store,
    path: &Path,
    lock: &Lockfile,
    verifications: &Verifications,
    all_present: bool,
) -> Result<(), StoreError> {
    let now = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or(jiff::Timestamp::now())
        .to_string();
    let mut registry = Registry {
        version: REGISTRY_VERSION,
        models: BTreeMap::new(),
    };
    for model in lock.models.values() {
        let dir = store.model_dir(&model.dir_name());
        let complete = all_present || model.files.iter().all(|f| store.locate(model, f).is_file());
        if !complete {
            continue;
        }
        let info_path = dir.join(MODEL_INFO);
        let previous = ModelInfo::read(&info_path);
        let mut info = ModelInfo::from_lock(model, previous.as_ref(), &now);
        match (verifications.get(&model.name), &info.verification) {
            (Some((v, true)), Some(old)) if old.status == v.status && old.device == v.device => {}
            (Some((v, _)), _) => info.verification = Some(v.clone()),
            (None, _) => {}
        }
        crate::failpoint::kill_point("registry::model_info");
        write_json_if_changed(&info_path, &info)?;
        registry.models.insert(model.name.clone(), info);
    }
    crate::failpoint::kill_point("registry::writing");
    write_json_if_changed(path, &registry)?;
    Ok(())
}

/// The verifications the registry at `path` records, as remembered results.
pub fn recorded(path: &Path) -> Verifications {
    Registry::read(path)
        .models
        .into_iter()
        .filter_map(|(n, m)| m.verification.map(|v| (n, (v, true))))
        .collect()
}

/// Rewrites the registry from the lock, keeping recorded verifications.
pub fn refresh(store: &Store, path: &Path, lock: &Lockfile) -> Result<(), StoreError> {
    write(store, path, lock, &recorded(path), false)
}
