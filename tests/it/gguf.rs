//! GGUF files (written by llama.cpp's own `gguf` package, see
//! scripts/make-gguf-fixtures.py) and weight files in formats mdl cannot read:
//! nothing unverified is called verified.

use crate::common::*;

const Q4_K_M: &[u8] = include_bytes!("../fixtures/tiny-Q4_K_M.gguf");
const F16: &[u8] = include_bytes!("../fixtures/tiny-F16.gguf");
const Q8_0: &[u8] = include_bytes!("../fixtures/tiny-Q8_0.gguf");
const TRUNCATED: &[u8] = include_bytes!("../fixtures/broken_truncated.gguf");

pub(crate) fn gguf_hub(ctx: &TestContext) {
    ctx.hub.commit(
        "acme/tiny-GGUF",
        "main",
        vec![
            ("README.md", Some(Blob::regular(&b"# tiny\n"[..]))),
            ("tiny-Q4_K_M.gguf", Some(Blob::lfs(Q4_K_M))),
            ("tiny-F16.gguf", Some(Blob::lfs(F16))),
            ("tiny-Q8_0.gguf", Some(Blob::lfs(Q8_0))),
        ],
    );
    ctx.hub.commit(
        "acme/broken-GGUF",
        "main",
        vec![("tiny-F16.gguf", Some(Blob::lfs(TRUNCATED)))],
    );
    ctx.hub.commit(
        "acme/onnx",
        "main",
        vec![
            ("config.json", Some(Blob::regular(&b"{}"[..]))),
            (
                "model.onnx",
                Some(Blob::lfs(&b"\x08\x07\x12\x07pytorch onnx graph bytes"[..])),
            ),
            ("model.safetensors", Some(Blob::lfs(SAFETENSORS))),
        ],
    );
}

/// `include:` picks one quantization out of a repo of several; its F32
/// tensors load in libtorch and its Q4_K/Q6_K blocks are checked by
/// structure, and the report says both, with the architecture.
#[test]
fn one_quantization_is_picked_loaded_and_reported() {
    let ctx = TestContext::new();
    gguf_hub(&ctx);
    ctx.write_config("models:\n  require:\n    - id: acme/tiny-GGUF\n      include: [\"*Q4_K_M.gguf\"]\n");
    let run = ctx.mdl(&["sync"]).success();
    let err = run.stderr_without_torch();
    assert!(
        err.contains("Verified acme/tiny-GGUF on cpu: 1 weight file(s) [gguf (llama)], 3 tensors, 1792 parameters (Q4_K (quantized: structure only), Q6_K (quantized: structure only), float32)"),
        "{err}"
    );
    let files: Vec<_> = std::fs::read_dir(ctx.models().join("huggingface_acme--tiny-GGUF"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".gguf"))
        .collect();
    assert_eq!(files, ["tiny-Q4_K_M.gguf"]);
    let info = ctx.json("models/huggingface_acme--tiny-GGUF/model_info.json");
    let file = &info["verification"]["files"]["tiny-Q4_K_M.gguf"];
    assert_eq!(info["verification"]["status"], "verified");
    assert_eq!(file["format"], "gguf");
    assert_eq!(file["architecture"], "llama");
    assert_eq!(file["structure_only"], 2);
    assert_eq!(file["loaded"], true);
}

/// Every tensor of an F16/BF16 GGUF is built in libtorch; the same file
/// checked by structure only (no torch) is `format_checked`, never `verified`.
#[test]
fn a_float_gguf_loads_every_tensor() {
    let ctx = TestContext::new();
    gguf_hub(&ctx);
    ctx.write_config("models:\n  require:\n    - id: acme/tiny-GGUF\n      include: [\"*F16.gguf\"]\n");
    let err = ctx.mdl(&["sync"]).success().stderr_without_torch();
    assert!(
        err.contains("[gguf (llama)], 4 tensors, 232 parameters (bfloat16, float16, float32)"),
        "{err}"
    );
    let info = ctx.json("models/huggingface_acme--tiny-GGUF/model_info.json");
    assert!(info["verification"]["files"]["tiny-F16.gguf"]
        .get("structure_only")
        .is_none());
    let mut ctx = ctx;
    ctx.env.push(("MDL_VERIFIER".into(), "structure".into()));
    let structure = ctx.mdl(&["verify", "acme/tiny-GGUF"]).success().stderr();
    assert!(structure.contains("Checked acme/tiny-GGUF"), "{structure}");
}

#[test]
fn a_truncated_gguf_fails_naming_the_file() {
    let ctx = TestContext::new();
    gguf_hub(&ctx);
    ctx.write_config("models:\n  require: [acme/broken-GGUF]\n");
    ctx.mdl(&["sync"])
        .failure(1)
        .stderr_has(
            "model `acme/broken-GGUF` failed verification: `tiny-F16.gguf` cannot be loaded: tensor `output.weight`",
        )
        .stderr_has("extends past the end of the file");
    // The file stays (its hash matches the lock); the next sync tries again.
    assert!(ctx
        .models()
        .join("huggingface_acme--broken-GGUF/tiny-F16.gguf")
        .is_file());
}

/// A weight file in a format mdl cannot read is reported as checked by hash
/// only, with the reason; the model is `hash_checked`, not `verified`; and
/// `verify.unknown: error` makes that fail the sync without deleting anything.
#[test]
fn a_weight_file_mdl_cannot_read_is_hash_checked_only() {
    let ctx = TestContext::new();
    gguf_hub(&ctx);
    ctx.write_config("models:\n  require: [acme/onnx]\n");
    let run = ctx.mdl(&["sync"]).success();
    let err = run.stderr_without_torch();
    assert!(
        err.contains("Hashed acme/onnx on cpu: 1 weight file(s) [safetensors]")
            && err.contains("checked by hash only: `model.onnx` (ONNX weights, a format mdl cannot load or check)"),
        "{err}"
    );
    assert!(
        err.contains("warning: some weight files are in formats mdl cannot load or check"),
        "{err}"
    );
    let info = ctx.json("models/huggingface_acme--onnx/model_info.json");
    assert_eq!(info["verification"]["status"], "hash_checked");
    assert_eq!(
        info["verification"]["hash_only"]["model.onnx"],
        "ONNX weights, a format mdl cannot load or check"
    );
    // `--json` says the same.
    let json: serde_json::Value = serde_json::from_str(&ctx.mdl(&["sync", "--json"]).success().stdout()).unwrap();
    let text = json.to_string();
    assert!(text.contains("hash_checked"), "{text}");

    ctx.write_config("verify: { unknown: error }\nmodels:\n  require: [acme/onnx]\n");
    ctx.mdl(&["sync"])
        .failure(2)
        .snap("sync_unknown_weights_error")
        .stderr_has("model `acme/onnx` cannot be verified: `model.onnx` (ONNX weights, a format mdl cannot load or check) can only be checked against its hash, and `verify.unknown` is `error`")
        .stderr_has("hint: `exclude:` the files mdl cannot read");
    assert!(ctx.models().join("huggingface_acme--onnx/model.onnx").is_file());
    assert!(ctx.models().join("huggingface_acme--onnx/model.safetensors").is_file());
}
