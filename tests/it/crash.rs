//! Kill anywhere (RELIABILITY.md): `mdl sync`, `mdl lock` and `mdl watch`
//! killed with SIGKILL at each kill point (`src/failpoint.rs`, built with
//! `--features failpoints`); after each death no file under its final name
//! differs from what the lock says, every JSON and TOML file parses, and the
//! next run completes without downloading again what was complete.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;

/// (kill point, command, `fail` action: which hit kills).
const KILLS: &[(&str, &str, &str)] = &[
    ("resolve::model", "sync", "return"),
    ("lock::resolved", "sync", "return"),
    ("fetch::located", "sync", "return"),
    ("fetch::sidecar_written", "sync", "return"),
    ("fetch::bytes_written", "sync", "return"),
    ("fetch::piece_written", "sync", "2*off->return"),
    ("fetch::pieces_before_rename", "sync", "return"),
    ("fetch::before_rename", "sync", "1*off->return"),
    ("fetch::after_rename", "sync", "1*off->return"),
    ("fs::atomic_before_rename", "sync", "3*off->return"),
    ("fs::atomic_after_rename", "sync", "3*off->return"),
    ("store::state_saving", "sync", "return"),
    ("lock::writing", "sync", "return"),
    ("lock::written", "sync", "return"),
    ("shared::inserting", "sync", "1*off->return"),
    ("link::before_rename", "sync", "1*off->return"),
    ("hf_cache::linking", "sync", "2*off->return"),
    ("sync::verifying", "sync", "return"),
    ("sync::verified", "sync", "return"),
    ("registry::model_info", "sync", "1*off->return"),
    ("registry::writing", "sync", "return"),
    ("lock::writing", "lock", "return"),
    ("fetch::before_rename", "lock", "2*off->return"),
    ("fetch::piece_written", "lock", "return"),
    ("watch::run", "watch", "return"),
];

/// The repository and the bytes each synced file must have.
fn project(ctx: &TestContext) -> BTreeMap<String, Vec<u8>> {
    let big = hub_emulator::pseudo_random_bytes(71, 40 << 20).to_vec();
    ctx.hub.commit(
        "acme/crash",
        "main",
        vec![
            ("config.json", Some(Blob::regular(&b"{\"a\": 1}"[..]))),
            ("model.safetensors", Some(Blob::lfs(SAFETENSORS))),
            ("big.bin", Some(Blob::lfs(big.clone()))),
        ],
    );
    ctx.hub.put_file("w/model.pt", Blob::regular(STATE_DICT));
    ctx.write_config(
        "models:\n  require:\n    - acme/crash\n    - id: url:{hub}/redirect/w/model.pt\n      name: custom\n  download:\n    link_mode: hardlink\n    hf_cache: true\n",
    );
    BTreeMap::from([
        (
            "models/huggingface_acme--crash/config.json".to_string(),
            b"{\"a\": 1}".to_vec(),
        ),
        (
            "models/huggingface_acme--crash/model.safetensors".to_string(),
            SAFETENSORS.to_vec(),
        ),
        ("models/huggingface_acme--crash/big.bin".to_string(), big),
        ("models/url_custom/model.pt".to_string(), STATE_DICT.to_vec()),
    ])
}

/// What must hold after any death; returns the files that are complete.
fn consistent(ctx: &TestContext, want: &BTreeMap<String, Vec<u8>>, what: &str) -> Vec<String> {
    let mut complete = Vec::new();
    for (rel, bytes) in want {
        if let Ok(found) = std::fs::read(ctx.path().join(rel)) {
            assert!(
                found == *bytes,
                "{what}: `{rel}` is under its final name with other content"
            );
            complete.push(rel.clone());
        }
    }
    for (rel, bytes) in ctx.snapshot() {
        if rel.ends_with(".json") && !rel.contains("/.mdl/tmp/") {
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or_else(|e| panic!("{what}: {rel}: {e}"));
        }
        if rel.ends_with(".toml") || rel.ends_with(".lock") && !rel.ends_with("/lock") {
            toml::from_str::<toml::Value>(std::str::from_utf8(&bytes).unwrap())
                .unwrap_or_else(|e| panic!("{what}: {rel}: {e}"));
        }
    }
    complete
}

fn file_name(rel: &str) -> &str {
    rel.rsplit('/').next().unwrap()
}

#[test]
fn killed_anywhere_nothing_is_corrupt_and_the_rerun_completes() {
    assert!(KILLS.len() >= 20);
    for (point, command, action) in KILLS {
        let what = format!("{command} killed at {point} ({action})");
        let mut ctx = TestContext::new();
        let want = project(&ctx);
        ctx.env.push(("FAILPOINTS".into(), format!("{point}={action}")));
        let mut child = match *command {
            "watch" => ctx.command(&["watch", "--no-verify"]),
            other => ctx.command(&[other, "--no-verify"][..if other == "lock" { 1 } else { 2 }]),
        }
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "{what}: never reached the kill point");
            std::thread::sleep(Duration::from_millis(20));
        };
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "{what}: was not killed there: {status:?}");
        ctx.env.clear();

        let complete = consistent(&ctx, &want, &what);
        ctx.hub.clear_requests();
        ctx.mdl(&["sync", "--no-verify"]).success();
        let fetched: Vec<String> = ctx.body_requests().into_iter().map(|r| r.path).collect();
        for rel in &complete {
            let name = file_name(rel);
            assert!(
                !fetched
                    .iter()
                    .any(|p| p.split('?').next().unwrap().ends_with(&format!("/{name}"))),
                "{what}: `{rel}` was complete but downloaded again: {fetched:?}"
            );
        }
        let done = consistent(&ctx, &want, &format!("{what}, rerun"));
        assert_eq!(done.len(), want.len(), "{what}: the rerun left files missing");
        let _ = Path::new("");
    }
}

/// A death while placing from the shared store (a second checkout).
#[test]
fn killed_while_placing_from_the_store_the_rerun_completes() {
    let mut ctx = TestContext::new();
    let want = project(&ctx);
    ctx.mdl(&["sync", "--no-verify"]).success();
    std::fs::remove_dir_all(ctx.models()).unwrap();
    ctx.env
        .push(("FAILPOINTS".into(), "caches::placed=1*off->return".into()));
    let out = ctx.command(&["sync", "--no-verify"]).output().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(9), "{:?}", out.status);
    ctx.env.clear();
    consistent(&ctx, &want, "killed at caches::placed");
    ctx.hub.clear_requests();
    ctx.mdl(&["sync", "--no-verify"]).success();
    assert!(ctx.body_requests().is_empty(), "{:?}", ctx.body_requests());
    assert_eq!(consistent(&ctx, &want, "rerun").len(), want.len());
}

/// A lost write (issue 19, reproduction 6): a run recorded a finished piece
/// in its sidecar and died before the bytes reached the disk. The next run
/// must not trust the record: it hashes each recorded piece again, fetches
/// the one whose bytes are wrong, and places a file whose blake3 is of the
/// bytes on disk — never a corrupt file under a valid record.
#[test]
fn a_recorded_piece_whose_bytes_were_lost_is_fetched_again() {
    let mut ctx = TestContext::new();
    let want = project(&ctx);
    ctx.env
        .push(("FAILPOINTS".into(), "fetch::piece_written=2*off->return".into()));
    let status = ctx.command(&["sync", "--no-verify"]).output().unwrap().status;
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "{status:?}");
    ctx.env.clear();

    // The big file's partial and its sidecar; zero one recorded piece.
    let tmp = ctx.models().join(".mdl/tmp");
    let sidecar = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.to_string_lossy().ends_with(".part.json")
                && std::fs::read_to_string(p).is_ok_and(|t| t.contains("\"pieces\""))
        })
        .expect("a pieced partial download");
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(&sidecar).unwrap()).unwrap();
    let piece = state["pieces"]["size"].as_u64().unwrap();
    let done = state["pieces"]["done"].as_array().unwrap();
    let index = done.iter().position(|d| !d.is_null()).expect("a recorded piece") as u64;
    let part = sidecar.with_extension("");
    let file = std::fs::OpenOptions::new().write(true).open(&part).unwrap();
    use std::os::unix::fs::FileExt;
    file.write_all_at(&vec![0u8; piece as usize], index * piece).unwrap();
    drop(file);

    ctx.hub.clear_requests();
    ctx.mdl(&["sync", "--no-verify"]).success();
    let big = "models/huggingface_acme--crash/big.bin";
    assert!(ctx.read(big) == want[big], "the placed file is the upstream bytes");
    let range = format!("bytes={}-{}", index * piece, (index + 1) * piece - 1);
    assert!(
        ctx.requests()
            .iter()
            .any(|r| r.range.as_deref() == Some(range.as_str())),
        "the zeroed piece was fetched again: {:?}",
        ctx.requests().iter().map(|r| &r.range).collect::<Vec<_>>()
    );
    ctx.mdl(&["sync", "--check", "--no-verify"]).success();
}
