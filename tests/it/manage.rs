//! list, add, remove, clean, du, config.

use crate::common::*;

const COMMENTED: &str = "# Models for the demo service.\nmodels:\n  require:\n    - acme/tiny-bert   # keep: used by the API\n  # where models go\n  download:\n    cache_dir: models/\n";

#[test]
fn list_shows_wanted_locked_and_on_disk() {
    let ctx = TestContext::new();
    standard_hub(&ctx);
    ctx.write_config(STANDARD_CONFIG);
    ctx.mdl(&["sync", "--no-verify"]).success();
    std::fs::remove_file(ctx.models().join("huggingface_acme--tiny-bert/config.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&ctx.mdl(&["list", "--json"]).success().stdout()).unwrap();
    let states: Vec<(&str, &str)> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].as_str().unwrap(), m["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [
            ("acme/tiny-bert", "incomplete"),
            ("acme/tiny-gpt", "synced"),
            ("custom_model", "synced")
        ]
    );
    let table = ctx.mdl(&["list"]).success().stdout();
    assert!(table.contains("2/3 files"), "{table}");
}

#[test]
fn add_keeps_comments_and_locks_or_restores() {
    let ctx = TestContext::new();
    standard_hub(&ctx);
    ctx.write_config(COMMENTED);
    ctx.mdl(&["add", "acme/tiny-gpt@v1.0"]).success().stderr_has("Added");
    let config = ctx.read_str("config.yaml");
    assert!(
        config.contains("# Models for the demo service.")
            && config.contains("# keep: used by the API")
            && config.contains("# where models go"),
        "{config}"
    );
    assert!(config.contains("    - \"acme/tiny-gpt@v1.0\"\n"), "{config}");
    assert!(ctx.read_str("models.lock").contains("name = \"acme/tiny-gpt\""));
    // An id that does not resolve leaves config and lock as they were.
    let (config, lock) = (ctx.read("config.yaml"), ctx.read("models.lock"));
    ctx.mdl(&["add", "acme/nope"])
        .failure(1)
        .snap("add_unknown_repo_restores_config")
        .stderr_has("no repository `acme/nope`");
    assert_eq!(ctx.read("config.yaml"), config);
    assert_eq!(ctx.read("models.lock"), lock);
}

#[test]
fn remove_takes_the_model_out_of_config_lock_disk_and_registry() {
    let ctx = TestContext::new();
    standard_hub(&ctx);
    ctx.write_config(STANDARD_CONFIG);
    ctx.mdl(&["sync", "--no-verify"]).success();
    let registry = ctx.json("models/model_registry.json");
    assert_eq!(registry["models"]["custom_model"]["source"], "url");
    assert_eq!(
        registry["models"]["acme/tiny-bert"]["files"].as_array().unwrap().len(),
        3
    );
    ctx.mdl(&["remove", "custom_model"]).success();
    let config = ctx.read_str("config.yaml");
    assert!(
        !config.contains("custom_model") && !config.contains("model.pt"),
        "{config}"
    );
    assert!(
        config.contains("# a Hub repo, default revision main"),
        "comments kept: {config}"
    );
    assert!(!ctx.read_str("models.lock").contains("custom_model"));
    assert!(!ctx.models().join("url_custom_model").exists());
    let registry = ctx.json("models/model_registry.json");
    let names: Vec<&String> = registry["models"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["acme/tiny-bert", "acme/tiny-gpt"]);
    // The rest is still a consistent, synced project.
    ctx.hub.clear_requests();
    ctx.mdl(&["sync", "--locked", "--no-verify"]).success();
    assert!(ctx.requests().is_empty());
}

#[test]
fn clean_deletes_only_what_no_locked_model_references() {
    let ctx = TestContext::new();
    standard_hub(&ctx);
    ctx.write_config(STANDARD_CONFIG);
    ctx.mdl(&["sync", "--no-verify"]).success();
    std::fs::create_dir_all(ctx.models().join("url_old_thing")).unwrap();
    std::fs::write(ctx.models().join("url_old_thing/old.pt"), b"old").unwrap();
    std::fs::write(ctx.models().join("huggingface_acme--tiny-bert/stray.bin"), b"stray").unwrap();
    std::fs::write(ctx.models().join("NOTES.md"), b"the user's own file").unwrap();
    let locked_before: Vec<(String, Vec<u8>)> = ctx
        .snapshot()
        .into_iter()
        .filter(|(p, _)| p.starts_with("models/") && !p.contains("stray") && !p.contains("old"))
        .collect();
    let dry = ctx.mdl(&["clean", "--dry-run"]).success().stderr();
    assert!(
        dry.contains("Would remove url_old_thing") && dry.contains("huggingface_acme--tiny-bert/stray.bin"),
        "{dry}"
    );
    assert!(
        ctx.models().join("url_old_thing/old.pt").exists(),
        "dry run deletes nothing"
    );
    ctx.mdl(&["clean"]).success();
    assert!(!ctx.models().join("url_old_thing").exists());
    assert!(!ctx.models().join("huggingface_acme--tiny-bert/stray.bin").exists());
    assert!(
        ctx.models().join("NOTES.md").exists(),
        "files that are not mdl's are left alone"
    );
    for (path, bytes) in locked_before {
        assert_eq!(ctx.read(&path), bytes, "{path} must survive clean");
    }
}

#[test]
fn du_and_config_report() {
    let ctx = TestContext::new();
    standard_hub(&ctx);
    ctx.write_config(STANDARD_CONFIG);
    ctx.mdl(&["sync", "--no-verify"]).success();
    let du: serde_json::Value = serde_json::from_str(&ctx.mdl(&["du", "--json"]).success().stdout()).unwrap();
    assert_eq!(
        du["models"]["custom_model"].as_u64().unwrap() as usize,
        STATE_DICT.len() + ctx.read("models/url_custom_model/model_info.json").len()
    );
    assert!(du["total"].as_u64().unwrap() > du["models"]["custom_model"].as_u64().unwrap());
    let config = ctx.mdl(&["config"]).success().stdout();
    assert!(
        config.contains("concurrency: 8")
            && config.contains("cache_dir: models/")
            && config.contains("timeout_seconds: 300"),
        "{config}"
    );
}

#[test]
fn init_add_sync_json_as_a_new_user_would() {
    let ctx = TestContext::new();
    standard_hub(&ctx);
    ctx.mdl(&["init"]).success().stderr_has("Created");
    ctx.mdl(&["init"]).failure(2).stderr_has("already exists");
    ctx.mdl(&["add", "acme/tiny-bert"]).success();
    assert!(
        ctx.read_str("config.yaml").contains("# The models this project wants"),
        "comments kept"
    );
    let sync: serde_json::Value = serde_json::from_str(&ctx.mdl(&["sync", "--json"]).success().stdout()).unwrap();
    assert_eq!(sync["version"], 1);
    assert_eq!(sync["command"], "sync");
    assert_eq!(sync["models"][0]["name"], "acme/tiny-bert");
    assert_eq!(sync["models"][0]["status"], "verified");
    let lock: serde_json::Value = serde_json::from_str(&ctx.mdl(&["lock", "--json"]).success().stdout()).unwrap();
    assert_eq!(
        (lock["command"].as_str(), lock["written"].as_bool()),
        (Some("lock"), Some(false))
    );
    std::fs::remove_file(ctx.models().join("huggingface_acme--tiny-bert/config.json")).unwrap();
    let plan: serde_json::Value =
        serde_json::from_str(&ctx.mdl(&["sync", "--dry-run", "--json"]).success().stdout()).unwrap();
    assert_eq!(plan["fetch"][0]["path"], "config.json");
    assert_eq!(plan["fetch"][0]["reason"], "missing");
    let verify: serde_json::Value = serde_json::from_str(&ctx.mdl(&["verify", "--json"]).success().stdout()).unwrap();
    assert_eq!(verify["models"][0]["status"], "verified");
    assert_eq!(verify["models"][0]["remembered"], false, "verify reloads");
}

#[test]
fn completions_and_the_schema_are_printed() {
    let ctx = TestContext::new();
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let out = ctx.mdl(&["completions", shell]).success().stdout();
        assert!(out.contains("sync") && out.len() > 500, "{shell}");
    }
    let schema: serde_json::Value = serde_json::from_str(&ctx.mdl(&["schema"]).success().stdout()).unwrap();
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.schema.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(schema, committed);
}
