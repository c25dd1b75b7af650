//! The Hugging Face cache as today's clients leave it, against PyPI's real
//! `huggingface_hub` 2.5.0 + `hf_xet` 1.8.0 (the project's `.venv`) and the
//! emulator's Xet storage, both ways: 2.5's cache-wide store of Xet files
//! (`hub/blobs/<xx>/<xet hash>`, repo blobs linked to it, `.refs`,
//! `trees/<commit>.json`) and the per-repo layout of 2.4 and earlier
//! (`HF_HUB_DISABLE_SHARED_BLOBS=1` makes 2.5 write it). Also a mirror whose
//! listing has no hashes, and locking offline from the cache alone.

use std::path::{Path, PathBuf};
use std::process::Command;

use hub_emulator::XetSettings;

use crate::common::*;
use crate::interop::project_python;

const WEIGHTS: usize = 3 << 20;

/// `acme/xet` at `main`: a config kept in git and an LFS weight file in Xet.
fn xet_repo(ctx: &TestContext) -> Vec<u8> {
    ctx.hub.update_behaviour(|b| b.xet = Some(XetSettings::default()));
    let weights = hub_emulator::pseudo_random_bytes(7, WEIGHTS).to_vec();
    ctx.hub.commit(
        "acme/xet",
        "main",
        vec![
            ("config.json", Some(Blob::regular(&br#"{"model_type": "bert"}"#[..]))),
            ("model.safetensors", Some(Blob::lfs(weights.clone()))),
        ],
    );
    weights
}

fn hf_home(ctx: &TestContext) -> PathBuf {
    ctx.path().join(".hf-home/hub")
}

/// Runs the real client in a process of its own (it reads its settings at
/// import) against the emulator and this test's caches.
fn hf(ctx: &TestContext, script: &str, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(project_python());
    cmd.args(["-c", script]);
    client_env(ctx, &mut cmd, env);
    run(cmd)
}

fn client_env(ctx: &TestContext, cmd: &mut Command, env: &[(&str, &str)]) {
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("HF_") || k.starts_with("HUGGINGFACE")) {
        cmd.env_remove(k);
    }
    cmd.env("HF_ENDPOINT", ctx.hub.url())
        .env("HF_HOME", ctx.path().join(".hf-home"))
        .env("HF_XET_CACHE", ctx.path().join(".xet-cache"))
        .env("HF_HUB_DISABLE_TELEMETRY", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
}

fn run(mut cmd: Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Weight bytes the emulator served: xorb ranges, resolve bodies, CDN bodies.
fn weight_requests(ctx: &TestContext) -> Vec<RequestRecord> {
    (ctx.body_requests().into_iter())
        .filter(|r| !r.path.ends_with("config.json"))
        .collect()
}

const CONFIG: &str = "models:\n  require:\n    - id: acme/xet\n      verify: false\n";
const MODEL: &str = "models/huggingface_acme--xet/model.safetensors";

#[test]
fn huggingface_hub_25s_shared_store_is_read_and_nothing_is_fetched() {
    let ctx = TestContext::new();
    let weights = xet_repo(&ctx);
    hf(
        &ctx,
        "from huggingface_hub import snapshot_download; snapshot_download('acme/xet')",
        &[],
    );
    // The layout 2.5 wrote: the repo blob is a link into the cache-wide store.
    let repo_blob = hf_home(&ctx).join("models--acme--xet/blobs").join(sha256_hex(&weights));
    let link = std::fs::read_link(&repo_blob).expect("huggingface_hub 2.5 links Xet blobs into its store");
    assert!(link.starts_with("../../blobs"), "{}", link.display());
    assert!(hf_home(&ctx).join("blobs/.huggingface-shared-blobs").is_file());

    ctx.hub.clear_requests();
    ctx.write_config(CONFIG);
    let run = ctx.mdl(&["sync"]).success();
    assert_eq!(weight_requests(&ctx), vec![], "0 bytes fetched: {}", run.stderr());
    assert!(run.stderr().contains("Linked"), "{}", run.stderr());
    assert_eq!(ctx.read(MODEL), weights);
}

#[test]
fn hf_cache_true_writes_the_shared_store_that_huggingface_hub_25_reads_and_verifies() {
    let ctx = TestContext::new();
    let weights = xet_repo(&ctx);
    ctx.write_config(&format!("{CONFIG}  download:\n    hf_cache: true\n"));
    ctx.mdl(&["sync"]).success();
    let lock = ctx.read_str("models.lock");
    let table: toml::Value = toml::from_str(&lock).unwrap();
    let model = &table["model"][0];
    let commit = model["commit"].as_str().unwrap();
    let xet = (model["file"].as_array().unwrap().iter())
        .find_map(|f| f.get("xet_hash").and_then(|h| h.as_str()))
        .expect("the lock holds the Xet hash");

    // 2.5's layout, as `_shared_blobs.py` and `_tree_cache.py` write it.
    let hub = hf_home(&ctx);
    assert_eq!(
        std::fs::read_to_string(hub.join("blobs/.huggingface-shared-blobs")).unwrap(),
        "1\n"
    );
    let entry = hub.join("blobs").join(&xet[..2]).join(xet);
    assert_eq!(std::fs::read(&entry).unwrap(), weights);
    let reference = format!("models--acme--xet/blobs/{}", sha256_hex(&weights));
    let refs = std::fs::read_to_string(entry.with_file_name(format!("{xet}.refs"))).unwrap();
    assert_eq!(refs.lines().collect::<Vec<_>>(), vec![reference.as_str()]);
    assert_eq!(
        std::fs::read_link(hub.join(&reference)).unwrap(),
        Path::new("../../blobs").join(&xet[..2]).join(xet)
    );
    let tree: serde_json::Value =
        serde_json::from_slice(&std::fs::read(hub.join(format!("models--acme--xet/trees/{commit}.json"))).unwrap())
            .unwrap();
    assert_eq!(tree["format_version"], 1);
    assert_eq!(tree["files"]["model.safetensors"]["xet_hash"], xet);
    assert_eq!(tree["files"].as_object().unwrap().len(), 2, "{tree}");

    // The real client, online: it takes mdl's copy and fetches no xorb.
    ctx.hub.clear_requests();
    let out = hf(
        &ctx,
        "from huggingface_hub import snapshot_download, scan_cache_dir, HfApi\n\
         path = snapshot_download('acme/xet')\n\
         print(open(path + '/model.safetensors', 'rb').read() == open(path + '/model.safetensors', 'rb').read())\n\
         info = scan_cache_dir()\n\
         print(len(info.warnings), [r.repo_id for r in info.repos], info.size_on_disk)\n\
         v = HfApi().verify_repo_checksums('acme/xet')\n\
         print(len(v.mismatches), len(v.missing_paths), len(v.extra_paths), v.checked_count)\n\
         print(path)\n",
        &[],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert_eq!(
        lines[1],
        format!("0 ['acme/xet'] {}", WEIGHTS + 22),
        "scan_cache_dir: no warnings, one copy"
    );
    assert_eq!(lines[2], "0 0 0 2", "verify_repo_checksums accepts both files");
    assert_eq!(
        std::fs::read(Path::new(lines[3]).join("model.safetensors")).unwrap(),
        weights
    );
    let xorbs: Vec<_> = ctx
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/xorbs/"))
        .collect();
    assert_eq!(xorbs, vec![], "no xorb bytes served");

    // `hf cache verify`, the command users run.
    let mut verify = Command::new(project_python().with_file_name("hf"));
    verify.args(["cache", "verify", "acme/xet"]);
    client_env(&ctx, &mut verify, &[]);
    let said = run(verify);
    assert!(said.contains("2"), "{said}");
}

#[test]
fn the_per_repo_layout_of_huggingface_hub_24_is_read_and_written() {
    // Read: 2.5 with its shared store off writes what 2.4 wrote.
    let ctx = TestContext::new();
    let weights = xet_repo(&ctx);
    let per_repo = [("HF_HUB_DISABLE_SHARED_BLOBS", "1")];
    hf(
        &ctx,
        "from huggingface_hub import snapshot_download; snapshot_download('acme/xet')",
        &per_repo,
    );
    let repo_blob = hf_home(&ctx).join("models--acme--xet/blobs").join(sha256_hex(&weights));
    assert!(std::fs::symlink_metadata(&repo_blob).unwrap().is_file());
    ctx.hub.clear_requests();
    ctx.write_config(CONFIG);
    ctx.mdl(&["sync"]).success();
    assert_eq!(weight_requests(&ctx), vec![]);
    assert_eq!(ctx.read(MODEL), weights);

    // Write: mdl honours the same switch.
    let ctx = TestContext::new();
    let weights = xet_repo(&ctx);
    let mut ctx = ctx;
    ctx.env.push(("HF_HUB_DISABLE_SHARED_BLOBS".into(), "1".into()));
    ctx.write_config(&format!("{CONFIG}  download:\n    hf_cache: true\n"));
    ctx.mdl(&["sync"]).success();
    let repo_blob = hf_home(&ctx).join("models--acme--xet/blobs").join(sha256_hex(&weights));
    assert!(std::fs::symlink_metadata(&repo_blob).unwrap().is_file());
    assert!(!hf_home(&ctx).join("blobs").exists());
    ctx.hub.clear_requests();
    let out = hf(
        &ctx,
        "from huggingface_hub import hf_hub_download; print(hf_hub_download('acme/xet', 'model.safetensors'))",
        &per_repo,
    );
    assert_eq!(std::fs::read(out.trim()).unwrap(), weights);
    assert_eq!(weight_requests(&ctx), vec![]);
}

#[test]
fn a_repo_blob_linking_anywhere_but_the_caches_own_store_is_not_followed() {
    let ctx = TestContext::new();
    let weights = xet_repo(&ctx);
    hf(
        &ctx,
        "from huggingface_hub import snapshot_download; snapshot_download('acme/xet')",
        &[],
    );
    let repo_blob = hf_home(&ctx).join("models--acme--xet/blobs").join(sha256_hex(&weights));
    // The right bytes, even, but outside the store: a link mdl did not make
    // and that leads elsewhere is never followed.
    let outside = ctx.path().join("outside.bin");
    std::fs::write(&outside, &weights).unwrap();
    for target in [outside.clone(), PathBuf::from("../../../outside.bin")] {
        std::fs::remove_file(&repo_blob).unwrap();
        std::os::unix::fs::symlink(&target, &repo_blob).unwrap();
        let _ = std::fs::remove_dir_all(ctx.path().join("models"));
        let _ = std::fs::remove_file(ctx.path().join("models.lock"));
        ctx.clear_shared_store();
        ctx.hub.clear_requests();
        ctx.write_config(CONFIG);
        ctx.mdl(&["sync"]).success();
        assert_eq!(ctx.read(MODEL), weights);
        assert!(
            !weight_requests(&ctx).is_empty(),
            "{}: fetched, not taken from the link",
            target.display()
        );
    }
    // A store without huggingface_hub's marker is not its store.
    let store_entry = std::fs::read_dir(hf_home(&ctx).join("blobs"))
        .unwrap()
        .flatten()
        .find(|e| e.file_type().unwrap().is_dir())
        .unwrap()
        .path();
    let entry = std::fs::read_dir(&store_entry)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().len() == 64)
        .unwrap();
    std::fs::remove_file(&repo_blob).unwrap();
    let rel = Path::new("../../blobs")
        .join(store_entry.file_name().unwrap())
        .join(entry.file_name());
    std::os::unix::fs::symlink(&rel, &repo_blob).unwrap();
    std::fs::remove_file(hf_home(&ctx).join("blobs/.huggingface-shared-blobs")).unwrap();
    let _ = std::fs::remove_dir_all(ctx.path().join("models"));
    ctx.clear_shared_store();
    ctx.hub.clear_requests();
    ctx.mdl(&["sync"]).success();
    assert!(!weight_requests(&ctx).is_empty());
}

/// A Hub that is not Xet-backed, behind a mirror that lists bare names.
fn bare_mirror(ctx: &TestContext) -> Vec<u8> {
    let weights = hub_emulator::pseudo_random_bytes(9, WEIGHTS).to_vec();
    ctx.hub.commit(
        "acme/bare",
        "main",
        vec![
            ("config.json", Some(Blob::regular(&b"{}"[..]))),
            ("model.safetensors", Some(Blob::lfs(weights.clone()))),
        ],
    );
    hf(
        ctx,
        "from huggingface_hub import snapshot_download; snapshot_download('acme/bare')",
        &[],
    );
    ctx.hub.update_behaviour(|b| b.bare_listing = true);
    ctx.hub.clear_requests();
    ctx.write_config("models:\n  require:\n    - id: acme/bare\n      verify: false\n");
    weights
}

#[test]
fn behind_a_mirror_without_hashes_the_caches_own_map_answers() {
    let ctx = TestContext::new();
    let weights = bare_mirror(&ctx);
    // The listing says nothing but names.
    let answer = format!(
        "import json, urllib.request\n\
         print(json.dumps(json.load(urllib.request.urlopen('{}/api/models/acme/bare/revision/main?blobs=true'))['siblings']))",
        ctx.hub.url()
    );
    let siblings: serde_json::Value = serde_json::from_str(&hf(&ctx, &answer, &[])).unwrap();
    assert_eq!(
        siblings,
        serde_json::json!([{"rfilename": "config.json"}, {"rfilename": "model.safetensors"}])
    );
    ctx.hub.clear_requests();

    ctx.mdl(&["sync"]).success();
    assert_eq!(ctx.body_requests(), vec![], "0 bytes fetched");
    assert_eq!(ctx.read("models/huggingface_acme--bare/model.safetensors"), weights);
    // The lock holds the hashes the bytes proved.
    assert!(ctx.read_str("models.lock").contains(&sha256_hex(&weights)));

    // Without `trees/` (as 2.4 leaves it), the snapshot's links answer.
    let again = TestContext::new();
    let weights = bare_mirror(&again);
    std::fs::remove_dir_all(hf_home(&again).join("models--acme--bare/trees")).unwrap();
    again.mdl(&["sync"]).success();
    assert_eq!(again.body_requests(), vec![]);
    assert_eq!(again.read("models/huggingface_acme--bare/model.safetensors"), weights);
}

#[test]
fn a_cache_blob_that_is_not_what_its_name_says_is_fetched_instead() {
    let ctx = TestContext::new();
    let weights = bare_mirror(&ctx);
    let blob = hf_home(&ctx)
        .join("models--acme--bare/blobs")
        .join(sha256_hex(&weights));
    let mut damaged = weights.clone();
    damaged[100] ^= 1;
    std::fs::remove_file(&blob).unwrap();
    std::fs::write(&blob, &damaged).unwrap();
    ctx.mdl(&["sync"]).success();
    assert_eq!(ctx.read("models/huggingface_acme--bare/model.safetensors"), weights);
    let fetched: Vec<_> = ctx
        .body_requests()
        .into_iter()
        .filter(|r| r.path.ends_with(".safetensors"))
        .collect();
    assert_eq!(fetched.len(), 1, "{fetched:?}");
}

#[test]
fn lock_offline_resolves_from_the_hugging_face_cache_alone() {
    let ctx = TestContext::new();
    let weights = xet_repo(&ctx);
    hf(
        &ctx,
        "from huggingface_hub import snapshot_download; snapshot_download('acme/xet')",
        &[],
    );
    ctx.hub.clear_requests();
    ctx.write_config(CONFIG);
    ctx.mdl(&["lock", "--offline"])
        .success()
        .stderr_has("Locked 1 model(s)");
    let lock = ctx.read_str("models.lock");
    assert!(lock.contains(&sha256_hex(&weights)), "{lock}");
    assert!(
        lock.contains("xet_hash"),
        "the tree listing's Xet hash is kept:\n{lock}"
    );
    let mut ctx = ctx;
    ctx.env.push(("HF_HUB_OFFLINE".into(), "1".into()));
    ctx.mdl(&["sync"]).success();
    assert_eq!(ctx.read(MODEL), weights);
    assert_eq!(ctx.requests(), vec![], "no request at all");

    // A revision the cache does not hold is refused, naming what to do.
    ctx.write_config(&CONFIG.replace("acme/xet", "acme/xet@v9"));
    ctx.mdl(&["lock"])
        .failure(2)
        .stderr_has("`--offline` forbids resolving models");
    assert_eq!(ctx.requests(), vec![]);
}
