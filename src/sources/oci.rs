//! OCI artifacts (`oci:HOST/REPO[:TAG|@sha256:…]`): a model published by
//! `mdl push`, ORAS, ModelPack tooling or `docker model package`, whose
//! layers are files (`artifact::parse` says how each is named). The tag resolves to the manifest's
//! digest, which the lock pins (as a Hub revision resolves to a commit); each
//! layer's sha256 digest is the file's published hash.

use futures_util::future::BoxFuture;

use crate::fs::safe_relative_path;
use crate::oci::artifact::{self, Artifact};
use crate::oci::{OciError, OciRef};
use crate::sources::kind::{
    check_case_collisions, filters, IdError, Pinned, PinnedFile, RemoteFile, ResolveError, ResolvedModel, Resolver,
    Source, SourceKind, UrlContext, Want,
};

/// An artifact in an OCI registry (`oci:HOST/REPO[:TAG|@sha256:…]`).
pub struct Oci;

/// A lock's index (`mdl push … :TAG`): the model of this name in it, or its
/// only model; the lock pins that model's own manifest. Lock names may hold
/// `/`, which a model name cannot: `acme/bert` is also found as `acme--bert`
/// or, when no other model ends so, `bert`.
fn choose_from_index<'a>(
    model: &str,
    base: &OciRef,
    at: &OciRef,
    models: &'a [(Option<String>, String)],
) -> Result<&'a str, OciError> {
    let named: Vec<_> = (models.iter())
        .filter(|(name, _)| {
            name.as_deref().is_some_and(|n| {
                n == model || n.replace('/', "--") == model || n.rsplit('/').next() == Some(model)
            })
        })
        .collect();
    let chosen = match named.as_slice() {
        [one] => Some(*one),
        [] if models.len() == 1 => models.first(),
        _ => None,
    };
    match chosen {
        Some((_, digest)) => Ok(digest),
        None => Err(OciError::IsAnIndex {
            reference: at.to_string(),
            models: (models.iter())
                .map(|(name, digest)| match name {
                    Some(name) => format!("`{name}` (`oci:{}@{digest}`)", base.repo()),
                    None => format!("`oci:{}@{digest}`", base.repo()),
                })
                .collect(),
        }),
    }
}

/// `models.download.sources.oci`.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OciTable {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Registries (`host[:port]`) reached over plain HTTP although not on this
    /// machine. Loopback registries always are; everything else is HTTPS.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub insecure_registries: Vec<String>,
}

fn yes() -> bool {
    true
}

impl Default for OciTable {
    fn default() -> Self {
        OciTable {
            enabled: true,
            insecure_registries: Vec::new(),
        }
    }
}

source_table!(OciTable);

impl SourceKind for Oci {
    fn name(&self) -> &'static str {
        "oci"
    }
    fn form(&self) -> &'static str {
        "`oci:host/repo[:tag|@sha256:…]`"
    }
    fn parse(&self, id: &str, rest: &str) -> Result<(String, Option<String>), IdError> {
        let reference = OciRef::parse(rest).map_err(|e| match e {
            OciError::BadReference { reason, .. } => IdError::new(id, reason),
            other => IdError::new(id, other.to_string()),
        })?;
        Ok((reference.repo(), reference.digest.or(reference.tag)))
    }
    fn display(&self, locator: &str, revision: Option<&str>) -> String {
        match revision {
            Some(r) if r.starts_with("sha256:") => format!("oci:{locator}@{r}"),
            Some(r) => format!("oci:{locator}:{r}"),
            None => format!("oci:{locator}"),
        }
    }
    /// The repository without its host: `oci:ghcr.io/acme/bert` is `acme/bert`.
    fn default_name(&self, locator: &str) -> String {
        locator.split_once('/').map_or(locator, |(_, r)| r).to_string()
    }
    fn sends_registry_credentials(&self) -> bool {
        true
    }
    table_of!(OciTable);
    fn resolve<'a>(&'a self, r: &'a Resolver<'a>, want: &'a Want) -> BoxFuture<'a, Result<ResolvedModel, ResolveError>> {
        Box::pin(r.resolve_oci(want, &want.id.locator, want.id.revision.as_deref()))
    }
    /// The configured repository's blob of the file's digest (`https://`; the
    /// fetcher speaks plain HTTP to a registry that needs it).
    fn file_url(&self, model: &Pinned<'_>, file: &PinnedFile<'_>, _cx: &UrlContext<'_>) -> Result<String, String> {
        let repo = OciRef::parse(model.id).map_err(|e| e.to_string())?;
        let sha256 = file.sha256.ok_or("no digest is locked")?;
        Ok(repo.blob_url("https", &format!("sha256:{sha256}")))
    }
    /// A registry blob's recorded URL may use either scheme.
    fn accepts_recorded_url(&self, _model: &Pinned<'_>, file: &PinnedFile<'_>, derived: &str) -> bool {
        file.url == derived
            || Some(file.url) == derived.strip_prefix("https://").map(|rest| format!("http://{rest}")).as_deref()
    }
    fn check_commit(&self, commit: Option<&str>) -> Result<(), String> {
        match commit {
            Some(c) if crate::hash::is_sha256_digest(c) => Ok(()),
            Some(_) => Err("is not a manifest digest (`sha256:` and 64 hex digits)".into()),
            None => Err("is missing: the lock pins the manifest digest".into()),
        }
    }
    fn check_files(&self, files: &[PinnedFile<'_>]) -> Result<(), (usize, &'static str, &'static str)> {
        match files.iter().position(|f| f.sha256.is_none()) {
            Some(i) => Err((i, "sha256", "is missing: a registry file is fetched by its digest")),
            None => Ok(()),
        }
    }
}

impl Resolver<'_> {
    pub(crate) async fn resolve_oci(
        &self,
        spec: &Want,
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
            let model_digest = choose_from_index(model, &base, &at, &models).map_err(oci)?;
            (bytes, digest) = fetch(base.at_digest(model_digest)).await.map_err(oci)?;
        }
        let layers = match artifact::parse(&bytes).map_err(bad)? {
            Artifact::Model(layers) => layers,
            Artifact::Index(_) => return Err(bad("its index lists another index, not a model".into())),
        };
        let mut files = layer_files(spec, layers, |digest| registry.blob_url(&base, digest))?;
        check_case_collisions(model, &files)?;
        if files.is_empty() {
            return Err(ResolveError::NothingMatches {
                model: model.clone(),
                repo: base.repo(),
                commit: digest,
            });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(ResolvedModel {
            source: Source(&Oci),
            id: base.repo(),
            revision: Some(revision.unwrap_or("latest").to_string()),
            commit: Some(digest),
            files,
        })
    }
}

/// The layers `spec`'s filters keep, as files: a safe path, the layer's size
/// and digest, and its blob's URL (`blob_url` of the digest).
fn layer_files(
    spec: &Want,
    layers: Vec<artifact::Layer>,
    blob_url: impl Fn(&str) -> String,
) -> Result<Vec<RemoteFile>, ResolveError> {
    let (include, exclude) = filters(spec);
    let mut files = Vec::new();
    for layer in layers {
        if include.as_ref().is_some_and(|i| !i.is_match(&layer.path)) || exclude.is_match(&layer.path) {
            continue;
        }
        safe_relative_path(&layer.path).map_err(|source| ResolveError::Unsafe {
            model: spec.name.clone(),
            source,
        })?;
        files.push(RemoteFile {
            url: blob_url(&layer.digest),
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
    Ok(files)
}
