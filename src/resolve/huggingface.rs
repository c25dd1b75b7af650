//! The Hugging Face Hub: a repository at a revision, pinned to its commit, with
//! every file's size, LFS sha256 or git blob id from one API call
//! (`/api/models/{repo}/revision/{rev}?blobs=true`). Dataset and Space
//! repositories (`datasets/org/name`, `spaces/org/name`) mirror the model
//! routes under `/api/datasets/…` and `/api/spaces/…`.

use percent_encoding::utf8_percent_encode;
use serde::Deserialize;

use super::{filters, RemoteFile, ResolveError, ResolvedModel, Resolver, Via, SEGMENT};
use crate::config::ModelSpec;
use crate::fs::safe_relative_path;
use crate::source::Source;

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
        spec: &ModelSpec,
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
        let body = super::read_answer(model, &url, response).await?;
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
            // An ETag names a file in the Hugging Face cache and a sha256 is
            // checked against the bytes: each must be the hex it claims to be.
            let hex_ok = match (&sibling.lfs, &sibling.blob_id) {
                (Some(lfs), _) => crate::hash::is_hex(&lfs.sha256, 64),
                (None, Some(blob_id)) => crate::hash::is_hex(blob_id, 40),
                (None, None) => true,
            };
            if !hex_ok {
                return Err(bad(&format!(
                    "the file `{path}` has a malformed `lfs.sha256` or `blobId` (a masked or partial hash?)"
                )));
            }
            let (size, etag, sha256) = match &sibling.lfs {
                Some(lfs) => {
                    let sha256 = lfs.sha256.to_ascii_lowercase();
                    (Some(lfs.size), Some(sha256.clone()), Some(sha256))
                }
                None => (
                    sibling.size,
                    sibling.blob_id.as_deref().map(str::to_ascii_lowercase),
                    None,
                ),
            };
            let mut remote = RemoteFile {
                url: self.file_url(repo, &commit, &path),
                path,
                size,
                etag,
                sha256,
                git_oid: if sibling.lfs.is_none() {
                    sibling.blob_id.map(|b| b.to_ascii_lowercase())
                } else {
                    None
                },
                needs_token: true,
                sha256_prefix: None,
                // Only a real hash is kept: a masked or malformed one would send
                // the download to a file the CAS does not have (the resolve
                // bridge serves such files).
                xet_hash: sibling
                    .xet_hash
                    .filter(|h| crate::hash::is_hex(h, 64))
                    .map(|h| h.to_ascii_lowercase()),
            };
            // A mirror that lists bare names: the cache's own map answers
            // (its blob checked by content), so `hf download`'s copy is used.
            if self.cache_hints && remote.size.is_none() && remote.etag.is_none() {
                if let Some(cached) = self.hf_cache.cached(repo, &commit, &remote.path) {
                    cached.fill(&mut remote);
                }
            }
            files.push(remote);
        }
        super::check_case_collisions(model, &files)?;
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
            files,
        })
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
