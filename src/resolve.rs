//! Resolution: asks each source what a wanted model is right now — the Hub
//! commit a revision points at and its files (with sizes and LFS sha256), or a
//! URL's final location after redirects — without downloading anything.
//!
//! mdl talks to the Hub API itself rather than through hf-hub's `Api`: the lock
//! needs every file's size, LFS sha256 and git blob id in one call
//! (`/api/models/{repo}/revision/{rev}?blobs=true`), and downloads go through
//! mdl's own engine (resumable, concurrent, hash-checked), which hf-hub's
//! downloader is not. hf-hub is used for what it is good at here: finding the
//! token (see `env`).

use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::{AUTHORIZATION, ETAG};
use reqwest::StatusCode;
use serde::Deserialize;

use crate::config::{ModelSpec, Sources};
use crate::fetch::normalize_etag;
use crate::model_id::{ModelId, Source};
use crate::reporter::{Event, Reporter};
use crate::source::torchvision;
use crate::store::safe_relative_path;

/// Path-segment encoding: everything but unreserved characters, so a revision
/// like `refs/pr/1` becomes one segment (`refs%2Fpr%2F1`), as the Python client does.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
/// File paths keep their `/`.
const PATH: &AsciiSet = &SEGMENT.remove(b'/');

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("the Hub has no repository `{repo}` (model `{model}`)")]
    RepoNotFound { model: String, repo: String },
    #[error("the Hub repository `{repo}` has no revision `{revision}` (model `{model}`)")]
    RevisionNotFound {
        model: String,
        repo: String,
        revision: String,
    },
    #[error("the Hub repository `{repo}` is gated or private and needs a token (model `{model}`)")]
    Unauthorized {
        model: String,
        repo: String,
        token_sent: bool,
    },
    #[error("resolving `{model}` failed: the server answered {status} for `{url}`{}", message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Http {
        model: String,
        url: String,
        status: u16,
        message: Option<String>,
    },
    #[error("resolving `{model}` failed: could not reach `{url}`: {reason}")]
    Network { model: String, url: String, reason: String },
    #[error("resolving `{model}` failed: `{url}` sent an answer mdl does not understand: {message}")]
    BadResponse {
        model: String,
        url: String,
        message: String,
    },
    #[error("no file of `{repo}` at `{commit}` matches the include/exclude filters of model `{model}`")]
    NothingMatches {
        model: String,
        repo: String,
        commit: String,
    },
    #[error("model `{model}`: {source}")]
    Unsafe {
        model: String,
        #[source]
        source: crate::store::StoreError,
    },
    #[error("torchvision has no model `{model}` (model `{name}`)")]
    UnknownTorchvisionModel {
        name: String,
        model: String,
        similar: Vec<String>,
    },
    #[error("torchvision's `{model}` has no weights `{weights}`")]
    UnknownTorchvisionWeights {
        model: String,
        weights: String,
        available: Vec<String>,
    },
    #[error("no weights are known for the PyTorch Hub entry `{entry}` (model `{model}`)")]
    NoHubWeights { model: String, entry: String },
    #[error("`{name}` was not found in any enabled source")]
    Undetected { name: String, tried: Vec<String> },
    #[error("the local model `{name}` does not exist at `{}`", path.display())]
    LocalMissing { name: String, path: std::path::PathBuf },
    #[error("could not read the local model `{name}` at `{}`", path.display())]
    LocalIo {
        name: String,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ResolveError {
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            ResolveError::RepoNotFound { .. } => {
                "check the repo id's spelling; for a private repository set `HF_TOKEN`".into()
            }
            ResolveError::RevisionNotFound { .. } => {
                "use an existing branch, tag or full commit sha after `@` (or in `revision:`)".into()
            }
            ResolveError::Unauthorized { token_sent: false, .. } => {
                "set `HF_TOKEN` (or run `hf auth login`) with a token that was granted access".into()
            }
            ResolveError::Unauthorized { token_sent: true, .. } => {
                "the token was refused: check `HF_TOKEN` or `$HF_HOME/token`, and that it was granted access".into()
            }
            ResolveError::Network { .. } => {
                "check the network, `HF_ENDPOINT`, and proxies; `--offline` syncs what is already locked".into()
            }
            ResolveError::NothingMatches { .. } => "loosen `include:` / `exclude:` for this model".into(),
            ResolveError::Unsafe { source, .. } => return source.hint(),
            ResolveError::UnknownTorchvisionModel { similar, .. } if !similar.is_empty() => {
                format!("similar models: {}", similar.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", "))
            }
            ResolveError::UnknownTorchvisionModel { .. } => {
                "add it under `models.download.sources.torchvision.catalog` with its file name or URL".into()
            }
            ResolveError::UnknownTorchvisionWeights { available, .. } => format!("available weights: {}", available.join(", ")),
            ResolveError::Undetected { tried, .. } => format!(
                "tried, in order:\n{}\nhint: write the source explicitly (`torchvision:…`, `huggingface:org/name`, `url:…`)",
                tried.iter().map(|t| format!("  - {t}")).collect::<Vec<_>>().join("\n")
            ),
            ResolveError::NoHubWeights { entry, .. } => format!(
                "mdl cannot run `hubconf.py` (it needs Python); give the entry's weight URL in config: \
                 `models.download.sources.pytorch_hub.weights: {{ \"{entry}\": \"https://…/weights.pth\" }}`"
            ),
            ResolveError::LocalMissing { .. } => "fix the path (relative paths start from the directory of config.yaml)".into(),
            ResolveError::Http { .. } | ResolveError::BadResponse { .. } | ResolveError::LocalIo { .. } => return None,
        })
    }
}

/// A file of a resolved model, before it is downloaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteFile {
    pub path: String,
    pub size: Option<u64>,
    pub url: String,
    /// The ETag the source will send (git blob id, or LFS sha256).
    pub etag: Option<String>,
    pub sha256: Option<String>,
    pub git_oid: Option<String>,
    /// Send the Hub token with this file's request.
    pub needs_token: bool,
    /// torchvision names carry a sha256 prefix that the download must match.
    pub sha256_prefix: Option<String>,
}

/// A model as the source describes it now.
#[derive(Clone, Debug)]
pub struct ResolvedModel {
    /// The source it came from (for a bare name: the detected one).
    pub source: Source,
    /// The source-specific id to lock (repo id, URL, torchvision model, path).
    pub id: String,
    /// The requested or chosen revision (Hub revision, torchvision weights).
    pub revision: Option<String>,
    pub commit: Option<String>,
    pub resolved_url: Option<String>,
    pub files: Vec<RemoteFile>,
}

#[derive(Deserialize)]
struct RepoInfo {
    sha: Option<String>,
    #[serde(default)]
    siblings: Option<Vec<Sibling>>,
}

#[derive(Deserialize)]
struct Sibling {
    rfilename: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default, rename = "blobId")]
    blob_id: Option<String>,
    #[serde(default)]
    lfs: Option<Lfs>,
}

#[derive(Deserialize)]
struct Lfs {
    sha256: String,
    size: u64,
}

/// Talks to the sources' metadata endpoints.
pub struct Resolver<'a> {
    pub http: &'a reqwest::Client,
    pub endpoint: String,
    pub token: Option<String>,
    pub reporter: &'a dyn Reporter,
    pub attempts: u32,
    pub sources: &'a Sources,
    /// Relative local paths start here (the directory of config.yaml).
    pub project_dir: std::path::PathBuf,
}

fn filters(spec: &ModelSpec) -> (Option<GlobSet>, GlobSet) {
    let build = |globs: &[String]| {
        let mut b = GlobSetBuilder::new();
        for g in globs {
            // Validated when the config was parsed.
            b.add(Glob::new(g).expect("valid glob"));
        }
        b.build().expect("valid glob set")
    };
    let include = (!spec.include.is_empty()).then(|| build(&spec.include));
    (include, build(&spec.exclude))
}

impl Resolver<'_> {
    /// The resolve URL of a file at a commit.
    pub fn file_url(&self, repo: &str, commit: &str, path: &str) -> String {
        hub_file_url(&self.endpoint, repo, commit, path)
    }

    pub async fn resolve(&self, spec: &ModelSpec) -> Result<ResolvedModel, ResolveError> {
        self.reporter.report(Event::Resolving { model: &spec.name });
        match &spec.id {
            ModelId::Huggingface { repo, revision } => self.resolve_hub(spec, repo, revision.as_deref()).await,
            ModelId::Url { url } => self.resolve_url(spec, url).await,
            ModelId::Torchvision { model, weights } => self.resolve_torchvision(spec, model, weights.as_deref()).await,
            ModelId::Local { path } => self.resolve_local(spec, path),
            ModelId::Auto { name } => self.resolve_auto(spec, name).await,
            ModelId::PytorchHub {
                owner,
                repo,
                reference,
                entry,
                ..
            } => {
                self.resolve_pytorch_hub(spec, owner, repo, reference.as_deref(), entry)
                    .await
            }
        }
    }

    /// A PyTorch Hub entry, as torch.hub fetches it: the ref pinned to a commit
    /// through the GitHub API (no ref: `main`, else `master`), the repository
    /// archive at that commit, and the entry's weights — from the torchvision
    /// catalog for `pytorch/vision`, else from `sources.pytorch_hub.weights`
    /// (mdl cannot run `hubconf.py`, which needs Python).
    async fn resolve_pytorch_hub(
        &self,
        spec: &ModelSpec,
        owner: &str,
        repo: &str,
        reference: Option<&str>,
        entry: &str,
    ) -> Result<ResolvedModel, ResolveError> {
        let hub = &self.sources.pytorch_hub;
        let api = hub
            .api_url
            .as_deref()
            .unwrap_or("https://api.github.com")
            .trim_end_matches('/');
        let github = hub
            .github_url
            .as_deref()
            .unwrap_or("https://github.com")
            .trim_end_matches('/');
        let refs: Vec<&str> = match reference {
            Some(r) => vec![r],
            None => vec!["main", "master"],
        };
        let model = &spec.name;
        let mut commit = None;
        for r in &refs {
            let url = format!("{api}/repos/{owner}/{repo}/commits/{}", utf8_percent_encode(r, SEGMENT));
            let response = self.send(model, reqwest::Method::GET, &url, false).await?;
            match response.status().as_u16() {
                200 => {
                    #[derive(Deserialize)]
                    struct Commit {
                        sha: String,
                    }
                    let body = response.bytes().await.map_err(|e| ResolveError::Network {
                        model: model.clone(),
                        url: url.clone(),
                        reason: e.to_string(),
                    })?;
                    let parsed: Commit = serde_json::from_slice(&body).map_err(|e| ResolveError::BadResponse {
                        model: model.clone(),
                        url: url.clone(),
                        message: e.to_string(),
                    })?;
                    commit = Some(parsed.sha);
                    break;
                }
                404 | 422 => continue,
                status => {
                    return Err(ResolveError::Http {
                        model: model.clone(),
                        url,
                        status,
                        message: None,
                    })
                }
            }
        }
        let repo_id = format!("{owner}/{repo}");
        let Some(commit) = commit.filter(|c| c.len() == 40 && c.chars().all(|x| x.is_ascii_hexdigit())) else {
            return Err(ResolveError::RevisionNotFound {
                model: model.clone(),
                repo: repo_id,
                revision: refs.join(" or "),
            });
        };
        let mut archive = self
            .resolve_url(spec, &format!("{github}/{owner}/{repo}/zipball/{commit}"))
            .await?;
        let mut files = std::mem::take(&mut archive.files);
        for f in &mut files {
            // The code torch.hub would import, at the pinned commit.
            f.path = format!("{owner}_{repo}_{}.zip", &commit[..12]);
        }
        let weights = if owner == "pytorch" && repo == "vision" {
            let tv = self.resolve_torchvision(spec, entry, None).await?;
            tv.files
        } else {
            let key = format!("{owner}/{repo}/{entry}");
            let urls = hub.weights.get(&key).map(|w| w.urls()).unwrap_or_default();
            if urls.is_empty() {
                return Err(ResolveError::NoHubWeights {
                    model: model.clone(),
                    entry: key,
                });
            }
            let mut out = Vec::new();
            for url in urls {
                out.extend(self.resolve_url(spec, &url).await?.files);
            }
            out
        };
        files.extend(weights);
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(ResolvedModel {
            source: Source::PytorchHub,
            id: repo_id,
            revision: reference.map(str::to_string),
            commit: Some(commit),
            resolved_url: None,
            files,
        })
    }

    /// A bare name, in the seed's order: the torchvision catalog, then PyTorch
    /// Hub (which cannot list entries by bare name), then the Hugging Face Hub.
    async fn resolve_auto(&self, spec: &ModelSpec, name: &str) -> Result<ResolvedModel, ResolveError> {
        let mut tried = Vec::new();
        let tv = &self.sources.torchvision;
        if !tv.enabled {
            tried.push("torchvision: the source is disabled".to_string());
        } else if torchvision::knows(name, &tv.catalog) {
            return self.resolve_torchvision(spec, name, None).await;
        } else {
            let similar = match torchvision::lookup(name, None, None, &tv.catalog) {
                Err(torchvision::LookupError::UnknownModel { similar }) if !similar.is_empty() => {
                    format!(" (similar: {})", similar.join(", "))
                }
                _ => String::new(),
            };
            tried.push(format!("torchvision catalog: no model `{name}`{similar}"));
        }
        tried.push("PyTorch Hub: not searched; an entry needs `pytorch_hub:owner/repo/entry`".to_string());
        if !self.sources.huggingface.enabled {
            tried.push("Hugging Face Hub: the source is disabled".to_string());
        } else {
            match self.resolve_hub(spec, name, None).await {
                Ok(model) => return Ok(model),
                Err(ResolveError::RepoNotFound { .. }) => {
                    tried.push(format!("Hugging Face Hub ({}): no repository `{name}`", self.endpoint))
                }
                Err(other) => return Err(other),
            }
        }
        Err(ResolveError::Undetected {
            name: name.to_string(),
            tried,
        })
    }

    async fn resolve_torchvision(
        &self,
        spec: &ModelSpec,
        model: &str,
        weights: Option<&str>,
    ) -> Result<ResolvedModel, ResolveError> {
        let tv = &self.sources.torchvision;
        let weight = torchvision::lookup(model, weights, tv.base_url.as_deref(), &tv.catalog).map_err(|e| match e {
            torchvision::LookupError::UnknownModel { similar } => ResolveError::UnknownTorchvisionModel {
                name: spec.name.clone(),
                model: model.into(),
                similar,
            },
            torchvision::LookupError::UnknownWeights { available } => ResolveError::UnknownTorchvisionWeights {
                model: model.into(),
                weights: weights.unwrap_or_default().into(),
                available,
            },
        })?;
        let mut resolved = self.resolve_url(spec, &weight.url).await?;
        resolved.source = Source::Torchvision;
        resolved.id = weight.model.clone();
        resolved.revision = Some(weight.weights.clone());
        for file in &mut resolved.files {
            file.path = weight.file_name.clone();
            // torch.hub checks this for every torchvision download; so does mdl.
            file.sha256_prefix = torchvision::hash_prefix(&weight.file_name);
        }
        Ok(resolved)
    }

    /// A local file or directory: its files, used in place (never copied).
    /// Each file's `url` is its path as reachable from the project directory.
    fn resolve_local(&self, spec: &ModelSpec, path: &str) -> Result<ResolvedModel, ResolveError> {
        let full = self.project_dir.join(expand_home(path));
        let meta = std::fs::metadata(&full).map_err(|_| ResolveError::LocalMissing {
            name: spec.name.clone(),
            path: full.clone(),
        })?;
        let io = |e| ResolveError::LocalIo {
            name: spec.name.clone(),
            path: full.clone(),
            source: e,
        };
        let local = |rel: String, location: String, size: u64| RemoteFile {
            path: rel,
            size: Some(size),
            url: location,
            etag: None,
            sha256: None,
            git_oid: None,
            needs_token: false,
            sha256_prefix: None,
        };
        let mut files = Vec::new();
        if meta.is_file() {
            let name = full
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".into());
            files.push(local(name, path.to_string(), meta.len()));
        } else {
            let mut stack = vec![(full.clone(), String::new())];
            while let Some((dir, prefix)) = stack.pop() {
                for entry in std::fs::read_dir(&dir).map_err(io)? {
                    let entry = entry.map_err(io)?;
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name.starts_with('.') {
                        continue; // .git, editor swap files, …
                    }
                    let rel = if prefix.is_empty() {
                        name.clone()
                    } else {
                        format!("{prefix}/{name}")
                    };
                    let kind = entry.file_type().map_err(io)?;
                    if kind.is_dir() {
                        stack.push((entry.path(), rel));
                    } else if kind.is_file() {
                        let size = entry.metadata().map_err(io)?.len();
                        files.push(local(
                            rel.clone(),
                            format!("{}/{rel}", path.trim_end_matches('/')),
                            size,
                        ));
                    }
                }
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(ResolvedModel {
            source: Source::Local,
            id: path.to_string(),
            revision: None,
            commit: None,
            resolved_url: None,
            files,
        })
    }

    /// Sends a GET or HEAD, retrying connection errors, 429 and 5xx with backoff.
    async fn send(
        &self,
        model: &str,
        method: reqwest::Method,
        url: &str,
        token: bool,
    ) -> Result<reqwest::Response, ResolveError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self.http.request(method.clone(), url);
            if token {
                if let Some(t) = &self.token {
                    request = request.header(AUTHORIZATION, format!("Bearer {t}"));
                }
            }
            self.reporter.report(Event::Request {
                method: method.as_str(),
                url,
            });
            let reason = match request.timeout(Duration::from_secs(60)).send().await {
                Ok(r) if r.status().is_server_error() || r.status() == StatusCode::TOO_MANY_REQUESTS => {
                    format!("the server answered {}", r.status())
                }
                Ok(r) => return Ok(r),
                // The URL is already in the message; say what went wrong.
                Err(e) => crate::fetch::describe_reqwest(&e),
            };
            if attempt >= self.attempts {
                return Err(ResolveError::Network {
                    model: model.into(),
                    url: url.into(),
                    reason,
                });
            }
            crate::fetch::pause_before_retry(self.reporter, model, attempt, &reason, None).await;
        }
    }

    async fn resolve_hub(
        &self,
        spec: &ModelSpec,
        repo: &str,
        requested: Option<&str>,
    ) -> Result<ResolvedModel, ResolveError> {
        let model = &spec.name;
        let revision = requested.unwrap_or("main");
        let url = format!(
            "{}/api/models/{repo}/revision/{}?blobs=true",
            self.endpoint,
            utf8_percent_encode(revision, SEGMENT)
        );
        let response = self.send(model, reqwest::Method::GET, &url, true).await?;
        let status = response.status();
        if !status.is_success() {
            let code = response
                .headers()
                .get("x-error-code")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let message = response
                .headers()
                .get("x-error-message")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            return Err(match (status.as_u16(), code.as_deref()) {
                (_, Some("RepoNotFound")) => ResolveError::RepoNotFound {
                    model: model.clone(),
                    repo: repo.into(),
                },
                (_, Some("RevisionNotFound")) => ResolveError::RevisionNotFound {
                    model: model.clone(),
                    repo: repo.into(),
                    revision: revision.into(),
                },
                (401 | 403, _) | (_, Some("GatedRepo")) => ResolveError::Unauthorized {
                    model: model.clone(),
                    repo: repo.into(),
                    token_sent: self.token.is_some(),
                },
                (404, _) => ResolveError::RepoNotFound {
                    model: model.clone(),
                    repo: repo.into(),
                },
                (status, _) => ResolveError::Http {
                    model: model.clone(),
                    url,
                    status,
                    message,
                },
            });
        }
        let body = response.bytes().await.map_err(|e| ResolveError::Network {
            model: model.clone(),
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let info: RepoInfo = serde_json::from_slice(&body).map_err(|e| ResolveError::BadResponse {
            model: model.clone(),
            url: url.clone(),
            message: e.to_string(),
        })?;
        let bad = |message: &str| ResolveError::BadResponse {
            model: model.clone(),
            url: url.clone(),
            message: message.into(),
        };
        let commit = info.sha.ok_or_else(|| bad("no `sha` field"))?;
        if commit.len() != 40 || !commit.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad("`sha` is not a 40-hex commit id"));
        }
        let siblings = info.siblings.ok_or_else(|| bad("no `siblings` field"))?;
        let (include, exclude) = filters(spec);
        let mut files = Vec::new();
        for sibling in siblings {
            let path = sibling.rfilename;
            // Refuse escaping names before anything is written.
            safe_relative_path(&path).map_err(|source| ResolveError::Unsafe {
                model: model.clone(),
                source,
            })?;
            if include.as_ref().is_some_and(|g| !g.is_match(&path)) || exclude.is_match(&path) {
                continue;
            }
            let (size, etag, sha256) = match &sibling.lfs {
                Some(lfs) => (Some(lfs.size), Some(lfs.sha256.clone()), Some(lfs.sha256.clone())),
                None => (sibling.size, sibling.blob_id.clone(), None),
            };
            files.push(RemoteFile {
                url: self.file_url(repo, &commit, &path),
                path,
                size,
                etag,
                sha256,
                git_oid: if sibling.lfs.is_none() { sibling.blob_id } else { None },
                needs_token: true,
                sha256_prefix: None,
            });
        }
        if files.is_empty() {
            return Err(ResolveError::NothingMatches {
                model: model.clone(),
                repo: repo.into(),
                commit,
            });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(ResolvedModel {
            source: Source::Huggingface,
            id: repo.to_string(),
            revision: requested.map(str::to_string),
            commit: Some(commit),
            resolved_url: None,
            files,
        })
    }

    /// A HEAD that follows redirects gives the final URL, ETag and size. Servers
    /// that refuse HEAD are resolved by the download itself.
    async fn resolve_url(&self, spec: &ModelSpec, url: &str) -> Result<ResolvedModel, ResolveError> {
        let model = &spec.name;
        let response = self.send(model, reqwest::Method::HEAD, url, false).await?;
        let status = response.status();
        let file_name = url
            .split(['?', '#'])
            .next()
            .unwrap_or(url)
            .rsplit('/')
            .next()
            .unwrap_or("model")
            .to_string();
        let (final_url, etag, size) = if status.is_success() {
            let etag = response
                .headers()
                .get(ETAG)
                .and_then(|v| v.to_str().ok())
                .map(normalize_etag);
            // Not `content_length()`: for HEAD that is the (empty) body's size.
            let size = response
                .headers()
                .get(reqwest::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|_| etag_or_size_trusted(&response));
            (response.url().to_string(), etag, size)
        } else if matches!(status.as_u16(), 405 | 501) {
            (url.to_string(), None, None)
        } else {
            let message = response
                .headers()
                .get("x-error-message")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            return Err(ResolveError::Http {
                model: model.clone(),
                url: url.into(),
                status: status.as_u16(),
                message,
            });
        };
        safe_relative_path(&file_name).map_err(|source| ResolveError::Unsafe {
            model: model.clone(),
            source,
        })?;
        Ok(ResolvedModel {
            source: Source::Url,
            id: url.to_string(),
            revision: None,
            commit: None,
            resolved_url: Some(final_url.clone()),
            files: vec![RemoteFile {
                path: file_name,
                size,
                url: final_url,
                etag,
                sha256: None,
                git_oid: None,
                needs_token: false,
                sha256_prefix: None,
            }],
        })
    }
}

/// A HEAD's Content-Length is only the body's size when no content coding applies.
fn etag_or_size_trusted(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get(reqwest::header::CONTENT_ENCODING)
        .is_none_or(|v| v.as_bytes().eq_ignore_ascii_case(b"identity"))
}

/// `~/x` → `$HOME/x`; other paths unchanged.
pub fn expand_home(path: &str) -> std::path::PathBuf {
    match path.strip_prefix("~/") {
        Some(rest) => std::env::var_os("HOME")
            .map(std::path::PathBuf::from)
            .unwrap_or_default()
            .join(rest),
        None => std::path::PathBuf::from(path),
    }
}

/// `{endpoint}/{repo}/resolve/{commit}/{path}`, encoded as the Python client does.
pub fn hub_file_url(endpoint: &str, repo: &str, commit: &str, path: &str) -> String {
    format!(
        "{endpoint}/{repo}/resolve/{}/{}",
        utf8_percent_encode(commit, SEGMENT),
        utf8_percent_encode(path, PATH)
    )
}
