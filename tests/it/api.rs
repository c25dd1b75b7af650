//! The Rust API (`mdl::api`), in process, against the emulator.

use mdl::api::ModelManager;
use mdl::registry::VerifyStatus;

use crate::common::*;

#[test]
fn ensure_model_available_downloads_verifies_and_reports() {
    let ctx = TestContext::new();
    standard_hub(&ctx);
    // The endpoint from config, so this test changes no process-wide environment.
    ctx.write_config("models:\n  download:\n    sources:\n      huggingface: { endpoint: \"{hub}\" }\n");
    let mut manager = ModelManager::open(ctx.path().join("config.yaml")).unwrap();
    assert!(!manager.is_model_cached("acme/tiny-bert"));
    let (path, info) = manager.ensure_model_available("huggingface:acme/tiny-bert").unwrap();
    assert_eq!(path, ctx.models().join("huggingface_acme--tiny-bert"));
    assert_eq!(std::fs::read(path.join("model.safetensors")).unwrap(), SAFETENSORS);
    assert_eq!(info.verification.unwrap().status, VerifyStatus::Verified);
    assert!(manager.is_model_cached("acme/tiny-bert"));
    assert_eq!(manager.get_model_path("acme/tiny-bert"), Some(path));
    // Batch: a result per model, a bad one does not hide the good one's state.
    let results = manager.download_models(&["huggingface:acme/tiny-gpt", "not a model"]);
    assert!(results[0].1.is_ok(), "{:?}", results[0].1.as_ref().err());
    assert!(results[1]
        .1
        .as_ref()
        .unwrap_err()
        .to_string()
        .contains("is not a model identifier"));
    let names: Vec<String> = manager.list_available_models().into_iter().map(|m| m.name).collect();
    assert_eq!(names, ["acme/tiny-bert", "acme/tiny-gpt"]);
}
