//! One copy of every byte: the content store shared by projects, and the
//! Hugging Face cache read and written — checked with PyPI's real
//! `huggingface_hub` from the project's Python environment.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use crate::common::*;
use crate::interop::project_python;

const BIG: usize = 40 << 20;

fn weights_repo(ctx: &TestContext) -> Vec<u8> {
    let big = hub_emulator::pseudo_random_bytes(41, BIG).to_vec();
    ctx.hub.commit(
        "acme/tiny-bert",
        "main",
        vec![
            ("config.json", Some(Blob::regular(&br#"{"model_type": "bert"}"#[..]))),
            ("model.safetensors", Some(Blob::lfs(SAFETENSORS))),
            ("big.bin", Some(Blob::lfs(big.clone()))),
        ],
    );
    big
}

/// Runs Python with `huggingface_hub` against the emulator and this test's caches.
fn python(ctx: &TestContext, script: &str, offline: bool) -> String {
    let mut cmd = Command::new(project_python());
    cmd.args(["-c", script])
        .env("HF_ENDPOINT", ctx.hub.url())
        .env("HF_HOME", ctx.path().join(".hf-home"))
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env_remove("HF_HUB_CACHE")
        .env_remove("HF_TOKEN");
    if offline {
        cmd.env("HF_HUB_OFFLINE", "1");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Bytes of file bodies the emulator sent (ranges counted by their length).
fn body_bytes(ctx: &TestContext) -> u64 {
    ctx.body_requests()
        .iter()
        .filter(|r| !r.path.ends_with(".json") || r.path.contains("model"))
        .map(|r| match &r.range {
            Some(range) => {
                let (a, b) = range.trim_start_matches("bytes=").split_once('-').unwrap();
                b.parse::<u64>().unwrap_or(0) - a.parse::<u64>().unwrap_or(0) + 1
            }
            None => 1,
        })
        .sum()
}

#[test]
fn a_hugging_face_cache_filled_by_snapshot_download_is_used_not_downloaded_again() {
    let ctx = TestContext::new();
    let big = weights_repo(&ctx);
    python(
        &ctx,
        "from huggingface_hub import snapshot_download; snapshot_download('acme/tiny-bert')",
        false,
    );
    ctx.hub.clear_requests();
    ctx.write_config("models:\n  require: [acme/tiny-bert]\n");
    let run = ctx.mdl(&["sync", "--no-verify"]).success();
    let weights: Vec<_> = ctx
        .body_requests()
        .into_iter()
        .filter(|r| r.path.ends_with(".bin") || r.path.ends_with(".safetensors"))
        .collect();
    assert!(weights.is_empty(), "no weight byte downloaded again: {weights:?}");
    assert!(run.stderr().contains("Linked"), "{}", run.stderr());
    assert_eq!(ctx.read("models/huggingface_acme--tiny-bert/big.bin"), big);
    assert_eq!(
        ctx.read("models/huggingface_acme--tiny-bert/model.safetensors"),
        SAFETENSORS
    );
}

#[test]
fn hf_cache_true_lets_python_load_the_model_offline_by_repo_id() {
    let ctx = TestContext::new();
    let big = weights_repo(&ctx);
    ctx.write_config("models:\n  require: [acme/tiny-bert]\n  download:\n    hf_cache: true\n");
    ctx.mdl(&["sync", "--no-verify"]).success();
    let commit = toml::from_str::<toml::Value>(&ctx.read_str("models.lock")).unwrap()["model"][0]["commit"]
        .as_str()
        .unwrap()
        .to_string();
    ctx.hub.clear_requests();
    let out = python(
        &ctx,
        &format!(
            "from huggingface_hub import snapshot_download, hf_hub_download, scan_cache_dir\n\
             print(snapshot_download('acme/tiny-bert'))\n\
             print(snapshot_download('acme/tiny-bert', revision='{commit}'))\n\
             print(hf_hub_download('acme/tiny-bert', 'big.bin'))\n\
             info = scan_cache_dir()\n\
             print(len(info.warnings), [r.repo_id for r in info.repos])\n"
        ),
        true,
    );
    assert!(ctx.requests().is_empty(), "offline: {:?}", ctx.requests());
    let lines: Vec<&str> = out.lines().collect();
    let snapshot = Path::new(lines[0]);
    assert_eq!(lines[0], lines[1], "by revision and by commit, the same snapshot");
    for file in ["config.json", "model.safetensors", "big.bin"] {
        assert_eq!(
            std::fs::read(snapshot.join(file)).unwrap(),
            ctx.read(&format!("models/huggingface_acme--tiny-bert/{file}")),
            "{file}"
        );
    }
    assert_eq!(std::fs::read(lines[2]).unwrap(), big);
    assert_eq!(
        lines[3], "0 ['acme/tiny-bert']",
        "scan_cache_dir sees the repo, no warnings"
    );
}

#[test]
fn a_second_project_fetches_nothing_and_hard_links_share_inodes() {
    let ctx = TestContext::new();
    weights_repo(&ctx);
    let yaml = "models:\n  require: [acme/tiny-bert]\n  download:\n    link_mode: hardlink\n";
    ctx.write_config(yaml);
    ctx.mdl(&["sync", "--no-verify"]).success();
    let lock = ctx.read("models.lock");

    // A second project on the same machine, same lock.
    let second = ctx.path().join("second");
    std::fs::create_dir_all(&second).unwrap();
    std::fs::write(second.join("config.yaml"), yaml).unwrap();
    std::fs::write(second.join("models.lock"), &lock).unwrap();
    ctx.hub.clear_requests();
    let out = ctx
        .command(&["sync", "--locked", "--no-verify"])
        .current_dir(&second)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(body_bytes(&ctx), 0, "0 bytes fetched: {:?}", ctx.requests());
    for file in ["config.json", "model.safetensors", "big.bin"] {
        let a = std::fs::metadata(ctx.models().join("huggingface_acme--tiny-bert").join(file)).unwrap();
        let b = std::fs::metadata(second.join("models/huggingface_acme--tiny-bert").join(file)).unwrap();
        assert_eq!(a.ino(), b.ino(), "{file}: one inode for both projects");
        assert_eq!(
            a.mode() & 0o222,
            0,
            "{file}: read-only, so editing it cannot corrupt the store"
        );
    }
}

#[test]
fn copy_mode_gives_independent_files() {
    let ctx = TestContext::new();
    weights_repo(&ctx);
    ctx.write_config("models:\n  require: [acme/tiny-bert]\n  download:\n    link_mode: copy\n");
    ctx.mdl(&["sync", "--no-verify"]).success();
    let file = ctx.models().join("huggingface_acme--tiny-bert/big.bin");
    let store_inodes: Vec<u64> = walk_inodes(&ctx.path().join(".mdl-cache/blobs"));
    let meta = std::fs::metadata(&file).unwrap();
    assert!(!store_inodes.contains(&meta.ino()), "a copy, not a link into the store");
    assert_ne!(meta.mode() & 0o200, 0, "the user's own file, writable");
    // Editing it changes nothing in the store: a second copy is intact.
    std::fs::write(&file, b"edited").unwrap();
    std::fs::remove_dir_all(ctx.models()).unwrap();
    ctx.hub.clear_requests();
    ctx.mdl(&["sync", "--no-verify"]).success();
    assert_eq!(body_bytes(&ctx), 0);
    assert_eq!(std::fs::metadata(&file).unwrap().len(), BIG as u64);
}

#[test]
fn a_file_edited_through_a_hard_link_is_repaired_from_upstream_not_the_store() {
    let ctx = TestContext::new();
    let big = weights_repo(&ctx);
    ctx.write_config("models:\n  require: [acme/tiny-bert]\n  download:\n    link_mode: hardlink\n");
    ctx.mdl(&["sync", "--no-verify"]).success();
    // Root ignores the read-only bit: the edit reaches the store's blob too.
    let file = ctx.models().join("huggingface_acme--tiny-bert/big.bin");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[0] ^= 1;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &bytes[..1]))
        .unwrap();
    ctx.hub.clear_requests();
    ctx.mdl(&["sync", "--check", "--no-verify"]).success();
    assert_eq!(ctx.read("models/huggingface_acme--tiny-bert/big.bin"), big);
    assert!(
        body_bytes(&ctx) >= BIG as u64,
        "fetched from upstream: {:?}",
        ctx.requests()
    );
}

#[test]
fn prune_keeps_every_blob_a_lock_on_this_machine_needs() {
    let ctx = TestContext::new();
    weights_repo(&ctx);
    ctx.write_config("models:\n  require: [acme/tiny-bert]\n");
    ctx.mdl(&["sync", "--no-verify"]).success();
    // A blob no lock references.
    let stray = ctx.path().join(".mdl-cache/blobs/ff/ffffffffffffffffffffffffffff");
    std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
    std::fs::write(&stray, b"old").unwrap();
    let run = ctx.mdl(&["cache", "prune"]).success();
    assert!(run.stderr().contains("Pruned 1 blob(s)"), "{}", run.stderr());
    assert!(!stray.exists());
    std::fs::remove_dir_all(ctx.models()).unwrap();
    ctx.hub.clear_requests();
    ctx.mdl(&["sync", "--no-verify"]).success();
    assert_eq!(body_bytes(&ctx), 0, "every needed blob survived prune");
    let du = ctx.mdl(&["cache", "du"]).success();
    assert!(du.stdout().contains("3 blob(s)"), "{}", du.stdout());
    let dir = ctx.mdl(&["cache", "dir"]).success();
    assert_eq!(dir.stdout().trim(), ctx.path().join(".mdl-cache").to_string_lossy());
}

fn walk_inodes(dir: &Path) -> Vec<u64> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            out.extend(walk_inodes(&entry.path()));
        } else {
            out.push(meta.ino());
        }
    }
    out
}
