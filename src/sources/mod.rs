//! Sources: where models come from. Each source lives in its own file and
//! implements [`SourceKind`] (`kind.rs`): how its ids are written and parsed,
//! its table under `models.download.sources`, how a model is resolved (asked
//! what it is now, without downloading), where each locked file is fetched
//! from, what its lock entries must hold, how its files travel (Hub token,
//! registry credentials, Xet), and what the caches may hold of it.
//!
//! This file registers them — one line each in [`sources!`] — and does what
//! needs all of them: parsing an id by its prefix, detecting a bare name in
//! registration order, reading `models.download.sources`, and dispatching a
//! resolution to the model's source.
//!
//! mdl talks to the Hub API itself rather than through hf-hub's `Api`: the lock
//! needs every file's size, LFS sha256 and git blob id in one call
//! (`/api/models/{repo}/revision/{rev}?blobs=true`), and downloads go through
//! mdl's own engine (resumable, concurrent, hash-checked), which hf-hub's
//! downloader is not. hf-hub is used for what it is good at here: finding the
//! token (see `env`).

use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::reporter::Event;

#[macro_use]
mod kind;

pub use self::kind::*;

/// Declares each source's module and registers its [`SourceKind`], in the
/// order bare names are detected in and `mdl list` shows them.
macro_rules! sources {
    ($($module:ident :: $kind:ident),* $(,)?) => {
        $(pub mod $module;)*
        /// Every registered source.
        pub static ALL: &[&dyn SourceKind] = &[$(&$module::$kind),*];
    };
}

sources! {
    torchvision::Torchvision,
    pytorch_hub::PytorchHub,
    huggingface::Huggingface,
    url::Url,
    local::Local,
    oci::Oci,
    modelscope::ModelScope,
}

impl Source {
    /// Every registered source.
    pub fn all() -> impl Iterator<Item = Source> {
        ALL.iter().map(|kind| Source(*kind))
    }

    /// The source users write as `name` before `:` (or one of its aliases).
    pub fn named(name: &str) -> Option<Source> {
        Source::all().find(|s| s.as_str() == name || s.kind().aliases().contains(&name))
    }

    /// The source whose model directories look like `dir` (`huggingface_acme--x`).
    /// The longest prefix wins, so `pytorch_hub_x` is PyTorch Hub.
    pub fn of_dir_name(dir: &str) -> Option<Source> {
        Source::all()
            .filter(|s| {
                dir.strip_prefix(s.as_str())
                    .is_some_and(|rest| rest.starts_with('_') && rest.len() > 1)
            })
            .max_by_key(|s| s.as_str().len())
    }
}

impl<'de> serde::Deserialize<'de> for Source {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Source, D::Error> {
        let name = String::deserialize(d)?;
        Source::named(&name).ok_or_else(|| de::Error::custom(format!("`{name}` is not a known source")))
    }
}

impl ModelId {
    /// Parses an id as users write it: `source:…`, a bare `https://` URL, a
    /// path (`./`, `../`, `/`, `~/`), a bare `org/name` Hub repo, or a bare
    /// name detected at lock time.
    pub fn parse(raw: &str) -> Result<ModelId, IdError> {
        let id = raw.trim();
        if id.is_empty() {
            return Err(IdError::new(raw, "it is empty"));
        }
        let shorthand = if id.starts_with("http://") || id.starts_with("https://") {
            Some(("url", id))
        } else if ["./", "../", "/", "~/"].iter().any(|p| id.starts_with(p)) {
            Some(("local", id))
        } else {
            None
        };
        let written = shorthand.or_else(|| id.split_once(':'));
        if let Some((scheme, rest)) = written {
            let source =
                Source::named(scheme).ok_or_else(|| IdError::new(id, format!("`{scheme}` is not a known source")))?;
            let (locator, revision) = source.kind().parse(id, rest)?;
            return Ok(ModelId::new(source, locator, revision));
        }
        if id.contains('/') {
            let hub = Source::named("huggingface").expect("the Hub is registered");
            let (locator, revision) = hub.kind().parse(id, id)?;
            return Ok(ModelId::new(hub, locator, revision));
        }
        if id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Ok(ModelId {
                source: None,
                locator: id.to_string(),
                revision: None,
            });
        }
        Err(IdError::new(
            id,
            "it is neither a source-prefixed id nor a plain model name",
        ))
    }
}

impl IdError {
    /// Every form an id may take, for hints.
    pub fn accepted() -> String {
        let forms: Vec<&str> = Source::all().map(|s| s.kind().form()).collect();
        format!(
            "accepted forms: {}, a bare `https://…` URL, a path starting with `./`, `../` or `/`, \
             a bare `org/name` Hub repo, or a bare name (`resnet18`, `bert-base-uncased`) that is auto-detected",
            forms.join(", ")
        )
    }
}

impl Default for Sources {
    fn default() -> Sources {
        Sources {
            tables: ALL.iter().map(|kind| (kind.name(), kind.default_table())).collect(),
        }
    }
}

impl serde::Serialize for Sources {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.tables.iter())
    }
}

impl<'de> serde::Deserialize<'de> for Sources {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Sources, D::Error> {
        struct Tables;
        struct Table(&'static dyn SourceKind);
        impl<'de> de::DeserializeSeed<'de> for Table {
            type Value = Box<dyn SourceTable>;
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                self.0
                    .read_table(&mut <dyn erased_serde::Deserializer>::erase(d))
                    .map_err(de::Error::custom)
            }
        }
        impl<'de> Visitor<'de> for Tables {
            type Value = Sources;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a table per source")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Sources, A::Error> {
                let mut sources = Sources::default();
                while let Some(name) = map.next_key::<String>()? {
                    let Some(kind) = ALL.iter().find(|k| k.name() == name) else {
                        let known: Vec<&str> = ALL.iter().map(|k| k.name()).collect();
                        return Err(de::Error::unknown_field(&name, Box::leak(known.into_boxed_slice())));
                    };
                    sources.tables.insert(kind.name(), map.next_value_seed(Table(*kind))?);
                }
                Ok(sources)
            }
        }
        d.deserialize_map(Tables)
    }
}

impl schemars::JsonSchema for Sources {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Sources".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let properties: serde_json::Map<String, serde_json::Value> = ALL
            .iter()
            .map(|kind| {
                let mut schema = kind.table_schema(generator).to_value();
                if let (Some(map), Ok(default)) = (schema.as_object_mut(), serde_json::to_value(kind.default_table())) {
                    map.insert("default".into(), default);
                }
                (kind.name().to_string(), schema)
            })
            .collect();
        schemars::json_schema!({
            "type": "object",
            "properties": properties,
            "additionalProperties": false,
        })
    }
}

impl Resolver<'_> {
    /// What `want` is now at its source (a bare name: detected first).
    pub async fn resolve(&self, want: &Want) -> Result<ResolvedModel, ResolveError> {
        self.reporter.report(Event::Resolving { model: &want.name });
        crate::failpoint::kill_point("resolve::model");
        match want.id.source {
            Some(source) if self.offline => source.kind().resolve_offline(self, want),
            None if self.offline => Err(ResolveError::OfflineSource {
                model: want.name.clone(),
            }),
            Some(source) => source.kind().resolve(self, want).await,
            None => self.detect(want).await,
        }
    }

    /// A bare name, asked of each enabled source that detects names, in
    /// registration order: the first that finds it answers.
    async fn detect(&self, want: &Want) -> Result<ResolvedModel, ResolveError> {
        let name = &want.id.locator;
        let mut tried = Vec::new();
        for source in Source::all() {
            let kind = source.kind();
            if !kind.detects_bare_names() {
                continue;
            }
            if !self.sources.enabled(source) {
                tried.push(format!("{}: the source is disabled", kind.title()));
                continue;
            }
            match kind.detect(self, want, name).await {
                Some(Ok(model)) => return Ok(model),
                Some(Err(ResolveError::Undetected { tried: why, .. })) => tried.extend(why),
                Some(Err(other)) => return Err(other),
                None => {}
            }
        }
        Err(ResolveError::Undetected {
            name: name.to_string(),
            tried,
        })
    }

    /// Resolves every want, at most `jobs` at once; results in their order.
    pub async fn resolve_all(&self, wants: &[Want], jobs: usize) -> Vec<Result<ResolvedModel, ResolveError>> {
        use futures_util::StreamExt;
        // The futures are built first (not in a `.map` closure over the stream):
        // that keeps the whole sync future `Send` for `tokio::spawn` (`mdl watch`).
        let lookups: Vec<_> = wants
            .iter()
            .enumerate()
            .map(|(i, want)| async move { (i, self.resolve(want).await) })
            .collect();
        let mut resolved: Vec<(usize, Result<ResolvedModel, ResolveError>)> = futures_util::stream::iter(lookups)
            .buffer_unordered(jobs.max(1))
            .collect()
            .await;
        resolved.sort_by_key(|(i, _)| *i);
        resolved.into_iter().map(|(_, r)| r).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_owns_its_directories() {
        assert!(ALL.len() >= 6, "{}", ALL.len());
        for source in Source::all() {
            let dir = source.dir_name("acme/x");
            assert_eq!(Source::of_dir_name(&dir), Some(source), "{dir}");
        }
        assert_eq!(
            Source::of_dir_name("pytorch_hub_pytorch--vision").map(Source::as_str),
            Some("pytorch_hub")
        );
        assert_eq!(Source::of_dir_name("notes"), None);
        assert_eq!(Source::of_dir_name("url_"), None);
        assert_eq!(Source::of_dir_name("auto_x"), None);
    }

    fn id(raw: &str) -> (String, String, Option<String>) {
        let id = ModelId::parse(raw).unwrap();
        let source = id.source().map_or("auto", Source::as_str).to_string();
        (source, id.locator, id.revision)
    }

    #[test]
    fn accepted_forms() {
        let some = |s: &str| Some(s.to_string());
        assert_eq!(
            id("huggingface:acme/tiny-gpt@v1.0"),
            ("huggingface".into(), "acme/tiny-gpt".into(), some("v1.0"))
        );
        assert_eq!(id("hf:acme/x"), ("huggingface".into(), "acme/x".into(), None));
        assert_eq!(
            id("acme/tiny-bert"),
            ("huggingface".into(), "acme/tiny-bert".into(), None)
        );
        assert_eq!(
            id("https://example.org/w/model.pt"),
            ("url".into(), "https://example.org/w/model.pt".into(), None)
        );
        assert_eq!(
            ModelId::parse("url:https://example.org/w/model.pt")
                .unwrap()
                .default_name(),
            "model"
        );
        assert_eq!(
            id("torchvision:resnet50@IMAGENET1K_V2"),
            ("torchvision".into(), "resnet50".into(), some("IMAGENET1K_V2"))
        );
        assert_eq!(id("resnet18"), ("auto".into(), "resnet18".into(), None));
        assert_eq!(id("./weights/a.pt"), ("local".into(), "./weights/a.pt".into(), None));
        assert_eq!(ModelId::parse("local:w/a.pt").unwrap().default_name(), "a");
        assert_eq!(
            id("pytorch_hub:pytorch/vision:v0.20.0/resnet50"),
            ("pytorch_hub".into(), "pytorch/vision/resnet50".into(), some("v0.20.0"))
        );
        assert_eq!(
            ModelId::parse("oci:ghcr.io/acme/bert:v1").unwrap().default_name(),
            "acme/bert"
        );
        for raw in [
            "huggingface:acme/x@v1",
            "url:https://example.org/w/model.pt",
            "torchvision:resnet50@IMAGENET1K_V2",
            "pytorch_hub:pytorch/vision:v0.20.0/resnet50",
            "oci:ghcr.io/acme/bert@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "oci:ghcr.io/acme/bert:v1",
            "local:w/a.pt",
        ] {
            assert_eq!(
                ModelId::parse(raw).unwrap().to_string(),
                raw,
                "an id is written back as it was read"
            );
        }
    }

    #[test]
    fn repository_types_stay_in_the_repo_id() {
        for (raw, repo) in [
            ("huggingface:datasets/acme/corpus", "datasets/acme/corpus"),
            ("hf:spaces/acme/demo@main", "spaces/acme/demo"),
            ("huggingface:models/acme/x", "acme/x"),
        ] {
            assert_eq!(id(raw).1, repo, "{raw}");
        }
        assert!(ModelId::parse("huggingface:datasets/a/b/c").is_err());
        assert!(ModelId::parse("huggingface:widgets/a/b").is_err());
    }

    #[test]
    fn rejected_forms() {
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
            "local:",
        ] {
            let err = ModelId::parse(bad).unwrap_err();
            assert!(!err.reason.is_empty(), "{bad}");
        }
    }
}
