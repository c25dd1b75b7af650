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

/// Four runners start cold at once: one leads each model (fetches it from
/// upstream, verifies, pushes), the others wait for its push and take it
/// from the mirror; the registry ends with one complete artifact per model,
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
    let (mut uploaded, mut from_upstream, mut waited) = (0, 0, 0);
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "runner {i}: {stderr}");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for back in json["written_back"].as_array().unwrap() {
            uploaded += back["uploaded"]["files"].as_u64().unwrap();
        }
        from_upstream += json["fetched"]["bytes"].as_u64().unwrap() - json["mirrored"]["bytes"].as_u64().unwrap();
        waited += usize::from(stderr.contains("Waiting for another runner to push"));
        assert_eq!(runners[i].read("models/huggingface_acme--large/weights.bin"), large);
    }
    // One runner (two, if their claims straddled) led each model and pushed
    // it; the others waited for the push and took it from the mirror.
    let lock = mdl::lock::Lockfile::read(&upstream.path().join("models.lock"))
        .unwrap()
        .unwrap();
    let size: u64 = lock.models.values().map(|m| m.size()).sum();
    assert!(
        from_upstream <= 2 * size,
        "{from_upstream} bytes from upstream for a {size}-byte lock"
    );
    assert!(waited >= 2, "{waited} runner(s) waited");
    assert!((5..=10).contains(&uploaded), "{uploaded}");
    eprintln!("4 cold runners: {from_upstream} bytes from upstream (the lock: {size}), {uploaded} file(s) pushed, {waited} waited");

    // One complete artifact: a fifth runner gets every file from the mirror
    // and fetches nothing upstream; it asks the Hub only what the locked
    // commits hold (one listing per model: the lock never decides what the
    // Hub serves, SECURITY.md).
    let before = upstream.requests().len();
    let fifth = runner(&upstream, &registry, &config);
    let synced = json_of(&fifth.mdl(&["sync", "--locked", "--json"]).success());
    assert_eq!(synced["mirrored"]["files"], 5, "{synced}");
    let asked: Vec<_> = upstream.requests().into_iter().skip(before).collect();
    assert_eq!(asked.len(), lock.models.len(), "{asked:?}");
    assert!(
        asked
            .iter()
            .all(|r| r.path.starts_with("/api/models/") && r.path.contains("/revision/")),
        "the fifth runner fetched no file upstream: {asked:?}"
    );
    assert_eq!(
        synced["written_back"],
        serde_json::json!([]),
        "nothing came from upstream, so nothing is pushed"
    );
    assert_eq!(fifth.read("models/huggingface_acme--large/weights.bin"), large);
    let models = synced["models"].as_array().unwrap();
    assert_eq!(models.len(), lock.models.len(), "{synced}");
    for model in models {
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

/// A lock of the standard Hub model, and a lease planted on its mirror tag
/// by "another runner" that never renews it, expiring `expires` seconds
/// from now as its annotation claims.
fn planted_lease(registry: &Registry, expires: u64) -> (TestContext, String) {
    use crate::oci::{curl_push_blob, curl_put_manifest};
    let upstream = TestContext::new();
    standard_hub(&upstream);
    let config = format!(
        "models:\n  require: [huggingface:acme/tiny-bert]\n  download:\n    mirrors:\n      - {{ url: \"oci://{}/fleet/models\", push: true }}\n",
        registry.host
    );
    upstream.write_config("models:\n  require: [huggingface:acme/tiny-bert]\n");
    upstream.mdl(&["lock"]).success();
    let lock = mdl::lock::Lockfile::read(&upstream.path().join("models.lock"))
        .unwrap()
        .unwrap();
    let tags: Vec<String> = (lock.models.values())
        .map(|m| mdl::oci::artifact::model_tag(m.files.iter().map(|f| (f.path.as_str(), f.size, f.blake3.as_str()))))
        .collect();
    let empty = curl_push_blob(registry, "fleet/models", b"{}");
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .saturating_add(expires);
    let descriptor =
        serde_json::json!({ "mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2 });
    let lease = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.mdl.lease.v1",
        "config": descriptor,
        "layers": [descriptor],
        "annotations": { "dev.mdl.lease.holder": "dead-runner", "dev.mdl.lease.expires": expires.to_string() },
    });
    curl_put_manifest(registry, "fleet/models", &mdl::oci::lease::lease_tag(&tags), &lease);
    (upstream, config)
}

/// A leader that died holding the lease stops renewing it; a follower waits
/// only until the lease expires, then fetches from upstream and fills the
/// mirror itself.
#[test]
fn a_dead_leaders_lease_expires_and_the_follower_fetches_from_upstream() {
    let registry = Registry::start();
    // The lease of a runner that died: it expires in 3 s and is never renewed.
    let (upstream, config) = planted_lease(&registry, 3);
    let ctx = runner(&upstream, &registry, &config);
    let run = ctx.mdl(&["sync", "--locked", "--json"]).success();
    let err = run.stderr();
    assert!(
        err.contains("Waiting for another runner to push `acme/tiny-bert`"),
        "{err}"
    );
    assert!(err.contains("without pushing; fetching from upstream"), "{err}");
    let json = json_of(&run);
    assert_eq!(json["mirrored"]["files"], 0, "{json}");
    assert_eq!(
        json["written_back"][0]["models"], 1,
        "it filled the mirror itself: {json}"
    );
    // And the mirror now serves the next runner.
    let next = runner(&upstream, &registry, &config);
    let synced = json_of(&next.mdl(&["sync", "--locked", "--json"]).success());
    assert_eq!(synced["mirrored"]["files"], 3, "{synced}");
}

/// A lease planted with an expiry centuries away (only the lock is needed to
/// derive its tag) holds no runner past a lease's life: the expiry counts
/// only while the lease is seen renewed, and the runner then fetches from
/// upstream itself.
#[test]
fn a_planted_far_future_lease_delays_a_runner_one_lease_life_at_most() {
    let registry = Registry::start();
    let (upstream, config) = planted_lease(&registry, 99_999_999_999 - 1_800_000_000);
    let ctx = runner(&upstream, &registry, &config);
    let started = std::time::Instant::now();
    let run = ctx.mdl(&["sync", "--locked", "--json"]).success();
    let took = started.elapsed();
    let limit = mdl::oci::lease::TTL * 2;
    assert!(took < limit, "took {took:?}, more than two lease lives");
    assert!(took >= mdl::oci::lease::TTL, "it waited one life ({took:?})");
    let err = run.stderr();
    assert!(err.contains("without pushing; fetching from upstream"), "{err}");
    assert_eq!(json_of(&run)["written_back"][0]["models"], 1);
}

/// A sync that has to lock first downloads to hash; what it downloaded is
/// written back too, so the first developer's sync fills the mirror.
#[test]
fn a_sync_that_locks_writes_back_what_it_downloaded() {
    let registry = Registry::start();
    let mut ctx = TestContext::new();
    standard_hub(&ctx);
    logged_in(&mut ctx, &registry);
    ctx.write_config(&format!(
        "models:\n  require: [huggingface:acme/tiny-bert]\n  download:\n    mirrors:\n      - {{ url: \"oci://{}/fleet/models\", push: true }}\n",
        registry.host
    ));
    let json = json_of(&ctx.mdl(&["sync", "--json"]).success());
    assert_eq!(json["written_back"][0]["models"], 1, "{json}");
    assert_eq!(json["written_back"][0]["uploaded"]["files"], 3, "{json}");
}
