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
