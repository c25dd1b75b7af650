//! Mirrors (`download.mirrors`, `MDL_MIRROR`): OCI repositories that `mdl
//! push` filled, tried before upstream for every locked file.
//!
//! A model is found on a mirror by its manifest's tag, [`model_tag`], which
//! only its files' paths, sizes and blake3 decide; each file by the blake3 in
//! its layer's annotations. What a mirror sends is checked against the lock
//! (size, blake3) like any download, so a mirror can make a sync faster but
//! never change what lands on disk; the lock is never touched.

use std::collections::BTreeMap;

use crate::lock::confirm::SourceDigest;
use crate::lock::LockedModel;
use crate::oci::artifact::{self, model_tag, Artifact};
use crate::oci::OciRef;
use crate::plan::Download;

use super::Fetcher;

/// Where each wanted file can be fetched from a mirror.
#[derive(Default)]
pub struct MirrorPlan {
    /// Per download (in the order given): the same file from a mirror.
    pub alternatives: Vec<Option<Download>>,
    /// Mirrors that could not be asked (unreachable, refused), with why.
    pub unusable: Vec<(OciRef, String)>,
}

impl Fetcher {
    /// Asks each mirror, in order, for the models of `wanted` (each download
    /// with its locked model) and returns, per download, the first mirror's
    /// copy of its file. A mirror that cannot be asked is skipped, with why.
    pub async fn find_on_mirrors(&self, mirrors: &[OciRef], wanted: &[(&LockedModel, &Download)]) -> MirrorPlan {
        let mut plan = MirrorPlan {
            alternatives: vec![None; wanted.len()],
            unusable: Vec::new(),
        };
        let mut models: BTreeMap<&str, &LockedModel> = BTreeMap::new();
        for (model, _) in wanted {
            models.insert(&model.name, model);
        }
        for mirror in mirrors {
            let registry = match self.registries().get(&mirror.registry).await {
                Ok(r) => r,
                Err(e) => {
                    plan.unusable.push((mirror.clone(), e.to_string()));
                    continue;
                }
            };
            for model in models.values() {
                let tag = model_tag(model.files.iter().map(|f| (f.path.as_str(), f.size, f.blake3.as_str())));
                let manifest = match registry.manifest(&mirror.at_tag(&tag)).await {
                    Ok(Some((bytes, _))) => bytes,
                    Ok(None) => continue,
                    Err(e) => {
                        plan.unusable.push((mirror.clone(), e.to_string()));
                        break;
                    }
                };
                let Ok(Artifact::Model(layers)) = artifact::parse(&manifest) else {
                    continue;
                };
                for (i, (wanted_model, download)) in wanted.iter().enumerate() {
                    if wanted_model.name != model.name || plan.alternatives[i].is_some() {
                        continue;
                    }
                    let Some(layer) = layer_of(&layers, wanted_model, download) else {
                        continue;
                    };
                    plan.alternatives[i] =
                        Some(from_mirror(download, mirror, registry.blob_url(mirror, &layer.digest)));
                }
            }
        }
        plan
    }
}

/// The layer of the mirror's manifest that holds `download`'s file: by mdl's
/// blake3 annotation; for a layer another tool wrote (no blake3), by the
/// sha256 the lock has. Either way the download is checked against the
/// lock's blake3. `None` for a download whose lock entry is unconfirmed.
fn layer_of<'a>(
    layers: &'a [artifact::Layer],
    model: &LockedModel,
    download: &Download,
) -> Option<&'a artifact::Layer> {
    let (Some(blake3), Some(size)) = (&download.expect.blake3, download.expect.size) else {
        return None;
    };
    if download.unconfirmed {
        return None;
    }
    let sha256 = (model.files.iter())
        .find(|f| &f.blake3 == blake3 && f.size == size)
        .and_then(|f| f.sha256.as_ref())
        .map(|h| format!("sha256:{h}"));
    layers.iter().find(|l| {
        l.size == size
            && match &l.blake3 {
                Some(b) => b == blake3,
                None => sha256.as_ref() == Some(&l.digest),
            }
    })
}

/// `download`'s file from the mirror's blob at `url`. A mirror's bytes are
/// selected by the lock's content address: they must also hash to what the
/// source states.
fn from_mirror(download: &Download, mirror: &OciRef, url: String) -> Download {
    let mut expect = download.expect.clone();
    match &download.source_digest {
        Some(SourceDigest::Sha256(sha)) => expect.sha256 = Some(sha.clone()),
        Some(SourceDigest::GitOid(oid)) => expect.git_oid = Some(oid.clone()),
        None => {}
    }
    Download {
        label: download.label.clone(),
        url,
        dest: download.dest.clone(),
        expect,
        authorization: None,
        registry: Some(mirror.clone()),
        hub: false,
        insecure: false,
        hub_blob: None,
        xet: None,
        source_digest: download.source_digest.clone(),
        unconfirmed: false,
    }
}
