//! CNCF ModelPack out (`mdl push`) and in (`oci:` models), and Docker model
//! artifacts, against Debian's real `docker-registry`. Artifacts "from other
//! tools" are pushed with plain distribution-API calls (curl), laid out as
//! modctl and `docker model package` lay them out.

use crate::common::*;
use crate::oci::{curl, curl_push_blob, curl_put_manifest, json_of, logged_in, Registry};

const Q4_K_M: &[u8] = include_bytes!("../fixtures/tiny-Q4_K_M.gguf");
const F16: &[u8] = include_bytes!("../fixtures/tiny-F16.gguf");

fn get_json(registry: &Registry, path: &str) -> serde_json::Value {
    let body = curl(
        registry,
        &[
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
            &format!("http://{}/v2/{path}", registry.host),
        ],
    );
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

const GGUF_CONFIG: &str =
    "models:\n  require:\n    - id: acme/tiny-GGUF\n      include: [\"*Q4_K_M.gguf\", \"README.md\"]\n";

/// `mdl push` writes what ModelPack tools read: the artifact type, a model
/// config with name, format, parameters, precision and quantization, and
/// diffIds, typed raw layers named by `org.cncf.model.filepath` (and the
/// title), mdl's blake3 kept. The same lock pushed from a second clone gives
/// the same digests.
#[test]
fn push_writes_modelpack_and_two_clones_push_the_same_digests() {
    let registry = Registry::start();
    let mut ctx = TestContext::new();
    crate::gguf::gguf_hub(&ctx);
    logged_in(&mut ctx, &registry);
    ctx.write_config(GGUF_CONFIG);
    ctx.mdl(&["sync"]).success();
    let pushed = json_of(
        &ctx.mdl(&["push", &format!("oci://{}/team/a:v1", registry.host), "--json"])
            .success(),
    );
    let tag = pushed["models"][0]["tag"].as_str().unwrap().to_string();
    let manifest = get_json(&registry, &format!("team/a/manifests/{tag}"));
    assert_eq!(manifest["artifactType"], "application/vnd.cncf.model.manifest.v1+json");
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.cncf.model.config.v1+json"
    );
    let layers = manifest["layers"].as_array().unwrap();
    let by_path = |p: &str| {
        layers
            .iter()
            .find(|l| l["annotations"]["org.cncf.model.filepath"] == p)
            .unwrap_or_else(|| panic!("no layer for {p}: {manifest}"))
    };
    let weights = by_path("tiny-Q4_K_M.gguf");
    assert_eq!(weights["mediaType"], "application/vnd.cncf.model.weight.v1.raw");
    assert_eq!(
        weights["annotations"]["org.opencontainers.image.title"],
        "tiny-Q4_K_M.gguf"
    );
    assert_eq!(weights["annotations"]["dev.mdl.blake3"], blake3_hex(Q4_K_M));
    assert_eq!(
        by_path("README.md")["mediaType"],
        "application/vnd.cncf.model.doc.v1.raw"
    );
    assert!(manifest["annotations"]["dev.mdl.lock"]
        .as_str()
        .unwrap()
        .contains("tiny-GGUF"));

    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let config = get_json(&registry, &format!("team/a/blobs/{config_digest}"));
    assert_eq!(config["descriptor"]["name"], "acme/tiny-GGUF");
    assert_eq!(config["config"]["format"], "gguf");
    assert_eq!(config["config"]["paramSize"], "1.8K");
    assert_eq!(config["config"]["precision"], "fp32");
    assert_eq!(config["config"]["quantization"], "Q4_K,Q6_K");
    assert_eq!(config["config"]["architecture"], "llama");
    assert_eq!(config["modelfs"]["type"], "layers");
    let diff_ids: Vec<&serde_json::Value> = layers.iter().map(|l| &l["digest"]).collect();
    assert_eq!(
        config["modelfs"]["diffIds"]
            .as_array()
            .unwrap()
            .iter()
            .collect::<Vec<_>>(),
        diff_ids
    );

    // A second clone: the same config and lock, synced on its own, pushed
    // to another repository.
    let mut clone = TestContext::new();
    logged_in(&mut clone, &registry);
    clone.env.push(("HF_ENDPOINT".into(), ctx.hub.url()));
    std::fs::write(clone.path().join("config.yaml"), ctx.read("config.yaml")).unwrap();
    std::fs::write(clone.path().join("models.lock"), ctx.read("models.lock")).unwrap();
    clone.mdl(&["sync", "--locked"]).success();
    let again = json_of(
        &clone
            .mdl(&["push", &format!("oci://{}/team/b:v1", registry.host), "--json"])
            .success(),
    );
    assert_eq!(again["models"], pushed["models"], "the same manifests, by digest");
    assert_eq!(again["index"], pushed["index"], "the same index digest");
}

/// A ModelPack artifact as modctl writes it with `--raw`: files named only by
/// `org.cncf.model.filepath`, a ModelPack config, no mdl annotations.
#[test]
fn a_modelpack_artifact_from_another_tool_syncs_and_verifies() {
    let registry = Registry::start();
    let weights = curl_push_blob(&registry, "modctl/tiny", F16);
    let readme = curl_push_blob(&registry, "modctl/tiny", b"# tiny\n");
    let config_json = serde_json::json!({
        "descriptor": { "name": "tiny", "createdAt": "2026-01-01T00:00:00Z" },
        "config": { "format": "gguf", "paramSize": "232" },
        "modelfs": { "type": "layers", "diffIds": [weights, readme] },
    })
    .to_string();
    let config = curl_push_blob(&registry, "modctl/tiny", config_json.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.cncf.model.manifest.v1+json",
        "config": { "mediaType": "application/vnd.cncf.model.config.v1+json", "digest": config, "size": config_json.len() },
        "layers": [
            { "mediaType": "application/vnd.cncf.model.weight.v1.raw", "digest": weights, "size": F16.len(),
              "annotations": { "org.cncf.model.filepath": "gguf/tiny-F16.gguf" } },
            { "mediaType": "application/vnd.cncf.model.doc.v1.raw", "digest": readme, "size": 7,
              "annotations": { "org.cncf.model.filepath": "README.md" } },
        ],
    });
    curl_put_manifest(&registry, "modctl/tiny", "v1", &manifest);
    let mut ctx = TestContext::new();
    logged_in(&mut ctx, &registry);
    ctx.write_config(&format!(
        "models:\n  require:\n    - id: oci:{}/modctl/tiny:v1\n      name: tiny\n",
        registry.host
    ));
    let synced = json_of(&ctx.mdl(&["sync", "--json"]).success());
    assert_eq!(synced["models"][0]["status"], "verified", "{synced}");
    assert_eq!(
        synced["models"][0]["files"]["gguf/tiny-F16.gguf"]["format"], "gguf",
        "{synced}"
    );
    assert_eq!(ctx.read("models/oci_tiny/gguf/tiny-F16.gguf"), F16);
    assert_eq!(ctx.read("models/oci_tiny/README.md"), b"# tiny\n");
}

/// A Docker model artifact (`docker model package`): a GGUF layer and a
/// license, named by media type only.
#[test]
fn a_docker_model_artifact_syncs_as_a_gguf_and_its_license() {
    let registry = Registry::start();
    let gguf = curl_push_blob(&registry, "ai/tiny", Q4_K_M);
    let license = curl_push_blob(&registry, "ai/tiny", b"Apache-2.0\n");
    let config_json = serde_json::json!({
        "config": { "format": "gguf", "quantization": "Q4_K_M", "architecture": "llama", "size": "2496" },
        "descriptor": { "created": "2026-01-01T00:00:00Z" },
        "rootfs": { "type": "rootfs", "diff_ids": [gguf, license] },
    })
    .to_string();
    let config = curl_push_blob(&registry, "ai/tiny", config_json.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.docker.ai.model.config.v0.1+json", "digest": config, "size": config_json.len() },
        "layers": [
            { "mediaType": "application/vnd.docker.ai.gguf.v3", "digest": gguf, "size": Q4_K_M.len() },
            { "mediaType": "application/vnd.docker.ai.license", "digest": license, "size": 11 },
        ],
    });
    curl_put_manifest(&registry, "ai/tiny", "Q4_K_M", &manifest);
    let mut ctx = TestContext::new();
    logged_in(&mut ctx, &registry);
    ctx.write_config(&format!(
        "models:\n  require:\n    - id: oci:{}/ai/tiny:Q4_K_M\n      name: tiny\n",
        registry.host
    ));
    let run = ctx.mdl(&["sync"]).success();
    let err = run.stderr_without_torch();
    assert!(
        err.contains("Verified tiny on cpu: 1 weight file(s) [gguf (llama)]"),
        "{err}"
    );
    assert_eq!(ctx.read("models/oci_tiny/model.gguf"), Q4_K_M);
    assert_eq!(ctx.read("models/oci_tiny/LICENSE"), b"Apache-2.0\n");
}

/// Archives are refused with the reason and what to do, and nothing is
/// written: a KitOps ModelKit, and ModelPack's `.tar` layers.
#[test]
fn kitops_modelkits_and_tar_layers_are_refused_with_the_reason() {
    let registry = Registry::start();
    let layer = curl_push_blob(&registry, "kit/tiny", b"not really a tarball");
    let config_json = br#"{"manifestVersion":"1.0.0","package":{"name":"tiny"}}"#;
    let config = curl_push_blob(&registry, "kit/tiny", config_json);
    let kit = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.kitops.modelkit.config.v1+json", "digest": config, "size": config_json.len() },
        "layers": [{ "mediaType": "application/vnd.kitops.modelkit.model.v1.tar+gzip", "digest": layer, "size": 20 }],
    });
    curl_put_manifest(&registry, "kit/tiny", "v1", &kit);
    curl_push_blob(&registry, "kit/tar", b"not really a tarball");
    curl_push_blob(&registry, "kit/tar", config_json);
    let tar = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.cncf.model.manifest.v1+json",
        "config": { "mediaType": "application/vnd.cncf.model.config.v1+json", "digest": config, "size": config_json.len() },
        "layers": [{ "mediaType": "application/vnd.cncf.model.weight.v1.tar", "digest": layer, "size": 20,
                     "annotations": { "org.cncf.model.filepath": "model.safetensors" } }],
    });
    curl_put_manifest(&registry, "kit/tar", "v1", &tar);
    let mut ctx = TestContext::new();
    logged_in(&mut ctx, &registry);
    ctx.write_config(&format!(
        "models:\n  require:\n    - id: oci:{}/kit/tiny:v1\n      name: kit\n",
        registry.host
    ));
    ctx.mdl(&["sync"])
        .failure(1)
        .stderr_has("it is a KitOps ModelKit")
        .stderr_has("does not unpack downloaded archives")
        .stderr_has("kit unpack");
    ctx.write_config(&format!(
        "models:\n  require:\n    - id: oci:{}/kit/tar:v1\n      name: tar\n",
        registry.host
    ));
    ctx.mdl(&["sync"])
        .failure(1)
        .stderr_has("`application/vnd.cncf.model.weight.v1.tar`, `model.safetensors`) is a tar archive of files")
        .stderr_has("modctl build --raw");
    assert!(!ctx.models().join("oci_tar").exists());
    assert!(!ctx.path().join("models.lock").exists());
}

/// A mirror filled by another ModelPack tool (no `dev.mdl.blake3` on its
/// layers) still serves a lock: its layers are matched by the sha256 the
/// lock holds, and what arrives is checked against the lock's blake3.
#[test]
fn a_mirror_artifact_without_mdls_annotations_is_matched_by_sha256() {
    let registry = Registry::start();
    let upstream = TestContext::new();
    standard_hub(&upstream);
    upstream.write_config("models:\n  require: [huggingface:acme/tiny-bert]\n");
    upstream.mdl(&["sync", "--no-verify"]).success();
    let lock = mdl::lock::Lockfile::read(&upstream.path().join("models.lock"))
        .unwrap()
        .unwrap();
    let model = lock.models.values().next().unwrap();
    let tag = mdl::oci::artifact::model_tag(model.files.iter().map(|f| (f.path.as_str(), f.size, f.blake3.as_str())));
    let mut layers = Vec::new();
    for file in &model.files {
        let bytes = upstream.read(&format!("models/huggingface_acme--tiny-bert/{}", file.path));
        let digest = curl_push_blob(&registry, "other/mirror", &bytes);
        layers.push(serde_json::json!({
            "mediaType": "application/vnd.cncf.model.weight.v1.raw", "digest": digest, "size": bytes.len(),
            "annotations": { "org.cncf.model.filepath": file.path },
        }));
    }
    let config = curl_push_blob(&registry, "other/mirror", b"{}");
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.cncf.model.manifest.v1+json",
        "config": { "mediaType": "application/vnd.cncf.model.config.v1+json", "digest": config, "size": 2 },
        "layers": layers,
    });
    curl_put_manifest(&registry, "other/mirror", &tag, &manifest);

    let mut ctx = TestContext::new();
    logged_in(&mut ctx, &registry);
    ctx.env.push(("HF_ENDPOINT".into(), upstream.hub.url()));
    ctx.env
        .push(("MDL_MIRROR".into(), format!("oci://{}/other/mirror", registry.host)));
    ctx.write_config("models:\n  require: [huggingface:acme/tiny-bert]\n");
    std::fs::write(ctx.path().join("models.lock"), upstream.read("models.lock")).unwrap();
    let synced = json_of(&ctx.mdl(&["sync", "--locked", "--json"]).success());
    // Files whose sha256 the lock has (LFS) come from the mirror; the lock
    // has only a git blob id for small regular files, which upstream serves.
    let with_sha256 = model.files.iter().filter(|f| f.sha256.is_some()).count();
    assert!(with_sha256 >= 1);
    assert_eq!(synced["mirrored"]["files"], with_sha256, "{synced}");
}
