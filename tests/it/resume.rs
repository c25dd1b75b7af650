//! Large files: parallel ranged pieces, fallback to one stream, and resumption
//! after the process is killed.

use std::time::{Duration, Instant};

use crate::common::*;

const BIG: usize = 40 << 20;

fn ranges_of(ctx: &TestContext) -> Vec<(u64, u64)> {
    ctx.body_requests()
        .iter()
        .filter_map(|r| r.range.as_ref())
        .filter_map(|r| {
            let (a, b) = r.strip_prefix("bytes=")?.split_once('-')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect()
}

#[test]
fn large_files_come_as_parallel_pieces_with_the_right_hash() {
    let ctx = TestContext::new();
    let big = hub_emulator::pseudo_random_bytes(21, BIG);
    ctx.hub.commit(
        "acme/big",
        "main",
        vec![("model.safetensors", Some(Blob::lfs(big.clone())))],
    );
    ctx.write_config("models:\n  require: [acme/big]\n");
    ctx.mdl(&["lock"]).success();
    assert_eq!(ctx.read("models/huggingface_acme--big/model.safetensors"), &big[..]);
    let ranges = ranges_of(&ctx);
    assert_eq!(ranges.len(), 5, "40 MiB in 8 MiB pieces: {ranges:?}");
    assert!(ctx.read_str("models.lock").contains(&blake3_hex(&big)));
    // And from the lock (blake3 only, no sha256 read-back) the same again.
    std::fs::remove_file(ctx.models().join("huggingface_acme--big/model.safetensors")).unwrap();
    ctx.clear_shared_store();
    ctx.mdl(&["sync", "--no-verify"]).success();
    assert_eq!(ctx.read("models/huggingface_acme--big/model.safetensors"), &big[..]);
}

#[test]
fn a_server_ignoring_range_gets_one_stream() {
    let ctx = TestContext::new();
    let big = hub_emulator::pseudo_random_bytes(22, BIG);
    ctx.hub.commit(
        "acme/big",
        "main",
        vec![("model.safetensors", Some(Blob::lfs(big.clone())))],
    );
    ctx.hub.update_behaviour(|b| {
        b.ignore_range = true;
        b.no_content_length = true;
    });
    ctx.write_config("models:\n  require: [acme/big]\n");
    ctx.mdl(&["sync", "--no-verify"]).success();
    assert_eq!(ctx.read("models/huggingface_acme--big/model.safetensors"), &big[..]);
    let gets = ctx.body_requests();
    assert_eq!(gets.len(), 2, "one probe, then one whole stream: {gets:?}");
}

/// Starts `mdl sync`, waits until part of the file is on disk, kills it with SIGKILL.
fn kill_midway(ctx: &TestContext) {
    let mut child = ctx
        .command(&["sync", "--no-verify"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let tmp = ctx.models().join(".mdl/tmp");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pieces_done = std::fs::read_dir(&tmp)
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".part.json"))
            .filter_map(|e| serde_json::from_slice::<serde_json::Value>(&std::fs::read(e.path()).ok()?).ok())
            .map(|state| {
                state["pieces"]["done"]
                    .as_array()
                    .map_or(0, |d| d.iter().filter(|p| !p.is_null()).count())
            })
            .max()
            .unwrap_or(0);
        if pieces_done >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "download never got going");
        assert!(
            child.try_wait().unwrap().is_none(),
            "mdl finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

#[test]
fn a_killed_download_resumes_with_only_the_missing_pieces() {
    let ctx = TestContext::new();
    let big = hub_emulator::pseudo_random_bytes(23, BIG);
    ctx.hub.commit(
        "acme/big",
        "main",
        vec![("model.safetensors", Some(Blob::lfs(big.clone())))],
    );
    ctx.write_config("models:\n  require: [acme/big]\n  download:\n    connections_per_file: 2\n");
    ctx.mdl(&["lock"]).success();
    std::fs::remove_file(ctx.models().join("huggingface_acme--big/model.safetensors")).unwrap();
    ctx.clear_shared_store();
    ctx.hub.update_behaviour(|b| b.bandwidth = Some(8 << 20));
    kill_midway(&ctx);
    ctx.hub.update_behaviour(|b| b.bandwidth = None);
    ctx.hub.clear_requests();
    ctx.mdl(&["sync", "--no-verify"]).success();
    assert_eq!(ctx.read("models/huggingface_acme--big/model.safetensors"), &big[..]);
    let refetched: u64 = ranges_of(&ctx).iter().map(|(a, b)| b - a + 1).sum();
    assert!(
        refetched <= (BIG as u64) - (2 * (8 << 20)),
        "re-fetched {refetched} of {BIG} bytes"
    );
    assert_eq!(std::fs::read_dir(ctx.models().join(".mdl/tmp")).unwrap().count(), 0);
}

#[test]
fn a_changed_upstream_restarts_cleanly() {
    let ctx = TestContext::new();
    let old = hub_emulator::pseudo_random_bytes(24, BIG);
    let new = hub_emulator::pseudo_random_bytes(25, BIG);
    ctx.hub.put_file("w/big.bin", Blob::regular(old));
    ctx.write_config("models:\n  require: [\"url:{hub}/files/w/big.bin\"]\n  download:\n    connections_per_file: 2\n");
    ctx.hub.update_behaviour(|b| b.bandwidth = Some(8 << 20));
    kill_midway(&ctx);
    // Upstream replaces the file (same size, new ETag) before the rerun.
    ctx.hub.put_file("w/big.bin", Blob::regular(new.clone()));
    ctx.hub.update_behaviour(|b| b.bandwidth = None);
    ctx.mdl(&["sync", "--no-verify"]).success();
    assert_eq!(
        ctx.read("models/url_big/big.bin"),
        &new[..],
        "no mix of old and new bytes"
    );
    assert!(ctx.read_str("models.lock").contains(&blake3_hex(&new)));
}
