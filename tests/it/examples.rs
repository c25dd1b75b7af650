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
    minilm_hub(&ctx);
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

/// The `RUN` lines of `examples/Dockerfile` that run mdl, as a shell script in
/// a temporary project (the lines that install Python, Rust and mdl are what
/// this test environment already is), with the emulator as the Hub.
#[test]
fn the_dockerfiles_mdl_lines_run_as_a_shell_script() {
    let ctx = TestContext::new();
    standard_hub(&ctx);
    ctx.write_config("models:\n  require: [acme/tiny-bert]\n");
    ctx.mdl(&["lock"]).success();
    std::fs::remove_dir_all(ctx.models()).unwrap();
    let dockerfile = std::fs::read_to_string(repo().join("examples/Dockerfile")).unwrap();
    let joined = dockerfile.replace("\\\n", " ");
    let lines: Vec<String> = joined
        .lines()
        .filter_map(|l| l.trim().strip_prefix("RUN "))
        .filter(|l| l.contains("mdl sync") || l.contains("mdl lock"))
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().filter(|w| !w.starts_with("--mount=")).collect();
            words.join(" ").replace("/usr/local/bin/mdl", env!("CARGO_BIN_EXE_mdl"))
        })
        .collect();
    assert!(!lines.is_empty(), "the Dockerfile syncs");
    // mdl is the release's binary, checked against its SHA256SUMS, copied in.
    assert!(dockerfile.contains("COPY --from=mdl /usr/local/bin/mdl /usr/local/bin/mdl"));
    assert!(dockerfile.contains("sha256sum -c"));
    let script = format!("set -euo pipefail\n{}\n", lines.join("\n"));
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .current_dir(ctx.path())
        .env("HF_ENDPOINT", ctx.hub.url())
        .env("HF_HOME", ctx.path().join(".hf-home"))
        .env("MDL_CACHE_DIR", ctx.path().join(".mdl-cache"))
        .env("CI", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        ctx.read("models/huggingface_acme--tiny-bert/model.safetensors"),
        SAFETENSORS
    );
    // `--link-mode copy`: the image layer owns its bytes (no link into the store).
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(ctx.models().join("huggingface_acme--tiny-bert/model.safetensors")).unwrap();
    assert_eq!(meta.nlink(), 1);
}

#[test]
fn the_ci_recipe_syncs_locked_and_caches_the_store() {
    let text = std::fs::read_to_string(repo().join("examples/ci.yml")).unwrap();
    let workflow: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
    let steps = workflow["jobs"]["sync"]["steps"].as_array().unwrap();
    let cache = steps
        .iter()
        .find(|s| s["uses"].as_str().is_some_and(|u| u.starts_with("actions/cache")))
        .unwrap();
    assert_eq!(cache["with"]["path"], "~/.cache/mdl");
    assert!(cache["with"]["key"]
        .as_str()
        .unwrap()
        .contains("hashFiles('models.lock')"));
    assert!(steps
        .iter()
        .any(|s| s["run"].as_str().is_some_and(|r| r.contains("mdl sync --locked"))));
}

/// One version, from one place: every crate of the workspace takes the
/// workspace's `version` (the wheel's is crates/mdl-py's, so the same), and
/// `mdl --version` prints it.
#[test]
fn every_crate_the_wheel_and_the_command_share_one_version() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace: toml::Value = toml::from_str(&std::fs::read_to_string(root.join("Cargo.toml")).unwrap()).unwrap();
    let version = workspace["workspace"]["package"]["version"]
        .as_str()
        .unwrap()
        .to_string();
    let manifests = [
        "Cargo.toml",
        "crates/mdl-py/Cargo.toml",
        "crates/mdl-torch/Cargo.toml",
        "crates/hub-emulator/Cargo.toml",
    ];
    for manifest in manifests {
        let crate_: toml::Value = toml::from_str(&std::fs::read_to_string(root.join(manifest)).unwrap()).unwrap();
        assert_eq!(
            crate_["package"]["version"]["workspace"].as_bool(),
            Some(true),
            "{manifest}"
        );
    }
    let pyproject = std::fs::read_to_string(root.join("pyproject.toml")).unwrap();
    assert!(
        pyproject.contains("dynamic = [\"version\"]"),
        "the wheel takes the crate's version"
    );
    let ctx = TestContext::new();
    let out = ctx.mdl(&["--version"]).success().stdout();
    assert_eq!(out.trim(), format!("mdl {version}"));
}
