//! PyTorch Hub entries (`pytorch_hub:owner/repo[:ref]/entry`): the ref pinned
//! to a commit through the GitHub API, the repository archive at that commit,
//! and the entry's weights.

use percent_encoding::utf8_percent_encode;
use serde::Deserialize;

use std::collections::BTreeMap;

use futures_util::future::BoxFuture;

use super::torchvision::{self, TorchvisionTable};
use crate::sources::kind::{
    is_plain_name, read_answer, Detected, IdError, Pinned, PinnedFile, ResolveError, ResolvedModel, Resolver, Source,
    SourceKind, UrlContext, Via, Want, SEGMENT,
};

/// A PyTorch Hub entry (`pytorch_hub:owner/repo[:ref]/entry`).
pub struct PytorchHub;

/// `models.download.sources.pytorch_hub`: GitHub repositories with a `hubconf.py`.
#[derive(Clone, Debug, Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PytorchHubTable {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Where repository archives come from (default `https://github.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github_url: Option<String>,
    /// Where refs are pinned to commits (default `https://api.github.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// Weight URLs per entry, `owner/repo/entry` → URL or list of URLs, for
    /// repositories other than `pytorch/vision` (mdl cannot run `hubconf.py`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub weights: BTreeMap<String, WeightUrls>,
}

#[derive(Clone, Debug, Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum WeightUrls {
    One(String),
    Many(Vec<String>),
}

impl WeightUrls {
    pub fn urls(&self) -> Vec<String> {
        match self {
            WeightUrls::One(u) => vec![u.clone()],
            WeightUrls::Many(us) => us.clone(),
        }
    }
}

fn yes() -> bool {
    true
}

impl Default for PytorchHubTable {
    fn default() -> Self {
        PytorchHubTable {
            enabled: true,
            github_url: None,
            api_url: None,
            weights: BTreeMap::new(),
        }
    }
}

source_table!(PytorchHubTable);

/// An entry's parts: owner, repo, ref, entry.
struct Entry<'a> {
    owner: &'a str,
    repo: &'a str,
    reference: Option<&'a str>,
    entry: &'a str,
}

/// `owner/repo[:ref]/entry`.
fn split(rest: &str) -> Option<Entry<'_>> {
    let parts: Vec<&str> = rest.split('/').collect();
    let [owner, repo_ref, entry] = parts.as_slice() else {
        return None;
    };
    let (repo, reference) = match repo_ref.split_once(':') {
        Some((r, reference)) => (r, Some(reference)),
        None => (*repo_ref, None),
    };
    Some(Entry {
        owner,
        repo,
        reference,
        entry,
    })
}

impl SourceKind for PytorchHub {
    fn name(&self) -> &'static str {
        "pytorch_hub"
    }
    fn title(&self) -> &'static str {
        "PyTorch Hub"
    }
    fn form(&self) -> &'static str {
        "`pytorch_hub:owner/repo[:ref]/entry`"
    }
    /// The locator is `owner/repo/entry`; the ref is the revision.
    fn parse(&self, id: &str, rest: &str) -> Result<(String, Option<String>), IdError> {
        let e = split(rest).ok_or_else(|| IdError::new(id, "a PyTorch Hub entry is `pytorch_hub:owner/repo[:ref]/entry`"))?;
        if e.reference == Some("") {
            return Err(IdError::new(id, "the ref after `:` is empty"));
        }
        if !(is_plain_name(e.owner) && is_plain_name(e.repo) && is_plain_name(e.entry)) {
            return Err(IdError::new(id, "owner, repo and entry are names of letters, digits, `-`, `_` and `.`"));
        }
        Ok((format!("{}/{}/{}", e.owner, e.repo, e.entry), e.reference.map(str::to_string)))
    }
    fn display(&self, locator: &str, revision: Option<&str>) -> String {
        match (split(locator), revision) {
            (Some(e), Some(r)) => format!("pytorch_hub:{}/{}:{r}/{}", e.owner, e.repo, e.entry),
            _ => format!("pytorch_hub:{locator}"),
        }
    }
    fn default_name(&self, locator: &str) -> String {
        split(locator).map_or(locator, |e| e.entry).to_string()
    }
    fn feeds_torch_hub(&self) -> bool {
        true
    }
    fn detects_bare_names(&self) -> bool {
        true
    }
    table_of!(PytorchHubTable);
    fn resolve<'a>(&'a self, r: &'a Resolver<'a>, want: &'a Want) -> BoxFuture<'a, Result<ResolvedModel, ResolveError>> {
        Box::pin(async move {
            let e = split(&want.id.locator).expect("a parsed PyTorch Hub id");
            let reference = want.id.revision.as_deref();
            r.resolve_pytorch_hub(want, e.owner, e.repo, reference, e.entry).await
        })
    }
    /// PyTorch Hub cannot list entries by bare name.
    fn detect<'a>(&'a self, _r: &'a Resolver<'a>, _want: &'a Want, name: &'a str) -> BoxFuture<'a, Option<Detected>> {
        Box::pin(std::future::ready(Some(Err(ResolveError::Undetected {
            name: name.to_string(),
            tried: vec!["PyTorch Hub: not searched; an entry needs `pytorch_hub:owner/repo/entry`".to_string()],
        }))))
    }
    fn file_url(&self, model: &Pinned<'_>, file: &PinnedFile<'_>, cx: &UrlContext<'_>) -> Result<String, String> {
        file_url(model, file, cx).ok_or_else(|| "neither its archive nor a weight URL config.yaml names".to_string())
    }
    fn check_commit(&self, commit: Option<&str>) -> Result<(), String> {
        match commit {
            Some(c) if crate::hash::is_hex(c, 40) => Ok(()),
            Some(_) => Err("is not a commit id (40 hex digits)".into()),
            None => Err("is missing: every file is fetched at the locked commit".into()),
        }
    }
    /// The repository archive (`owner_repo_<commit12>.zip`), extracted where
    /// `torch.hub.load` looks, at the lock's ref.
    fn torch_hub_repo(&self, model: &Pinned<'_>, file: &PinnedFile<'_>) -> Option<(String, String, String)> {
        let e = split(model.id)?;
        let archive = file.path.starts_with(&format!("{}_{}_", e.owner, e.repo)) && file.path.ends_with(".zip");
        let reference = model.revision.or(e.reference).unwrap_or("main");
        archive.then(|| (e.owner.to_string(), e.repo.to_string(), reference.to_string()))
    }
}

/// A PyTorch Hub model's file: the repository archive at the locked commit, or
/// one of the entry's weights (torchvision's catalog for `pytorch/vision`,
/// else `sources.pytorch_hub.weights`), matched by file name.
fn file_url(model: &Pinned<'_>, file: &PinnedFile<'_>, cx: &UrlContext<'_>) -> Option<String> {
    let Entry { owner, repo, entry, .. } = split(model.id)?;
    let commit = model.commit?;
    let hub = cx.sources.table::<PytorchHubTable>();
    if file.path == format!("{owner}_{repo}_{}.zip", commit.get(..12)?) {
        let github = hub.github_url.as_deref().unwrap_or("https://github.com").trim_end_matches('/');
        return Some(format!("{github}/{owner}/{repo}/zipball/{commit}"));
    }
    if owner == "pytorch" && repo == "vision" {
        let tv = cx.sources.table::<TorchvisionTable>();
        let weight = torchvision::lookup(entry, None, tv.base_url.as_deref(), &tv.catalog).ok()?;
        return (weight.file_name == file.path).then_some(weight.url);
    }
    let urls = hub.weights.get(&format!("{owner}/{repo}/{entry}")).map(|w| w.urls()).unwrap_or_default();
    urls.into_iter().find(|url| super::url::url_file_name(url) == file.path)
}

impl Resolver<'_> {
    /// A PyTorch Hub entry, as torch.hub fetches it: the ref pinned to a commit
    /// through the GitHub API (no ref: `main`, else `master`), the repository
    /// archive at that commit, and the entry's weights — from the torchvision
    /// catalog for `pytorch/vision`, else from `sources.pytorch_hub.weights`
    /// (mdl cannot run `hubconf.py`, which needs Python).
    pub(crate) async fn resolve_pytorch_hub(
        &self,
        spec: &Want,
        owner: &str,
        repo: &str,
        reference: Option<&str>,
        entry: &str,
    ) -> Result<ResolvedModel, ResolveError> {
        let hub = self.sources.table::<PytorchHubTable>();
        let github = (hub.github_url.as_deref())
            .unwrap_or("https://github.com")
            .trim_end_matches('/');
        let commit = self.pin_ref(&spec.name, &hub, owner, repo, reference).await?;
        let mut archive = self
            .resolve_url(spec, &format!("{github}/{owner}/{repo}/zipball/{commit}"), Via::Plain)
            .await?;
        let mut files = std::mem::take(&mut archive.files);
        for f in &mut files {
            // The code torch.hub would import, at the pinned commit.
            f.path = format!("{owner}_{repo}_{}.zip", &commit[..12]);
        }
        files.extend(self.entry_weights(spec, &hub, owner, repo, entry).await?);
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(ResolvedModel {
            source: Source(&PytorchHub),
            id: format!("{owner}/{repo}"),
            revision: reference.map(str::to_string),
            commit: Some(commit),
            files,
        })
    }

    /// The commit `reference` names through the GitHub API (no ref: `main`,
    /// else `master`), as torch.hub pins it.
    async fn pin_ref(
        &self,
        model: &str,
        hub: &PytorchHubTable,
        owner: &str,
        repo: &str,
        reference: Option<&str>,
    ) -> Result<String, ResolveError> {
        let api = hub.api_url.as_deref().unwrap_or("https://api.github.com").trim_end_matches('/');
        let refs: Vec<&str> = reference.map_or(vec!["main", "master"], |r| vec![r]);
        for r in &refs {
            let url = format!("{api}/repos/{owner}/{repo}/commits/{}", utf8_percent_encode(r, SEGMENT));
            let response = self.send(model, reqwest::Method::GET, &url, Via::Plain).await?;
            match response.status().as_u16() {
                200 => {}
                404 | 422 => continue,
                status => {
                    return Err(ResolveError::Http {
                        model: model.to_string(),
                        url,
                        status,
                        message: None,
                    })
                }
            }
            #[derive(Deserialize)]
            struct Commit {
                sha: String,
            }
            let body = read_answer(model, &url, response).await?;
            let parsed: Commit = serde_json::from_slice(&body).map_err(|e| ResolveError::BadResponse {
                model: model.to_string(),
                url: url.clone(),
                message: e.to_string(),
            })?;
            if crate::hash::is_hex(&parsed.sha, 40) {
                return Ok(parsed.sha);
            }
            break;
        }
        Err(ResolveError::RevisionNotFound {
            model: model.to_string(),
            repo: format!("{owner}/{repo}"),
            revision: refs.join(" or "),
        })
    }

    /// The entry's weights: torchvision's catalog for `pytorch/vision`, else
    /// `sources.pytorch_hub.weights` (mdl cannot run `hubconf.py`).
    async fn entry_weights(
        &self,
        spec: &Want,
        hub: &PytorchHubTable,
        owner: &str,
        repo: &str,
        entry: &str,
    ) -> Result<Vec<crate::sources::kind::RemoteFile>, ResolveError> {
        if owner == "pytorch" && repo == "vision" {
            return Ok(self.resolve_torchvision(spec, entry, None).await?.files);
        }
        let key = format!("{owner}/{repo}/{entry}");
        let urls = hub.weights.get(&key).map(|w| w.urls()).unwrap_or_default();
        if urls.is_empty() {
            return Err(ResolveError::NoHubWeights {
                model: spec.name.clone(),
                entry: key,
            });
        }
        let mut out = Vec::new();
        for url in urls {
            out.extend(self.resolve_url(spec, &url, Via::Plain).await?.files);
        }
        Ok(out)
    }
}
