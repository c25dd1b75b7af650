//! The real Hub's manners, against the emulator in its Hub-like mode: `resolve`
//! answers 302 to a signed CDN URL that expires, resolves are rate-limited.

use std::time::{Duration, Instant};

use crate::common::*;

const MIB: usize = 1 << 20;

fn hub_like(ctx: &TestContext, ttl: Duration) {
    ctx.hub.update_behaviour(|b| b.signed_urls = Some(ttl));
}

#[test]
fn a_lock_never_holds_signed_urls_and_syncs_after_they_expire() {
    let ctx = TestContext::new();
    hub_like(&ctx, Duration::from_secs(2));
    let big = hub_emulator::pseudo_random_bytes(31, 40 * MIB);
    ctx.hub.commit(
        "acme/big",
        "main",
        vec![
            ("config.json", Some(Blob::regular(&b"{}"[..]))),
            ("model.safetensors", Some(Blob::lfs(big.clone()))),
        ],
    );
    ctx.hub.put_file("w/model.pt", Blob::regular(STATE_DICT));
    ctx.write_config(
        "models:\n  require:\n    - acme/big\n    - id: url:{hub}/redirect/w/model.pt\n      name: release_asset\n",
    );
    ctx.mdl(&["lock"]).success();
    let lock = ctx.read_str("models.lock");
    assert!(
        !lock.contains("X-Amz") && !lock.contains("/cdn/") && !lock.contains("/signed/"),
        "{lock}"
    );
    assert!(
        lock.contains(&format!("url = \"{}/redirect/w/model.pt\"", ctx.hub.url())),
        "{lock}"
    );

    // A fresh checkout, once every signed URL seen while locking has expired
    // (read from the URLs themselves: `X-Amz-Date` + `X-Amz-Expires`).
    let signed: Vec<(String, u64)> = (ctx.requests().iter())
        .filter(|r| r.path.starts_with("/cdn/"))
        .filter_map(|r| {
            let param = |name: &str| r.path.split(['?', '&']).find_map(|kv| kv.strip_prefix(name));
            Some((
                param("X-Amz-Date=")?.to_string(),
                param("X-Amz-Expires=")?.parse().ok()?,
            ))
        })
        .collect();
    assert!(!signed.is_empty(), "locking went through signed URLs");
    let deadline = Instant::now() + Duration::from_secs(30);
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    // `amz_date` strings sort as times: a URL is expired once `now - expires`
    // is past its date.
    while !signed
        .iter()
        .all(|(date, expires)| hub_emulator::amz_date(now() - expires) > *date)
    {
        assert!(Instant::now() < deadline, "the signed URLs never expired");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::remove_dir_all(ctx.models()).unwrap();
    ctx.clear_shared_store();
    ctx.mdl(&["sync", "--locked", "--no-verify"]).success();
    assert_eq!(ctx.read("models/huggingface_acme--big/model.safetensors"), &big[..]);
    assert_eq!(ctx.read("models/url_release_asset/model.pt"), STATE_DICT);
}

#[test]
fn a_file_in_pieces_is_resolved_once() {
    let ctx = TestContext::new();
    hub_like(&ctx, Duration::from_secs(300));
    let big = hub_emulator::pseudo_random_bytes(32, 100 * MIB);
    ctx.hub.commit(
        "acme/big",
        "main",
        vec![("model.safetensors", Some(Blob::lfs(big.clone())))],
    );
    ctx.write_config("models:\n  require: [acme/big]\n");
    ctx.mdl(&["lock"]).success();
    assert!(ctx.hub.resolves_of("model.safetensors") <= 2, "{:?}", ctx.requests());

    std::fs::remove_file(ctx.models().join("huggingface_acme--big/model.safetensors")).unwrap();
    ctx.clear_shared_store();
    ctx.hub.clear_requests();
    ctx.mdl(&["sync", "--no-verify"]).success();
    assert_eq!(ctx.read("models/huggingface_acme--big/model.safetensors"), &big[..]);
    let resolves = ctx.hub.resolves_of("model.safetensors");
    let pieces = ctx.requests().iter().filter(|r| r.path.starts_with("/cdn/")).count();
    assert!(resolves <= 2, "{resolves} resolves for one file: {:?}", ctx.requests());
    assert_eq!(pieces, 13, "100 MiB in 8 MiB pieces, all from the signed location");
}

#[test]
fn a_location_that_expires_mid_download_is_resolved_again() {
    let ctx = TestContext::new();
    hub_like(&ctx, Duration::from_secs(1));
    let big = hub_emulator::pseudo_random_bytes(33, 40 * MIB);
    ctx.hub.commit(
        "acme/big",
        "main",
        vec![("model.safetensors", Some(Blob::lfs(big.clone())))],
    );
    ctx.write_config("models:\n  require: [acme/big]\n  download:\n    connections_per_file: 2\n");
    ctx.mdl(&["lock"]).success();
    std::fs::remove_file(ctx.models().join("huggingface_acme--big/model.safetensors")).unwrap();
    ctx.clear_shared_store();
    // About 2.5 s of transfer: the 1 s signatures lapse between pieces.
    ctx.hub.update_behaviour(|b| b.bandwidth = Some(8 << 20));
    ctx.hub.clear_requests();
    ctx.mdl(&["sync", "--no-verify"]).success();
    assert_eq!(ctx.read("models/huggingface_acme--big/model.safetensors"), &big[..]);
    let resolves = ctx.hub.resolves_of("model.safetensors");
    assert!(resolves >= 2, "the location was resolved again: {:?}", ctx.requests());
    let refused = ctx.requests().iter().filter(|r| r.status == 403).count();
    assert!(
        refused <= 2,
        "pieces go to fresh locations, not to expired ones: {:?}",
        ctx.requests()
    );
}

#[test]
fn rate_limited_resolves_wait_as_the_server_says() {
    for as_date in [false, true] {
        let ctx = TestContext::new();
        hub_like(&ctx, Duration::from_secs(300));
        let files: Vec<(String, Blob)> = (0..6)
            .map(|i| {
                (
                    format!("f{i}.json"),
                    Blob::regular(format!("{{\"i\": {i}}}").into_bytes()),
                )
            })
            .collect();
        ctx.hub.commit(
            "acme/many",
            "main",
            files.iter().map(|(p, b)| (p.as_str(), Some(b.clone()))).collect(),
        );
        ctx.hub.update_behaviour(|b| {
            b.resolve_limit = Some((3, Duration::from_secs(2)));
            b.retry_after_as_date = as_date;
        });
        ctx.write_config("models:\n  require: [acme/many]\n");
        let started = Instant::now();
        let run = ctx.mdl(&["sync", "--no-verify"]).success();
        let limited = ctx.requests().iter().filter(|r| r.status == 429).count();
        assert!(limited >= 1, "the quota was exceeded: {:?}", ctx.requests());
        assert!(
            run.stderr().contains("rate-limiting requests (429)"),
            "the wait is visible: {}",
            run.stderr()
        );
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "waited for the window to reset"
        );
        for (path, blob) in &files {
            assert_eq!(
                ctx.read(&format!("models/huggingface_acme--many/{path}")),
                blob.content.slice(0, blob.content.len())
            );
        }
    }
}

#[test]
fn dataset_and_space_repositories_lock_and_sync_like_models() {
    let ctx = TestContext::new();
    hub_like(&ctx, Duration::from_secs(300));
    ctx.hub.commit(
        "datasets/acme/corpus",
        "main",
        vec![
            ("README.md", Some(Blob::regular(&b"# corpus\n"[..]))),
            (
                "data/train.parquet",
                Some(Blob::lfs(hub_emulator::pseudo_random_bytes(34, 4096))),
            ),
        ],
    );
    ctx.hub.commit(
        "spaces/acme/demo",
        "main",
        vec![("app.py", Some(Blob::regular(&b"print(1)\n"[..])))],
    );
    ctx.write_config("models:\n  require: [\"huggingface:datasets/acme/corpus\", \"hf:spaces/acme/demo\"]\n");
    ctx.mdl(&["sync", "--no-verify"]).success();
    assert_eq!(
        ctx.read("models/huggingface_datasets--acme--corpus/README.md"),
        b"# corpus\n"
    );
    assert_eq!(ctx.read("models/huggingface_spaces--acme--demo/app.py"), b"print(1)\n");
    let paths: Vec<String> = ctx.requests().iter().map(|r| r.path.clone()).collect();
    assert!(
        paths
            .iter()
            .any(|p| p.starts_with("/api/datasets/acme/corpus/revision/main")),
        "{paths:?}"
    );
    assert!(
        paths.iter().any(|p| p.starts_with("/datasets/acme/corpus/resolve/")),
        "{paths:?}"
    );
    // Pinned like a model: a second sync is a no-op without the network.
    ctx.hub.clear_requests();
    ctx.mdl(&["sync", "--locked", "--no-verify"]).success();
    assert!(ctx.requests().is_empty(), "{:?}", ctx.requests());
}
