//! `mdl lock`: pins, determinism, upgrades, and bad input.

use crate::common::*;

#[test]
fn lock_pins_commits_sizes_and_hashes() {
    let ctx = TestContext::new();
    standard_hub(&ctx);
    ctx.write_config(STANDARD_CONFIG);
    ctx.mdl(&["lock"]).success();
    let lock = ctx.read_str("models.lock");
    let parsed: toml::Value = toml::from_str(&lock).unwrap();
    assert_eq!(parsed["version"].as_integer(), Some(1));
    let models = parsed["model"].as_array().unwrap();
    let names: Vec<&str> = models.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["acme/tiny-bert", "acme/tiny-gpt", "custom_model"],
        "sorted by name"
    );
    // The tag resolved to a commit; include filters dropped onnx/.
    let gpt = &models[1];
    assert_eq!(gpt["revision"].as_str(), Some("v1.0"));
    assert_eq!(gpt["commit"].as_str().unwrap().len(), 40);
    let gpt_files: Vec<&str> = gpt["file"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(gpt_files, ["config.json", "model.safetensors"]);
    // LFS files carry the Hub's sha256; every file its size and blake3.
    let st = gpt["file"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"].as_str() == Some("model.safetensors"))
        .unwrap();
    assert_eq!(st["blake3"].as_str().unwrap(), blake3_hex(SAFETENSORS));
    assert_eq!(st["size"].as_integer().unwrap() as usize, SAFETENSORS.len());
    assert_eq!(st["sha256"].as_str().unwrap(), Blob::lfs(SAFETENSORS).sha256);
    // The URL model keeps the URL as written, never where it redirects to.
    let url = &models[2];
    assert!(url.get("resolved_url").is_none(), "{url:?}");
    assert!(
        url["file"][0]["url"]
            .as_str()
            .unwrap()
            .ends_with("/redirect/w/model.pt"),
        "{url:?}"
    );
}

#[test]
fn lock_is_byte_identical_and_keeps_pins() {
    let ctx = TestContext::new();
    standard_hub(&ctx);
    ctx.write_config(STANDARD_CONFIG);
    ctx.mdl(&["lock"]).success();
    let first = ctx.read("models.lock");
    ctx.mdl(&["lock"]).success().stderr_has("Up to date");
    assert_eq!(ctx.read("models.lock"), first);
    // Upstream `main` moves: a plain `mdl lock` keeps the pin (no silent re-resolution).
    ctx.hub.commit(
        "acme/tiny-bert",
        "main",
        vec![("config.json", Some(Blob::regular(&b"{\"v\": 2}"[..])))],
    );
    ctx.hub.clear_requests();
    ctx.mdl(&["lock"]).success();
    assert_eq!(ctx.read("models.lock"), first);
    assert!(
        ctx.requests().is_empty(),
        "a current lock needs no network: {:?}",
        ctx.requests()
    );
}

#[test]
fn upgrade_redownloads_only_the_changed_file() {
    let ctx = TestContext::new();
    standard_hub(&ctx);
    ctx.write_config(STANDARD_CONFIG);
    ctx.mdl(&["sync", "--no-verify"]).success();
    let before = ctx.read_str("models.lock");
    ctx.hub.commit(
        "acme/tiny-bert",
        "main",
        vec![("config.json", Some(Blob::regular(&b"{\"v\": 2}"[..])))],
    );
    ctx.hub.clear_requests();
    ctx.mdl(&["lock", "--upgrade", "acme/tiny-bert"]).success();
    let bodies: Vec<String> = ctx.body_requests().into_iter().map(|r| r.path).collect();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert!(bodies[0].ends_with("/config.json"), "{bodies:?}");
    let after = ctx.read_str("models.lock");
    assert_ne!(before, after);
    assert_eq!(
        ctx.read("models/huggingface_acme--tiny-bert/config.json"),
        b"{\"v\": 2}"
    );
    // The other models were not re-resolved.
    assert!(
        ctx.requests().iter().all(|r| !r.path.contains("tiny-gpt")),
        "{:?}",
        ctx.requests()
    );
    // And a sync afterwards has nothing to do.
    ctx.hub.clear_requests();
    ctx.mdl(&["sync", "--no-verify"]).success();
    assert!(ctx.requests().is_empty());
}

#[test]
fn bad_configs_fail_before_any_change() {
    let ctx = TestContext::new();
    standard_hub(&ctx);
    ctx.write_config(STANDARD_CONFIG);
    ctx.mdl(&["sync", "--no-verify"]).success();
    let cases: &[(&str, &str, &str)] = &[
        ("unclosed_flow_sequence", "models:\n  require: [acme/tiny-bert\n", "config.yaml:"),
        ("unknown_key_requires", "models:\n  requires: [acme/tiny-bert]\n", "config.yaml:2:3: models: unknown field `requires`"),
        ("unknown_source_ftp", "models:\n  require: [acme/tiny-bert]\n  download:\n    sources:\n      ftp: {enabled: true}\n", "unknown field `ftp`"),
        ("unknown_id_scheme", "models:\n  require:\n    - weird:thing\n", "config.yaml:3:7: `weird:thing` is not a model identifier"),
        ("duplicate_name", "models:\n  require:\n    - id: url:{hub}/files/w/model.pt\n      name: x\n    - id: url:{hub}/files/w/other.pt\n      name: x\n", "two models are named `x`"),
        ("require_not_a_list", "models:\n  require: 5\n", "config.yaml:2:"),
        ("mirror_not_oci", "models:\n  require: [acme/tiny-bert]\n  download:\n    mirrors: [\"https://registry.acme.internal/models\"]\n", "config.yaml:4:16: the mirror `https://registry.acme.internal/models` is not an OCI repository"),
        ("oci_without_host", "models:\n  require:\n    - oci:acme/bert:v1\n", "names no registry host"),
    ];
    for (name, yaml, needle) in cases {
        ctx.write_config(yaml);
        let before = ctx.snapshot();
        ctx.hub.clear_requests();
        let run = ctx.mdl(&["sync"]).failure(2).snap(&format!("bad_config_{name}"));
        let err = run.stderr();
        assert!(err.contains(&needle.replace("{hub}", &ctx.hub.url())), "{yaml}\n{err}");
        assert!(err.contains("hint:"), "{err}");
        assert!(
            ctx.requests().is_empty(),
            "{yaml}: no network before the config is valid"
        );
        assert_same(&before, &ctx.snapshot(), yaml);
    }
}

#[test]
fn unknown_repo_and_revision_name_the_model() {
    let ctx = TestContext::new();
    standard_hub(&ctx);
    ctx.write_config("models:\n  require: [acme/nope]\n");
    ctx.mdl(&["lock"])
        .failure(1)
        .snap("lock_unknown_repo")
        .stderr_has("the Hub has no repository `acme/nope` (model `acme/nope`)");
    ctx.write_config("models:\n  require: [\"acme/tiny-bert@v9\"]\n");
    ctx.mdl(&["lock"])
        .failure(1)
        .snap("lock_unknown_revision")
        .stderr_has("has no revision `v9` (model `acme/tiny-bert`)")
        .stderr_has("hint:");
    assert!(!ctx.path().join("models.lock").exists());
}

#[test]
fn escaping_remote_names_are_refused() {
    let ctx = TestContext::new();
    ctx.hub.commit(
        "evil/repo",
        "main",
        vec![
            ("../../x.bin", Some(Blob::regular(&b"boom"[..]))),
            ("ok.json", Some(Blob::regular(&b"{}"[..]))),
        ],
    );
    ctx.write_config("models:\n  require: [evil/repo]\n");
    let before = ctx.snapshot();
    ctx.mdl(&["sync"])
        .failure(1)
        .snap("sync_escaping_remote_name")
        .stderr_has("`../../x.bin` would escape the model directory");
    assert_same(&before, &ctx.snapshot(), "snapshot");
    assert!(!ctx.path().parent().unwrap().join("x.bin").exists());
    assert!(ctx.body_requests().is_empty());
}

#[test]
fn gated_repos_need_a_token_and_get_it() {
    let ctx = TestContext::new();
    ctx.hub.commit(
        "acme/gated",
        "main",
        vec![("model.safetensors", Some(Blob::lfs(SAFETENSORS)))],
    );
    ctx.hub.gate("acme/gated", "hf_secret");
    ctx.write_config("models:\n  require: [acme/gated]\n");
    ctx.mdl(&["sync", "--no-verify"])
        .failure(1)
        .snap("sync_gated_without_token")
        .stderr_has("is gated or private")
        .stderr_has("HF_TOKEN");
    let mut ctx = ctx;
    ctx.env.push(("HF_TOKEN".into(), "hf_secret".into()));
    ctx.hub.update_behaviour(|b| b.lfs_redirect = true);
    ctx.hub.clear_requests();
    ctx.mdl(&["sync", "--no-verify"]).success();
    let requests = ctx.requests();
    // The token goes to the Hub, never to the CDN it redirects to.
    for r in &requests {
        let expected = if r.path.starts_with("/cdn/") {
            None
        } else {
            Some("Bearer hf_secret")
        };
        assert_eq!(r.authorization.as_deref(), expected, "{r:?}");
    }
    assert!(requests.iter().any(|r| r.path.starts_with("/cdn/")), "{requests:?}");
}

#[test]
fn locked_refuses_a_stale_lock() {
    let ctx = TestContext::new();
    standard_hub(&ctx);
    ctx.write_config(STANDARD_CONFIG);
    ctx.mdl(&["lock"]).success();
    let lock = ctx.read("models.lock");
    ctx.write_config(&format!("{STANDARD_CONFIG}\n").replace(
        "    - huggingface:acme/tiny-bert            # a Hub repo, default revision main\n",
        "",
    ));
    ctx.hub.clear_requests();
    ctx.mdl(&["sync", "--locked"])
        .failure(2)
        .snap("sync_locked_stale_lock")
        .stderr_has("the lockfile `./models.lock` needs to be updated, but `--locked` was passed")
        .stderr_has("`acme/tiny-bert` is no longer in the config")
        .stderr_has("hint: run `mdl lock`");
    assert_eq!(ctx.read("models.lock"), lock);
    assert!(ctx.requests().is_empty());
}

/// The committed corpus of malformed configs (`tests/fixtures/bad-configs/`):
/// each is refused before any network or disk change, with `file:line:column`,
/// a hint, and exit code 2.
#[test]
fn every_config_in_the_bad_corpus_is_refused_with_its_position() {
    let ctx = TestContext::new();
    standard_hub(&ctx);
    ctx.write_config(STANDARD_CONFIG);
    ctx.mdl(&["sync", "--no-verify"]).success();
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad-configs");
    let mut files: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    assert!(files.len() >= 40, "the corpus has {} configs", files.len());
    let position = regex::Regex::new(r"^error: config\.yaml:\d+:\d+: ").unwrap();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        std::fs::copy(&file, ctx.path().join("config.yaml")).unwrap();
        let before = ctx.snapshot();
        ctx.hub.clear_requests();
        let started = std::time::Instant::now();
        let run = ctx.mdl(&["sync"]);
        assert_eq!(run.code(), 2, "{name}: exit code\n{}", run.stderr());
        let err = run.stderr();
        assert!(position.is_match(&err), "{name}: no file:line:column\n{err}");
        assert!(err.contains("\nhint: "), "{name}: no hint\n{err}");
        assert!(
            ctx.requests().is_empty(),
            "{name}: no network before the config is valid"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{name}: took {:?}",
            started.elapsed()
        );
        assert_same(&before, &ctx.snapshot(), &name);
    }
}

/// A lock made against one endpoint syncs `--locked` from another (a mirror
/// moved, CI behind a different proxy): the URL a lock records for a Hub
/// file is never fetched from, so only its repo/commit/path must match.
#[test]
fn a_lock_made_against_one_endpoint_syncs_locked_from_another() {
    let mut ctx = TestContext::new();
    standard_hub(&ctx);
    ctx.write_config("models:\n  require: [acme/tiny-bert]\n");
    ctx.mdl(&["lock"]).success();
    let lock = ctx.read_str("models.lock");
    // The same server under another origin.
    let other = ctx.hub.url().replace("127.0.0.1", "localhost");
    ctx.env.push(("HF_ENDPOINT".into(), other));
    std::fs::remove_dir_all(ctx.models()).unwrap();
    ctx.clear_shared_store();
    ctx.hub.clear_requests();
    ctx.mdl(&["sync", "--locked", "--no-verify"]).success();
    assert!(!ctx.body_requests().is_empty(), "the files came from the new endpoint");
    assert_eq!(
        ctx.read("models/huggingface_acme--tiny-bert/model.safetensors"),
        SAFETENSORS
    );
    assert_eq!(ctx.read_str("models.lock"), lock, "the lock is unchanged");
}
