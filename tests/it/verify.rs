//! Verification by loading with libtorch (through the `mdl-torch` helper).

use crate::common::*;

pub(crate) fn verify_hub(ctx: &TestContext) {
    ctx.hub.commit(
        "acme/st",
        "main",
        vec![
            ("config.json", Some(Blob::regular(&b"{}"[..]))),
            ("model.safetensors", Some(Blob::lfs(SAFETENSORS))),
        ],
    );
    ctx.hub.put_file("w/scripted.pt", Blob::regular(SCRIPTED));
    ctx.hub.put_file("w/resnet-tiny.pth", Blob::regular(STATE_DICT));
    ctx.hub.put_file("w/legacy.pth", Blob::regular(LEGACY));
    ctx.hub
        .put_file("w/truncated.pth", Blob::regular(&STATE_DICT[..STATE_DICT.len() / 2]));
    ctx.hub
        .put_file("w/not-a-model.pt", Blob::regular(&b"<html>502 Bad Gateway</html>"[..]));
}

pub(crate) const THREE: &str = r#"
models:
  require:
    - acme/st
    - id: url:{hub}/files/w/scripted.pt
      verify: { forward: [1, 3, 8, 8] }
    - url:{hub}/files/w/resnet-tiny.pth
    - url:{hub}/files/w/legacy.pth
"#;

#[test]
fn torchscript_state_dict_and_safetensors_load_on_cpu() {
    let ctx = TestContext::new();
    verify_hub(&ctx);
    ctx.write_config(THREE);
    let run = ctx.mdl(&["sync"]).success();
    // Which torch did it, and how: here the workspace's (`LIBTORCH`), 2.13,
    // through the libtorch helper.
    assert!(run.stderr().contains("on cpu with torch 2.13"), "{}", run.stderr());
    assert!(run.stderr().contains("through mdl-torch"), "{}", run.stderr());
    let err = run.stderr_without_torch();
    assert!(
        err.contains("Verified acme/st on cpu: 1 weight file(s) [safetensors], 9 tensors"),
        "{err}"
    );
    assert!(err.contains("Verified scripted on cpu: 1 weight file(s) [torchscript (code ran)], 6 tensors, 130 parameters (float32), forward → [1, 2]"), "{err}");
    assert!(
        err.contains(
            "Verified resnet-tiny on cpu: 1 weight file(s) [torch_zip], 9 tensors, 139 parameters (float32, int64)"
        ),
        "{err}"
    );
    assert!(
        err.contains("Verified legacy on cpu: 1 weight file(s) [torch_legacy], 9 tensors"),
        "{err}"
    );
    let info = ctx.json("models/url_resnet-tiny/model_info.json");
    let v = &info["verification"];
    assert_eq!(v["status"], "verified");
    assert_eq!(v["files"]["resnet-tiny.pth"]["loaded"], true);
    assert_eq!(
        v["files"]["resnet-tiny.pth"]["dtypes"],
        serde_json::json!(["float32", "int64"])
    );
    // Remembered: the next sync does not load again.
    let again = ctx.mdl(&["sync"]).success().stderr();
    assert_eq!(again.matches("(remembered)").count(), 4, "{again}");
    // `mdl verify` loads again on demand.
    let verify = ctx.mdl(&["verify", "resnet-tiny"]).success().stderr();
    assert!(
        verify.contains("Verified resnet-tiny") && verify.contains(" ms"),
        "{verify}"
    );
}

#[test]
fn a_truncated_upstream_file_fails_and_is_retried_next_sync() {
    let ctx = TestContext::new();
    verify_hub(&ctx);
    ctx.write_config(
        "models:\n  require: [\"url:{hub}/files/w/truncated.pth\", \"url:{hub}/files/w/not-a-model.pt\"]\n",
    );
    let first = ctx
        .mdl(&["sync"])
        .failure(1).snap("sync_models_fail_to_load")
        .stderr_has("2 model(s) failed verification")
        .stderr_has("model `truncated` failed verification: `truncated.pth` cannot be loaded: the zip archive is unreadable")
        .stderr_has("model `not-a-model` failed verification: `not-a-model.pt` cannot be loaded: `.pt` file of unknown format: it starts with text");
    let _ = first;
    // The download itself was fine (hash matches the lock): the files stay, and
    // the failure is not remembered.
    assert!(ctx.models().join("url_truncated/truncated.pth").exists());
    let info = ctx.json("models/url_truncated/model_info.json");
    assert_eq!(info["verification"]["status"], "failed");
    ctx.mdl(&["sync"])
        .failure(1)
        .snap("sync_models_fail_to_load_again")
        .stderr_has("model `truncated` failed verification");
    ctx.mdl(&["sync", "--no-verify"]).success();
}

#[test]
fn cuda_without_a_gpu_is_a_clear_error() {
    let ctx = TestContext::new();
    verify_hub(&ctx);
    ctx.write_config("device: cuda\nmodels:\n  require: [acme/st]\n");
    ctx.mdl(&["sync"])
        .failure(1)
        .snap("sync_cuda_unavailable")
        .stderr_has("libtorch sees no CUDA device, but `device: cuda` was asked for")
        .stderr_has("write `device: cpu`");
    // `auto` falls back to CPU by definition.
    ctx.write_config("device: auto\nmodels:\n  require: [acme/st]\n");
    ctx.mdl(&["sync"]).success().stderr_has("Verified acme/st on auto");
}

fn sharded_hub(ctx: &TestContext, index_extra: &str) {
    let index = format!(
        r#"{{"metadata": {{"total_size": 1}}, "weight_map": {{"conv.weight": "model-00001-of-00002.safetensors", "fc.weight": "model-00002-of-00002.safetensors"{index_extra}}}}}"#
    );
    ctx.hub.commit(
        "acme/sharded",
        "main",
        vec![
            ("config.json", Some(Blob::regular(&b"{}"[..]))),
            ("model.safetensors.index.json", Some(Blob::regular(index.into_bytes()))),
            ("model-00001-of-00002.safetensors", Some(Blob::lfs(SAFETENSORS))),
            ("model-00002-of-00002.safetensors", Some(Blob::lfs(SAFETENSORS))),
        ],
    );
}

#[test]
fn a_filter_that_drops_a_shard_is_refused() {
    let ctx = TestContext::new();
    sharded_hub(&ctx, "");
    ctx.write_config("models:\n  require:\n    - id: acme/sharded\n      include: [\"*.json\", \"model-00001-*\"]\n");
    ctx.mdl(&["sync"])
        .failure(2)
        .snap("sync_shard_dropped_by_filter")
        .stderr_has("`model.safetensors.index.json` names the shard `model-00002-of-00002.safetensors`")
        .stderr_has("`include: [\"*.json\", \"model-00001-*\"]` leaves out");
    // With every shard, the model verifies.
    ctx.write_config("models:\n  require: [acme/sharded]\n");
    let run = ctx.mdl(&["sync"]).success();
    assert!(
        run.stderr_without_torch()
            .contains("Verified acme/sharded on cpu: 2 weight file(s)"),
        "{}",
        run.stderr()
    );
}

#[test]
fn an_index_naming_a_tensor_its_shard_lacks_is_refused() {
    let ctx = TestContext::new();
    sharded_hub(&ctx, r#", "lm_head.weight": "model-00002-of-00002.safetensors""#);
    ctx.write_config("models:\n  require: [acme/sharded]\n");
    ctx.mdl(&["sync", "--no-verify"])
        .failure(1)
        .stderr_has("puts the tensor `lm_head.weight` in `model-00002-of-00002.safetensors`, which does not hold it");
}

/// An 8-shard model (each shard the fixture's safetensors; shard
/// completeness against an index is covered by the tests above).
fn eight_shards(ctx: &TestContext) {
    let names: Vec<String> = (1..=8).map(|i| format!("model-{i:05}-of-00008.safetensors")).collect();
    let mut files: Vec<(&str, Option<Blob>)> = names
        .iter()
        .map(|n| (n.as_str(), Some(Blob::lfs(SAFETENSORS))))
        .collect();
    files.push(("config.json", Some(Blob::regular(&b"{}"[..]))));
    ctx.hub.commit("acme/llm", "main", files);
}

#[test]
fn a_sharded_model_verifies_in_parallel_within_a_budget_smaller_than_itself() {
    let ctx = TestContext::new();
    eight_shards(&ctx);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    // Each shard's largest tensor is 432 bytes: 900 bytes let two helpers run
    // at once; the model itself (8 × 1.1 KiB) is larger than the budget.
    ctx.write_config("verify: { max_memory: 900 }\nmodels:\n  require: [acme/llm]\n");
    let run = ctx.mdl(&["sync", "-v"]).success();
    let want = format!(
        "8 weight file(s) with {} libtorch helper(s) in parallel, within 900 B",
        cores.min(2)
    );
    assert!(run.stderr().contains(&want), "{want}\n{}", run.stderr());
    assert!(
        run.stderr_without_torch()
            .contains("Verified acme/llm on cpu: 8 weight file(s)"),
        "{}",
        run.stderr()
    );

    // A budget for one tensor at a time: one helper, and it still verifies.
    ctx.write_config("verify: { max_memory: 500 }\nmodels:\n  require: [acme/llm]\n");
    let run = ctx.mdl(&["verify", "-v"]).success();
    assert!(run.stderr().contains("with 1 libtorch helper(s)"), "{}", run.stderr());
}

#[test]
fn a_tensor_larger_than_the_budget_is_refused_naming_it() {
    let ctx = TestContext::new();
    eight_shards(&ctx);
    ctx.write_config("verify: { max_memory: 100B }\nmodels:\n  require: [acme/llm]\n");
    ctx.mdl(&["sync"])
        .failure(2)
        .snap("sync_tensor_over_budget")
        .stderr_has("its tensor `conv.weight` is 432 B, and `verify.max_memory` is 100 B")
        .stderr_has("max_memory");
}

/// A `torch.save`-shaped archive whose pickle is a memo bomb: a few hundred
/// bytes that would expand to 2^40 values.
fn memo_bomb_pt() -> Vec<u8> {
    let mut pickle = vec![0x80, 2, b']', b'q', 0];
    for i in 0..40u8 {
        pickle.extend([b'(', b'h', i, b'h', i, b'l', b'q', i + 1]);
    }
    pickle.push(b'.');
    torch_zip(&pickle)
}

/// A `torch.save` archive around `pickle`, stored uncompressed.
pub(crate) fn torch_zip(pickle: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", options).unwrap();
    zip.write_all(pickle).unwrap();
    zip.start_file("archive/version", options).unwrap();
    zip.write_all(b"3\n").unwrap();
    zip.finish().unwrap().into_inner()
}

#[test]
fn a_memo_bomb_is_a_malformed_pickle_not_a_crash() {
    let ctx = TestContext::new();
    let bomb = memo_bomb_pt();
    assert!(bomb.len() < 1024, "{} bytes", bomb.len());
    ctx.hub.put_file("w/bomb.pt", Blob::regular(bomb));
    ctx.write_config("models:\n  require:\n    - id: url:{hub}/files/w/bomb.pt\n      name: bomb\n");
    let started = std::time::Instant::now();
    let run = ctx
        .mdl(&["sync"])
        .failure(1)
        .stderr_has("its pickle cannot be read")
        .stderr_has("more than 256 MiB of values");
    assert!(!run.stderr().contains("libtorch crashed"), "{}", run.stderr());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

/// A pickle of lists nested a million deep (2 MB): once a stack overflow
/// that aborted mdl, now an error naming the file.
#[test]
fn a_pickle_nested_a_million_deep_is_an_error_not_an_abort() {
    let ctx = TestContext::new();
    let depth = 1_000_000;
    let mut pickle = vec![0x80, 2];
    pickle.extend(std::iter::repeat_n(b']', depth));
    pickle.extend(std::iter::repeat_n(b'a', depth - 1));
    pickle.push(b'.');
    ctx.hub.put_file("w/deep.pt", Blob::regular(torch_zip(&pickle)));
    ctx.write_config("models:\n  require:\n    - id: url:{hub}/files/w/deep.pt\n      name: deep\n");
    let run = ctx
        .mdl(&["sync"])
        .failure(1)
        .stderr_has("its pickle cannot be read")
        .stderr_has("nest more than 1000 deep");
    assert!(!run.stderr().contains("libtorch crashed"), "{}", run.stderr());
}

#[test]
fn device_overrides_the_config_for_one_run() {
    let ctx = TestContext::new();
    verify_hub(&ctx);
    ctx.write_config("device: cuda\nmodels:\n  require: [acme/st]\n");
    ctx.mdl(&["sync", "--device", "cpu"])
        .success()
        .stderr_has("Verified acme/st on cpu");
    ctx.mdl(&["verify", "--device", "cpu"]).success().stderr_has("on cpu");
    ctx.mdl(&["verify"])
        .failure(1)
        .stderr_has("libtorch sees no CUDA device");
}

/// A fake `torch` package of another version (what `pip install torch==2.5.1` leaves).
fn other_torch(ctx: &TestContext) -> std::path::PathBuf {
    let torch = ctx.path().join("other-venv/torch");
    std::fs::create_dir_all(torch.join("lib")).unwrap();
    std::fs::write(torch.join("version.py"), "__version__ = '2.5.1+cpu'\n").unwrap();
    torch
}

#[test]
fn the_verifier_finds_libtorch_at_run_time_and_refuses_another_version() {
    let mut ctx = TestContext::new();
    verify_hub(&ctx);
    ctx.write_config("models:\n  require: [acme/st]\n");
    // The project's own torch, named explicitly: used from there.
    let real = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/lib/python3.11/site-packages/torch");
    ctx.env
        .push(("MDL_LIBTORCH".into(), real.to_string_lossy().into_owned()));
    ctx.mdl(&["sync"]).success().stderr_has("Verified acme/st on cpu");

    ctx.env.clear();
    ctx.env
        .push(("MDL_LIBTORCH".into(), other_torch(&ctx).to_string_lossy().into_owned()));
    ctx.mdl(&["verify"])
        .failure(2)
        .stderr_has("is version 2.5.1+cpu, but mdl-torch was built for 2.13")
        .stderr_has("`pip install torch==2.13.0`");
    let doctor = ctx.mdl(&["doctor"]).failure(1);
    assert!(doctor.stderr().contains("PROBLEM libtorch"), "{}", doctor.stderr());
}

#[test]
fn doctor_explains_an_unreachable_endpoint_and_changes_nothing() {
    let mut ctx = TestContext::new();
    verify_hub(&ctx);
    ctx.write_config("models:\n  require: [acme/st]\n");
    ctx.mdl(&["sync"]).success();
    let before = ctx.snapshot();
    let report: serde_json::Value = serde_json::from_str(&ctx.mdl(&["doctor", "--json"]).success().stdout()).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    ctx.env.push(("HF_ENDPOINT".into(), "http://127.0.0.1:9".into()));
    let run = ctx.mdl(&["doctor"]).failure(1);
    assert!(
        run.stderr()
            .contains("PROBLEM endpoint `http://127.0.0.1:9` is unreachable"),
        "{}",
        run.stderr()
    );
    assert!(run.stderr().contains("no Hub token"), "{}", run.stderr());
    assert_same(&before, &ctx.snapshot(), "doctor changes nothing");
}

/// Finding libtorch may ask Python; a sync whose verifications are all
/// remembered loads nothing and must not pay for it (it once cost a no-op
/// sync 30 ms).
#[test]
fn a_noop_sync_does_not_look_for_libtorch() {
    let mut ctx = TestContext::new();
    verify_hub(&ctx);
    ctx.write_config("models:\n  require:\n    - acme/st\n");
    // A `python3` that notes each run and knows no torch.
    let bin = ctx.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let marker = ctx.path().join("python-ran");
    std::fs::write(
        bin.join("python3"),
        format!("#!/bin/sh\necho run >> '{}'\nexit 1\n", marker.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(bin.join("python3"), std::fs::Permissions::from_mode(0o755)).unwrap();
    ctx.env.push((
        "PATH".into(),
        format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
    ));
    let run = |ctx: &TestContext| {
        ctx.command(&["sync"])
            .env_remove("MDL_LIBTORCH")
            .env_remove("LIBTORCH")
            .env_remove("VIRTUAL_ENV")
            .output()
            .unwrap()
    };
    assert!(run(&ctx).status.success());
    assert!(
        marker.exists(),
        "the first sync loads the model, so it looks for libtorch"
    );
    std::fs::remove_file(&marker).unwrap();
    assert!(run(&ctx).status.success());
    assert!(!marker.exists(), "a no-op sync looked for libtorch");
}

/// The hostile module served at `w/hostile.pt`, and a victim file beside
/// the project that its `__setstate__` would overwrite.
pub(crate) fn hostile_script(ctx: &TestContext, verify: &str) {
    ctx.hub.put_file("w/hostile.pt", Blob::regular(HOSTILE_SCRIPT));
    std::fs::write(ctx.path().join("hostile-victim.bin"), b"ORIGINAL").unwrap();
    ctx.write_config(&format!(
        "models:\n  require:\n    - id: url:{{hub}}/files/w/hostile.pt\n      name: hostile\n{verify}"
    ));
}

#[test]
fn a_torchscript_file_is_verified_without_running_its_code() {
    let ctx = TestContext::new();
    hostile_script(&ctx, "");
    let run = ctx.mdl(&["sync"]).success();
    assert_eq!(
        ctx.read("hostile-victim.bin"),
        b"ORIGINAL",
        "nothing ran: {}",
        run.stderr()
    );
    let err = run.stderr_without_torch();
    assert!(
        err.contains("Verified hostile on cpu: 1 weight file(s) [torchscript (structure and weights; code not run)], 1 tensors, 8 parameters (float32)"),
        "{err}"
    );
    // The scripted fixture's weights, buffers included, read the same way.
    let ctx = TestContext::new();
    verify_hub(&ctx);
    ctx.write_config("models:\n  require:\n    - url:{hub}/files/w/scripted.pt\n");
    let err = ctx.mdl(&["sync"]).success().stderr_without_torch();
    assert!(
        err.contains("Verified scripted on cpu: 1 weight file(s) [torchscript (structure and weights; code not run)], 9 tensors, 139 parameters (float32, int64)"),
        "{err}"
    );
}

#[test]
fn run_code_in_config_yaml_loads_the_module_and_says_its_code_ran() {
    let ctx = TestContext::new();
    hostile_script(&ctx, "      verify: { run_code: true }\n");
    let err = ctx.mdl(&["sync"]).success().stderr_without_torch();
    assert_eq!(
        ctx.read("hostile-victim.bin"),
        b"XXXXXXXX",
        "the module's own code ran, as asked"
    );
    assert!(err.contains("[torchscript (code ran)]"), "{err}");
}

/// `torch.export` programs (`.pt2`), made by torch (scripts/make-export-fixtures.py).
pub(crate) fn export_hub(ctx: &TestContext) {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for name in [
        "exported",
        "exported_dynamic",
        "exported_writes",
        "exported_oversized",
        "exported_truncated",
        "exported_torch213",
        "exported_writes_torch213",
        "exported_aoti",
    ] {
        let bytes = std::fs::read(fixtures.join(format!("{name}.pt2"))).unwrap();
        ctx.hub.put_file(&format!("w/{name}.pt2"), Blob::regular(bytes));
    }
    std::fs::write(ctx.path().join("export-victim.bin"), b"ORIGINAL").unwrap();
}

/// A `.pt2` is detected by its contents and verified by its structure: the
/// program's signature and every weight loaded from its record, the graph
/// never run, not even the one that would write a file.
#[test]
fn a_torch_export_program_is_verified_by_structure_and_never_run() {
    let ctx = TestContext::new();
    export_hub(&ctx);
    ctx.write_config(
        "models:\n  require:\n    - url:{hub}/files/w/exported.pt2\n    - url:{hub}/files/w/exported_dynamic.pt2\n    - url:{hub}/files/w/exported_writes.pt2\n    - url:{hub}/files/w/exported_torch213.pt2\n    - url:{hub}/files/w/exported_writes_torch213.pt2\n",
    );
    let err = ctx.mdl(&["sync"]).success().stderr_without_torch();
    assert!(
        err.contains("Verified exported on cpu: 1 weight file(s) [torch.export (structure and weights; graph not run: 1 program(s), 4 input(s) (1 from the user), 1 output(s))], 3 tensors, 12 parameters (float32)"),
        "{err}"
    );
    assert!(err.contains("Verified exported_dynamic on cpu"), "{err}");
    assert!(err.contains("Verified exported_writes on cpu"), "{err}");
    // As torch 2.13 writes them too.
    assert!(
        err.contains("Verified exported_torch213 on cpu: 1 weight file(s) [torch.export (structure and weights; graph not run: 1 program(s), 4 input(s) (1 from the user), 1 output(s))], 3 tensors, 12 parameters (float32)"),
        "{err}"
    );
    assert!(err.contains("Verified exported_writes_torch213 on cpu"), "{err}");

    // An AOTInductor package: described from its structure, never loaded.
    ctx.write_config("models:\n  require:\n    - url:{hub}/files/w/exported_aoti.pt2\n");
    let err = ctx.mdl(&["sync"]).success().stderr_without_torch();
    assert!(
        err.contains("AOTInductor package for cpu linux x86_64")
            && err.contains("1 compiled library (native code, not loaded)"),
        "{err}"
    );
    assert_eq!(ctx.read("export-victim.bin"), b"ORIGINAL", "nothing ran");

    // mdl-torch cannot run a program (no binding in tch): it says what can.
    ctx.write_config(
        "models:\n  require:\n    - id: url:{hub}/files/w/exported.pt2\n      verify: { run_code: true }\n",
    );
    ctx.mdl(&["sync"]).failure(1).stderr_has("MDL_VERIFIER=python");
}

#[test]
fn hostile_and_truncated_torch_export_archives_fail_by_name() {
    let ctx = TestContext::new();
    export_hub(&ctx);
    ctx.write_config("models:\n  require:\n    - url:{hub}/files/w/exported_oversized.pt2\n");
    ctx.mdl(&["sync"])
        .failure(1)
        .stderr_has("exported_oversized.pt2")
        .stderr_has("its view needs 32000000 bytes");
    let ctx = TestContext::new();
    export_hub(&ctx);
    ctx.write_config("models:\n  require:\n    - url:{hub}/files/w/exported_truncated.pt2\n");
    ctx.mdl(&["sync"]).failure(1).stderr_has("exported_truncated.pt2");
}
