//! Model identifiers: the strings users write in `config.yaml` (`huggingface:org/name@rev`,
//! `url:https://…`, a bare `https://…` or `org/name`) parsed into a [`ModelId`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a model comes from. The lowercase name is what users write before `:`
/// and the prefix of the model's directory under `models/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Huggingface,
    Url,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Huggingface => "huggingface",
            Source::Url => "url",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed model identifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelId {
    /// A Hugging Face Hub model repository, at a branch, tag or commit.
    Huggingface {
        repo: String,
        revision: Option<String>,
    },
    /// A single file at an HTTP(S) URL.
    Url { url: String },
}

/// Why an identifier was rejected. The message lists the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{id}` is not a model identifier: {reason}")]
pub struct IdError {
    pub id: String,
    pub reason: String,
}

impl IdError {
    pub const ACCEPTED: &'static str = "accepted forms: `huggingface:org/name[@revision]`, \
        `url:https://host/path/file`, a bare `https://…` URL, or a bare `org/name` Hub repo";

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
        if let Some((scheme, rest)) = id.split_once(':') {
            return match scheme {
                "huggingface" | "hf" => parse_hf(id, rest),
                "url" => parse_url(id, rest),
                "torchvision" | "pytorch_hub" => Err(IdError::new(
                    id,
                    format!("the `{scheme}` source is not supported by this version of mdl"),
                )),
                other => Err(IdError::new(id, format!("`{other}` is not a known source"))),
            };
        }
        if id.contains('/') {
            return parse_hf(id, id);
        }
        Err(IdError::new(
            id,
            "a bare name without `org/` cannot be resolved; write the full Hub repo id",
        ))
    }

    pub fn source(&self) -> Source {
        match self {
            ModelId::Huggingface { .. } => Source::Huggingface,
            ModelId::Url { .. } => Source::Url,
        }
    }

    /// The source-specific id as it goes in the lock (`org/name`, the URL).
    pub fn locator(&self) -> &str {
        match self {
            ModelId::Huggingface { repo, .. } => repo,
            ModelId::Url { url } => url,
        }
    }

    pub fn revision(&self) -> Option<&str> {
        match self {
            ModelId::Huggingface { revision, .. } => revision.as_deref(),
            ModelId::Url { .. } => None,
        }
    }

    /// The default model name: the repo id, or the URL's file stem.
    pub fn default_name(&self) -> String {
        match self {
            ModelId::Huggingface { repo, .. } => repo.clone(),
            ModelId::Url { url } => {
                let path = url.split(['?', '#']).next().unwrap_or(url);
                let file = path.rsplit('/').find(|s| !s.is_empty()).unwrap_or("model");
                let stem = file
                    .split('.')
                    .next()
                    .filter(|s| !s.is_empty())
                    .unwrap_or(file);
                stem.to_string()
            }
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
            ModelId::Huggingface {
                repo,
                revision: None,
            } => write!(f, "huggingface:{repo}"),
            ModelId::Url { url } => write!(f, "url:{url}"),
        }
    }
}

fn parse_hf(id: &str, rest: &str) -> Result<ModelId, IdError> {
    let (repo, revision) = match rest.split_once('@') {
        Some((repo, rev)) if !rev.is_empty() => (repo, Some(rev.to_string())),
        Some(_) => return Err(IdError::new(id, "the revision after `@` is empty")),
        None => (rest, None),
    };
    let parts: Vec<&str> = repo.split('/').collect();
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
            "a Hub repo id is `name` or `org/name`, made of letters, digits, `-`, `_` and `.`",
        ));
    }
    Ok(ModelId::Huggingface {
        repo: repo.to_string(),
        revision,
    })
}

fn parse_url(id: &str, rest: &str) -> Result<ModelId, IdError> {
    let url = reqwest::Url::parse(rest)
        .map_err(|e| IdError::new(id, format!("the URL is invalid ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(IdError::new(
            id,
            "only http:// and https:// URLs can be downloaded",
        ));
    }
    if url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .is_none_or(str::is_empty)
    {
        return Err(IdError::new(id, "the URL must name a file"));
    }
    Ok(ModelId::Url {
        url: rest.to_string(),
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
    }

    #[test]
    fn rejected_forms() {
        for bad in [
            "",
            "resnet18",
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
