//! The sources a model can come from, and every fact about a source that the
//! rest of mdl needs, answered here once: the name users write before `:`,
//! the prefix of the model's directory, whether its files are used in place,
//! whether its requests carry the Hub token. [`Source::ALL`] is the exhaustive
//! list that `clean`, `list`, the registry and the store walk, so a new source
//! cannot be forgotten by one of them. How each source resolves lives in
//! `resolve/<source>.rs`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a model comes from. The lowercase name is what users write before `:`
/// and the prefix of the model's directory under `models/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Huggingface,
    Url,
    Torchvision,
    Local,
    PytorchHub,
    /// An OCI registry artifact (`oci:HOST/REPO[:TAG|@sha256:…]`).
    Oci,
}

impl Source {
    /// Every source. A `match` below without a wildcard makes adding a variant
    /// a compile error until each fact is answered for it.
    pub const ALL: [Source; 6] = [
        Source::Huggingface,
        Source::Url,
        Source::Torchvision,
        Source::Local,
        Source::PytorchHub,
        Source::Oci,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Huggingface => "huggingface",
            Source::Url => "url",
            Source::Torchvision => "torchvision",
            Source::Local => "local",
            Source::PytorchHub => "pytorch_hub",
            Source::Oci => "oci",
        }
    }

    /// Files are used where they are (never copied into `models/`); their
    /// model directory holds only `model_info.json`.
    pub fn used_in_place(self) -> bool {
        match self {
            Source::Local => true,
            Source::Huggingface | Source::Url | Source::Torchvision | Source::PytorchHub | Source::Oci => false,
        }
    }

    /// Requests for this source's files carry the Hub token. Only the Hub's own
    /// files do: a token must never reach another host.
    pub fn sends_hub_token(self) -> bool {
        match self {
            Source::Huggingface => true,
            Source::Url | Source::Torchvision | Source::Local | Source::PytorchHub | Source::Oci => false,
        }
    }

    /// Files are fetched from the current Hub endpoint at the locked commit (so
    /// a lock made against the Hub syncs from a mirror named by `HF_ENDPOINT`),
    /// rather than from the URL recorded in the lock.
    pub fn fetched_from_hub_endpoint(self) -> bool {
        match self {
            Source::Huggingface => true,
            Source::Url | Source::Torchvision | Source::Local | Source::PytorchHub | Source::Oci => false,
        }
    }

    /// The model's id is the URL of its one file, as the user wrote it. The
    /// lock keeps that URL, never where it redirects to (a signed URL that
    /// expires), and sync follows the redirects afresh.
    pub fn id_is_the_file_url(self) -> bool {
        match self {
            Source::Url => true,
            Source::Huggingface | Source::Torchvision | Source::Local | Source::PytorchHub | Source::Oci => false,
        }
    }

    /// The lock records the chosen weights (`IMAGENET1K_V1`, …) as `weights`.
    pub fn pins_weights(self) -> bool {
        match self {
            Source::Torchvision => true,
            Source::Huggingface | Source::Url | Source::Local | Source::PytorchHub | Source::Oci => false,
        }
    }

    /// Its files are registry blobs: their requests carry the registry's
    /// credentials (from Docker's config), obtained when they are fetched.
    pub fn sends_registry_credentials(self) -> bool {
        match self {
            Source::Oci => true,
            Source::Huggingface | Source::Url | Source::Torchvision | Source::Local | Source::PytorchHub => false,
        }
    }

    /// A model of this source is one file (its id names it): `include` and
    /// `exclude` do not apply.
    pub fn is_single_file(self) -> bool {
        match self {
            Source::Url | Source::Torchvision => true,
            Source::Huggingface | Source::Local | Source::PytorchHub | Source::Oci => false,
        }
    }

    /// Its files are what `torch.hub` loads (`download.torch_hub: true` places
    /// them where it looks).
    pub fn feeds_torch_hub(self) -> bool {
        match self {
            Source::Torchvision | Source::PytorchHub => true,
            Source::Huggingface | Source::Url | Source::Local | Source::Oci => false,
        }
    }

    /// The directory of a model of this source under `models/`: `<source>_<name>`,
    /// `/` in the name written as `--`.
    pub fn dir_name(self, name: &str) -> String {
        format!("{}_{}", self.as_str(), name.replace('/', "--"))
    }

    /// The source whose model directories look like `dir` (`huggingface_acme--x`).
    /// The longest prefix wins, so `pytorch_hub_x` is PyTorch Hub.
    pub fn of_dir_name(dir: &str) -> Option<Source> {
        Source::ALL
            .into_iter()
            .filter(|s| {
                dir.strip_prefix(s.as_str())
                    .is_some_and(|rest| rest.starts_with('_') && rest.len() > 1)
            })
            .max_by_key(|s| s.as_str().len())
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_owns_its_directories() {
        for source in Source::ALL {
            let dir = source.dir_name("acme/x");
            assert_eq!(Source::of_dir_name(&dir), Some(source), "{dir}");
        }
        assert_eq!(
            Source::of_dir_name("pytorch_hub_pytorch--vision"),
            Some(Source::PytorchHub)
        );
        assert_eq!(Source::of_dir_name("notes"), None);
        assert_eq!(Source::of_dir_name("url_"), None);
        assert_eq!(Source::of_dir_name("auto_x"), None);
    }
}
