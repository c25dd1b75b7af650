//! The plan: what `mdl sync` will do, decided before anything is fetched.
//!
//! The store surveys the disk (`Store::survey`: one `stat` per locked file; a
//! file is only re-hashed when mdl has no record of it or its size/mtime/inode
//! changed), and [`Plan::new`] is a pure function of the lock and that
//! [`Survey`], so it can be printed (`mdl sync --dry-run`) and unit-tested
//! without a network or a disk. [`Plan::downloads`] then turns the files to
//! fetch into [`Download`]s for the fetch stage — or refuses, when the lock
//! mode forbids the network or a model used in place changed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fs::{safe_relative_path, UnsafePath};
use crate::lock::{LockMode, LockedFile, LockedModel, Lockfile};
use crate::sources::RemoteFile;

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
    /// Keyed by `file_key(dir, path)`.
    pub files: BTreeMap<String, Observed>,
    /// Model directories in the models dir (`<source>_<name>`), whether or not locked.
    pub model_dirs: BTreeSet<String>,
    /// Files inside locked model directories, relative to the models dir.
    pub files_in_model_dirs: BTreeSet<String>,
    /// Files that were hashed because no record matched (for `-v` and tests).
    pub rehashed: usize,
    /// Files whose inode changed but size and mtime did not (a copied tree):
    /// their records were kept, not re-read.
    pub recognised_copies: usize,
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

/// How the survey, the plan and the store's records name a file: `dir/path`,
/// relative to the models directory.
pub fn file_key(dir_name: &str, file: &str) -> String {
    format!("{dir_name}/{file}")
}

/// Metadata files mdl writes inside model directories.
pub const MODEL_INFO: &str = "model_info.json";

/// What a downloaded file must be. Every known value is checked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expected {
    pub size: Option<u64>,
    pub blake3: Option<String>,
    pub sha256: Option<String>,
    /// The git blob id (`sha1("blob {len}\0" + bytes)`), the Hub's ETag for
    /// files not stored with LFS.
    pub git_oid: Option<String>,
    /// A prefix of the sha256 (torchvision's file name convention).
    pub sha256_prefix: Option<String>,
}

/// One file to download: decided here, carried out by the fetch stage.
#[derive(Clone, Debug)]
pub struct Download {
    /// `model/path`, for messages.
    pub label: String,
    pub url: String,
    pub dest: PathBuf,
    pub expect: Expected,
    /// The `Authorization` to send: the Hub token for the Hub's own files
    /// (`Bearer …`), a registry's credentials for its blobs (set when fetched,
    /// see `registry`); never anything for other hosts.
    pub authorization: Option<String>,
    /// The registry repository whose credentials this file's requests carry
    /// (an `oci:` model's blob, or a mirror's).
    pub registry: Option<crate::oci::OciRef>,
    /// A Hugging Face Hub file, whether or not a token is set (for hints).
    pub hub: bool,
    /// Fetched without certificate checks (a `url:` model under
    /// `sources.url.verify_ssl: false`); such a download never carries a token.
    pub insecure: bool,
    /// A Hub file's repo id and ETag: where the Hugging Face cache may hold it.
    pub hub_blob: Option<(String, String)>,
    /// A Hub file stored in Xet: fetched by chunk through the Hub's CAS
    /// (`fetch::xet`), with `url` (the resolve bridge) as the fallback.
    pub xet: Option<XetSource>,
    /// The source's own digest for this file at the locked commit, once its
    /// listing confirmed the lock's entry (`lock::confirm`): bytes taken
    /// from a cache or a mirror must hash to it too.
    pub source_digest: Option<crate::lock::confirm::SourceDigest>,
    /// The source was asked and states nothing of this file's content (a
    /// listing without hashes): no cache, mirror or Xet address taken from
    /// the lock selects its bytes; it is downloaded from the source.
    pub unconfirmed: bool,
}

/// Where a Xet-backed Hub file is rebuilt from. Both values are derived or
/// validated here: the hash is 64 hex (checked when the lock or the Hub's
/// answer was read), the token URL is built from `HF_ENDPOINT` and the
/// model's repo and commit, never taken from a server's `Link` header, so
/// the Hub token goes to the Hub's own origin only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XetSource {
    pub hash: String,
    /// `{endpoint}/api/{models|datasets|spaces}/{repo}/xet-read-token/{commit}`.
    pub token_url: String,
}

impl XetSource {
    fn of(model: &LockedModel, hash: Option<&str>, origin: Origin<'_>) -> Option<XetSource> {
        let hash = hash.filter(|h| crate::hash::is_blake3(h))?;
        let token_url = (model.source.kind()).xet_token_url(&model.pinned(), origin.hub_endpoint)?;
        Some(XetSource {
            hash: hash.to_string(),
            token_url,
        })
    }
}

/// A file to fetch, as the lock or the source names it.
pub struct ToFetch<'a> {
    pub path: &'a str,
    pub url: String,
    pub expect: Expected,
    /// The ETag the source states (where the Hugging Face cache may hold it).
    pub etag: Option<&'a str>,
    pub xet_hash: Option<&'a str>,
    /// The source's own file: the Hub token may go with it (to the
    /// endpoint's own origin only).
    pub token: bool,
}

impl Download {
    /// The one place a download is built: `file` of `model`, into its
    /// directory `dir` under the models root, with what its source's
    /// transport needs (the Hub token to the Hub's origin only, a
    /// registry's credentials, Xet, the Hugging Face cache's address).
    pub fn build(
        model: &LockedModel,
        dir: &str,
        file: ToFetch<'_>,
        origin: Origin<'_>,
    ) -> Result<Download, UnsafePath> {
        Ok(Download {
            label: format!("{}/{}", model.name, file.path),
            authorization: file
                .token
                .then(|| hub_authorization(model, &file.url, origin))
                .flatten(),
            dest: origin.models_root.join(dir).join(safe_relative_path(file.path)?),
            url: file.url,
            expect: file.expect,
            registry: registry_of(model),
            hub: model.source.sends_hub_token(),
            insecure: origin.insecure_urls && model.source.id_is_the_file_url(),
            hub_blob: hub_blob(model, file.etag),
            xet: XetSource::of(model, file.xet_hash, origin),
            source_digest: None,
            unconfirmed: false,
        })
    }

    /// A file being locked for the first time: checked against what upstream
    /// publishes (size, sha256 or git blob id, torchvision's hash prefix).
    pub fn to_lock(model: &LockedModel, remote: &RemoteFile, origin: Origin<'_>) -> Result<Download, UnsafePath> {
        let file = ToFetch {
            path: &remote.path,
            url: remote.url.clone(),
            expect: Expected {
                size: remote.size,
                sha256: remote.sha256.clone(),
                git_oid: remote.git_oid.clone(),
                sha256_prefix: remote.sha256_prefix.clone(),
                ..Default::default()
            },
            etag: remote.etag.as_deref(),
            xet_hash: remote.xet_hash.as_deref(),
            token: remote.needs_token,
        };
        Download::build(model, &model.dir_name(), file, origin)
    }
}

/// Where planned files come from and go to.
#[derive(Clone, Copy, Debug)]
pub struct Origin<'a> {
    pub models_root: &'a Path,
    /// `HF_ENDPOINT` (or the config's override).
    pub hub_endpoint: &'a str,
    /// The Hub token, when it may be sent to `hub_endpoint` (see
    /// `http::token_may_go_to`): only requests to that origin carry it.
    pub token: Option<&'a str>,
    /// `sources.url.verify_ssl: false`: `url:` models skip certificate checks.
    pub insecure_urls: bool,
    /// The config's sources: torchvision's catalog and PyTorch Hub's URLs,
    /// from which those files' URLs are derived.
    pub sources: &'a crate::sources::Sources,
}

/// Why the plan cannot be carried out.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("`{label}` must be downloaded, but mdl is {}", if *frozen { "frozen (`--frozen`)" } else { "offline" })]
    Offline { label: String, frozen: bool },
    #[error("the local model `{model}` changed since it was locked: `{path}`")]
    LocalChanged { model: String, path: String },
    #[error(transparent)]
    Unsafe(#[from] UnsafePath),
    /// The lock names a file its source (as config.yaml configures it) does
    /// not serve: the lock is stale or was edited.
    #[error("`{label}` is not a file that config.yaml's {kind} source serves: {why}")]
    Underivable {
        label: String,
        kind: crate::sources::Source,
        why: String,
        model: String,
    },
}

impl PlanError {
    pub fn hint(&self) -> Option<String> {
        match self {
            PlanError::Offline { frozen: true, .. } => Some(
                "run `mdl sync --locked` where the network is allowed (e.g. an earlier build stage with a cache mount)"
                    .into(),
            ),
            PlanError::Offline { .. } => {
                Some("run without `--offline` (and unset `HF_HUB_OFFLINE`) to download it".into())
            }
            PlanError::LocalChanged { model, .. } => Some(format!(
                "restore the file, or run `mdl lock --upgrade {model}` to lock what is there now"
            )),
            PlanError::Unsafe(_) => None,
            PlanError::Underivable { model, .. } => Some(format!(
                "run `mdl lock --upgrade {model}` to lock what config.yaml names now, or restore models.lock from git"
            )),
        }
    }
}

/// A plan that cannot be carried out: a summary and each file's reason.
#[derive(Debug)]
pub struct Refusal {
    pub summary: String,
    pub errors: Vec<PlanError>,
}

impl Plan {
    /// `force`: model names whose files are fetched again regardless.
    pub fn new(lock: &Lockfile, survey: &Survey, force: &BTreeSet<String>) -> Plan {
        let mut plan = Plan::default();
        let mut owned_dirs = BTreeSet::new();
        let mut owned_files = BTreeSet::new();
        for model in lock.models.values() {
            let dir = model.dir_name();
            owned_dirs.insert(dir.clone());
            owned_files.insert(file_key(&dir, MODEL_INFO));
            for file in &model.files {
                let key = file_key(&dir, &file.path);
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

    /// The downloads that carry out this plan, in plan order; refused when
    /// `mode` is offline, or when a model used in place changed (there is
    /// nothing to fetch it from).
    pub fn downloads(&self, lock: &Lockfile, mode: LockMode, origin: Origin<'_>) -> Result<Vec<Download>, Refusal> {
        if self.fetch.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(refusal) = self.refusal(lock, mode) {
            return Err(refusal);
        }
        let mut downloads = Vec::with_capacity(self.fetch.len());
        let mut underivable = Vec::new();
        for (f, _) in &self.fetch {
            let model = &lock.models[&f.model];
            let url = match download_url(model, &f.file, origin) {
                Ok(url) => url,
                Err(e) => {
                    underivable.push(e);
                    continue;
                }
            };
            let file = ToFetch {
                path: &f.file.path,
                url,
                // blake3 from the lock covers it; no sha256 pass needed.
                expect: Expected {
                    size: Some(f.file.size),
                    blake3: Some(f.file.blake3.clone()),
                    ..Default::default()
                },
                etag: f.file.etag.as_deref(),
                xet_hash: f.file.xet_hash.as_deref(),
                token: true,
            };
            downloads.push(Download::build(model, &f.dir, file, origin).map_err(|e| Refusal {
                summary: format!("model `{}` has an unsafe file name", f.model),
                errors: vec![e.into()],
            })?);
        }
        if !underivable.is_empty() {
            return Err(Refusal {
                summary: "models.lock names files that config.yaml's sources do not serve".into(),
                errors: underivable,
            });
        }
        Ok(downloads)
    }

    /// Why none of the plan's downloads may happen: offline (or frozen), or a
    /// local model changed since it was locked (its files are used in place).
    fn refusal(&self, lock: &Lockfile, mode: LockMode) -> Option<Refusal> {
        if mode.offline() {
            let frozen = mode == LockMode::Frozen;
            let flag = if frozen { "--frozen" } else { "--offline" };
            return Some(Refusal {
                summary: format!(
                    "{} file(s) must be downloaded, but `{flag}` forbids it",
                    self.fetch.len()
                ),
                errors: (self.fetch.iter())
                    .map(|(f, _)| PlanError::Offline {
                        label: format!("{}/{}", f.model, f.file.path),
                        frozen,
                    })
                    .collect(),
            });
        }
        let changed_in_place: Vec<PlanError> = (self.fetch.iter())
            .filter(|(f, _)| lock.models[&f.model].source.used_in_place())
            .map(|(f, _)| PlanError::LocalChanged {
                model: f.model.clone(),
                path: f.file.url.clone(),
            })
            .collect();
        (!changed_in_place.is_empty()).then(|| Refusal {
            summary: "local models changed since they were locked".into(),
            errors: changed_in_place,
        })
    }
}

/// The Hub token for a Hub file's request: only when the URL is on the
/// endpoint's own origin (scheme, host and port), which a derived URL always
/// is — checked here too, so no future path can send it elsewhere.
fn hub_authorization(model: &LockedModel, url: &str, origin: Origin<'_>) -> Option<String> {
    let token = origin.token.filter(|_| model.source.sends_hub_token())?;
    crate::http::same_origin_str(url, origin.hub_endpoint).then(|| format!("Bearer {token}"))
}

/// The registry repository of an `oci:` model (its id is `HOST/REPO`).
fn registry_of(model: &LockedModel) -> Option<crate::oci::OciRef> {
    if !model.source.sends_registry_credentials() {
        return None;
    }
    crate::oci::OciRef::parse(&model.id).ok()
}

/// Where the Hugging Face cache keeps a Hub file: its repo and ETag.
fn hub_blob(model: &LockedModel, etag: Option<&str>) -> Option<(String, String)> {
    let etag = etag.filter(|_| model.source.fetched_from_hub_endpoint())?;
    Some((model.id.clone(), etag.to_string()))
}

/// Where to download a locked file from now: derived from config.yaml's
/// sources and the lock's pins, never the lock's `url` ([`crate::lock::derive`]).
pub fn download_url(model: &LockedModel, file: &LockedFile, origin: Origin<'_>) -> Result<String, PlanError> {
    let cx = crate::lock::derive::UrlContext {
        hub_endpoint: origin.hub_endpoint,
        sources: origin.sources,
    };
    if model.source.used_in_place() {
        return Err(PlanError::Underivable {
            label: format!("{}/{}", model.name, file.path),
            kind: model.source,
            why: "local files are used in place".into(),
            model: model.name.clone(),
        });
    }
    crate::lock::derive::file_url(model, file, cx).map_err(|why| PlanError::Underivable {
        label: format!("{}/{}", model.name, file.path),
        kind: model.source,
        why,
        model: model.name.clone(),
    })
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} file(s) up to date, {} to fetch ({}), {} extraneous",
            self.cached.len(),
            self.fetch.len(),
            crate::units::human_bytes(self.fetch_bytes()),
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
                crate::units::human_bytes(file.file.size)
            )?;
        }
        for path in &self.extraneous {
            writeln!(f, "  extra  {path}  (not in the lock; `mdl clean` removes it)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::Source;

    fn lock() -> Lockfile {
        let file = |p: &str, b: &str| LockedFile {
            path: p.into(),
            size: 1,
            blake3: b.into(),
            etag: None,
            sha256: None,
            url: String::new(),
            xet_hash: None,
        };
        let mut lock = Lockfile::default();
        lock.models.insert(
            "acme/a".into(),
            LockedModel {
                name: "acme/a".into(),
                source: Source::named("huggingface").unwrap(),
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

    fn origin() -> Origin<'static> {
        static SOURCES: std::sync::OnceLock<crate::sources::Sources> = std::sync::OnceLock::new();
        Origin {
            models_root: Path::new("/m"),
            hub_endpoint: "http://hub",
            token: Some("secret"),
            insecure_urls: false,
            sources: SOURCES.get_or_init(Default::default),
        }
    }

    #[test]
    fn hub_downloads_come_from_the_endpoint_at_the_commit_with_the_token() {
        let mut lock = lock();
        lock.models.get_mut("acme/a").unwrap().commit = Some("c".repeat(40));
        let plan = Plan::new(&lock, &Survey::default(), &BTreeSet::new());
        let downloads = plan.downloads(&lock, LockMode::Write, origin()).unwrap();
        assert_eq!(downloads.len(), 3);
        assert_eq!(
            downloads[0].url,
            format!("http://hub/acme/a/resolve/{}/x", "c".repeat(40))
        );
        assert_eq!(downloads[0].dest, Path::new("/m/huggingface_acme--a/x"));
        assert_eq!(downloads[0].authorization.as_deref(), Some("Bearer secret"));
        assert_eq!(downloads[0].expect.blake3.as_deref(), Some("1"));
    }

    #[test]
    fn url_downloads_never_carry_the_token() {
        let mut lock = lock();
        let model = lock.models.get_mut("acme/a").unwrap();
        model.source = Source::named("url").unwrap();
        model.id = "https://cdn/x".into();
        // The lock's `url` is never where a download goes: the id is.
        model
            .files
            .iter_mut()
            .for_each(|f| f.url = "https://elsewhere/x".into());
        let plan = Plan::new(&lock, &Survey::default(), &BTreeSet::new());
        let downloads = plan.downloads(&lock, LockMode::Write, origin()).unwrap();
        assert!(downloads
            .iter()
            .all(|d| d.authorization.is_none() && d.url == "https://cdn/x"));
    }

    #[test]
    fn offline_and_changed_local_models_are_refused_before_any_fetch() {
        let lock = lock();
        let plan = Plan::new(&lock, &Survey::default(), &BTreeSet::new());
        let refusal = plan.downloads(&lock, LockMode::Offline, origin()).unwrap_err();
        assert_eq!(refusal.errors.len(), 3);
        assert!(refusal.summary.contains("offline"), "{}", refusal.summary);

        let mut local = lock.clone();
        local.models.get_mut("acme/a").unwrap().source = Source::named("local").unwrap();
        let refusal = plan.downloads(&local, LockMode::Write, origin()).unwrap_err();
        assert!(matches!(refusal.errors[0], PlanError::LocalChanged { .. }));
        // Nothing to fetch: nothing to refuse, even offline.
        let empty = Plan::default();
        assert!(empty.downloads(&lock, LockMode::Offline, origin()).unwrap().is_empty());
    }
}
