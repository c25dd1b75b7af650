//! Verification in the torch the user already has: every Python environment
//! named by `MDL_TEST_TORCH_ENVS` (colon-separated venvs, each with a full
//! torch install) loads the same files, through mdl-torch where its version
//! matches and in its own Python otherwise, and the report says which torch
//! did it. Ignored by default: a full torch is ~2.7 GB. `scripts/test` runs it
//! with the Python tests' venv (torch 2.15); `scripts/test-torch-versions`
//! with 2.9, 2.13 and 2.15.

use std::path::{Path, PathBuf};

use crate::common::*;
use crate::verify::{torch_zip, verify_hub, THREE};

fn envs() -> Vec<PathBuf> {
    let list = std::env::var("MDL_TEST_TORCH_ENVS").unwrap_or_default();
    let envs: Vec<PathBuf> = std::env::split_paths(&list)
        .filter(|p| !p.as_os_str().is_empty())
        .collect();
    assert!(
        !envs.is_empty(),
        "set MDL_TEST_TORCH_ENVS to Python environments with torch (scripts/test-torch-versions makes them)"
    );
    envs
}

/// `2.15.0+cu130`, from the environment's `torch/version.py`.
fn torch_version(venv: &Path) -> String {
    let lib = std::fs::read_dir(venv.join("lib"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(lib.join("site-packages/torch/version.py")).unwrap();
    let line = text.lines().find(|l| l.starts_with("__version__")).unwrap();
    line.split(['\'', '"']).nth(1).unwrap().to_string()
}

/// A context whose `mdl` finds torch only as a user's shell would: through
/// the active virtual environment, not the workspace's `LIBTORCH`.
fn in_env(venv: &Path, verifier: Option<&str>) -> TestContext {
    let mut ctx = TestContext::new();
    ctx.env.push(("VIRTUAL_ENV".into(), venv.display().to_string()));
    ctx.env.push(("LIBTORCH".into(), String::new()));
    ctx.env.push(("MDL_LIBTORCH".into(), String::new()));
    ctx.env.push(("MDL_VERIFIER".into(), verifier.unwrap_or("").into()));
    ctx
}

#[test]
#[ignore = "needs Python environments with a full torch: MDL_TEST_TORCH_ENVS (scripts/test-torch-versions)"]
fn each_torch_verifies_state_dicts_safetensors_and_torchscript_and_says_which() {
    for venv in envs() {
        let version = torch_version(&venv);
        let native = version.starts_with(mdl::verify::libtorch_dir::NEEDED);
        // Automatic choice: mdl-torch where it matches, else this Python; and
        // the Python verifier asked for by name, on every version.
        for forced in [None, Some("python")] {
            let ctx = in_env(&venv, forced);
            verify_hub(&ctx);
            ctx.write_config(THREE);
            let run = ctx.mdl(&["sync", "--json"]).success();
            let via = if native && forced.is_none() {
                "through mdl-torch"
            } else {
                "in Python"
            };
            let with = format!("with torch {version} (VIRTUAL_ENV, {via})");
            let err = run.stderr();
            for line in [
                "Verified acme/st on cpu {with}: 1 weight file(s) [safetensors], 9 tensors, 139 parameters (float32, int64)",
                "Verified scripted on cpu {with}: 1 weight file(s) [torchscript (code ran)], 6 tensors, 130 parameters (float32), forward → [1, 2]",
                "Verified resnet-tiny on cpu {with}: 1 weight file(s) [torch_zip], 9 tensors, 139 parameters (float32, int64)",
                "Verified legacy on cpu {with}: 1 weight file(s) [torch_legacy], 9 tensors, 139 parameters (float32, int64)",
            ] {
                let line = line.replace("{with}", &with);
                assert!(err.contains(&line), "{venv:?} {forced:?}: no `{line}` in\n{err}");
            }
            let json: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
            let models = json["models"].as_array().unwrap();
            assert_eq!(models.len(), 4, "{json}");
            for model in models {
                assert_eq!(model["status"], "verified", "{model}");
                assert_eq!(model["torch"]["version"], version.as_str(), "{model}");
                assert_eq!(model["torch"]["found_by"], "VIRTUAL_ENV");
            }
            // model_info.json keeps which torch did it.
            let info = ctx.json("models/url_scripted/model_info.json");
            assert_eq!(info["verification"]["torch"]["version"], version.as_str());
        }
    }
}

#[test]
#[ignore = "needs Python environments with a full torch: MDL_TEST_TORCH_ENVS (scripts/test-torch-versions)"]
fn truncated_and_hostile_files_fail_by_name_in_every_torch() {
    // A pickle that would run `touch` if it were unpickled by plain pickle.
    let evil = torch_zip(b"cposix\nsystem\n(S'touch PWNED'\ntR.");
    for venv in envs() {
        let ctx = in_env(&venv, Some("python"));
        verify_hub(&ctx);
        ctx.hub.put_file("w/evil.pt", Blob::regular(evil.clone()));
        ctx.hub.put_file(
            "w/cut.safetensors",
            Blob::regular(&SAFETENSORS[..SAFETENSORS.len() - 100]),
        );
        ctx.write_config(
            "models:\n  require:\n    - url:{hub}/files/w/truncated.pth\n    - url:{hub}/files/w/cut.safetensors\n    - url:{hub}/files/w/evil.pt\n",
        );
        let run = ctx.mdl(&["sync"]).failure(1);
        let err = run.stderr();
        assert!(err.contains("`truncated.pth` cannot be loaded"), "{venv:?}: {err}");
        assert!(err.contains("`cut.safetensors` cannot be loaded"), "{venv:?}: {err}");
        assert!(err.contains("`evil.pt` cannot be loaded"), "{venv:?}: {err}");
        // Refused by weights-only loading, and never with torch's advice to
        // turn it off.
        assert!(err.contains("posix.system"), "{venv:?}: {err}");
        assert!(!err.contains("weights_only` set to `False"), "{venv:?}: {err}");
        assert!(!ctx.path().join("models/url_evil/PWNED").exists());
        assert!(!ctx.path().join("PWNED").exists());
        assert!(!err.contains("crashed"), "{err}");
    }
}

/// Loading is not running, in every torch: the hostile TorchScript module
/// (its `__setstate__` overwrites a file) is verified by structure with its
/// weights loaded from a memory map, and `torch.jit.load` runs it only when
/// config.yaml says `run_code: true`.
#[test]
#[ignore = "needs Python environments with a full torch: MDL_TEST_TORCH_ENVS (scripts/test-torch-versions)"]
fn the_python_verifier_runs_no_torchscript_code_unless_config_asks() {
    let envs = envs();
    for venv in &envs {
        let ctx = in_env(venv, Some("python"));
        crate::verify::hostile_script(&ctx, "");
        let err = ctx.mdl(&["sync"]).success().stderr_without_torch();
        assert_eq!(
            ctx.read("hostile-victim.bin"),
            b"ORIGINAL",
            "{venv:?}: nothing ran: {err}"
        );
        assert!(
            err.contains("[torchscript (structure and weights; code not run)], 1 tensors, 8 parameters (float32)"),
            "{venv:?}: {err}"
        );
        let ctx = in_env(venv, Some("python"));
        crate::verify::hostile_script(&ctx, "      verify: { run_code: true }\n");
        let err = ctx.mdl(&["sync"]).success().stderr_without_torch();
        assert_eq!(ctx.read("hostile-victim.bin"), b"XXXXXXXX", "{venv:?}: {err}");
        assert!(err.contains("[torchscript (code ran)]"), "{venv:?}: {err}");
    }
    assert!(!envs.is_empty());
}

/// `.pt2` in every torch: verified by structure without running (the
/// program that writes a file leaves it alone), and run by
/// `torch.export.load` only when config.yaml asks, on zeros shaped as its
/// own example inputs or as `forward` says.
#[test]
#[ignore = "needs Python environments with a full torch: MDL_TEST_TORCH_ENVS (scripts/test-torch-versions)"]
fn the_python_verifier_reads_torch_export_programs_and_runs_them_only_when_asked() {
    let envs = envs();
    for venv in &envs {
        let ctx = in_env(venv, Some("python"));
        crate::verify::export_hub(&ctx);
        ctx.write_config(
            "models:\n  require:\n    - url:{hub}/files/w/exported.pt2\n    - url:{hub}/files/w/exported_writes.pt2\n",
        );
        let err = ctx.mdl(&["sync"]).success().stderr_without_torch();
        assert!(
            err.contains("Verified exported on cpu: 1 weight file(s) [torch.export (structure and weights; graph not run: 1 program(s), 4 input(s) (1 from the user), 1 output(s))], 3 tensors, 12 parameters (float32)"),
            "{venv:?}: {err}"
        );
        assert_eq!(ctx.read("export-victim.bin"), b"ORIGINAL", "{venv:?}: nothing ran");
        let ctx = in_env(venv, Some("python"));
        crate::verify::export_hub(&ctx);
        ctx.write_config(
            "models:\n  require:\n    - id: url:{hub}/files/w/exported_writes.pt2\n      verify: { run_code: true }\n    - id: url:{hub}/files/w/exported_dynamic.pt2\n      verify: { forward: [5, 4] }\n",
        );
        let err = ctx.mdl(&["sync"]).success().stderr_without_torch();
        assert_eq!(
            ctx.read("export-victim.bin"),
            b"XXXXXXXX",
            "{venv:?}: the program ran, as asked: {err}"
        );
        assert!(err.contains("[torch.export (program ran: "), "{venv:?}: {err}");
        assert!(err.contains("forward → [5, 2]"), "{venv:?}: {err}");
    }
    assert!(!envs.is_empty());
}

#[test]
#[ignore = "needs Python environments with a full torch: MDL_TEST_TORCH_ENVS (scripts/test-torch-versions)"]
fn doctor_names_the_torch_it_would_verify_with() {
    for venv in envs() {
        let version = torch_version(&venv);
        let ctx = in_env(&venv, Some("python"));
        ctx.write_config("models:\n  require: []\n");
        let run = ctx.mdl(&["doctor", "--json"]);
        let json: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
        let findings = json["findings"].as_array().unwrap();
        let verifier = findings.iter().find(|f| f["check"] == "verifier").unwrap();
        assert!(
            verifier["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("torch {version} in Python")),
            "{verifier}"
        );
        let devices = findings.iter().find(|f| f["check"] == "devices").unwrap();
        assert_eq!(devices["ok"], true, "{devices}");
    }
}

/// GGUF in every torch: the same tensors load (F32/F16/BF16) and the same
/// quantized blocks are checked by structure, from mdl's one GGUF reader.
#[test]
#[ignore = "needs Python environments with a full torch: MDL_TEST_TORCH_ENVS (scripts/test-torch-versions)"]
fn each_torch_loads_gguf_float_tensors_and_checks_quantized_ones() {
    for venv in envs() {
        let ctx = in_env(&venv, Some("python"));
        crate::gguf::gguf_hub(&ctx);
        ctx.write_config(
            "models:\n  require:\n    - id: acme/tiny-GGUF\n      include: [\"*Q4_K_M.gguf\", \"*F16.gguf\"]\n",
        );
        let err = ctx.mdl(&["sync"]).success().stderr_without_torch();
        assert!(
            err.contains("Verified acme/tiny-GGUF on cpu: 2 weight file(s) [gguf (llama), gguf (llama)], 7 tensors, 2024 parameters (Q4_K (quantized: structure only), Q6_K (quantized: structure only), bfloat16, float16, float32)"),
            "{venv:?}: {err}"
        );
        let info = ctx.json("models/huggingface_acme--tiny-GGUF/model_info.json");
        assert_eq!(
            info["verification"]["files"]["tiny-Q4_K_M.gguf"]["structure_only"], 2,
            "{venv:?}"
        );
        assert_eq!(
            info["verification"]["files"]["tiny-F16.gguf"]["torch"]["via"], "python",
            "{venv:?}"
        );
    }
}
