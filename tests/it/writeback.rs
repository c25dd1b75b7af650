//! A mirror that fills itself (`download.mirrors: [{ url, push: true }]`):
//! cold runners fetch from upstream and push what verified; the next runner
//! gets everything from the mirror. Against Debian's real `docker-registry`.

use std::process::Stdio;

use crate::common::*;
use crate::oci::{json_of, logged_in, two_models_one_large, Registry, TWO_MODELS};

/// A runner: a fresh project with only the config and the lock, its own
/// caches, and the one shared upstream Hub.
fn runner(upstream: &TestContext, registry: &Registry, config: &str) -> TestContext {
    let mut ctx = TestContext::new();
    logged_in(&mut ctx, registry);
    ctx.env.push(("HF_ENDPOINT".into(), upstream.hub.url()));
    ctx.write_config(config);
    std::fs::write(ctx.path().join("models.lock"), upstream.read("models.lock")).unwrap();
    ctx
}

fn fleet_config(registry: &Registry) -> String {
    format!(
        "{TWO_MODELS}  download:\n    mirrors:\n      - {{ url: \"oci://{}/fleet/models\", push: true }}\n",
        registry.host
    )
}

/// Four runners start cold at once: each fetches from upstream and pushes
/// after verifying; the registry ends with one complete artifact per model,
/// and a fifth runner makes no request upstream at all.
#[test]
fn four_cold_runners_fill_the_mirror_and_a_fifth_makes_no_upstream_request() {
    let registry = Registry::start();
    let upstream = TestContext::new();
    let large = two_models_one_large(&upstream);
    upstream.write_config(TWO_MODELS);
    upstream.mdl(&["lock"]).success();
    let config = fleet_config(&registry);

    let runners: Vec<TestContext> = (0..4).map(|_| runner(&upstream, &registry, &config)).collect();
    let children: Vec<_> = runners
        .iter()
        .map(|r| {
            r.command(&["sync", "--locked", "--json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut uploaded = 0;
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "runner {i}: {stderr}");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let back = &json["written_back"][0];
        assert_eq!(back["models"], 2, "runner {i}: {json}");
        uploaded += back["uploaded"]["files"].as_u64().unwrap();
        assert_eq!(runners[i].read("models/huggingface_acme--large/weights.bin"), large);
    }
    // Five files, each uploaded by one runner or more (they raced), never lost.
    assert!((5..=20).contains(&uploaded), "{uploaded}");
    eprintln!("4 cold runners uploaded {uploaded} file(s) in all");

    // One complete artifact: a fifth runner gets every file from the mirror
    // and asks upstream nothing.
    let before = upstream.requests().len();
    let fifth = runner(&upstream, &registry, &config);
    let synced = json_of(&fifth.mdl(&["sync", "--locked", "--json"]).success());
    assert_eq!(synced["mirrored"]["files"], 5, "{synced}");
    assert_eq!(
        upstream.requests().len(),
        before,
        "the fifth runner made no upstream request"
    );
    assert_eq!(
        synced["written_back"],
        serde_json::json!([]),
        "nothing came from upstream, so nothing is pushed"
    );
    assert_eq!(fifth.read("models/huggingface_acme--large/weights.bin"), large);
    for model in synced["models"].as_array().unwrap() {
        assert_ne!(model["status"], "failed", "{synced}");
    }
}

/// A writable mirror that cannot be pushed to is a warning; the sync
/// succeeds from upstream, and the lock and models are as they should be.
#[test]
fn a_failed_write_back_is_a_warning_not_a_failed_sync() {
    let registry = Registry::start();
    let upstream = TestContext::new();
    standard_hub(&upstream);
    upstream.write_config("models:\n  require: [huggingface:acme/tiny-bert]\n");
    upstream.mdl(&["lock"]).success();
    // Logged in as nobody: the registry refuses both the lookup and the push.
    let mut ctx = TestContext::new();
    ctx.env.push(("HF_ENDPOINT".into(), upstream.hub.url()));
    ctx.env.push((
        "DOCKER_CONFIG".into(),
        registry.docker_config("ci", "wrong").display().to_string(),
    ));
    ctx.write_config(&format!(
        "models:\n  require: [huggingface:acme/tiny-bert]\n  download:\n    mirrors:\n      - {{ url: \"oci://{}/fleet/models\", push: true }}\n",
        registry.host
    ));
    std::fs::write(ctx.path().join("models.lock"), upstream.read("models.lock")).unwrap();
    let run = ctx.mdl(&["sync", "--locked"]).success();
    let err = run.stderr();
    assert!(
        err.contains("could not be pushed to the mirror") && err.contains("the sync itself succeeded"),
        "{err}"
    );
    assert!(err.contains("Verified acme/tiny-bert"), "{err}");
    eprintln!("{err}");
}
