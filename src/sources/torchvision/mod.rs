//! torchvision's classification weights: a built-in catalog read from
//! torchvision's own sources (see `catalog.rs`), overridable and
//! extendable in config, and torch.hub's rule that a weight file's name carries
//! the first hex digits of its sha256 (`resnet18-f37072fd.pth`).

use std::collections::BTreeMap;

use futures_util::future::BoxFuture;

mod catalog;

pub use self::catalog::{BASE_URL, CATALOG};
use crate::sources::kind::{
    ConfigRevision, Detected, IdError, Pinned, PinnedFile, ResolveError, ResolvedModel, Resolver, Source, SourceKind,
    UrlContext, Via, Want,
};

/// torchvision's classification weights (`torchvision:resnet18[@WEIGHTS]`).
pub struct Torchvision;

/// `models.download.sources.torchvision`.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TorchvisionTable {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Where weight files are fetched from (default: PyTorch's server); a mirror.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Added or overridden catalog entries: `resnet18` or `resnet50@IMAGENET1K_V2`
    /// → a file name under `base_url` or a full URL.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub catalog: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

impl Default for TorchvisionTable {
    fn default() -> Self {
        TorchvisionTable {
            enabled: true,
            base_url: None,
            catalog: BTreeMap::new(),
        }
    }
}

source_table!(TorchvisionTable);

impl SourceKind for Torchvision {
    fn name(&self) -> &'static str {
        "torchvision"
    }
    fn form(&self) -> &'static str {
        "`torchvision:resnet18[@WEIGHTS]`"
    }
    fn parse(&self, id: &str, rest: &str) -> Result<(String, Option<String>), IdError> {
        let (model, weights) = match rest.split_once('@') {
            Some((m, w)) if !w.is_empty() => (m, Some(w.to_string())),
            Some(_) => return Err(IdError::new(id, "the weights name after `@` is empty")),
            None => (rest, None),
        };
        if model.is_empty() || !model.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(IdError::new(id, "a torchvision model is a builder name like `resnet18`"));
        }
        Ok((model.to_string(), weights))
    }
    fn config_revision(&self) -> ConfigRevision {
        ConfigRevision::Defaulted
    }
    fn pins_weights(&self) -> bool {
        true
    }
    fn is_single_file(&self) -> bool {
        true
    }
    fn feeds_torch_hub(&self) -> bool {
        true
    }
    fn detects_bare_names(&self) -> bool {
        true
    }
    table_of!(TorchvisionTable);
    fn resolve<'a>(&'a self, r: &'a Resolver<'a>, want: &'a Want) -> BoxFuture<'a, Result<ResolvedModel, ResolveError>> {
        Box::pin(r.resolve_torchvision(want, &want.id.locator, want.id.revision.as_deref()))
    }
    fn detect<'a>(&'a self, r: &'a Resolver<'a>, want: &'a Want, name: &'a str) -> BoxFuture<'a, Option<Detected>> {
        Box::pin(async move {
            let tv = r.sources.table::<TorchvisionTable>();
            if knows(name, &tv.catalog) {
                return Some(r.resolve_torchvision(want, name, None).await);
            }
            let similar = match lookup(name, None, None, &tv.catalog) {
                Err(LookupError::UnknownModel { similar }) if !similar.is_empty() => {
                    format!(" (similar: {})", similar.join(", "))
                }
                _ => String::new(),
            };
            Some(Err(ResolveError::Undetected {
                name: name.to_string(),
                tried: vec![format!("torchvision catalog: no model `{name}`{similar}")],
            }))
        })
    }
    /// The catalog's URL of the locked weights (config.yaml's entries first).
    fn file_url(&self, model: &Pinned<'_>, file: &PinnedFile<'_>, cx: &UrlContext<'_>) -> Result<String, String> {
        let tv = cx.sources.table::<TorchvisionTable>();
        let weight = lookup(model.id, model.revision, tv.base_url.as_deref(), &tv.catalog)
            .map_err(|_| format!("its catalog has no `{}`", model.id))?;
        if weight.file_name != file.path {
            return Err(format!("its catalog names `{}`", weight.file_name));
        }
        Ok(weight.url)
    }
}

/// A weight chosen from the catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Weight {
    pub model: String,
    /// `IMAGENET1K_V1`, … (or `custom` for a config entry without a weights name).
    pub weights: String,
    pub url: String,
    pub file_name: String,
}

/// Why a catalog lookup failed, with what the catalog does have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LookupError {
    UnknownModel { similar: Vec<String> },
    UnknownWeights { available: Vec<String> },
}

/// Looks `model[@weights]` up: config entries (`overrides`, keyed `model` or
/// `model@weights`, valued a file name under `base_url` or a full URL) first,
/// then the built-in catalog. Without `@weights`, torchvision's DEFAULT.
pub fn lookup(
    model: &str,
    weights: Option<&str>,
    base_url: Option<&str>,
    overrides: &BTreeMap<String, String>,
) -> Result<Weight, LookupError> {
    let base = base_url.unwrap_or(BASE_URL);
    let join = |file: &str| {
        if file.starts_with("http://") || file.starts_with("https://") {
            file.to_string()
        } else {
            format!("{}/{}", base.trim_end_matches('/'), file.trim_start_matches('/'))
        }
    };
    let key = match weights {
        Some(w) => format!("{model}@{w}"),
        None => model.to_string(),
    };
    if let Some(file) = overrides.get(&key) {
        let url = join(file);
        let file_name = url.rsplit('/').next().unwrap_or(file).to_string();
        return Ok(Weight {
            model: model.into(),
            weights: weights.unwrap_or("custom").into(),
            url,
            file_name,
        });
    }
    let entries: Vec<_> = CATALOG.iter().filter(|(m, ..)| *m == model).collect();
    if entries.is_empty() {
        let mut similar: Vec<String> = CATALOG
            .iter()
            .map(|(m, ..)| m.to_string())
            .chain(overrides.keys().map(|k| k.split('@').next().unwrap_or(k).to_string()))
            .filter(|m| m.starts_with(model) || model.starts_with(m.trim_end_matches(|c: char| c.is_ascii_digit())))
            .collect();
        similar.sort();
        similar.dedup();
        return Err(LookupError::UnknownModel { similar });
    }
    let entry = match weights {
        Some(w) => entries.iter().find(|(_, name, ..)| *name == w),
        None => entries.iter().find(|(.., default)| *default),
    };
    match entry {
        Some((m, w, file, _)) => Ok(Weight {
            model: m.to_string(),
            weights: w.to_string(),
            url: join(file),
            file_name: file.to_string(),
        }),
        None => Err(LookupError::UnknownWeights {
            available: entries.iter().map(|(_, w, ..)| w.to_string()).collect(),
        }),
    }
}

/// Whether the catalog (built-in or config) knows `model`.
pub fn knows(model: &str, overrides: &BTreeMap<String, String>) -> bool {
    CATALOG.iter().any(|(m, ..)| *m == model) || overrides.keys().any(|k| k.split('@').next() == Some(model))
}

/// The sha256 prefix in a file name, as torch.hub's `HASH_REGEX = r"-([a-f0-9]*)\."`
/// finds it: the first `-`, hex digits, `.`. `None` when there is none (or it is empty).
pub fn hash_prefix(file_name: &str) -> Option<String> {
    let bytes = file_name.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b != b'-' {
            continue;
        }
        let hex: String = file_name[i + 1..]
            .chars()
            .take_while(|c| matches!(c, '0'..='9' | 'a'..='f'))
            .collect();
        if file_name[i + 1 + hex.len()..].starts_with('.') {
            return (!hex.is_empty()).then_some(hex);
        }
    }
    None
}

impl Resolver<'_> {
    pub(crate) async fn resolve_torchvision(
        &self,
        spec: &Want,
        model: &str,
        weights: Option<&str>,
    ) -> Result<ResolvedModel, ResolveError> {
        let tv = self.sources.table::<TorchvisionTable>();
        let weight = lookup(model, weights, tv.base_url.as_deref(), &tv.catalog).map_err(|e| match e {
            LookupError::UnknownModel { similar } => ResolveError::UnknownTorchvisionModel {
                name: spec.name.clone(),
                model: model.into(),
                similar,
            },
            LookupError::UnknownWeights { available } => ResolveError::UnknownTorchvisionWeights {
                model: model.into(),
                weights: weights.unwrap_or_default().into(),
                available,
            },
        })?;
        let mut resolved = self.resolve_url(spec, &weight.url, Via::Plain).await?;
        resolved.source = Source(&Torchvision);
        resolved.id = weight.model.clone();
        resolved.revision = Some(weight.weights.clone());
        for file in &mut resolved.files {
            file.path = weight.file_name.clone();
            // torch.hub checks this for every torchvision download; so does mdl.
            file.sha256_prefix = hash_prefix(&weight.file_name);
        }
        Ok(resolved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalog_entry_has_the_url_shape_and_a_hash_prefix() {
        let mut defaults = BTreeMap::new();
        for (model, weights, file, default) in CATALOG {
            assert!(file.ends_with(".pth"), "{model}@{weights}: {file}");
            let prefix = hash_prefix(file).unwrap_or_else(|| panic!("{file} has no hash prefix"));
            assert!(
                prefix.len() >= 6 && prefix.chars().all(|c| c.is_ascii_hexdigit()),
                "{file}"
            );
            assert!(!file.contains('/') && !file.contains(".."), "{file}");
            if *default {
                assert!(defaults.insert(*model, *weights).is_none(), "{model} has two defaults");
            }
        }
        // Every model has exactly one default.
        let models: std::collections::BTreeSet<_> = CATALOG.iter().map(|(m, ..)| *m).collect();
        assert_eq!(models.len(), defaults.len());
        for wanted in ["resnet18", "resnet50", "mobilenet_v2", "efficientnet_b0", "vgg16"] {
            assert!(models.contains(wanted), "the seed's presets need {wanted}");
        }
    }

    #[test]
    fn lookups() {
        let none = BTreeMap::new();
        let w = lookup("resnet18", None, None, &none).unwrap();
        assert_eq!(w.url, "https://download.pytorch.org/models/resnet18-f37072fd.pth");
        assert_eq!(lookup("resnet50", None, None, &none).unwrap().weights, "IMAGENET1K_V2");
        assert_eq!(
            lookup("resnet50", Some("IMAGENET1K_V1"), Some("http://m/x/"), &none)
                .unwrap()
                .url,
            "http://m/x/resnet50-0676ba61.pth"
        );
        assert!(
            matches!(lookup("resnet50", Some("NOPE"), None, &none), Err(LookupError::UnknownWeights { available }) if available.len() == 2)
        );
        match lookup("resnet", None, None, &none) {
            Err(LookupError::UnknownModel { similar }) => {
                assert!(similar.contains(&"resnet18".to_string()), "{similar:?}")
            }
            other => panic!("{other:?}"),
        }
        let custom = BTreeMap::from([("resnet18".to_string(), "resnet18-abcdef12.pth".to_string())]);
        assert_eq!(
            lookup("resnet18", None, Some("http://mirror/"), &custom).unwrap().url,
            "http://mirror/resnet18-abcdef12.pth"
        );
    }

    #[test]
    fn hash_prefix_follows_torch_hub() {
        assert_eq!(hash_prefix("resnet18-f37072fd.pth").as_deref(), Some("f37072fd"));
        assert_eq!(hash_prefix("alexnet-owt-7be5be79.pth").as_deref(), Some("7be5be79"));
        assert_eq!(
            hash_prefix("vgg16_features-amdegroot-88682ab5.pth").as_deref(),
            Some("88682ab5")
        );
        assert_eq!(hash_prefix("model.pth"), None);
        assert_eq!(hash_prefix("a-.pth"), None);
    }
}
