//! The Hugging Face Hub: a repository at a revision, pinned to its commit, with
//! every file's size, LFS sha256 or git blob id from one API call
//! (`/api/models/{repo}/revision/{rev}?blobs=true`). Dataset and Space
//! repositories (`datasets/org/name`, `spaces/org/name`) mirror the model
//! routes under `/api/datasets/…` and `/api/spaces/…`.

use percent_encoding::utf8_percent_encode;
use serde::Deserialize;

use futures_util::future::BoxFuture;

use crate::sources::kind::{
    check_case_collisions, filters, hub_file_url, read_answer, ConfigRevision, Detected, HubCache, IdError, ModelId,
    Pinned, PinnedFile, RemoteFile, ResolveError, ResolvedModel, Resolver, Source, SourceKind, UrlContext,
    Via, Want, SEGMENT,
};
use crate::fs::safe_relative_path;

/// The Hugging Face Hub (`huggingface:org/name[@revision]`, `hf:…`, a bare `org/name`).
pub struct Huggingface;

/// `models.download.sources.huggingface`.
#[derive(Clone, Debug, Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HuggingfaceTable {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Overrides `HF_ENDPOINT` (e.g. an internal mirror).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Send the Hub token to `endpoint` above. Off by default: a config.yaml
    /// changed in a pull request must not be able to point the token at a
    /// host of its choosing. (`HF_ENDPOINT`, set by whoever runs mdl, needs
    /// no opt-in.) Never over plain HTTP to another machine.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub send_token: bool,
}

fn yes() -> bool {
    true
}

impl Default for HuggingfaceTable {
    fn default() -> Self {
        HuggingfaceTable {
            enabled: true,
            endpoint: None,
            send_token: false,
        }
    }
}

source_table!(HuggingfaceTable);

impl SourceKind for Huggingface {
    fn name(&self) -> &'static str {
        "huggingface"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["hf"]
    }
    fn title(&self) -> &'static str {
        "Hugging Face Hub"
    }
    fn form(&self) -> &'static str {
        "`huggingface:org/name[@revision]` (or `huggingface:datasets/org/name`, `huggingface:spaces/org/name`)"
    }
    fn parse(&self, id: &str, rest: &str) -> Result<(String, Option<String>), IdError> {
        parse_repo(id, rest)
    }
    fn config_revision(&self) -> ConfigRevision {
        ConfigRevision::Taken
    }
    fn sends_hub_token(&self) -> bool {
        true
    }
    fn fetched_from_hub_endpoint(&self) -> bool {
        true
    }
    fn detects_bare_names(&self) -> bool {
        true
    }
    table_of!(HuggingfaceTable);
    fn resolve<'a>(&'a self, r: &'a Resolver<'a>, want: &'a Want) -> BoxFuture<'a, Result<ResolvedModel, ResolveError>> {
        Box::pin(r.resolve_hub(want, &want.id.locator, want.id.revision.as_deref()))
    }
    fn resolve_offline(&self, r: &Resolver<'_>, want: &Want) -> Result<ResolvedModel, ResolveError> {
        r.resolve_hub_offline(want, &want.id.locator, want.id.revision.as_deref())
    }
    fn held_offline(&self, cache: &dyn HubCache, id: &ModelId) -> bool {
        cache.commit_of(&id.locator, id.revision.as_deref().unwrap_or("main")).is_some()
    }
    fn detect<'a>(&'a self, r: &'a Resolver<'a>, want: &'a Want, name: &'a str) -> BoxFuture<'a, Option<Detected>> {
        Box::pin(async move {
            Some(match r.resolve_hub(want, name, None).await {
                Err(ResolveError::RepoNotFound { .. }) => Err(ResolveError::Undetected {
                    name: name.to_string(),
                    tried: vec![format!("Hugging Face Hub ({}): no repository `{name}`", r.endpoint)],
                }),
                other => other,
            })
        })
    }
    fn file_url(&self, model: &Pinned<'_>, file: &PinnedFile<'_>, cx: &UrlContext<'_>) -> Result<String, String> {
        let commit = model.commit.ok_or("no commit is locked")?;
        Ok(hub_file_url(cx.hub_endpoint, model.id, commit, file.path))
    }
    /// A Hub file's recorded URL may name whichever endpoint it was locked
    /// against (the real Hub, a mirror, a proxy with a path prefix: it is
    /// never fetched from, the current endpoint is), but its path must be
    /// this repo's, commit's and file's.
    fn accepts_recorded_url(&self, model: &Pinned<'_>, file: &PinnedFile<'_>, _derived: &str) -> bool {
        let path = hub_file_url("", model.id, model.commit.unwrap_or_default(), file.path);
        let endpoint = file.url.strip_suffix(&path).unwrap_or_default();
        file.url.ends_with(&path)
            && reqwest::Url::parse(endpoint).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https") && u.username().is_empty() && u.password().is_none()
            })
    }
    fn check_commit(&self, commit: Option<&str>) -> Result<(), String> {
        match commit {
            Some(c) if crate::hash::is_hex(c, 40) => Ok(()),
            Some(_) => Err("is not a commit id (40 hex digits)".into()),
            None => Err("is missing: every file is fetched at the locked commit".into()),
        }
    }
    fn check_etag(&self, etag: &str) -> Result<(), &'static str> {
        crate::hash::is_hub_etag(etag)
            .then_some(())
            .ok_or("is not a Hub ETag (a 40-hex git blob id or a 64-hex sha256)")
    }
    /// `{endpoint}/api/{models|datasets|spaces}/{repo}/xet-read-token/{commit}`:
    /// built from `HF_ENDPOINT` and the pins, never taken from a server's
    /// `Link` header, so the Hub token goes to the Hub's own origin only.
    fn xet_token_url(&self, model: &Pinned<'_>, endpoint: &str) -> Option<String> {
        let commit = model.commit.filter(|c| crate::hash::is_hex(c, 40))?;
        let repo: Vec<String> = api_path(model.id)
            .split('/')
            .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
            .collect();
        Some(format!(
            "{}/api/{}/xet-read-token/{commit}",
            endpoint.trim_end_matches('/'),
            repo.join("/")
        ))
    }
}

/// `org/name[@revision]`; `datasets/org/name` and `spaces/org/name` (as `hf
/// download --repo-type`): the type stays in the repo id, which is also the
/// path of its files on the Hub (`/datasets/org/name/resolve/…`).
fn parse_repo(id: &str, rest: &str) -> Result<(String, Option<String>), IdError> {
    let (repo, revision) = match rest.split_once('@') {
        Some((repo, rev)) if !rev.is_empty() => (repo, Some(rev.to_string())),
        Some(_) => return Err(IdError::new(id, "the revision after `@` is empty")),
        None => (rest, None),
    };
    let repo = repo.strip_prefix("models/").unwrap_or(repo);
    let parts: Vec<&str> = match repo.split_once('/') {
        Some(("datasets" | "spaces", rest)) => rest.split('/').collect(),
        _ => repo.split('/').collect(),
    };
    if !(1..=2).contains(&parts.len()) || !parts.iter().all(|p| crate::sources::kind::is_plain_name(p)) {
        return Err(IdError::new(
            id,
            "a Hub repo id is `name` or `org/name` (`datasets/org/name` or `spaces/org/name` for other repository types), made of letters, digits, `-`, `_` and `.`",
        ));
    }
    Ok((repo.to_string(), revision))
}

mod offline;

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
    /// Xet-backed files' content hash (the Hub may send it masked, `*` × 64).
    #[serde(default, rename = "xetHash")]
    xet_hash: Option<String>,
}

#[derive(Deserialize)]
struct Lfs {
    sha256: String,
    size: u64,
}

impl Resolver<'_> {
    pub(super) async fn resolve_hub(
        &self,
        spec: &Want,
        repo: &str,
        requested: Option<&str>,
    ) -> Result<ResolvedModel, ResolveError> {
        let model = &spec.name;
        let revision = requested.unwrap_or("main");
        let url = format!(
            "{}/api/{}/revision/{}?blobs=true",
            self.endpoint,
            api_path(repo),
            utf8_percent_encode(revision, SEGMENT)
        );
        let response = self.send(model, reqwest::Method::GET, &url, Via::Hub).await?;
        if !response.status().is_success() {
            return Err(self.refusal(model, repo, revision, &url, &response));
        }
        let body = read_answer(model, &url, response).await?;
        let bad = |message: &str| ResolveError::BadResponse {
            model: model.clone(),
            url: url.clone(),
            message: message.into(),
        };
        let info: RepoInfo = serde_json::from_slice(&body).map_err(|e| bad(&e.to_string()))?;
        let commit = info.sha.ok_or_else(|| bad("no `sha` field"))?;
        if commit.len() != 40 || !commit.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad("`sha` is not a 40-hex commit id"));
        }
        let siblings = info.siblings.ok_or_else(|| bad("no `siblings` field"))?;
        let (include, exclude) = filters(spec);
        let mut files = Vec::new();
        for sibling in siblings {
            // Refuse escaping names before anything is written.
            safe_relative_path(&sibling.rfilename).map_err(|source| ResolveError::Unsafe {
                model: model.clone(),
                source,
            })?;
            let path = &sibling.rfilename;
            if include.as_ref().is_some_and(|g| !g.is_match(path)) || exclude.is_match(path) {
                continue;
            }
            files.push(self.remote_of(repo, &commit, sibling).map_err(|m| bad(&m))?);
        }
        check_case_collisions(model, &files)?;
        if files.is_empty() {
            return Err(ResolveError::NothingMatches {
                model: model.clone(),
                repo: repo.into(),
                commit,
            });
        }
        Ok(hub_model(repo, requested, commit, files))
    }

    /// What a failed answer means, by its status and `X-Error-Code`.
    fn refusal(&self, model: &str, repo: &str, revision: &str, url: &str, response: &reqwest::Response) -> ResolveError {
        let header = |name: &str| (response.headers().get(name)).and_then(|v| v.to_str().ok()).map(str::to_string);
        let (model, repo) = (model.to_string(), repo.to_string());
        match (response.status().as_u16(), header("x-error-code").as_deref()) {
            (_, Some("RepoNotFound")) => ResolveError::RepoNotFound { model, repo },
            (_, Some("RevisionNotFound")) => ResolveError::RevisionNotFound {
                model,
                repo,
                revision: revision.into(),
            },
            (401 | 403, _) | (_, Some("GatedRepo")) => ResolveError::Unauthorized {
                model,
                repo,
                token_sent: self.token.is_some(),
            },
            (404, _) => ResolveError::RepoNotFound { model, repo },
            (status, _) => ResolveError::Http {
                model,
                url: url.to_string(),
                status,
                message: header("x-error-message"),
            },
        }
    }

    /// A listed file, its hashes checked; what a bare listing leaves out is
    /// filled from the Hugging Face cache's map. `Err` says what is malformed.
    fn remote_of(&self, repo: &str, commit: &str, sibling: Sibling) -> Result<RemoteFile, String> {
        let path = sibling.rfilename;
        // An ETag names a file in the Hugging Face cache and a sha256 is
        // checked against the bytes: each must be the hex it claims to be.
        let hex_ok = match (&sibling.lfs, &sibling.blob_id) {
            (Some(lfs), _) => crate::hash::is_hex(&lfs.sha256, 64),
            (None, Some(blob_id)) => crate::hash::is_hex(blob_id, 40),
            (None, None) => true,
        };
        if !hex_ok {
            return Err(format!(
                "the file `{path}` has a malformed `lfs.sha256` or `blobId` (a masked or partial hash?)"
            ));
        }
        let blob_id = sibling.blob_id.map(|b| b.to_ascii_lowercase());
        let (size, etag, sha256, git_oid) = match &sibling.lfs {
            Some(lfs) => {
                let sha256 = lfs.sha256.to_ascii_lowercase();
                (Some(lfs.size), Some(sha256.clone()), Some(sha256), None)
            }
            None => (sibling.size, blob_id.clone(), None, blob_id),
        };
        let mut remote = RemoteFile {
            url: self.file_url(repo, commit, &path),
            path,
            size,
            etag,
            sha256,
            git_oid,
            needs_token: true,
            sha256_prefix: None,
            // Only a real hash is kept: a masked or malformed one would send
            // the download to a file the CAS does not have (the resolve
            // bridge serves such files).
            xet_hash: (sibling.xet_hash)
                .filter(|h| crate::hash::is_hex(h, 64))
                .map(|h| h.to_ascii_lowercase()),
        };
        // A mirror that lists bare names: the cache's own map answers (its
        // blob checked by content), so `hf download`'s copy is used.
        if self.cache_hints && remote.size.is_none() && remote.etag.is_none() {
            if let Some(cached) = self.hf_cache.cached(repo, commit, &remote.path) {
                cached.fill(&mut remote);
            }
        }
        Ok(remote)
    }
}

/// A Hub model at `commit`, its files in path order.
fn hub_model(repo: &str, requested: Option<&str>, commit: String, mut files: Vec<RemoteFile>) -> ResolvedModel {
    files.sort_by(|a, b| a.path.cmp(&b.path));
    ResolvedModel {
        source: Source(&Huggingface),
        id: repo.to_string(),
        revision: requested.map(str::to_string),
        commit: Some(commit),
        files,
    }
}

/// The API path of a repo id: `models/org/name`, or the id itself when it
/// names its type (`datasets/org/name`, `spaces/org/name`).
fn api_path(repo: &str) -> String {
    match repo.split_once('/') {
        Some(("datasets" | "spaces", _)) => repo.to_string(),
        _ => format!("models/{repo}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn repository_types_have_their_api_routes() {
        assert_eq!(super::api_path("acme/x"), "models/acme/x");
        assert_eq!(super::api_path("gpt2"), "models/gpt2");
        assert_eq!(super::api_path("datasets/acme/x"), "datasets/acme/x");
        assert_eq!(super::api_path("spaces/acme/x"), "spaces/acme/x");
    }
}
