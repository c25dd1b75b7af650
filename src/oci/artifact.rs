//! How a locked model looks as an OCI artifact, and how one is read back.
//!
//! `mdl push` writes, per model, a CNCF ModelPack artifact (model-spec v1),
//! so modctl, Harbor, Dragonfly and Kubernetes image volumes read it: an OCI
//! image manifest with `artifactType: application/vnd.cncf.model.manifest.v1+json`,
//! a `application/vnd.cncf.model.config.v1+json` config (`descriptor.name`,
//! `config.format`/`paramSize`/`precision`, `modelfs.diffIds`), and one
//! uncompressed (`.raw`) layer per file, typed by kind (weight, weight.config,
//! doc, code), named by `org.cncf.model.filepath` and, for older tools,
//! `org.opencontainers.image.title`. mdl's own annotations ride along as
//! extras: each layer's blake3 (`dev.mdl.blake3`) and, on the manifest, the
//! model's lock entry. One index for the whole lock points at every model's
//! manifest.
//!
//! Each model's manifest is also tagged [`model_tag`]: a name computed from
//! its files' paths, sizes and blake3 alone, so any project whose lock holds
//! the same files finds them on a mirror without being told a tag. Nothing in
//! a manifest depends on the time or the machine, so the same lock pushed
//! from two clones gives the same digests.
//!
//! Read back: ModelPack artifacts (raw layers named by filepath or title, as
//! modctl, ORAS and mdl write them) and Docker model artifacts
//! (`application/vnd.docker.ai.*`: a GGUF per layer, licenses, a chat
//! template). Archives (ModelPack `.tar` layers, KitOps ModelKits) are refused
//! with the reason: mdl places each file by its own digest and never unpacks a
//! downloaded archive.

use serde::Deserialize;
use serde_json::{json, Value};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// ModelPack's artifact type (model-spec v1).
pub const MODEL_ARTIFACT: &str = "application/vnd.cncf.model.manifest.v1+json";
/// What `mdl push` wrote before ModelPack (still read).
pub const MDL_MODEL_ARTIFACT: &str = "application/vnd.mdl.model.v1+json";
pub const MODEL_CONFIG: &str = "application/vnd.cncf.model.config.v1+json";
pub const LOCK_ARTIFACT: &str = "application/vnd.mdl.lock.v1+json";
pub const WEIGHT_LAYER: &str = "application/vnd.cncf.model.weight.v1.raw";
pub const WEIGHT_CONFIG_LAYER: &str = "application/vnd.cncf.model.weight.config.v1.raw";
pub const DOC_LAYER: &str = "application/vnd.cncf.model.doc.v1.raw";
pub const CODE_LAYER: &str = "application/vnd.cncf.model.code.v1.raw";
pub const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";
/// The empty config `{}` and its digest, as the OCI image spec defines them.
pub const EMPTY_CONFIG_BYTES: &[u8] = b"{}";
pub const EMPTY_CONFIG_DIGEST: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

pub const FILEPATH: &str = "org.cncf.model.filepath";
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

/// What mdl knows of a model's weights, for the ModelPack config: read from
/// the files themselves (never from a verification that may not have run),
/// so two clones describe the same files the same way.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelFacts {
    /// `safetensors`, `gguf`, `pytorch`, `onnx`: the format holding most bytes.
    pub format: Option<String>,
    pub parameters: Option<u64>,
    /// `fp32`, `fp16`, `bf16`, `int8`, …, or `mixed`.
    pub precision: Option<String>,
    /// GGUF's quantized types (`Q4_K`, …).
    pub quantization: Option<String>,
    /// GGUF's `general.architecture`, or config.json's `model_type`.
    pub architecture: Option<String>,
    /// The upstream revision (a Hub commit).
    pub revision: Option<String>,
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

/// A file's ModelPack layer type, by its name: weights, their configuration
/// (config, tokenizer, vocabulary), documentation, or code.
pub fn layer_media_type(path: &str) -> &'static str {
    const WEIGHTS: &[&str] = &[
        ".safetensors",
        ".bin",
        ".pt",
        ".pth",
        ".ckpt",
        ".gguf",
        ".onnx",
        ".h5",
        ".msgpack",
        ".tflite",
        ".pkl",
        ".jit",
        ".torchscript",
        ".npz",
        ".ot",
    ];
    const CODE: &[&str] = &[
        ".py", ".sh", ".ipynb", ".js", ".ts", ".cpp", ".c", ".h", ".cu", ".rs", ".go",
    ];
    let lower = path.to_ascii_lowercase();
    let name = lower.rsplit('/').next().unwrap_or(&lower);
    if WEIGHTS.iter().any(|ext| name.ends_with(ext)) {
        WEIGHT_LAYER
    } else if CODE.iter().any(|ext| name.ends_with(ext)) {
        CODE_LAYER
    } else if name.ends_with(".md")
        || name.starts_with("readme")
        || name.starts_with("license")
        || name.starts_with("licence")
        || name.starts_with("notice")
        || name.starts_with("copying")
        || name.starts_with("use_policy")
    {
        DOC_LAYER
    } else {
        WEIGHT_CONFIG_LAYER
    }
}

/// ModelPack's `paramSize`: a count with one decimal and a scale letter
/// (`6.7B`, `125M`, `1.5K`), or the plain count under a thousand.
pub fn param_size(parameters: u64) -> String {
    let scales = [(1e15, "Q"), (1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")];
    let n = parameters as f64;
    for (scale, letter) in scales {
        if n >= scale {
            let value = n / scale;
            let text = format!("{value:.1}");
            return format!("{}{letter}", text.strip_suffix(".0").unwrap_or(&text));
        }
    }
    parameters.to_string()
}

/// One model's ModelPack config (`application/vnd.cncf.model.config.v1+json`):
/// no creation time, so its digest depends on the files alone.
pub fn model_config(name: &str, facts: &ModelFacts, layers: &[Layer]) -> Vec<u8> {
    let mut descriptor = serde_json::Map::new();
    descriptor.insert("name".into(), name.into());
    if let Some(revision) = &facts.revision {
        descriptor.insert("revision".into(), revision.clone().into());
    }
    let mut config = serde_json::Map::new();
    let mut put = |key: &str, value: &Option<String>| {
        if let Some(v) = value {
            config.insert(key.into(), v.clone().into());
        }
    };
    put("architecture", &facts.architecture);
    put("format", &facts.format);
    put("paramSize", &facts.parameters.map(param_size));
    put("precision", &facts.precision);
    put("quantization", &facts.quantization);
    let value = json!({
        "descriptor": descriptor,
        "config": config,
        "modelfs": {
            "type": "layers",
            // Raw layers are uncompressed: each DiffID is its digest.
            "diffIds": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>(),
        },
    });
    serde_json::to_vec(&value).expect("serialises")
}

/// The digest of bytes, as OCI writes it.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// One model's manifest, with its config blob (`model_config`). `lock_entry`
/// is its `models.lock` entry as JSON.
pub fn model_manifest(name: &str, lock_entry: &Value, layers: &[Layer], config: &[u8]) -> Vec<u8> {
    let layers: Vec<Value> = layers
        .iter()
        .map(|l| {
            let mut annotations = serde_json::Map::new();
            annotations.insert(FILEPATH.into(), l.path.clone().into());
            annotations.insert(TITLE.into(), l.path.clone().into());
            if let Some(b) = &l.blake3 {
                annotations.insert(BLAKE3.into(), b.clone().into());
            }
            json!({
                "mediaType": layer_media_type(&l.path),
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
        "config": { "mediaType": MODEL_CONFIG, "digest": sha256_digest(config), "size": config.len() },
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
    config: Option<Descriptor>,
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

/// Docker model artifacts (`docker model package`) name their files by media
/// type, not by annotation: the file each type becomes (the first of a type
/// plainly, later ones numbered).
fn docker_file_name(media_type: &str) -> Option<(&'static str, &'static str)> {
    Some(match media_type {
        "application/vnd.docker.ai.gguf.v3" => ("model", ".gguf"),
        "application/vnd.docker.ai.mmproj" => ("mmproj", ".gguf"),
        "application/vnd.docker.ai.gguf.v3.lora" => ("lora", ".gguf"),
        "application/vnd.docker.ai.safetensors" => ("model", ".safetensors"),
        "application/vnd.docker.ai.license" => ("LICENSE", ""),
        "application/vnd.docker.ai.chat.template.jinja" => ("template", ".jinja"),
        "application/vnd.docker.ai.dduf" => ("model", ".dduf"),
        _ => return None,
    })
}

/// Why a layer cannot be placed as one file, if it cannot: ModelPack's
/// `.tar` layer types, a KitOps layer, or what ORAS marks for unpacking. (The
/// generic `application/vnd.oci.image.layer.v1.tar` is what `oras push` gives
/// a plain file: its blob is the file itself.)
fn archive_reason(media_type: &str, annotations: &std::collections::BTreeMap<String, String>) -> Option<&'static str> {
    let m = media_type;
    if m.starts_with("application/vnd.kitops.") {
        Some("a KitOps ModelKit layer, a tar archive of files")
    } else if m.starts_with("application/vnd.cncf.model.") && m.contains(".tar") {
        Some("a tar archive of files")
    } else if annotations
        .get("io.deis.oras.content.unpack")
        .is_some_and(|v| v == "true")
    {
        Some("a directory ORAS packed as an archive")
    } else {
        None
    }
}

/// Reads a manifest as mdl, ModelPack tools (modctl), ORAS or Docker publish
/// them: every layer is one file, named by `org.cncf.model.filepath` or
/// `org.opencontainers.image.title` (or, for Docker model artifacts, by its
/// media type). Archive layers and a container image's unnamed layers are
/// refused with the reason, not guessed at.
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
    let config_type = manifest
        .config
        .as_ref()
        .and_then(|c| c.media_type.as_deref())
        .unwrap_or("");
    if config_type.starts_with("application/vnd.kitops.") {
        return Err(format!(
            "it is a KitOps ModelKit (`{config_type}`), whose files are packed in tar layers; mdl places each file by its own digest and does not unpack downloaded archives: `kit unpack` it and push the files as a ModelPack artifact (`kit` or `modctl build --raw`), or with `mdl push`"
        ));
    }
    let Some(layers) = manifest.layers else {
        return Err(format!(
            "its manifest ({}) lists no layers",
            manifest.media_type.as_deref().unwrap_or("no media type")
        ));
    };
    let mut files = Vec::new();
    let mut docker_counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for layer in layers {
        let media_type = layer.media_type.as_deref().unwrap_or("no media type");
        let named = layer
            .annotations
            .get(FILEPATH)
            .or(layer.annotations.get(TITLE))
            .cloned();
        if let Some(why) = archive_reason(media_type, &layer.annotations) {
            return Err(format!(
                "its layer {} (`{}`{}) is {why}; mdl places each file by its own digest and does not unpack downloaded archives: publish the files as raw layers (`modctl build --raw`, `oras push`, or `mdl push`)",
                layer.digest,
                media_type.escape_debug(),
                named.as_deref().map(|n| format!(", `{}`", n.escape_debug())).unwrap_or_default()
            ));
        }
        let path = match named {
            Some(path) => path,
            None => match docker_file_name(media_type) {
                Some((stem, ext)) => {
                    let n = docker_counts.entry(stem).or_default();
                    *n += 1;
                    if *n == 1 {
                        format!("{stem}{ext}")
                    } else {
                        format!("{stem}-{n}{ext}")
                    }
                }
                None => {
                    return Err(format!(
                        "its layer {} ({}) names no file (no `{FILEPATH}` or `{TITLE}` annotation)",
                        layer.digest,
                        media_type.escape_debug()
                    ))
                }
            },
        };
        if !crate::hash::is_sha256_digest(&layer.digest) {
            return Err(format!(
                "its layer `{}` has the digest `{}`; mdl reads sha256 digests",
                path.escape_debug(),
                layer.digest.escape_debug()
            ));
        }
        files.push(Layer {
            path,
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
        let config = model_config("acme/bert", &ModelFacts::default(), &layers);
        let bytes = model_manifest("acme/bert", &json!({"source": "huggingface"}), &layers, &config);
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value["artifactType"], MODEL_ARTIFACT);
        assert_eq!(value["config"]["mediaType"], MODEL_CONFIG);
        assert_eq!(value["config"]["digest"], sha256_digest(&config));
        assert_eq!(value["layers"][0]["mediaType"], WEIGHT_LAYER);
        assert_eq!(value["layers"][0]["annotations"][FILEPATH], "model.safetensors");
        assert_eq!(value["layers"][1]["mediaType"], WEIGHT_CONFIG_LAYER);
        let config: Value = serde_json::from_slice(&config).unwrap();
        assert_eq!(config["modelfs"]["diffIds"][1], layers[1].digest);
        assert_eq!(config["descriptor"]["name"], "acme/bert");
        assert_eq!(parse(&bytes).unwrap(), Artifact::Model(layers.clone()));
        // The same model makes the same bytes (and so the same digest).
        assert_eq!(
            bytes,
            model_manifest(
                "acme/bert",
                &json!({"source": "huggingface"}),
                &match parse(&bytes).unwrap() {
                    Artifact::Model(l) => l,
                    _ => unreachable!(),
                },
                &model_config("acme/bert", &ModelFacts::default(), &layers)
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

    /// What modctl and Docker write reads as files; archives are refused.
    #[test]
    fn modelpack_and_docker_artifacts_read_and_archives_are_refused() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let modctl = json!({
            "schemaVersion": 2,
            "artifactType": MODEL_ARTIFACT,
            "config": { "mediaType": MODEL_CONFIG, "digest": d('0'), "size": 2 },
            "layers": [
                { "mediaType": WEIGHT_LAYER, "digest": d('a'), "size": 4, "annotations": { FILEPATH: "model.safetensors" } },
                { "mediaType": DOC_LAYER, "digest": d('b'), "size": 4, "annotations": { FILEPATH: "README.md" } },
            ],
        });
        let Artifact::Model(files) = parse(modctl.to_string().as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(
            files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
            ["model.safetensors", "README.md"]
        );
        let docker = json!({
            "schemaVersion": 2,
            "config": { "mediaType": "application/vnd.docker.ai.model.config.v0.1+json", "digest": d('0'), "size": 2 },
            "layers": [
                { "mediaType": "application/vnd.docker.ai.gguf.v3", "digest": d('a'), "size": 4 },
                { "mediaType": "application/vnd.docker.ai.license", "digest": d('b'), "size": 4 },
                { "mediaType": "application/vnd.docker.ai.license", "digest": d('c'), "size": 4 },
            ],
        });
        let Artifact::Model(files) = parse(docker.to_string().as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(
            files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
            ["model.gguf", "LICENSE", "LICENSE-2"]
        );
        let tar = json!({
            "schemaVersion": 2,
            "layers": [{ "mediaType": "application/vnd.cncf.model.weight.v1.tar", "digest": d('a'), "size": 4, "annotations": { FILEPATH: "model.safetensors" } }],
        });
        let err = parse(tar.to_string().as_bytes()).unwrap_err();
        assert!(
            err.contains("is a tar archive of files") && err.contains("modctl build --raw"),
            "{err}"
        );
        let kit = json!({
            "schemaVersion": 2,
            "config": { "mediaType": "application/vnd.kitops.modelkit.config.v1+json", "digest": d('0'), "size": 2 },
            "layers": [{ "mediaType": "application/vnd.kitops.modelkit.model.v1.tar+gzip", "digest": d('a'), "size": 4 }],
        });
        let err = parse(kit.to_string().as_bytes()).unwrap_err();
        assert!(err.contains("KitOps ModelKit") && err.contains("kit unpack"), "{err}");
    }

    #[test]
    fn param_size_is_modelpacks_notation() {
        assert_eq!(param_size(6_738_415_616), "6.7B");
        assert_eq!(param_size(124_439_808), "124.4M");
        assert_eq!(param_size(1_000_000), "1M");
        assert_eq!(param_size(1792), "1.8K");
        assert_eq!(param_size(139), "139");
    }

    #[test]
    fn layers_are_typed_by_kind() {
        assert_eq!(layer_media_type("model-00001-of-00002.safetensors"), WEIGHT_LAYER);
        assert_eq!(layer_media_type("tiny-Q4_K_M.gguf"), WEIGHT_LAYER);
        assert_eq!(layer_media_type("tokenizer.json"), WEIGHT_CONFIG_LAYER);
        assert_eq!(layer_media_type("README.md"), DOC_LAYER);
        assert_eq!(layer_media_type("LICENSE"), DOC_LAYER);
        assert_eq!(layer_media_type("modeling_custom.py"), CODE_LAYER);
    }

    #[test]
    fn the_mirror_tag_depends_on_the_files_only() {
        let a = model_tag([("a", 1, "x"), ("b", 2, "y")]);
        assert_eq!(a, model_tag([("b", 2, "y"), ("a", 1, "x")]));
        assert_ne!(a, model_tag([("a", 1, "x"), ("b", 2, "z")]));
        assert!(a.starts_with("mdl-") && a.len() == 44);
    }
}
