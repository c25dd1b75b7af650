//! Resolution: asks each source what a wanted model is right now — the Hub
//! commit a revision points at and its files (with sizes and LFS sha256), or a
//! URL's final location after redirects — without downloading anything.
//!
//! This file holds what every source shares (the [`Resolver`] with its HTTP
//! retry loop, [`ResolvedModel`], [`ResolveError`]) and dispatches on the
//! model id; each source resolves in its own file: `huggingface.rs`, `url.rs`,
//! `torchvision.rs` (with its generated catalog), `pytorch_hub.rs`, `local.rs`,
//! and `auto.rs` for bare names. Facts about a source that other stages need
//! (used in place? sends the token?) are on [`crate::source::Source`].
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
use reqwest::header::AUTHORIZATION;
use reqwest::StatusCode;

use crate::config::{ModelSpec, Sources};
use crate::model_id::ModelId;
use crate::reporter::{Event, Reporter};
use crate::source::Source;

mod auto;
mod huggingface;
mod huggingface_cache;
mod local;
mod oci;
mod pytorch_hub;
pub mod torchvision;
mod torchvision_catalog;
mod url;

pub use self::huggingface_cache::{Cached, HubCache};
pub use self::url::url_file_name;

/// Path-segment encoding: everything but unreserved characters, so a revision
/// like `refs/pr/1` becomes one segment (`refs%2Fpr%2F1`), as the Python client does.
pub(crate) const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
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
    #[error("model `{model}` cannot be resolved offline: the Hugging Face cache does not hold `{repo}` at `{revision}` ({reason})")]
    NotInHfCache {
        model: String,
        repo: String,
        revision: String,
        reason: String,
    },
    #[error("model `{model}` cannot be resolved offline: only Hub models are resolved from the Hugging Face cache")]
    OfflineSource { model: String },
    #[error("resolving `{model}` failed: could not reach `{url}`: {reason}")]
    Network { model: String, url: String, reason: String },
    #[error("resolving `{model}` failed: the certificate of `{url}` is not trusted ({reason})")]
    Untrusted { model: String, url: String, reason: String },
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
    #[error("`{first}` and `{second}` of model `{model}` are one file on a case-insensitive file system")]
    CaseCollision {
        model: String,
        first: String,
        second: String,
    },
    #[error("model `{model}`: {source}")]
    Unsafe {
        model: String,
        #[source]
        source: crate::fs::UnsafePath,
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
    /// The registry's error, named for the model (not chained as a cause:
    /// the message already says it).
    #[error("model `{model}`: {error}")]
    Oci { model: String, error: crate::oci::OciError },
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
            ResolveError::Untrusted { .. } => crate::http::UNTRUSTED_CERTIFICATE_HINT.into(),
            ResolveError::Network { .. } => {
                "check the network, `HF_ENDPOINT`, and proxies; `--offline` syncs what is already locked".into()
            }
            ResolveError::NotInHfCache { repo, revision, .. } => format!(
                "run `mdl lock` online, or fill the cache first (`hf download {repo} --revision {revision}`)"
            ),
            ResolveError::OfflineSource { .. } => "run `mdl lock` online; `--offline` syncs what is already locked".into(),
            ResolveError::NothingMatches { .. } => "loosen `include:` / `exclude:` for this model".into(),
            ResolveError::CaseCollision { second, .. } => {
                format!("exclude one of them (`exclude: [\"{second}\"]`), or report the repository upstream")
            }
            ResolveError::Unsafe { .. } => {
                "the upstream repository holds a file name mdl refuses to write; exclude it with `exclude:` or report it upstream".into()
            }
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
            ResolveError::Oci { error, .. } => return error.hint(),
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
    /// The Hub's Xet file hash (64 lowercase hex) for Xet-backed files: what
    /// the CAS rebuilds the file by, and the Merkle root its chunks must hash to.
    pub xet_hash: Option<String>,
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
    pub files: Vec<RemoteFile>,
}

/// The largest metadata answer read (a repository listing of 100,000 files is
/// about 20 MiB): a server that sends more is refused, not buffered.
pub const MAX_ANSWER_BYTES: usize = 64 << 20;

/// Reads a metadata answer's body, refusing one larger than [`MAX_ANSWER_BYTES`].
async fn read_answer(model: &str, url: &str, response: reqwest::Response) -> Result<Vec<u8>, ResolveError> {
    use futures_util::StreamExt;
    let too_big = || ResolveError::BadResponse {
        model: model.into(),
        url: url.into(),
        message: format!("the answer is larger than {} MiB", MAX_ANSWER_BYTES >> 20),
    };
    if response.content_length().is_some_and(|n| n > MAX_ANSWER_BYTES as u64) {
        return Err(too_big());
    }
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ResolveError::Network {
            model: model.into(),
            url: url.into(),
            reason: crate::http::describe_body(&e, url),
        })?;
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// How a resolve request is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    /// To the Hub, with its token, certificates checked.
    Hub,
    /// Anywhere else, no token, certificates checked.
    Plain,
    /// A `url:` model under `sources.url.verify_ssl: false`: no token, no checks.
    Unverified,
}

/// Talks to the sources' metadata endpoints.
pub struct Resolver<'a> {
    /// Checks certificates; every token-bearing request goes through it.
    pub http: &'a reqwest::Client,
    /// Without certificate checks (`sources.url.verify_ssl: false`), for `url:`
    /// models only, never with a token.
    pub unverified_http: Option<&'a reqwest::Client>,
    pub endpoint: String,
    pub token: Option<String>,
    pub reporter: &'a dyn Reporter,
    pub attempts: u32,
    pub sources: &'a Sources,
    /// Relative local paths start here (the directory of config.yaml).
    pub project_dir: std::path::PathBuf,
    /// OCI registries, for `oci:` models.
    pub registries: &'a crate::oci::Registries,
    /// The Hugging Face cache: what a bare listing leaves out, and every Hub
    /// model when `offline`.
    pub hf_cache: &'a dyn HubCache,
    /// No request at all (`--offline`, `HF_HUB_OFFLINE=1`): Hub models are
    /// resolved from the Hugging Face cache, other sources refused.
    pub offline: bool,
    /// Fill what a bare listing leaves out from the Hugging Face cache's
    /// map; off when asking what the source itself states (`lock::confirm`).
    pub cache_hints: bool,
}

pub(crate) fn filters(spec: &ModelSpec) -> (Option<GlobSet>, GlobSet) {
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
        crate::failpoint::kill_point("resolve::model");
        match &spec.id {
            ModelId::Huggingface { repo, revision } if self.offline => {
                self.resolve_hub_offline(spec, repo, revision.as_deref())
            }
            _ if self.offline => Err(ResolveError::OfflineSource {
                model: spec.name.clone(),
            }),
            ModelId::Huggingface { repo, revision } => self.resolve_hub(spec, repo, revision.as_deref()).await,
            ModelId::Url { url } => self.resolve_url(spec, url).await,
            ModelId::Torchvision { model, weights } => self.resolve_torchvision(spec, model, weights.as_deref()).await,
            ModelId::Local { path } => self.resolve_local(spec, path),
            ModelId::Auto { name } => self.resolve_auto(spec, name).await,
            ModelId::Oci { repo, revision } => self.resolve_oci(spec, repo, revision.as_deref()).await,
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

    /// Resolves every spec, at most `jobs` at once; results in spec order.
    pub async fn resolve_all(&self, specs: &[&ModelSpec], jobs: usize) -> Vec<Result<ResolvedModel, ResolveError>> {
        use futures_util::StreamExt;
        // The futures are built first (not in a `.map` closure over the stream):
        // that keeps the whole sync future `Send` for `tokio::spawn` (`mdl watch`).
        let lookups: Vec<_> = specs
            .iter()
            .copied()
            .enumerate()
            .map(|(i, spec)| async move { (i, self.resolve(spec).await) })
            .collect();
        let mut resolved: Vec<(usize, Result<ResolvedModel, ResolveError>)> = futures_util::stream::iter(lookups)
            .buffer_unordered(jobs.max(1))
            .collect()
            .await;
        resolved.sort_by_key(|(i, _)| *i);
        resolved.into_iter().map(|(_, r)| r).collect()
    }

    /// Sends a GET or HEAD, retrying connection errors, 429 and 5xx with
    /// backoff (an untrusted certificate is not retried). `via` picks the
    /// client: only [`Via::Hub`] carries the token, only [`Via::Unverified`]
    /// skips certificate checks.
    async fn send(
        &self,
        model: &str,
        method: reqwest::Method,
        url: &str,
        via: Via,
    ) -> Result<reqwest::Response, ResolveError> {
        let http = match (via, self.unverified_http) {
            (Via::Unverified, Some(unverified)) => unverified,
            _ => self.http,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = http.request(method.clone(), url);
            if via == Via::Hub {
                if let Some(t) = &self.token {
                    request = request.header(AUTHORIZATION, format!("Bearer {t}"));
                }
            }
            self.reporter.report(Event::Request {
                method: method.as_str(),
                url,
            });
            let (reason, wait) = match request.timeout(Duration::from_secs(60)).send().await {
                Ok(r) if r.status().is_server_error() || r.status() == StatusCode::TOO_MANY_REQUESTS => (
                    crate::http::retry_reason(r.status()),
                    crate::http::retry_after(r.headers()),
                ),
                Ok(r) => return Ok(r),
                Err(e) if crate::http::is_untrusted_certificate(&e) => {
                    return Err(ResolveError::Untrusted {
                        model: model.into(),
                        url: url.into(),
                        reason: crate::http::describe_reqwest(&e),
                    })
                }
                // The URL is already in the message; say what went wrong.
                Err(e) => (crate::http::describe_reqwest(&e), None),
            };
            if attempt >= self.attempts {
                return Err(ResolveError::Network {
                    model: model.into(),
                    url: url.into(),
                    reason,
                });
            }
            crate::http::pause_before_retry(self.reporter, model, attempt, &reason, wait).await;
        }
    }
}

/// Two names that differ only in case are one file on macOS and Windows (and
/// on a case-insensitive volume anywhere): refuse, naming both.
fn check_case_collisions(model: &str, files: &[RemoteFile]) -> Result<(), ResolveError> {
    let mut seen = std::collections::BTreeMap::new();
    for file in files {
        if let Some(first) = seen.insert(file.path.to_lowercase(), file.path.clone()) {
            return Err(ResolveError::CaseCollision {
                model: model.to_string(),
                first,
                second: file.path.clone(),
            });
        }
    }
    Ok(())
}

/// `{endpoint}/{repo}/resolve/{commit}/{path}`, encoded as the Python client does.
pub fn hub_file_url(endpoint: &str, repo: &str, commit: &str, path: &str) -> String {
    format!(
        "{endpoint}/{repo}/resolve/{}/{}",
        utf8_percent_encode(commit, SEGMENT),
        utf8_percent_encode(path, PATH)
    )
}
