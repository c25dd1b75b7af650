//! Model identifiers: the strings users write in `config.yaml` (`huggingface:org/name@rev`,
//! `url:https://…`, a bare `https://…` or `org/name`) parsed into a [`ModelId`].

use std::fmt;

pub use crate::source::Source;

/// A parsed model identifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelId {
    /// A Hugging Face Hub model repository, at a branch, tag or commit.
    Huggingface { repo: String, revision: Option<String> },
    /// A single file at an HTTP(S) URL.
    Url { url: String },
    /// A torchvision classification weight (`resnet18`, `resnet50@IMAGENET1K_V2`).
    Torchvision { model: String, weights: Option<String> },
    /// A file or directory on disk, locked by content and used in place.
    Local { path: String },
    /// A PyTorch Hub entry: `pytorch_hub:owner/repo[:ref]/entry`.
    PytorchHub {
        owner: String,
        repo: String,
        reference: Option<String>,
        entry: String,
        path: String,
    },
    /// An artifact in an OCI registry: `oci:HOST/REPO[:TAG|@sha256:…]`;
    /// `repo` is `HOST/REPO`, `revision` the tag or digest written.
    Oci { repo: String, revision: Option<String> },
    /// A bare name (`resnet18`, `bert-base-uncased`), resolved at lock time in
    /// the seed's order: torchvision catalog, then the Hugging Face Hub.
    Auto { name: String },
}

/// Why an identifier was rejected. The message lists the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{id}` is not a model identifier: {reason}")]
pub struct IdError {
    pub id: String,
    pub reason: String,
}

impl IdError {
    pub const ACCEPTED: &'static str = "accepted forms: `huggingface:org/name[@revision]` (or `huggingface:datasets/org/name`, `huggingface:spaces/org/name`), \
        `url:https://host/path/file`, `torchvision:resnet18[@WEIGHTS]`, \
        `pytorch_hub:owner/repo[:ref]/entry`, `oci:host/repo[:tag|@sha256:…]`, `local:path` (or a path starting with `./`, `../`, `/`), \
        a bare `https://…` URL, a bare `org/name` Hub repo, or a bare name (`resnet18`, \
        `bert-base-uncased`) that is auto-detected";

    fn new(id: &str, reason: impl Into<String>) -> IdError {
        IdError {
            id: id.to_string(),
            reason: reason.into(),
        }
    }
}

impl ModelId {
    pub fn parse(raw: &str) -> Result<ModelId, IdError> {
        let id = raw.trim();
        if id.is_empty() {
            return Err(IdError::new(raw, "it is empty"));
        }
        if id.starts_with("http://") || id.starts_with("https://") {
            return parse_url(id, id);
        }
        if id.starts_with("./") || id.starts_with("../") || id.starts_with('/') || id.starts_with("~/") {
            return Ok(ModelId::Local { path: id.to_string() });
        }
        if let Some((scheme, rest)) = id.split_once(':') {
            return match scheme {
                "huggingface" | "hf" => parse_hf(id, rest),
                "url" => parse_url(id, rest),
                "torchvision" => parse_torchvision(id, rest),
                "local" | "file" if !rest.is_empty() => Ok(ModelId::Local { path: rest.to_string() }),
                "pytorch_hub" => parse_pytorch_hub(id, rest),
                "oci" => parse_oci(id, rest),
                other => Err(IdError::new(id, format!("`{other}` is not a known source"))),
            };
        }
        if id.contains('/') {
            return parse_hf(id, id);
        }
        let (name, revision) = id.split_once('@').unwrap_or((id, ""));
        if name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && revision.is_empty()
        {
            return Ok(ModelId::Auto { name: name.to_string() });
        }
        Err(IdError::new(
            id,
            "it is neither a source-prefixed id nor a plain model name",
        ))
    }

    /// The source, or `None` for a bare name that is detected at lock time.
    pub fn source(&self) -> Option<Source> {
        match self {
            ModelId::Huggingface { .. } => Some(Source::Huggingface),
            ModelId::Url { .. } => Some(Source::Url),
            ModelId::Torchvision { .. } => Some(Source::Torchvision),
            ModelId::Local { .. } => Some(Source::Local),
            ModelId::PytorchHub { .. } => Some(Source::PytorchHub),
            ModelId::Oci { .. } => Some(Source::Oci),
            ModelId::Auto { .. } => None,
        }
    }

    /// The source-specific id as it goes in the lock (`org/name`, the URL, the
    /// torchvision model, the path, the bare name).
    pub fn locator(&self) -> &str {
        match self {
            ModelId::Huggingface { repo, .. } => repo,
            ModelId::Url { url } => url,
            ModelId::Torchvision { model, .. } => model,
            ModelId::Local { path } => path,
            // `owner/repo/entry`, without the ref (the ref is the revision).
            ModelId::PytorchHub { path, .. } => path,
            ModelId::Oci { repo, .. } => repo,
            ModelId::Auto { name } => name,
        }
    }

    pub fn revision(&self) -> Option<&str> {
        match self {
            ModelId::Huggingface { revision, .. } => revision.as_deref(),
            ModelId::Torchvision { weights, .. } => weights.as_deref(),
            ModelId::PytorchHub { reference, .. } => reference.as_deref(),
            ModelId::Oci { revision, .. } => revision.as_deref(),
            _ => None,
        }
    }

    /// The default model name: the repo id, or the URL's file stem.
    pub fn default_name(&self) -> String {
        match self {
            ModelId::Huggingface { repo, .. } => repo.clone(),
            ModelId::Url { url: path } | ModelId::Local { path } => {
                let path = path.split(['?', '#']).next().unwrap_or(path);
                let file = path
                    .rsplit('/')
                    .find(|s| !s.is_empty() && *s != "." && *s != "..")
                    .unwrap_or("model");
                let stem = file.split('.').next().filter(|s| !s.is_empty()).unwrap_or(file);
                stem.to_string()
            }
            ModelId::Torchvision { model, .. } => model.clone(),
            ModelId::PytorchHub { entry, .. } => entry.clone(),
            // The repository without its host: `oci:ghcr.io/acme/bert` is `acme/bert`.
            ModelId::Oci { repo, .. } => repo.split_once('/').map_or(repo.as_str(), |(_, r)| r).to_string(),
            ModelId::Auto { name } => name.clone(),
        }
    }
}

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelId::Huggingface {
                repo,
                revision: Some(rev),
            } => write!(f, "huggingface:{repo}@{rev}"),
            ModelId::Huggingface { repo, revision: None } => write!(f, "huggingface:{repo}"),
            ModelId::Url { url } => write!(f, "url:{url}"),
            ModelId::Torchvision {
                model,
                weights: Some(w),
            } => write!(f, "torchvision:{model}@{w}"),
            ModelId::Torchvision { model, weights: None } => write!(f, "torchvision:{model}"),
            ModelId::Local { path } => write!(f, "local:{path}"),
            ModelId::PytorchHub {
                owner,
                repo,
                reference: Some(r),
                entry,
                ..
            } => write!(f, "pytorch_hub:{owner}/{repo}:{r}/{entry}"),
            ModelId::PytorchHub {
                path, reference: None, ..
            } => write!(f, "pytorch_hub:{path}"),
            ModelId::Oci {
                repo,
                revision: Some(r),
            } if r.starts_with("sha256:") => write!(f, "oci:{repo}@{r}"),
            ModelId::Oci {
                repo,
                revision: Some(r),
            } => write!(f, "oci:{repo}:{r}"),
            ModelId::Oci { repo, revision: None } => write!(f, "oci:{repo}"),
            ModelId::Auto { name } => f.write_str(name),
        }
    }
}

fn parse_hf(id: &str, rest: &str) -> Result<ModelId, IdError> {
    let (repo, revision) = match rest.split_once('@') {
        Some((repo, rev)) if !rev.is_empty() => (repo, Some(rev.to_string())),
        Some(_) => return Err(IdError::new(id, "the revision after `@` is empty")),
        None => (rest, None),
    };
    // `datasets/org/name` and `spaces/org/name` (as `hf download --repo-type`);
    // the type stays in the repo id, which is also the path of its files on
    // the Hub (`/datasets/org/name/resolve/…`).
    let repo = repo.strip_prefix("models/").unwrap_or(repo);
    let parts: Vec<&str> = match repo.split_once('/') {
        Some(("datasets" | "spaces", rest)) => rest.split('/').collect(),
        _ => repo.split('/').collect(),
    };
    let valid_part = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    if !(1..=2).contains(&parts.len()) || !parts.iter().all(|p| valid_part(p)) {
        return Err(IdError::new(
            id,
            "a Hub repo id is `name` or `org/name` (`datasets/org/name` or `spaces/org/name` for other repository types), made of letters, digits, `-`, `_` and `.`",
        ));
    }
    Ok(ModelId::Huggingface {
        repo: repo.to_string(),
        revision,
    })
}

fn parse_pytorch_hub(id: &str, rest: &str) -> Result<ModelId, IdError> {
    let parts: Vec<&str> = rest.split('/').collect();
    let [owner, repo_ref, entry] = parts.as_slice() else {
        return Err(IdError::new(
            id,
            "a PyTorch Hub entry is `pytorch_hub:owner/repo[:ref]/entry`",
        ));
    };
    let (repo, reference) = match repo_ref.split_once(':') {
        Some((r, reference)) if !reference.is_empty() => (r, Some(reference.to_string())),
        Some(_) => return Err(IdError::new(id, "the ref after `:` is empty")),
        None => (*repo_ref, None),
    };
    let ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && s != "."
            && s != ".."
    };
    if !(ok(owner) && ok(repo) && ok(entry)) {
        return Err(IdError::new(
            id,
            "owner, repo and entry are names of letters, digits, `-`, `_` and `.`",
        ));
    }
    Ok(ModelId::PytorchHub {
        owner: owner.to_string(),
        repo: repo.to_string(),
        reference,
        entry: entry.to_string(),
        path: format!("{owner}/{repo}/{entry}"),
    })
}

fn parse_torchvision(id: &str, rest: &str) -> Result<ModelId, IdError> {
    let (model, weights) = match rest.split_once('@') {
        Some((m, w)) if !w.is_empty() => (m, Some(w.to_string())),
        Some(_) => return Err(IdError::new(id, "the weights name after `@` is empty")),
        None => (rest, None),
    };
    if model.is_empty() || !model.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(IdError::new(
            id,
            "a torchvision model is a builder name like `resnet18`",
        ));
    }
    Ok(ModelId::Torchvision {
        model: model.to_string(),
        weights,
    })
}

fn parse_url(id: &str, rest: &str) -> Result<ModelId, IdError> {
    let url = reqwest::Url::parse(rest).map_err(|e| IdError::new(id, format!("the URL is invalid ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(IdError::new(id, "only http:// and https:// URLs can be downloaded"));
    }
    if url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .is_none_or(str::is_empty)
    {
        return Err(IdError::new(id, "the URL must name a file"));
    }
    Ok(ModelId::Url { url: rest.to_string() })
}

fn parse_oci(id: &str, rest: &str) -> Result<ModelId, IdError> {
    let reference = crate::oci::OciRef::parse(rest).map_err(|e| match e {
        crate::oci::OciError::BadReference { reason, .. } => IdError::new(id, reason),
        other => IdError::new(id, other.to_string()),
    })?;
    Ok(ModelId::Oci {
        repo: reference.repo(),
        revision: reference.digest.or(reference.tag),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        assert_eq!(
            ModelId::parse("huggingface:acme/tiny-gpt@v1.0").unwrap(),
            ModelId::Huggingface {
                repo: "acme/tiny-gpt".into(),
                revision: Some("v1.0".into())
            }
        );
        assert_eq!(
            ModelId::parse("acme/tiny-bert").unwrap(),
            ModelId::Huggingface {
                repo: "acme/tiny-bert".into(),
                revision: None
            }
        );
        assert_eq!(
            ModelId::parse("https://example.org/w/model.pt").unwrap(),
            ModelId::Url {
                url: "https://example.org/w/model.pt".into()
            }
        );
        assert_eq!(
            ModelId::parse("url:https://example.org/w/model.pt")
                .unwrap()
                .default_name(),
            "model"
        );
        assert_eq!(
            ModelId::parse("torchvision:resnet50@IMAGENET1K_V2").unwrap(),
            ModelId::Torchvision {
                model: "resnet50".into(),
                weights: Some("IMAGENET1K_V2".into())
            }
        );
        assert_eq!(
            ModelId::parse("resnet18").unwrap(),
            ModelId::Auto {
                name: "resnet18".into()
            }
        );
        assert_eq!(
            ModelId::parse("./weights/a.pt").unwrap(),
            ModelId::Local {
                path: "./weights/a.pt".into()
            }
        );
        assert_eq!(ModelId::parse("local:w/a.pt").unwrap().default_name(), "a");
    }

    #[test]
    fn repository_types_stay_in_the_repo_id() {
        for (raw, repo) in [
            ("huggingface:datasets/acme/corpus", "datasets/acme/corpus"),
            ("hf:spaces/acme/demo@main", "spaces/acme/demo"),
            ("huggingface:models/acme/x", "acme/x"),
        ] {
            match ModelId::parse(raw).unwrap() {
                ModelId::Huggingface { repo: r, .. } => assert_eq!(r, repo, "{raw}"),
                other => panic!("{raw}: {other:?}"),
            }
        }
        assert!(ModelId::parse("huggingface:datasets/a/b/c").is_err());
        assert!(ModelId::parse("huggingface:widgets/a/b").is_err());
    }

    #[test]
    fn rejected_forms() {
        assert_eq!(
            ModelId::parse("pytorch_hub:pytorch/vision:v0.20.0/resnet50").unwrap(),
            ModelId::PytorchHub {
                owner: "pytorch".into(),
                repo: "vision".into(),
                reference: Some("v0.20.0".into()),
                entry: "resnet50".into(),
                path: "pytorch/vision/resnet50".into()
            }
        );
        for bad in [
            "",
            "res net",
            "pytorch_hub:pytorch/vision",
            "pytorch_hub:pytorch/../x/e",
            "torchvision:resnet18@",
            "ftp:x",
            "url:ftp://x/y",
            "huggingface:a/b/c",
            "huggingface:../x",
            "huggingface:a/b@",
            "url:https://example.org/",
            "weird:thing",
        ] {
            let err = ModelId::parse(bad).unwrap_err();
            assert!(!err.reason.is_empty(), "{bad}");
        }
    }
}
