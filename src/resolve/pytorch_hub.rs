//! PyTorch Hub entries (`pytorch_hub:owner/repo[:ref]/entry`): the ref pinned
//! to a commit through the GitHub API, the repository archive at that commit,
//! and the entry's weights.

use percent_encoding::utf8_percent_encode;
use serde::Deserialize;

use super::{ResolveError, ResolvedModel, Resolver, Via, SEGMENT};
use crate::config::ModelSpec;
use crate::source::Source;

impl Resolver<'_> {
    /// A PyTorch Hub entry, as torch.hub fetches it: the ref pinned to a commit
    /// through the GitHub API (no ref: `main`, else `master`), the repository
    /// archive at that commit, and the entry's weights — from the torchvision
    /// catalog for `pytorch/vision`, else from `sources.pytorch_hub.weights`
    /// (mdl cannot run `hubconf.py`, which needs Python).
    pub(super) async fn resolve_pytorch_hub(
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
            let response = self.send(model, reqwest::Method::GET, &url, Via::Plain).await?;
            match response.status().as_u16() {
                200 => {
                    #[derive(Deserialize)]
                    struct Commit {
                        sha: String,
                    }
                    let body = super::read_answer(model, &url, response).await?;
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
            files,
        })
    }
}
