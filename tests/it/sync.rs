//! `mdl sync`: placement, no-op, offline, mirror quirks, integrity.

use crate::common::*;

#[test]
fn sync_places_models_with_info_and_registry() {
    let ctx = TestContext::new();
    standard_hub(&ctx);
    ctx.write_config(STANDARD_CONFIG);
    ctx.mdl(&["sync", "--no-verify"]).success();
    assert_eq!(
        ctx.read("models/huggingface_acme--tiny-bert/model.safetensors"),
        SAFETENSORS
    );
    assert_eq!(
        ctx.read("models/huggingface_acme--tiny-bert/tokenizer/vocab.txt"),
        b"[PAD]\n[UNK]\nhello\n"
    );
    assert_eq!(ctx.read("models/url_custom_model/model.pt"), STATE_DICT);
    assert!(
        !ctx.models().join("huggingface_acme--tiny-gpt/onnx").exists(),
        "include filter"
    );
    let info = ctx.json("models/huggingface_acme--tiny-gpt/model_info.json");
    assert_eq!(info["name"], "acme/tiny-gpt");
    assert_eq!(info["revision"], "v1.0");
    assert_eq!(info["path"], "huggingface_acme--tiny-gpt");
    let registry = ctx.json("models/model_registry.json");
    let names: Vec<&String> = registry["models"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["acme/tiny-bert", "acme/tiny-gpt", "custom_model"]);
    // No temporary files are left behind.
    let tmp = ctx.models().join(".mdl/tmp");
    assert_eq!(std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0), 0);
}

#[test]
fn noop_sync_makes_no_request_and_changes_nothing() {
    let ctx = TestContext::new();
    standard_hub(&ctx);
    ctx.write_config(STANDARD_CONFIG);
    ctx.mdl(&["sync"]).success();
    let before = ctx.snapshot();
    ctx.hub.clear_requests();
    ctx.mdl(&["sync"]).success();
    assert!(ctx.requests().is_empty(), "{:?}", ctx.requests());
    assert_same(&before, &ctx.snapshot(), "snapshot");
}

#[test]
fn missing_or_changed_files_are_fetched_again() {
    let ctx = TestContext::new();
    standard_hub(&ctx);
    ctx.write_config(STANDARD_CONFIG);
    ctx.mdl(&["sync", "--no-verify"]).success();
    std::fs::remove_file(ctx.models().join("huggingface_acme--tiny-bert/config.json")).unwrap();
    std::fs::remove_file(ctx.models().join("url_custom_model/model.pt")).unwrap();
    std::fs::write(ctx.models().join("url_custom_model/model.pt"), b"tampered").unwrap();
    // The engine is what is tested here, not the shared store.
    ctx.clear_shared_store();
    let plan = ctx.mdl(&["sync", "--dry-run"]).success().stdout();
    assert!(
        plan.contains("huggingface_acme--tiny-bert/config.json  (25 B, missing)") || plan.contains("config.json"),
        "{plan}"
    );
    assert!(plan.contains("url_custom_model/model.pt"), "{plan}");
    assert!(plan.contains("changed"), "{plan}");
    ctx.hub.clear_requests();
    ctx.mdl(&["sync", "--no-verify"]).success();
    assert_eq!(ctx.body_requests().len(), 2, "{:?}", ctx.body_requests());
    assert_eq!(ctx.read("models/url_custom_model/model.pt"), STATE_DICT);
}

#[test]
fn offline_syncs_from_disk_and_refuses_downloads() {
    let ctx = TestContext::new();
    standard_hub(&ctx);
    ctx.write_config(STANDARD_CONFIG);
    ctx.mdl(&["sync", "--no-verify"]).success();
    ctx.hub.clear_requests();
    ctx.mdl(&["sync", "--offline", "--no-verify"]).success();
    std::fs::remove_file(ctx.models().join("huggingface_acme--tiny-bert/config.json")).unwrap();
    ctx.mdl(&["sync", "--offline", "--no-verify"])
        .failure(1)
        .snap("sync_offline_needs_download")
        .stderr_has("`acme/tiny-bert/config.json` must be downloaded, but mdl is offline");
    // HF_HUB_OFFLINE means the same, as in the Python client.
    let mut ctx = ctx;
    ctx.env.push(("HF_HUB_OFFLINE".into(), "1".into()));
    ctx.mdl(&["sync", "--no-verify"])
        .failure(1)
        .snap("sync_hf_hub_offline_needs_download")
        .stderr_has("offline");
    ctx.write_config(&STANDARD_CONFIG.replace("tiny-gpt@v1.0", "tiny-gpt@main"));
    ctx.mdl(&["sync", "--no-verify"])
        .failure(2)
        .snap("sync_offline_stale_lock")
        .stderr_has("`--offline` forbids resolving models");
    assert!(ctx.requests().is_empty(), "{:?}", ctx.requests());
}

#[test]
fn hash_mismatch_keeps_the_good_file() {
    let ctx = TestContext::new();
    standard_hub(&ctx);
    ctx.write_config(STANDARD_CONFIG);
    ctx.mdl(&["sync", "--no-verify"]).success();
    // The lock now claims other content than upstream serves (a tampered upstream).
    let lock = ctx
        .read_str("models.lock")
        .replace(&blake3_hex(STATE_DICT), &blake3_hex(b"something else"));
    std::fs::write(ctx.path().join("models.lock"), lock).unwrap();
    let good = ctx.read("models/url_custom_model/model.pt");
    ctx.mdl(&["sync", "--no-verify"])
        .failure(1)
        .snap("sync_lock_blake3_mismatch")
        .stderr_has("does not match its blake3");
    assert_eq!(
        ctx.read("models/url_custom_model/model.pt"),
        good,
        "the previous good file is untouched"
    );
    let tmp = ctx.models().join(".mdl/tmp");
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "the temporary file is removed"
    );
}

#[test]
fn mirror_quirks_are_handled() {
    for quirk in [
        "no_content_length",
        "ignore_range",
        "metadata_only_on_head",
        "lfs_redirect",
    ] {
        let ctx = TestContext::new();
        standard_hub(&ctx);
        ctx.hub.update_behaviour(|b| match quirk {
            "no_content_length" => b.no_content_length = true,
            "ignore_range" => b.ignore_range = true,
            "metadata_only_on_head" => b.metadata_only_on_head = true,
            _ => b.lfs_redirect = true,
        });
        ctx.write_config(STANDARD_CONFIG);
        ctx.mdl(&["sync", "--no-verify"]).success();
        assert_eq!(
            ctx.read("models/huggingface_acme--tiny-bert/model.safetensors"),
            SAFETENSORS,
            "{quirk}"
        );
        assert_eq!(ctx.read("models/url_custom_model/model.pt"), STATE_DICT, "{quirk}");
    }
}

#[test]
fn retries_after_503_with_retry_after() {
    let ctx = TestContext::new();
    standard_hub(&ctx);
    ctx.write_config("models:\n  require: [\"url:{hub}/files/w/model.pt\"]\n");
    ctx.hub.update_behaviour(|b| {
        b.fail_next = 2;
        b.retry_after = Some(1);
    });
    let started = std::time::Instant::now();
    ctx.mdl(&["sync", "--no-verify"]).success().stderr_has("Retrying");
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(2),
        "Retry-After was honoured"
    );
    let statuses: Vec<u16> = ctx.body_requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 503, 200]);
}

#[test]
fn a_broken_connection_resumes_with_range() {
    let ctx = TestContext::new();
    let big = hub_emulator::pseudo_random_bytes(11, 3 << 20);
    ctx.hub
        .commit("acme/big", "main", vec![("weights.bin", Some(Blob::lfs(big.clone())))]);
    ctx.hub.update_behaviour(|b| {
        b.cut_next = 1;
        b.cut_after = 1 << 20;
    });
    ctx.write_config("models:\n  require: [acme/big]\n");
    ctx.mdl(&["sync", "--no-verify"]).success();
    assert_eq!(ctx.read("models/huggingface_acme--big/weights.bin"), &big[..]);
    let ranges: Vec<Option<String>> = ctx.body_requests().into_iter().map(|r| r.range).collect();
    assert_eq!(ranges, [None, Some(format!("bytes={}-", 1 << 20))]);
}

#[test]
fn a_stalled_connection_is_retried() {
    let ctx = TestContext::new();
    let big = hub_emulator::pseudo_random_bytes(12, 2 << 20);
    ctx.hub
        .commit("acme/big", "main", vec![("weights.bin", Some(Blob::lfs(big.clone())))]);
    ctx.hub.update_behaviour(|b| {
        b.stall_next = 1;
        b.stall_after = 512 * 1024;
    });
    ctx.write_config("models:\n  require: [acme/big]\n  download:\n    stall_timeout_seconds: 1\n");
    ctx.mdl(&["sync", "--no-verify"]).success().stderr_has("stalled");
    assert_eq!(ctx.read("models/huggingface_acme--big/weights.bin"), &big[..]);
}

#[test]
fn ci_progress_is_plain_lines() {
    let ctx = TestContext::new();
    standard_hub(&ctx);
    ctx.write_config(STANDARD_CONFIG);
    let run = ctx.mdl(&["sync", "--no-verify"]).success();
    let err = run.stderr();
    assert!(
        err.contains(" Downloading acme/tiny-bert/model.safetensors (1.1 KiB)"),
        "{err}"
    );
    assert!(
        !err.contains('\r') && !err.contains("\x1b["),
        "no bar redraws in CI logs: {err:?}"
    );
    let quiet = ctx.mdl(&["sync", "-q", "--force", "--no-verify"]).success();
    assert_eq!(quiet.stderr(), "", "-q prints nothing on success");
}

#[test]
fn frozen_never_resolves_and_never_downloads() {
    let ctx = TestContext::new();
    standard_hub(&ctx);
    ctx.write_config(STANDARD_CONFIG);
    ctx.mdl(&["sync", "--no-verify"]).success();
    ctx.hub.clear_requests();
    ctx.mdl(&["sync", "--frozen", "--no-verify"]).success();
    assert!(ctx.requests().is_empty(), "{:?}", ctx.requests());

    std::fs::remove_file(ctx.models().join("huggingface_acme--tiny-bert/config.json")).unwrap();
    ctx.clear_shared_store();
    ctx.mdl(&["sync", "--frozen", "--no-verify"])
        .failure(1)
        .snap("sync_frozen_needs_download")
        .stderr_has("must be downloaded, but mdl is frozen (`--frozen`)");
    ctx.write_config(&STANDARD_CONFIG.replace("tiny-gpt@v1.0", "tiny-gpt@main"));
    ctx.mdl(&["sync", "--frozen", "--no-verify"])
        .failure(2)
        .stderr_has("needs to be updated, but `--frozen` was passed");
    assert!(
        ctx.requests().is_empty(),
        "--frozen made no request: {:?}",
        ctx.requests()
    );
}

/// `models/` replaced by a copy of itself, as `COPY --from` or a restored CI
/// cache makes it: every file gets a new inode.
fn replace_models_with_copy(ctx: &TestContext, cp_flags: &str) {
    let copy = ctx.path().join("models.copy");
    let status = std::process::Command::new("cp")
        .arg(cp_flags)
        .arg(ctx.models())
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::remove_dir_all(ctx.models()).unwrap();
    std::fs::rename(&copy, ctx.models()).unwrap();
}

#[test]
fn a_copied_tree_with_its_times_is_recognised_without_reading_it() {
    let ctx = TestContext::new();
    standard_hub(&ctx);
    ctx.write_config(STANDARD_CONFIG);
    ctx.mdl(&["sync", "--no-verify"]).success();
    replace_models_with_copy(&ctx, "-a");
    let before = ctx.requests().len();
    let run = ctx.mdl(&["sync", "--no-verify", "--json"]).success();
    let out: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(out["hashed"]["files"], 0, "{out}");
    assert_eq!(out["hashed"]["copies_recognised"], out["files"], "{out}");
    assert_eq!(out["fetched"]["files"], 0);
    assert!(!run.stderr().contains("Hashing"), "{}", run.stderr());
    assert_eq!(ctx.requests().len(), before, "a recognised copy makes no request");
    // Recognised once, its new inodes are recorded: the next sync is a plain no-op.
    let out: serde_json::Value =
        serde_json::from_str(&ctx.mdl(&["sync", "--no-verify", "--json"]).success().stdout()).unwrap();
    assert_eq!(out["hashed"]["copies_recognised"], 0, "{out}");
}

#[test]
fn a_copied_tree_without_its_times_is_rehashed_and_says_why() {
    let ctx = TestContext::new();
    standard_hub(&ctx);
    ctx.write_config(STANDARD_CONFIG);
    ctx.mdl(&["sync", "--no-verify"]).success();
    replace_models_with_copy(&ctx, "-r");
    let run = ctx.mdl(&["sync", "--no-verify", "--json"]).success();
    let out: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(out["hashed"]["files"], out["files"], "{out}");
    assert_eq!(
        out["fetched"]["files"], 0,
        "the copy's content is right: nothing is downloaded"
    );
    run.stderr_has("Hashing")
        .stderr_has("thread(s): they were copied without their modification times");
}

/// A no-op sync reads no weight file: what the last sync found (formats,
/// hash-only reasons, verifications) comes from mdl's own state. Counted
/// with strace: the files under `models/` it opens are O(models) (none
/// here), not O(files). And `-q` prints no warning, while a plain no-op
/// does not repeat the hash-only warning the placing sync printed.
#[test]
fn a_noop_sync_opens_no_weight_file_and_quiet_is_quiet() {
    let ctx = TestContext::new();
    for m in 0..3 {
        let files: Vec<(String, Blob)> = (0..40)
            .map(|i| {
                let bytes = hub_emulator::pseudo_random_bytes(m * 100 + i, 3000);
                (format!("w/file_{i:03}.bin"), Blob::regular(bytes))
            })
            .collect();
        let mut changes: Vec<(&str, Option<Blob>)> = files.iter().map(|(p, b)| (p.as_str(), Some(b.clone()))).collect();
        changes.push(("model.safetensors", Some(Blob::lfs(SAFETENSORS))));
        ctx.hub.commit(&format!("acme/m{m}"), "main", changes);
    }
    ctx.write_config("models:\n  require: [acme/m0, acme/m1, acme/m2]\n");
    let first = ctx.mdl(&["sync"]).success();
    assert!(
        first.stderr().contains("warning: some weight files are in formats"),
        "{}",
        first.stderr()
    );
    // Without -q: the status lines, but the warning is not repeated.
    let again = ctx.mdl(&["sync"]).success();
    assert!(again.stderr().contains("Hashed acme/m0"), "{}", again.stderr());
    assert!(!again.stderr().contains("warning"), "{}", again.stderr());

    let trace = ctx.path().join("trace.txt");
    let cmd = ctx.command(&["sync", "-q"]);
    let program = cmd.get_program().to_os_string();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_os_string()).collect();
    let mut strace = std::process::Command::new("strace");
    strace
        .args(["-f", "-qq", "-e", "trace=open,openat,openat2", "-o"])
        .arg(&trace)
        .arg(program)
        .args(args)
        .current_dir(ctx.path());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => strace.env(k, v),
            None => strace.env_remove(k),
        };
    }
    let out = strace.output().expect("strace (scripts/setup installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "-q prints nothing");
    let log = std::fs::read_to_string(&trace).unwrap();
    let opens: Vec<&str> = log.lines().filter(|l| l.contains("open")).collect();
    assert!(opens.len() > 10, "strace saw the run: {log}");
    let models: Vec<&str> = (opens.iter().copied())
        .filter(|l| l.contains("models/") && !l.contains("models/.mdl/") && !l.contains("ENOENT"))
        .collect();
    let weights: Vec<&&str> = models
        .iter()
        .filter(|l| l.contains(".bin") || l.contains(".safetensors"))
        .collect();
    assert_eq!(weights, Vec::<&&str>::new(), "no weight file opened");
    // Per model: its folders (to find files that are not in the lock) and
    // its model_info.json; then the registry. 123 files, 3 models.
    assert!(models.len() <= 6 * 3 + 3, "O(models), not O(files): {models:#?}");
}
