//! Examples never rot: every example config in the repository (the files in
//! `examples/configs/` and the YAML blocks of the README that are configs) is
//! parsed, validated against the committed JSON Schema, and — where all its
//! models can come from the Hub emulator — synced.

use std::path::{Path, PathBuf};

use crate::common::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// (where, text) of every example config.
fn examples() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(repo().join("examples/configs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    for file in files {
        out.push((file.display().to_string(), std::fs::read_to_string(&file).unwrap()));
    }
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    for (i, block) in readme.split("```yaml\n").skip(1).enumerate() {
        let text = block.split("```").next().unwrap();
        if text.lines().any(|l| l.starts_with("models:")) {
            out.push((format!("README.md yaml block {i}"), text.to_string()));
        }
    }
    out
}

#[test]
fn every_example_config_parses_and_matches_the_schema() {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("config.schema.json")).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema is valid JSON Schema");
    let examples = examples();
    assert!(examples.len() >= 5, "{} examples", examples.len());
    for (what, text) in examples {
        mdl::config::Config::parse(Path::new("config.yaml"), &text, &[]).unwrap_or_else(|e| panic!("{what}: {e}"));
        let value: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
        let errors: Vec<String> = validator.iter_errors(&value).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{what}: {errors:?}");
    }
    // And the schema is not a rubber stamp: a typo in a key is refused.
    let typo: serde_json::Value = serde_yaml_ng::from_str("models:\n  requires: [acme/x]\n").unwrap();
    assert!(!validator.is_valid(&typo));
}

#[test]
fn hub_only_examples_sync_against_the_emulator() {
    let ctx = TestContext::new();
    ctx.hub.commit(
        "sentence-transformers/all-MiniLM-L6-v2",
        "main",
        vec![
            ("config.json", Some(Blob::regular(&b"{}"[..]))),
            ("model.safetensors", Some(Blob::lfs(SAFETENSORS))),
            ("vocab.txt", Some(Blob::regular(&b"[PAD]\n"[..]))),
            ("onnx/model.onnx", Some(Blob::lfs(&b"not synced by ci.yaml"[..]))),
        ],
    );
    ctx.hub.commit(
        "datasets/acme/eval-set",
        "main",
        vec![("data.jsonl", Some(Blob::regular(&b"{}\n"[..])))],
    );
    for name in ["minimal.yaml", "ci.yaml"] {
        let text = std::fs::read_to_string(repo().join("examples/configs").join(name)).unwrap();
        std::fs::write(ctx.path().join("config.yaml"), text).unwrap();
        let _ = std::fs::remove_file(ctx.path().join("models.lock"));
        ctx.mdl(&["sync"]).success();
    }
    assert!(
        !ctx.read_str("models.lock").contains("onnx"),
        "ci.yaml's include: keeps onnx out"
    );
    assert_eq!(ctx.read("models/huggingface_eval-set/data.jsonl"), b"{}\n");
}
