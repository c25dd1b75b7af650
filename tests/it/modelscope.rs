//! `modelscope:owner/name[@revision]`: the ModelScope Hub as its official
//! client (`modelscope-hub`) speaks to it, served by the emulator's
//! `/api/v1/models/…` routes.

use crate::common::*;

/// A ModelScope model `qwen/tiny` on `master`, tagged `v1.0`, with files at
/// the top and in a directory; the project's endpoint points at the emulator.
fn modelscope_hub(ctx: &mut TestContext) {
    ctx.hub.commit(
        "qwen/tiny",
        "master",
        vec![
            (
                "configuration.json",
                Some(Blob::regular(&br#"{"framework": "pytorch"}"#[..])),
            ),
            ("model.safetensors", Some(Blob::lfs(SAFETENSORS))),
            ("onnx/README.md", Some(Blob::regular(&b"# onnx export\n"[..]))),
        ],
    );
    ctx.hub.tag("qwen/tiny", "v1.0", "master");
    ctx.env.push(("MODELSCOPE_ENDPOINT".into(), ctx.hub.url()));
}

fn modelscope_requests(ctx: &TestContext) -> Vec<String> {
    let requests = ctx.requests();
    assert!(!requests.is_empty());
    requests
        .into_iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

#[test]
fn a_modelscope_model_locks_each_files_hash_syncs_and_verifies() {
    let mut ctx = TestContext::new();
    modelscope_hub(&mut ctx);
    ctx.write_config("models:\n  require: [\"modelscope:qwen/tiny@v1.0\"]\n");
    let run = ctx.mdl(&["sync"]).success();
    assert!(
        run.stderr_without_torch()
            .contains("Verified qwen/tiny on cpu: 1 weight file(s) [safetensors]"),
        "{}",
        run.stderr()
    );
    assert_eq!(ctx.read("models/modelscope_qwen--tiny/model.safetensors"), SAFETENSORS);
    assert_eq!(
        ctx.read("models/modelscope_qwen--tiny/onnx/README.md"),
        b"# onnx export\n"
    );

    // The lock pins the revision (ModelScope lists no commit) and every
    // file's size and sha256.
    let lock: toml::Value = toml::from_str(&ctx.read_str("models.lock")).unwrap();
    let model = &lock["model"][0];
    assert_eq!(model["source"].as_str(), Some("modelscope"));
    assert_eq!(model["id"].as_str(), Some("qwen/tiny"));
    assert_eq!(model["revision"].as_str(), Some("v1.0"));
    assert!(model.get("commit").is_none(), "{model}");
    let files = model["file"].as_array().unwrap();
    assert_eq!(files.len(), 3);
    for file in files {
        assert_eq!(file["sha256"].as_str().map(str::len), Some(64), "{file}");
        assert!(file["url"]
            .as_str()
            .unwrap()
            .contains("/api/v1/models/qwen/tiny/repo?Revision=v1.0&FilePath="));
    }
    // The client's routes, and nothing of the Hugging Face Hub's.
    let asked = modelscope_requests(&ctx);
    assert!(
        asked.iter().all(|r| r.contains("/api/v1/models/qwen/tiny/")),
        "{asked:?}"
    );
    assert!(asked.iter().any(|r| r.ends_with("/revisions")), "{asked:?}");

    // A no-op asks nothing.
    ctx.hub.clear_requests();
    ctx.mdl(&["sync"]).success();
    assert!(ctx.requests().is_empty(), "{:?}", ctx.requests());
}

#[test]
fn a_file_changed_upstream_is_a_hash_error_never_an_update() {
    let mut ctx = TestContext::new();
    modelscope_hub(&mut ctx);
    ctx.write_config("models:\n  require: [\"modelscope:qwen/tiny\"]\n");
    ctx.mdl(&["sync", "--no-verify"]).success();
    // `master` moves: the same revision name now serves other bytes.
    ctx.hub.commit(
        "qwen/tiny",
        "master",
        vec![("model.safetensors", Some(Blob::lfs(&b"other bytes"[..])))],
    );
    std::fs::remove_file(ctx.models().join("modelscope_qwen--tiny/model.safetensors")).unwrap();
    // Nor is the shared store's copy there to relink: it must come from upstream.
    std::fs::remove_dir_all(ctx.path().join(".mdl-cache")).unwrap();
    ctx.mdl(&["sync", "--no-verify"])
        .failure(1)
        .stderr_has("`qwen/tiny/model.safetensors` has 11 bytes, but 1168 were expected")
        .stderr_has("hint: the upstream content differs from what was locked");
    assert!(!ctx.models().join("modelscope_qwen--tiny/model.safetensors").exists());
    // `mdl lock --upgrade` takes the new bytes, on purpose.
    ctx.mdl(&["lock", "--upgrade"]).success();
    ctx.mdl(&["sync", "--no-verify"]).success();
    assert_eq!(
        ctx.read("models/modelscope_qwen--tiny/model.safetensors"),
        b"other bytes"
    );
}

#[test]
fn a_listing_cut_at_the_servers_cap_is_walked_directory_by_directory() {
    let mut ctx = TestContext::new();
    modelscope_hub(&mut ctx);
    let files: Vec<(String, Blob)> = (0..9)
        .map(|i| {
            (
                format!("shards/part{}/w{i}.bin", i % 3),
                Blob::regular(format!("shard {i}").into_bytes()),
            )
        })
        .collect();
    ctx.hub.commit(
        "qwen/tiny",
        "master",
        files.iter().map(|(p, b)| (p.as_str(), Some(b.clone()))).collect(),
    );
    ctx.hub.update_behaviour(|b| b.modelscope_listing_cap = Some(5));
    ctx.write_config(
        "models:\n  require: [\"modelscope:qwen/tiny\"]\n  download:\n    sources:\n      modelscope: { listing_cap: 5 }\n",
    );
    ctx.mdl(&["lock"]).success();
    let lock: toml::Value = toml::from_str(&ctx.read_str("models.lock")).unwrap();
    let locked: Vec<&str> = (lock["model"][0]["file"].as_array().unwrap().iter())
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(locked.len(), 12, "{locked:?}");
    for (path, _) in &files {
        assert!(locked.contains(&path.as_str()), "{path} in {locked:?}");
    }
    let walked = modelscope_requests(&ctx)
        .into_iter()
        .filter(|r| r.contains("repo/files"))
        .count();
    assert!(walked > 1, "a cut listing is walked again");

    // A directory that alone reaches the cap cannot be listed whole: refused.
    ctx.hub.update_behaviour(|b| b.modelscope_listing_cap = Some(2));
    ctx.write_config(
        "models:\n  require: [\"modelscope:qwen/tiny\"]\n  download:\n    sources:\n      modelscope: { listing_cap: 2 }\n",
    );
    ctx.mdl(&["lock", "--upgrade"])
        .failure(1)
        .stderr_has("cuts the listing of")
        .stderr_has("no exact list of the model's files can be made");
}

#[test]
fn unknown_models_and_revisions_are_named_with_a_hint() {
    let mut ctx = TestContext::new();
    modelscope_hub(&mut ctx);
    ctx.write_config("models:\n  require: [\"modelscope:qwen/nope\"]\n");
    ctx.mdl(&["lock"])
        .failure(1)
        .snap("modelscope_unknown_model")
        .stderr_has("ModelScope has no model `qwen/nope`")
        .stderr_has("hint:");
    ctx.write_config("models:\n  require: [\"modelscope:qwen/tiny@v9\"]\n");
    ctx.mdl(&["lock"])
        .failure(1)
        .snap("modelscope_unknown_revision")
        .stderr_has("ModelScope has no revision `v9` of `qwen/tiny`")
        .stderr_has("hint: use one of its branches or tags: master, v1.0");
    ctx.write_config("models:\n  require: [\"modelscope:qwen\"]\n");
    ctx.mdl(&["lock"])
        .failure(2)
        .stderr_has("a ModelScope model is `owner/name`");
    assert!(!ctx.path().join("models.lock").exists());
}

#[test]
fn the_deprecated_domain_variable_and_config_yaml_name_the_endpoint() {
    let mut ctx = TestContext::new();
    modelscope_hub(&mut ctx);
    ctx.env.clear();
    ctx.env.push(("MODELSCOPE_DOMAIN".into(), ctx.hub.url()));
    ctx.write_config("models:\n  require: [\"modelscope:qwen/tiny@v1.0\"]\n");
    ctx.mdl(&["sync", "--no-verify"]).success();
    assert_eq!(ctx.read("models/modelscope_qwen--tiny/model.safetensors"), SAFETENSORS);

    // config.yaml's endpoint wins over the environment's.
    let mirror = Hub::start();
    ctx.env.clear();
    ctx.env.push(("MODELSCOPE_ENDPOINT".into(), mirror.url()));
    ctx.write_config(&format!(
        "models:\n  require: [\"modelscope:qwen/tiny@v1.0\"]\n  download:\n    sources:\n      modelscope: {{ endpoint: \"{}\" }}\n",
        ctx.hub.url()
    ));
    std::fs::remove_dir_all(ctx.models()).unwrap();
    ctx.mdl(&["sync", "--no-verify"]).success();
    assert!(mirror.requests().is_empty(), "{:?}", mirror.requests());
}

/// ModelScope's own client (`modelscope-hub` 0.5.1, the project's `.venv`)
/// downloads the same model from the emulator, checking each file's sha256
/// as it goes: the emulator speaks the client's protocol, and mdl places
/// byte for byte what the client does.
#[test]
fn the_official_client_downloads_the_same_files_as_mdl() {
    let mut ctx = TestContext::new();
    modelscope_hub(&mut ctx);
    ctx.write_config("models:\n  require: [\"modelscope:qwen/tiny@v1.0\"]\n");
    ctx.mdl(&["sync", "--no-verify"]).success();

    let out = ctx.path().join("ms-snapshot");
    let script = format!(
        "from modelscope_hub import HubApi\nprint(HubApi().download_repo('qwen/tiny', 'model', revision='v1.0', local_dir={:?}))",
        out.display().to_string()
    );
    let mut client = std::process::Command::new(crate::interop::project_python());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("MODELSCOPE")) {
        client.env_remove(k);
    }
    let client = client
        .args(["-c", &script])
        .env("MODELSCOPE_ENDPOINT", ctx.hub.url())
        .env("MODELSCOPE_CACHE", ctx.path().join(".ms-cache"))
        .env("MODELSCOPE_HOME", ctx.path().join(".ms-home"))
        .output()
        .unwrap();
    assert!(client.status.success(), "{}", String::from_utf8_lossy(&client.stderr));
    let ours = ctx.models().join("modelscope_qwen--tiny");
    let mut compared = 0;
    for path in ["configuration.json", "model.safetensors", "onnx/README.md"] {
        assert_eq!(
            std::fs::read(out.join(path)).unwrap(),
            std::fs::read(ours.join(path)).unwrap(),
            "{path}"
        );
        compared += 1;
    }
    assert_eq!(compared, 3);
}

/// A listing that names a file outside the model's directory is refused
/// before anything is written, as the Hub's is.
#[test]
fn a_listed_path_that_escapes_is_refused_and_nothing_is_written() {
    let mut ctx = TestContext::new();
    modelscope_hub(&mut ctx);
    ctx.hub.commit(
        "evil/ms",
        "master",
        vec![
            ("../../x.bin", Some(Blob::regular(&b"boom"[..]))),
            ("ok.json", Some(Blob::regular(&b"{}"[..]))),
        ],
    );
    ctx.write_config("models:\n  require: [\"modelscope:evil/ms\"]\n");
    ctx.mdl(&["sync", "--no-verify"]).failure(1).stderr_has("../../x.bin");
    assert!(!ctx.path().join("models.lock").exists());
    assert!(!ctx.path().join("x.bin").exists() && !ctx.models().join("modelscope_evil--ms").exists());
}
