//! The guarantees that must hold when things go wrong (see RELIABILITY.md).

use std::time::Duration;

use crate::common::*;

/// Four syncs of one project at once, on a "file system" where `flock`
/// succeeds for everyone (NFS, two containers sharing a volume): each writes
/// its own partial files, checks content before its atomic renames, and every
/// state file is rewritten whole — so all end correct.
#[test]
fn four_writers_that_flock_cannot_stop_all_end_correct() {
    let mut ctx = TestContext::new();
    let big = hub_emulator::pseudo_random_bytes(51, 40 << 20);
    ctx.hub.commit(
        "acme/big",
        "main",
        vec![
            ("config.json", Some(Blob::regular(&b"{}"[..]))),
            ("model.safetensors", Some(Blob::lfs(SAFETENSORS))),
            ("big.bin", Some(Blob::lfs(big.clone()))),
        ],
    );
    ctx.hub.put_file("w/model.pt", Blob::regular(STATE_DICT));
    // Slow enough that the four overlap.
    ctx.hub.update_behaviour(|b| b.bandwidth = Some(16 << 20));
    ctx.write_config("models:\n  require:\n    - acme/big\n    - id: url:{hub}/files/w/model.pt\n      name: custom\n");
    ctx.env.push(("MDL_TEST_FLOCK_NOOP".into(), "1".into()));
    let children: Vec<_> = (0..4)
        .map(|_| {
            ctx.command(&["sync", "--no-verify"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(ctx.read("models/huggingface_acme--big/big.bin"), big);
    assert_eq!(ctx.read("models/huggingface_acme--big/model.safetensors"), SAFETENSORS);
    assert_eq!(ctx.read("models/url_custom/model.pt"), STATE_DICT);
    toml::from_str::<toml::Value>(&ctx.read_str("models.lock")).expect("models.lock parses");
    for json in [
        "models/.mdl/state.json",
        "models/model_registry.json",
        "models/huggingface_acme--big/model_info.json",
    ] {
        serde_json::from_slice::<serde_json::Value>(&ctx.read(json)).unwrap_or_else(|e| panic!("{json}: {e}"));
    }
    // And the project is whole: a fifth sync changes nothing and fetches nothing.
    ctx.hub.update_behaviour(|b| b.bandwidth = None);
    ctx.hub.clear_requests();
    ctx.mdl(&["sync", "--no-verify"]).success();
    assert!(ctx.body_requests().is_empty(), "{:?}", ctx.body_requests());
}

/// Unmounts the test's tmpfs when the test ends, however it ends.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
#[ignore = "mounts a 40 MiB tmpfs, which needs root: scripts/test runs it with --ignored"]
fn a_full_disk_is_refused_before_downloading_and_its_error_is_the_one_reported() {
    let mut ctx = TestContext::new();
    let small = ctx.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=40m", "tmpfs"])
        .arg(&small)
        .output();
    // Ignored by default (mounting needs root); `scripts/test` runs it, as
    // root in CI, where a mount that fails is a failure, not a pass.
    match mounted {
        Ok(out) => assert!(
            out.status.success(),
            "cannot mount a 40 MiB tmpfs: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("cannot run `mount`: {e}"),
    }
    let _unmount = Mounted(small.clone());
    ctx.hub.commit(
        "acme/big",
        "main",
        vec![
            (
                "a.bin",
                Some(Blob::lfs(hub_emulator::pseudo_random_bytes(61, 30 << 20))),
            ),
            (
                "b.bin",
                Some(Blob::lfs(hub_emulator::pseudo_random_bytes(62, 30 << 20))),
            ),
        ],
    );
    ctx.env.push(("MDL_NO_CACHE".into(), "1".into()));
    ctx.write_config("models:\n  require: [acme/big]\n  download:\n    cache_dir: small/models\n");

    // 60 MiB cannot fit in 40: refused before a byte is fetched.
    ctx.mdl(&["sync", "--no-verify"])
        .failure(1)
        .stderr_has("must be downloaded into")
        .stderr_has("--no-space-check");
    assert!(ctx.body_requests().is_empty(), "{:?}", ctx.body_requests());

    // Forced: the download's own ENOSPC is what is reported, not a later write.
    let run = ctx
        .mdl(&["sync", "--no-verify", "--no-space-check"])
        .failure(1)
        .stderr_has("the disk is full: writing")
        .stderr_has("mdl clean --partial");
    assert!(!run.stderr().contains("state.json"), "{}", run.stderr());

    // Partial downloads can be removed to give the space back.
    let cleaned = ctx.mdl(&["clean", "--partial"]).success();
    assert!(cleaned.stderr().contains("Removed"), "{}", cleaned.stderr());
    let tmp = small.join("models/.mdl/tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

/// Every file under `dir`, with its bytes.
fn tree(dir: &std::path::Path) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                out.insert(path.clone(), std::fs::read(&path).unwrap_or_default());
            }
        }
    }
    out
}

/// Hostile repositories: names that escape, hide or collide, a model
/// directory that is a link to elsewhere, a huge metadata answer. Each is
/// refused with an error that names it, and a sentinel directory beside the
/// project shows nothing was written outside.
#[test]
fn hostile_repositories_are_refused_and_nothing_is_written_outside() {
    let ctx = TestContext::new();
    let sentinel = ctx.path().join("sentinel");
    std::fs::create_dir_all(&sentinel).unwrap();
    std::fs::write(sentinel.join("keep.txt"), b"untouched").unwrap();
    let project = ctx.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    let before = tree(&sentinel);
    let run = |yaml: &str| {
        std::fs::write(project.join("config.yaml"), yaml.replace("{hub}", &ctx.hub.url())).unwrap();
        let out = ctx
            .command(&["sync", "--no-verify"])
            .current_dir(&project)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let names: &[(&str, &str)] = &[
        ("../../sentinel/evil.bin", "would escape the model directory"),
        ("/tmp/absolute.bin", "would escape the model directory"),
        ("dir\\evil.bin", "would escape the model directory"),
        ("nul\0byte.bin", "would escape the model directory"),
        ("escape\u{1b}[2J.bin", "would escape the model directory"),
    ];
    for (i, (name, needle)) in names.iter().enumerate() {
        let repo = format!("evil/names{i}");
        ctx.hub
            .commit(&repo, "main", vec![(*name, Some(Blob::regular(&b"x"[..])))]);
        let (code, err) = run(&format!("models:\n  require: [{repo}]\n"));
        assert_eq!(code, Some(1), "{name:?}: {err}");
        assert!(err.contains(needle), "{name:?}: {err}");
    }
    ctx.hub.commit(
        "evil/case",
        "main",
        vec![
            ("Model.bin", Some(Blob::regular(&b"a"[..]))),
            ("model.bin", Some(Blob::regular(&b"b"[..]))),
        ],
    );
    let (code, err) = run("models:\n  require: [evil/case]\n");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("are one file on a case-insensitive file system"), "{err}");

    // A model directory that is a link to the sentinel.
    ctx.hub
        .commit("acme/ok", "main", vec![("w.bin", Some(Blob::regular(&b"weights"[..])))]);
    std::fs::create_dir_all(project.join("models")).unwrap();
    std::os::unix::fs::symlink(&sentinel, project.join("models/huggingface_acme--ok")).unwrap();
    let (code, err) = run("models:\n  require: [acme/ok]\n");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("outside the models directory"), "{err}");
    std::fs::remove_file(project.join("models/huggingface_acme--ok")).unwrap();

    // A metadata answer of 1 GiB is refused at 64 MiB, not buffered.
    ctx.hub.update_behaviour(|b| b.api_answer_bytes = Some(1 << 30));
    let (code, err) = run("models:\n  require: [acme/ok]\n");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("the answer is larger than 64 MiB"), "{err}");

    assert_eq!(tree(&sentinel), before, "nothing was written outside the project");
}

/// The token goes to the Hub's own host only — never on a redirect to the
/// CDN, never to a `url:` model's host — and is never printed or written.
#[test]
fn the_token_is_sent_only_to_the_hub_and_never_printed_or_written() {
    let mut ctx = TestContext::new();
    let token = "hf_secret_token_for_this_test_only";
    ctx.hub
        .update_behaviour(|b| b.signed_urls = Some(Duration::from_secs(300)));
    ctx.hub.commit(
        "acme/gated",
        "main",
        vec![
            ("config.json", Some(Blob::regular(&b"{}"[..]))),
            ("model.safetensors", Some(Blob::lfs(SAFETENSORS))),
        ],
    );
    ctx.hub.gate("acme/gated", token);
    ctx.hub.put_file("w/model.pt", Blob::regular(STATE_DICT));
    ctx.env.push(("HF_TOKEN".into(), token.into()));
    ctx.write_config(
        "models:\n  require:\n    - acme/gated\n    - id: url:{hub}/redirect/w/model.pt\n      name: custom\n",
    );
    let mut outputs = Vec::new();
    for args in [
        &["sync", "-v"][..],
        &["list", "--json"],
        &["du", "--json"],
        &["config"],
        &["verify"],
    ] {
        let run = ctx.mdl(args).success();
        outputs.push(run.stdout() + &run.stderr());
    }
    for out in &outputs {
        assert!(!out.contains(token), "printed: {out}");
        // A signed URL's query is a credential while it lasts: `-v` shows
        // the request without it.
        assert!(!out.contains("X-Amz-Signature"), "a signature printed: {out}");
    }
    for (path, bytes) in ctx.snapshot() {
        assert!(!String::from_utf8_lossy(&bytes).contains(token), "written to {path}");
    }
    for r in ctx.requests() {
        let to_hub = r.path.starts_with("/api/") || r.path.contains("/resolve/");
        let expected = to_hub.then(|| format!("Bearer {token}"));
        assert_eq!(r.authorization, expected, "{r:?}");
    }
    assert!(
        ctx.requests().iter().any(|r| r.path.starts_with("/cdn/")),
        "the CDN was used"
    );
}
