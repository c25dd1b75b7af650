//! The plan: what `mdl sync` will do, decided before anything is fetched.
//!
//! [`survey`] looks at the disk (one `stat` per locked file; a file is only
//! re-hashed when mdl has no record of it or its size/mtime/inode changed), and
//! [`Plan::new`] is a pure function of the lock and that survey, so it can be
//! printed (`mdl sync --dry-run`) and unit-tested without a network or a disk.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use crate::lock::{LockedFile, Lockfile};
use crate::store::{hash_file, FileStat, Store, StoreError, StoreState};

/// What the disk holds for one locked file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    Missing,
    /// Present, with this blake3 (from the record, or freshly hashed).
    Present {
        blake3: String,
    },
}

/// The disk's side of the plan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Survey {
    /// Keyed by `Store::key(dir, path)`.
    pub files: BTreeMap<String, Observed>,
    /// Model directories in the models dir (`<source>_<name>`), whether or not locked.
    pub model_dirs: BTreeSet<String>,
    /// Files inside locked model directories, relative to the models dir.
    pub files_in_model_dirs: BTreeSet<String>,
    /// Files that were hashed because no record matched (for `-v` and tests).
    pub rehashed: usize,
}

/// Why a file must be fetched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchReason {
    Missing,
    /// On disk, but its content is not what the lock says.
    Changed,
    /// `--force`.
    Forced,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedFile {
    pub model: String,
    pub dir: String,
    pub file: LockedFile,
}

/// What sync will do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Already in place with the locked content.
    pub cached: Vec<PlannedFile>,
    /// To download.
    pub fetch: Vec<(PlannedFile, FetchReason)>,
    /// Model directories no locked model owns, and files in locked model
    /// directories that the lock does not list (relative to the models dir).
    /// Sync leaves them alone; `mdl clean` removes them.
    pub extraneous: Vec<String>,
}

/// Metadata files mdl writes inside model directories.
pub const MODEL_INFO: &str = "model_info.json";

impl Plan {
    /// `force`: model names whose files are fetched again regardless.
    pub fn new(lock: &Lockfile, survey: &Survey, force: &BTreeSet<String>) -> Plan {
        let mut plan = Plan::default();
        let mut owned_dirs = BTreeSet::new();
        let mut owned_files = BTreeSet::new();
        for model in lock.models.values() {
            let dir = model.dir_name();
            owned_dirs.insert(dir.clone());
            owned_files.insert(Store::key(&dir, MODEL_INFO));
            for file in &model.files {
                let key = Store::key(&dir, &file.path);
                owned_files.insert(key.clone());
                let planned = PlannedFile {
                    model: model.name.clone(),
                    dir: dir.clone(),
                    file: file.clone(),
                };
                let observed = survey.files.get(&key).unwrap_or(&Observed::Missing);
                match observed {
                    _ if force.contains(&model.name) => plan.fetch.push((planned, FetchReason::Forced)),
                    Observed::Missing => plan.fetch.push((planned, FetchReason::Missing)),
                    Observed::Present { blake3 } if *blake3 == file.blake3 => plan.cached.push(planned),
                    Observed::Present { .. } => plan.fetch.push((planned, FetchReason::Changed)),
                }
            }
        }
        plan.extraneous
            .extend(survey.model_dirs.iter().filter(|d| !owned_dirs.contains(*d)).cloned());
        plan.extraneous.extend(
            survey
                .files_in_model_dirs
                .iter()
                .filter(|f| !owned_files.contains(*f))
                .cloned(),
        );
        plan
    }

    pub fn is_noop(&self) -> bool {
        self.fetch.is_empty()
    }

    pub fn fetch_bytes(&self) -> u64 {
        self.fetch.iter().map(|(f, _)| f.file.size).sum()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} file(s) up to date, {} to fetch ({}), {} extraneous",
            self.cached.len(),
            self.fetch.len(),
            crate::human_bytes(self.fetch_bytes()),
            self.extraneous.len()
        )?;
        for (file, reason) in &self.fetch {
            let why = match reason {
                FetchReason::Missing => "missing",
                FetchReason::Changed => "changed",
                FetchReason::Forced => "forced",
            };
            writeln!(
                f,
                "  fetch  {}/{}  ({}, {why})",
                file.dir,
                file.file.path,
                crate::human_bytes(file.file.size)
            )?;
        }
        for path in &self.extraneous {
            writeln!(f, "  extra  {path}  (not in the lock; `mdl clean` removes it)")?;
        }
        Ok(())
    }
}

/// Looks at the disk for every locked file, using recorded metadata to avoid
/// re-reading files that did not change. `rehash` ignores the records
/// (`mdl sync --check`). Records for files that were hashed are updated in `state`.
pub fn survey(store: &Store, lock: &Lockfile, state: &mut StoreState, rehash: bool) -> Result<Survey, StoreError> {
    let mut survey = Survey::default();
    if let Ok(entries) = std::fs::read_dir(store.root()) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().is_ok_and(|t| t.is_dir()) && !name.starts_with('.') && name.contains('_') {
                survey.model_dirs.insert(name);
            }
        }
    }
    for model in lock.models.values() {
        let dir = model.dir_name();
        let model_dir = store.model_dir(&dir);
        if survey.model_dirs.contains(&dir) {
            walk(&model_dir, &dir, &mut survey.files_in_model_dirs);
        }
        for file in &model.files {
            let key = Store::key(&dir, &file.path);
            let path = if model.source == crate::model_id::Source::Local {
                store.locate(model, file)?
            } else {
                model_dir.join(&file.path) // validated when the lock was read
            };
            let observed = match std::fs::metadata(&path) {
                Err(_) => Observed::Missing,
                Ok(meta) if !meta.is_file() => Observed::Missing,
                Ok(meta) => {
                    let stat = FileStat::of(&meta);
                    match state.files.get(&key) {
                        Some(record) if !rehash && stat.matches(record) => Observed::Present {
                            blake3: record.blake3.clone(),
                        },
                        _ if stat.size != file.size => {
                            // Different size: different content, no need to read it.
                            state.files.remove(&key);
                            Observed::Present { blake3: String::new() }
                        }
                        _ => {
                            let blake3 = hash_file(&path).map_err(|source| StoreError::Io {
                                path: path.clone(),
                                source,
                            })?;
                            survey.rehashed += 1;
                            let record = crate::store::FileRecord {
                                size: stat.size,
                                mtime_ns: stat.mtime_ns,
                                inode: stat.inode,
                                blake3: blake3.clone(),
                            };
                            state.files.insert(key.clone(), record);
                            Observed::Present { blake3 }
                        }
                    }
                }
            };
            survey.files.insert(key, observed);
        }
    }
    Ok(survey)
}

fn walk(dir: &Path, prefix: &str, out: &mut BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = format!("{prefix}/{name}");
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk(&entry.path(), &rel, out),
            Ok(_) => {
                out.insert(rel);
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::LockedModel;
    use crate::model_id::Source;

    fn lock() -> Lockfile {
        let file = |p: &str, b: &str| LockedFile {
            path: p.into(),
            size: 1,
            blake3: b.into(),
            etag: None,
            sha256: None,
            url: String::new(),
        };
        let mut lock = Lockfile::default();
        lock.models.insert(
            "acme/a".into(),
            LockedModel {
                name: "acme/a".into(),
                source: Source::Huggingface,
                id: "acme/a".into(),
                revision: None,
                commit: None,
                weights: None,
                resolved_url: None,
                auto: false,
                include: vec![],
                exclude: vec![],
                files: vec![file("x", "1"), file("y", "2"), file("z", "3")],
            },
        );
        lock
    }

    #[test]
    fn partitions_cached_missing_changed_extraneous() {
        let mut survey = Survey::default();
        let dir = "huggingface_acme--a";
        survey
            .files
            .insert(format!("{dir}/x"), Observed::Present { blake3: "1".into() });
        survey
            .files
            .insert(format!("{dir}/y"), Observed::Present { blake3: "bad".into() });
        survey.model_dirs.insert(dir.into());
        survey.model_dirs.insert("url_old".into());
        survey.files_in_model_dirs.insert(format!("{dir}/x"));
        survey.files_in_model_dirs.insert(format!("{dir}/stray.bin"));
        survey.files_in_model_dirs.insert(format!("{dir}/model_info.json"));
        let plan = Plan::new(&lock(), &survey, &BTreeSet::new());
        assert_eq!(plan.cached.len(), 1);
        let reasons: Vec<_> = plan.fetch.iter().map(|(f, r)| (f.file.path.as_str(), *r)).collect();
        assert_eq!(reasons, [("y", FetchReason::Changed), ("z", FetchReason::Missing)]);
        assert_eq!(plan.extraneous, ["url_old".to_string(), format!("{dir}/stray.bin")]);
        assert!(plan.to_string().contains("1 file(s) up to date, 2 to fetch"));
    }

    #[test]
    fn force_refetches_everything_of_a_model() {
        let mut survey = Survey::default();
        survey
            .files
            .insert("huggingface_acme--a/x".into(), Observed::Present { blake3: "1".into() });
        let plan = Plan::new(&lock(), &survey, &BTreeSet::from(["acme/a".to_string()]));
        assert!(plan.cached.is_empty());
        assert_eq!(plan.fetch.len(), 3);
    }
}
