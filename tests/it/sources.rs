//! torchvision, local paths, auto-detection, presets and disabled sources.

use crate::common::*;

/// Serves `bytes` as a torchvision-style file (`{stem}-{sha256[:8]}.pth`) and
/// returns its name.
fn serve_tv(ctx: &TestContext, stem: &str, bytes: &'static [u8]) -> String {
    let blob = Blob::regular(bytes);
    let name = hub_emulator::hashed_name(stem, "pth", &blob);
    ctx.hub.put_file(&format!("tv/{name}"), blob);
    name
}

fn tv_config(ctx: &TestContext, require: &str, catalog: &[(&str, &str)]) -> String {
    let entries: Vec<String> = catalog.iter().map(|(k, v)| format!("          {k}: \"{v}\"")).collect();
    format!(
        "models:\n  require: {require}\n  download:\n    sources:\n      torchvision:\n        base_url: \"{}/files/tv/\"\n        catalog:\n{}\n",
        ctx.hub.url(),
        entries.join("\n")
    )
}

#[test]
fn torchvision_end_to_end_with_a_mirror_and_a_catalog_entry() {
    let ctx = TestContext::new();
    let file = serve_tv(&ctx, "resnet18", STATE_DICT);
    ctx.write_config(&tv_config(&ctx, "[\"torchvision:resnet18\"]", &[("resnet18", &file)]));
    let run = ctx.mdl(&["sync"]).success();
    assert!(
        run.stderr_without_torch()
            .contains("Verified resnet18 on cpu: 1 weight file(s) [torch_zip], 9 tensors"),
        "{}",
        run.stderr()
    );
    assert_eq!(ctx.read(&format!("models/torchvision_resnet18/{file}")), STATE_DICT);
    let lock: toml::Value = toml::from_str(&ctx.read_str("models.lock")).unwrap();
    let model = &lock["model"][0];
    assert_eq!(model["source"].as_str(), Some("torchvision"));
    assert!(model["file"][0]["url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/files/tv/{file}")));
}

#[test]
fn torchvision_checks_the_sha256_prefix_of_the_real_catalog_names() {
    let ctx = TestContext::new();
    // A mirror serving other bytes under the catalog's real name for resnet50's V1 weights.
    ctx.hub.put_file("tv/resnet50-0676ba61.pth", Blob::regular(STATE_DICT));
    ctx.write_config(&format!(
        "models:\n  require: [\"torchvision:resnet50@IMAGENET1K_V1\"]\n  download:\n    sources:\n      torchvision: {{ base_url: \"{}/files/tv\" }}\n",
        ctx.hub.url()
    ));
    ctx.mdl(&["lock"])
        .failure(1)
        .snap("lock_torchvision_hash_prefix_mismatch")
        .stderr_has("does not match its sha256 prefix: expected `0676ba61`");
    assert!(!ctx.models().join("torchvision_resnet50/resnet50-0676ba61.pth").exists());
    ctx.write_config("models:\n  require: [\"torchvision:resnet50@V9\"]\n");
    ctx.mdl(&["lock"])
        .failure(1)
        .snap("lock_torchvision_unknown_weights")
        .stderr_has("has no weights `V9`")
        .stderr_has("IMAGENET1K_V1, IMAGENET1K_V2");
}

#[test]
fn bare_names_are_detected_in_the_seed_order_and_locked() {
    let ctx = TestContext::new();
    let file = serve_tv(&ctx, "resnet18", STATE_DICT);
    ctx.hub.commit(
        "bert-base-uncased",
        "main",
        vec![("model.safetensors", Some(Blob::lfs(SAFETENSORS)))],
    );
    ctx.write_config(&tv_config(
        &ctx,
        "[resnet18, bert-base-uncased]",
        &[("resnet18", &file)],
    ));
    ctx.mdl(&["sync"]).success();
    let lock: toml::Value = toml::from_str(&ctx.read_str("models.lock")).unwrap();
    let sources: Vec<(&str, &str, bool)> = lock["model"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap(),
                m["source"].as_str().unwrap(),
                m["auto"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(
        sources,
        [
            ("bert-base-uncased", "huggingface", true),
            ("resnet18", "torchvision", true)
        ]
    );
    assert!(ctx
        .models()
        .join("huggingface_bert-base-uncased/model.safetensors")
        .exists());
    // Sync never guesses again: with the lock current, no request at all.
    ctx.hub.clear_requests();
    ctx.mdl(&["sync"]).success();
    assert!(ctx.requests().is_empty());
}

#[test]
fn unknown_and_ambiguous_names_list_what_was_tried() {
    let ctx = TestContext::new();
    ctx.write_config("models:\n  require: [nope-model]\n");
    ctx.mdl(&["lock"])
        .failure(1)
        .snap("lock_bare_name_not_found")
        .stderr_has("`nope-model` was not found in any enabled source")
        .stderr_has("torchvision catalog: no model `nope-model`")
        .stderr_has("PyTorch Hub: not searched")
        .stderr_has("Hugging Face Hub (http://127.0.0.1:");
    ctx.write_config("models:\n  require: [resnet]\n");
    ctx.mdl(&["lock"])
        .failure(1)
        .snap("lock_bare_name_ambiguous")
        .stderr_has("(similar: resnet101, resnet152, resnet18, resnet34, resnet50");
}

#[test]
fn presets_builtin_user_and_for_one_run() {
    let ctx = TestContext::new();
    let r18 = serve_tv(&ctx, "resnet18", STATE_DICT);
    let mv2 = serve_tv(&ctx, "mobilenet_v2", LEGACY);
    ctx.hub.commit(
        "acme/extra",
        "main",
        vec![("model.safetensors", Some(Blob::lfs(SAFETENSORS)))],
    );
    let base = tv_config(&ctx, "[]", &[("resnet18", &r18), ("mobilenet_v2", &mv2)]);
    ctx.write_config(&format!(
        "{}\npresets:\n  mine: [acme/extra]\n",
        base.replace("  require: []\n", "  require: []\n  presets: [basic]\n")
    ));
    ctx.mdl(&["sync"]).success();
    let registry = ctx.json("models/model_registry.json");
    let names: Vec<&String> = registry["models"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["mobilenet_v2", "resnet18"]);
    // `--preset mine` adds the user preset for this run.
    ctx.mdl(&["sync", "--preset", "mine"]).success();
    assert!(ctx.models().join("huggingface_acme--extra/model.safetensors").exists());
}

#[test]
fn a_disabled_source_is_a_config_error_naming_both() {
    let ctx = TestContext::new();
    ctx.write_config("models:\n  require: [\"torchvision:resnet18\"]\n  download:\n    sources:\n      torchvision: { enabled: false }\n");
    ctx.mdl(&["lock"])
        .failure(2)
        .snap("lock_disabled_source")
        .stderr_has("`torchvision:resnet18` needs the `torchvision` source, which is disabled")
        .stderr_has("models.download.sources.torchvision.enabled: true");
}

#[test]
fn local_models_are_locked_verified_and_used_in_place() {
    let ctx = TestContext::new();
    let dir = ctx.path().join("weights/tiny");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.pth"), STATE_DICT).unwrap();
    std::fs::write(dir.join("config.json"), b"{}").unwrap();
    ctx.write_config("models:\n  require: [./weights/tiny]\n");
    let run = ctx.mdl(&["sync"]).success();
    assert!(
        run.stderr_without_torch()
            .contains("Verified tiny on cpu: 1 weight file(s) [torch_zip]"),
        "{}",
        run.stderr()
    );
    assert!(ctx.requests().is_empty(), "no network for a local model");
    assert!(!ctx.models().join("local_tiny/model.pth").exists(), "never copied");
    assert!(ctx.read_str("models.lock").contains(&blake3_hex(STATE_DICT)));
    assert_eq!(
        ctx.json("models/model_registry.json")["models"]["tiny"]["path"],
        "./weights/tiny"
    );
    // A change on disk is caught, and `lock --upgrade` accepts it.
    std::fs::write(dir.join("model.pth"), LEGACY).unwrap();
    ctx.mdl(&["sync"])
        .failure(1)
        .snap("sync_local_model_changed")
        .stderr_has("the local model `tiny` changed since it was locked")
        .stderr_has("mdl lock --upgrade tiny");
    ctx.mdl(&["lock", "--upgrade", "tiny"]).success();
    ctx.mdl(&["sync"]).success().stderr_has("[torch_legacy]");
}

/// A real zip archive, as GitHub's zipball sends: one top-level folder.
fn zipball(top: &str) -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file(format!("{top}/hubconf.py"), options).unwrap();
    zip.write_all(b"dependencies = ['torch']\ndef tiny(pretrained=False):\n    pass\n")
        .unwrap();
    zip.finish().unwrap().into_inner()
}

fn hub_sources(ctx: &TestContext, extra: &str) -> String {
    format!(
        "    sources:\n      pytorch_hub:\n        api_url: \"{u}\"\n        github_url: \"{u}\"\n{extra}",
        u = ctx.hub.url()
    )
}

#[test]
fn pytorch_hub_pins_the_ref_and_locks_archive_and_weights() {
    let ctx = TestContext::new();
    let vision = ctx
        .hub
        .github_repo("pytorch/vision", "main", Blob::regular(zipball("pytorch-vision-abc")));
    let acme = ctx
        .hub
        .github_repo("acme/models", "v2", Blob::regular(zipball("acme-models-def")));
    let r18 = serve_tv(&ctx, "resnet18", STATE_DICT);
    ctx.hub.put_file("w/tiny.pt", Blob::regular(LEGACY));
    let yaml = format!(
        "models:\n  require:\n    - pytorch_hub:pytorch/vision/resnet18\n    - pytorch_hub:acme/models:v2/tiny\n  download:\n{}      torchvision:\n        base_url: \"{u}/files/tv/\"\n        catalog: {{ resnet18: \"{r18}\" }}\n",
        hub_sources(&ctx, &format!("        weights: {{ \"acme/models/tiny\": \"{}/files/w/tiny.pt\" }}\n", ctx.hub.url())),
        u = ctx.hub.url()
    );
    ctx.write_config(&yaml);
    let run = ctx.mdl(&["sync"]).success();
    assert!(
        run.stderr_without_torch()
            .contains("Verified resnet18 on cpu: 1 weight file(s) [torch_zip]"),
        "{}",
        run.stderr()
    );
    assert!(
        run.stderr_without_torch()
            .contains("Verified tiny on cpu: 1 weight file(s) [torch_legacy]"),
        "{}",
        run.stderr()
    );
    let lock: toml::Value = toml::from_str(&ctx.read_str("models.lock")).unwrap();
    let commits: Vec<&str> = lock["model"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["commit"].as_str().unwrap())
        .collect();
    assert_eq!(
        commits,
        [vision.as_str(), acme.as_str()],
        "refs pinned to commits (main by default, v2 as asked)"
    );
    assert_eq!(
        ctx.read(&format!(
            "models/pytorch_hub_resnet18/pytorch_vision_{}.zip",
            &vision[..12]
        )),
        zipball("pytorch-vision-abc")
    );
    assert_eq!(ctx.read(&format!("models/pytorch_hub_resnet18/{r18}")), STATE_DICT);
    assert_eq!(ctx.read("models/pytorch_hub_tiny/tiny.pt"), LEGACY);
}

#[test]
fn pytorch_hub_without_known_weights_says_how_to_give_them() {
    let ctx = TestContext::new();
    ctx.hub
        .github_repo("acme/models", "main", Blob::regular(zipball("acme-models-x")));
    ctx.write_config(&format!(
        "models:\n  require: [\"pytorch_hub:acme/models/tiny\"]\n  download:\n{}",
        hub_sources(&ctx, "")
    ));
    ctx.mdl(&["lock"])
        .failure(1)
        .snap("lock_pytorch_hub_without_weights")
        .stderr_has("no weights are known for the PyTorch Hub entry `acme/models/tiny`")
        .stderr_has("sources.pytorch_hub.weights");
    ctx.write_config(&format!(
        "models:\n  require: [\"pytorch_hub:acme/models:nope/tiny\"]\n  download:\n{}",
        hub_sources(&ctx, "")
    ));
    ctx.mdl(&["lock"])
        .failure(1)
        .snap("lock_pytorch_hub_unknown_ref")
        .stderr_has("has no revision `nope`");
}

#[test]
fn clean_removes_pytorch_hub_directories_no_lock_references() {
    let ctx = TestContext::new();
    ctx.hub
        .github_repo("acme/models", "v2", Blob::regular(zipball("acme-models-def")));
    ctx.hub.put_file("w/tiny.pt", Blob::regular(LEGACY));
    let yaml = |require: &str| {
        format!(
            "models:\n  require: [{require}]\n  download:\n{}",
            hub_sources(
                &ctx,
                &format!(
                    "        weights: {{ \"acme/models/tiny\": \"{}/files/w/tiny.pt\" }}\n",
                    ctx.hub.url()
                )
            )
        )
    };
    ctx.write_config(&yaml("\"pytorch_hub:acme/models:v2/tiny\""));
    ctx.mdl(&["sync", "--no-verify"]).success();
    assert_eq!(ctx.read("models/pytorch_hub_tiny/tiny.pt"), LEGACY);
    std::fs::write(ctx.models().join("pytorch_hub_tiny/stray.bin"), b"stray").unwrap();
    let dry = ctx.mdl(&["clean", "--dry-run"]).success().stderr();
    assert!(dry.contains("pytorch_hub_tiny/stray.bin"), "{dry}");

    // The model leaves the config: its whole directory is extraneous.
    ctx.write_config(&yaml(""));
    ctx.mdl(&["lock"]).success();
    let dry = ctx.mdl(&["clean", "--dry-run"]).success().stderr();
    assert!(dry.contains("Would remove pytorch_hub_tiny"), "{dry}");
    ctx.mdl(&["clean"]).success();
    assert!(!ctx.models().join("pytorch_hub_tiny").exists());
}

/// `torch.hub`'s rules, as `torch/hub.py` writes them: `get_dir()` is
/// `$TORCH_HOME/hub`; a checkpoint is `get_dir()/checkpoints/basename(urlparse(url).path)`;
/// its hash prefix is `HASH_REGEX = r"-([a-f0-9]*)\."`'s first match.
#[test]
fn torch_hub_true_places_files_where_torch_hub_looks() {
    use sha2::Digest;
    let mut ctx = TestContext::new();
    let r18 = serve_tv(&ctx, "resnet18", STATE_DICT);
    ctx.hub
        .github_repo("acme/models", "v2", Blob::regular(zipball("acme-models-def")));
    ctx.hub.put_file("w/tiny.pt", Blob::regular(LEGACY));
    let torch_home = ctx.path().join("torch-home");
    ctx.env
        .push(("TORCH_HOME".into(), torch_home.to_string_lossy().into_owned()));
    let yaml = format!(
        "models:\n  require: [\"torchvision:resnet18\", \"pytorch_hub:acme/models:v2/tiny\"]\n  download:\n    torch_hub: true\n{}      torchvision:\n        base_url: \"{u}/files/tv/\"\n        catalog: {{ resnet18: \"{r18}\" }}\n",
        hub_sources(&ctx, &format!("        weights: {{ \"acme/models/tiny\": \"{}/files/w/tiny.pt\" }}\n", ctx.hub.url())),
        u = ctx.hub.url()
    );
    ctx.write_config(&yaml);
    ctx.mdl(&["sync", "--no-verify"]).success();

    let hub_dir = torch_home.join("hub");
    let url = format!("{}/files/tv/{r18}", ctx.hub.url());
    let basename = url.rsplit('/').next().unwrap();
    let checkpoint = hub_dir.join("checkpoints").join(basename);
    let bytes = std::fs::read(&checkpoint).unwrap();
    assert_eq!(bytes, STATE_DICT);
    let prefix = regex::Regex::new(r"-([a-f0-9]*)\.")
        .unwrap()
        .captures(basename)
        .unwrap()[1]
        .to_string();
    assert!(
        hex::encode(sha2::Sha256::digest(&bytes)).starts_with(&prefix),
        "torchvision's check_hash passes"
    );
    assert_eq!(std::fs::read(hub_dir.join("checkpoints/tiny.pt")).unwrap(), LEGACY);
    // torch.hub.load("acme/models:v2", "tiny") finds the repo without a network.
    assert!(hub_dir.join("acme_models_v2/hubconf.py").is_file());
    assert!(std::fs::read_to_string(hub_dir.join("trusted_list"))
        .unwrap()
        .lines()
        .any(|l| l == "acme_models"));
}
