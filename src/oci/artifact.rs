//! How a locked model looks as an OCI artifact, and how one is read back.
//!
//! `mdl push` writes, per model, an OCI image manifest with
//! `artifactType: application/vnd.mdl.model.v1+json`, the empty config, and
//! one layer per file: its sha256 digest, the path as
//! `org.opencontainers.image.title` (the ORAS convention) and the blake3 as
//! `dev.mdl.blake3`; the model's lock entry rides in the manifest's
//! annotations. Weight files get ModelPack's raw weight media type, others its
//! raw weight-config type, so ModelPack-aware tools see what they hold. One
//! index for the whole lock points at every model's manifest.
//!
//! Each model's manifest is also tagged [`model_tag`]: a name computed from
//! its files' paths, sizes and blake3 alone, so any project whose lock holds
//! the same files finds them on a mirror without being told a tag.

use serde::Deserialize;
use serde_json::{json, Value};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MODEL_ARTIFACT: &str = "application/vnd.mdl.model.v1+json";
pub const LOCK_ARTIFACT: &str = "application/vnd.mdl.lock.v1+json";
pub const WEIGHT_LAYER: &str = "application/vnd.cncf.model.weight.v1.raw";
pub const OTHER_LAYER: &str = "application/vnd.cncf.model.weight.config.v1.raw";
pub const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";
/// The empty config `{}` and its digest, as the OCI image spec defines them.
pub const EMPTY_CONFIG_BYTES: &[u8] = b"{}";
pub const EMPTY_CONFIG_DIGEST: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

pub const TITLE: &str = "org.opencontainers.image.title";
pub const BLAKE3: &str = "dev.mdl.blake3";
pub const MODEL_NAME: &str = "dev.mdl.model";
pub const LOCK_ENTRY: &str = "dev.mdl.lock";

/// A file as a layer: where it goes, what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    pub path: String,
    /// `sha256:…`
    pub digest: String,
    pub size: u64,
    pub blake3: Option<String>,
}

/// The mirror tag of a model with these files (`path`, `size`, `blake3`):
/// `mdl-` and 40 hex digits of a blake3 over them, sorted by path.
pub fn model_tag<'a>(files: impl IntoIterator<Item = (&'a str, u64, &'a str)>) -> String {
    let mut files: Vec<_> = files.into_iter().collect();
    files.sort();
    let mut hasher = blake3::Hasher::new();
    for (path, size, blake3) in files {
        hasher.update(format!("{path}\0{size}\0{blake3}\n").as_bytes());
    }
    format!("mdl-{}", &hasher.finalize().to_hex()[..40])
}

/// A weight file by its name, for the layer's media type.
fn is_weights(path: &str) -> bool {
    const WEIGHTS: [&str; 9] = [
        ".safetensors",
        ".bin",
        ".pt",
        ".pth",
        ".ckpt",
        ".gguf",
        ".onnx",
        ".h5",
        ".msgpack",
    ];
    WEIGHTS.iter().any(|ext| path.ends_with(ext))
}

/// One model's manifest. `lock_entry` is its `models.lock` entry as JSON.
pub fn model_manifest(name: &str, lock_entry: &Value, layers: &[Layer]) -> Vec<u8> {
    let layers: Vec<Value> = layers
        .iter()
        .map(|l| {
            let mut annotations = serde_json::Map::new();
            annotations.insert(TITLE.into(), l.path.clone().into());
            if let Some(b) = &l.blake3 {
                annotations.insert(BLAKE3.into(), b.clone().into());
            }
            json!({
                "mediaType": if is_weights(&l.path) { WEIGHT_LAYER } else { OTHER_LAYER },
                "digest": l.digest,
                "size": l.size,
                "annotations": annotations,
            })
        })
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": MODEL_ARTIFACT,
        "config": { "mediaType": EMPTY_CONFIG, "digest": EMPTY_CONFIG_DIGEST, "size": EMPTY_CONFIG_BYTES.len() },
        "layers": layers,
        "annotations": {
            TITLE: name,
            MODEL_NAME: name,
            LOCK_ENTRY: lock_entry.to_string(),
        },
    });
    serde_json::to_vec(&manifest).expect("serialises")
}

/// The index of a whole lock: `(model name, manifest digest, manifest size)`.
pub fn lock_index(models: &[(String, String, u64)]) -> Vec<u8> {
    let manifests: Vec<Value> = models
        .iter()
        .map(|(name, digest, size)| {
            json!({
                "mediaType": OCI_MANIFEST,
                "artifactType": MODEL_ARTIFACT,
                "digest": digest,
                "size": size,
                "annotations": { MODEL_NAME: name, TITLE: name },
            })
        })
        .collect();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "artifactType": LOCK_ARTIFACT,
        "manifests": manifests,
    });
    serde_json::to_vec(&index).expect("serialises")
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: Option<String>,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

/// What a manifest or index holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Artifact {
    /// A model: its files.
    Model(Vec<Layer>),
    /// An index: the manifests it lists, by name where annotated.
    Index(Vec<(Option<String>, String)>),
}

/// Reads a manifest as mdl, ORAS or ModelPack publish them: every layer must
/// name its file (`org.opencontainers.image.title`); a container image's
/// unnamed tar layers are refused, not guessed at.
pub fn parse(bytes: &[u8]) -> Result<Artifact, String> {
    let manifest: Manifest =
        serde_json::from_slice(bytes).map_err(|e| format!("its manifest is not valid JSON ({e})"))?;
    if let Some(manifests) = manifest.manifests {
        // A digest goes into a URL and a lock: only `sha256:` + 64 hex.
        if let Some(bad) = manifests.iter().find(|d| !crate::hash::is_sha256_digest(&d.digest)) {
            return Err(format!(
                "its index names the manifest `{}`; mdl reads sha256 digests",
                bad.digest.escape_debug()
            ));
        }
        return Ok(Artifact::Index(
            manifests
                .into_iter()
                .map(|d| {
                    (
                        d.annotations.get(MODEL_NAME).or(d.annotations.get(TITLE)).cloned(),
                        d.digest,
                    )
                })
                .collect(),
        ));
    }
    let Some(layers) = manifest.layers else {
        return Err(format!(
            "its manifest ({}) lists no layers",
            manifest.media_type.as_deref().unwrap_or("no media type")
        ));
    };
    let mut files = Vec::new();
    for layer in layers {
        let Some(path) = layer.annotations.get(TITLE) else {
            return Err(format!(
                "its layer {} ({}) names no file (no `{TITLE}` annotation)",
                layer.digest,
                layer.media_type.as_deref().unwrap_or("no media type")
            ));
        };
        if !crate::hash::is_sha256_digest(&layer.digest) {
            return Err(format!(
                "its layer `{}` has the digest `{}`; mdl reads sha256 digests",
                path.escape_debug(),
                layer.digest.escape_debug()
            ));
        }
        files.push(Layer {
            path: path.clone(),
            digest: layer.digest,
            size: layer.size,
            blake3: layer.annotations.get(BLAKE3).cloned(),
        });
    }
    if files.is_empty() {
        return Err("its manifest lists no files".into());
    }
    Ok(Artifact::Model(files))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registry's answer is input: a digest goes into a URL and a lock, so
    /// only `sha256:` and 64 lowercase hex is read.
    #[test]
    fn digests_that_are_not_sha256_hex_are_refused() {
        for digest in [
            format!("sha256:{}/../../x", "a".repeat(57)),
            format!("sha256:{}", "A".repeat(64)),
            format!("sha512:{}", "a".repeat(64)),
            "sha256:".to_string() + &"*".repeat(64),
        ] {
            let layer = serde_json::json!({
                "schemaVersion": 2,
                "layers": [{"mediaType": "application/octet-stream", "digest": digest, "size": 1,
                            "annotations": {TITLE: "model.bin"}}]
            });
            let err = parse(layer.to_string().as_bytes()).unwrap_err();
            assert!(err.contains("mdl reads sha256 digests"), "{digest}: {err}");
            let index = serde_json::json!({
                "schemaVersion": 2,
                "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest, "size": 1}]
            });
            let err = parse(index.to_string().as_bytes()).unwrap_err();
            assert!(err.contains("mdl reads sha256 digests"), "{digest}: {err}");
        }
    }

    #[test]
    fn a_model_manifest_reads_back_as_its_files() {
        let layers = vec![
            Layer {
                path: "model.safetensors".into(),
                digest: format!("sha256:{}", "a".repeat(64)),
                size: 10,
                blake3: Some("b".repeat(64)),
            },
            Layer {
                path: "tokenizer/vocab.txt".into(),
                digest: format!("sha256:{}", "c".repeat(64)),
                size: 3,
                blake3: None,
            },
        ];
        let bytes = model_manifest("acme/bert", &json!({"source": "huggingface"}), &layers);
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value["artifactType"], MODEL_ARTIFACT);
        assert_eq!(value["layers"][0]["mediaType"], WEIGHT_LAYER);
        assert_eq!(value["layers"][1]["mediaType"], OTHER_LAYER);
        assert_eq!(parse(&bytes).unwrap(), Artifact::Model(layers));
        // The same model makes the same bytes (and so the same digest).
        assert_eq!(
            bytes,
            model_manifest(
                "acme/bert",
                &json!({"source": "huggingface"}),
                &match parse(&bytes).unwrap() {
                    Artifact::Model(l) => l,
                    _ => unreachable!(),
                }
            )
        );
    }

    #[test]
    fn a_container_image_is_refused_with_the_reason() {
        let image = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": EMPTY_CONFIG_DIGEST, "size": 2 },
            "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": EMPTY_CONFIG_DIGEST, "size": 2 }],
        });
        let error = parse(image.to_string().as_bytes()).unwrap_err();
        assert!(error.contains("names no file"), "{error}");
    }

    #[test]
    fn the_mirror_tag_depends_on_the_files_only() {
        let a = model_tag([("a", 1, "x"), ("b", 2, "y")]);
        assert_eq!(a, model_tag([("b", 2, "y"), ("a", 1, "x")]));
        assert_ne!(a, model_tag([("a", 1, "x"), ("b", 2, "z")]));
        assert!(a.starts_with("mdl-") && a.len() == 44);
    }
}
