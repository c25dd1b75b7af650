//! OCI artifacts (`oci:HOST/REPO[:TAG|@sha256:…]`): a model published by
//! `mdl push`, ORAS, ModelPack tooling or `docker model package`, whose
//! layers are files (`artifact::parse` says how each is named). The tag resolves to the manifest's
//! digest, which the lock pins (as a Hub revision resolves to a commit); each
//! layer's sha256 digest is the file's published hash.

use super::{filters, RemoteFile, ResolveError, ResolvedModel, Resolver};
use crate::config::ModelSpec;
use crate::fs::safe_relative_path;
use crate::oci::artifact::{self, Artifact};
use crate::oci::{OciError, OciRef};
use crate::source::Source;

impl Resolver<'_> {
    pub(super) async fn resolve_oci(
        &self,
        spec: &ModelSpec,
        repo: &str,
        revision: Option<&str>,
    ) -> Result<ResolvedModel, ResolveError> {
        let model = &spec.name;
        let oci = |error: OciError| ResolveError::Oci {
            model: model.clone(),
            error,
        };
        let base = OciRef::parse(repo).map_err(oci)?;
        let at = match revision {
            Some(digest) if digest.starts_with("sha256:") => base.at_digest(digest),
            Some(tag) => base.at_tag(tag),
            None => base.at_tag("latest"),
        };
        let registry = self.registries.get(&base.registry).await.map_err(oci)?;
        let fetch = |at: OciRef| {
            let registry = registry.clone();
            async move {
                registry.manifest(&at).await?.ok_or_else(|| OciError::NotFound {
                    reference: at.to_string(),
                })
            }
        };
        let (mut bytes, mut digest) = fetch(at.clone()).await.map_err(oci)?;
        let bad = |reason: String| {
            oci(OciError::BadArtifact {
                reference: at.to_string(),
                reason,
            })
        };
        // A lock's index (`mdl push … :TAG`): the model of this name in it,
        // or its only model; the lock pins that model's own manifest.
        if let Artifact::Index(models) = artifact::parse(&bytes).map_err(bad)? {
            // Lock names may hold `/`, which a model name cannot: `acme/bert`
            // is also found as `acme--bert` or, when no other model ends so, `bert`.
            let named: Vec<_> = (models.iter())
                .filter(|(name, _)| {
                    name.as_deref().is_some_and(|n| {
                        n == model || n.replace('/', "--") == *model || n.rsplit('/').next() == Some(model.as_str())
                    })
                })
                .collect();
            let chosen = match named.as_slice() {
                [one] => Some(*one),
                [] if models.len() == 1 => models.first(),
                _ => None,
            };
            let Some((_, model_digest)) = chosen else {
                let names: Vec<String> = models
                    .iter()
                    .map(|(name, digest)| match name {
                        Some(name) => format!("`{name}` (`oci:{}@{digest}`)", base.repo()),
                        None => format!("`oci:{}@{digest}`", base.repo()),
                    })
                    .collect();
                return Err(oci(OciError::IsAnIndex {
                    reference: at.to_string(),
                    models: names,
                }));
            };
            (bytes, digest) = fetch(base.at_digest(model_digest)).await.map_err(oci)?;
        }
        let layers = match artifact::parse(&bytes).map_err(bad)? {
            Artifact::Model(layers) => layers,
            Artifact::Index(_) => return Err(bad("its index lists another index, not a model".into())),
        };
        let (include, exclude) = filters(spec);
        let mut files = Vec::new();
        for layer in layers {
            if include.as_ref().is_some_and(|i| !i.is_match(&layer.path)) || exclude.is_match(&layer.path) {
                continue;
            }
            safe_relative_path(&layer.path).map_err(|source| ResolveError::Unsafe {
                model: model.clone(),
                source,
            })?;
            files.push(RemoteFile {
                url: registry.blob_url(&base, &layer.digest),
                sha256: layer.digest.strip_prefix("sha256:").map(str::to_string),
                etag: None,
                path: layer.path,
                size: Some(layer.size),
                git_oid: None,
                needs_token: false,
                sha256_prefix: None,
                xet_hash: None,
            });
        }
        super::check_case_collisions(model, &files)?;
        if files.is_empty() {
            return Err(ResolveError::NothingMatches {
                model: model.clone(),
                repo: base.repo(),
                commit: digest,
            });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(ResolvedModel {
            source: Source::Oci,
            id: base.repo(),
            revision: Some(revision.unwrap_or("latest").to_string()),
            commit: Some(digest),
            files,
        })
    }
}
