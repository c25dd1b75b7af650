//! Xet, the Hub's own storage protocol, against the emulator's `--xet` CAS
//! (xorbs and hashes made by xet-core's own code): the lock records each
//! file's Xet hash, sync rebuilds files from chunks, resumes a killed download
//! by term, and an upgrade fetches only the chunks that changed.

use std::time::{Duration, Instant};

use hub_emulator::{Blob, XetSettings};

use crate::common::*;

/// Several of the engine's 8 MiB hashing pieces, the last one partial.
const SIZE: usize = (20 << 20) + 12_345;

/// Two revisions of an 8 MiB weight file: the second rewrites 100 bytes in
/// every 2 MiB (~5 % of its ~64 KiB chunks) and keeps the rest.
fn revisions() -> (Vec<u8>, Vec<u8>) {
    let one = hub_emulator::pseudo_random_bytes(41, SIZE).to_vec();
    let mut two = one.clone();
    for (i, at) in (5000..SIZE).step_by(2 << 20).enumerate() {
        let fresh = hub_emulator::pseudo_random_bytes(100 + i as u64, 100);
        two[at..at + 100].copy_from_slice(&fresh);
    }
    (one, two)
}

/// A Hub that speaks Xet, with xorbs of `xorb_bytes`, holding `acme/xet` at
/// `main` (revision one) and `v2` (revision two).
fn xet_hub(settings: XetSettings) -> (TestContext, Vec<u8>, Vec<u8>) {
    let ctx = TestContext::new();
    ctx.hub.update_behaviour(|b| b.xet = Some(settings));
    let (one, two) = revisions();
    ctx.hub.commit(
        "acme/xet",
        "main",
        vec![
            ("config.json", Some(Blob::regular(&b"{}"[..]))),
            ("model.safetensors", Some(Blob::lfs(one.clone()))),
        ],
    );
    ctx.hub.commit(
        "acme/xet",
        "v2",
        vec![
            ("config.json", Some(Blob::regular(&b"{}"[..]))),
            ("model.safetensors", Some(Blob::lfs(two.clone()))),
        ],
    );
    (ctx, one, two)
}

fn small_xorbs() -> XetSettings {
    XetSettings {
        xorb_bytes: 1 << 20,
        ..XetSettings::default()
    }
}

/// Bytes of xorbs the emulator served (each answered range counted).
fn xorb_bytes(ctx: &TestContext) -> u64 {
    ctx.requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/xorbs/") && r.status == 206)
        .map(|r| {
            let (a, b) = r
                .range
                .as_deref()
                .unwrap()
                .trim_start_matches("bytes=")
                .split_once('-')
                .unwrap();
            b.parse::<u64>().unwrap() - a.parse::<u64>().unwrap() + 1
        })
        .sum()
}

const MODEL: &str = "models/huggingface_acme--xet/model.safetensors";

fn config(revision: &str) -> String {
    format!("models:\n  require:\n    - id: acme/xet\n      revision: {revision}\n      verify: false\n")
}

#[test]
fn a_xet_file_is_locked_with_its_hash_and_rebuilt_from_chunks() {
    let (ctx, one, _) = xet_hub(XetSettings::default());
    ctx.write_config(&config("main"));
    ctx.mdl(&["sync"]).success();
    assert_eq!(ctx.read(MODEL), one);
    let lock = ctx.read_str("models.lock");
    // The blake3 merged from pieces hashed beside the download is the file's.
    assert!(lock.contains(&blake3_hex(&one)), "{lock}");
    let hashes: Vec<&str> = lock.lines().filter(|l| l.starts_with("xet_hash")).collect();
    assert_eq!(hashes.len(), 1, "only the LFS file is in Xet:\n{lock}");
    let reqs = ctx.requests();
    assert!(reqs.iter().any(|r| r.path.contains("/xet-read-token/")), "{reqs:?}");
    assert!(
        reqs.iter().any(|r| r.path.starts_with("/v2/reconstructions/")),
        "{reqs:?}"
    );
    // Over Xet, not the bridge; the Hub token never went to the CAS.
    assert!(!reqs.iter().any(|r| r.path.starts_with("/cdn/")), "{reqs:?}");
    assert!((SIZE as u64..SIZE as u64 + (64 << 10)).contains(&xorb_bytes(&ctx)));
}

#[test]
fn an_upgrade_fetches_only_the_chunks_that_changed() {
    let (ctx, _, two) = xet_hub(XetSettings::default());
    ctx.write_config(&config("main"));
    ctx.mdl(&["sync"]).success();
    ctx.hub.clear_requests();
    ctx.write_config(&config("v2"));
    let run = ctx.mdl(&["sync"]).success();
    assert_eq!(ctx.read(MODEL), two);
    // The output says how much came from disk rather than the network.
    assert!(
        run.stderr().contains("copied from chunks already on disk"),
        "{}",
        run.stderr()
    );
    let fetched = xorb_bytes(&ctx);
    // 4 changed spots × ~1–2 chunks of ~64 KiB: under the 10 % target.
    assert!(
        fetched * 10 <= SIZE as u64,
        "fetched {fetched} of {SIZE} bytes on upgrade"
    );
    assert!(fetched > 0);
}

#[test]
fn a_killed_xet_download_resumes_by_term() {
    let (ctx, one, _) = xet_hub(small_xorbs());
    // ~2 s for the file: time to kill it in the middle.
    ctx.hub.update_behaviour(|b| b.bandwidth = Some(1 << 20));
    // 4 ranges at once (the setting the HTTP path's connections share): the
    // log then fills term by term, and the kill lands between terms.
    ctx.write_config(&format!("{}  download:\n    connections_per_file: 4\n", config("main")));
    ctx.mdl(&["lock"]).success();
    // Locking fetched the file to learn its blake3: start from nothing.
    std::fs::remove_dir_all(ctx.models()).unwrap();
    let _ = std::fs::remove_dir_all(ctx.path().join(".hf-home"));
    ctx.clear_shared_store();
    ctx.hub.clear_requests();
    let mut child = ctx
        .command(&["sync", "--no-verify"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let tmp = ctx.models().join(".mdl/tmp");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut kept;
    loop {
        // The term log says which bytes are written: stop past half.
        kept = std::fs::read_dir(&tmp)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "xet"))
            .map(|e| logged_bytes(&std::fs::read(e.path()).unwrap_or_default()))
            .max()
            .unwrap_or(0);
        if kept >= SIZE as u64 / 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the download never got going");
        assert!(
            child.try_wait().unwrap().is_none(),
            "mdl finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = xorb_bytes(&ctx);
    ctx.hub.update_behaviour(|b| b.bandwidth = None);
    ctx.mdl(&["sync", "--no-verify"]).success();
    assert_eq!(ctx.read(MODEL), one);
    let again = xorb_bytes(&ctx) - before;
    // What the log kept is not fetched again; ranges in flight at the kill
    // (at most 4 of the 1 MiB xorbs) are.
    let bound = SIZE as u64 - kept + 4 * ((1 << 20) + (16 << 10));
    assert!(
        again <= bound && again < SIZE as u64,
        "the rerun fetched {again} of {SIZE} bytes after {kept} were kept: it did not resume"
    );
}

/// Bytes a Xet term log (`src/fetch/xet/`) records as written: per term a
/// term number and a count (4 + 4 bytes), then 40 bytes per chunk (hash,
/// length); an entry cut short is not counted.
fn logged_bytes(log: &[u8]) -> u64 {
    let (mut at, mut total) = (0, 0);
    while let Some(head) = log.get(at..at + 8) {
        let n = u32::from_le_bytes(head[4..].try_into().unwrap()) as usize;
        let Some(body) = log.get(at + 8..at + 8 + 40 * n) else {
            break;
        };
        total += body
            .chunks_exact(40)
            .map(|r| u64::from_le_bytes(r[32..].try_into().unwrap()))
            .sum::<u64>();
        at += 8 + 40 * n;
    }
    total
}

#[test]
fn v1_reconstructions_serve_when_v2_is_missing() {
    let (ctx, one, _) = xet_hub(XetSettings {
        v2: false,
        compression: Some("bg4-lz4".into()),
        ..small_xorbs()
    });
    ctx.write_config(&config("main"));
    ctx.mdl(&["sync"]).success();
    assert_eq!(ctx.read(MODEL), one);
    assert!(ctx
        .requests()
        .iter()
        .any(|r| r.path.starts_with("/v1/reconstructions/")));
}

#[test]
fn without_xet_the_resolve_bridge_serves_the_file() {
    let (ctx, one, _) = xet_hub(XetSettings::default());
    ctx.write_config(&config("main"));
    ctx.mdl(&["lock"]).success();
    std::fs::remove_dir_all(ctx.models()).unwrap();
    ctx.clear_shared_store();
    // The Hub stops serving Xet (the token route 404s): the lock's xet_hash
    // is kept and the file comes whole through the resolve redirect.
    ctx.hub.update_behaviour(|b| b.xet = None);
    ctx.hub.clear_requests();
    let run = ctx.mdl(&["sync"]).success();
    assert_eq!(ctx.read(MODEL), one);
    let reqs = ctx.requests();
    assert!(
        reqs.iter()
            .any(|r| r.path.ends_with("/model.safetensors") && r.path.contains("/resolve/")),
        "{reqs:?}\n{}",
        run.stderr()
    );
    assert!(!reqs.iter().any(|r| r.path.starts_with("/xorbs/")), "{reqs:?}");
    // And `HF_HUB_DISABLE_XET=1` goes to the bridge without asking.
    let (ctx, one, _) = xet_hub(XetSettings::default());
    ctx.write_config(&config("main"));
    let mut ctx = ctx;
    ctx.env.push(("HF_HUB_DISABLE_XET".into(), "1".into()));
    ctx.mdl(&["sync"]).success();
    assert_eq!(ctx.read(MODEL), one);
    assert!(!ctx.requests().iter().any(|r| r.path.contains("xet-read-token")));
}

#[test]
fn a_masked_xet_hash_is_never_locked() {
    let (ctx, one, _) = xet_hub(XetSettings::default());
    let commit = ctx.hub.commit("acme/xet", "main", vec![]);
    let blob = Blob::lfs(one.clone());
    // The Hub can answer `xetHash` masked (huggingface_hub #4595).
    ctx.hub.update_behaviour(|b| {
        b.api_answer = Some(
            serde_json::json!({"id": "acme/xet", "sha": commit, "siblings": [{
                "rfilename": "model.safetensors", "size": SIZE, "blobId": blob.git_oid,
                "lfs": {"sha256": blob.sha256, "size": SIZE, "pointerSize": 134},
                "xetHash": "*".repeat(64)}]})
            .to_string(),
        )
    });
    ctx.write_config(&config("main"));
    ctx.mdl(&["sync"]).success();
    assert_eq!(ctx.read(MODEL), one);
    let lock = ctx.read_str("models.lock");
    assert!(!lock.contains("xet_hash") && !lock.contains('*'), "{lock}");
    // Fetched whole through the resolve bridge.
    assert!(!ctx.requests().iter().any(|r| r.path.contains("xet-read-token")));
}

#[test]
fn an_edited_xet_hash_in_the_lock_places_nothing() {
    let (ctx, _, _) = xet_hub(XetSettings::default());
    let xet_hash_of = |lock: &str| lock.lines().find(|l| l.starts_with("xet_hash")).unwrap().to_string();
    ctx.write_config(&config("v2"));
    ctx.mdl(&["lock"]).success();
    let other = xet_hash_of(&ctx.read_str("models.lock"));
    ctx.write_config(&config("main"));
    ctx.mdl(&["lock"]).success();
    let lock = ctx.read_str("models.lock");
    let own = xet_hash_of(&lock);
    let _ = std::fs::remove_dir_all(ctx.models());
    ctx.clear_shared_store();

    // Not a hash: refused when the lock is read, before any request.
    std::fs::write(
        ctx.path().join("models.lock"),
        lock.replace(&own, "xet_hash = \"../../x\""),
    )
    .unwrap();
    ctx.mdl(&["sync", "--locked"]).failure(2).stderr_has("xet_hash");
    // Another file's hash (same size): the Hub states another hash for this
    // commit and path, so the CAS is never asked for it; nothing is placed.
    std::fs::write(ctx.path().join("models.lock"), lock.replace(&own, &other)).unwrap();
    let run = ctx.mdl(&["sync", "--locked"]);
    assert_ne!(run.code(), 0, "{}", run.stderr());
    assert!(run.stderr().contains("field `xet_hash`"), "{}", run.stderr());
    assert!(run.stderr().contains("does not state"), "{}", run.stderr());
    assert!(!ctx.path().join(MODEL).exists());
}
