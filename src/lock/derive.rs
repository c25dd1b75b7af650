//! Where each locked file is fetched from: derived from config.yaml's sources
//! and the lock's pins, never read from the lock's `url` (which a pull request
//! can point at any host — with the Hub token or a registry password in tow).
//!
//! * Hub files: the current endpoint, the repo, the locked commit and the
//!   file's path (so a lock made against the Hub syncs from a mirror named by
//!   `HF_ENDPOINT`);
//! * `url:` models: the model's id, which is the URL config.yaml names;
//! * `oci:` models: the configured repository's blob of the file's digest
//!   (`https://`; the fetcher speaks plain HTTP to a registry that needs it);
//! * torchvision and PyTorch Hub: the catalog and URLs config.yaml configures;
//! * `local:` files: the model's path joined with the file's.
//!
//! The lock still records a `url` for people reading it; [`stale_url`] says
//! when it is not what the derivation gives, which makes the entry stale (a
//! lock for another config, or an edited one).

use crate::config::Sources;
use crate::lock::{LockedFile, LockedModel};
use crate::source::Source;

/// What the derivation needs from the project.
#[derive(Clone, Copy, Debug)]
pub struct UrlContext<'a> {
    /// `HF_ENDPOINT` (or the config's override).
    pub hub_endpoint: &'a str,
    pub sources: &'a Sources,
}

/// The URL to fetch `file` of `model` from now; `Err` says why none can be
/// derived (the lock names a file the configured source does not serve).
pub fn file_url(model: &LockedModel, file: &LockedFile, cx: UrlContext<'_>) -> Result<String, String> {
    match model.source {
        Source::Huggingface => {
            let commit = model.commit.as_deref().ok_or("no commit is locked")?;
            Ok(crate::resolve::hub_file_url(
                cx.hub_endpoint,
                &model.id,
                commit,
                &file.path,
            ))
        }
        Source::Url => Ok(model.id.clone()),
        Source::Local => {
            let base = model.id.trim_end_matches('/');
            Ok(match model.files.len() {
                1 if file.url == model.id => model.id.clone(),
                _ => format!("{base}/{}", file.path),
            })
        }
        Source::Oci => {
            let repo = crate::oci::OciRef::parse(&model.id).map_err(|e| e.to_string())?;
            let sha256 = file.sha256.as_deref().ok_or("no digest is locked")?;
            Ok(repo.blob_url("https", &format!("sha256:{sha256}")))
        }
        Source::Torchvision => {
            let tv = &cx.sources.torchvision;
            let weight = crate::resolve::torchvision::lookup(
                &model.id,
                model.revision.as_deref(),
                tv.base_url.as_deref(),
                &tv.catalog,
            )
            .map_err(|_| format!("its catalog has no `{}`", model.id))?;
            if weight.file_name != file.path {
                return Err(format!("its catalog names `{}`", weight.file_name));
            }
            Ok(weight.url)
        }
        Source::PytorchHub => pytorch_hub_url(model, file, cx.sources)
            .ok_or_else(|| "neither its archive nor a weight URL config.yaml names".to_string()),
    }
}

/// Why the lock's recorded `url` of `file` is not where config.yaml's source
/// serves it (`None`: it is). A Hub file's URL may name whichever endpoint
/// it was locked against (the real Hub, a mirror, a proxy with a path
/// prefix: it is never fetched from, the current endpoint is), but its path
/// must be this repo's, commit's and file's; a registry blob's may use
/// either scheme.
pub fn stale_url(model: &LockedModel, file: &LockedFile, cx: UrlContext<'_>) -> Option<String> {
    let derived = match file_url(model, file, cx) {
        Ok(url) => url,
        Err(why) => return Some(why),
    };
    let accepted = match model.source {
        Source::Huggingface => {
            let commit = model.commit.as_deref().unwrap_or_default();
            let path = crate::resolve::hub_file_url("", &model.id, commit, &file.path);
            let endpoint = file.url.strip_suffix(&path).unwrap_or_default();
            file.url.ends_with(&path)
                && reqwest::Url::parse(endpoint).is_ok_and(|u| {
                    matches!(u.scheme(), "http" | "https") && u.username().is_empty() && u.password().is_none()
                })
        }
        Source::Oci => {
            file.url == derived
                || Some(file.url.as_str())
                    == derived
                        .strip_prefix("https://")
                        .map(|rest| format!("http://{rest}"))
                        .as_deref()
        }
        _ => file.url == derived,
    };
    (!accepted).then(|| {
        format!(
            "config.yaml's {} source serves it at `{}`",
            model.source,
            crate::http::redact(&derived)
        )
    })
}

/// A PyTorch Hub model's file: the repository archive at the locked commit, or
/// one of the entry's weights (torchvision's catalog for `pytorch/vision`,
/// else `sources.pytorch_hub.weights`), matched by file name.
fn pytorch_hub_url(model: &LockedModel, file: &LockedFile, sources: &Sources) -> Option<String> {
    let crate::model_id::ModelId::PytorchHub { owner, repo, entry, .. } =
        crate::model_id::ModelId::parse(&format!("pytorch_hub:{}", model.id)).ok()?
    else {
        return None;
    };
    let commit = model.commit.as_deref()?;
    let hub = &sources.pytorch_hub;
    if file.path == format!("{owner}_{repo}_{}.zip", commit.get(..12)?) {
        let github = hub
            .github_url
            .as_deref()
            .unwrap_or("https://github.com")
            .trim_end_matches('/');
        return Some(format!("{github}/{owner}/{repo}/zipball/{commit}"));
    }
    if owner == "pytorch" && repo == "vision" {
        let tv = &sources.torchvision;
        let weight = crate::resolve::torchvision::lookup(&entry, None, tv.base_url.as_deref(), &tv.catalog).ok()?;
        return (weight.file_name == file.path).then_some(weight.url);
    }
    let urls = hub
        .weights
        .get(&format!("{owner}/{repo}/{entry}"))
        .map(|w| w.urls())
        .unwrap_or_default();
    urls.into_iter()
        .find(|url| crate::resolve::url_file_name(url) == file.path)
}
