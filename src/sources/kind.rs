//! What every source is, and what they share: the [`SourceKind`] trait each
//! `sources/<name>.rs` implements, the [`Source`] handle the rest of mdl
//! holds, the parsed [`ModelId`], the [`Resolver`] with its HTTP retry loop,
//! [`ResolvedModel`] and [`ResolveError`], and the views of a lock entry a
//! source answers about ([`Pinned`], [`PinnedFile`]).
//!
//! Nothing here knows a particular source: `mod.rs` registers them.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use futures_util::future::BoxFuture;
use globset::{Glob, GlobSet, GlobSetBuilder};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::AUTHORIZATION;
use reqwest::StatusCode;

use crate::reporter::{Event, Reporter};

/// Path-segment encoding: everything but unreserved characters, so a revision
/// like `refs/pr/1` becomes one segment (`refs%2Fpr%2F1`), as the Python client does.
pub const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
/// File paths keep their `/`.
const PATH: &AsciiSet = &SEGMENT.remove(b'/');

/// One source of models: everything mdl does differently per source, asked
/// through this trait. Each is a unit struct in `sources/<name>.rs`,
/// registered by one line in `sources/mod.rs`.
pub trait SourceKind: Send + Sync + 'static {
    /// What users write before `:`, and the prefix of its model directories.
    fn name(&self) -> &'static str;
    /// Other names accepted before `:` (`hf` for `huggingface`).
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }
    /// How an id of this source is written (in backticks), for the list of
    /// accepted forms.
    fn form(&self) -> &'static str;
    /// Parses what follows `name:` into the locator the lock keeps and the
    /// revision written, if any. `id` is the whole id, for messages.
    fn parse(&self, id: &str, rest: &str) -> Result<(String, Option<String>), IdError>;
    /// The id as config.yaml writes it.
    fn display(&self, locator: &str, revision: Option<&str>) -> String {
        match revision {
            Some(r) => format!("{}:{locator}@{r}", self.name()),
            None => format!("{}:{locator}", self.name()),
        }
    }
    /// The model's name when config.yaml gives none.
    fn default_name(&self, locator: &str) -> String {
        locator.to_string()
    }
    /// How an entry's `revision:` combines with a revision in the id.
    fn config_revision(&self) -> ConfigRevision {
        ConfigRevision::Refused
    }

    /// Files are used where they are (never copied into `models/`); their
    /// model directory holds only `model_info.json`.
    fn used_in_place(&self) -> bool {
        false
    }
    /// Requests for this source's files carry the Hub token. Only the Hub's
    /// own files do: a token must never reach another host.
    fn sends_hub_token(&self) -> bool {
        false
    }
    /// Files are fetched from the current Hub endpoint at the locked commit
    /// (so a lock made against the Hub syncs from a mirror named by
    /// `HF_ENDPOINT`), the Hub confirms the lock's pins before any cache or
    /// mirror is used, and the Hugging Face cache may hold its files.
    fn fetched_from_hub_endpoint(&self) -> bool {
        false
    }
    /// The model's id is the URL of its one file, as the user wrote it. The
    /// lock keeps that URL, never where it redirects to, and sync follows
    /// the redirects afresh.
    fn id_is_the_file_url(&self) -> bool {
        false
    }
    /// The lock's `revision` names chosen weights (`IMAGENET1K_V1`, …), not a
    /// revision written in the id.
    fn pins_weights(&self) -> bool {
        false
    }
    /// Its files are registry blobs: their requests carry the registry's
    /// credentials (from Docker's config), obtained when they are fetched.
    fn sends_registry_credentials(&self) -> bool {
        false
    }
    /// A model of this source is one file (its id names it): `include` and
    /// `exclude` do not apply.
    fn is_single_file(&self) -> bool {
        false
    }
    /// Its files are what `torch.hub` loads (`download.torch_hub: true`
    /// places them where it looks).
    fn feeds_torch_hub(&self) -> bool {
        false
    }

    /// Its table under `models.download.sources`, with every default.
    fn default_table(&self) -> Box<dyn SourceTable> {
        Box::new(EnabledOnly::default())
    }
    /// Reads its table under `models.download.sources`.
    fn read_table(
        &self,
        d: &mut dyn erased_serde::Deserializer<'_>,
    ) -> Result<Box<dyn SourceTable>, erased_serde::Error> {
        Ok(Box::new(erased_serde::deserialize::<EnabledOnly>(d)?))
    }
    /// The JSON schema of its table.
    fn table_schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<EnabledOnly>()
    }

    /// What the model is now at the source, without downloading it.
    fn resolve<'a>(&'a self, r: &'a Resolver<'a>, want: &'a Want)
        -> BoxFuture<'a, Result<ResolvedModel, ResolveError>>;
    /// The model with no request at all (`--offline`): only from what this
    /// machine holds, or refused.
    fn resolve_offline(&self, _r: &Resolver<'_>, want: &Want) -> Result<ResolvedModel, ResolveError> {
        Err(ResolveError::OfflineSource {
            model: want.name.clone(),
        })
    }
    /// Whether [`SourceKind::resolve_offline`] can answer for `id`.
    fn held_offline(&self, _cache: &dyn HubCache, _id: &ModelId) -> bool {
        false
    }
    /// Whether a bare name (`resnet18`) is looked for in this source.
    fn detects_bare_names(&self) -> bool {
        false
    }
    /// What users call it, in messages (`Hugging Face Hub`).
    fn title(&self) -> &'static str {
        self.name()
    }
    /// A bare name (`resnet18`) looked for in this source, in registration
    /// order: `Some(Err(Undetected))` says why it is not here.
    fn detect<'a>(&'a self, _r: &'a Resolver<'a>, _want: &'a Want, _name: &'a str) -> BoxFuture<'a, Option<Detected>> {
        Box::pin(std::future::ready(None))
    }

    /// The URL to fetch `file` of `model` from now, derived from config.yaml
    /// and the lock's pins (never the lock's `url`); `Err` says why none can
    /// be derived.
    fn file_url(&self, model: &Pinned<'_>, file: &PinnedFile<'_>, cx: &UrlContext<'_>) -> Result<String, String>;
    /// Whether the lock's recorded `url` (informational) may differ from the
    /// derived one as it does.
    fn accepts_recorded_url(&self, _model: &Pinned<'_>, file: &PinnedFile<'_>, derived: &str) -> bool {
        file.url == derived
    }
    /// The lock entry's `commit`, checked: what it must be for this source.
    fn check_commit(&self, commit: Option<&str>) -> Result<(), String> {
        match commit {
            None => Ok(()),
            Some(_) => Err(format!("has no meaning for a {} model", self.name())),
        }
    }
    /// A locked file's `etag`, checked.
    fn check_etag(&self, etag: &str) -> Result<(), &'static str> {
        let printable = etag.len() <= 256
            && !etag.is_empty()
            && etag.chars().all(|c| c.is_ascii_graphic() && c != '"' && c != '\\');
        printable
            .then_some(())
            .ok_or("is not an ETag (printable text without quotes, at most 256 characters)")
    }
    /// A locked file's recorded `url`, checked.
    fn check_file_url(&self, _model: &Pinned<'_>, file: &PinnedFile<'_>) -> Result<(), &'static str> {
        is_http_url(file.url).then_some(()).ok_or("is not an http(s) URL")
    }
    /// What the lock entry as a whole must hold: the file and field at fault.
    fn check_files(&self, _files: &[PinnedFile<'_>]) -> Result<(), (usize, &'static str, &'static str)> {
        Ok(())
    }
    /// Where a Xet-backed file's read token comes from (`None`: its files are
    /// never rebuilt from Xet).
    fn xet_token_url(&self, _model: &Pinned<'_>, _endpoint: &str) -> Option<String> {
        None
    }
    /// The `torch.hub` repository `file` is the archive of: `(owner, repo,
    /// ref)`; `None` for a weight file.
    fn torch_hub_repo(&self, _model: &Pinned<'_>, _file: &PinnedFile<'_>) -> Option<(String, String, String)> {
        None
    }
}

/// How an entry's `revision:` combines with a revision in the id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigRevision {
    /// Taken; two different revisions are an error.
    Taken,
    /// Taken when the id has none; the id's own wins.
    Defaulted,
    /// The source has no revisions: `revision:` is refused.
    Refused,
}

/// A registered source: a handle to its [`SourceKind`], compared, ordered
/// and written by name.
#[derive(Clone, Copy)]
pub struct Source(pub &'static dyn SourceKind);

impl Source {
    pub fn kind(self) -> &'static dyn SourceKind {
        self.0
    }
    pub fn as_str(self) -> &'static str {
        self.0.name()
    }
    pub fn used_in_place(self) -> bool {
        self.0.used_in_place()
    }
    pub fn sends_hub_token(self) -> bool {
        self.0.sends_hub_token()
    }
    pub fn fetched_from_hub_endpoint(self) -> bool {
        self.0.fetched_from_hub_endpoint()
    }
    pub fn id_is_the_file_url(self) -> bool {
        self.0.id_is_the_file_url()
    }
    pub fn pins_weights(self) -> bool {
        self.0.pins_weights()
    }
    pub fn sends_registry_credentials(self) -> bool {
        self.0.sends_registry_credentials()
    }
    pub fn is_single_file(self) -> bool {
        self.0.is_single_file()
    }
    pub fn feeds_torch_hub(self) -> bool {
        self.0.feeds_torch_hub()
    }
    /// The directory of a model of this source under `models/`:
    /// `<source>_<name>`, `/` in the name written as `--`.
    pub fn dir_name(self, name: &str) -> String {
        format!("{}_{}", self.as_str(), name.replace('/', "--"))
    }
}

impl PartialEq for Source {
    fn eq(&self, other: &Source) -> bool {
        self.as_str() == other.as_str()
    }
}
impl Eq for Source {}
impl PartialOrd for Source {
    fn partial_cmp(&self, other: &Source) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Source {
    fn cmp(&self, other: &Source) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}
impl std::hash::Hash for Source {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl serde::Serialize for Source {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A parsed model identifier: its source (`None` for a bare name, detected
/// at lock time), the locator the lock keeps, and the revision written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelId {
    pub source: Option<Source>,
    pub locator: String,
    pub revision: Option<String>,
}

impl ModelId {
    /// An id of `source`.
    pub fn new(source: Source, locator: impl Into<String>, revision: Option<String>) -> ModelId {
        ModelId {
            source: Some(source),
            locator: locator.into(),
            revision,
        }
    }
    /// The source, or `None` for a bare name that is detected at lock time.
    pub fn source(&self) -> Option<Source> {
        self.source
    }
    /// The source-specific id as it goes in the lock (`org/name`, the URL,
    /// the torchvision model, the path, the bare name).
    pub fn locator(&self) -> &str {
        &self.locator
    }
    pub fn revision(&self) -> Option<&str> {
        self.revision.as_deref()
    }
    /// The default model name: the repo id, the URL's file stem, ….
    pub fn default_name(&self) -> String {
        match self.source {
            Some(source) => source.kind().default_name(&self.locator),
            None => self.locator.clone(),
        }
    }
}

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.source {
            Some(source) => f.write_str(&source.kind().display(&self.locator, self.revision.as_deref())),
            None => f.write_str(&self.locator),
        }
    }
}

/// Why an identifier was rejected. The message lists the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{id}` is not a model identifier: {reason}")]
pub struct IdError {
    pub id: String,
    pub reason: String,
}

impl IdError {
    pub fn new(id: &str, reason: impl Into<String>) -> IdError {
        IdError {
            id: id.to_string(),
            reason: reason.into(),
        }
    }
}

/// A letter, digit, `-`, `_` or `.` name that is not `.` or `..`: a segment
/// of most sources' ids.
pub fn is_plain_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// An http(s) URL with a host, and no control character or whitespace
/// (it may become a request line or a message).
pub fn is_http_url(value: &str) -> bool {
    (value.starts_with("https://") || value.starts_with("http://"))
        && !value.chars().any(|c| c.is_control() || c.is_whitespace())
        && reqwest::Url::parse(value).is_ok_and(|u| u.host_str().is_some_and(|h| !h.is_empty()))
}

/// A wanted model, as resolution works from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Want {
    /// The model's name (for messages and its directory).
    pub name: String,
    pub id: ModelId,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

/// A bare name a source found: its model.
pub type Detected = Result<ResolvedModel, ResolveError>;

/// A lock entry, as a source answers about it.
#[derive(Clone, Copy, Debug)]
pub struct Pinned<'a> {
    pub name: &'a str,
    pub id: &'a str,
    pub revision: Option<&'a str>,
    pub commit: Option<&'a str>,
    /// How many files the entry locks.
    pub files: usize,
}

/// A locked file, as a source answers about it.
#[derive(Clone, Copy, Debug)]
pub struct PinnedFile<'a> {
    pub path: &'a str,
    /// The URL the lock records (informational).
    pub url: &'a str,
    pub sha256: Option<&'a str>,
}

/// What deriving a file's URL needs from the project.
#[derive(Clone, Copy, Debug)]
pub struct UrlContext<'a> {
    /// `HF_ENDPOINT` (or the config's override).
    pub hub_endpoint: &'a str,
    pub sources: &'a Sources,
}

/// A source's table under `models.download.sources` (its options). Each
/// source defines its own type; [`Sources::table`] hands it back typed.
pub trait SourceTable: Any + Send + Sync + fmt::Debug + erased_serde::Serialize {
    fn enabled(&self) -> bool;
    fn as_any(&self) -> &dyn Any;
    fn clone_table(&self) -> Box<dyn SourceTable>;
}

erased_serde::serialize_trait_object!(SourceTable);

/// Implements [`SourceTable`] for a table type with an `enabled` field
/// (visible in every source's file: `kind` is declared `#[macro_use]`).
macro_rules! source_table {
    ($table:ty) => {
        impl $crate::sources::kind::SourceTable for $table {
            fn enabled(&self) -> bool {
                self.enabled
            }
            fn as_any(&self) -> &dyn std::any::Any {
                self
            }
            fn clone_table(&self) -> Box<dyn $crate::sources::kind::SourceTable> {
                Box::new(self.clone())
            }
        }
    };
}

/// A source's three table methods of [`SourceKind`] for its table type
/// (inside its `impl SourceKind`).
macro_rules! table_of {
    ($table:ty) => {
        fn default_table(&self) -> Box<dyn $crate::sources::kind::SourceTable> {
            Box::new(<$table>::default())
        }
        fn read_table(
            &self,
            d: &mut dyn erased_serde::Deserializer<'_>,
        ) -> Result<Box<dyn $crate::sources::kind::SourceTable>, erased_serde::Error> {
            Ok(Box::new(erased_serde::deserialize::<$table>(d)?))
        }
        fn table_schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
            generator.subschema_for::<$table>()
        }
    };
}

/// A source whose only option is `enabled`.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnabledOnly {
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

impl Default for EnabledOnly {
    fn default() -> Self {
        EnabledOnly { enabled: true }
    }
}

source_table!(EnabledOnly);

/// `models.download.sources`: every registered source's table, each with
/// its defaults where config.yaml says nothing.
#[derive(Debug)]
pub struct Sources {
    pub(super) tables: BTreeMap<&'static str, Box<dyn SourceTable>>,
}

impl Clone for Sources {
    fn clone(&self) -> Sources {
        Sources {
            tables: self.tables.iter().map(|(k, v)| (*k, v.clone_table())).collect(),
        }
    }
}

impl Sources {
    /// Whether `source` is enabled.
    pub fn enabled(&self, source: Source) -> bool {
        self.tables.get(source.as_str()).is_none_or(|t| t.enabled())
    }
    /// The table of type `T` (each source's own type).
    pub fn table<T: SourceTable + Default + Clone>(&self) -> std::borrow::Cow<'_, T> {
        let found = self.tables.values().find_map(|t| t.as_any().downcast_ref::<T>());
        match found {
            Some(t) => std::borrow::Cow::Borrowed(t),
            None => std::borrow::Cow::Owned(T::default()),
        }
    }
}

/// What a Hub cache on this machine remembers, as resolution asks it. The
/// store implements it over the Hugging Face cache (`store::HfCache`), so
/// resolution depends on no stage below it.
pub trait HubCache: Send + Sync {
    /// The commit `revision` names in the cache (`refs/<revision>`).
    fn commit_of(&self, repo: &str, revision: &str) -> Option<String>;
    /// Every file of `repo` at `commit` the cache lists (its tree listing,
    /// else its snapshot's links).
    fn listed(&self, repo: &str, commit: &str) -> Vec<String>;
    /// The file `path` at `commit`, if the cache holds it and its bytes are
    /// what its ETag says (checked by content).
    fn cached(&self, repo: &str, commit: &str, path: &str) -> Option<Cached>;
}

/// What the cache holds of one file, its content checked.
pub struct Cached {
    pub etag: String,
    pub size: u64,
    pub xet_hash: Option<String>,
}

impl Cached {
    /// `remote`, with what the listing left out filled in.
    pub fn fill(self, remote: &mut RemoteFile) {
        let lfs = self.etag.len() == 64;
        remote.size = Some(self.size);
        remote.sha256 = lfs.then(|| self.etag.clone());
        remote.git_oid = (!lfs).then(|| self.etag.clone());
        remote.xet_hash = self.xet_hash;
        remote.etag = Some(self.etag);
    }
}

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
    /// A source's answer that the model (or its revision) does not exist.
    #[error("{origin} has no {what} (model `{model}`)")]
    NotFound {
        model: String,
        origin: String,
        what: String,
        hint: String,
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
            ResolveError::NotFound { hint, .. } => hint.clone(),
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
pub(crate) async fn read_answer(model: &str, url: &str, response: reqwest::Response) -> Result<Vec<u8>, ResolveError> {
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
pub(crate) enum Via {
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

pub(crate) fn filters(spec: &Want) -> (Option<GlobSet>, GlobSet) {
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

    /// Sends a GET or HEAD, retrying connection errors, 429 and 5xx with
    /// backoff (an untrusted certificate is not retried). `via` picks the
    /// client: only [`Via::Hub`] carries the token, only [`Via::Unverified`]
    /// skips certificate checks.
    pub(crate) async fn send(
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
pub(crate) fn check_case_collisions(model: &str, files: &[RemoteFile]) -> Result<(), ResolveError> {
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
