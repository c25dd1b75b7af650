//! The emulator is faithful: PyPI's real `huggingface_hub` downloads a repo from
//! it with `snapshot_download`, byte-identical to what `mdl` syncs.

use std::path::PathBuf;
use std::process::Command;

use crate::common::*;

pub fn project_python() -> PathBuf {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        python.exists(),
        "the project's Python environment is missing: run `scripts/setup` (it installs huggingface_hub)"
    );
    python
}

#[test]
fn huggingface_hub_snapshot_download_matches_mdl() {
    let ctx = TestContext::new();
    standard_hub(&ctx);
    ctx.hub.update_behaviour(|b| b.lfs_redirect = true);
    ctx.write_config("models:\n  require: [acme/tiny-bert]\n");
    ctx.mdl(&["sync", "--no-verify"]).success();

    let out = ctx.path().join("hf-snapshot");
    let script = format!(
        "from huggingface_hub import snapshot_download\nprint(snapshot_download('acme/tiny-bert', local_dir={:?}))",
        out.display().to_string()
    );
    let result = Command::new(project_python())
        .args(["-c", &script])
        .env("HF_ENDPOINT", ctx.hub.url())
        .env("HF_HOME", ctx.path().join(".hf-home"))
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env_remove("HF_TOKEN")
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "snapshot_download failed:\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    for file in ["config.json", "model.safetensors", "tokenizer/vocab.txt"] {
        assert_eq!(
            std::fs::read(out.join(file)).unwrap(),
            ctx.read(&format!("models/huggingface_acme--tiny-bert/{file}")),
            "{file}"
        );
    }
}

/// `hf download` fills the Hugging Face cache; `mdl lock` in a fresh project
/// then takes every file from it (checked against upstream's sha256 or git
/// blob id, then hashed for the lock) instead of downloading it again, as
/// `mdl sync` does (issue 20).
#[test]
fn mdl_lock_reuses_what_hf_download_put_in_the_cache() {
    let ctx = TestContext::new();
    let big = hub_emulator::pseudo_random_bytes(5, 24 << 20);
    ctx.hub.commit(
        "acme/cached",
        "main",
        vec![
            ("config.json", Some(Blob::regular(&b"{\"model_type\": \"bert\"}"[..]))),
            ("model.safetensors", Some(Blob::lfs(SAFETENSORS))),
            ("big.bin", Some(Blob::lfs(big.clone()))),
            ("vocab.txt", Some(Blob::regular(&b"[PAD]\n"[..]))),
        ],
    );
    ctx.hub.update_behaviour(|b| b.lfs_redirect = true);
    let result = Command::new(project_python())
        .args([
            "-c",
            "from huggingface_hub import snapshot_download; snapshot_download('acme/cached')",
        ])
        .env("HF_ENDPOINT", ctx.hub.url())
        .env("HF_HOME", ctx.path().join(".hf-home"))
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_CACHE")
        .output()
        .unwrap();
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));

    ctx.hub.clear_requests();
    ctx.write_config("models:\n  require: [acme/cached]\n");
    ctx.mdl(&["lock"]).success();
    let fetched: u64 = ctx
        .body_requests()
        .iter()
        .filter(|r| r.path.contains("/resolve/") || r.path.starts_with("/cdn/"))
        .count() as u64;
    assert_eq!(fetched, 0, "nothing downloaded again: {:?}", ctx.body_requests());
    assert_eq!(ctx.read("models/huggingface_acme--cached/big.bin"), big.to_vec());
    // And the sync after it has nothing to do.
    ctx.hub.clear_requests();
    ctx.mdl(&["sync", "--no-verify"]).success();
    assert!(ctx.body_requests().is_empty(), "{:?}", ctx.body_requests());
}
