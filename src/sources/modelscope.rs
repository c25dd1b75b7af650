//! The ModelScope Hub (`modelscope:owner/name[@revision]`), which many users
//! in China pull from instead of the Hugging Face Hub. Its protocol, as its
//! official client `modelscope-hub` speaks it (`_legacy_api.py`,
//! `_download.py`):
//!
//! * revisions: `GET {endpoint}/api/v1/models/{owner}/{name}/revisions`
//!   answers `Data.RevisionMap.{Branches,Tags}[].Revision`; no commit id is
//!   listed, so the lock pins the revision and every file's size and sha256,
//!   and a file changed upstream is a hash error at sync, never an update;
//! * files: `GET …/repo/files?Revision=…&Recursive=True` answers
//!   `Data.Files[]` (`Path`, `Type` `blob`/`tree`, `Size`, `Sha256`). The
//!   server cuts a listing at a cap (3,000 entries) without saying so: a
//!   listing that long is walked again directory by directory (`Root=…`), as
//!   the client does, and a directory that alone reaches the cap is refused
//!   (an exact lock cannot be made from part of a list);
//! * a file: `GET …/repo?Revision=…&FilePath=…`;
//! * the endpoint: `sources.modelscope.endpoint`, else `MODELSCOPE_ENDPOINT`
//!   (a URL), else the deprecated `MODELSCOPE_DOMAIN` (a host), else
//!   `https://modelscope.cn`. No token is sent (public models only).
//!
//! A bare name is never looked up here: `org/name` already means the
//! Hugging Face Hub, so no rule tells the two apart.

use futures_util::future::BoxFuture;
use percent_encoding::utf8_percent_encode;
use serde::Deserialize;

use crate::fs::safe_relative_path;
use crate::sources::kind::{
    check_case_collisions, filters, is_plain_name, read_answer, ConfigRevision, IdError, Pinned, PinnedFile,
    RemoteFile, ResolveError, ResolvedModel, Resolver, Source, SourceKind, UrlContext, Via, Want, SEGMENT,
};

/// The ModelScope Hub.
pub struct ModelScope;

/// `https://modelscope.cn`, the client's default.
const DEFAULT_ENDPOINT: &str = "https://modelscope.cn";
/// A revision not named: the client's default branch.
const DEFAULT_REVISION: &str = "master";
/// At most this many listings for one model's walk.
const MAX_LISTINGS: usize = 1000;

/// `models.download.sources.modelscope`.
#[derive(Clone, Debug, Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelScopeTable {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Overrides `MODELSCOPE_ENDPOINT` (e.g. an internal mirror).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// How many entries the server lists at most in one answer (it cuts the
    /// rest silently); a listing this long is walked directory by directory.
    #[serde(default = "default_cap")]
    pub listing_cap: usize,
}

fn yes() -> bool {
    true
}

fn default_cap() -> usize {
    3000
}

impl Default for ModelScopeTable {
    fn default() -> Self {
        ModelScopeTable {
            enabled: true,
            endpoint: None,
            listing_cap: default_cap(),
        }
    }
}

source_table!(ModelScopeTable);

impl ModelScopeTable {
    /// The endpoint, without a trailing `/`.
    fn endpoint(&self) -> String {
        let env = |name| std::env::var(name).ok().filter(|v: &String| !v.trim().is_empty());
        let chosen = (self.endpoint.clone())
            .or_else(|| env("MODELSCOPE_ENDPOINT"))
            .or_else(|| env("MODELSCOPE_DOMAIN"))
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let chosen = chosen.trim().trim_end_matches('/');
        match chosen.starts_with("http://") || chosen.starts_with("https://") {
            true => chosen.to_string(),
            false => format!("https://{chosen}"),
        }
    }
}

impl SourceKind for ModelScope {
    fn name(&self) -> &'static str {
        "modelscope"
    }
    fn title(&self) -> &'static str {
        "ModelScope"
    }
    fn form(&self) -> &'static str {
        "`modelscope:owner/name[@revision]`"
    }
    fn parse(&self, id: &str, rest: &str) -> Result<(String, Option<String>), IdError> {
        let (repo, revision) = match rest.split_once('@') {
            Some((_, "")) => return Err(IdError::new(id, "the revision after `@` is empty")),
            Some((repo, rev)) => (repo, Some(rev.to_string())),
            None => (rest, None),
        };
        match repo.split_once('/') {
            Some((owner, name)) if is_plain_name(owner) && is_plain_name(name) => Ok((repo.to_string(), revision)),
            _ => Err(IdError::new(
                id,
                "a ModelScope model is `owner/name`, made of letters, digits, `-`, `_` and `.`",
            )),
        }
    }
    fn config_revision(&self) -> ConfigRevision {
        ConfigRevision::Taken
    }
    table_of!(ModelScopeTable);
    fn resolve<'a>(&'a self, r: &'a Resolver<'a>, want: &'a Want) -> BoxFuture<'a, Result<ResolvedModel, ResolveError>> {
        Box::pin(resolve(r, want))
    }
    /// The current endpoint's file route at the locked revision.
    fn file_url(&self, model: &Pinned<'_>, file: &PinnedFile<'_>, cx: &UrlContext<'_>) -> Result<String, String> {
        let endpoint = cx.sources.table::<ModelScopeTable>().endpoint();
        Ok(file_route(&endpoint, model.id, model.revision.unwrap_or(DEFAULT_REVISION), file.path))
    }
    /// The recorded URL may name the endpoint it was locked against; the
    /// model, revision and file must be this entry's.
    fn accepts_recorded_url(&self, model: &Pinned<'_>, file: &PinnedFile<'_>, _derived: &str) -> bool {
        let route = file_route("", model.id, model.revision.unwrap_or(DEFAULT_REVISION), file.path);
        let endpoint = file.url.strip_suffix(&route).unwrap_or_default();
        file.url.ends_with(&route) && reqwest::Url::parse(endpoint).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
    }
    fn check_files(&self, files: &[PinnedFile<'_>]) -> Result<(), (usize, &'static str, &'static str)> {
        match files.iter().position(|f| f.sha256.is_none()) {
            Some(i) => Err((i, "sha256", "is missing: ModelScope pins no commit, so each file is pinned by its sha256")),
            None => Ok(()),
        }
    }
}

/// `{endpoint}/api/v1/models/{owner}/{name}/repo?Revision=…&FilePath=…`.
fn file_route(endpoint: &str, repo: &str, revision: &str, path: &str) -> String {
    format!(
        "{endpoint}/api/v1/models/{repo}/repo?Revision={}&FilePath={}",
        utf8_percent_encode(revision, SEGMENT),
        utf8_percent_encode(path, SEGMENT)
    )
}

/// `{"Code": …, "Data": …, "Message": …}`, the envelope of every answer.
#[derive(Deserialize)]
struct Envelope<T> {
    #[serde(rename = "Data")]
    data: Option<T>,
}

#[derive(Deserialize)]
struct Revisions {
    #[serde(rename = "RevisionMap", default)]
    map: RevisionMap,
}

#[derive(Deserialize, Default)]
struct RevisionMap {
    #[serde(rename = "Branches", default)]
    branches: Vec<Revision>,
    #[serde(rename = "Tags", default)]
    tags: Vec<Revision>,
}

#[derive(Deserialize)]
struct Revision {
    #[serde(rename = "Revision")]
    name: String,
}

#[derive(Deserialize)]
struct Files {
    #[serde(rename = "Files", default)]
    files: Vec<Entry>,
}

#[derive(Deserialize, Clone)]
struct Entry {
    #[serde(rename = "Path")]
    path: String,
    #[serde(rename = "Type", default)]
    kind: String,
    #[serde(rename = "Size", default)]
    size: Option<u64>,
    #[serde(rename = "Sha256", default)]
    sha256: Option<String>,
}

/// What one model is at its revision: the revision checked against the
/// listed ones, then every file with its size and sha256.
async fn resolve(r: &Resolver<'_>, want: &Want) -> Result<ResolvedModel, ResolveError> {
    let table = r.sources.table::<ModelScopeTable>();
    let endpoint = table.endpoint();
    let api = Api {
        r,
        model: &want.name,
        base: format!("{endpoint}/api/v1/models/{}", want.id.locator),
        cap: table.listing_cap.max(1),
    };
    let revision = want.id.revision.as_deref().unwrap_or(DEFAULT_REVISION);
    api.check_revision(&want.id.locator, revision).await?;
    let entries = api.list_all(revision).await?;
    let (include, exclude) = filters(want);
    let mut files = Vec::new();
    for entry in entries.into_iter().filter(|e| e.kind != "tree") {
        if include.as_ref().is_some_and(|g| !g.is_match(&entry.path)) || exclude.is_match(&entry.path) {
            continue;
        }
        files.push(api.remote(&endpoint, &want.id.locator, revision, entry)?);
    }
    check_case_collisions(&want.name, &files)?;
    if files.is_empty() {
        return Err(ResolveError::NothingMatches {
            model: want.name.clone(),
            repo: want.id.locator.clone(),
            commit: revision.to_string(),
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(ResolvedModel {
        source: Source(&ModelScope),
        id: want.id.locator.clone(),
        revision: want.id.revision.clone(),
        commit: None,
        files,
    })
}

/// The model's API routes, asked for one model.
struct Api<'a> {
    r: &'a Resolver<'a>,
    model: &'a str,
    /// `{endpoint}/api/v1/models/{owner}/{name}`.
    base: String,
    cap: usize,
}

impl Api<'_> {
    /// GETs `url` and reads its envelope's `Data`; 404 is `missing`.
    async fn get<T: for<'de> Deserialize<'de>>(&self, url: &str, missing: impl FnOnce() -> ResolveError) -> Result<T, ResolveError> {
        let response = self.r.send(self.model, reqwest::Method::GET, url, Via::Plain).await?;
        let status = response.status().as_u16();
        if status == 404 {
            return Err(missing());
        }
        if status != 200 {
            return Err(ResolveError::Http {
                model: self.model.to_string(),
                url: url.to_string(),
                status,
                message: None,
            });
        }
        let body = read_answer(self.model, url, response).await?;
        let bad = |message: String| ResolveError::BadResponse {
            model: self.model.to_string(),
            url: url.to_string(),
            message,
        };
        let envelope: Envelope<T> = serde_json::from_slice(&body).map_err(|e| bad(e.to_string()))?;
        envelope.data.ok_or_else(|| bad("it has no `Data`".into()))
    }

    /// Refuses a revision that is neither a branch nor a tag of the model.
    async fn check_revision(&self, repo: &str, revision: &str) -> Result<(), ResolveError> {
        let missing = || self.not_found(format!("model `{repo}`"), "check the model id's spelling on modelscope.cn");
        let listed: Revisions = self.get(&format!("{}/revisions", self.base), missing).await?;
        let names: Vec<String> = (listed.map.branches.into_iter().chain(listed.map.tags))
            .map(|r| r.name)
            .collect();
        if names.iter().any(|n| n == revision) {
            return Ok(());
        }
        Err(self.not_found(
            format!("revision `{revision}` of `{repo}`"),
            &format!("use one of its branches or tags: {}", names.join(", ")),
        ))
    }

    fn not_found(&self, what: String, hint: &str) -> ResolveError {
        ResolveError::NotFound {
            model: self.model.to_string(),
            origin: "ModelScope".into(),
            what,
            hint: hint.to_string(),
        }
    }

    /// One listing: `root`'s subtree (or its direct entries).
    async fn list(&self, revision: &str, root: Option<&str>, recursive: bool) -> Result<Vec<Entry>, ResolveError> {
        let mut url = format!(
            "{}/repo/files?Revision={}&Recursive={}",
            self.base,
            utf8_percent_encode(revision, SEGMENT),
            if recursive { "True" } else { "False" }
        );
        if let Some(root) = root {
            url.push_str(&format!("&Root={}", utf8_percent_encode(root, SEGMENT)));
        }
        let missing = || self.not_found(format!("revision `{revision}`"), "run `mdl lock --upgrade` for this model");
        let files: Files = self.get(&url, missing).await?;
        Ok(files.files)
    }

    /// Every entry at `revision`. A listing as long as the cap may be cut:
    /// each directory is then listed on its own, and a directory whose own
    /// listing reaches the cap is split by its subdirectories in turn.
    async fn list_all(&self, revision: &str) -> Result<Vec<Entry>, ResolveError> {
        let first = self.list(revision, None, true).await?;
        if first.len() < self.cap {
            return Ok(first);
        }
        let mut found: std::collections::BTreeMap<String, Entry> = first.into_iter().map(|e| (e.path.clone(), e)).collect();
        let mut frontier: Vec<Option<String>> = vec![None];
        let mut listings = 1;
        while let Some(root) = frontier.pop() {
            let shallow = self.list(revision, root.as_deref(), false).await?;
            listings += 1;
            if shallow.len() >= self.cap {
                return Err(self.cut(root.as_deref().unwrap_or("/")));
            }
            for dir in shallow.iter().filter(|e| e.kind == "tree") {
                // Bounded here too: one shallow listing may name thousands of directories.
                if listings >= MAX_LISTINGS {
                    return Err(self.cut("the whole tree"));
                }
                let subtree = self.list(revision, Some(&dir.path), true).await?;
                listings += 1;
                if subtree.len() >= self.cap {
                    frontier.push(Some(dir.path.clone()));
                }
                found.extend(subtree.into_iter().map(|e| (e.path.clone(), e)));
            }
            found.extend(shallow.into_iter().map(|e| (e.path.clone(), e)));
            if listings > MAX_LISTINGS {
                return Err(self.cut("the whole tree"));
            }
        }
        Ok(found.into_values().collect())
    }

    fn cut(&self, dir: &str) -> ResolveError {
        ResolveError::BadResponse {
            model: self.model.to_string(),
            url: self.base.clone(),
            message: format!(
                "the server cuts the listing of `{dir}` at {} entries, so no exact list of the model's files can be made",
                self.cap
            ),
        }
    }

    /// A listed file, checked: a safe path, a size and a sha256.
    fn remote(&self, endpoint: &str, repo: &str, revision: &str, entry: Entry) -> Result<RemoteFile, ResolveError> {
        safe_relative_path(&entry.path).map_err(|source| ResolveError::Unsafe {
            model: self.model.to_string(),
            source,
        })?;
        let sha256 = entry.sha256.filter(|s| crate::hash::is_hex(s, 64)).map(|s| s.to_ascii_lowercase());
        let (Some(size), Some(sha256)) = (entry.size, sha256) else {
            return Err(ResolveError::BadResponse {
                model: self.model.to_string(),
                url: self.base.clone(),
                message: format!("`{}` is listed without a size and a sha256 (64 hex digits)", entry.path),
            });
        };
        Ok(RemoteFile {
            url: file_route(endpoint, repo, revision, &entry.path),
            path: entry.path,
            size: Some(size),
            etag: None,
            sha256: Some(sha256),
            git_oid: None,
            needs_token: false,
            sha256_prefix: None,
            xet_hash: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_routes() {
        let ms = ModelScope;
        assert_eq!(ms.parse("x", "qwen/Qwen2-0.5B@v1.0").unwrap(), ("qwen/Qwen2-0.5B".into(), Some("v1.0".into())));
        assert!(ms.parse("x", "qwen").is_err());
        assert!(ms.parse("x", "qwen/../x").is_err());
        assert!(ms.parse("x", "a/b@").is_err());
        assert_eq!(
            file_route("https://modelscope.cn", "a/b", "master", "onnx/model file.onnx"),
            "https://modelscope.cn/api/v1/models/a/b/repo?Revision=master&FilePath=onnx%2Fmodel%20file.onnx"
        );
    }
}
